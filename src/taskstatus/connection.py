"""The Python API: ``connect(url)`` to submit, find, watch and cancel tasks in a store directly.

`AsyncConnection` holds the implementation; `Connection` (what `connect` returns) runs it on a
private event loop thread, so each operation exists once and works from plain synchronous code.
"""

from __future__ import annotations

import asyncio
import getpass
import threading
from collections.abc import Coroutine, Mapping, Sequence
from datetime import datetime, timedelta
from types import TracebackType
from typing import Any, TypeVar

from taskstatus.fields import TASK_STATUS
from taskstatus.handlers import REGISTRY, Handler, Registry
from taskstatus.model import Target, TargetType, Task
from taskstatus.query import TaskQuery, parse_bound, parse_sorters
from taskstatus.service import Submission, TaskService
from taskstatus.settings import default_database
from taskstatus.store import make_store
from taskstatus.store.base import Store

__all__ = ["AsyncConnection", "Connection", "connect", "connect_async"]

T = TypeVar("T")
TargetLike = Target | Mapping[str, Any] | None


def _target(value: TargetLike) -> Target | None:
    if value is None or isinstance(value, Target):
        return value
    kind = value.get("type")
    return Target(value.get("id"), TargetType(kind) if kind else None, value.get("name"))


def _launcher() -> str:
    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return "python"


class AsyncConnection:
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
        self.store = store or make_store(url or default_database(), must_exist=must_exist)
        self.service = TaskService(self.store, registry)
        self.launcher = launcher or _launcher()

    async def open(self) -> AsyncConnection:
        await self.store.open()
        await self.service.publish_definitions()
        return self

    async def close(self) -> None:
        await self.store.close()

    async def __aenter__(self) -> AsyncConnection:
        return await self.open()

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    def _options(
        self,
        target: TargetLike,
        parent: Task | str | None,
        idempotency_key: str | None,
        run_at: datetime | timedelta | None,
        priority: int,
        max_attempts: int | None,
        timeout: float | None,
    ) -> Submission:
        return Submission(
            launcher=self.launcher,
            target=_target(target),
            parent=parent,
            idempotency_key=idempotency_key,
            run_at=run_at,
            priority=priority,
            max_attempts=max_attempts,
            timeout=timeout,
        )

    async def submit(
        self,
        handler: Handler | str,
        arguments: Mapping[str, Any] | None = None,
        *,
        target: TargetLike = None,
        parent: Task | str | None = None,
        idempotency_key: str | None = None,
        run_at: datetime | timedelta | None = None,
        priority: int = 0,
        max_attempts: int | None = None,
        timeout: float | None = None,
    ) -> Task:
        """Queue one task. UnknownHandler or InvalidArguments (and nothing stored) when the
        handler or its arguments do not check out; the same idempotency key returns the same
        task."""
        options = self._options(
            target, parent, idempotency_key, run_at, priority, max_attempts, timeout
        )
        return await self.service.submit(handler, arguments or {}, options)

    async def submit_many(
        self,
        handler: Handler | str,
        arguments: Sequence[Mapping[str, Any]],
        *,
        target: TargetLike = None,
        parent: Task | str | None = None,
        idempotency_key: str | None = None,
        run_at: datetime | timedelta | None = None,
        priority: int = 0,
        max_attempts: int | None = None,
        timeout: float | None = None,
    ) -> list[Task]:
        """Queue one task per item, all in one transaction (one round trip), or none."""
        options = self._options(
            target, parent, idempotency_key, run_at, priority, max_attempts, timeout
        )
        return await self.service.submit_many(handler, arguments, options)

    async def get(self, task_id: str) -> Task:
        """The task, or NotFound."""
        return await self.service.get(task_id)

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
        return (await self.service.query(query)).items

    async def count(self, filters: str | None = None) -> int:
        query = TaskQuery(where=parse_bound(filters, TASK_STATUS), limit=0, count=True)
        return (await self.service.query(query)).total or 0

    async def cancel(self, task_id: str) -> Task:
        """Cancel a queued task, or ask a running one to stop."""
        return await self.service.cancel(task_id)

    async def wait(self, task_id: str, timeout: float | None = None) -> Task:
        """The task once it has ended; WaitTimeout after `timeout` seconds."""
        return await self.service.wait(task_id, timeout)


class _LoopThread:
    """An event loop on a daemon thread, for running coroutines from synchronous code."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(
            target=self.loop.run_forever, name="taskstatus-connection", daemon=True
        )
        self.thread.start()

    def run(self, coro: Coroutine[Any, Any, T]) -> T:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result()

    def close(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join()
        self.loop.close()


class Connection:
    """`AsyncConnection` for synchronous code: the same methods, blocking."""

    def __init__(self, inner: AsyncConnection) -> None:
        self._inner = inner
        self._loop = _LoopThread()
        try:
            self._loop.run(inner.open())
        except BaseException:
            self._loop.close()
            raise

    @property
    def store(self) -> Store:
        return self._inner.store

    @property
    def launcher(self) -> str:
        return self._inner.launcher

    def submit(
        self, handler: Handler | str, arguments: Mapping[str, Any] | None = None, **options: Any
    ) -> Task:
        return self._loop.run(self._inner.submit(handler, arguments, **options))

    def submit_many(
        self, handler: Handler | str, arguments: Sequence[Mapping[str, Any]], **options: Any
    ) -> list[Task]:
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


def connect(url: str | None = None, **options: Any) -> Connection:
    """Open the store at `url` (default: $TASKSTATUS_DATABASE or sqlite:///./taskstatus.db)."""
    return Connection(AsyncConnection(url, **options))


async def connect_async(url: str | None = None, **options: Any) -> AsyncConnection:
    return await AsyncConnection(url, **options).open()
