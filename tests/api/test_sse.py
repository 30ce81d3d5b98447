"""api/sse.py's EventStream on its own, driven as an ASGI server would drive it: what it does
when a client stops reading (its send waits), which real HTTP cannot show in a short test
without filling the socket buffers; chunks pushed from outside its task (the event hub's
way), alone and with the hub over a real store."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncGenerator
from typing import Any

import pytest

from taskstatus.api import sse
from taskstatus.api.sse import EventStream
from taskstatus.events import TERMINAL_EVENT, EventHub, TaskEvent
from taskstatus.model import CompletionStatus, TaskState
from taskstatus.store import Outcome, Progress, Store
from tests.conftest import make_task
from tests.store.test_contract import W1, seeded

pytestmark = pytest.mark.anyio


async def test_a_stream_whose_client_stopped_reading_ends(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A send that waits longer than SEND_TIMEOUT (the client stopped reading) ends the
    stream and closes its body, so what the body held is freed; the body is not ended
    properly (that send would wait too)."""
    monkeypatch.setattr(sse, "SEND_TIMEOUT", 0.2)
    closed = asyncio.Event()
    never = asyncio.Event()

    async def body() -> AsyncGenerator[bytes, None]:
        try:
            while True:
                yield b"data: x\r\n\r\n"
        finally:
            closed.set()

    sent: list[dict[str, Any]] = []

    async def send(message: Any) -> None:
        sent.append(message)
        if len(sent) > 2:  # the head and one chunk went out; then the client stops reading
            await never.wait()

    async def receive() -> Any:
        await never.wait()  # the client neither sends nor goes away

    stream = EventStream(body())
    await asyncio.wait_for(stream({"type": "http", "method": "GET"}, receive, send), 30)
    assert closed.is_set()
    assert [m.get("more_body") for m in sent] == [None, True, True]


def _gate(sent: list[dict[str, Any]], gate: asyncio.Event, after: int) -> Any:
    """An ASGI send that records each message; from message `after` on (the head is 0) it
    first waits for `gate`, as uvicorn's send waits while the client's socket is full."""

    async def send(message: Any) -> None:
        if len(sent) >= after and message["type"] == "http.response.body":
            await gate.wait()
        sent.append(message)

    return send


async def _never() -> Any:
    await asyncio.Event().wait()  # the client neither sends nor goes away


def _bodies(sent: list[dict[str, Any]]) -> list[bytes]:
    return [m["body"] for m in sent if m["type"] == "http.response.body"]


async def _until(predicate: Any, what: str) -> None:
    deadline = asyncio.get_running_loop().time() + 30
    while not predicate():
        assert asyncio.get_running_loop().time() < deadline, f"timed out waiting for {what}"
        await asyncio.sleep(0.01)


async def _a_then_c(more: asyncio.Event) -> AsyncGenerator[bytes, None]:
    """A body that yields b"a", waits for `more`, then yields b"c"."""
    yield b"a"
    await more.wait()
    yield b"c"


async def test_a_push_is_sent_at_once_between_the_body_s_chunks() -> None:
    """A push while the body waits is sent before push returns (no task runs for it),
    between the chunks the body yields; none is taken before the body is being sent or
    after the stream ended."""
    more = asyncio.Event()
    sent: list[dict[str, Any]] = []
    open_gate = asyncio.Event()
    open_gate.set()
    stream = EventStream(_a_then_c(more))
    assert not stream.push(b"early")  # not started
    call = asyncio.create_task(
        stream({"type": "http", "method": "GET"}, _never, _gate(sent, open_gate, 0))
    )
    await _until(lambda: _bodies(sent) == [b"a"], "the first chunk")
    assert stream.push(b"b")
    assert _bodies(sent) == [b"a", b"b"]  # sent already, in the caller's own step
    more.set()
    await asyncio.wait_for(call, 30)
    assert _bodies(sent) == [b"a", b"b", b"c", b""]
    assert [m.get("more_body") for m in sent] == [None, True, True, True, False]
    assert not stream.push(b"late")


async def test_a_pushed_send_that_waits_goes_before_the_next_chunk() -> None:
    """A push whose send has to wait (the client is slow) is taken and goes on by itself;
    meanwhile other pushes are turned down, and the body's next chunk waits for it: the
    client gets the chunks in order, each once."""
    more = asyncio.Event()
    sent: list[dict[str, Any]] = []
    gate = asyncio.Event()

    async def send(message: Any) -> None:
        if message.get("body") == b"b":  # this one waits; a later one would not
            await gate.wait()
        sent.append(message)

    stream = EventStream(_a_then_c(more))
    call = asyncio.create_task(stream({"type": "http", "method": "GET"}, _never, send))
    await _until(lambda: _bodies(sent) == [b"a"], "the first chunk")
    assert stream.push(b"b")  # taken, waiting for the client
    assert not stream.push(b"x")  # a send is under way: the body must send it
    more.set()  # the body yields c, which must wait for b
    await asyncio.sleep(0.1)
    assert _bodies(sent) == [b"a"]
    gate.set()
    await asyncio.wait_for(call, 30)
    assert _bodies(sent) == [b"a", b"b", b"c", b""]


async def test_a_stream_whose_pushed_send_is_stuck_ends(monkeypatch: pytest.MonkeyPatch) -> None:
    """A pushed send that waits longer than SEND_TIMEOUT ends the stream as a stuck body
    send does: the body is closed, no end is sent, and later pushes are turned down."""
    monkeypatch.setattr(sse, "SEND_TIMEOUT", 0.2)
    closed = asyncio.Event()

    async def body() -> AsyncGenerator[bytes, None]:
        try:
            yield b"a"
            await asyncio.Event().wait()  # waits for news that never comes
            yield b"never"
        finally:
            closed.set()

    sent: list[dict[str, Any]] = []
    stream = EventStream(body())
    call = asyncio.create_task(
        stream({"type": "http", "method": "GET"}, _never, _gate(sent, asyncio.Event(), 2))
    )
    await _until(lambda: _bodies(sent) == [b"a"], "the first chunk")
    assert stream.push(b"b")
    await asyncio.wait_for(call, 30)
    assert closed.is_set()
    assert _bodies(sent) == [b"a"]
    assert not stream.push(b"c")


async def test_a_pushed_send_that_fails_ends_the_stream_with_its_error() -> None:
    """A pushed send that raises ends the stream (its body closed) and the stream's call
    raises the error, as it would for a send of the body's own."""
    closed = asyncio.Event()

    async def body() -> AsyncGenerator[bytes, None]:
        try:
            yield b"a"
            await asyncio.Event().wait()
            yield b"never"
        finally:
            closed.set()

    sent: list[dict[str, Any]] = []

    async def send(message: Any) -> None:
        if message.get("body") == b"b":
            raise RuntimeError("the connection broke")
        sent.append(message)

    stream = EventStream(body())
    call = asyncio.create_task(stream({"type": "http", "method": "GET"}, _never, send))
    await _until(lambda: _bodies(sent) == [b"a"], "the first chunk")
    assert stream.push(b"b")
    with pytest.raises(RuntimeError, match="the connection broke"):
        await asyncio.wait_for(call, 30)
    assert closed.is_set()
    assert _bodies(sent) == [b"a"]


async def test_a_client_that_stops_reading_holds_up_no_other(store: Store) -> None:
    """Three streams of one task, written as api/streams.py writes them (the hub pushing
    live events): while one client does not read, the other two get each event as it
    comes; once it reads again it gets what it missed; every stream has every event once,
    in order, then a proper end after the terminal event."""
    [task] = await seeded(store, make_task())
    await store.claim(W1, 1, 30, ["noop"])
    hub = EventHub(store)

    def open_stream(send: Any) -> asyncio.Task[None]:
        def push(batch: list[TaskEvent]) -> bool:
            return stream.push(b"".join(b"id: %d\r\n\r\n" % e.seq for e in batch))

        async def body() -> AsyncGenerator[bytes, None]:
            yield b": snapshot\r\n\r\n"
            async for batch in hub.stream(task.id, 0, 30.0, push):
                if batch:
                    yield b"".join(b"id: %d\r\n\r\n" % e.seq for e in batch)
                    if batch[-1].kind == TERMINAL_EVENT:
                        return

        stream = EventStream(body())
        return asyncio.create_task(stream({"type": "http", "method": "GET"}, _never, send))

    def ids(sent: list[dict[str, Any]]) -> list[int]:
        text = b"".join(_bodies(sent)).decode()
        return [int(line[4:]) for line in text.splitlines() if line.startswith("id: ")]

    gate = asyncio.Event()
    gate.set()
    readers: list[list[dict[str, Any]]] = [[], [], []]
    slow = readers[0]
    calls = [open_stream(_gate(slow, gate, 0))]
    calls += [open_stream(_gate(sent, _open(), 0)) for sent in readers[1:]]
    await _until(lambda: all(ids(r) == [1, 2] for r in readers), "the replay")
    await asyncio.sleep(0.1)  # all three live and waiting

    async def report(n: int) -> int:
        await store.report(W1, [Progress(task.id, f"step {n}", n)])
        return 3 + n  # its seq

    seq = await report(0)
    await _until(lambda: all(ids(r)[-1:] == [seq] for r in readers), "report 0 everywhere")
    gate.clear()  # the first client stops reading
    for n in range(1, 6):
        seq = await report(n)
        await _until(lambda s=seq: all(ids(r)[-1:] == [s] for r in readers[1:]), f"report {n}")
    assert ids(slow)[-1] == 3  # it has had nothing since
    gate.set()
    await _until(lambda: ids(slow)[-1:] == [seq], "the slow client to catch up")
    done = Outcome(task.id, TaskState.SUCCEEDED, CompletionStatus.SUCCESS)
    assert await store.finish(W1, [done]) == {task.id}
    await asyncio.wait_for(asyncio.gather(*calls), 30)
    logged = [e.seq for e in await store.events({task.id: 0}, 1000)]
    for sent in readers:
        assert ids(sent) == logged
        assert sent[-1] == {"type": "http.response.body", "body": b"", "more_body": False}
    assert hub.followers == 0


def _open() -> asyncio.Event:
    gate = asyncio.Event()
    gate.set()
    return gate


async def test_chunks_go_through_the_server_s_writer_when_it_takes_them() -> None:
    """With the WRITE_CHUNK extension, the body's chunks and pushed ones are written with
    it, and the ones it turns down go the ASGI way, in order; the head and the end always
    go the ASGI way."""
    more = asyncio.Event()

    async def body() -> AsyncGenerator[bytes, None]:
        yield b"a"
        yield b"b"
        await more.wait()
        yield b"d"

    out: list[tuple[str, bytes]] = []  # (which way, body) in the order they went

    def write(chunk: bytes) -> bool:
        if chunk in (b"b", b"c2"):
            return False  # as when the client is slow: the ASGI send waits
        out.append(("write", chunk))
        return True

    async def send(message: Any) -> None:
        out.append(("send", message.get("body", b"<head>")))

    scope = {"type": "http", "method": "GET", "extensions": {sse.WRITE_CHUNK: {"write": write}}}
    stream = EventStream(body())
    call = asyncio.create_task(stream(scope, _never, send))
    await _until(lambda: len(out) == 3, "the first chunks")
    assert stream.push(b"c1")
    assert stream.push(b"c2")
    more.set()
    await asyncio.wait_for(call, 30)
    assert out == [
        ("send", b"<head>"),
        ("write", b"a"),
        ("send", b"b"),
        ("write", b"c1"),
        ("send", b"c2"),
        ("write", b"d"),
        ("send", b""),
    ]
