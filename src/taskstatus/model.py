"""The task model: one record per task, its lifecycle and the legal transitions. No I/O.

Every dialect (v2024 TaskStatus, v2 CRUD, Jira) is a view of `Task`; every state change, whether
made by a worker, a user or the store's recovery, is checked against `TRANSITIONS` here. The
stores derive their SQL guards from `sources()`, so the rule lives in this one table.
"""

from __future__ import annotations

import enum
import math
import os
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import MISSING, dataclass, field, fields, replace
from datetime import datetime
from typing import Any

__all__ = [
    "DEFAULT_MAX_ATTEMPTS",
    "DEFAULT_PRIORITY",
    "LEASED_STATES",
    "PENDING_STATES",
    "TERMINAL_STATES",
    "TRANSITIONS",
    "CompletionStatus",
    "IllegalTransition",
    "InvalidTaskChange",
    "Message",
    "MessageType",
    "ReturnDetail",
    "Target",
    "TargetType",
    "Task",
    "TaskDefinition",
    "TaskDefinitionSummary",
    "TaskState",
    "TaskType",
    "cancel",
    "check_completion",
    "check_percent",
    "check_transition",
    "clear",
    "new_id",
    "new_ids",
    "new_task",
    "new_tasks",
    "sources",
    "state_for_completion",
    "with_message",
]


# A submission's defaults (taskstatus.options.SubmitOptions): higher priority runs sooner; a
# task runs at most this many times unless it or its handler says otherwise.
DEFAULT_PRIORITY = 0
DEFAULT_MAX_ATTEMPTS = 3


class TaskState(enum.StrEnum):
    """Where a task is in its life. The names are the lifecycle of DESIGN.md."""

    QUEUED = "queued"
    RUNNING = "running"
    CANCEL_REQUESTED = "cancel_requested"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELLED = "cancelled"
    DEAD = "dead"

    @property
    def terminal(self) -> bool:
        return self in TERMINAL_STATES


class CompletionStatus(enum.StrEnum):
    """The v2024 outcome; null (None) while a task is pending."""

    SUCCESS = "SUCCESS"
    WARNING = "WARNING"
    ERROR = "ERROR"
    TERMINATED = "TERMINATED"
    TEMPERROR = "TEMPERROR"


class TaskType(enum.StrEnum):
    """How a task was launched: submitted, by a schedule, or accepted on import."""

    QUEUED_TASK = "QUEUED_TASK"
    QUARTZ = "QUARTZ"
    QPOC = "QPOC"


class TargetType(enum.StrEnum):
    APPLICATION = "APPLICATION"
    IDENTITY = "IDENTITY"


class MessageType(enum.StrEnum):
    INFO = "INFO"
    WARN = "WARN"
    ERROR = "ERROR"


TERMINAL_STATES: frozenset[TaskState] = frozenset(
    {TaskState.SUCCEEDED, TaskState.FAILED, TaskState.CANCELLED, TaskState.DEAD}
)
PENDING_STATES: frozenset[TaskState] = frozenset(TaskState) - TERMINAL_STATES
# The states in which a worker holds a lease on the task.
LEASED_STATES: frozenset[TaskState] = frozenset({TaskState.RUNNING, TaskState.CANCEL_REQUESTED})

# The lifecycle. queued -> succeeded/failed exists for the v2024 "clear a pending task" PATCH;
# cancel_requested -> succeeded/failed because a handler may finish before it sees the request.
TRANSITIONS: Mapping[TaskState, frozenset[TaskState]] = {
    TaskState.QUEUED: frozenset(
        {TaskState.RUNNING, TaskState.CANCELLED, TaskState.SUCCEEDED, TaskState.FAILED}
    ),
    TaskState.RUNNING: frozenset(
        {
            TaskState.QUEUED,  # retry after a retryable error, lease lost, or handed back
            TaskState.CANCEL_REQUESTED,
            TaskState.SUCCEEDED,
            TaskState.FAILED,
            TaskState.CANCELLED,
            TaskState.DEAD,  # lease lost with no attempts left
        }
    ),
    TaskState.CANCEL_REQUESTED: frozenset(
        {TaskState.CANCELLED, TaskState.SUCCEEDED, TaskState.FAILED}
    ),
    TaskState.SUCCEEDED: frozenset(),
    TaskState.FAILED: frozenset(),
    TaskState.CANCELLED: frozenset(),
    TaskState.DEAD: frozenset(),
}

# Which completion statuses each state may carry; pending states carry none.
_STATUSES: Mapping[TaskState, frozenset[CompletionStatus]] = {
    TaskState.SUCCEEDED: frozenset({CompletionStatus.SUCCESS, CompletionStatus.WARNING}),
    TaskState.FAILED: frozenset({CompletionStatus.ERROR, CompletionStatus.TEMPERROR}),
    TaskState.CANCELLED: frozenset({CompletionStatus.TERMINATED}),
    TaskState.DEAD: frozenset({CompletionStatus.TEMPERROR}),
}


class IllegalTransition(Exception):
    """A state change the lifecycle does not allow; nothing was changed."""

    def __init__(
        self,
        current: TaskState,
        target: TaskState,
        task_id: str | None = None,
        reason: str | None = None,
    ) -> None:
        self.current = current
        self.target = target
        self.task_id = task_id
        where = f"task {task_id} " if task_id else "the task "
        super().__init__(reason or f"{where}cannot go from {current.value} to {target.value}")


class InvalidTaskChange(ValueError):
    """A change that breaks a field's rule (a percentComplete of 140, say); `path` names it."""

    def __init__(self, path: str, message: str) -> None:
        self.path = path
        super().__init__(f"{path}: {message}")


def check_transition(current: TaskState, target: TaskState, task_id: str | None = None) -> None:
    """Raise IllegalTransition unless the lifecycle allows current -> target."""
    if target not in TRANSITIONS[current]:
        raise IllegalTransition(current, target, task_id)


def sources(target: TaskState) -> frozenset[TaskState]:
    """The states from which `target` may be entered (what a store's SQL guard allows)."""
    return frozenset(s for s, targets in TRANSITIONS.items() if target in targets)


def state_for_completion(status: CompletionStatus) -> TaskState:
    """The terminal state a user's completion status puts a pending task in."""
    return {
        CompletionStatus.SUCCESS: TaskState.SUCCEEDED,
        CompletionStatus.WARNING: TaskState.SUCCEEDED,
        CompletionStatus.ERROR: TaskState.FAILED,
        CompletionStatus.TEMPERROR: TaskState.FAILED,
        CompletionStatus.TERMINATED: TaskState.CANCELLED,
    }[status]


def check_completion(state: TaskState, status: CompletionStatus | None) -> None:
    """Raise InvalidTaskChange unless `status` is one `state` may carry."""
    allowed = _STATUSES.get(state, frozenset())
    if (status is None and allowed) or (status is not None and status not in allowed):
        raise InvalidTaskChange(
            "completionStatus",
            f"{status.value if status else 'null'} does not fit a {state.value} task",
        )


# The hex digit that carries the RFC's variant (0b10) and 2 random bits, for a random one.
_VARIANT = {c: "89ab"[int(c, 16) & 3] for c in "0123456789abcdef"}


def new_ids(count: int) -> list[str]:
    """`count` task ids (see `new_id`) from one clock read and one os.urandom, in increasing
    order: a batch's ids share their millisecond (as its tasks share `created`), and sorted
    they keep the order of its rows, which is the order they are claimed in (what a clock read
    an id mostly gave; a SQLite worker's drain of such a batch: 547 k instructions a task
    with those ids, 540 k with these)."""
    head = f"{time.time_ns() // 1_000_000:012x}7"  # 48 bits of ms, version 7
    rand = os.urandom(10 * count).hex()  # 20 hex digits an id, 19 of them used (74 bits)
    variant = _VARIANT
    ids = [
        f"{head}{rand[i : i + 3]}{variant[rand[i + 3]]}{rand[i + 4 : i + 19]}"
        for i in range(0, 20 * count, 20)
    ]
    ids.sort()
    return ids


def new_id() -> str:
    """A task id: 32 lowercase hex digits, laid out as a UUIDv7 (RFC 9562): the creation time
    in milliseconds (48 bits), the version, 74 random bits. Ids made together sort together,
    so the stores' indexes keyed by task id (the tasks' key, the event log's) take a batch's
    rows on a few pages at their end; random ids put each row on a page of its own, which cost
    e2e 4-13 % (docs/benchmarks.md). One of `new_ids`, the one place of the layout."""
    return new_ids(1)[0]


@dataclass(frozen=True, slots=True)
class Target:
    """What a task acts on; `id` is what the v2024 filter calls sourceId."""

    id: str | None
    type: TargetType | None = None
    name: str | None = None


@dataclass(frozen=True, slots=True)
class Message:
    """One TaskStatus message. `key` is never null: the v2024 schema requires a string."""

    type: MessageType
    text: str
    key: str = ""
    parameters: tuple[Any, ...] | None = None
    locale: str = "en-US"


@dataclass(frozen=True, slots=True)
class ReturnDetail:
    """A labelled pointer into `attributes` (TaskReturnDetails)."""

    name: str
    attribute_name: str


@dataclass(frozen=True, slots=True)
class TaskDefinitionSummary:
    """The handler a task runs: executor is its import path, arguments its formal parameters."""

    id: str
    unique_name: str
    description: str
    parent_name: str
    executor: str
    arguments: Mapping[str, Any]


@dataclass(frozen=True, slots=True)
class TaskDefinition:
    """A registered handler as nodes share it: its summary, the JSON schema of its arguments,
    and the defaults a submission takes when it names none."""

    summary: TaskDefinitionSummary
    schema: Mapping[str, Any]
    max_attempts: int | None = None
    timeout: float | None = None

    @property
    def name(self) -> str:
        return self.summary.unique_name


@dataclass(frozen=True, slots=True)
class Task:
    """One task: every v2024 TaskStatus field plus what a runner needs."""

    id: str
    handler: str
    definition: TaskDefinitionSummary
    type: TaskType
    unique_name: str
    description: str
    launcher: str
    created: datetime
    modified: datetime
    state: TaskState = TaskState.QUEUED
    parent_name: str | None = None
    target: Target | None = None
    launched: datetime | None = None
    completed: datetime | None = None
    completion_status: CompletionStatus | None = None
    messages: tuple[Message, ...] = ()
    returns: tuple[ReturnDetail, ...] = ()
    attributes: Mapping[str, Any] = field(default_factory=dict)
    progress: str | None = None
    percent_complete: int = 0
    arguments: Mapping[str, Any] = field(default_factory=dict)
    parent_id: str | None = None
    priority: int = DEFAULT_PRIORITY
    run_at: datetime | None = None
    attempts: int = 0
    max_attempts: int = DEFAULT_MAX_ATTEMPTS
    timeout: float | None = None
    lease_owner: str | None = None
    lease_expires: datetime | None = None
    idempotency_key: str | None = None
    deleted_at: datetime | None = None
    version: int = 1

    @property
    def pending(self) -> bool:
        """True until the task has a completion status (what v2024 calls a pending task)."""
        return not self.state.terminal

    @property
    def terminal(self) -> bool:
        return self.state.terminal


def new_task(
    *,
    handler: str,
    definition: TaskDefinitionSummary,
    arguments: Mapping[str, Any],
    launcher: str,
    now: datetime,
    type: TaskType = TaskType.QUEUED_TASK,
    unique_name: str | None = None,
    description: str | None = None,
    target: Target | None = None,
    parent_id: str | None = None,
    parent_name: str | None = None,
    priority: int = DEFAULT_PRIORITY,
    run_at: datetime | None = None,
    max_attempts: int = DEFAULT_MAX_ATTEMPTS,
    timeout: float | None = None,
    idempotency_key: str | None = None,
    task_id: str | None = None,
) -> Task:
    """A queued task, checked: the one way tasks come into being (`new_tasks` makes its
    others from one of these). `task_id` is a `new_id()` unless given (`new_ids`)."""
    if max_attempts < 1:
        raise InvalidTaskChange("max_attempts", "must be at least 1")
    if timeout is not None and not (timeout > 0 and math.isfinite(timeout)):  # (NaN, inf too)
        raise InvalidTaskChange("timeout", "must be a positive number of seconds")
    if run_at is not None and run_at.tzinfo is None:
        raise InvalidTaskChange("run_at", "must be timezone-aware")
    return Task(
        id=task_id or new_id(),
        handler=handler,
        definition=definition,
        type=type,
        unique_name=unique_name or definition.unique_name,
        description=description if description is not None else definition.description,
        launcher=launcher,
        created=now,
        modified=now,
        target=target,
        arguments=dict(arguments),
        parent_id=parent_id,
        parent_name=parent_name,
        priority=priority,
        run_at=run_at or now,
        max_attempts=max_attempts,
        timeout=timeout,
        idempotency_key=idempotency_key,
    )


# Task's fields but those each new task gets of its own (id, arguments, idempotency key and
# what a default factory makes), with a setter for each: `new_tasks` fills its tasks' slots
# from one checked task (a few times cheaper than the frozen dataclass's __init__).
_OWN = frozenset({"id", "arguments", "idempotency_key"})
_SHARED: tuple[tuple[str, Callable[[Task, Any], None]], ...] = tuple(
    (f.name, getattr(Task, f.name).__set__)
    for f in fields(Task)
    if f.name not in _OWN and f.default_factory is MISSING
)
_FRESH: tuple[tuple[Callable[[Task, Any], None], Callable[[], Any]], ...] = tuple(
    (getattr(Task, f.name).__set__, f.default_factory)
    for f in fields(Task)
    if f.name not in _OWN and f.default_factory is not MISSING
)
_SET_ID = getattr(Task, "id").__set__  # noqa: B009 (the slot's descriptor, not the field)
_SET_ARGUMENTS = getattr(Task, "arguments").__set__  # noqa: B009
_SET_KEY = getattr(Task, "idempotency_key").__set__  # noqa: B009


def new_tasks(
    *,
    handler: str,
    definition: TaskDefinitionSummary,
    arguments: Sequence[Mapping[str, Any]],
    launcher: str,
    now: datetime,
    type: TaskType = TaskType.QUEUED_TASK,
    unique_name: str | None = None,
    description: str | None = None,
    target: Target | None = None,
    parent_id: str | None = None,
    parent_name: str | None = None,
    priority: int = DEFAULT_PRIORITY,
    run_at: datetime | None = None,
    max_attempts: int = DEFAULT_MAX_ATTEMPTS,
    timeout: float | None = None,
    idempotency_keys: Sequence[str | None] | None = None,
) -> list[Task]:
    """`new_task` of each of `arguments` (each task gets a copy of its own) and of
    `idempotency_keys` (none when not given), alike in everything else: the first made and
    checked by new_task, the others filled from it (ids from one `new_ids`)."""
    if not arguments:
        return []
    keys = [None] * len(arguments) if idempotency_keys is None else idempotency_keys
    if len(keys) != len(arguments):
        raise ValueError("one idempotency key (or None) for each task")
    ids = new_ids(len(arguments))
    first = new_task(
        handler=handler,
        definition=definition,
        arguments=arguments[0],
        launcher=launcher,
        now=now,
        type=type,
        unique_name=unique_name,
        description=description,
        target=target,
        parent_id=parent_id,
        parent_name=parent_name,
        priority=priority,
        run_at=run_at,
        max_attempts=max_attempts,
        timeout=timeout,
        idempotency_key=keys[0],
        task_id=ids[0],
    )
    shared = [(setter, getattr(first, name)) for name, setter in _SHARED]
    tasks = [first]
    for task_id, args, key in zip(ids[1:], arguments[1:], keys[1:], strict=True):
        task: Task = object.__new__(Task)
        for setter, value in shared:
            setter(task, value)
        for setter, factory in _FRESH:
            setter(task, factory())
        _SET_ID(task, task_id)
        _SET_ARGUMENTS(task, dict(args))
        _SET_KEY(task, key)
        tasks.append(task)
    return tasks


def _to(task: Task, target: TaskState, now: datetime, **changes: Any) -> Task:
    """The task in `target`, checked against the lifecycle and the completion-status rule."""
    check_transition(task.state, target, task.id)
    status = changes.get("completion_status", task.completion_status)
    check_completion(target, status)
    if target.terminal:
        changes.setdefault("completed", now)
        changes.setdefault("lease_owner", None)
        changes.setdefault("lease_expires", None)
    return replace(task, state=target, modified=now, **changes)


def cancel(task: Task, now: datetime) -> Task:
    """Cancel: a queued task ends at once; a running one is asked to stop. Idempotent."""
    if task.state is TaskState.CANCEL_REQUESTED:
        return task
    if task.terminal:
        raise IllegalTransition(
            task.state,
            TaskState.CANCELLED,
            task.id,
            f"task {task.id} has already finished ({task.state.value}); it cannot be cancelled",
        )
    if task.state is TaskState.QUEUED:
        return _to(task, TaskState.CANCELLED, now, completion_status=CompletionStatus.TERMINATED)
    return _to(task, TaskState.CANCEL_REQUESTED, now)


def clear(task: Task, status: CompletionStatus, completed: datetime | None, now: datetime) -> Task:
    """Clear a pending task by hand (the v2024 PATCH): it becomes terminal with `status`.

    A worker still running it loses its lease and is told to stop by its next heartbeat.
    """
    target = state_for_completion(status)
    return _to(task, target, now, completion_status=status, completed=completed or now)


def with_message(task: Task, message: Message, now: datetime) -> Task:
    return replace(task, messages=(*task.messages, message), modified=now)


def check_percent(value: object, path: str = "percentComplete") -> int:
    """A percentage is an integer from 0 to 100 (bools are not integers here)."""
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= 100:
        raise InvalidTaskChange(path, f"must be an integer from 0 to 100, not {value!r}")
    return value
