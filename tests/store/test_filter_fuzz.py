"""hypothesis over the filter and sorter grammar.

Arbitrary text (surrogates and NUL included) and token soup: the parser raises only its own
QueryError. Generated valid expressions over every field, operator and value kind of the
task-status catalog, edge values included: each one the parser accepts runs on SQLite and on
PostgreSQL without a database error; the ones it refuses are refused with a QueryError.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta, timezone

import pytest
from hypothesis import HealthCheck, event, example, given, settings
from hypothesis import strategies as st

from taskstatus.fields import TASK_STATUS
from taskstatus.limits import INT64_MAX, INT64_MIN
from taskstatus.model import Target, TargetType
from taskstatus.query import (
    LIST_OPS,
    UNARY_OPS,
    Kind,
    QueryError,
    TaskQuery,
    parse_bound,
    parse_sorters,
)
from taskstatus.store import Store, make_store
from tests.conftest import DEFINITION, make_task

FUZZ = settings(
    max_examples=500,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
ANY_TEXT = st.text(st.characters(codec=None, exclude_categories=()), max_size=200)
TOKENS = st.sampled_from(
    [
        *TASK_STATUS.fields,
        *("eq", "ne", "gt", "ge", "lt", "le", "co", "sw", "in", "ca", "pr", "isnull"),
        *("and", "or", "not", "(", ")", ",", '"', "\\", " ", "true", "false", "null"),
        *("-1", "0", "9223372036854775808", "1.5", "1e5", "2024-01-31T00:00:00Z"),
        *("9999-12-31T23:59:59-23:59", "0001-01-01T00:00:00+01:00", '"x"', '"\\"', "\x00"),
    ]
)
SOUP = st.lists(TOKENS, max_size=40).map(" ".join)


@given(text=ANY_TEXT | SOUP)
@FUZZ
def test_the_parser_raises_only_query_errors(text: str) -> None:
    """Any text at all: a bound expression or a QueryError, never another exception."""
    with contextlib.suppress(QueryError):
        parse_bound(text, TASK_STATUS)


@given(text=ANY_TEXT | st.lists(st.sampled_from([*TASK_STATUS.fields, "-", ",", " "])).map("".join))
@FUZZ
def test_the_sorter_parser_raises_only_query_errors(text: str) -> None:
    """Any sorter text: sort keys or a QueryError, never another exception."""
    with contextlib.suppress(QueryError):
        parse_sorters(text, TASK_STATUS)


# --- generated expressions ----------------------------------------------------------------------


def quoted(text: str) -> str:
    """`text` as a quoted string literal of the filter grammar."""
    return '"' + re.sub(r'(["\\])', r"\\\1", text) + '"'


OFFSETS = st.integers(-(23 * 60 + 59), 23 * 60 + 59).map(lambda m: timezone(timedelta(minutes=m)))
DATETIMES = st.one_of(
    st.datetimes(timezones=OFFSETS | st.just(UTC)),
    st.sampled_from([datetime.min, datetime.max]).flatmap(
        lambda d: OFFSETS.map(lambda tz: d.replace(tzinfo=tz))
    ),
)


def literal(kind: Kind, field: str) -> st.SearchStrategy[str]:
    """Literals of a field's kind, edge values included (and some that are out of range)."""
    spec = TASK_STATUS.fields[field]
    if kind is Kind.STRING:
        return st.text(max_size=30).map(quoted) | ANY_TEXT.map(quoted)
    if kind is Kind.INTEGER:
        edges = st.sampled_from([INT64_MIN, INT64_MAX, INT64_MAX + 1, 0, -1, 100])
        return (st.integers(INT64_MIN, INT64_MAX) | edges).map(str)
    if kind is Kind.DATETIME:
        return DATETIMES.map(lambda d: d.isoformat().replace("+00:00", "Z"))
    assert kind is Kind.ENUM and spec.enum is not None
    names = [str(m.value) for m in spec.enum]
    return st.sampled_from(names).map(quoted) | st.sampled_from([n.lower() for n in names]).map(
        quoted
    )


@st.composite
def comparison(draw: st.DrawFn) -> str:
    """A random comparison of a filterable field with values of its type."""
    name = draw(st.sampled_from([n for n, s in TASK_STATUS.fields.items() if s.ops]))
    spec = TASK_STATUS.fields[name]
    op = draw(st.sampled_from(sorted(spec.ops)))
    if op in UNARY_OPS:
        return f"{name} {op.value}"
    values = literal(spec.kind, name)
    if op in LIST_OPS:
        items = draw(st.lists(values, min_size=1, max_size=6))
        return f"{name} {op.value} ({', '.join(items)})"
    return f"{name} {op.value} {draw(values)}"


EXPRESSIONS = st.recursive(
    comparison(),
    lambda inner: st.one_of(
        st.lists(inner, min_size=2, max_size=4).map(" and ".join),
        st.lists(inner, min_size=2, max_size=4).map(" or ".join),
        inner.map(lambda e: f"not {e}"),
        inner.map(lambda e: f"({e})"),
    ),
    max_leaves=24,
)
SORTABLE = [n for n, s in TASK_STATUS.fields.items() if s.sortable]
SORTERS = st.lists(st.sampled_from([*SORTABLE, *("-" + n for n in SORTABLE)]), max_size=9).map(
    ",".join
)


@pytest.fixture
def seeded_store(store_url: str) -> Iterator[tuple[asyncio.Runner, Store]]:
    """A store of each backend with a few varied tasks, and the loop to call it on."""
    runner = asyncio.Runner()
    store = make_store(store_url)

    async def setup() -> None:
        await store.open()
        await store.save_definitions([DEFINITION])
        await store.create_many(
            [
                make_task(),
                make_task(target=Target("acct-1", TargetType.APPLICATION, "AD"), priority=5),
                make_task(description='100% \\ _ "quoted"', unique_name="ünïcødé"),
            ]
        )

    runner.run(setup())
    try:
        yield runner, store
    finally:
        runner.run(store.close())
        runner.close()


@pytest.mark.slow
@given(filters=EXPRESSIONS, sorters=SORTERS, offset=st.integers(0, 3))
# found by hypothesis: the count's daily rollup had no day after the last one (OverflowError)
@example(filters="created ge 9999-12-31T00:00:00Z", sorters="", offset=0)
@FUZZ
def test_accepted_expressions_run_on_the_database(
    seeded_store: tuple[asyncio.Runner, Store], filters: str, sorters: str, offset: int
) -> None:
    """A generated filter (and sorters) the parser accepts runs on the backend without a
    database error; one it refuses is refused with a QueryError (a limit, a value out of
    range or off the calendar)."""
    runner, store = seeded_store
    try:
        query = TaskQuery(
            where=parse_bound(filters, TASK_STATUS),
            sort=parse_sorters(sorters, TASK_STATUS),
            offset=offset,
            count=True,
        )
    except QueryError as e:
        event(f"refused: {str(e).split(':')[1].strip()[:40]}")
        return
    event("accepted: ran on the database")
    page = runner.run(store.query(query))
    assert page.total is not None
    assert len(page.items) <= max(0, page.total - offset)
