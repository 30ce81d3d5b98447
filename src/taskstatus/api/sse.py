"""`EventStream`: the text/event-stream response of the API's event streams, made for a
thousand long streams on one process at little cost per event.

The body is an async iterator of bytes already framed as SSE (`frame`), each chunk sent as
one ASGI message as it is: no encoding, no lock and no timer per event. Per stream, one task
waits for the client to go away (then the stream ends and its iterator is closed, which frees
what it held). One watchdog per event loop, every WATCH_EVERY seconds while streams are open,
ends the streams whose send has been stuck for SEND_TIMEOUT (a client that stopped reading)
and all of them when the server shuts down (`end_all`, called by taskstatus's uvicorn
protocol, or sse-starlette's AppStatus.should_exit under plain uvicorn); a stream ended by a
shutdown ends its body properly, so its client sees the end and resumes with Last-Event-ID.
Heartbeats are the body's to send (api/streams.py: a comment when the hub says it is quiet).
"""

from __future__ import annotations

import asyncio
import re
import weakref
from collections.abc import AsyncGenerator, Mapping

import anyio
from sse_starlette.sse import AppStatus
from starlette.responses import Response
from starlette.types import Receive, Scope, Send

__all__ = ["HEARTBEAT", "SEND_TIMEOUT", "EventStream", "end_all", "frame"]

SEND_TIMEOUT = 30.0  # seconds a send may wait on a client that does not read
WATCH_EVERY = 0.5  # seconds between the watchdog's looks
HEARTBEAT = b": ping\r\n\r\n"  # a comment line: keeps an idle connection open through proxies
_LINE_BREAK = re.compile(r"\r\n|\r|\n")  # what SSE splits lines on (not str.splitlines's U+2028)


def frame(data: str, event: str | None = None, id: str | None = None) -> bytes:
    """One SSE event as bytes: `id:`, `event:`, then a `data:` line per line of `data`."""
    lines = [] if id is None else [f"id: {id}"]
    if event is not None:
        lines.append(f"event: {event}")
    lines.extend(f"data: {line}" for line in _LINE_BREAK.split(data))
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


_open: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, set[EventStream]] = (
    weakref.WeakKeyDictionary()
)
_watchdogs: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, asyncio.Task[None]] = (
    weakref.WeakKeyDictionary()
)


def end_all() -> None:
    """End every open stream of the running event loop (the server is shutting down)."""
    streams = _open.get(asyncio.get_running_loop())
    if streams:
        ending = list(streams)
        streams.clear()  # ended: a call for each connection of the server finds none again
        for stream in ending:
            stream.end(graceful=True)


async def _watch(loop: asyncio.AbstractEventLoop, streams: set[EventStream]) -> None:
    while streams:
        await asyncio.sleep(WATCH_EVERY)
        if AppStatus.should_exit:
            end_all()
        stuck = loop.time() - SEND_TIMEOUT
        for stream in list(streams):
            if stream.sending_since is not None and stream.sending_since < stuck:
                stream.end(graceful=False)


class EventStream(Response):
    """A text/event-stream of the chunks of `body`, until it ends, the client goes away, a
    send is stuck or the server shuts down."""

    media_type = "text/event-stream"

    def __init__(
        self, body: AsyncGenerator[bytes, None], headers: Mapping[str, str] | None = None
    ) -> None:
        self.body_iterator = body
        self.status_code = 200
        self.background = None
        self.init_headers({"Connection": "keep-alive", **(headers or {})})
        self.sending_since: float | None = None  # loop time a send began; None: not sending
        self._scope = anyio.CancelScope()
        self._graceful = False

    def end(self, graceful: bool) -> None:
        """Stop the stream; `graceful`: end its body properly (the client is still there).
        The first reason stands: a stream whose client left is not ended properly later."""
        if not self._scope.cancel_called:
            self._graceful = graceful
            self._scope.cancel()

    async def _listen(self, receive: Receive) -> None:
        while (await receive())["type"] != "http.disconnect":
            pass
        self.end(graceful=False)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        start = {"type": "http.response.start", "status": self.status_code}
        await send({**start, "headers": self.raw_headers})
        body = self.body_iterator
        if scope["method"] == "HEAD":  # the headers alone: a HEAD must not open a stream
            await body.aclose()
            await send({"type": "http.response.body", "body": b"", "more_body": False})
            return
        loop = asyncio.get_running_loop()
        streams = _open.setdefault(loop, set())
        streams.add(self)
        watchdog = _watchdogs.get(loop)
        if watchdog is None or watchdog.done():
            _watchdogs[loop] = loop.create_task(_watch(loop, streams), name="event streams")
        listener = loop.create_task(self._listen(receive), name="event stream listener")
        ended = False
        try:
            with self._scope:
                async for chunk in body:
                    self.sending_since = loop.time()
                    await send({"type": "http.response.body", "body": chunk, "more_body": True})
                    self.sending_since = None
                ended = True
        finally:
            streams.discard(self)
            listener.cancel()
            await body.aclose()
        if ended or self._graceful:
            await send({"type": "http.response.body", "body": b"", "more_body": False})
