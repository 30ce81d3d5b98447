"""The one way in: the operations every interface offers (the HTTP dialects, the event
streams, the CLI, ``connect()``), each called with who is asking (`taskstatus.caller.Caller`),
each rule once.

- Visibility and retention: a caller sees a task when it was created at or after the caller's
  cutoff and, without the admin scope, when the caller's owner launched it. Anything else is
  answered as if it did not exist (NotFound), so a caller cannot learn which ids other owners
  have; lists are narrowed the same way.
- Submitting: the launcher is the caller's owner unless given; only an admin may name another
  (Forbidden). The handler is resolved (this process's registry first, then the definitions
  other nodes stored), the arguments are validated against it, and nothing is stored when
  either fails. A parent must be a task the caller sees.
- Changes (cancel, clear, a JSON Patch, a field edit) run inside the store's optimistic update,
  on the task as it is, through the lifecycle in taskstatus.model; arguments and target change
  only while the task is queued (NotQueued). Deleting a task with subtasks needs `force`
  (HasSubtasks otherwise, and nothing is deleted).

The event hub (`events`) streams the events of a task the caller was shown by `get`. The
visibility rule itself is taskstatus.visibility; a submission's options taskstatus.options.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import enum
import time
from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime, timedelta
from types import TracebackType
from typing import Any

from taskstatus.caller import Caller
from taskstatus.credentials import Clients
from taskstatus.errors import Forbidden, HasSubtasks, NotFound, UnknownHandler, WaitTimeout
from taskstatus.events import EventHub
from taskstatus.handlers import (
    REGISTRY,
    Handler,
    Registry,
    validate_many_with_schema,
    validate_with_schema,
)
from taskstatus.limits import (
    MAX_DELAY_SECONDS,
    InputRejected,
    check_int,
    check_json_each,
    check_text,
    limit,
    to_utc,
)
from taskstatus.model import (
    CompletionStatus,
    Target,
    Task,
    TaskDefinition,
    TaskState,
    cancel,
    clear,
    new_tasks,
)
from taskstatus.options import DEFAULT_MAX_ATTEMPTS, Submission
from taskstatus.patch import apply_patch
from taskstatus.query import Condition, Expr, Op, TaskField, TaskQuery, all_of
from taskstatus.store import make_store
from taskstatus.store.base import BlockingCreate, Page, Store, StoreLimits
from taskstatus.visibility import check_visible, visible, visible_task

__all__ = [
    "KEEP",
    "SUBMIT_FOR_ANOTHER",
    "Caller",
    "Keep",
    "NotQueued",
    "Submission",
    "TaskService",
    "utcnow",
    "visible",
    "visible_task",
]


SUBMIT_FOR_ANOTHER = "only a client with tasks:admin may submit for another user"

# A waiter that heard nothing for this long looks at the task anyway.
WAIT_SAFETY = 5.0


def utcnow() -> datetime:
    return datetime.now(UTC)


class Keep(enum.Enum):
    """The value of an `edit` argument that leaves its field as it is."""

    KEEP = "keep"


KEEP = Keep.KEEP


class NotQueued(InputRejected):
    """An edit of what only a queued task may change (its arguments, its target)."""

    def __init__(self, task: Task) -> None:
        self.task_id = task.id
        self.state = task.state
        super().__init__(
            f"arguments and target change only while the task is queued; it is {task.state}"
        )


def _check_storable(arguments: Sequence[Mapping[str, Any]], options: Submission) -> None:
    """InputRejected unless every backend can store the submission unchanged."""
    check_json_each(arguments, "arguments")
    for where, text in (
        ("launcher", options.launcher),
        ("idempotency_key", options.idempotency_key),
        ("unique_name", options.unique_name),
        ("description", options.description),
        ("target.id", options.target.id if options.target else None),
        ("target.name", options.target.name if options.target else None),
        ("parent", options.parent if isinstance(options.parent, str) else None),
    ):
        if text is not None:
            check_text(text, where)
    # stored as 32-bit integers (PostgreSQL's int4: a bulk COPY would wrap a larger one)
    check_int(options.priority, "priority", bits=32)
    if options.max_attempts is not None:
        check_int(options.max_attempts, "max_attempts", bits=32)
    if isinstance(options.run_at, datetime):
        to_utc(options.run_at, "run_at")
    elif isinstance(options.run_at, timedelta) and options.run_at > timedelta(
        seconds=MAX_DELAY_SECONDS
    ):
        raise InputRejected(f"run_at: more than {MAX_DELAY_SECONDS} s ahead")


def _check(
    definition: TaskDefinition, local: Handler | None, arguments: Mapping[str, Any]
) -> dict[str, Any]:
    """Validate with the local handler (its pydantic model) or the stored JSON schema."""
    if local is not None:
        return local.validate(arguments)
    return validate_with_schema(definition.name, definition.schema, arguments)


def _check_each(
    definition: TaskDefinition, local: Handler | None, arguments: Sequence[Mapping[str, Any]]
) -> list[dict[str, Any]]:
    """`_check` of each of `arguments`, in order (the first that fails raises)."""
    if local is not None:
        return local.validate_many(arguments)
    return validate_many_with_schema(definition.name, definition.schema, arguments)


class TaskService:
    """Task operations over one store, with the handlers this process knows. Open one with
    `TaskService.from_url` (``async with``), or over a store with the constructor."""

    def __init__(
        self,
        store: Store,
        registry: Registry = REGISTRY,
        *,
        clock: Callable[[], datetime] = utcnow,
        max_subtask_depth: int | None = None,
        max_subtasks: int | None = None,
    ) -> None:
        self.store = store
        # the store's insert from a plain thread, if it has one (submit_now)
        self._blocking = store if isinstance(store, BlockingCreate) else None
        self.registry = registry
        self.clock = clock
        # Unless given: the settings (TASKSTATUS_MAX_SUBTASK_DEPTH, TASKSTATUS_MAX_SUBTASKS),
        # so that workers and connect() hold to the same limits as the API.
        if max_subtask_depth is None or max_subtasks is None:
            from taskstatus.settings import Settings

            configured = Settings()
            max_subtask_depth = configured.max_subtask_depth
            max_subtasks = configured.max_subtasks
        self.max_subtask_depth = max_subtask_depth
        self.max_subtasks = max_subtasks
        self.events = EventHub(store)
        self.clients = Clients(store)

    @classmethod
    def from_url(
        cls,
        url: str,
        registry: Registry = REGISTRY,
        *,
        limits: StoreLimits | None = None,
        must_exist: bool = False,
        max_subtask_depth: int | None = None,
        max_subtasks: int | None = None,
    ) -> TaskService:
        """The service of the database at `url` (not yet opened: `open()`, or ``async
        with``); see `taskstatus.store.make_store`. `limits` default to the
        TASKSTATUS_*_TIMEOUT variables."""
        if limits is None:
            from taskstatus.settings import StoreSettings

            limits = StoreSettings().limits()
        store = make_store(url, limits=limits, must_exist=must_exist)
        return cls(store, registry, max_subtask_depth=max_subtask_depth, max_subtasks=max_subtasks)

    async def open(self) -> TaskService:
        """Open the store (applying migrations)."""
        await self.store.open()
        return self

    async def close(self) -> None:
        await self.store.close()

    async def __aenter__(self) -> TaskService:
        return await self.open()

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    async def ping(self) -> None:
        """Return when the database answers; StoreUnavailable (or the driver's error) if not."""
        await self.store.ping()

    async def definitions(self) -> list[TaskDefinition]:
        """The handlers registered by every node sharing the database."""
        return await self.store.definitions()

    async def publish_definitions(self) -> None:
        """Store this process's handler definitions so that every node can validate them."""
        await self.store.save_definitions([h.definition for h in self.registry])

    def _local(self, handler: Handler | str) -> Handler | None:
        """`handler` if this process has it (then its definition is the handler's own)."""
        if isinstance(handler, Handler):
            return handler
        check_text(handler, "handler")  # a NUL reaches no store: 400, not a driver error
        return self.registry.get(handler)

    async def resolve(self, handler: Handler | str) -> tuple[TaskDefinition, Handler | None]:
        """The definition of `handler`, and the local Handler when this process has it."""
        local = self._local(handler)
        if local is not None:
            return local.definition, local
        assert isinstance(handler, str)
        stored = await self.store.definition(handler)
        if stored is None:
            known = {*self.registry.names(), *(d.name for d in await self.store.definitions())}
            raise UnknownHandler(handler, sorted(known))
        return stored, None

    async def validate(
        self, handler: Handler | str, arguments: Mapping[str, Any]
    ) -> dict[str, Any]:
        """`arguments` as they will be stored, checked against the handler's schema."""
        return _check(*await self.resolve(handler), arguments)

    @staticmethod
    def _launched(caller: Caller, options: Submission) -> Submission:
        """`options` with their launcher: the caller's owner unless given (Forbidden when
        another is given without admin)."""
        launcher = options.launcher if options.launcher is not None else caller.owner
        if launcher != caller.owner and not caller.admin:
            raise Forbidden(f"launcher: {SUBMIT_FOR_ANOTHER}")
        return dataclasses.replace(options, launcher=launcher)

    async def _prepare(
        self,
        caller: Caller,
        handler: Handler | str,
        arguments: Sequence[Mapping[str, Any]],
        options: Submission,
    ) -> list[Task]:
        """Validated tasks ready to store, or Forbidden / UnknownHandler / InvalidArguments."""
        options = self._launched(caller, options)
        arguments = list(arguments)  # the caller's sequence read once
        _check_storable(arguments, options)
        definition, local = await self.resolve(handler)
        validated = _check_each(definition, local, arguments)
        parent = await self._parent(caller, options.parent)
        if parent is not None:
            await self._check_family(parent, len(arguments))
        return self._new_tasks(definition, validated, options, parent)

    def _prepare_now(
        self,
        caller: Caller,
        handler: Handler | str,
        arguments: Sequence[Mapping[str, Any]],
        options: Submission,
    ) -> list[Task] | None:
        """`_prepare` when it needs nothing from the store (a handler this process has, no
        parent), from any thread; None otherwise."""
        if options.parent is not None:
            return None
        options = self._launched(caller, options)
        arguments = list(arguments)  # the caller's sequence read once
        _check_storable(arguments, options)
        local = self._local(handler)
        if local is None:
            return None
        validated = local.validate_many(arguments)
        return self._new_tasks(local.definition, validated, options, None)

    def _new_tasks(
        self,
        definition: TaskDefinition,
        validated: Sequence[dict[str, Any]],
        options: Submission,
        parent: Task | None,
    ) -> list[Task]:
        launcher = options.launcher
        assert launcher is not None  # _launched set it
        now = self.clock()
        run_at = options.run_at
        if isinstance(run_at, timedelta):
            run_at = now + run_at
        base_key = options.idempotency_key
        return new_tasks(
            handler=definition.name,
            definition=definition.summary,
            arguments=validated,
            launcher=launcher,
            now=now,
            type=options.type,
            unique_name=options.unique_name,
            description=options.description,
            target=options.target,
            parent_id=parent.id if parent else None,
            parent_name=parent.unique_name if parent else None,
            priority=options.priority,
            run_at=run_at,
            max_attempts=options.max_attempts or definition.max_attempts or DEFAULT_MAX_ATTEMPTS,
            timeout=options.timeout if options.timeout is not None else definition.timeout,
            # one key for a batch: each task gets it suffixed with its index
            idempotency_keys=(
                None
                if base_key is None
                else [base_key]
                if len(validated) == 1
                else [f"{base_key}:{i}" for i in range(len(validated))]
            ),
        )

    async def prepare(
        self,
        caller: Caller,
        handler: Handler | str,
        arguments: Mapping[str, Any],
        options: Submission,
    ) -> Task:
        """One validated task ready to store (what a schedule's firing stores itself)."""
        return (await self._prepare(caller, handler, [arguments], options))[0]

    async def _check_family(self, parent: Task, adding: int) -> None:
        """InputRejected when `adding` subtasks of `parent` would be nested deeper than
        max_subtask_depth or make it have more than max_subtasks: no fork bombs. (Two
        submissions racing may pass the count by a few; the depth holds.)"""
        depth, ancestor = 1, parent
        while ancestor.parent_id is not None and depth <= self.max_subtask_depth:
            found = await self.store.get(ancestor.parent_id, include_deleted=True)
            if found is None:
                break
            depth, ancestor = depth + 1, found
        if depth > self.max_subtask_depth:
            raise InputRejected(
                f"parent: a subtask of {parent.id} would be nested more than "
                f"{self.max_subtask_depth} levels deep "
                f"({limit('max-subtask-depth', self.max_subtask_depth)})"
            )
        siblings = await self.store.query(
            TaskQuery(
                where=Condition(TaskField.PARENT_ID, Op.EQ, (parent.id,)),
                limit=0,
                count=True,
                include_deleted=True,
            )
        )
        if (siblings.total or 0) + adding > self.max_subtasks:
            raise InputRejected(
                f"parent: task {parent.id} has {siblings.total} subtasks; {adding} more would "
                f"pass {self.max_subtasks} ({limit('max-subtasks', self.max_subtasks)})"
            )

    async def _parent(self, caller: Caller, parent: Task | str | None) -> Task | None:
        if parent is None or isinstance(parent, Task):
            return parent
        return await self.get(caller, parent)

    async def submit(
        self,
        caller: Caller,
        handler: Handler | str,
        arguments: Mapping[str, Any],
        options: Submission | None = None,
    ) -> Task:
        """Queue one task; the same idempotency key returns the same task."""
        tasks = await self._prepare(caller, handler, [arguments], options or Submission())
        return await self.store.create(tasks[0])

    def submit_now(
        self,
        caller: Caller,
        handler: Handler | str,
        arguments: Sequence[Mapping[str, Any]],
        options: Submission | None = None,
    ) -> list[Task] | None:
        """`submit_many` on the calling thread, a plain one (never the store's event loop),
        when that needs the store for the insert alone (a handler of this process, no
        parent) and the store can insert from a thread (BlockingCreate): the synchronous
        `connect()`, without a hop to its loop and back. None otherwise: then `submit_many`
        (or `submit`). Raises what they raise."""
        if self._blocking is None:
            return None
        tasks = self._prepare_now(caller, handler, arguments, options or Submission())
        return None if tasks is None else self._blocking.create_many_blocking(tasks)

    async def submit_many(
        self,
        caller: Caller,
        handler: Handler | str,
        arguments: Sequence[Mapping[str, Any]],
        options: Submission | None = None,
    ) -> list[Task]:
        """Validate every item first; store all of them in one transaction, or none."""
        tasks = await self._prepare(caller, handler, arguments, options or Submission())
        return await self.store.create_many(tasks)

    async def get(self, caller: Caller, task_id: str, *, include_deleted: bool = False) -> Task:
        """The task, or NotFound (also when the caller may not see it)."""
        task = await self.store.get(task_id, include_deleted=include_deleted)
        if task is None:
            raise NotFound(task_id)
        return check_visible(caller, task)

    async def query(self, caller: Caller, query: TaskQuery) -> Page:
        """One page of the tasks matching `query` among those the caller may see."""
        scope = visible(caller)
        if scope is not None:
            query = dataclasses.replace(query, where=all_of(query.where, scope))
        return await self.store.query(query)

    async def children(self, caller: Caller, task_id: str) -> list[Task]:
        """The subtasks of a task that the caller may see (a forced delete removes them)."""
        await self.get(caller, task_id)
        return [t for t in await self.store.children(task_id) if visible_task(caller, t)]

    async def tally(self, caller: Caller, query: TaskQuery, field: TaskField) -> dict[Any, int]:
        """The tasks matching `query` that the caller may see, per value of `field`, in one
        pass (see Store.tally)."""
        return await self.store.tally(
            dataclasses.replace(query, where=all_of(query.where, visible(caller))), field
        )

    async def finished_per_minute(
        self, caller: Caller, since: datetime, where: Expr | None = None
    ) -> list[tuple[datetime, CompletionStatus, int]]:
        """Tasks the caller may see (matching `where`) finished per UTC minute since
        `since`, by outcome."""
        return await self.store.finished_per_minute(all_of(where, visible(caller)), since)

    async def _change(
        self,
        caller: Caller,
        task_id: str,
        change: Callable[[Task, datetime], Task],
        *,
        expected_version: int | None = None,
    ) -> Task:
        """`change` applied to the task as it is (if the caller may see it), atomically."""
        now = self.clock()
        return await self.store.update(
            task_id,
            lambda t: change(check_visible(caller, t), now),
            expected_version=expected_version,
        )

    async def cancel(
        self, caller: Caller, task_id: str, *, expected_version: int | None = None
    ) -> Task:
        """Cancel a queued task, or ask a running one to stop. IllegalTransition if finished."""
        return await self._change(caller, task_id, cancel, expected_version=expected_version)

    async def clear(
        self,
        caller: Caller,
        task_id: str,
        status: CompletionStatus,
        completed: datetime | None = None,
    ) -> Task:
        """End a pending task by hand with `status`; its worker is told to stop."""
        if completed is not None:
            to_utc(completed, "completed")
        return await self._change(caller, task_id, lambda t, now: clear(t, status, completed, now))

    async def patch(self, caller: Caller, task_id: str, operations: Any) -> Task:
        """Apply a JSON Patch (taskstatus.patch) atomically. Setting completionStatus (and
        completed) on a pending task clears it."""
        return await self._change(caller, task_id, lambda t, now: apply_patch(t, operations, now))

    async def edit(
        self,
        caller: Caller,
        task_id: str,
        *,
        arguments: Mapping[str, Any] | Keep = KEEP,
        target: Target | Keep | None = KEEP,
        attributes: Mapping[str, Any] | Keep = KEEP,
        then: Callable[[Task, datetime], Task] | None = None,
    ) -> Task:
        """Change fields of a task atomically, then (`then`) its state: a lifecycle step such
        as `model.cancel`, chosen from the task as it is. Arguments (validated against the
        handler) and target change only while the task is queued (NotQueued)."""
        validated: dict[str, Any] | None = None
        if not isinstance(arguments, Keep):
            current = await self.get(caller, task_id)
            validated = await self.validate(current.handler, arguments)

        def change(task: Task, now: datetime) -> Task:
            edits: dict[str, Any] = {}
            if validated is not None or not isinstance(target, Keep):
                if task.state is not TaskState.QUEUED:
                    raise NotQueued(task)
                if validated is not None:
                    edits["arguments"] = validated
                if not isinstance(target, Keep):
                    edits["target"] = target
            if not isinstance(attributes, Keep):
                edits["attributes"] = attributes
            if edits:
                task = dataclasses.replace(task, modified=now, **edits)
            return task if then is None else then(task, now)

        return await self._change(caller, task_id, change)

    async def delete(self, caller: Caller, task_id: str, *, force: bool = False) -> list[str]:
        """Delete a task (kept as history), cancelling it if it runs; the deleted ids. With
        subtasks and not `force`: HasSubtasks, and nothing is deleted."""
        await self.get(caller, task_id)
        result = await self.store.delete(task_id, force=force, now=self.clock())
        if result.blocked_by:
            raise HasSubtasks(task_id, result.blocked_by)
        return result.deleted

    async def purge(self, caller: Caller, older_than: timedelta) -> int:
        """Delete for good the finished (or deleted) tasks older than `older_than`."""
        if not caller.admin:
            raise Forbidden("only a client with tasks:admin may purge tasks")
        return await self.store.purge(self.clock() - older_than)

    async def wait(self, caller: Caller, task_id: str, timeout: float | None = None) -> Task:
        """The task once it is terminal; WaitTimeout after `timeout` seconds."""
        task = await self.wait_for(caller, task_id, timeout)
        if not task.terminal:
            raise WaitTimeout(task_id, timeout or 0.0)
        return task

    async def wait_for(self, caller: Caller, task_id: str, timeout: float | None) -> Task:
        """The task as soon as it is terminal, or as it is after `timeout` seconds (None:
        no limit). Woken by the task's events (any process, any node), not by polling; a
        look every WAIT_SAFETY seconds covers a missed wake-up."""
        deadline = None if timeout is None else time.monotonic() + timeout
        with self.events.follow(task_id) as follower:
            while True:
                follower.wake.clear()
                task = await self.get(caller, task_id)
                if task.terminal:
                    return task
                left = WAIT_SAFETY if deadline is None else deadline - time.monotonic()
                if left <= 0:
                    return task
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(min(left, WAIT_SAFETY)):
                        await follower.wake.wait()
