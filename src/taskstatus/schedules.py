"""Schedules: a handler, its arguments and when to run it (a cron expression in a time zone, or
an interval), and which firings are due. No I/O: the store keeps schedules and their firings,
taskstatus.scheduling fires them.

Cron expressions are read by croniter (maintained under pallets-eco), not by a parser of our
own. cronsim (Healthchecks' parser) was the other candidate: smaller, with Debian cron's DST
behaviour, but it refuses a seconds field by design, and the issue asks for one; croniter reads
5 fields plus an optional leading seconds field (Quartz's order), works with zoneinfo times, and
is the parser Airflow and many schedulers use. DST: a wall time skipped by a spring-forward
fires at the first time after the gap, one repeated by a fall-back fires once.

A firing time is the time the schedule names (not when a node noticed it): the store keeps one
task per (schedule, firing time), so every node may try to fire and exactly one task results.
"""

from __future__ import annotations

import enum
import math
import re
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError, available_timezones

from croniter import CroniterError, croniter

from taskstatus.errors import NotFound
from taskstatus.limits import InputRejected, check_json, check_text

__all__ = [
    "MAX_CATCH_UP",
    "MIN_INTERVAL",
    "Missed",
    "Overlap",
    "Schedule",
    "ScheduleNotFound",
    "check_cron",
    "check_name",
    "check_timezone",
    "due_firings",
    "first_fire",
    "next_fires",
    "patch_between",
    "schedule_document",
    "schedule_from_document",
]

# At most this many missed firings are caught up (policy `all`); older ones are skipped.
MAX_CATCH_UP = 100
MIN_INTERVAL = 1.0  # seconds
MAX_INTERVAL = 366 * 86400.0
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.:-]{0,127}")


class Missed(enum.StrEnum):
    """What to do about firings missed while no node ran: fire once now, or each of them."""

    SKIP = "skip"
    ALL = "all"


class Overlap(enum.StrEnum):
    """Whether a firing may start while the schedule's previous task is still pending."""

    ALLOW = "allow"
    SKIP = "skip"


class ScheduleNotFound(NotFound):
    def __init__(self, name: str) -> None:
        self.task_id = name
        Exception.__init__(self, f"no schedule named {name}")


@dataclass(frozen=True, slots=True)
class Schedule:
    """A schedule: `cron` (with `timezone`) or `every` seconds. `next_fire` is the next firing
    time (None while paused: it is computed again on resume); `last_fire` and `last_task_id`
    are those of the latest firing that made a task."""

    name: str
    handler: str
    arguments: dict[str, Any]
    cron: str | None = None
    every: float | None = None
    timezone: str = "UTC"
    missed: Missed = Missed.SKIP
    overlap: Overlap = Overlap.ALLOW
    paused: bool = False
    next_fire: datetime | None = None
    last_fire: datetime | None = None
    last_task_id: str | None = None
    created: datetime | None = None
    modified: datetime | None = None
    version: int = 1

    def same_plan(self, other: Schedule) -> bool:
        """Whether `other` fires the same task at the same times (what a worker start
        re-declares: an unchanged schedule keeps its next firing and its pause)."""
        return (self.handler, self.arguments, self.cron, self.every, self.timezone) == (
            other.handler,
            other.arguments,
            other.cron,
            other.every,
            other.timezone,
        ) and (self.missed, self.overlap) == (other.missed, other.overlap)

    def checked(self) -> Schedule:
        """This schedule if every field is valid, else InputRejected saying which."""
        check_name(self.name)
        check_text(self.handler, "handler")
        check_json(self.arguments, "arguments")
        if not isinstance(self.arguments, dict):
            raise InputRejected("arguments: must be a JSON object")
        if (self.cron is None) == (self.every is None):
            raise InputRejected("schedule: give either cron or every (seconds), not both")
        if self.cron is not None:
            check_cron(self.cron)
        if self.every is not None:
            check_every(self.every)
        check_timezone(self.timezone)
        try:
            missed, overlap = Missed(self.missed), Overlap(self.overlap)
        except ValueError as e:
            raise InputRejected(f"schedule: {e} (missed: skip|all, overlap: allow|skip)") from None
        return replace(self, missed=missed, overlap=overlap)


def check_name(name: str) -> str:
    if not isinstance(name, str) or not _NAME.fullmatch(name):
        raise InputRejected(
            f"name: {name!r} is not a schedule name (1-128 letters, digits, _ . : -, "
            "starting with a letter or digit)"
        )
    return name


def check_cron(expr: str) -> str:
    """`expr` if it is a cron expression of 5 fields, or 6 with seconds first."""
    check_text(expr, "cron")
    fields = expr.split()
    if len(fields) not in (5, 6):
        raise InputRejected(
            f"cron: {expr!r} has {len(fields)} fields; give 5 (minute hour day month weekday) "
            "or 6 (seconds first)"
        )
    try:
        croniter(expr, datetime(2000, 1, 1, tzinfo=UTC), second_at_beginning=True)
    except (CroniterError, ValueError, KeyError, TypeError) as e:
        raise InputRejected(f"cron: {expr!r} is not a valid cron expression: {e}") from None
    return expr


def check_every(seconds: float) -> float:
    if (
        isinstance(seconds, bool)
        or not isinstance(seconds, int | float)
        or not math.isfinite(seconds)
        or not MIN_INTERVAL <= seconds <= MAX_INTERVAL
    ):
        raise InputRejected(
            f"every: {seconds!r} is not an interval from {MIN_INTERVAL:g} to {MAX_INTERVAL:g} s"
        )
    return float(seconds)


def check_timezone(name: str) -> ZoneInfo:
    try:
        if not isinstance(name, str) or name not in _zones():
            raise ZoneInfoNotFoundError(name)
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise InputRejected(f"timezone: unknown time zone {name!r} (an IANA name)") from None


_ZONES: set[str] = set()


def _zones() -> set[str]:
    if not _ZONES:
        _ZONES.update(available_timezones(), {"UTC"})
    return _ZONES


def _cron(s: Schedule, start: datetime) -> croniter:
    assert s.cron is not None
    local = start.astimezone(ZoneInfo(s.timezone))
    return croniter(s.cron, local, second_at_beginning=True)


def first_fire(s: Schedule, now: datetime) -> datetime:
    """The first firing time after `now` (a new, changed or resumed schedule)."""
    if s.every is not None:
        return now + timedelta(seconds=s.every)
    nxt: datetime = _cron(s, now).get_next(datetime)
    return nxt.astimezone(UTC)


def next_fires(s: Schedule, count: int, now: datetime) -> list[datetime]:
    """The next `count` firing times (from its next firing, or after `now`)."""
    start = s.next_fire or first_fire(s, now)
    if s.every is not None:
        return [start + timedelta(seconds=s.every * i) for i in range(count)]
    fires = [start]
    while len(fires) < count:
        fires.append(_after(s, fires[-1], fires[-1]))
    return fires


def due_firings(s: Schedule, now: datetime) -> tuple[list[datetime], datetime]:
    """The firing times due at `now` (oldest first) and the next firing time after them.

    `skip` fires the latest due time only (once, now, whatever was missed); `all` fires every
    due time, at most MAX_CATCH_UP of them (the latest). Nothing is due before `next_fire`."""
    first = s.next_fire
    if first is None or first > now:
        return [], first or first_fire(s, now)
    want = 1 if s.missed is Missed.SKIP else MAX_CATCH_UP
    if s.every is not None:
        step = timedelta(seconds=s.every)
        last = math.floor((now - first) / step)  # index of the latest due firing
        times = [first + step * i for i in range(max(0, last - want + 1), last + 1)]
        return times, first + step * (last + 1)
    # Walk back from now: bounded by `want`, however long the schedule was missed.
    back = _cron(s, now + timedelta(microseconds=1))
    fires: list[datetime] = []
    while len(fires) < want:
        t: datetime = back.get_prev(datetime).astimezone(UTC)
        if t < first:
            break
        if fires and _wall(s, t) == _wall(s, fires[-1]):
            fires[-1] = t  # a wall time repeated by a fall-back fires once, the first time
            continue
        fires.append(t)
    fires.reverse()
    if not fires:  # next_fire was not a firing time of the expression (it was changed)
        fires = [first]
    return fires, _after(s, max(now, fires[-1]), fires[-1])


def _wall(s: Schedule, t: datetime) -> datetime:
    return t.astimezone(ZoneInfo(s.timezone)).replace(tzinfo=None)


def _after(s: Schedule, start: datetime, last: datetime | None) -> datetime:
    """The cron firing after `start` that is not the repeat of `last`'s wall time."""
    it = _cron(s, start)
    while True:
        nxt: datetime = it.get_next(datetime).astimezone(UTC)
        if last is None or _wall(s, nxt) != _wall(s, last):
            return nxt


# --- as JSON (the HTTP API, the CLI's --json) -------------------------------------------------

# The fields a JSON Patch may change; the others are the store's.
EDITABLE = ("handler", "arguments", "cron", "every", "timezone", "missed", "overlap", "paused")


def _iso(value: datetime | None) -> str | None:
    return None if value is None else value.astimezone(UTC).isoformat().replace("+00:00", "Z")


def schedule_document(s: Schedule, now: datetime, upcoming: int = 5) -> dict[str, Any]:
    """The schedule as JSON, with its next `upcoming` firing times (none while paused)."""
    return {
        "name": s.name,
        "handler": s.handler,
        "arguments": s.arguments,
        "cron": s.cron,
        "every": s.every,
        "timezone": s.timezone,
        "missed": s.missed.value,
        "overlap": s.overlap.value,
        "paused": s.paused,
        "nextFire": _iso(s.next_fire),
        "nextFires": [] if s.paused else [_iso(t) for t in next_fires(s, upcoming, now)],
        "lastFire": _iso(s.last_fire),
        "lastTaskId": s.last_task_id,
        "launcher": f"schedule:{s.name}",
        "created": _iso(s.created),
        "modified": _iso(s.modified),
        "version": s.version,
    }


def _time(value: Any) -> datetime | None:
    return None if value is None else datetime.fromisoformat(value).astimezone(UTC)


def schedule_from_document(doc: dict[str, Any]) -> Schedule:
    """The schedule `schedule_document` wrote (what the remote client reads); the derived
    fields (nextFires, launcher) are dropped."""
    every = doc.get("every")
    return Schedule(
        name=doc["name"],
        handler=doc["handler"],
        arguments=dict(doc.get("arguments") or {}),
        cron=doc.get("cron"),
        every=None if every is None else float(every),
        timezone=doc.get("timezone") or "UTC",
        missed=Missed(doc.get("missed") or Missed.SKIP),
        overlap=Overlap(doc.get("overlap") or Overlap.ALLOW),
        paused=bool(doc.get("paused")),
        next_fire=_time(doc.get("nextFire")),
        last_fire=_time(doc.get("lastFire")),
        last_task_id=doc.get("lastTaskId"),
        created=_time(doc.get("created")),
        modified=_time(doc.get("modified")),
        version=int(doc.get("version") or 1),
    )


def _plain(value: Any) -> Any:
    return value.value if isinstance(value, enum.Enum) else value


def patch_between(old: Schedule, new: Schedule, *, guard: bool = False) -> list[dict[str, Any]]:
    """The JSON Patch that turns `old`'s editable fields into `new`'s (replace operations of
    the fields that differ), for the remote client's `update`. With `guard`, test operations
    first: the patch fails if any editable field is no longer `old`'s."""
    ops: list[dict[str, Any]] = []
    if guard:
        ops += [{"op": "test", "path": f"/{f}", "value": _plain(getattr(old, f))} for f in EDITABLE]
    for f in EDITABLE:
        before, after = getattr(old, f), getattr(new, f)
        if before != after:
            ops.append({"op": "replace", "path": f"/{f}", "value": _plain(after)})
    return ops


def patched(s: Schedule, operations: Any) -> Schedule:
    """`s` with a JSON Patch (RFC 6902) applied to its editable fields; InputRejected if
    the patch is malformed, fails, or touches another field. The result is not yet checked."""
    import jsonpatch  # (jsonpatch and jsonpointer are pure Python)
    import jsonpointer

    if not isinstance(operations, list) or not all(isinstance(o, dict) for o in operations):
        raise InputRejected("body: a JSON Patch is an array of operations")
    for op in operations:
        path = op.get("path")
        top = path.split("/")[1] if isinstance(path, str) and path.startswith("/") else None
        if top not in EDITABLE:
            raise InputRejected(
                f"path: {path!r} cannot be changed (editable: {', '.join(EDITABLE)})"
            )
    doc = {f: getattr(s, f) for f in EDITABLE}
    doc["missed"], doc["overlap"] = s.missed.value, s.overlap.value
    try:
        new = jsonpatch.apply_patch(doc, operations)
    except (jsonpatch.JsonPatchException, jsonpointer.JsonPointerException, TypeError) as e:
        raise InputRejected(f"body: the patch does not apply: {e}") from None
    if set(new) != set(EDITABLE):
        raise InputRejected(f"body: a schedule has exactly the fields {', '.join(EDITABLE)}")
    if not isinstance(new["paused"], bool):
        raise InputRejected("paused: true or false")
    for text in ("handler", "timezone", "missed", "overlap"):
        if not isinstance(new[text], str):
            raise InputRejected(f"{text}: must be text")
    if new["cron"] is not None and not isinstance(new["cron"], str):
        raise InputRejected("cron: must be text or null")
    return replace(s, **new)
