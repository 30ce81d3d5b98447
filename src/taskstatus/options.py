"""The options of a submission, from one definition: what `connect().submit`, the remote
client, a handler's `ctx.submit` and the CLI take as keywords besides the handler and its
arguments (`SubmitOptions`), with their defaults, and `Submission`, the whole of it as the
service takes it. No I/O.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, TypedDict

from taskstatus.model import (
    DEFAULT_MAX_ATTEMPTS,
    DEFAULT_PRIORITY,
    Target,
    TargetType,
    Task,
    TaskType,
)

__all__ = [
    "DEFAULT_MAX_ATTEMPTS",
    "DEFAULT_PRIORITY",
    "Submission",
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


@dataclass(frozen=True, slots=True)
class Submission:
    """Options of a submission besides the handler and its arguments. The launcher defaults
    to the caller's owner."""

    launcher: str | None = None
    target: Target | None = None
    parent: Task | str | None = None
    idempotency_key: str | None = None
    run_at: datetime | timedelta | None = None
    priority: int = DEFAULT_PRIORITY
    max_attempts: int | None = None
    timeout: float | None = None
    type: TaskType = TaskType.QUEUED_TASK
    unique_name: str | None = None
    description: str | None = None

    @classmethod
    def of(cls, options: SubmitOptions | SubtaskOptions, **fields: Any) -> Submission:
        """The submission of `options` (what the interfaces take as keywords) and `fields`
        (the launcher, the type...)."""
        given = dict(options)
        target = to_target(options.get("target"))
        return cls(**{**given, "target": target, **fields})
