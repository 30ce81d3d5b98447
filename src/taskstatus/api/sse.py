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

`push` sends a chunk from outside the stream's task, while the body waits for news: the
event hub writes a new event to each live stream of its task there and then, waking no task
(api/streams.py). The ASGI send is driven on the spot and completes at once unless the
client is slow to read (flow control); then it goes on in a task of its own, and the body's
next chunk waits for it, so chunks go out in order whichever way they came.

Under taskstatus's server (api/server.py) a request's scope has the WRITE_CHUNK extension,
`write(chunk) -> bool`: it writes a chunk of the chunked body straight to the socket when the
ASGI send would write it at once, and says no otherwise. The stream sends its chunks with it
first, and the ASGI way when it says no: the middleware in between sees the response's start
and its end, not each chunk (none of taskstatus's looks at body messages; one that must
would take the extension out of the scope).
"""

from __future__ import annotations

import asyncio
import re
import types
import weakref
from collections.abc import AsyncGenerator, Callable, Generator, Mapping
from typing import Any

import anyio
from sse_starlette.sse import AppStatus
from starlette.responses import Response
from starlette.types import Receive, Scope, Send

__all__ = ["HEARTBEAT", "SEND_TIMEOUT", "WRITE_CHUNK", "EventStream", "end_all", "frame"]

WRITE_CHUNK = "taskstatus.write_chunk"  # the ASGI extension: {"write": write(chunk) -> bool}

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
        self._send: Send | None = None  # while the body is being sent: what `push` sends with
        self._write: Callable[[bytes], bool] | None = None  # the server's WRITE_CHUNK, if any
        self._pending: asyncio.Task[None] | None = None  # a pushed send waiting for the client
        self._failed: Exception | None = None  # what a pushed send raised

    def push(self, chunk: bytes) -> bool:
        """Send `chunk` now, from outside the stream's task (while its body waits for news).
        True when it is sent or on its way: a send that has to wait for the client goes on
        in a task of its own, before anything else the stream sends. False when the stream
        cannot take it now (not sending its body, a send under way, ending): the body must
        send it itself."""
        send = self._send
        if (
            send is None
            or self._pending is not None
            or self.sending_since is not None
            or self._scope.cancel_called
        ):
            return False
        write = self._write
        try:
            if write is not None and write(chunk):
                return True  # written: the common case
            message = {"type": "http.response.body", "body": chunk, "more_body": True}
            sending = send(message).__await__()  # driven here, as a task would drive it
            waiting = sending.send(None)
        except StopIteration:
            return True  # sent
        except Exception as exc:
            self._fail(exc)
            return True
        loop = asyncio.get_running_loop()
        self.sending_since = loop.time()
        self._pending = loop.create_task(self._finish(sending, waiting), name="event stream push")
        return True

    async def _finish(self, sending: Generator[Any, None, None], waiting: Any) -> None:
        try:
            await _resume(sending, waiting)
        except Exception as exc:
            self._fail(exc)
        finally:
            self.sending_since = None
            self._pending = None

    def _fail(self, exc: Exception) -> None:
        """A pushed send raised: the stream ends, and its call raises it."""
        if self._failed is None:
            self._failed = exc
        self.end(graceful=False)

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
        self._send = send
        write = self._write = scope.get("extensions", {}).get(WRITE_CHUNK, {}).get("write")
        try:
            with self._scope:
                async for chunk in body:
                    if self._pending is not None:
                        await self._pending  # a pushed chunk goes first
                    if write is not None and write(chunk):
                        continue
                    self.sending_since = loop.time()
                    await send({"type": "http.response.body", "body": chunk, "more_body": True})
                    self.sending_since = None
                if self._pending is not None:
                    await self._pending
                ended = not self._scope.cancel_called
        finally:
            self._send = self._write = None
            streams.discard(self)
            listener.cancel()
            if self._pending is not None:  # waiting for a client that is gone or too slow
                self._pending.cancel()
            await body.aclose()
        if self._failed is not None:
            raise self._failed
        if ended or self._graceful:
            await send({"type": "http.response.body", "body": b"", "more_body": False})


@types.coroutine
def _resume(sending: Generator[Any, None, None], waiting: Any) -> Generator[Any, Any, None]:
    """The rest of `sending`, which has yielded `waiting` to its driver: what `await
    sending` would have done from there (results and exceptions, cancellation too, go in)."""
    while True:
        try:
            sent = yield waiting
        except BaseException as exc:
            try:
                waiting = sending.throw(exc)
            except StopIteration:
                return
        else:
            try:
                waiting = sending.send(sent)
            except StopIteration:
                return
