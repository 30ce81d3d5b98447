"""Schedules and limits on a server: ``connect("https://...").schedules`` and ``.limits``.

The same methods, arguments and results as the database connection's `ScheduleService` and
`LimitService` (taskstatus.scheduling), over ``/v2024/task-schedules`` and
``/v2024/task-limits`` through the client's `Transport` (its token, retries and typed errors).
The server applies the rules; the client only sends and reads. Not here: a schedule's firing
records (no route serves them) and the workers' `declare`/`fire_due`.
"""

from __future__ import annotations

import builtins
from collections.abc import Callable, Mapping
from datetime import timedelta
from typing import Any

import httpx
import orjson

from taskstatus.client.transport import Transport
from taskstatus.errors import BadRequest, ConflictError, NotFound
from taskstatus.limits import InputRejected
from taskstatus.limits_policy import HandlerLimits
from taskstatus.schedules import (
    Missed,
    Overlap,
    Schedule,
    ScheduleNotFound,
    patch_between,
    schedule_from_document,
)

__all__ = ["RemoteLimits", "RemoteSchedules"]

SCHEDULES = "/v2024/task-schedules"
LIMITS = "/v2024/task-limits"
PATCH = "application/json-patch+json"


def _segment(name: str) -> str:
    """A name as one path segment (a name with a slash names nothing there)."""
    if not name or "/" in name or name in (".", ".."):
        raise ScheduleNotFound(name)
    return httpx.URL(path=name).raw_path.decode()


async def _call(
    transport: Transport,
    method: str,
    path: str,
    *,
    safe: bool,
    body: Any = None,
    content_type: str = "application/json",
) -> Any:
    content = None if body is None else orjson.dumps(body)
    headers = {} if content is None else {"Content-Type": content_type}
    response = await transport.request(method, path, safe=safe, content=content, headers=headers)
    return orjson.loads(response.content) if response.content else None


def _as_schedule_not_found(name: str, e: NotFound) -> ScheduleNotFound:
    """What the database connection raises, keeping the server's tracking id and status."""
    exc = ScheduleNotFound(name)
    exc.tracking_id, exc.status = e.tracking_id, e.status
    exc.__cause__ = e
    return exc


class RemoteSchedules:
    """A server's schedules: `ScheduleService`'s add, get, list, update, pause, resume and
    delete. Reading needs the read scope, the others the admin scope (else Forbidden)."""

    def __init__(self, transport: Transport) -> None:
        self.transport = transport

    async def _one(
        self, method: str, name: str, *, safe: bool, body: Any = None, content_type: str = ""
    ) -> Any:
        try:
            return await _call(
                self.transport,
                method,
                f"{SCHEDULES}/{_segment(name)}",
                safe=safe,
                body=body,
                content_type=content_type or "application/json",
            )
        except ScheduleNotFound:
            raise
        except NotFound as e:
            raise _as_schedule_not_found(name, e) from e

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
        """Create a schedule: ConflictError if the name is taken, BadRequest (the server's
        message) for a bad cron expression, time zone, handler or arguments."""
        if isinstance(every, timedelta):
            every = every.total_seconds()
        body = {
            "name": name,
            "handler": handler,
            "arguments": dict(arguments or {}),
            "cron": cron,
            "every": every,
            "timezone": timezone,
            "missed": str(missed),
            "overlap": str(overlap),
            "paused": paused,
        }
        # not safe to repeat: a retry after a lost answer would find the name taken
        return schedule_from_document(
            await _call(self.transport, "POST", SCHEDULES, safe=False, body=body)
        )

    async def get(self, name: str) -> Schedule:
        """The schedule, or ScheduleNotFound (a NotFound)."""
        return schedule_from_document(await self._one("GET", name, safe=True))

    async def list(self) -> builtins.list[Schedule]:
        """Every schedule, by name."""
        docs = await _call(self.transport, "GET", SCHEDULES, safe=True)
        return [schedule_from_document(d) for d in docs]

    async def update(
        self,
        name: str,
        change: Callable[[Schedule], Schedule],
        *,
        expected_version: int | None = None,
    ) -> Schedule:
        """Apply `change` to the schedule as read now and send the fields it changed as a
        JSON Patch. With `expected_version`: ConflictError if the schedule is at another
        version when read, or if any editable field changed before the patch arrived (the
        patch tests them). Without it, the changed fields are set whatever happened
        meanwhile; the database connection instead applies `change` again on a conflict."""
        old = await self.get(name)
        if expected_version is not None and old.version != expected_version:
            raise ConflictError(
                f"schedule {name} is at version {old.version}, not {expected_version}"
            )
        new = change(old)
        if new.name != name:
            raise InputRejected(f"name: a schedule's name cannot be changed ({name})")
        ops = patch_between(old, new, guard=expected_version is not None)
        try:
            doc = await self._one("PATCH", name, safe=False, body=ops, content_type=PATCH)
        except BadRequest as e:
            # the server's words for a failed test operation: someone changed it meanwhile
            if expected_version is not None and "does not apply" in str(e):
                raise ConflictError(f"schedule {name} changed meanwhile: {e}") from e
            raise
        return schedule_from_document(doc)

    async def pause(self, name: str) -> Schedule:
        """Stop firing (the next firing is cleared)."""
        return await self._patch(name, [{"op": "replace", "path": "/paused", "value": True}])

    async def resume(self, name: str) -> Schedule:
        """Fire again, from the first firing time after now."""
        return await self._patch(name, [{"op": "replace", "path": "/paused", "value": False}])

    async def _patch(self, name: str, ops: builtins.list[dict[str, Any]]) -> Schedule:
        doc = await self._one("PATCH", name, safe=False, body=ops, content_type=PATCH)
        return schedule_from_document(doc)

    async def delete(self, name: str) -> None:
        """The schedule and its firing records go; the tasks it fired stay."""
        await self._one("DELETE", name, safe=False)


def _limits(doc: Mapping[str, Any]) -> HandlerLimits:
    return HandlerLimits(
        doc["handler"],
        concurrency=doc.get("concurrency"),
        rate=doc.get("rate"),
        burst=doc.get("burst"),
        limit_key=doc.get("limitKey"),
    )


class RemoteLimits:
    """A server's handler limits: `LimitService`'s list, get and set. An unknown handler is
    a BadRequest (the server's message naming the known ones)."""

    def __init__(self, transport: Transport) -> None:
        self.transport = transport

    async def list(self) -> builtins.list[HandlerLimits]:
        return [_limits(d) for d in await _call(self.transport, "GET", LIMITS, safe=True)]

    async def get(self, handler: str) -> HandlerLimits:
        """The handler's limits (empty ones when it has none)."""
        path = f"{LIMITS}/{httpx.URL(path=handler).raw_path.decode()}"
        return _limits(await _call(self.transport, "GET", path, safe=True))

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
        body = {"concurrency": concurrency, "rate": rate, "burst": burst, "limitKey": limit_key}
        path = f"{LIMITS}/{httpx.URL(path=handler).raw_path.decode()}"
        # a PUT of the whole limits: the same result however often it arrives
        return _limits(await _call(self.transport, "PUT", path, safe=True, body=body))
