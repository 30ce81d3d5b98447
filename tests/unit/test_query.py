"""The filter and sorter grammar: parsing, binding to a catalog, and every error path."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from taskstatus.fields import TASK_STATUS
from taskstatus.model import CompletionStatus, TaskState, TaskType
from taskstatus.query import (
    And,
    Condition,
    Not,
    Op,
    Or,
    QueryError,
    SortKey,
    TaskField,
    parse_bound,
    parse_filter,
    parse_sorters,
)


def bound(text: str) -> object:
    """`text` parsed and bound to the v2024 fields."""
    return parse_bound(text, TASK_STATUS)


def test_eq_on_each_seed_field() -> None:
    """The seeds' fields with eq: id, sourceId, completionStatus, type."""
    assert bound('id eq "abc"') == Condition(TaskField.ID, Op.EQ, ("abc",))
    assert bound('sourceId eq "s1"') == Condition(TaskField.TARGET_ID, Op.EQ, ("s1",))
    assert bound('completionStatus eq "SUCCESS"') == Condition(
        TaskField.COMPLETION_STATUS, Op.EQ, (CompletionStatus.SUCCESS,)
    )
    assert bound('type eq "QUARTZ"') == Condition(TaskField.TYPE, Op.EQ, (TaskType.QUARTZ,))


def test_in_lists() -> None:
    """in takes a parenthesized list of one or more values, read as the field's type."""
    assert bound('completionStatus in ("SUCCESS", "WARNING")') == Condition(
        TaskField.COMPLETION_STATUS, Op.IN, (CompletionStatus.SUCCESS, CompletionStatus.WARNING)
    )
    assert bound('id in ("a")') == Condition(TaskField.ID, Op.IN, ("a",))


def test_enum_values_are_case_insensitive() -> None:
    """The seeds' own example writes completionStatus eq "Success"."""
    assert bound('completionStatus eq "Success"') == Condition(
        TaskField.COMPLETION_STATUS, Op.EQ, (CompletionStatus.SUCCESS,)
    )


def test_precedence_not_over_and_over_or() -> None:
    """`a or b and not c` is `a or (b and (not c))`; keywords are case-insensitive."""
    a = Condition(TaskField.ID, Op.EQ, ("a",))
    b = Condition(TaskField.ID, Op.EQ, ("b",))
    c = Condition(TaskField.ID, Op.EQ, ("c",))
    assert bound('id eq "a" or id eq "b" and not id eq "c"') == Or((a, And((b, Not(c)))))
    assert bound('(id eq "a" OR id eq "b") AND id eq "c"') == And((Or((a, b)), c))
    assert bound('not (id eq "a" or id eq "b")') == Not(Or((a, b)))
    assert bound('not not id eq "a"') == Not(Not(a))


def test_unary_operators() -> None:
    """isnull (what the newest SDK sends for pending tasks) and pr take no value."""
    assert bound("completionStatus isnull") == Condition(TaskField.COMPLETION_STATUS, Op.ISNULL)
    assert bound("completionStatus pr") == Condition(TaskField.COMPLETION_STATUS, Op.PR)


def test_string_escapes() -> None:
    """Backslash escapes a quote or a backslash inside a string."""
    assert bound(r'uniqueName eq "say \"hi\" \\ bye"') == Condition(
        TaskField.UNIQUE_NAME, Op.EQ, ('say "hi" \\ bye',)
    )


def test_date_times_quoted_or_bare() -> None:
    """Date-times are read quoted or bare, with any offset, to the same UTC instant."""
    when = datetime(2024, 1, 31, 12, 0, tzinfo=UTC)
    expected = Condition(TaskField.CREATED, Op.GT, (when,))
    assert bound("created gt 2024-01-31T12:00:00Z") == expected
    assert bound('created gt "2024-01-31T12:00:00.000Z"') == expected
    assert bound("created ge 2024-01-31T14:00:00+02:00") == Condition(
        TaskField.CREATED, Op.GE, (when,)
    )


def test_integers_and_more_fields() -> None:
    """Integer, state and text fields are read as their types."""
    assert bound("percentComplete ge 50") == Condition(TaskField.PERCENT_COMPLETE, Op.GE, (50,))
    assert bound('state eq "running"') == Condition(TaskField.STATE, Op.EQ, (TaskState.RUNNING,))
    assert bound('uniqueName sw "Cloud"') == Condition(TaskField.UNIQUE_NAME, Op.SW, ("Cloud",))


def test_whitespace_is_free() -> None:
    """Whitespace around and between tokens is optional."""
    assert bound('  id   eq"a"and(id eq "b")  ') == And(
        (Condition(TaskField.ID, Op.EQ, ("a",)), Condition(TaskField.ID, Op.EQ, ("b",)))
    )


def test_blank_filter_is_no_filter() -> None:
    """An empty or blank filter is no filter (None)."""
    assert bound("") is None
    assert bound("   ") is None


@pytest.mark.parametrize(
    ("text", "message", "column"),
    [
        ('foo eq "a"', "unsupported field 'foo'", 1),
        ('id eq "a" and bar eq "b"', "unsupported field 'bar'", 15),
        ('id gt "a"', "operator 'gt' is not supported on 'id'", 1),
        ('type co "Q"', "operator 'co' is not supported on 'type'", 1),
        ('id zz "a"', "expected an operator after 'id' but found 'zz'", 4),
        ("id eq", "expected a value but found the end", 6),
        ('id eq "a', "unterminated string", 7),
        ('id eq "a" and', "expected a field name but found the end", 14),
        ('id eq "a" xor id eq "b"', "unexpected 'xor'", 11),
        ('(id eq "a"', "expected ')' but found the end", 11),
        ('id in "a"', "expected '(' but found", 7),
        ('id in ("a" "b")', "expected ')' but found", 12),
        ("id eq a", "expected a value but found 'a'", 7),
        ('id eq "a" $', "unexpected character '$'", 11),
        ("id eq 5", "'id' takes a quoted string", 7),
        ('completionStatus eq "DONE"', "'DONE' is not a value of 'completionStatus'", 21),
        ('created gt "yesterday"', "'created' takes an ISO 8601 date-time", 12),
        ("created gt 2024-01-01T00:00:00", "'created' needs a time zone", 12),
        ("created gt 9999-12-31T23:00:00-05:00", "is out of range (years 1 to 9999 in UTC)", 12),
        ('percentComplete eq "5"', "'percentComplete' takes an integer", 20),
        ("id eq null", "null is not a value for 'id'", 7),
        ("()", "expected a field name but found ')'", 2),
    ],
)
def test_errors_say_what_and_where(text: str, message: str, column: int) -> None:
    """Every syntax and binding error names the problem and its 1-based column."""
    with pytest.raises(QueryError) as info:
        bound(text)
    assert message in str(info.value)
    assert info.value.position == column - 1
    assert f"at column {column}" in str(info.value)
    assert str(info.value).startswith("filters: ")


def test_parse_without_binding_keeps_names() -> None:
    """The syntax tree keeps wire names until bound to a dialect's catalog."""
    tree = parse_filter('anything eq "x"')
    assert getattr(tree, "name", None) == "anything"


def test_sorters() -> None:
    """Sorters are comma-separated fields, a leading minus for descending; none is an empty
    tuple."""
    assert parse_sorters("created", TASK_STATUS) == (SortKey(TaskField.CREATED),)
    assert parse_sorters("-created", TASK_STATUS) == (SortKey(TaskField.CREATED, True),)
    assert parse_sorters(" -created , uniqueName", TASK_STATUS) == (
        SortKey(TaskField.CREATED, True),
        SortKey(TaskField.UNIQUE_NAME),
    )
    assert parse_sorters("", TASK_STATUS) == ()
    assert parse_sorters(None, TASK_STATUS) == ()


@pytest.mark.parametrize(
    ("text", "message", "column"),
    [
        ("name", "cannot sort by 'name'", 1),
        ("created,-id", "cannot sort by 'id'", 10),
        ("created,", "a sorter is missing after ','", 9),
        ("--created", "expected a field name", 1),
        ("created desc", "expected a field name", 1),
    ],
)
def test_sorter_errors(text: str, message: str, column: int) -> None:
    """A bad sorter raises QueryError with its message, its column and the sorters: prefix."""
    with pytest.raises(QueryError) as info:
        parse_sorters(text, TASK_STATUS)
    assert message in str(info.value)
    assert info.value.position == column - 1
    assert str(info.value).startswith("sorters: ")
