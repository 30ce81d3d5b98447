"""The Store protocol: what every backend (SQLite, PostgreSQL) does, and the values it trades in.

Stores are async. Worker paths are set-based and batched (claim N, finish N, report N in one
statement or transaction each); user paths go through `update`, which re-reads and re-applies a
change when a concurrent write got there first, so no write is lost. Every state change is
guarded by the lifecycle of `taskstatus.model`.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Protocol, runtime_checkable

from taskstatus.errors import ConflictError, NotFound, StoreError, StoreUnavailable
from taskstatus.limits_policy import HandlerLimits
from taskstatus.model import (
    CompletionStatus,
    Message,
    ReturnDetail,
    Task,
    TaskDefinition,
    TaskState,
)
from taskstatus.query import Expr, TaskField, TaskQuery
from taskstatus.schedules import Schedule

__all__ = [
    "ApiClient",
    "BlockingCreate",
    "ConflictError",
    "DeleteResult",
    "EventCallback",
    "Heartbeat",
    "NotFound",
    "Outcome",
    "Page",
    "Progress",
    "Recovered",
    "Store",
    "StoreError",
    "StoreLimits",
    "StoreUnavailable",
    "TaskEvent",
]


@dataclass(frozen=True, slots=True)
class StoreLimits:
    """How long the store waits for the database before it raises StoreUnavailable
    (TASKSTATUS_CONNECT_TIMEOUT, _POOL_TIMEOUT, _STATEMENT_TIMEOUT, _BUSY_TIMEOUT).

    `connect_timeout`: a new PostgreSQL connection (libpq counts whole seconds, at least 2);
    `pool_timeout`: a free pooled connection; `statement_timeout`: one statement on the
    server (and how long a silent peer is waited for, TCP's user timeout); `busy_timeout`:
    SQLite's wait for another process's write lock, which also bounds how long a write
    queues behind the others of this process."""

    connect_timeout: float = 3.0
    pool_timeout: float = 3.0
    statement_timeout: float = 30.0
    busy_timeout: float = 5.0


@dataclass(frozen=True, slots=True)
class Page:
    items: list[Task]
    total: int | None = None


@dataclass(frozen=True, slots=True)
class Progress:
    """A worker's coalesced report on a running task: the latest state plus new messages.
    With `attempt`, it is written only while the task is still at that attempt (the claim
    that started the run): a stale run's report never lands on a newer attempt."""

    task_id: str
    progress: str | None
    percent_complete: int
    messages: Sequence[Message] = ()
    attributes: Mapping[str, Any] | None = None
    returns: Sequence[ReturnDetail] | None = None
    attempt: int | None = None


@dataclass(frozen=True, slots=True)
class Outcome:
    """How a run ended. `state` QUEUED with `run_at` is a retry; the lifecycle guards the rest.
    With `attempt`, it is stored only while the task is still at that attempt (fencing)."""

    task_id: str
    state: TaskState
    completion_status: CompletionStatus | None
    progress: str | None = None
    percent_complete: int | None = None
    messages: Sequence[Message] = ()
    attributes: Mapping[str, Any] | None = None
    returns: Sequence[ReturnDetail] | None = None
    run_at: datetime | None = None
    attempt: int | None = None


@dataclass(frozen=True, slots=True)
class Heartbeat:
    """What a heartbeat learned: tasks to stop (cancel requested) and tasks no longer ours."""

    cancel: frozenset[str] = frozenset()
    lost: frozenset[str] = frozenset()


@dataclass(frozen=True, slots=True)
class Recovered:
    """Tasks whose lease expired: put back in the queue, dead, or cancelled (cancel requested)."""

    requeued: list[str] = field(default_factory=list)
    dead: list[str] = field(default_factory=list)
    cancelled: list[str] = field(default_factory=list)


@dataclass(frozen=True, slots=True)
class DeleteResult:
    """`deleted` ids; or, with subtasks and no force, nothing deleted and the subtasks."""

    deleted: list[str]
    blocked_by: list[Task] = field(default_factory=list)


@dataclass(frozen=True, slots=True)
class TaskEvent:
    """One entry of a task's event log: a change a client can see, numbered per task (`seq`
    1, 2, 3... in the order the changes were made), written in the change's own transaction.
    `kind` is one of EVENT_KINDS; `data` says what changed (v2024 field names; times as
    ISO-8601 text); `version` is the task's version once the change was made."""

    task_id: str
    seq: int
    kind: str
    version: int
    at: datetime
    data: Mapping[str, Any]


# Every kind of event, in the order one change lists its events; `completed` ends a task's log.
EVENT_KINDS = (
    "created",
    "progress",
    "message",
    "attributes",
    "launched",
    "cancel_requested",
    "retried",
    "released",
    "lease_lost",
    "deleted",
    "updated",
    "completed",
)
TERMINAL_EVENT = "completed"

# Told which tasks have new events: (task id, the first new seq) pairs, or None when some may
# have been missed (a lost connection): then every followed task should be read again.
EventCallback = Callable[[Sequence[tuple[str, int]] | None], None]


@dataclass(frozen=True, slots=True)
class ApiClient:
    """An OAuth2 client of the HTTP API. The secret is kept only as a salted hash."""

    id: str
    name: str
    secret_hash: str
    scopes: tuple[str, ...]
    owner: str
    created: datetime
    revoked: datetime | None = None


@runtime_checkable
class BlockingCreate(Protocol):
    """A store that can also store new tasks from a plain thread, outside its event loop:
    the synchronous `connect()` submits so, crossing no thread (one wake-up of the caller
    instead of three: issue 17's pickup)."""

    def create_many_blocking(self, tasks: Sequence[Task]) -> list[Task] | None:
        """`Store.create_many` on the calling thread (never the store's event loop); None
        when it cannot now (the store is not open, another thread is using its connection):
        then `create_many`. Raises what `create_many` raises."""


class Store(Protocol):
    """The durable task store. One implementation per database; one contract test suite."""

    url: str

    async def open(self) -> None:
        """Connect and apply pending schema migrations."""

    async def close(self) -> None: ...

    async def ping(self) -> None:
        """Raise if the database cannot be reached (readiness)."""

    # --- tasks -------------------------------------------------------------------------------

    async def create(self, task: Task) -> Task:
        """Store a new task. With an idempotency key already used by the same launcher,
        store nothing and return the task that has it."""

    async def create_many(self, tasks: Sequence[Task]) -> list[Task]:
        """`create` for a batch, in one transaction."""

    async def get(self, task_id: str, *, include_deleted: bool = False) -> Task | None: ...

    async def query(self, query: TaskQuery) -> Page: ...

    async def update(
        self,
        task_id: str,
        change: Callable[[Task], Task],
        *,
        expected_version: int | None = None,
    ) -> Task:
        """Apply `change` to the current task and store the result if nobody wrote in between;
        otherwise re-read and re-apply. With `expected_version`, a mismatch is a ConflictError.
        Raises NotFound, or whatever `change` raises (nothing is written then)."""

    async def children(self, task_id: str) -> list[Task]: ...

    async def tally(self, query: TaskQuery, field: TaskField) -> dict[Any, int]:
        """How many tasks matching `query.where` (deleted ones left out unless
        `include_deleted`) have each value of `field`, in one pass; with `count_cap`, over
        the first that many matching rows only (the counts then add up to the cap)."""

    async def finished_per_minute(
        self, where: Expr | None, since: datetime
    ) -> list[tuple[datetime, CompletionStatus, int]]:
        """How many tasks matching `where` (deleted ones left out) completed in each UTC
        minute from `since` on, per completion status: (minute, status, count) rows."""

    async def delete(self, task_id: str, *, force: bool, now: datetime) -> DeleteResult:
        """Soft-delete a task (and with force, its subtasks), cancelling any that still run."""

    async def purge(self, before: datetime) -> int:
        """Remove for good the finished or deleted tasks created before `before`."""

    # --- workers -------------------------------------------------------------------------------

    async def claim(
        self, worker_id: str, limit: int, lease_seconds: float, handlers: Sequence[str]
    ) -> list[Task]:
        """Lease up to `limit` due queued tasks of the given handlers, by priority then due time.
        The tasks as a run reads them: every field but the messages (none) and the definition
        summary (the handler's bare one); `get` reads a whole task."""

    async def heartbeat(
        self, worker_id: str, task_ids: Sequence[str], lease_seconds: float
    ) -> Heartbeat:
        """Extend the leases this worker still holds and say which tasks it must stop."""

    async def report(self, worker_id: str, reports: Sequence[Progress]) -> None:
        """Write coalesced progress of tasks this worker holds, in one transaction."""

    async def finish(self, worker_id: str, outcomes: Sequence[Outcome]) -> set[str]:
        """End runs this worker holds; returns the ids whose outcome was stored (a task
        cleared or lost meanwhile keeps what the other writer stored)."""

    async def release(self, worker_id: str, task_ids: Sequence[str]) -> None:
        """Hand leased tasks back to the queue unharmed (the attempt is not counted)."""

    async def recover(self, grace: float = 0.0) -> Recovered:
        """Requeue (or end as dead) the running tasks whose lease has stayed expired for
        `grace` seconds (PostgreSQL: and whose server has been up that long)."""

    async def wait_for_work(self, timeout: float) -> None:
        """Return when a task may have become due (a wake-up), or after `timeout` seconds."""

    # --- events -------------------------------------------------------------------------------

    async def events(self, cursors: Mapping[str, int], limit: int = 1000) -> list[TaskEvent]:
        """The events of each task after its cursor (a seq; 0 for all), in order, at most
        `limit` per task; tasks one after another."""

    def on_events(self, callback: EventCallback) -> Callable[[], None]:
        """Call `callback`, on this event loop, whenever events are committed by any process
        or node; returns the function that stops it. Costs nothing while nobody follows."""

    # --- task definitions and API clients -------------------------------------------------

    async def save_definitions(self, definitions: Sequence[TaskDefinition]) -> None:
        """Record the handlers a node can run, so that other nodes can validate submissions."""

    async def definition(self, name: str) -> TaskDefinition | None: ...

    async def definitions(self) -> list[TaskDefinition]: ...

    async def save_client(self, client: ApiClient) -> None: ...

    async def client(self, client_id: str) -> ApiClient | None: ...

    async def clients(self) -> list[ApiClient]: ...

    async def revoke_client(self, client_id: str, now: datetime) -> bool: ...

    async def setting(self, key: str, default: Callable[[], str]) -> str:
        """A cluster-wide value (a signing key, say): the stored one, or `default()` stored
        atomically by whichever node asks first."""

    # --- schedules and limits (taskstatus.schedules, taskstatus.limits_policy) --------------

    async def schedules(self) -> list[Schedule]: ...

    async def schedule(self, name: str) -> Schedule | None: ...

    async def create_schedule(self, schedule: Schedule) -> Schedule:
        """Store a new schedule; ConflictError if the name is taken."""

    async def save_schedule(
        self, schedule: Schedule, *, expected_version: int | None = None
    ) -> Schedule:
        """Create or replace a schedule (its firing history stays). With `expected_version`,
        replace only that version: ConflictError if it changed, NotFound if it is gone."""

    async def delete_schedule(self, name: str) -> bool:
        """Remove a schedule and its firings; False if there was none."""

    async def due_schedules(self, now: datetime) -> list[Schedule]:
        """The schedules, not paused, whose next firing is at or before `now`."""

    async def fire_schedule(
        self,
        schedule: Schedule,
        firings: Sequence[tuple[datetime, Task | None]],
        next_fire: datetime,
        now: datetime,
    ) -> list[Task]:
        """In one transaction: move `schedule` from its `next_fire` to `next_fire` (if no other
        node did first: then nothing), record each firing once per (schedule, firing time)
        and store the task of each firing recorded here (None: skipped). The tasks stored."""

    async def firings(self, name: str) -> list[tuple[datetime, str | None]]:
        """A schedule's firings, oldest first: (firing time, task id or None if skipped)."""

    async def handler_limits(self) -> list[HandlerLimits]: ...

    async def save_limits(self, limits: HandlerLimits) -> None:
        """Set a handler's limits for every node (empty limits remove them). Claims apply them
        from their next transaction on."""
