"""The SQL loader: named blocks, lifecycle guards from the model, compaction."""

from __future__ import annotations

import pytest

from taskstatus.store.postgres import QUERIES as POSTGRES
from taskstatus.store.sqlfiles import compact, load_queries
from taskstatus.store.sqlite import _Q as SQLITE


@pytest.mark.parametrize(
    ("source", "compacted"),
    [
        ("SELECT 1\n  FROM   t", "SELECT 1 FROM t"),
        ("SELECT 1 -- why\nFROM t", "SELECT 1 FROM t"),
        ("-- a comment with a quote: it's\nSELECT 1", "SELECT 1"),
        (
            "SELECT 'a -- not a comment' -- but this is\nFROM t",
            "SELECT 'a -- not a comment' FROM t",
        ),
        ("SELECT 'it''s  kept  as is'", "SELECT 'it''s  kept  as is'"),
        ("SELECT 'x'--c\n", "SELECT 'x'"),
    ],
)
def test_compact(source: str, compacted: str) -> None:
    """Comments go (never a quoted --), whitespace folds, literals stay exactly."""
    assert compact(source) == compacted


@pytest.mark.parametrize("queries", [SQLITE, POSTGRES], ids=["sqlite", "postgres"])
def test_statements_are_short_and_comment_free(queries: dict[str, str]) -> None:
    """Every statement a store sends fits psycopg's 4 KiB conversion cache, and none still
    carries a comment (one left on a folded line would swallow the rest of the statement)."""
    for name, sql in queries.items():
        assert len(sql) <= 4096, name
        assert "\n" not in sql, name
        assert compact(sql) == sql, name
        filled = sql.replace("{assignments}", "")  # the columns an update changes, per call
        assert "{" not in filled.replace("'{}'", "").replace("'[]'", ""), name


def test_guards_come_from_the_lifecycle() -> None:
    """{from:STATE} becomes the states the model lets STATE be entered from."""
    assert "state = 'queued'" in load_queries("sqlite")["claim"]
    assert "'running' IN ('running')" in load_queries("sqlite")["release"]
