"""Everything the dashboard asks of the service, for one signed-in caller, in one place.

The dashboard never reaches the store: it calls `TaskService` with the signed-in client's
`Caller` (with the retention cutoff of now), and the service applies the same visibility
and change rules as for the API, so a page shows exactly what the same client sees through
the API and an action is refused (NotFound, 403) where the API refuses it.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from taskstatus.api.deps import ApiState
from taskstatus.api.errors import ApiError
from taskstatus.caller import WRITE, Caller
from taskstatus.model import (
    LEASED_STATES,
    CompletionStatus,
    Task,
    TaskDefinition,
    TaskState,
)
from taskstatus.query import Condition, Expr, Op, SortKey, TaskField, TaskQuery, all_of
from taskstatus.service import Submission, utcnow

__all__ = ["BULK_LIMIT", "COUNT_CAP", "Count", "Viewer", "WorkerView"]

# Past this many, a count says "at least" (an exact count of a large set reads every row);
# counts that the store keeps a rollup of (by completion status) stay exact however large.
COUNT_CAP = 10_000
# A bulk action on "every matching task" acts on at most this many per click.
BULK_LIMIT = 10_000
# The leased tasks the workers view looks at (the first found: no sort of them all, and few
# rows read; a task of a worker past them is not listed).
WORKER_TASKS = 100
# The pending tasks the overview's counts by state look at (in one pass).
STATE_CAP = 100_000
PENDING = Condition(TaskField.COMPLETION_STATUS, Op.ISNULL)


@dataclass(frozen=True, slots=True)
class Count:
    """A count, or (`capped`) a lower bound of one."""

    n: int
    capped: bool = False

    def __str__(self) -> str:
        return f"{self.n:,}+" if self.capped else f"{self.n:,}"


@dataclass(frozen=True, slots=True)
class WorkerView:
    """A worker process as its leases show it: what it runs and when its lease ends."""

    id: str
    tasks: list[Task]
    lease_expires: datetime | None
    concurrency: int | None = None  # known for this server's own in-process worker


class Viewer:
    """The service, as `caller` may use it."""

    def __init__(self, state: ApiState, caller: Caller) -> None:
        self.state = state
        self.caller = dataclasses.replace(caller, cutoff=state.cutoff())
        self.service = state.service

    @property
    def can_write(self) -> bool:
        return self.caller.allows(WRITE)

    # --- reading ---------------------------------------------------------------------------

    async def get(self, task_id: str) -> Task:
        return await self.service.get(self.caller, task_id)

    async def page(
        self,
        where: Expr | None,
        sort: Sequence[SortKey],
        offset: int,
        limit: int,
    ) -> tuple[list[Task], Count]:
        found = await self.service.query(
            self.caller,
            TaskQuery(
                where=where,
                sort=sort,
                offset=offset,
                limit=limit,
                count=True,
                count_cap=COUNT_CAP,
            ),
        )
        total = found.total or 0
        return found.items, Count(total, capped=total >= COUNT_CAP)

    async def count(self, where: Expr | None) -> Count:
        found = await self.service.query(
            self.caller, TaskQuery(where=where, limit=0, count=True, count_cap=COUNT_CAP)
        )
        total = found.total or 0
        return Count(total, capped=total >= COUNT_CAP)

    async def tasks(self, ids: Sequence[str]) -> list[Task]:
        """The tasks of `ids` the caller may see."""
        if not ids:
            return []
        found = await self.service.query(
            self.caller, TaskQuery(where=Condition(TaskField.ID, Op.IN, tuple(ids)), limit=len(ids))
        )
        return found.items

    async def ids(self, where: Expr | None, limit: int = BULK_LIMIT) -> list[str]:
        found = await self.service.query(self.caller, TaskQuery(where=where, limit=limit))
        return [t.id for t in found.items]

    async def children(self, task: Task) -> list[Task]:
        return await self.service.children(self.caller, task.id)

    async def definitions(self) -> list[TaskDefinition]:
        return sorted(await self.service.definitions(), key=lambda d: d.name.lower())

    async def by_state(self) -> dict[TaskState, Count]:
        """The pending tasks by state, in one pass over them (few, next to the finished
        ones): exact unless there are more than STATE_CAP, then the first STATE_CAP's."""
        found = await self.service.tally(
            self.caller, TaskQuery(where=PENDING, count_cap=STATE_CAP), TaskField.STATE
        )
        capped = sum(found.values()) >= STATE_CAP
        return {
            s: Count(found.get(s.value, 0), capped=capped)
            for s in (TaskState.QUEUED, TaskState.RUNNING, TaskState.CANCEL_REQUESTED)
        }

    async def by_status(self) -> dict[CompletionStatus | None, Count]:
        """Tasks by completion status (None: pending)."""
        counts: dict[CompletionStatus | None, Count] = {None: await self.count(PENDING)}
        for status in CompletionStatus:
            counts[status] = await self.count(
                Condition(TaskField.COMPLETION_STATUS, Op.EQ, (status,))
            )
        return counts

    async def oldest_queued(self) -> Task | None:
        found = await self.service.query(
            self.caller,
            TaskQuery(
                where=all_of(PENDING, Condition(TaskField.STATE, Op.EQ, (TaskState.QUEUED,))),
                sort=(SortKey(TaskField.CREATED),),
                limit=1,
            ),
        )
        return found.items[0] if found.items else None

    async def throughput(self, minutes: int = 60) -> list[tuple[datetime, CompletionStatus, int]]:
        since = utcnow().replace(second=0, microsecond=0) - timedelta(minutes=minutes - 1)
        return await self.service.finished_per_minute(self.caller, since)

    async def workers(self, own_worker: tuple[str, int] | None) -> list[WorkerView]:
        """Workers holding leases on tasks the caller may see (an idle worker holds none and
        is not listed), and this server's own worker."""
        found = await self.service.query(
            self.caller,
            TaskQuery(
                where=all_of(PENDING, Condition(TaskField.STATE, Op.IN, tuple(LEASED_STATES))),
                limit=WORKER_TASKS,
            ),
        )
        by_owner: dict[str, list[Task]] = {}
        for task in found.items:
            by_owner.setdefault(task.lease_owner or "?", []).append(task)
        if own_worker is not None:
            by_owner.setdefault(own_worker[0], [])
        views = []
        for owner, tasks in sorted(by_owner.items()):
            expires = [t.lease_expires for t in tasks if t.lease_expires is not None]
            views.append(
                WorkerView(
                    owner,
                    tasks,
                    max(expires) if expires else None,
                    own_worker[1] if own_worker and own_worker[0] == owner else None,
                )
            )
        return views

    # --- acting ----------------------------------------------------------------------------

    def _writer(self) -> None:
        if not self.can_write:
            raise ApiError(403, [f"this operation needs the {WRITE} scope"])

    async def cancel(self, task_id: str) -> Task:
        self._writer()
        return await self.service.cancel(self.caller, task_id)

    async def clear(self, task_id: str, status: CompletionStatus) -> Task:
        self._writer()
        return await self.service.clear(self.caller, task_id, status)

    async def delete(self, task_id: str, *, force: bool) -> list[str]:
        """The deleted ids; HasSubtasks (nothing deleted) with subtasks and not `force`."""
        self._writer()
        return await self.service.delete(self.caller, task_id, force=force)

    async def retry(self, task_id: str) -> Task:
        """Submit the task again: its handler, arguments, target and priority, launched by
        the caller."""
        self._writer()
        task = await self.get(task_id)
        return await self.service.submit(
            self.caller,
            task.handler,
            task.arguments,
            Submission(target=task.target, priority=task.priority),
        )

    async def submit(self, handler: str, arguments: dict[str, Any]) -> Task:
        self._writer()
        return await self.service.submit(self.caller, handler, arguments)
