"""Filters, sorters and paging: the V3 standard collection grammar -> a typed AST. No SQL.

`parse_filter` turns text such as ``completionStatus in ("SUCCESS","WARNING") and not type eq
"QUARTZ"`` into a syntax tree of wire names; `bind` checks it against a dialect's `Catalog`
(which fields, which operators, which value types) and yields `Condition`s on `TaskField`s that
a store compiles to parameterized SQL. Every error names what is wrong and where (1-based column).

Grammar (precedence: not > and > or)::

    filter     := or EOF
    or         := and ("or" and)*
    and        := unary ("and" unary)*
    unary      := "not" unary | "(" or ")" | comparison
    comparison := NAME ("eq"|"ne"|"gt"|"ge"|"lt"|"le"|"co"|"sw") value
                | NAME ("in"|"ca") "(" value ("," value)* ")"
                | NAME ("pr"|"isnull")
    value      := STRING | NUMBER | DATETIME | "true" | "false" | "null"

Limits (taskstatus.limits): the text's length, the nesting of parentheses and ``not``, the
number of comparisons and of values, the number of sorters. Past one, a QueryError names it.
"""

from __future__ import annotations

import enum
import math
import re
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, TypeAlias

from taskstatus.errors import InvalidFilter
from taskstatus.limits import (
    INT64_MAX,
    INT64_MIN,
    MAX_FILTER_DEPTH,
    MAX_FILTER_LENGTH,
    MAX_FILTER_TERMS,
    MAX_FILTER_VALUES,
    MAX_SORTERS,
    InputRejected,
    check_json,
    check_text,
    limit,
)

__all__ = [
    "Catalog",
    "Condition",
    "Expr",
    "FieldSpec",
    "Kind",
    "Op",
    "QueryError",
    "SortKey",
    "TaskField",
    "TaskQuery",
    "all_of",
    "bind",
    "parse_filter",
    "parse_sorters",
]


class QueryError(InvalidFilter):
    """A filter or sorter that cannot be used; the message says what and where."""

    def __init__(self, message: str, position: int | None = None, *, param: str = "filters"):
        self.position = position
        self.param = param
        where = f" at column {position + 1}" if position is not None else ""
        super().__init__(f"{param}: {message}{where}")


class Op(enum.StrEnum):
    EQ = "eq"
    NE = "ne"
    GT = "gt"
    GE = "ge"
    LT = "lt"
    LE = "le"
    CO = "co"
    SW = "sw"
    IN = "in"
    CA = "ca"
    PR = "pr"
    ISNULL = "isnull"


UNARY_OPS = frozenset({Op.PR, Op.ISNULL})
LIST_OPS = frozenset({Op.IN, Op.CA})


class TaskField(enum.StrEnum):
    """The fields of a task a query may name; stores map each to a column."""

    ID = "id"
    TYPE = "type"
    HANDLER = "handler"
    UNIQUE_NAME = "unique_name"
    DESCRIPTION = "description"
    LAUNCHER = "launcher"
    TARGET_ID = "target_id"
    TARGET_TYPE = "target_type"
    TARGET_NAME = "target_name"
    PARENT_ID = "parent_id"
    PARENT_NAME = "parent_name"
    STATE = "state"
    COMPLETION_STATUS = "completion_status"
    PROGRESS = "progress"
    PERCENT_COMPLETE = "percent_complete"
    PRIORITY = "priority"
    ATTEMPTS = "attempts"
    CREATED = "created"
    MODIFIED = "modified"
    LAUNCHED = "launched"
    COMPLETED = "completed"
    ARGUMENTS = "arguments"
    ATTRIBUTES = "attributes"
    IDEMPOTENCY_KEY = "idempotency_key"


class Kind(enum.Enum):
    """The type of a field's values, which decides how literals are checked."""

    STRING = "string"
    INTEGER = "integer"
    DATETIME = "datetime"
    ENUM = "enum"
    JSON = "json"


# --- syntax -----------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Literal:
    value: Any
    position: int
    quoted: bool


@dataclass(frozen=True, slots=True)
class RawComparison:
    name: str
    op: Op
    values: tuple[Literal, ...]
    position: int


@dataclass(frozen=True, slots=True)
class Condition:
    """`field op values`, bound and typed; `values` is empty for pr and isnull."""

    field: TaskField
    op: Op
    values: tuple[Any, ...] = ()


@dataclass(frozen=True, slots=True)
class And:
    items: tuple[Expr, ...]


@dataclass(frozen=True, slots=True)
class Or:
    items: tuple[Expr, ...]


@dataclass(frozen=True, slots=True)
class Not:
    item: Expr


Expr: TypeAlias = Condition | RawComparison | And | Or | Not


def all_of(*exprs: Expr | None) -> Expr | None:
    """The conjunction of the given expressions, skipping None."""
    items = tuple(e for e in exprs if e is not None)
    if not items:
        return None
    return items[0] if len(items) == 1 else And(items)


_TOKEN = re.compile(
    r"""
    (?P<ws>\s+)
  | (?P<string>"(?:[^"\\]|\\.)*")
  | (?P<unterminated>"(?:[^"\\]|\\.)*\\?$)
  | (?P<datetime>\d{4}-\d{2}-\d{2}(?:T\d{2}:\d{2}(?::\d{2}(?:\.\d+)?)?(?:Z|[+-]\d{2}:?\d{2})?)?)
  | (?P<number>-?\d+(?:\.\d+)?)
  | (?P<name>[A-Za-z_][A-Za-z0-9_.]*)
  | (?P<punct>[(),])
    """,
    re.VERBOSE,
)
_ESCAPE = re.compile(r"\\(.)")


@dataclass(frozen=True, slots=True)
class _Tok:
    kind: str  # string, datetime, number, name, punct, end
    text: str
    position: int


def _tokens(text: str, param: str) -> Iterator[_Tok]:
    pos = 0
    while pos < len(text):
        m = _TOKEN.match(text, pos)
        if m is None:
            raise QueryError(f"unexpected character {text[pos]!r}", pos, param=param)
        kind = m.lastgroup or ""
        if kind == "unterminated":
            raise QueryError("unterminated string", pos, param=param)
        if kind != "ws":
            yield _Tok(kind, m.group(), pos)
        pos = m.end()
    yield _Tok("end", "", len(text))


class _Parser:
    def __init__(self, text: str, param: str) -> None:
        self.param = param
        if len(text) > MAX_FILTER_LENGTH:
            raise QueryError(
                f"the filter is longer than {MAX_FILTER_LENGTH} characters "
                f"({limit('filter-length', MAX_FILTER_LENGTH)})",
                param=param,
            )
        self.toks = list(_tokens(text, param))
        self.i = 0
        self.depth = 0
        self.terms = 0
        self.values = 0

    def nest(self, tok: _Tok) -> None:
        self.depth += 1
        if self.depth > MAX_FILTER_DEPTH:
            raise self.error(
                f"the filter nests deeper than {MAX_FILTER_DEPTH} levels of parentheses and "
                f"'not' ({limit('filter-depth', MAX_FILTER_DEPTH)})",
                tok,
            )

    def error(self, message: str, tok: _Tok | None = None) -> QueryError:
        return QueryError(message, (tok or self.peek()).position, param=self.param)

    def peek(self) -> _Tok:
        return self.toks[self.i]

    def take(self) -> _Tok:
        tok = self.toks[self.i]
        self.i += 1
        return tok

    def keyword(self, word: str) -> bool:
        tok = self.peek()
        if tok.kind == "name" and tok.text.lower() == word:
            self.i += 1
            return True
        return False

    def expect(self, text: str) -> _Tok:
        tok = self.take()
        if tok.text != text:
            found = repr(tok.text) if tok.kind != "end" else "the end"
            raise self.error(f"expected {text!r} but found {found}", tok)
        return tok

    def parse(self) -> Expr:
        if self.peek().kind == "end":
            raise self.error("the filter is empty")
        expr = self.or_()
        tok = self.peek()
        if tok.kind != "end":
            raise self.error(f"unexpected {tok.text!r}; expected 'and', 'or' or the end", tok)
        return expr

    def or_(self) -> Expr:
        items = [self.and_()]
        while self.keyword("or"):
            items.append(self.and_())
        return items[0] if len(items) == 1 else Or(tuple(items))

    def and_(self) -> Expr:
        items = [self.unary()]
        while self.keyword("and"):
            items.append(self.unary())
        return items[0] if len(items) == 1 else And(tuple(items))

    def unary(self) -> Expr:
        tok = self.peek()
        if self.keyword("not"):
            self.nest(tok)
            item = self.unary()
            self.depth -= 1
            return Not(item)
        if tok.text == "(":
            self.take()
            self.nest(tok)
            expr = self.or_()
            self.expect(")")
            self.depth -= 1
            return expr
        return self.comparison()

    def comparison(self) -> RawComparison:
        name = self.take()
        if name.kind != "name":
            found = repr(name.text) if name.kind != "end" else "the end"
            raise self.error(f"expected a field name but found {found}", name)
        self.terms += 1
        if self.terms > MAX_FILTER_TERMS:
            raise self.error(
                f"the filter has more than {MAX_FILTER_TERMS} comparisons "
                f"({limit('filter-terms', MAX_FILTER_TERMS)})",
                name,
            )
        op_tok = self.take()
        try:
            op = Op(op_tok.text.lower()) if op_tok.kind == "name" else None
        except ValueError:
            op = None
        if op is None:
            found = repr(op_tok.text) if op_tok.kind != "end" else "the end"
            raise self.error(f"expected an operator after {name.text!r} but found {found}", op_tok)
        if op in UNARY_OPS:
            return RawComparison(name.text, op, (), name.position)
        if op in LIST_OPS:
            self.expect("(")
            values = [self.value()]
            while self.peek().text == ",":
                self.take()
                values.append(self.value())
            self.expect(")")
            return RawComparison(name.text, op, tuple(values), name.position)
        return RawComparison(name.text, op, (self.value(),), name.position)

    def value(self) -> Literal:
        tok = self.take()
        self.values += 1
        if self.values > MAX_FILTER_VALUES:
            raise self.error(
                f"the filter has more than {MAX_FILTER_VALUES} values "
                f"({limit('filter-values', MAX_FILTER_VALUES)})",
                tok,
            )
        if tok.kind == "string":
            return Literal(_ESCAPE.sub(r"\1", tok.text[1:-1]), tok.position, quoted=True)
        if tok.kind == "number":
            number: int | float
            if "." in tok.text:
                number = float(tok.text)
                if math.isinf(number):
                    raise self.error(f"the number {tok.text[:20]}... is too large", tok)
            else:
                number = int(tok.text)
                if not INT64_MIN <= number <= INT64_MAX:
                    raise self.error("the integer is outside the 64-bit range", tok)
            return Literal(number, tok.position, quoted=False)
        if tok.kind == "datetime":
            return Literal(tok.text, tok.position, quoted=False)
        if tok.kind == "name" and tok.text in ("true", "false", "null"):
            return Literal(
                {"true": True, "false": False, "null": None}[tok.text], tok.position, False
            )
        found = repr(tok.text) if tok.kind != "end" else "the end"
        raise self.error(f"expected a value but found {found}", tok)


def parse_filter(text: str, param: str = "filters") -> Expr:
    """Parse filter text into an unbound syntax tree; raises QueryError on a syntax error."""
    return _Parser(text, param).parse()


# --- binding against a catalog ------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class FieldSpec:
    """What a dialect lets a client do with one of its field names."""

    field: TaskField
    kind: Kind
    ops: frozenset[Op] = frozenset()
    sortable: bool = False
    enum: type[enum.Enum] | None = None


@dataclass(frozen=True)
class Catalog:
    """A dialect's queryable fields, by wire name."""

    fields: Mapping[str, FieldSpec]

    def spec(self, name: str, position: int | None, param: str) -> FieldSpec:
        spec = self.fields.get(name)
        if spec is None:
            known = ", ".join(sorted(n for n, s in self.fields.items() if s.ops or s.sortable))
            raise QueryError(
                f"unsupported field {name!r} (supported: {known})", position, param=param
            )
        return spec


def _coerce(spec: FieldSpec, name: str, lit: Literal, param: str) -> Any:
    value = lit.value
    if value is None:
        raise QueryError(
            f"null is not a value for {name!r}; use 'isnull'", lit.position, param=param
        )
    if spec.kind is Kind.STRING:
        if not isinstance(value, str) or not lit.quoted:
            raise QueryError(f"{name!r} takes a quoted string", lit.position, param=param)
        return _storable(check_text, value, name, lit, param)
    if spec.kind is Kind.INTEGER:
        if isinstance(value, bool) or not isinstance(value, int):
            raise QueryError(f"{name!r} takes an integer", lit.position, param=param)
        return value
    if spec.kind is Kind.DATETIME:
        try:
            parsed = datetime.fromisoformat(str(value))
        except ValueError:
            raise QueryError(
                f"{name!r} takes an ISO 8601 date-time such as 2024-01-31T00:00:00Z",
                lit.position,
                param=param,
            ) from None
        if parsed.tzinfo is None:
            raise QueryError(f"{name!r} needs a time zone (Z or +hh:mm)", lit.position, param=param)
        try:
            parsed.astimezone(UTC)  # stores compare in UTC
        except OverflowError:
            raise QueryError(
                f"{name!r}: {value} is out of range (years 1 to 9999 in UTC)",
                lit.position,
                param=param,
            ) from None
        return parsed
    if spec.kind is Kind.ENUM:
        assert spec.enum is not None
        by_name = {str(m.value).upper(): m for m in spec.enum}
        member = by_name.get(str(value).upper()) if isinstance(value, str) else None
        if member is None:
            allowed = ", ".join(str(m.value) for m in spec.enum)
            raise QueryError(
                f"{value!r} is not a value of {name!r} (one of: {allowed})",
                lit.position,
                param=param,
            )
        return member
    return _storable(check_json, value, name, lit, param)  # Kind.JSON: compared whole


def _storable(check: Any, value: Any, name: str, lit: Literal, param: str) -> Any:
    """`check(value, name)`, its InputRejected as a QueryError at the literal."""
    try:
        return check(value, name)
    except InputRejected as e:
        raise QueryError(str(e), lit.position, param=param) from None


def bind(expr: Expr, catalog: Catalog, param: str = "filters") -> Expr:
    """Check a syntax tree against `catalog` and return it with fields bound and values typed."""
    if isinstance(expr, And):
        return And(tuple(bind(e, catalog, param) for e in expr.items))
    if isinstance(expr, Or):
        return Or(tuple(bind(e, catalog, param) for e in expr.items))
    if isinstance(expr, Not):
        return Not(bind(expr.item, catalog, param))
    if isinstance(expr, Condition):
        return expr
    spec = catalog.spec(expr.name, expr.position, param)
    if expr.op not in spec.ops:
        allowed = ", ".join(sorted(o.value for o in spec.ops)) or "none"
        raise QueryError(
            f"operator {expr.op.value!r} is not supported on {expr.name!r} (supported: {allowed})",
            expr.position,
            param=param,
        )
    values = tuple(_coerce(spec, expr.name, lit, param) for lit in expr.values)
    return Condition(spec.field, expr.op, values)


def parse_bound(text: str | None, catalog: Catalog, param: str = "filters") -> Expr | None:
    """Parse and bind in one step; None or blank text means no filter."""
    if text is None or not text.strip():
        return None
    return bind(parse_filter(text, param), catalog, param)


# --- sorting and the query itself -----------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class SortKey:
    field: TaskField
    descending: bool = False


_SORTER = re.compile(r"\s*(-?)([A-Za-z_][A-Za-z0-9_.]*)\s*(?:,|$)")


def parse_sorters(
    text: str | None, catalog: Catalog, param: str = "sorters"
) -> tuple[SortKey, ...]:
    """Parse ``created,-modified`` into sort keys; unknown or unsortable names are errors."""
    if text is None or not text.strip():
        return ()
    keys: list[SortKey] = []
    pos = 0
    while pos < len(text):
        if len(keys) == MAX_SORTERS:
            raise QueryError(
                f"more than {MAX_SORTERS} sorters ({limit('sorters', MAX_SORTERS)})",
                pos,
                param=param,
            )
        m = _SORTER.match(text, pos)
        if m is None:
            raise QueryError(
                "expected a field name, optionally with a leading '-'", pos, param=param
            )
        name_pos = m.start(2)
        spec = catalog.fields.get(m.group(2))
        if spec is None or not spec.sortable:
            sortable = ", ".join(sorted(n for n, s in catalog.fields.items() if s.sortable))
            raise QueryError(
                f"cannot sort by {m.group(2)!r} (sortable: {sortable})", name_pos, param=param
            )
        keys.append(SortKey(spec.field, descending=m.group(1) == "-"))
        pos = m.end()
        if text[m.end() - 1 : m.end()] == "," and not text[pos:].strip():
            raise QueryError("a sorter is missing after ','", pos, param=param)
    return tuple(keys)


@dataclass(frozen=True, slots=True)
class TaskQuery:
    """What a store's `query` answers: the tasks matching `where`, sorted, one page of them."""

    where: Expr | None = None
    sort: Sequence[SortKey] = field(default=())
    offset: int = 0
    limit: int | None = 250
    count: bool = False
    include_deleted: bool = False
    # Count at most this many (the total is then a lower bound): an exact count of a large
    # set reads every row, which a page on a screen need not wait for. A count the store
    # answers from a rollup (task_counts) stays exact.
    count_cap: int | None = None
