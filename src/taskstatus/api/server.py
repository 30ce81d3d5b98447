"""How taskstatus runs under uvicorn: `uvicorn_config(app, settings)`, used by ``serve``.

uvicorn's h11 protocol with what it lacks for clients that misbehave:

- request lines and headers over ``max_header_bytes`` get a 431 (uvicorn answers every
  unparseable request with a text/plain 400); other malformed requests (a negative or doubled
  Content-Length, NUL in a header) a 400; both as an ErrorResponseDto with ``Connection: close``;
- a client gets ``header_timeout`` seconds from its first byte (or the end of the previous
  response) to the end of its headers; then a 408, and the connection is closed. uvicorn only
  times out connections that send nothing at all (``timeout_keep_alive``);
- a server that shuts down ends its open event streams (api/sse.py), each with a proper end
  of its body: uvicorn would otherwise wait for them, as for any response still being sent.

A chunk of a chunked body (the bulk of what an event stream sends, a thousand times per
event with a thousand streams) is framed by `_Connection.chunk` in one step instead of through
h11's state machine and writer: in SEND_BODY a Data event changes no state, so the bytes and
the connection's state are h11's own (tests/unit/test_server_framing.py compares them). Each
request's scope also has the `taskstatus.write_chunk` extension (api/sse.py, `_ChunkWriter`),
with which an event stream writes a chunk straight to the socket when that can be done at
once, without an ASGI send through every middleware.

The body's own deadline (``body_timeout``) is kept by the ASGI `RequestGuard`, which knows
the path and so answers in its dialect.
"""

from __future__ import annotations

import asyncio
import weakref
from typing import Any

import h11
import orjson
import uvicorn
from h11._writers import ChunkedWriter
from uvicorn.protocols.http.h11_impl import H11Protocol, RequestResponseCycle

from taskstatus.api import sse
from taskstatus.api.errors import GENERIC, error_body
from taskstatus.limits import limit
from taskstatus.settings import Settings

__all__ = ["GuardedH11Protocol", "uvicorn_config"]


class _Connection(h11.Connection):
    """h11's connection, remembering the protocol error it raised (its status hint), and
    framing the chunks of a chunked body in one step."""

    last_error: h11.RemoteProtocolError | None = None

    def next_event(self) -> Any:
        try:
            event = super().next_event()
            if isinstance(event, h11.Request):
                # h11 bounds only a head that arrives in pieces; one that came whole is
                # measured here
                size = len(event.target) + sum(len(k) + len(v) + 4 for k, v in event.headers)
                if size > self._max_incomplete_event_size:
                    raise h11.RemoteProtocolError("request head too large", 431)
            return event
        except h11.RemoteProtocolError as e:
            self.last_error = e
            raise

    def chunk(self, data: bytes) -> bytes | None:
        """What h11 would send for Data(`data`) in a chunked body being sent (no state
        changes then); None when no chunked body is being sent."""
        # h11's ChunkedWriter writes these very bytes: the size in hex, the data, CRLF, and
        # nothing for an empty chunk (which would read as the end)
        if type(self._writer) is ChunkedWriter and self._cstate.states[h11.SERVER] is h11.SEND_BODY:
            return b"%x\r\n%b\r\n" % (len(data), data) if data else b""
        return None

    def send(self, event: Any) -> Any:
        if type(event) is h11.Data:
            framed = self.chunk(event.data)
            if framed is not None:
                return framed
        return super().send(event)


class _ChunkWriter:
    """The `taskstatus.write_chunk` extension of one request: `write(chunk)` writes a chunk
    of its response's chunked body straight to the socket when the cycle's ASGI send would
    write it at once, and says whether it did. It does not when the send would have to wait
    or do more (the client slow to read, the connection gone or closing, no chunked body
    being sent, a HEAD): the caller sends the chunk the ASGI way then."""

    __slots__ = ("_cycle",)

    def __init__(self, cycle: RequestResponseCycle) -> None:
        # weakly: the cycle holds the scope, which holds this; a strong reference would make
        # every request's scope and cycle garbage for the cyclic collector, not freed at once
        self._cycle = weakref.ref(cycle)

    def __call__(self, chunk: bytes) -> bool:
        cycle = self._cycle()
        if (
            cycle is None
            or cycle.disconnected
            or cycle.response_complete
            or not cycle.response_started
            or cycle.flow.write_paused
            or cycle.transport.is_closing()
            or cycle.scope["method"] == "HEAD"
        ):
            return False
        conn = cycle.conn
        framed = conn.chunk(chunk) if isinstance(conn, _Connection) else None
        if framed is None:
            return False
        cycle.transport.write(framed)
        return True


class GuardedH11Protocol(H11Protocol):
    header_timeout: float = 10.0  # set per server by `uvicorn_config`

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.max_header_bytes = self.conn._max_incomplete_event_size
        self.guarded = _Connection(h11.SERVER, self.max_header_bytes)
        self.conn = self.guarded
        self._header_timer: asyncio.TimerHandle | None = None

    # --- the header deadline ------------------------------------------------------------------

    def _arm(self) -> None:
        self._disarm()
        if self.conn.their_state is h11.IDLE:
            self._header_timer = self.loop.call_later(self.header_timeout, self._headers_late)

    def _disarm(self) -> None:
        if self._header_timer is not None:
            self._header_timer.cancel()
            self._header_timer = None

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._arm()

    def handle_events(self) -> None:
        cycle = self.cycle
        super().handle_events()
        if self.cycle is not cycle and self.cycle is not None:  # a request came: before the
            # app sees its scope (its task has not run yet), give it the chunk writer
            extensions = self.cycle.scope.setdefault("extensions", {})
            extensions[sse.WRITE_CHUNK] = {"write": _ChunkWriter(self.cycle)}

    def shutdown(self) -> None:
        sse.end_all()  # the server is shutting down: once per connection, the first one acts
        super().shutdown()

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        super().data_received(data)
        if self.conn.their_state is not h11.IDLE:
            self._disarm()  # the headers are in

    def on_response_complete(self) -> None:
        super().on_response_complete()
        if not self.transport.is_closing():
            self._arm()

    def _headers_late(self) -> None:
        self._header_timer = None
        if self.transport.is_closing() or self.conn.their_state is not h11.IDLE:
            return
        if self.conn.trailing_data[0]:  # a request has begun: say why it ends
            cause = (
                f"the request headers did not arrive within {self.header_timeout:g} s "
                f"({limit('header-timeout', self.header_timeout)})"
            )
            self._write_error(408, cause)
        self.transport.close()

    # --- malformed requests -------------------------------------------------------------------

    def send_400_response(self, msg: str) -> None:
        error = self.guarded.last_error
        if error is not None and error.error_status_hint == 431:
            status = 431
            cause = (
                f"the request line and headers are over {self.max_header_bytes} bytes "
                f"({limit('max-header-bytes', self.max_header_bytes)})"
            )
        else:
            status, cause = 400, f"malformed HTTP request: {error or msg}"
        self.logger.info("%s -> %d: %s", msg, status, cause)
        self._write_error(status, cause)
        self.transport.close()

    def _write_error(self, status: int, cause: str) -> None:
        """Write an error response in raw bytes: h11 will not send one before a request."""
        body = orjson.dumps(error_body(status, "-", GENERIC.get(status, ""), [cause]))
        reason = {400: b"Bad Request", 408: b"Request Timeout"}.get(
            status, b"Request Header Fields Too Large"
        )
        head = (
            b"HTTP/1.1 %d %s\r\ncontent-type: application/json\r\ncontent-length: %d\r\n"
            b"connection: close\r\n\r\n" % (status, reason, len(body))
        )
        self.transport.write(head + body)


def uvicorn_config(app: Any, settings: Settings, **options: Any) -> uvicorn.Config:
    """The uvicorn configuration taskstatus serves `app` with; `options` add to it."""
    protocol = type(
        "TaskStatusH11Protocol", (GuardedH11Protocol,), {"header_timeout": settings.header_timeout}
    )
    base: dict[str, Any] = {
        "host": settings.host,
        "port": settings.port,
        # h11 writes header names as given (X-Total-Count: see api/responses.py)
        "http": protocol,
        "h11_max_incomplete_event_size": settings.max_header_bytes,
        "timeout_keep_alive": settings.keep_alive,
        "log_config": None,  # uvicorn's loggers go through ours
        "server_header": False,
    }
    return uvicorn.Config(app, **{**base, **options})
