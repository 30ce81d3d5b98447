"""api/server.py's h11 connection frames the chunks of a chunked body itself: the bytes it
sends and the states it goes through must be h11's own, for every kind of body. The
`taskstatus.write_chunk` extension writes such chunks straight to the socket only while the
ASGI send would write them at once, and only into its own request's response."""

from __future__ import annotations

import gc
import socket
import weakref
from collections.abc import Iterator
from types import SimpleNamespace
from typing import Any

import h11
import pytest
import uvicorn

from taskstatus.api.server import GuardedH11Protocol, _ChunkWriter, _Connection
from taskstatus.api.sse import WRITE_CHUNK
from tests.conftest import serving


def _pair(request: bytes) -> tuple[h11.Connection, _Connection]:
    """h11's server connection and ours, each having received `request`."""
    plain, ours = h11.Connection(h11.SERVER), _Connection(h11.SERVER, 16384)
    for conn in (plain, ours):
        conn.receive_data(request)
        assert isinstance(conn.next_event(), h11.Request)
        assert isinstance(conn.next_event(), h11.EndOfMessage)
    return plain, ours


HTTP11 = b"GET /events HTTP/1.1\r\nHost: x\r\n\r\n"
HTTP10 = b"GET /events HTTP/1.0\r\n\r\n"
CHUNKS = [
    b"id: 1\r\ndata: {}\r\n\r\n",
    b"",
    b"x",
    b"y" * 255,
    bytes(range(256)) * 70,
    b": ping\r\n\r\n",
]


@pytest.mark.parametrize(
    ("request_bytes", "headers"),
    [
        (HTTP11, [(b"content-type", b"text/event-stream")]),  # chunked
        (HTTP11, [(b"transfer-encoding", b"chunked")]),
        (HTTP10, [(b"content-type", b"text/event-stream")]),  # HTTP/1.0: no chunks
    ],
)
def test_a_body_is_sent_as_h11_sends_it(
    request_bytes: bytes, headers: list[tuple[bytes, bytes]]
) -> None:
    """The head, every chunk (an empty one too) and the end are the same bytes as h11's, and
    both connections are in the same states after each, then ready for the next request."""
    plain, ours = _pair(request_bytes)
    events: list[h11.Event] = [h11.Response(status_code=200, headers=headers)]
    events += [h11.Data(data=chunk) for chunk in CHUNKS]
    events.append(h11.EndOfMessage())
    for event in events:
        assert ours.send(event) == plain.send(event)
        assert ours.states == plain.states
    assert ours.our_state in (h11.DONE, h11.MUST_CLOSE)


def test_a_content_length_body_is_still_counted() -> None:
    """A body with a Content-Length goes through h11's writer: too much data is refused."""
    _, ours = _pair(HTTP11)
    ours.send(h11.Response(status_code=200, headers=[(b"content-length", b"3")]))
    assert ours.send(h11.Data(data=b"abc")) == b"abc"
    with pytest.raises(h11.LocalProtocolError):
        ours.send(h11.Data(data=b"d"))


def test_data_out_of_a_body_is_refused() -> None:
    """Data before the response head is a protocol error, as in h11."""
    _, ours = _pair(HTTP11)
    with pytest.raises(h11.LocalProtocolError):
        ours.send(h11.Data(data=b"early"))


class _Cycle(SimpleNamespace):
    """A stand-in for uvicorn's RequestResponseCycle (weakly referable, as it is)."""


class _Transport:
    def __init__(self) -> None:
        self.written: list[bytes] = []
        self.closing = False

    def write(self, data: bytes) -> None:
        self.written.append(data)

    def is_closing(self) -> bool:
        return self.closing


def test_the_chunk_writer_writes_only_what_the_send_would_write_at_once() -> None:
    """The writer writes h11's bytes for a chunk of the body being sent, and nothing (saying
    so) before the head, after the end, for a HEAD, a connection gone or closing, or while
    writing is paused (the ASGI send would wait)."""
    _, conn = _pair(HTTP11)
    transport = _Transport()
    cycle: Any = _Cycle(
        disconnected=False,
        response_complete=False,
        response_started=False,
        flow=SimpleNamespace(write_paused=False),
        transport=transport,
        scope={"method": "GET"},
        conn=conn,
    )
    write = _ChunkWriter(cycle)
    assert not write(b"early")  # no head yet
    conn.send(h11.Response(status_code=200, headers=[(b"content-type", b"text/event-stream")]))
    cycle.response_started = True
    assert write(b"data: 1\r\n\r\n")
    assert transport.written == [b"b\r\ndata: 1\r\n\r\n\r\n"]
    for name, value in [
        ("disconnected", True),
        ("flow", SimpleNamespace(write_paused=True)),
        ("scope", {"method": "HEAD"}),
    ]:
        before = getattr(cycle, name)
        setattr(cycle, name, value)
        assert not write(b"x"), name
        setattr(cycle, name, before)
    transport.closing = True
    assert not write(b"x")
    transport.closing = False
    conn.send(h11.EndOfMessage())  # the body ended (the cycle not told yet): no chunk after it
    assert not write(b"x")
    cycle.response_complete = True
    assert not write(b"x")
    assert transport.written == [b"b\r\ndata: 1\r\n\r\n\r\n"]
    cycle.response_complete = False
    del cycle
    gc.collect()
    assert not write(b"x")  # the cycle is gone (the writer does not keep it)


def test_a_request_s_scope_and_cycle_are_freed_without_the_cyclic_collector() -> None:
    """The writer in a request's scope does not make the scope and its cycle a reference
    cycle: they are freed as soon as the last reference goes (the GET path's garbage)."""
    cycle: Any = _Cycle(scope={"method": "GET"})
    cycle.scope["extensions"] = {WRITE_CHUNK: {"write": _ChunkWriter(cycle)}}
    gone = weakref.ref(cycle)
    gc.disable()
    try:
        del cycle
        assert gone() is None
    finally:
        gc.enable()


async def _chunked_app(scope: Any, receive: Any, send: Any) -> None:
    """Streams the chunks the path names with the server's writer (kept in `_kept` too),
    then ends the body; `/late` first tries the writer of the request before it."""
    if scope["type"] != "http":
        return
    write = scope["extensions"][WRITE_CHUNK]["write"]
    await send({"type": "http.response.start", "status": 200, "headers": []})
    if scope["path"] == "/late":
        _late.append(_kept[-1](b"from the request before"))
    else:
        for chunk in scope["path"].strip("/").split("/"):
            assert write(chunk.encode())
    _kept.append(write)
    await send({"type": "http.response.body", "body": b"", "more_body": False})


_kept: list[Any] = []
_late: list[bool] = []


@pytest.fixture
def chunked_server() -> Iterator[int]:
    """`_chunked_app` under uvicorn with taskstatus's protocol; yields its port."""
    config = uvicorn.Config(
        _chunked_app, host="127.0.0.1", port=0, http=GuardedH11Protocol, lifespan="off"
    )
    with serving(config) as port:
        yield port


def _response(sock: socket.socket) -> bytes:
    """One whole chunked response read from `sock` (up to its last chunk)."""
    data = b""
    while not data.endswith(b"0\r\n\r\n"):
        more = sock.recv(65536)
        assert more, f"closed before the end: {data!r}"
        data += more
    return data


def test_the_writer_streams_a_chunked_body_and_only_its_own(chunked_server: int) -> None:
    """Over real HTTP, chunks written with the extension arrive framed as h11 frames them,
    between the head and the end; a second request on the same connection cannot be
    written into with the first one's writer."""
    with socket.create_connection(("127.0.0.1", chunked_server), timeout=30) as sock:
        sock.sendall(b"GET /one/two HTTP/1.1\r\nHost: x\r\n\r\n")
        head, _, body = _response(sock).partition(b"\r\n\r\n")
        assert b"transfer-encoding: chunked" in head.lower()
        assert body == b"3\r\none\r\n3\r\ntwo\r\n0\r\n\r\n"
        sock.sendall(b"GET /late HTTP/1.1\r\nHost: x\r\n\r\n")
        _, _, body = _response(sock).partition(b"\r\n\r\n")
        assert body == b"0\r\n\r\n"
    assert _late == [False]
