"""The operations every interface offers (Python API, CLI, HTTP dialects), each rule once.

Submitting resolves the handler (this process's registry first, then the definitions other
nodes stored), validates the arguments against it and stores nothing when either fails.
Cancelling and clearing go through the lifecycle in taskstatus.model.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from taskstatus.errors import NotFound, UnknownHandler, WaitTimeout
from taskstatus.events import EventHub
from taskstatus.handlers import REGISTRY, Handler, Registry, validate_with_schema
from taskstatus.limits import (
    MAX_DELAY_SECONDS,
    InputRejected,
    check_int,
    check_json,
    check_text,
    limit,
    to_utc,
)
from taskstatus.model import (
    CompletionStatus,
    Target,
    Task,
    TaskDefinition,
    TaskType,
    cancel,
    clear,
    new_task,
)
from taskstatus.query import Condition, Expr, Op, TaskField, TaskQuery
from taskstatus.store.base import DeleteResult, Page, Store

__all__ = ["Submission", "TaskService", "utcnow"]


# A waiter that heard nothing for this long looks at the task anyway.
WAIT_SAFETY = 5.0


def utcnow() -> datetime:
    return datetime.now(UTC)


@dataclass(frozen=True, slots=True)
class Submission:
    """Options of a submission besides the handler and its arguments."""

    launcher: str
    target: Target | None = None
    parent: Task | str | None = None
    idempotency_key: str | None = None
    run_at: datetime | timedelta | None = None
    priority: int = 0
    max_attempts: int | None = None
    timeout: float | None = None
    type: TaskType = TaskType.QUEUED_TASK
    unique_name: str | None = None
    description: str | None = None


def _check_storable(arguments: Sequence[Mapping[str, Any]], options: Submission) -> None:
    """InputRejected unless every backend can store the submission unchanged."""
    for args in arguments:
        check_json(args, "arguments")
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
    check_int(options.priority, "priority")
    if options.max_attempts is not None:
        check_int(options.max_attempts, "max_attempts")
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


class TaskService:
    """Task operations over one store, with the handlers this process knows."""

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

    async def publish_definitions(self) -> None:
        """Store this process's handler definitions so that every node can validate them."""
        await self.store.save_definitions([h.definition for h in self.registry])

    async def resolve(self, handler: Handler | str) -> tuple[TaskDefinition, Handler | None]:
        """The definition of `handler`, and the local Handler when this process has it."""
        if isinstance(handler, Handler):
            return handler.definition, handler
        local = self.registry.get(handler)
        if local is not None:
            return local.definition, local
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

    async def prepare(
        self, handler: Handler | str, arguments: Mapping[str, Any], options: Submission
    ) -> Task:
        """A validated task ready to store, or UnknownHandler / InvalidArguments."""
        return (await self.prepare_many(handler, [arguments], options))[0]

    async def prepare_many(
        self,
        handler: Handler | str,
        arguments: Sequence[Mapping[str, Any]],
        options: Submission,
    ) -> list[Task]:
        _check_storable(arguments, options)
        definition, local = await self.resolve(handler)
        validated = [
            local.validate(a)
            if local
            else validate_with_schema(definition.name, definition.schema, a)
            for a in arguments
        ]
        parent = await self._parent(options.parent)
        if parent is not None:
            await self._check_family(parent, len(arguments))
        now = self.clock()
        run_at = options.run_at
        if isinstance(run_at, timedelta):
            run_at = now + run_at
        base_key = options.idempotency_key
        return [
            new_task(
                handler=definition.name,
                definition=definition.summary,
                arguments=args,
                launcher=options.launcher,
                now=now,
                type=options.type,
                unique_name=options.unique_name,
                description=options.description,
                target=options.target,
                parent_id=parent.id if parent else None,
                parent_name=parent.unique_name if parent else None,
                priority=options.priority,
                run_at=run_at,
                max_attempts=options.max_attempts or definition.max_attempts or 3,
                timeout=options.timeout if options.timeout is not None else definition.timeout,
                # one key for a batch: each task gets it suffixed with its index
                idempotency_key=(
                    None
                    if base_key is None
                    else base_key
                    if len(validated) == 1
                    else f"{base_key}:{i}"
                ),
            )
            for i, args in enumerate(validated)
        ]

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

    async def _parent(self, parent: Task | str | None) -> Task | None:
        if parent is None or isinstance(parent, Task):
            return parent
        found = await self.store.get(parent)
        if found is None:
            raise NotFound(parent)
        return found

    async def submit(
        self, handler: Handler | str, arguments: Mapping[str, Any], options: Submission
    ) -> Task:
        return await self.store.create(await self.prepare(handler, arguments, options))

    async def submit_many(
        self,
        handler: Handler | str,
        arguments: Sequence[Mapping[str, Any]],
        options: Submission,
    ) -> list[Task]:
        """Validate every item first; store all of them in one transaction, or none."""
        return await self.store.create_many(await self.prepare_many(handler, arguments, options))

    async def get(self, task_id: str, *, include_deleted: bool = False) -> Task:
        task = await self.store.get(task_id, include_deleted=include_deleted)
        if task is None:
            raise NotFound(task_id)
        return task

    async def query(self, query: TaskQuery) -> Page:
        return await self.store.query(query)

    async def children(self, task_id: str) -> list[Task]:
        """The subtasks of a task (a forced delete removes them with it)."""
        return await self.store.children(task_id)

    async def definitions(self) -> list[TaskDefinition]:
        """The handlers every node sharing the store registered."""
        return await self.store.definitions()

    async def tally(self, query: TaskQuery, field: TaskField) -> dict[Any, int]:
        """Matching tasks per value of `field`, in one pass (see Store.tally)."""
        return await self.store.tally(query, field)

    async def finished_per_minute(
        self, where: Expr | None, since: datetime
    ) -> list[tuple[datetime, CompletionStatus, int]]:
        """Tasks matching `where` finished per UTC minute since `since`, by outcome."""
        return await self.store.finished_per_minute(where, since)

    async def cancel(self, task_id: str, *, expected_version: int | None = None) -> Task:
        """Cancel a queued task, or ask a running one to stop. IllegalTransition if finished."""
        return await self.store.update(
            task_id, lambda t: cancel(t, self.clock()), expected_version=expected_version
        )

    async def clear(
        self, task_id: str, status: CompletionStatus, completed: datetime | None = None
    ) -> Task:
        """End a pending task by hand with `status`; its worker is told to stop."""
        if completed is not None:
            to_utc(completed, "completed")
        return await self.store.update(task_id, lambda t: clear(t, status, completed, self.clock()))

    async def delete(self, task_id: str, *, force: bool) -> DeleteResult:
        return await self.store.delete(task_id, force=force, now=self.clock())

    async def purge(self, older_than: timedelta) -> int:
        return await self.store.purge(self.clock() - older_than)

    async def wait(self, task_id: str, timeout: float | None = None) -> Task:
        """The task once it is terminal; WaitTimeout after `timeout` seconds."""
        task = await self.wait_for(task_id, timeout)
        if not task.terminal:
            raise WaitTimeout(task_id, timeout or 0.0)
        return task

    async def wait_for(self, task_id: str, timeout: float | None) -> Task:
        """The task as soon as it is terminal, or as it is after `timeout` seconds (None:
        no limit). Woken by the task's events (any process, any node), not by polling; a
        look every WAIT_SAFETY seconds covers a missed wake-up."""
        deadline = None if timeout is None else time.monotonic() + timeout
        with self.events.follow(task_id) as follower:
            while True:
                follower.wake.clear()
                task = await self.get(task_id)
                if task.terminal:
                    return task
                left = WAIT_SAFETY if deadline is None else deadline - time.monotonic()
                if left <= 0:
                    return task
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(min(left, WAIT_SAFETY)):
                        await follower.wake.wait()
