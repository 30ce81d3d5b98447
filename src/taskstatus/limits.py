"""Every limit on what a caller may send, in one place, and the checks of what can be stored.

docs/api.md lists these limits; a request past one is refused with a 400 whose message names
the limit (``limit: filter-depth = 16``). The limits on a connection (header and body size,
how long a client may take) are defaults of settings of the same name; the others are fixed.

`check_text` and `check_json` refuse what a store cannot keep the same on every backend: NUL
characters (PostgreSQL text and jsonb cannot hold them), lone surrogates (not UTF-8), integers
outside 64 bits, non-finite numbers and JSON nested deeper than `MAX_JSON_DEPTH`. No I/O.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

from taskstatus.errors import TaskStatusError

__all__ = [
    "BODY_TIMEOUT",
    "HEADER_TIMEOUT",
    "INT32_MAX",
    "INT32_MIN",
    "INT64_MAX",
    "INT64_MIN",
    "MAX_BODY_BYTES",
    "MAX_CLIENT_PAGE_SIZE",
    "MAX_DELAY_SECONDS",
    "MAX_FILTER_DEPTH",
    "MAX_FILTER_LENGTH",
    "MAX_FILTER_TERMS",
    "MAX_FILTER_VALUES",
    "MAX_HEADER_BYTES",
    "MAX_JSON_DEPTH",
    "MAX_OFFSET",
    "MAX_PAGE_SIZE",
    "MAX_SORTERS",
    "MAX_SUBTASKS",
    "MAX_SUBTASK_DEPTH",
    "MAX_TEXT_LENGTH",
    "InputRejected",
    "check_int",
    "check_json",
    "check_json_each",
    "check_text",
    "limit",
    "plain_json",
    "to_utc",
]

# --- queries (fixed) ----------------------------------------------------------------------------
MAX_FILTER_LENGTH = 4096  # characters in a `filters` expression
MAX_FILTER_DEPTH = 16  # nesting of parentheses and `not` in a filter
MAX_FILTER_TERMS = 64  # comparisons in a filter
MAX_FILTER_VALUES = 256  # values in a filter (the lists of `in` and `ca` included)
MAX_SORTERS = 8  # keys in `sorters`
MAX_PAGE_SIZE = 250  # `limit` (v2024) and `per-page` (v2)
MAX_CLIENT_PAGE_SIZE = 1000  # `limit` of the client dialect (/taskstatus/v1)
MAX_OFFSET = 1_000_000_000  # `offset` (v2024), (page - 1) * per-page (v2)

# --- stored values (fixed) ------------------------------------------------------------------------
MAX_JSON_DEPTH = 32  # nesting of arrays and objects in arguments, attributes, patch values
MAX_TEXT_LENGTH = 65_536  # characters in one string of a request (ids, names, descriptions)
INT64_MIN, INT64_MAX = -(2**63), 2**63 - 1  # every integer read, anywhere
INT32_MIN, INT32_MAX = -(2**31), 2**31 - 1  # a task's priority and max_attempts (PostgreSQL int4)
MAX_DELAY_SECONDS = 100 * 365 * 86_400  # how far in the future a task may be scheduled

# --- connections (defaults of settings of the same name) ------------------------------------
MAX_BODY_BYTES = 1_048_576  # max_body_bytes: larger bodies get a 413
MAX_HEADER_BYTES = 16_384  # max_header_bytes: request line and headers; larger get a 431
HEADER_TIMEOUT = 10.0  # header_timeout: seconds from the first byte to the last header
BODY_TIMEOUT = 30.0  # body_timeout: seconds from the headers to the end of the body

# --- submissions (defaults of settings of the same name) ------------------------------------
MAX_SUBTASK_DEPTH = 8  # max_subtask_depth: levels of parents above a task
MAX_SUBTASKS = 1000  # max_subtasks: subtasks of one task


def limit(name: str, value: object) -> str:
    """How a refusal names the limit it applied: ``limit: filter-depth = 16``."""
    return f"limit: {name} = {value}"


class InputRejected(TaskStatusError):
    """Input that no store may keep, or past a limit; the message says what and where.
    Not a ValueError on purpose: raised in a pydantic validator it reaches the caller as it
    is, not wrapped in an error that quotes the (unprintable) input."""


def _text_problem(value: str) -> str | None:
    """Why no backend could store `value` unchanged (None: every one can): the text rule of
    `check_text` and `plain_json`."""
    if "\x00" in value:
        return "contains a NUL character, which text cannot hold"
    if len(value) > MAX_TEXT_LENGTH:
        return f"longer than {MAX_TEXT_LENGTH} characters ({limit('text-length', MAX_TEXT_LENGTH)})"
    if not value.isascii():
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            return "contains a lone surrogate, which is not UTF-8"
    return None


def check_text(value: str, where: str) -> str:
    """`value` if every backend can store it unchanged, else InputRejected."""
    problem = _text_problem(value)
    if problem is not None:
        raise InputRejected(f"{where}: {problem}")
    return value


def check_int(value: int, where: str, *, bits: int = 64) -> int:
    """`value` if it fits a signed integer of `bits` (64, or 32), else InputRejected."""
    low, high = (INT64_MIN, INT64_MAX) if bits == 64 else (INT32_MIN, INT32_MAX)
    if not low <= value <= high:
        raise InputRejected(f"{where}: the integer is outside the {bits}-bit range")
    return value


def check_json(value: Any, where: str, _depth: int = 0) -> Any:
    """`value` (a JSON value) if every backend can store it unchanged, else InputRejected."""
    if isinstance(value, str):
        check_text(value, where)
    elif isinstance(value, bool) or value is None:
        pass
    elif isinstance(value, int):
        check_int(value, where)
    elif isinstance(value, float):
        if not math.isfinite(value):
            raise InputRejected(f"{where}: {value} is not a JSON number")
    elif isinstance(value, Mapping | list | tuple):
        if _depth >= MAX_JSON_DEPTH:
            raise InputRejected(
                f"{where}: nested deeper than {MAX_JSON_DEPTH} levels "
                f"({limit('json-depth', MAX_JSON_DEPTH)})"
            )
        if isinstance(value, Mapping):
            for key, item in value.items():
                if not isinstance(key, str):
                    raise InputRejected(f"{where}: object keys must be strings")
                path = f"{where}.{key}"
                check_text(key, path)
                check_json(item, path, _depth + 1)
        else:
            for i, item in enumerate(value):
                check_json(item, f"{where}[{i}]", _depth + 1)
    else:
        raise InputRejected(f"{where}: {type(value).__name__} is not a JSON value")
    return value


def plain_json(value: Any, _depth: int = 0) -> bool:
    """True when `value` is built of the exact types dict, list, str, int, float, bool and
    None alone (no subclass, no other Mapping or sequence) and `check_json` accepts it.

    Walking such a value, or checking it against a JSON schema, runs the interpreter's code
    and nothing else (no method of the caller's), so it cannot change while it is checked:
    what lets a batch check a value given several times (the same object) once. False says
    nothing more than "not known to be both"; `check_json` decides."""
    t = type(value)
    if t is str:
        return _text_problem(value) is None
    if t is int:
        return bool(INT64_MIN <= value <= INT64_MAX)
    if t is float:
        return math.isfinite(value)
    if value is None or t is bool:
        return True
    if t is dict:
        if _depth >= MAX_JSON_DEPTH:
            return False
        for key, item in value.items():
            if (
                type(key) is not str
                or _text_problem(key) is not None
                or not plain_json(item, _depth + 1)
            ):
                return False
        return True
    if t is list:
        if _depth >= MAX_JSON_DEPTH:
            return False
        return all(plain_json(item, _depth + 1) for item in value)
    return False


def check_json_each(values: Sequence[Any], where: str) -> None:
    """`check_json` of every value, faster: a plain value (`plain_json`) is walked without
    building the paths of an error message (check_json builds the message when it fails), and
    one given again (the same object) is not walked again while every value before it was
    plain, when nothing but the interpreter ran since it was checked."""
    checked: dict[int, Any] | None = {}  # id -> the value (held, so that no id is reused)
    for value in values:
        if checked is not None and id(value) in checked:
            continue
        if plain_json(value):
            if checked is not None:
                checked[id(value)] = value
            continue
        check_json(value, where)  # raises, or a value that is not plain but storable
        checked = None  # checking it may have run the caller's code: no more skipping


def to_utc(value: datetime, where: str) -> datetime:
    """`value` in UTC; InputRejected when it has no time zone or falls off the calendar
    there (9999-12-31T23:00:00-05:00 is in the year 10000 in UTC)."""
    if value.tzinfo is None:
        raise InputRejected(f"{where}: needs a time zone (Z or +hh:mm)")
    try:
        return value.astimezone(UTC)
    except OverflowError:
        raise InputRejected(
            f"{where}: {value.isoformat()} is outside the calendar in UTC"
        ) from None
