"""The dashboard's live parts: Server-Sent Events of rendered HTML, for htmx's SSE extension.

Each stream follows the store's event log through the service's EventHub (the one that feeds
the API's streams), so it hears of every change committed by any process or node. It sends no
events of its own kind: on news it renders the part of the page that changed and sends that
HTML, under an event name the page's ``sse-swap`` attributes listen for:

- ``/ui/live/overview``: ``overview`` (counts, chart, workers), at most every OVERVIEW_EVERY
  seconds while tasks change, and every OVERVIEW_IDLE seconds anyway (the chart moves on);
- ``/ui/live/rows?ids=...``: ``row-<id>`` for every row of the shown page once it connects
  (the page may be older than the stream), then for each that changed;
- ``/ui/live/tasks/<id>``: ``task`` (the live part of the detail page), ``actions`` when its
  state changed, and ``done`` once it has ended (the page closes the stream on it).

The caller's visibility applies as everywhere (a task it may not see is never rendered).
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator

from fastapi import APIRouter, Request
from sse_starlette import EventSourceResponse, ServerSentEvent
from starlette.responses import Response

from taskstatus.api.deps import app_state
from taskstatus.errors import NotFound
from taskstatus.model import CompletionStatus
from taskstatus.ui.caller import SignedIn, signed_in, to_login
from taskstatus.ui.pages import overview_context
from taskstatus.ui.render import fragment

__all__ = ["router"]

router = APIRouter(prefix="/ui/live", include_in_schema=False)

SETTLE = 0.25  # seconds to let a burst of events settle before rendering once
OVERVIEW_EVERY = 2.0
OVERVIEW_IDLE = 15.0
MAX_ROWS = 250


def _response(request: Request, who: SignedIn, events: AsyncIterator[ServerSentEvent]) -> Response:
    state = app_state(request)
    client = who.session.caller.client_id
    state.streams.check(client)  # 429 past max_streams_per_client, as for the API's streams

    async def held() -> AsyncIterator[ServerSentEvent]:
        with state.streams.hold(client):
            async for event in events:
                yield event

    heartbeat = state.settings.event_heartbeat
    return EventSourceResponse(
        held(),
        ping=int(max(1, heartbeat)),
        headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"},
        send_timeout=30,
    )


async def _wait(wake: asyncio.Event, timeout: float) -> bool:
    with contextlib.suppress(TimeoutError):
        async with asyncio.timeout(timeout):
            await wake.wait()
            return True
    return False


@router.get("/overview")
async def overview(request: Request) -> Response:
    who = await signed_in(request)
    if who is None:
        return to_login(request)
    hub = app_state(request).service.events

    async def events() -> AsyncIterator[ServerSentEvent]:
        with hub.follow(None) as follower:
            last = time.monotonic()
            while True:
                woke = await _wait(follower.wake, OVERVIEW_IDLE)
                if woke:
                    await asyncio.sleep(max(SETTLE, OVERVIEW_EVERY - (time.monotonic() - last)))
                follower.wake.clear()
                follower.news = {}
                context = await overview_context(request, who)
                last = time.monotonic()
                yield ServerSentEvent(
                    data=fragment("partials/overview_live.html", **context), event="overview"
                )

    return _response(request, who, events())


@router.get("/rows")
async def rows(request: Request) -> Response:
    who = await signed_in(request)
    if who is None:
        return to_login(request)
    shown = {i for i in request.query_params.get("ids", "").split(",") if i}
    shown = set(sorted(shown)[:MAX_ROWS])
    hub = app_state(request).service.events
    can_write = who.viewer.can_write

    async def events() -> AsyncIterator[ServerSentEvent]:
        with hub.follow(None) as follower:
            # The page was rendered before this stream began (or before a reconnect): what
            # changed in between has no event left to hear, so every row is sent once first.
            follower.lost = True
            while True:
                if not follower.lost and not await _wait(follower.wake, 30.0):
                    continue
                if not follower.lost:
                    await asyncio.sleep(SETTLE)
                follower.wake.clear()
                news, follower.news = follower.news, {}
                changed = [i for i in news if i in shown]
                if follower.lost:  # some news may have been missed: look at every row
                    follower.lost, changed = False, sorted(shown)
                for task in await who.viewer.tasks(changed):
                    yield ServerSentEvent(
                        data=fragment("partials/row.html", task=task, can_write=can_write),
                        event=f"row-{task.id}",
                    )

    return _response(request, who, events())


@router.get("/tasks/{task_id}")
async def task(request: Request, task_id: str) -> Response:
    who = await signed_in(request)
    if who is None:
        return to_login(request)
    await who.viewer.get(task_id)  # 404 before the stream starts
    hub = app_state(request).service.events
    csrf = who.csrf

    async def events() -> AsyncIterator[ServerSentEvent]:
        state = None
        with hub.follow(task_id) as follower:
            while True:
                follower.wake.clear()
                try:
                    current = await who.viewer.get(task_id)
                except NotFound:  # deleted meanwhile
                    yield ServerSentEvent(data="", event="done")
                    return
                context = {
                    "task": current,
                    "can_write": who.viewer.can_write,
                    "csrf": csrf,
                    "statuses": CompletionStatus,
                }
                yield ServerSentEvent(
                    data=fragment("partials/task_live.html", **context), event="task"
                )
                if current.state != state:
                    state = current.state
                    children = await who.viewer.children(current)
                    yield ServerSentEvent(
                        data=fragment("partials/actions.html", children=children, **context),
                        event="actions",
                    )
                if current.terminal:
                    yield ServerSentEvent(data="", event="done")
                    return
                await _wait(follower.wake, 30.0)
                await asyncio.sleep(SETTLE)

    return _response(request, who, events())
