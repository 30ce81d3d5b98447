"""events() and watch() against a real server's event stream: the whole history, live, and a
dropped connection resumed with Last-Event-ID without gaps or repeats."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

import taskstatus
from taskstatus.errors import NotFound
from tests.client.proxy import CuttingProxy
from tests.client.server import Server
from tests.client.test_remote import database_connection


@pytest.fixture
def streams(server: Server) -> Server:
    """The server, when it has the event stream (skipped otherwise)."""
    with taskstatus.connect(server.url, **server.credentials) as ts:
        task = ts.submit("Sleep", {"seconds": 0})
        try:
            next(iter(ts.events(task.id)))
        except NotFound:
            pytest.skip("this server has no event stream yet")
    return server


@pytest.fixture
def proxy(streams: Server) -> Iterator[CuttingProxy]:
    """A proxy in front of the streaming server that can cut its connections."""
    port = int(streams.url.rsplit(":", 1)[1])
    p = CuttingProxy(port)
    yield p
    p.close()


def test_events_replay_and_follow_to_the_end(streams: Server) -> None:
    """events() of a finished task replays its whole log in order and ends; watch() of a
    running one follows it live to its terminal event."""
    with taskstatus.connect(streams.url, **streams.credentials) as ts:
        task = ts.submit("Sleep", {"seconds": 1.5})
        live = list(ts.watch(task.id))
        assert live[-1].kind == "completed" and live[-1].terminal
        assert [e.id for e in live] == list(range(live[0].id, live[0].id + len(live)))
        assert any(e.kind == "progress" for e in live)
        replay = list(ts.events(task.id))
        assert [(e.id, e.kind) for e in replay] == [(e.id, e.kind) for e in live]
        after = list(ts.events(task.id, after=replay[1].id))
        assert [e.id for e in after] == [e.id for e in replay[2:]]


def test_database_connection_has_the_same_events(streams: Server) -> None:
    """A database connection to the server's database follows the same log: the same event
    ids and kinds, from the start or after an id, live until the task ends."""
    with (
        taskstatus.connect(streams.url, **streams.credentials) as ts,
        database_connection(streams) as db,
    ):
        task = ts.submit("Sleep", {"seconds": 1.5})
        live = [(e.id, e.kind) for e in db.watch(task.id)]
        assert live[-1][1] == "completed"
        assert live == [(e.id, e.kind) for e in ts.events(task.id)]
        assert [e.id for e in db.events(task.id, after=live[0][0])] == [i for i, _ in live[1:]]
        with pytest.raises(NotFound):
            next(iter(db.events("0" * 32)))


@pytest.mark.anyio
async def test_async_events(streams: Server) -> None:
    """The async client's events() is an async iterator over the same log."""
    ts = await taskstatus.connect_async(streams.url, **streams.credentials)
    async with ts:
        task = await ts.submit("Sleep", {"seconds": 0.5})
        kinds = [e.kind async for e in ts.watch(task.id)]
        assert kinds[-1] == "completed"


def test_a_dropped_stream_resumes_without_gaps_or_repeats(
    streams: Server, proxy: CuttingProxy
) -> None:
    """Cut twice mid-stream (through a proxy that drops the TCP connections), the client
    reconnects with Last-Event-ID and receives every event exactly once, in order."""
    url = f"http://127.0.0.1:{proxy.port}"
    with taskstatus.connect(url, **streams.credentials) as ts:
        task = ts.submit("Sleep", {"seconds": 4})
        seen = []
        for event in ts.watch(task.id):
            seen.append(event)
            if len(seen) in (2, 4):
                proxy.cut()
        with taskstatus.connect(streams.url, **streams.credentials) as direct:
            replay = list(direct.events(task.id))
        assert [(e.id, e.kind) for e in seen] == [(e.id, e.kind) for e in replay]
        assert seen[-1].terminal
        assert proxy.connections >= 3  # it did reconnect
