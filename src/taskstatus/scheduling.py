"""Schedule and limit operations, for every interface (Python API, CLI, HTTP, workers).

Every rule once: a schedule names a known handler and arguments that handler accepts, a valid
cron expression or interval and a known time zone; limits name a known handler. Each service
acts for one `Caller`: any caller may read schedules and limits; changing them needs the admin
scope (a schedule's tasks are launched by ``schedule:<name>``, which only admins see), and a
firing is stored for the schedule, not for whoever fires it. Firing is leaderless: every
worker calls `fire_due`, and the store's (schedule, firing time) key keeps exactly one task
per firing (taskstatus.store.base.Store.fire_schedule).
"""

from __future__ import annotations

import builtins
import dataclasses
import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import replace
from datetime import datetime, timedelta
from typing import Any

from taskstatus.caller import Caller
from taskstatus.errors import ConflictError, Forbidden, InvalidArguments, UnknownHandler
from taskstatus.handlers import Handler, Registry
from taskstatus.limits import InputRejected
from taskstatus.limits_policy import HandlerLimits
from taskstatus.model import Task, TaskType
from taskstatus.schedules import (
    Missed,
    Overlap,
    Schedule,
    ScheduleNotFound,
    due_firings,
    first_fire,
)
from taskstatus.service import Submission, TaskService

__all__ = ["LimitService", "ScheduleService", "launcher_of"]

log = logging.getLogger("taskstatus.schedules")


def launcher_of(name: str) -> str:
    """The launcher of the tasks a schedule fires."""
    return f"schedule:{name}"


def _admin(caller: Caller, what: str) -> None:
    if not caller.admin:
        raise Forbidden(f"{what} needs the tasks:admin scope")


class ScheduleService:
    """Schedules over the store of `tasks` (a TaskService), for `caller`."""

    def __init__(self, tasks: TaskService, caller: Caller) -> None:
        self.tasks = tasks
        self.store = tasks.store
        self.caller = caller

    async def _checked(self, s: Schedule) -> Schedule:
        s = s.checked()
        arguments = await self.tasks.validate(s.handler, s.arguments)
        return replace(s, arguments=arguments)

    async def add(
        self,
        name: str,
        handler: str,
        arguments: Mapping[str, Any] | None = None,
        *,
        cron: str | None = None,
        every: float | timedelta | None = None,
        timezone: str = "UTC",
        missed: Missed | str = Missed.SKIP,
        overlap: Overlap | str = Overlap.ALLOW,
        paused: bool = False,
    ) -> Schedule:
        """Create a schedule (ConflictError if the name is taken); it first fires at its
        first firing time after now."""
        _admin(self.caller, "creating a schedule")
        now = self.tasks.clock()
        if isinstance(every, timedelta):
            every = every.total_seconds()
        s = await self._checked(
            Schedule(
                name=name,
                handler=handler,
                arguments=dict(arguments or {}),
                cron=cron,
                every=every,
                timezone=timezone,
                missed=missed,  # type: ignore[arg-type]  # checked() makes it the enum
                overlap=overlap,  # type: ignore[arg-type]
                paused=paused,
                created=now,
                modified=now,
            )
        )
        s = replace(s, next_fire=None if paused else first_fire(s, now))
        return await self.store.create_schedule(s)

    async def get(self, name: str) -> Schedule:
        s = await self.store.schedule(name)
        if s is None:
            raise ScheduleNotFound(name)
        return s

    async def list(self) -> list[Schedule]:
        return await self.store.schedules()

    async def update(
        self,
        name: str,
        change: Callable[[Schedule], Schedule],
        *,
        expected_version: int | None = None,
    ) -> Schedule:
        """Apply `change` to the stored schedule and store it if nobody changed it meanwhile
        (with `expected_version`: if it is still that version). A change of when it fires
        (or a resume) starts again from now; a pause clears the next firing."""
        _admin(self.caller, "changing a schedule")
        for _ in range(20):
            old = await self.get(name)
            if expected_version is not None and old.version != expected_version:
                raise ConflictError(
                    f"schedule {name} is at version {old.version}, not {expected_version}"
                )
            new = change(old)
            if new.name != name:
                raise InputRejected(f"name: a schedule's name cannot be changed ({name})")
            new = await self._checked(new)
            now = self.tasks.clock()
            if new.paused:
                new = replace(new, next_fire=None)
            elif old.paused or not new.same_plan(old) or new.next_fire is None:
                new = replace(new, next_fire=first_fire(new, now))
            new = replace(new, modified=now, created=old.created)
            try:
                return await self.store.save_schedule(new, expected_version=old.version)
            except ConflictError:
                if expected_version is not None:
                    raise
        raise ConflictError(f"schedule {name} keeps changing; try again")

    async def firings(self, name: str) -> builtins.list[tuple[datetime, str | None]]:
        """The schedule's firings, oldest first: (firing time, task id; None if skipped)."""
        await self.get(name)
        return await self.store.firings(name)

    async def pause(self, name: str) -> Schedule:
        return await self.update(name, lambda s: replace(s, paused=True))

    async def resume(self, name: str) -> Schedule:
        return await self.update(name, lambda s: replace(s, paused=False))

    async def delete(self, name: str) -> None:
        _admin(self.caller, "deleting a schedule")
        if not await self.store.delete_schedule(name):
            raise ScheduleNotFound(name)

    async def declare(self, handlers: Registry | Sequence[Handler]) -> None:
        """Create or update the schedules the handlers declare (``@handler(schedule=...)``,
        named after the handler). An unchanged one keeps its next firing and its pause."""
        _admin(self.caller, "declaring schedules")
        for h in handlers:
            if h.schedule is None:
                continue
            cron, every = (h.schedule, None) if isinstance(h.schedule, str) else (None, h.schedule)
            seconds = every.total_seconds() if isinstance(every, timedelta) else every
            now = self.tasks.clock()
            wanted = await self._checked(
                Schedule(h.name, h.name, {}, cron=cron, every=seconds, created=now, modified=now)
            )
            old = await self.store.schedule(h.name)
            if old is not None and old.same_plan(wanted):
                continue
            if old is not None:
                wanted = replace(wanted, paused=old.paused, created=old.created)
            wanted = replace(wanted, next_fire=None if wanted.paused else first_fire(wanted, now))
            try:
                if old is None:
                    await self.store.create_schedule(wanted)
                else:
                    await self.store.save_schedule(wanted, expected_version=old.version)
            except ConflictError:  # another node declared it at the same moment
                log.info("schedule %s was declared by another node meanwhile", h.name)

    async def _task(self, s: Schedule, when: datetime) -> Task | None:
        try:
            # stored for the schedule (an admin's act: the launcher is not the caller's)
            return await self.tasks.prepare(
                Caller.local(launcher_of(s.name)),
                s.handler,
                s.arguments,
                Submission(launcher=launcher_of(s.name), type=TaskType.QUARTZ),
            )
        except (UnknownHandler, InvalidArguments) as e:
            log.error("schedule %s: the firing of %s is skipped: %s", s.name, when, e)
            return None

    async def fire_due(self, lookahead: float = 1.0) -> tuple[builtins.list[Task], datetime | None]:
        """Fire what is due now; the tasks this node stored, and the next firing time known
        within `lookahead` seconds (None: none that soon)."""
        _admin(self.caller, "firing schedules")
        now = self.tasks.clock()
        soon = await self.store.due_schedules(now + timedelta(seconds=lookahead))
        stored: builtins.list[Task] = []
        wake: datetime | None = None
        for s in soon:
            assert s.next_fire is not None
            if s.next_fire > now:
                wake = s.next_fire if wake is None else min(wake, s.next_fire)
                continue
            fires, nxt = due_firings(s, now)
            busy = False
            if s.overlap is Overlap.SKIP and s.last_task_id is not None:
                last = await self.store.get(s.last_task_id)
                busy = last is not None and not last.terminal
            firings: builtins.list[tuple[datetime, Task | None]] = []
            for when in fires:
                task = None if busy else await self._task(s, when)
                firings.append((when, task))
                # with overlap skip, the first task of a catch-up is pending for the rest
                busy = busy or (s.overlap is Overlap.SKIP and task is not None)
            stored += await self.store.fire_schedule(s, firings, nxt, now)
            wake = nxt if wake is None else min(wake, nxt)
        return stored, wake


class LimitService:
    """Limits of handlers over the store of `tasks`, for `caller`."""

    def __init__(self, tasks: TaskService, caller: Caller) -> None:
        self.tasks = tasks
        self.store = tasks.store
        self.caller = caller

    async def list(self) -> list[HandlerLimits]:
        return await self.store.handler_limits()

    async def get(self, handler: str) -> HandlerLimits:
        """The handler's limits (empty ones when it has none)."""
        await self.tasks.resolve(handler)
        for limits in await self.store.handler_limits():
            if limits.handler == handler:
                return limits
        return HandlerLimits(handler)

    async def set(
        self,
        handler: str,
        *,
        concurrency: int | None = None,
        rate: float | None = None,
        burst: float | None = None,
        limit_key: str | None = None,
    ) -> HandlerLimits:
        """Replace the handler's limits for every node (all None: remove them)."""
        _admin(self.caller, "setting limits")
        limits = HandlerLimits(handler, concurrency, rate, burst, limit_key).checked()
        await self.tasks.resolve(handler)  # UnknownHandler
        await self.store.save_limits(limits)
        return limits

    async def declare(self, handlers: Registry | Sequence[Handler]) -> None:
        """Store the limits the handlers' code declares (``@handler(concurrency=...)``), unless
        limits were set at run time: those hold until removed (then the code's apply again)."""
        _admin(self.caller, "declaring limits")
        stored = {x.handler: x for x in await self.store.handler_limits()}
        for h in handlers:
            old = stored.get(h.name)
            if old is not None and not old.declared:
                continue  # set at run time (CLI, HTTP, connect().limits)
            code = dataclasses.replace(h.limits or HandlerLimits(h.name), declared=True)
            if old is None and code.empty:
                continue
            if old is None or not old.same(code):
                await self.store.save_limits(code)
