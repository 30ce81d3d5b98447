"""api/server.py's h11 connection frames the chunks of a chunked body itself: the bytes it
sends and the states it goes through must be h11's own, for every kind of body."""

from __future__ import annotations

import h11
import pytest

from taskstatus.api.server import _Connection


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
