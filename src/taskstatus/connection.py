"""The Python API: ``connect(url)`` to submit, find, watch and cancel tasks.

A database URL (``sqlite:///...``, ``postgresql://...``) gives an `AsyncConnection` to the
service over that database, acting as this process (`Caller.local`: every task, no retention
cutoff); an ``http://`` or ``https://`` URL gives the remote client
(`taskstatus.client.AsyncRemoteConnection`), with the same methods and the same `Task` back.
`Connection` (what `connect` returns for either) runs the async one on a private event loop
thread, so each operation exists once and works from plain synchronous code; a submit the
service can store from the calling thread (`TaskService.submit_now`) skips that thread.
"""

from __future__ import annotations

import asyncio
import builtins
import getpass
import threading
from collections.abc import AsyncIterator, Callable, Coroutine, Iterator, Mapping, Sequence
from datetime import datetime, timedelta
from types import TracebackType
from typing import Any, Protocol, TypeVar, Unpack

from taskstatus import eventloop
from taskstatus.caller import Caller
from taskstatus.client.remote import AsyncRemoteConnection, TaskEvent, is_remote
from taskstatus.events import TERMINAL_EVENT
from taskstatus.fields import TASK_STATUS
from taskstatus.handlers import REGISTRY, Handler, Registry
from taskstatus.limits_policy import HandlerLimits
from taskstatus.listing import Listing
from taskstatus.model import CompletionStatus, Task, TaskDefinition
from taskstatus.options import SubmitOptions
from taskstatus.query import TaskQuery, parse_bound, parse_sorters
from taskstatus.schedules import Missed, Overlap, Schedule
from taskstatus.scheduling import LimitService, ScheduleService
from taskstatus.service import Submission, TaskService
from taskstatus.settings import default_database
from taskstatus.store.base import Store

__all__ = [
    "AsyncConnection",
    "AsyncLimits",
    "AsyncSchedules",
    "AsyncTasks",
    "Connection",
    "Limits",
    "Schedules",
    "connect",
    "connect_async",
]

T = TypeVar("T")
EVENT_SAFETY = 5.0  # seconds: an idle event stream looks at the task (a missed wake-up)


def _launcher() -> str:
    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return "python"


class AsyncConnection(Listing):
    """Tasks in one store, from asyncio code. Use `connect_async`, or open() and close()."""

    def __init__(
        self,
        url: str | None = None,
        *,
        registry: Registry = REGISTRY,
        launcher: str | None = None,
        store: Store | None = None,
        must_exist: bool = False,
    ) -> None:
        """With `must_exist`, a SQLite file that does not exist is refused (NoDatabase)
        rather than created. Unreachable databases raise StoreUnavailable."""
        if store is not None:
            self.service = TaskService(store, registry)
        else:
            self.service = TaskService.from_url(
                url or default_database(), registry, must_exist=must_exist
            )
        self.launcher = launcher or _launcher()
        self.caller = Caller.local(self.launcher)
        # add, list, get, update, pause, resume, delete, firings; and list, get, set
        self.schedules = ScheduleService(self.service, self.caller)
        self.limits = LimitService(self.service, self.caller)

    @property
    def store(self) -> Store:
        return self.service.store

    async def open(self) -> AsyncConnection:
        await self.service.open()
        await self.service.publish_definitions()
        return self

    async def close(self) -> None:
        await self.service.close()

    async def __aenter__(self) -> AsyncConnection:
        return await self.open()

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def submit(
        self,
        handler: Handler | str,
        arguments: Mapping[str, Any] | None = None,
        **options: Unpack[SubmitOptions],
    ) -> Task:
        """Queue one task (the options: `taskstatus.options.SubmitOptions`). UnknownHandler
        or InvalidArguments (and nothing stored) when the handler or its arguments do not
        check out; the same idempotency key returns the same task."""
        submission = Submission.of(options, launcher=self.launcher)
        return await self.service.submit(self.caller, handler, arguments or {}, submission)

    async def submit_many(
        self,
        handler: Handler | str,
        arguments: Sequence[Mapping[str, Any]],
        **options: Unpack[SubmitOptions],
    ) -> list[Task]:
        """Queue one task per item, all in one transaction (one round trip), or none."""
        submission = Submission.of(options, launcher=self.launcher)
        return await self.service.submit_many(self.caller, handler, arguments, submission)

    def submit_now(
        self,
        handler: Handler | str,
        arguments: Sequence[Mapping[str, Any]],
        options: SubmitOptions,
    ) -> list[Task] | None:
        """`submit_many` on the calling thread, not this connection's loop, where the
        service can (`TaskService.submit_now`); None where it cannot."""
        submission = Submission.of(options, launcher=self.launcher)
        return self.service.submit_now(self.caller, handler, arguments, submission)

    async def get(self, task_id: str) -> Task:
        """The task, or NotFound."""
        return await self.service.get(self.caller, task_id)

    async def query(
        self,
        filters: str | None = None,
        sorters: str | None = None,
        *,
        limit: int | None = 250,
        offset: int = 0,
    ) -> list[Task]:
        """Tasks matching a filter in the standard collection syntax, e.g.
        ``completionStatus eq "ERROR" and created gt 2024-01-01T00:00:00Z``."""
        query = TaskQuery(
            where=parse_bound(filters, TASK_STATUS),
            sort=parse_sorters(sorters, TASK_STATUS),
            limit=limit,
            offset=offset,
        )
        return (await self.service.query(self.caller, query)).items

    async def count(self, filters: str | None = None) -> int:
        query = TaskQuery(where=parse_bound(filters, TASK_STATUS), limit=0, count=True)
        return (await self.service.query(self.caller, query)).total or 0

    async def cancel(self, task_id: str) -> Task:
        """Cancel a queued task, or ask a running one to stop."""
        return await self.service.cancel(self.caller, task_id)

    async def wait(self, task_id: str, timeout: float | None = None) -> Task:
        """The task once it has ended; WaitTimeout after `timeout` seconds."""
        return await self.service.wait(self.caller, task_id, timeout)

    async def clear(
        self, task_id: str, status: CompletionStatus | str, completed: datetime | None = None
    ) -> Task:
        """End a pending task by hand with `status`; its worker is told to stop."""
        return await self.service.clear(self.caller, task_id, CompletionStatus(status), completed)

    async def delete(self, task_id: str, *, force: bool = False) -> list[str]:
        """Delete a task (kept as history), cancelling it if it runs; the deleted ids. With
        subtasks and not `force`: HasSubtasks, and nothing is deleted."""
        return await self.service.delete(self.caller, task_id, force=force)

    async def definitions(self) -> list[TaskDefinition]:
        """The handlers registered by every node sharing the database."""
        return await self.service.definitions()

    async def events(self, task_id: str, after: int | None = None) -> AsyncIterator[TaskEvent]:
        """The task's events from the start (or after event `after`), live until it ends:
        read from the store's event log, woken by its notifications (any process, any
        node). NotFound for an unknown task."""
        task = await self.service.get(self.caller, task_id)
        async for batch in self.service.events.stream(task_id, after or 0, EVENT_SAFETY):
            for event in batch:
                yield TaskEvent(event.seq, event.kind, dict(event.data))
            if batch and batch[-1].kind == TERMINAL_EVENT:
                return
            if not batch and (
                task.terminal or (await self.service.get(self.caller, task_id)).terminal
            ):
                return  # caught up with a task that has ended

    async def watch(self, task_id: str) -> AsyncIterator[TaskEvent]:
        """See `events`."""
        async for event in self.events(task_id):
            yield event


AsyncTasks = AsyncConnection | AsyncRemoteConnection


class _LoopThread:
    """An event loop on a daemon thread, for running coroutines from synchronous code."""

    def __init__(self) -> None:
        self.loop = eventloop.new_event_loop()
        self.thread = threading.Thread(
            target=self.loop.run_forever, name="taskstatus-connection", daemon=True
        )
        self.thread.start()

    def run(self, coro: Coroutine[Any, Any, T]) -> T:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result()

    def iterate(self, items: AsyncIterator[T]) -> Iterator[T]:
        """An async iterator as a plain one, each step on the loop; closed when left early."""
        try:
            while True:
                try:
                    yield self.run(_anext(items))
                except StopAsyncIteration:
                    return
        finally:
            aclose = getattr(items, "aclose", None)
            if aclose is not None:
                self.run(aclose())

    def close(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join()
        self.loop.close()


class AsyncSchedules(Protocol):
    """The schedule operations of either connection (`ScheduleService` for a database,
    `taskstatus.client.schedules.RemoteSchedules` for a server)."""

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
    ) -> Schedule: ...
    async def get(self, name: str) -> Schedule: ...
    async def list(self) -> builtins.list[Schedule]: ...
    async def update(
        self,
        name: str,
        change: Callable[[Schedule], Schedule],
        *,
        expected_version: int | None = None,
    ) -> Schedule: ...
    async def pause(self, name: str) -> Schedule: ...
    async def resume(self, name: str) -> Schedule: ...
    async def delete(self, name: str) -> None: ...


class AsyncLimits(Protocol):
    """The limit operations of either connection (`LimitService`, `RemoteLimits`)."""

    async def list(self) -> builtins.list[HandlerLimits]: ...
    async def get(self, handler: str) -> HandlerLimits: ...
    async def set(
        self,
        handler: str,
        *,
        concurrency: int | None = None,
        rate: float | None = None,
        burst: float | None = None,
        limit_key: str | None = None,
    ) -> HandlerLimits: ...


class Schedules:
    """`AsyncSchedules`, blocking; `firings` for a database connection only (no route)."""

    def __init__(self, loop: _LoopThread, inner: AsyncSchedules) -> None:
        self._loop, self._inner = loop, inner

    def add(
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
        """Create a schedule (ConflictError if the name is taken)."""
        return self._loop.run(
            self._inner.add(
                name,
                handler,
                arguments,
                cron=cron,
                every=every,
                timezone=timezone,
                missed=missed,
                overlap=overlap,
                paused=paused,
            )
        )

    def get(self, name: str) -> Schedule:
        return self._loop.run(self._inner.get(name))

    def list(self) -> builtins.list[Schedule]:
        return self._loop.run(self._inner.list())

    def update(
        self,
        name: str,
        change: Callable[[Schedule], Schedule],
        *,
        expected_version: int | None = None,
    ) -> Schedule:
        return self._loop.run(self._inner.update(name, change, expected_version=expected_version))

    def pause(self, name: str) -> Schedule:
        return self._loop.run(self._inner.pause(name))

    def resume(self, name: str) -> Schedule:
        return self._loop.run(self._inner.resume(name))

    def delete(self, name: str) -> None:
        self._loop.run(self._inner.delete(name))

    def firings(self, name: str) -> builtins.list[tuple[datetime, str | None]]:
        """The schedule's firings, oldest first (a database connection only)."""
        if not isinstance(self._inner, ScheduleService):
            raise AttributeError("a server does not serve a schedule's firings")
        return self._loop.run(self._inner.firings(name))


class Limits:
    """`AsyncLimits`, blocking."""

    def __init__(self, loop: _LoopThread, inner: AsyncLimits) -> None:
        self._loop, self._inner = loop, inner

    def list(self) -> builtins.list[HandlerLimits]:
        return self._loop.run(self._inner.list())

    def get(self, handler: str) -> HandlerLimits:
        return self._loop.run(self._inner.get(handler))

    def set(
        self,
        handler: str,
        *,
        concurrency: int | None = None,
        rate: float | None = None,
        burst: float | None = None,
        limit_key: str | None = None,
    ) -> HandlerLimits:
        """Replace the handler's limits for every node (all None: remove them)."""
        return self._loop.run(
            self._inner.set(
                handler, concurrency=concurrency, rate=rate, burst=burst, limit_key=limit_key
            )
        )


async def _anext(items: AsyncIterator[T]) -> T:
    return await items.__anext__()


class Connection:
    """`AsyncConnection` or `AsyncRemoteConnection` for synchronous code: the same methods,
    blocking; the iterators are plain iterators."""

    def __init__(self, inner: AsyncTasks) -> None:
        self._inner = inner
        self._loop = _LoopThread()
        try:
            self._loop.run(inner.open())
        except BaseException:
            self._loop.close()
            raise

    @property
    def remote(self) -> bool:
        """True for a server URL."""
        return isinstance(self._inner, AsyncRemoteConnection)

    @property
    def store(self) -> Store:
        """The store (a database connection only)."""
        if isinstance(self._inner, AsyncRemoteConnection):
            raise AttributeError("a connection to a server has no store")
        return self._inner.store

    @property
    def launcher(self) -> str | None:
        return self._inner.launcher

    @property
    def schedules(self) -> Schedules:
        """The schedules (`AsyncSchedules`'s operations), blocking."""
        return Schedules(self._loop, self._inner.schedules)

    @property
    def limits(self) -> Limits:
        """The handlers' limits (`AsyncLimits`'s operations), blocking."""
        return Limits(self._loop, self._inner.limits)

    def submit(
        self,
        handler: Handler | str,
        arguments: Mapping[str, Any] | None = None,
        **options: Unpack[SubmitOptions],
    ) -> Task:
        # on this thread where it can: through the loop thread a submit waits for three
        # wake-ups (that thread's, its answer's, this one's), here for one (issue 17's pickup)
        if isinstance(self._inner, AsyncConnection):
            now = self._inner.submit_now(handler, [arguments or {}], options)
            if now is not None:
                return now[0]
        return self._loop.run(self._inner.submit(handler, arguments, **options))

    def submit_many(
        self,
        handler: Handler | str,
        arguments: Sequence[Mapping[str, Any]],
        **options: Unpack[SubmitOptions],
    ) -> list[Task]:
        if isinstance(self._inner, AsyncConnection):
            now = self._inner.submit_now(handler, arguments, options)
            if now is not None:
                return now
        return self._loop.run(self._inner.submit_many(handler, arguments, **options))

    def get(self, task_id: str) -> Task:
        return self._loop.run(self._inner.get(task_id))

    def query(
        self, filters: str | None = None, sorters: str | None = None, **options: Any
    ) -> list[Task]:
        return self._loop.run(self._inner.query(filters, sorters, **options))

    def count(self, filters: str | None = None) -> int:
        return self._loop.run(self._inner.count(filters))

    def cancel(self, task_id: str) -> Task:
        return self._loop.run(self._inner.cancel(task_id))

    def wait(self, task_id: str, timeout: float | None = None) -> Task:
        return self._loop.run(self._inner.wait(task_id, timeout))

    def clear(
        self, task_id: str, status: CompletionStatus | str, completed: datetime | None = None
    ) -> Task:
        return self._loop.run(self._inner.clear(task_id, status, completed))

    def delete(self, task_id: str, *, force: bool = False) -> list[str]:
        return self._loop.run(self._inner.delete(task_id, force=force))

    def definitions(self) -> list[TaskDefinition]:
        return self._loop.run(self._inner.definitions())

    def pending(self, *, limit: int | None = 250, offset: int = 0) -> list[Task]:
        return self._loop.run(self._inner.pending(limit=limit, offset=offset))

    def iterate(
        self, filters: str | None = None, sorters: str | None = None, *, page_size: int = 250
    ) -> Iterator[Task]:
        return self._loop.iterate(self._inner.iterate(filters, sorters, page_size=page_size))

    def events(self, task_id: str, after: int | None = None) -> Iterator[TaskEvent]:
        return self._loop.iterate(self._inner.events(task_id, after))

    def watch(self, task_id: str) -> Iterator[TaskEvent]:
        return self._loop.iterate(self._inner.watch(task_id))

    def close(self) -> None:
        try:
            self._loop.run(self._inner.close())
        finally:
            self._loop.close()

    def __enter__(self) -> Connection:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


def _async(url: str | None, options: dict[str, Any]) -> AsyncTasks:
    if is_remote(url):
        assert url is not None
        return AsyncRemoteConnection(url, **options)
    return AsyncConnection(url, **options)


def connect(url: str | None = None, **options: Any) -> Connection:
    """Open the store at `url` (default: $TASKSTATUS_DATABASE or sqlite:///./taskstatus.db),
    or, for an ``http(s)://`` URL, the server there (options: client_id, client_secret,
    credentials_file, scope, launcher, timeout, retries, max_retry_wait; docs/client.md)."""
    return Connection(_async(url, options))


async def connect_async(url: str | None = None, **options: Any) -> AsyncTasks:
    """`connect` for asyncio code: an `AsyncConnection`, or an `AsyncRemoteConnection`."""
    return await _async(url, options).open()
