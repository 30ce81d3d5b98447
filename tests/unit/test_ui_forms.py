"""The dashboard's pure parts: the Submit form from a schema, the list's query string, the
throughput chart."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from taskstatus.demo import FailingArgs, SleepArgs
from taskstatus.errors import InvalidArguments
from taskstatus.handlers import Handler
from taskstatus.model import CompletionStatus
from taskstatus.query import And, Condition, Op, Or, TaskField
from taskstatus.ui.charts import throughput_chart
from taskstatus.ui.forms import errors_by_field, fields_of, parse_form
from taskstatus.ui.listing import ListQuery


def test_form_fields_follow_the_schema() -> None:
    """Numbers, booleans and nullable numbers get fitting controls with their defaults."""
    fields = {f.name: f for f in fields_of(FailingArgs.model_json_schema())}
    assert fields["message"].control == "text"
    assert fields["transient"].control == "checkbox" and fields["transient"].default is False
    assert fields["retry_delay"].control == "number" and fields["retry_delay"].minimum == 0
    assert fields_of(SleepArgs.model_json_schema())[0].default == 5.0


def test_parse_form_keeps_bad_values_for_the_handler_to_judge() -> None:
    """Empty fields are left out, numbers are parsed, text that is no number is passed on,
    a checkbox is false when unticked, and bad JSON is an error of its field."""
    schema = {
        "type": "object",
        "properties": {
            "n": {"type": "integer"},
            "x": {"type": "number"},
            "on": {"type": "boolean"},
            "more": {"type": "object"},
            "name": {"type": "string"},
        },
    }
    fields = fields_of(schema)
    form = {"arg.n": "abc", "arg.x": "2.5", "bool.on": "1", "arg.more": "{", "arg.name": ""}
    arguments, errors = parse_form(fields, form)
    assert arguments == {"n": "abc", "x": 2.5, "on": False}
    assert list(errors) == ["more"]


def test_handler_errors_land_on_their_fields() -> None:
    """A handler's messages are matched to the form's fields by their path's first part."""
    fields = fields_of(SleepArgs.model_json_schema())
    handler = Handler("Sleep", lambda ctx, args: None, "", SleepArgs.model_json_schema(), SleepArgs)
    with pytest.raises(InvalidArguments) as raised:
        handler.validate({"seconds": -5})
    by_field, other = errors_by_field(raised.value.errors, fields)
    assert "greater than or equal to 0" in by_field["seconds"] and other == []


def test_list_query_adds_quick_filters_and_search_to_the_filter() -> None:
    """Quick filters and the search are and-ed to the filters box; a bad filter is an error
    kept for the page, the rest still applies."""
    query = ListQuery.from_params({"filters": 'type eq "QUARTZ"', "state": "running", "q": "x"})
    where = query.where()
    assert isinstance(where, And) and query.errors == {}
    assert Condition(TaskField.STATE, Op.EQ, ("running",)) in where.items
    assert any(isinstance(item, Or) for item in where.items)
    bad = ListQuery.from_params({"filters": "nope eq 1", "view": "pending"})
    assert bad.where() == Condition(TaskField.COMPLETION_STATUS, Op.ISNULL)
    assert bad.errors["filters"].startswith("filters: unsupported field 'nope'")
    assert bad.url(offset=50) == "/ui/tasks?view=pending&filters=nope+eq+1&offset=50"


def test_throughput_chart_stacks_the_last_hour() -> None:
    """Rows of the last hour become stacked bars; older ones are left out."""
    now = datetime(2026, 1, 1, 12, 30, 15, tzinfo=UTC)
    minute = now.replace(second=0)
    rows = [
        (minute, CompletionStatus.SUCCESS, 6),
        (minute, CompletionStatus.ERROR, 2),
        (minute - timedelta(hours=2), CompletionStatus.SUCCESS, 100),
    ]
    chart = throughput_chart(rows, now)
    assert chart.peak == 8 and chart.total["SUCCESS"] == 6 and chart.total["ERROR"] == 2
    assert [b.status for b in chart.bars] == ["SUCCESS", "ERROR"]
