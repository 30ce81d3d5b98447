"""`AsyncRemoteConnection`: the database connection's interface, against a server over HTTP.

It speaks the client dialect (``/taskstatus/v1``, see `taskstatus.api.native`) for tasks, so
the same `Task` comes back as from a database; the v2024 event stream for `events`/`watch`.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, Protocol, Unpack

import httpx
import orjson

from taskstatus.client.credentials import find_credentials
from taskstatus.client.schedules import RemoteLimits, RemoteSchedules
from taskstatus.client.transport import RetryPolicy, Transport
from taskstatus.errors import NotFound, Unreachable, WaitTimeout
from taskstatus.listing import Listing
from taskstatus.model import CompletionStatus, Task, TaskDefinition
from taskstatus.options import DEFAULT_PRIORITY, SubmitOptions, to_target
from taskstatus.wire import PREFIX, definition_from_json, target_to_json, task_from_json


class Handler(Protocol):
    """A `taskstatus.handlers.Handler`, as far as the client needs one: its name."""

    @property
    def name(self) -> str: ...


__all__ = ["AsyncRemoteConnection", "TaskEvent", "is_remote"]

MAX_WAIT = 60.0  # the server's cap on ?wait=
PAGE = 1000  # the server's cap on limit


def is_remote(url: str | None) -> bool:
    return bool(url) and str(url).lower().startswith(("http://", "https://"))


@dataclass(frozen=True, slots=True)
class TaskEvent:
    """One event of a task's stream: its sequence number, kind and data (as the server sent
    them: the v2024 field names)."""

    id: int
    kind: str
    data: Mapping[str, Any] = field(default_factory=dict)

    @property
    def terminal(self) -> bool:
        """The task ended with this event (the stream's last)."""
        return self.kind == "completed"


class AsyncRemoteConnection(Listing):
    """Tasks on a taskstatus server, from asyncio code. Use `connect_async("https://...")`.

    One connection pool and one token per connection; close it (or use ``async with``)."""

    def __init__(
        self,
        url: str,
        *,
        client_id: str | None = None,
        client_secret: str | None = None,
        credentials_file: str | None = None,
        scope: str | None = None,
        launcher: str | None = None,
        timeout: float | httpx.Timeout | None = 30.0,
        retries: int = 5,
        max_retry_wait: float = 60.0,
    ) -> None:
        if not is_remote(url):
            raise ValueError(f"not a server URL: {url!r}")
        self.url = url.rstrip("/")
        self.launcher = launcher
        credentials = find_credentials(self.url, client_id, client_secret, credentials_file)
        self.transport = Transport(
            self.url,
            credentials,
            timeout=timeout,
            policy=RetryPolicy(retries=retries, max_retry_wait=max_retry_wait),
            scope=scope,
        )
        # add, list, get, update, pause, resume, delete; and list, get, set
        self.schedules = RemoteSchedules(self.transport)
        self.limits = RemoteLimits(self.transport)

    async def open(self) -> AsyncRemoteConnection:
        """Fetch the first token, so that bad credentials fail here and not later."""
        try:
            await self.transport.token()
        except BaseException:
            await self.transport.close()
            raise
        return self

    async def close(self) -> None:
        await self.transport.close()

    async def __aenter__(self) -> AsyncRemoteConnection:
        return await self.open()

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def _json(
        self,
        method: str,
        path: str,
        *,
        safe: bool,
        params: Mapping[str, Any] | None = None,
        body: Any = None,
        headers: Mapping[str, str] | None = None,
        timeout: float | None = None,
    ) -> tuple[Any, httpx.Headers]:
        content = None if body is None else orjson.dumps(body)
        all_headers = dict(headers or {})
        if content is not None:
            all_headers["Content-Type"] = "application/json"
        response = await self.transport.request(
            method,
            PREFIX + path,
            safe=safe,
            params={k: v for k, v in (params or {}).items() if v is not None},
            content=content,
            headers=all_headers,
            timeout=timeout,
        )
        return orjson.loads(response.content) if response.content else None, response.headers

    # --- submitting -----------------------------------------------------------------------

    def _body(self, handler: Handler | str, options: SubmitOptions) -> dict[str, Any]:
        parent = options.get("parent")
        run_at = options.get("run_at")
        body: dict[str, Any] = {
            "handler": handler if isinstance(handler, str) else handler.name,
            "target": target_to_json(to_target(options.get("target"))),
            "parent": parent.id if isinstance(parent, Task) else parent,
            "priority": options.get("priority", DEFAULT_PRIORITY),
            "max_attempts": options.get("max_attempts"),
            "timeout": options.get("timeout"),
        }
        if isinstance(run_at, timedelta):
            body["delay"] = run_at.total_seconds()
        elif run_at is not None:
            if run_at.tzinfo is None:
                raise ValueError("run_at must be timezone-aware")
            body["run_at"] = run_at.isoformat()
        if self.launcher:
            body["launcher"] = self.launcher
        return {k: v for k, v in body.items() if v is not None}

    def _key(self, options: SubmitOptions) -> str:
        """The idempotency key: the caller's, or one the client makes, so that a retry after
        a lost answer returns the task the first attempt created instead of a second."""
        return options.get("idempotency_key") or f"client-{uuid.uuid4().hex}"

    async def submit(
        self,
        handler: Handler | str,
        arguments: Mapping[str, Any] | None = None,
        **options: Unpack[SubmitOptions],
    ) -> Task:
        """Queue one task (the options: `taskstatus.options.SubmitOptions`). Without an
        `idempotency_key` the client makes one, so a retry cannot create a second task."""
        body = {**self._body(handler, options), "arguments": dict(arguments or {})}
        headers = {"Idempotency-Key": self._key(options)}
        data, _ = await self._json("POST", "/tasks", safe=True, body=body, headers=headers)
        return task_from_json(data)

    async def submit_many(
        self,
        handler: Handler | str,
        arguments: Sequence[Mapping[str, Any]],
        **options: Unpack[SubmitOptions],
    ) -> list[Task]:
        """Queue one task per item, in one request and one transaction, or none."""
        body = {**self._body(handler, options), "arguments": [dict(a) for a in arguments]}
        headers = {"Idempotency-Key": self._key(options)}
        data, _ = await self._json("POST", "/tasks/batch", safe=True, body=body, headers=headers)
        return [task_from_json(t) for t in data]

    # --- reading --------------------------------------------------------------------------

    async def get(self, task_id: str) -> Task:
        """The task, or NotFound."""
        data, _ = await self._json("GET", f"/tasks/{_segment(task_id)}", safe=True)
        return task_from_json(data)

    async def _page(
        self, filters: str | None, sorters: str | None, limit: int, offset: int, count: bool
    ) -> tuple[list[Task], int | None]:
        params = {
            "filters": filters,
            "sorters": sorters,
            "limit": limit,
            "offset": offset,
            "count": "true" if count else None,
        }
        data, headers = await self._json("GET", "/tasks", safe=True, params=params)
        total = headers.get("x-total-count")
        return [task_from_json(t) for t in data], int(total) if total is not None else None

    async def query(
        self,
        filters: str | None = None,
        sorters: str | None = None,
        *,
        limit: int | None = 250,
        offset: int = 0,
    ) -> list[Task]:
        """Tasks matching a filter in the standard collection syntax; `limit` None (or above
        the server's page of 1000) fetches as many pages as it takes."""
        found: list[Task] = []
        while limit is None or len(found) < limit:
            want = PAGE if limit is None else min(PAGE, limit - len(found))
            page, _ = await self._page(filters, sorters, want, offset + len(found), False)
            found.extend(page)
            if len(page) < want:
                break
        return found

    async def count(self, filters: str | None = None) -> int:
        _, total = await self._page(filters, None, 0, 0, True)
        return total or 0

    async def definitions(self) -> list[TaskDefinition]:
        """The handlers the server's nodes registered."""
        data, _ = await self._json("GET", "/definitions", safe=True)
        return [definition_from_json(d) for d in data]

    # --- steering -------------------------------------------------------------------------

    async def cancel(self, task_id: str) -> Task:
        """Cancel a queued task, or ask a running one to stop."""
        data, _ = await self._json("POST", f"/tasks/{_segment(task_id)}/cancel", safe=False)
        return task_from_json(data)

    async def clear(
        self, task_id: str, status: CompletionStatus | str, completed: datetime | None = None
    ) -> Task:
        """End a pending task by hand with `status`; its worker is told to stop."""
        body: dict[str, Any] = {"status": CompletionStatus(status).value}
        if completed is not None:
            body["completed"] = completed.isoformat()
        data, _ = await self._json(
            "POST", f"/tasks/{_segment(task_id)}/clear", safe=False, body=body
        )
        return task_from_json(data)

    async def delete(self, task_id: str, *, force: bool = False) -> list[str]:
        """Delete a task (kept as history), cancelling it if it runs; the deleted ids. With
        subtasks and not `force`: HasSubtasks, and nothing is deleted."""
        data, _ = await self._json(
            "DELETE",
            f"/tasks/{_segment(task_id)}",
            safe=False,
            params={"force": "true" if force else "false"},
        )
        return list(data["deleted"])

    # --- waiting and following ------------------------------------------------------------

    async def wait(self, task_id: str, timeout: float | None = None) -> Task:
        """The task once it has ended; WaitTimeout after `timeout` seconds. Long-polls
        (``?wait=``, up to 60 s a request); a server that answers at once is polled with a
        backoff instead."""
        deadline = None if timeout is None else time.monotonic() + timeout
        pause = 0.05
        while True:
            left = MAX_WAIT if deadline is None else deadline - time.monotonic()
            if left <= 0:
                raise WaitTimeout(task_id, timeout or 0.0)
            wait = min(MAX_WAIT, left)
            started = time.monotonic()
            data, _ = await self._json(
                "GET",
                f"/tasks/{_segment(task_id)}",
                safe=True,
                params={"wait": f"{wait:.3f}"},
                timeout=wait + (self.transport.timeout.read or 30.0),
            )
            task = task_from_json(data)
            if task.terminal:
                return task
            if time.monotonic() - started < wait / 2:  # the server did not hold the request
                await asyncio.sleep(min(pause, max(0.0, left)))
                pause = min(pause * 2, 1.0)

    async def events(self, task_id: str, after: int | None = None) -> AsyncIterator[TaskEvent]:
        """The task's events from the start (or after event `after`), live until it ends.
        A dropped connection is resumed after the last event received (``Last-Event-ID``):
        no gaps, no repeats."""
        last = after
        failures = 0
        path = f"/v2024/task-status/{_segment(task_id)}/events"
        while True:
            headers = {} if last is None else {"Last-Event-ID": str(last)}
            params = {} if last is None else {"after": str(last)}
            try:
                async with self.transport.stream(path, params=params, headers=headers) as r:
                    async for event in _parse_sse(r.aiter_lines()):
                        failures = 0
                        last = event.id
                        yield event
                        if event.terminal:
                            return
            except httpx.TransportError as e:
                failures += 1
                if failures > self.transport.policy.retries:
                    raise Unreachable(f"GET {self.url}{path}: {e}") from e
                await asyncio.sleep(self.transport.policy.delay(failures - 1, None))
                continue
            # the stream ended before the terminal event: a task that had already ended
            # before its log began, or a server going away (then resume)
            if (await self.get(task_id)).terminal:
                return
            failures += 1
            if failures > self.transport.policy.retries:
                raise Unreachable(f"GET {self.url}{path}: the stream kept ending early")
            await asyncio.sleep(self.transport.policy.delay(failures - 1, None))

    async def watch(self, task_id: str) -> AsyncIterator[TaskEvent]:
        """`events` from the start, until the task has ended."""
        async for event in self.events(task_id):
            yield event


def _segment(task_id: str) -> str:
    """A task id as one path segment (ids are hex; anything else cannot escape the path)."""
    if not task_id or "/" in task_id or task_id in (".", ".."):
        raise NotFound(task_id)
    return httpx.URL(path=task_id).raw_path.decode()


async def _parse_sse(lines: AsyncIterator[str]) -> AsyncIterator[TaskEvent]:
    """Server-Sent Events (WHATWG): ``id:``, ``event:``, ``data:`` lines, a blank line ends
    one; comments (heartbeats) and events without an id are skipped."""
    event_id: str | None = None
    kind = "message"
    data: list[str] = []
    async for line in lines:
        if line == "":
            if data and event_id is not None and event_id.isdigit():
                text = "\n".join(data)
                try:
                    payload = orjson.loads(text) if text else {}
                except orjson.JSONDecodeError:
                    payload = {"text": text}
                if not isinstance(payload, dict):
                    payload = {"value": payload}
                yield TaskEvent(int(event_id), kind, payload)
            event_id, kind, data = None, "message", []
            continue
        if line.startswith(":"):
            continue
        name, _, value = line.partition(":")
        value = value.removeprefix(" ")
        if name == "id":
            event_id = value
        elif name == "event":
            kind = value
        elif name == "data":
            data.append(value)
