"""The options of a submission, from one definition: what `connect().submit`, the remote
client, a handler's `ctx.submit` and the CLI take as keywords besides the handler and its
arguments (`SubmitOptions`), with their defaults. No I/O.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime, timedelta
from typing import Any, TypedDict

from taskstatus.model import DEFAULT_MAX_ATTEMPTS, DEFAULT_PRIORITY, Target, TargetType, Task

__all__ = [
    "DEFAULT_MAX_ATTEMPTS",
    "DEFAULT_PRIORITY",
    "SubmitOptions",
    "SubtaskOptions",
    "TargetLike",
    "to_target",
]

TargetLike = Target | Mapping[str, Any] | None


class _Options(TypedDict, total=False):
    """Every key may be left out (its default: None, priority DEFAULT_PRIORITY).

    - target: what the task acts on, a Target or a mapping of its id, type and name;
    - idempotency_key: submitting the same key again returns the same task;
    - run_at: start no sooner: a timezone-aware time, or a delay;
    - priority: higher runs sooner;
    - max_attempts: runs allowed in all (default: the handler's, else DEFAULT_MAX_ATTEMPTS);
    - timeout: seconds a run may take (default: the handler's).
    """

    target: TargetLike
    idempotency_key: str | None
    run_at: datetime | timedelta | None
    priority: int
    max_attempts: int | None
    timeout: float | None


class SubmitOptions(_Options, total=False):
    """What `connect().submit`, the remote client and the CLI take; `parent`: the parent task
    (or its id)."""

    parent: Task | str | None


class SubtaskOptions(_Options, total=False):
    """What a handler's `ctx.submit` takes: SubmitOptions but the parent (the handler's task),
    and the subtask's name and description."""

    unique_name: str | None
    description: str | None


def to_target(value: TargetLike) -> Target | None:
    """A Target from a Target or a mapping of its id, type and name."""
    if value is None or isinstance(value, Target):
        return value
    kind = value.get("type")
    return Target(value.get("id"), TargetType(kind) if kind else None, value.get("name"))
