"""Compile a bound query (taskstatus.query) to a parameterized SQL WHERE and ORDER BY.

Values never enter the SQL text: every literal becomes a placeholder and a parameter. Column
names come only from the `COLUMNS` table below. NOT is pushed down to the comparisons (De
Morgan) so that it keeps two-valued logic on nullable columns and the positive forms can use
their indexes.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from enum import Enum
from typing import Any

from taskstatus.query import And, Condition, Expr, Not, Op, Or, SortKey, TaskField

COLUMNS: dict[TaskField, str] = {f: f"tasks.{f.value}" for f in TaskField}

# Columns that may hold NULL: comparisons on them need care under NOT, and sorting on them
# states where NULLs go (first ascending, last descending, the same on every database).
NULLABLE = frozenset(
    {
        TaskField.TARGET_ID,
        TaskField.TARGET_TYPE,
        TaskField.TARGET_NAME,
        TaskField.PARENT_ID,
        TaskField.PARENT_NAME,
        TaskField.COMPLETION_STATUS,
        TaskField.PROGRESS,
        TaskField.LAUNCHED,
        TaskField.COMPLETED,
        TaskField.IDEMPOTENCY_KEY,
    }
)

_NEGATED = {Op.EQ: "<>", Op.NE: "=", Op.GT: "<=", Op.GE: "<", Op.LT: ">=", Op.LE: ">"}
_POSITIVE = {Op.EQ: "=", Op.NE: "<>", Op.GT: ">", Op.GE: ">=", Op.LT: "<", Op.LE: "<="}


@dataclass(frozen=True)
class SqlDialect:
    """What differs between databases when a filter becomes SQL."""

    placeholder: str  # "?" (sqlite3) or "%s" (psycopg)
    encode_time: Callable[[datetime], Any]
    encode_json: Callable[[Any], Any]
    json_placeholder: str  # how a JSON parameter is written, e.g. "%s::jsonb"
    like: str  # a case-insensitive LIKE: "LIKE" (SQLite) or "ILIKE" (PostgreSQL)


def _escape_like(value: str) -> str:
    return value.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


class _Compiler:
    def __init__(self, dialect: SqlDialect) -> None:
        self.d = dialect
        self.params: list[Any] = []

    def param(self, value: Any, field: TaskField) -> str:
        if field in (TaskField.ARGUMENTS, TaskField.ATTRIBUTES):
            self.params.append(self.d.encode_json(value))
            return self.d.json_placeholder
        if isinstance(value, datetime):
            value = self.d.encode_time(value)
        elif isinstance(value, Enum):
            value = value.value
        self.params.append(value)
        return self.d.placeholder

    def expr(self, e: Expr, negate: bool) -> str:
        if isinstance(e, Not):
            return self.expr(e.item, not negate)
        if isinstance(e, And | Or):
            # De Morgan: not (a and b) = (not a) or (not b)
            joiner = " AND " if isinstance(e, And) != negate else " OR "
            return "(" + joiner.join(self.expr(i, negate) for i in e.items) + ")"
        if isinstance(e, Condition):
            return self.condition(e, negate)
        raise TypeError(f"unbound filter node {e!r}: bind() it against a catalog first")

    def condition(self, c: Condition, negate: bool) -> str:
        col = COLUMNS[c.field]
        nullable = c.field in NULLABLE
        if c.op is Op.ISNULL:
            return f"{col} IS NOT NULL" if negate else f"{col} IS NULL"
        if c.op is Op.PR:
            return f"{col} IS NULL" if negate else f"{col} IS NOT NULL"
        if c.op is Op.IN:
            marks = ", ".join(self.param(v, c.field) for v in c.values)
            sql = f"{col} {'NOT IN' if negate else 'IN'} ({marks})"
        elif c.op in (Op.CO, Op.SW):
            pattern = _escape_like(str(c.values[0])) + "%"
            if c.op is Op.CO:
                pattern = "%" + pattern
            self.params.append(pattern)
            if c.field in (TaskField.ARGUMENTS, TaskField.ATTRIBUTES):
                col = f"CAST({col} AS TEXT)"  # a search in the JSON's text
            sql = f"{col} {'NOT ' if negate else ''}{self.d.like} {self.d.placeholder} ESCAPE '\\'"
        elif c.op in _POSITIVE:
            ops = _NEGATED if negate else _POSITIVE
            sql = f"{col} {ops[c.op]} {self.param(c.values[0], c.field)}"
        else:
            raise ValueError(f"operator {c.op.value!r} has no SQL form")
        # A negated comparison is true for NULL (not (x eq "a") holds when x is null); so is ne.
        if nullable and (negate != (c.op is Op.NE)):
            return f"({sql} OR {col} IS NULL)"
        return sql


def compile_where(expr: Expr | None, dialect: SqlDialect) -> tuple[str, list[Any]]:
    """SQL for the WHERE clause (``TRUE`` when there is no filter) and its parameters."""
    if expr is None:
        return "1=1", []
    compiler = _Compiler(dialect)
    return compiler.expr(expr, negate=False), compiler.params


def compile_order(sort: Sequence[SortKey]) -> str:
    """ORDER BY text; the id breaks ties so that pages never overlap or skip."""
    parts = []
    for key in sort:
        direction = "DESC" if key.descending else "ASC"
        nulls = ""
        if key.field in NULLABLE:
            nulls = " NULLS LAST" if key.descending else " NULLS FIRST"
        parts.append(f"{COLUMNS[key.field]} {direction}{nulls}")
    last_desc = bool(sort) and sort[-1].descending
    parts.append(f"tasks.id {'DESC' if last_desc else 'ASC'}")
    return ", ".join(parts)
