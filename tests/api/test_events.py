"""Live task events over real HTTP, on both backends: the SSE stream of one task (history,
resume, live, visibility, limits, clean-up) and the ?wait= long poll.

The task's life is driven through a store object of its own, as a worker in another process
would (its own connections: on SQLite the server hears of it through data_version, on
PostgreSQL through NOTIFY)."""

from __future__ import annotations

import asyncio
import socket
import threading
import time
from collections.abc import Awaitable, Callable, Generator, Iterator
from typing import Any, TypeVar, cast

import httpx
import pytest

from taskstatus.model import CompletionStatus, Message, MessageType, TaskState
from taskstatus.store import Outcome, Progress, Store, make_store
from tests.api.conftest import Server, run_server, settings_for
from tests.api.sse import Event, events, read

T = TypeVar("T")
WORKER = "test-worker"
SSE_TIMEOUT = httpx.Timeout(30, read=30)


def drive(server: Server, action: Callable[[Store], Awaitable[T]]) -> T:
    """Run `action` on a store of the server's database of its own (another 'process')."""

    async def run() -> T:
        store = make_store(server.database)
        await store.open()
        try:
            return await action(store)
        finally:
            await store.close()

    return asyncio.run(run())


def submit(server: Server) -> str:
    """The id of a new Sleep task, submitted through the server's database."""
    with server.connect() as conn:
        return conn.submit("Sleep", {"seconds": 1}).id


def claim(server: Server, task_id: str) -> None:
    """Claim `task_id` (the only queued task) as a worker in another process would."""

    async def run(store: Store) -> None:
        claimed = await store.claim(WORKER, 1, 60, ["Sleep"])
        assert [t.id for t in claimed] == [task_id]

    drive(server, run)


def report(server: Server, task_id: str, n: int, message: str | None = None) -> None:
    """Report progress step `n` (and a message) of `task_id` as its worker."""
    messages = () if message is None else (Message(MessageType.INFO, message),)
    progress = Progress(task_id, f"step {n}", min(n, 100), messages)
    drive(server, lambda store: store.report(WORKER, [progress]))


def finish(server: Server, task_id: str) -> None:
    """End `task_id` as SUCCESS with a message and attributes, as its worker."""
    outcome = Outcome(
        task_id,
        TaskState.SUCCEEDED,
        CompletionStatus.SUCCESS,
        messages=(Message(MessageType.INFO, "done"),),
        attributes={"ok": True},
    )

    async def run(store: Store) -> None:
        assert await store.finish(WORKER, [outcome]) == {task_id}

    drive(server, run)


def stream(
    client: httpx.Client, path: str, **headers: str
) -> Any:  # the context manager of an open stream
    """An open event stream of `path` (a context manager), with `headers`."""
    return client.stream("GET", path, headers=headers, timeout=SSE_TIMEOUT)


def numbered(got: list[Event]) -> list[int]:
    """The ids of the events that have one, as integers."""
    return [int(e.id) for e in got if e.id is not None]


@pytest.fixture
def wide_server(store_url: str, tmp_path: Any) -> Iterator[Server]:
    """A server without workers that lets a client hold 1,000 streams."""
    yield from run_server(
        settings_for(store_url, tmp_path, concurrency=0, max_streams_per_client=1000)
    )


@pytest.fixture
def limited_server(store_url: str, tmp_path: Any) -> Iterator[Server]:
    """A server without workers that lets a client hold 3 streams."""
    yield from run_server(
        settings_for(store_url, tmp_path, concurrency=0, max_streams_per_client=3)
    )


def test_a_late_client_gets_the_whole_history(idle_server: Server) -> None:
    """A client that connects after the task ended gets the snapshot, then every event from
    created to completed, numbered 1..n in order, and the stream ends."""
    task_id = submit(idle_server)
    claim(idle_server, task_id)
    report(idle_server, task_id, 10, "first")
    report(idle_server, task_id, 50)
    finish(idle_server, task_id)
    with idle_server.client() as c, stream(c, f"/v2024/task-status/{task_id}/events") as r:
        assert r.status_code == 200
        assert r.headers["content-type"].startswith("text/event-stream")
        got = read(r)
    assert got[0].event == "snapshot" and got[0].id is None
    assert got[0].data["id"] == task_id and got[0].data["completionStatus"] == "SUCCESS"
    assert numbered(got) == list(range(1, len(got)))
    kinds = [e.event for e in got[1:]]
    assert kinds[:2] == ["created", "launched"] and kinds[-1] == "completed"
    assert {"progress", "message", "attributes"} <= set(kinds)
    assert got[-1].data["completionStatus"] == "SUCCESS"
    texts = [e.data["localizedText"]["message"] for e in got if e.event == "message"]
    assert texts == ["first", "done"]


def test_a_client_cut_off_resumes_with_last_event_id_exactly_once(idle_server: Server) -> None:
    """A client that reads part of the stream, is cut off, and reconnects with
    Last-Event-ID (or ?after=) gets every later event exactly once, in order."""
    task_id = submit(idle_server)
    claim(idle_server, task_id)
    path = f"/v2024/task-status/{task_id}/events"
    with idle_server.client() as c:
        with stream(c, path) as r:
            first = read(r, 3)  # snapshot, created, launched
        assert numbered(first) == [1, 2]
        for n in range(3):
            report(idle_server, task_id, n + 1, f"m{n}")
        with stream(c, path, **{"Last-Event-ID": "2"}) as r:
            second = read(r, 4)
        last = numbered(second)[-1]
        assert second[0].event == "snapshot"
        finish(idle_server, task_id)
        with stream(c, f"{path}?after=0", **{"Last-Event-ID": str(last)}) as r:
            third = read(r)
    seen = numbered(first) + numbered(second) + numbered(third)
    assert seen == list(range(1, len(seen) + 1))  # each once, in order, none missing
    assert third[-1].event == "completed"


def test_live_events_reach_an_open_stream(idle_server: Server) -> None:
    """Events committed by another store after the client connected arrive on the open
    stream, in order, and the stream ends after the terminal event."""
    task_id = submit(idle_server)

    def work() -> None:
        time.sleep(0.5)
        claim(idle_server, task_id)
        for n in range(5):
            report(idle_server, task_id, 20 * (n + 1))
        finish(idle_server, task_id)

    worker = threading.Thread(target=work)
    with idle_server.client() as c, stream(c, f"/v2024/task-status/{task_id}/events") as r:
        worker.start()
        got = read(r)
    worker.join()
    assert numbered(got) == list(range(1, len(got)))
    assert [e.data["percentComplete"] for e in got if e.event == "progress"] == [
        20,
        40,
        60,
        80,
        100,
    ]
    assert got[-1].event == "completed"


def test_another_clients_task_is_404_on_its_stream(idle_server: Server) -> None:
    """A non-admin client cannot follow a task another owner launched: 404, as on GET."""
    task_id = submit(idle_server)
    cid, secret = idle_server.new_client("reader", "tasks:read", owner="someone-else")
    with idle_server.client(idle_server.token(cid, secret)) as c:
        r = c.get(f"/v2024/task-status/{task_id}/events")
        assert r.status_code == 404, r.text
        assert c.get(f"/v2024/task-status/{task_id}").status_code == 404
        unknown = "/v2024/task-status/0123456789abcdef0123456789abcdef/events"
        assert c.get(unknown).status_code == 404


def test_bad_cursors_are_400(idle_server: Server) -> None:
    """A Last-Event-ID or after= that is not a non-negative integer, or is past the largest
    seq a store holds, is a 400 (schemathesis found after=2**31 dropping the connection)."""
    task_id = submit(idle_server)
    with idle_server.client() as c:
        path = f"/v2024/task-status/{task_id}/events"
        assert c.get(path, params={"after": "x"}).status_code == 400
        assert c.get(path, params={"after": "-1"}).status_code == 400
        assert c.get(path, headers={"Last-Event-ID": "abc"}).status_code == 400
        assert c.get(path, params={"after": str(2**31)}).status_code == 400
        assert c.get(path, headers={"Last-Event-ID": str(2**31)}).status_code == 400


def test_streams_per_client_are_limited_and_freed(limited_server: Server) -> None:
    """Past max_streams_per_client a client gets 429; closing streams frees their places
    and every follower the server held."""
    task_id = submit(limited_server)
    path = f"/v2024/task-status/{task_id}/events"
    state = limited_server.app.state.api
    with limited_server.client() as c:
        opened = [stream(c, path) for _ in range(3)]
        readers = [events(s.__enter__()) for s in opened]  # kept: a dropped reader hangs up
        for reader in readers:
            assert next(reader).event == "snapshot"
        over = c.get(path)
        assert over.status_code == 429, over.text
        for s in opened:
            s.__exit__(None, None, None)
        deadline = time.monotonic() + 10
        while state.streams.open or state.service.events.followers:
            assert time.monotonic() < deadline, "the closed streams were not freed"
            time.sleep(0.05)
        with stream(c, path) as r:
            assert next(events(r)).event == "snapshot"


@pytest.mark.slow
def test_many_streams_close_cleanly(wide_server: Server) -> None:
    """1,000 streams open on one task all get its live events; when their clients go away the
    server frees every one of them."""
    server = wide_server
    task_id = submit(server)
    path = f"/v2024/task-status/{task_id}/events"
    token = server.token()
    count = 1000

    async def follow_all() -> list[list[str]]:
        limits = httpx.Limits(max_connections=count + 10)
        async with httpx.AsyncClient(
            base_url=server.url,
            headers={"Authorization": f"Bearer {token}"},
            limits=limits,
            timeout=SSE_TIMEOUT,
        ) as client:
            ready = asyncio.Semaphore(0)

            connecting = asyncio.Semaphore(50)  # the store's pool is small: connect in waves

            async def one() -> list[str]:
                kinds = []
                await connecting.acquire()
                async with client.stream("GET", path) as r:
                    assert r.status_code == 200
                    async for line in r.aiter_lines():
                        if line.startswith("event: "):
                            kinds.append(line[7:])
                            if line[7:] == "snapshot":
                                connecting.release()
                                ready.release()
                        if line == "" and kinds and kinds[-1] == "launched":
                            return kinds  # go away mid-stream
                return kinds

            followers = [asyncio.create_task(one()) for _ in range(count)]
            for _ in range(count):
                await ready.acquire()
            await asyncio.to_thread(claim, server, task_id)
            return await asyncio.gather(*followers)

    results = asyncio.run(follow_all())
    assert all(kinds == ["snapshot", "created", "launched"] for kinds in results)
    state = server.app.state.api
    deadline = time.monotonic() + 20
    while state.streams.open or state.service.events.followers:
        assert time.monotonic() < deadline, "the closed streams were not freed"
        time.sleep(0.05)


def test_wait_returns_on_completion_and_on_timeout(idle_server: Server) -> None:
    """GET ?wait= answers as soon as the task is terminal, or with its pending state when
    the time is up; more than 60 seconds is a 400."""
    task_id = submit(idle_server)
    path = f"/v2024/task-status/{task_id}"
    with idle_server.client() as c:
        started = time.monotonic()
        r = c.get(path, params={"wait": "0.5"})
        assert r.status_code == 200 and r.json()["completionStatus"] is None
        assert time.monotonic() - started >= 0.5
        claim(idle_server, task_id)
        threading.Timer(0.5, finish, (idle_server, task_id)).start()
        started = time.monotonic()
        r = c.get(path, params={"wait": "30"}, timeout=40)
        assert r.status_code == 200 and r.json()["completionStatus"] == "SUCCESS"
        assert time.monotonic() - started < 25  # woken by the event, not by the time limit
        assert c.get(path, params={"wait": "61"}).status_code == 400
        assert c.get(path, params={"wait": "soon"}).status_code == 400


def test_v2_and_jira_streams_use_their_field_names(idle_server: Server) -> None:
    """/v2/task/events/{id} and /rest/api/{2,3}/task/{id}/events replay the same log with
    each dialect's field names: v2 task_id/status/percent_complete, Jira id/status/progress,
    `completed` with the task's final progress in them too."""
    task_id = submit(idle_server)
    claim(idle_server, task_id)
    report(idle_server, task_id, 40)
    finish(idle_server, task_id)
    with idle_server.client() as c:
        with stream(c, f"/v2/task/events/{task_id}") as r:
            crud = read(r)
        with stream(c, f"/rest/api/2/task/{task_id}/events") as r:
            jira = read(r)
        with stream(c, f"/rest/api/3/task/{task_id}/events?after=2") as r:
            jira3 = read(r)
    assert crud[0].event == "snapshot" and crud[0].data["task_id"] == task_id
    by_kind = {e.event: e.data for e in crud}
    assert by_kind["progress"]["percent_complete"] == 40
    assert by_kind["launched"]["status"] == "running"
    assert by_kind["completed"]["status"] == "completed"
    assert by_kind["completed"]["percent_complete"] == 40
    assert by_kind["attributes"]["response"] == {"ok": True}
    assert jira[0].data["status"] == "COMPLETE" and jira[0].data["self"].endswith(task_id)
    by_kind = {e.event: e.data for e in jira}
    assert by_kind["progress"]["progress"] == 40
    assert by_kind["completed"]["status"] == "COMPLETE"
    assert by_kind["completed"]["progress"] == 40
    assert isinstance(by_kind["completed"]["finished"], int)
    assert [e.id for e in jira3[1:]] == [e.id for e in jira[3:]]
    assert [e.event for e in crud[1:]] == [e.event for e in jira[1:]]


def test_wait_on_v2_and_jira(idle_server: Server) -> None:
    """?wait= on /v2/task/view/{id} and /rest/api/2/task/{id} returns when the task ends."""
    task_id = submit(idle_server)
    claim(idle_server, task_id)
    with idle_server.client() as c:
        r = c.get(f"/v2/task/view/{task_id}", params={"wait": "0.2"})
        assert r.status_code == 200 and r.json()["status"] == "running"
        threading.Timer(0.5, finish, (idle_server, task_id)).start()
        r = c.get(f"/rest/api/2/task/{task_id}", params={"wait": "30"}, timeout=40)
        assert r.status_code == 200 and r.json()["status"] == "COMPLETE"
        r = c.get(f"/v2/task/view/{task_id}", params={"wait": "30"})
        assert r.status_code == 200 and r.json()["status"] == "completed"
        assert c.get(f"/v2/task/view/{task_id}", params={"wait": "99"}).status_code == 400
        assert c.get(f"/rest/api/2/task/{task_id}", params={"wait": "-1"}).status_code == 400


def test_the_all_tasks_stream_follows_the_tasks_it_matches(idle_server: Server) -> None:
    """/v2024/task-status/events streams the events of every visible task matching
    filters=, and is not taken for a task id by the GET fast path."""
    with idle_server.connect() as conn:
        wanted = conn.submit("Sleep", {"seconds": 1}).id
        other = conn.submit("Sleep", {"seconds": 1}).id
    got: list[Event] = []
    with idle_server.client() as c:
        with stream(c, f'/v2024/task-status/events?filters=id eq "{wanted}"') as r:
            reader = events(r)
            threading.Timer(0.5, lambda: claim_any(idle_server, 2)).start()
            for event in reader:
                got.append(event)
                if event.event == "launched":
                    break
        for path in (
            "/v2024/task-status/events",
            "/beta/task-status/events",
            "/task-status/v1/events",
        ):
            with stream(c, f"{path}?filters=bogus") as r:
                assert r.status_code == 400, path
    assert [e.event for e in got] == ["launched"]
    assert got[0].data["id"] == wanted and got[0].id == f"{wanted}:2"
    assert other not in {e.data["id"] for e in got}


def claim_any(server: Server, n: int) -> None:
    """Claim `n` queued tasks as a worker in another process would."""

    async def run(store: Store) -> None:
        assert len(await store.claim(WORKER, n, 60, ["Sleep"])) == n

    drive(server, run)


@pytest.fixture
def beating_server(store_url: str, tmp_path: Any) -> Iterator[Server]:
    """A server without workers whose idle streams get a heartbeat every 0.3 s."""
    yield from run_server(settings_for(store_url, tmp_path, concurrency=0, event_heartbeat=0.3))


def test_an_idle_stream_gets_heartbeat_comments(beating_server: Server) -> None:
    """A stream with nothing to send gets a comment line after event_heartbeat seconds of
    quiet, again and again, and stays open."""
    task_id = submit(beating_server)
    comments: list[str] = []
    with beating_server.client() as c, stream(c, f"/v2024/task-status/{task_id}/events") as r:
        for line in r.iter_lines():
            if line.startswith(":"):
                comments.append(line)
                if len(comments) == 3:
                    break
    assert comments == [": ping"] * 3


def raw_chunks(server: Server, path: str) -> list[bytes]:
    """The chunks of a chunked GET of `path` as they were framed on the wire, until the
    body's end (a client that reads the transfer coding itself, not through httpx)."""
    host, port = server.url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=30) as s:
        s.sendall(
            f"GET {path} HTTP/1.1\r\nHost: {host}\r\nAuthorization: Bearer {server.token()}"
            "\r\n\r\n".encode()
        )
        data = b""
        while b"\r\n0\r\n\r\n" not in data:
            got = s.recv(65536)
            assert got, "the connection closed before the body ended"
            data += got
    head, _, body = data.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200") and b"chunked" in head.lower(), head
    chunks: list[bytes] = []
    while True:
        size_line, _, body = body.partition(b"\r\n")
        size = int(size_line, 16)
        if size == 0:
            return chunks
        chunks.append(body[:size])
        body = body[size + 2 :]


def test_a_replay_goes_out_as_one_chunk(idle_server: Server) -> None:
    """A late client's replay of a finished task is one chunk after the snapshot's: the
    events read together are sent together, each framed as its own SSE event."""
    task_id = submit(idle_server)
    claim(idle_server, task_id)
    report(idle_server, task_id, 30, "half")
    finish(idle_server, task_id)
    snapshot, replay = raw_chunks(idle_server, f"/v2024/task-status/{task_id}/events")
    assert snapshot.startswith(b"event: snapshot\r\ndata: {")
    frames = replay.split(b"\r\n\r\n")
    assert frames[-1] == b"" and len(frames) > 5
    assert [f.split(b"\r\n")[0] for f in frames[:-1]] == [
        b"id: %d" % n for n in range(1, len(frames))
    ]


def test_a_server_shutting_down_ends_its_streams_properly(store_url: str, tmp_path: Any) -> None:
    """A server that shuts down ends an open stream with a proper end of its body (the
    client sees the stream end, not a broken connection) and does not wait for it."""
    running = cast(
        Generator[Server, None, None], run_server(settings_for(store_url, tmp_path, concurrency=0))
    )
    server = next(running)
    task_id = submit(server)
    with server.client() as c, stream(c, f"/v2024/task-status/{task_id}/events") as r:
        reader = events(r)
        assert [next(reader).event, next(reader).event] == ["snapshot", "created"]
        stopping = threading.Thread(target=running.close)  # should_exit, then join the server
        stopping.start()
        rest = list(reader)  # ends, without an error, once the server ends the stream
    stopping.join(60)
    assert not stopping.is_alive()
    assert rest == []
