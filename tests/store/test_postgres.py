"""What only the PostgreSQL store does: many nodes at once (migrations, wake-ups across
connections, first-writer-wins settings), round trips that do not grow with a batch, and
query plans that use the indexes. The behaviour every store shares is in test_contract.py."""

from __future__ import annotations

import asyncio
import dataclasses
import functools
import re
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Sequence
from datetime import UTC, timedelta
from typing import Any

import psycopg
import pytest

import taskstatus
from taskstatus import TaskContext, connect
from taskstatus.handlers import Registry
from taskstatus.limits_policy import HandlerLimits
from taskstatus.model import (
    CompletionStatus,
    Message,
    MessageType,
    ReturnDetail,
    Target,
    Task,
    TaskState,
)
from taskstatus.query import Condition, Op, SortKey, TaskField, TaskQuery, all_of
from taskstatus.store import Outcome, Progress, StoreUnavailable, make_store, postgres_schedules
from taskstatus.store import postgres as postgres_store
from taskstatus.store.base import TaskEvent
from taskstatus.store.postgres import QUERIES, PostgresStore, list_statements
from taskstatus.store.sqlfiles import load_migrations
from tests import pg
from tests.conftest import DEFINITION, make_task, now

pytestmark = [pytest.mark.anyio, pytest.mark.postgres]

W1 = "worker-1"


@pytest.fixture
def database(postgres: pg.PgServer) -> Iterator[str]:
    """The URL of a fresh, migrated database."""
    name = postgres.create_database()
    try:
        yield postgres.url(name)
    finally:
        postgres.drop_database(name)


@pytest.fixture
async def store(database: str) -> AsyncIterator[PostgresStore]:
    """An opened PostgresStore on the test database, closed afterwards."""
    s = PostgresStore(database)
    await s.open()
    try:
        yield s
    finally:
        await s.close()


@pytest.fixture
async def other(database: str) -> AsyncIterator[PostgresStore]:
    """A second store on the same database: another node, with connections of its own."""
    s = PostgresStore(database)
    await s.open()
    try:
        yield s
    finally:
        await s.close()


async def fetch(url: str, query: str, params: Any = None) -> list[tuple[Any, ...]]:
    """The rows `query` returns on the database at `url`."""
    async with await psycopg.AsyncConnection.connect(url, autocommit=True) as conn:
        return await (await conn.execute(query, params)).fetchall()


# --- opening -------------------------------------------------------------------------------------


async def test_nodes_starting_together_apply_the_schema_once(postgres: pg.PgServer) -> None:
    """Six stores open at the same moment on an empty database: the advisory lock lets one
    migrate while the others wait, and then all of them work."""
    name = postgres.create_database(template="template0")
    url = postgres.url(name)
    stores = [PostgresStore(url) for _ in range(6)]
    try:
        await asyncio.gather(*(s.open() for s in stores))
        applied = await fetch(url, "SELECT version, name FROM schema_migrations ORDER BY version")
        assert applied == [(m.version, m.name) for m in load_migrations("postgres")]
        await stores[0].save_definitions([DEFINITION])
        [task] = await stores[0].create_many([make_task()])
        for s in stores:
            assert await s.get(task.id) == task
        await stores[1].close()
        await stores[1].open()  # opening again applies nothing
        assert await fetch(url, "SELECT count(*) FROM schema_migrations") == [(len(applied),)]
    finally:
        await asyncio.gather(*(s.close() for s in stores))
        postgres.drop_database(name)


async def test_an_unreachable_server_fails_at_open() -> None:
    """open() raises StoreUnavailable at once, with libpq's error as its cause, rather than
    waiting for a pool timeout."""
    started = time.monotonic()
    with pytest.raises(StoreUnavailable) as info:
        await PostgresStore("postgresql://postgres@127.0.0.1:1/nowhere").open()
    assert time.monotonic() - started < 5
    assert isinstance(info.value.cause, psycopg.OperationalError)
    assert "Connection refused" in str(info.value)


def test_make_store_routes_postgres_urls() -> None:
    """Both spellings of a PostgreSQL URL make a PostgresStore."""
    for url in ("postgresql://u@h/db", "postgres://u@h/db"):
        assert isinstance(make_store(url), PostgresStore)


# --- wake-ups ------------------------------------------------------------------------------------


async def idle(store: PostgresStore) -> None:
    """Start the store's listener and forget the wake-ups so far."""
    await store.wait_for_work(0.2)


async def wakes(store: PostgresStore, action: Callable[[], Awaitable[object]]) -> None:
    """A waiter with a long timeout returns soon after `action`, and not before it."""
    waiter = asyncio.create_task(store.wait_for_work(60))
    await asyncio.sleep(0.05)
    assert not waiter.done(), "woke before anything happened"
    await action()
    await asyncio.wait_for(waiter, 5)


async def test_a_submit_on_another_node_wakes_an_idle_worker(
    store: PostgresStore, other: PostgresStore
) -> None:
    """The NOTIFY of a create on another connection (another node) wakes the waiter long
    before its timeout; a wake-up that comes while nobody waits is kept for the next wait."""
    await store.save_definitions([DEFINITION])
    await idle(store)
    started = time.monotonic()
    await wakes(store, lambda: other.create(make_task()))
    assert time.monotonic() - started < 5

    await other.create_many([make_task(), make_task()])
    await asyncio.wait_for(store.wait_for_work(60), 5)


async def test_retry_release_and_recovery_wake_idle_workers(
    store: PostgresStore, other: PostgresStore
) -> None:
    """Every write that puts a task back in the queue notifies: a retry, a hand-back and the
    recovery of an expired lease."""
    await other.create_many([make_task(), make_task(), make_task(max_attempts=2)])
    a, b, c = await other.claim(W1, 3, 30, ["noop"])
    await idle(store)
    await wakes(
        store,
        lambda: other.finish(W1, [Outcome(a.id, TaskState.QUEUED, None, run_at=now())]),
    )
    await idle(store)
    await wakes(store, lambda: other.release(W1, [b.id]))
    await other.heartbeat(W1, [c.id], 0.01)
    await asyncio.sleep(0.05)
    await idle(store)
    await wakes(store, other.recover)


async def test_followers_hear_of_a_claim_on_another_node(
    store: PostgresStore, other: PostgresStore
) -> None:
    """A claim's `launched` events reach the followers of another node (the claim's own NOTIFY,
    written in its statement), with each claimed task's new seq: 2, after `created`; a claim
    of nothing says nothing."""
    heard: list[tuple[str, int]] = []
    got = asyncio.Event()

    def listen(news: Sequence[tuple[str, int]] | None) -> None:
        heard.extend(news or [])
        got.set()

    stop = store.on_events(listen)
    try:
        async with asyncio.timeout(10):  # the listener is up: once LISTEN holds, it tells
            await got.wait()  # its followers to look again (None)
        got.clear()
        tasks = await other.create_many([make_task() for _ in range(3)])
        claimed = await other.claim(W1, 8, 30, ["noop"])
        assert len(claimed) == 3
        async with asyncio.timeout(10):
            while not {(t.id, 2) for t in tasks} <= set(heard):
                await got.wait()
                got.clear()
        heard.clear()
        assert await other.claim(W1, 8, 30, ["noop"]) == []
        await asyncio.sleep(0.3)
        assert heard == []
    finally:
        stop()


async def test_work_that_queues_nothing_does_not_wake(
    store: PostgresStore, other: PostgresStore
) -> None:
    """Claims, progress, finishing for good and a duplicate submit send no wake-up."""
    [task] = await other.create_many([make_task(idempotency_key="k")])
    await idle(store)
    waiter = asyncio.create_task(store.wait_for_work(60))
    [claimed] = await other.claim(W1, 1, 30, ["noop"])
    await other.report(W1, [Progress(claimed.id, "half", 50)])
    await other.finish(W1, [Outcome(claimed.id, TaskState.SUCCEEDED, CompletionStatus.SUCCESS)])
    assert (await other.create(make_task(idempotency_key="k"))).id == task.id
    await asyncio.sleep(0.3)
    assert not waiter.done()
    waiter.cancel()


async def test_the_listener_reconnects(store: PostgresStore, other: PostgresStore) -> None:
    """When its connection dies, the listener reconnects and wakes the waiters (whatever was
    notified meanwhile is lost); then notifications arrive again."""
    await idle(store)
    killed = await fetch(
        store.url,
        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
        "WHERE datname = current_database() AND application_name = 'taskstatus listener'",
    )
    assert killed == [(True,)]
    await asyncio.wait_for(store.wait_for_work(60), 5)
    await idle(store)
    await wakes(store, lambda: other.create(make_task()))


# --- creating from a plain thread (the synchronous connect()'s submit) --------------------------


def _seen(events: Sequence[TaskEvent]) -> list[tuple[int, str, int]]:
    return [(e.seq, e.kind, e.version) for e in events]


async def test_a_blocking_create_stores_as_create_many_does(
    store: PostgresStore, other: PostgresStore
) -> None:
    """create_many_blocking, called from a plain thread, stores a batch as create_many does:
    the same rows and events, a taken idempotency key answered with the task that has it, a
    durable commit (synchronous_commit on in its session) and the NOTIFY that wakes an idle
    worker on another node."""
    await store.save_definitions([DEFINITION])
    first = make_task(idempotency_key="k1", arguments={"n": 1})
    [by_loop] = await store.create_many([make_task(arguments={"n": 1})])
    await idle(other)
    batch = [first, make_task(arguments={"n": 2}), make_task(idempotency_key="k1")]
    waiter = asyncio.create_task(other.wait_for_work(60))
    stored = await asyncio.to_thread(store.create_many_blocking, batch)
    await asyncio.wait_for(waiter, 5)
    assert stored is not None
    assert [t.id for t in stored] == [first.id, batch[1].id, first.id]
    for task in stored[:2]:
        assert await store.get(task.id) == task
    assert await store.get(batch[2].id) is None
    events = await store.events({by_loop.id: 0, first.id: 0})
    assert _seen([e for e in events if e.task_id == first.id]) == _seen(
        [e for e in events if e.task_id == by_loop.id]
    )
    assert _seen(events)
    blocking = store._blocking
    assert blocking is not None
    assert blocking.execute("SHOW synchronous_commit").fetchone() == ("on",)
    # and again, on the same connection
    again = await asyncio.to_thread(store.create_many_blocking, [make_task()])
    assert again is not None and await store.get(again[0].id) == again[0]
    assert store._blocking is blocking


async def test_a_blocking_create_gives_way(database: str) -> None:
    """create_many_blocking answers None (the caller then uses create_many) while another
    thread is using its connection, and once the store is closed; nothing for nothing."""
    s = PostgresStore(database)
    assert s.create_many_blocking([make_task()]) is None  # not open yet
    await s.open()
    try:
        await s.save_definitions([DEFINITION])
        assert s.create_many_blocking([]) == []
        with s._blocking_lock:  # another thread's submit, in flight
            assert await asyncio.to_thread(s.create_many_blocking, [make_task()]) is None
        assert await asyncio.to_thread(s.create_many_blocking, [make_task()]) is not None
    finally:
        await s.close()
    assert s._blocking is None
    assert await asyncio.to_thread(s.create_many_blocking, [make_task()]) is None


async def test_a_blocking_create_reconnects_after_its_connection_died(
    store: PostgresStore,
) -> None:
    """When the blocking connection dies, the create that finds it dead raises
    StoreUnavailable (whether the server committed is not known) and the next one connects
    again and stores."""
    await store.save_definitions([DEFINITION])
    assert await asyncio.to_thread(store.create_many_blocking, [make_task()]) is not None
    killed = await fetch(
        store.url,
        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
        "WHERE datname = current_database() AND application_name = 'taskstatus submits'",
    )
    assert killed == [(True,)]
    with pytest.raises(StoreUnavailable) as info:
        await asyncio.to_thread(store.create_many_blocking, [make_task()])
    assert isinstance(info.value.cause, psycopg.OperationalError)
    stored = await asyncio.to_thread(store.create_many_blocking, [make_task()])
    assert stored is not None and await store.get(stored[0].id) == stored[0]


def test_connect_submits_on_the_calling_thread(database: str) -> None:
    """connect()'s submit and submit_many of a handler this process has store the task from
    the calling thread: the connection's event loop thread runs nothing for them. A handler
    known only by its stored definition still goes through the loop, and works."""
    registry = Registry()

    @taskstatus.handler("tests.local", registry=registry)
    async def local(ctx: TaskContext, args: dict[str, Any]) -> None:
        return None

    with connect(database, registry=registry) as conn, connect(database) as bare:
        runs: list[object] = []
        for c in (conn, bare):
            loop = c._loop
            loop.run = functools.partial(_counted, runs, loop.run)  # type: ignore[method-assign]
        task = conn.submit("tests.local", {})
        [one, two] = conn.submit_many(local, [{}, {}])
        assert runs == []
        assert [conn.get(t.id).id for t in (task, one, two)] == [task.id, one.id, two.id]
        runs.clear()
        remote = bare.submit("tests.local", {})  # the definition conn's open() published
        assert len(runs) == 1
        assert remote.handler == "tests.local" and remote.state is TaskState.QUEUED


def _counted(runs: list[object], run: Callable[[Any], Any], coro: Any) -> Any:
    runs.append(coro)
    return run(coro)


# --- bulk submits through COPY ------------------------------------------------------------------

NEVER = 10**9  # a COPY_MIN_BATCH no batch reaches: the statement path only


def copies(monkeypatch: pytest.MonkeyPatch, min_batch: int | None = None) -> list[int]:
    """Count the batches the store stores through COPY (the size of each), both paths; with
    `min_batch`, set the size from which it does."""
    seen: list[int] = []
    if min_batch is not None:
        monkeypatch.setattr(postgres_store, "COPY_MIN_BATCH", min_batch)
    for name in ("_copy", "_copy_blocking"):
        original = getattr(postgres_store, name)

        def counted(conn: Any, batch: Any, original: Any = original) -> Any:
            seen.append(len(batch.tasks))
            return original(conn, batch)

        monkeypatch.setattr(postgres_store, name, counted)
    return seen


def varied_batch() -> list[Task]:
    """Tasks with every kind of column value a create stores: queued ones with and without a
    target, parent, timeout, priority and later run_at, one running under a lease, one
    finished (its 'completed' event), one deleted (no queue row, not counted), JSON values."""
    at = now()
    plain = [make_task(arguments={"n": i, "s": "é\\'\""}) for i in range(5)]
    rich = make_task(
        arguments={"nested": {"list": [1, 2.5, None, True]}},
        unique_name="rich",
        description="with everything",
        target=Target("t-1", None, "the target"),
        parent_id=plain[0].id,
        parent_name="parent",
        priority=7,
        run_at=at + timedelta(hours=1),
        max_attempts=5,
        timeout=12.5,
    )
    running = dataclasses.replace(
        make_task(), state=TaskState.RUNNING, launched=at, attempts=1, lease_owner=W1,
        lease_expires=at + timedelta(seconds=30), progress="half", percent_complete=50,
    )  # fmt: skip
    finished = dataclasses.replace(
        make_task(), state=TaskState.SUCCEEDED, completion_status=CompletionStatus.SUCCESS,
        launched=at, completed=at, percent_complete=100, attributes={"a": [1, "b"]},
        returns=(ReturnDetail("out", "a"),),
    )  # fmt: skip
    deleted = dataclasses.replace(make_task(), deleted_at=at)
    return [*plain, rich, running, finished, deleted, *(make_task() for _ in range(3))]


STORED = {
    "tasks": "SELECT * FROM tasks ORDER BY id",
    "queue": "SELECT * FROM task_queue ORDER BY id",
    "events": "SELECT * FROM task_events ORDER BY task_id, seq",
    "messages": "SELECT task_id, seq, type, key, text, locale, parameters FROM task_messages"
    " ORDER BY task_id, seq",
    "counts": "SELECT status, day, sum(n) FROM task_counts GROUP BY 1, 2 ORDER BY 1, 2",
}


async def stored_and_heard(
    url: str, create: Callable[[], Awaitable[list[Task] | None]]
) -> tuple[list[Task] | None, dict[str, list[tuple[Any, ...]]], list[tuple[str, str]]]:
    """What `create` answers, what the database holds after it (STORED), and the
    notifications a listener heard from it, in order."""
    async with await psycopg.AsyncConnection.connect(url, autocommit=True) as listener:
        await listener.execute("LISTEN taskstatus_work")
        await listener.execute("LISTEN taskstatus_events")
        answer = await create()
        heard = [(n.channel, n.payload) async for n in listener.notifies(timeout=0.5)]
    return answer, {name: await fetch(url, sql) for name, sql in STORED.items()}, heard


@pytest.mark.parametrize("blocking", [False, True], ids=["loop", "blocking"])
async def test_a_batch_through_copy_stores_what_the_statement_stores(
    postgres: pg.PgServer, monkeypatch: pytest.MonkeyPatch, blocking: bool
) -> None:
    """The same batch, created by the statement on one database and through COPY on another
    (create_many or create_many_blocking): the same answer (the tasks, in input order), every
    column of every task, the queue rows, the event log, the counts, and the same
    notifications (the wake-up and the event log's)."""
    batch = varied_batch()
    seen = copies(monkeypatch)
    results = []
    for min_batch in (NEVER, 1):
        monkeypatch.setattr(postgres_store, "COPY_MIN_BATCH", min_batch)
        name = postgres.create_database()
        try:
            s = PostgresStore(postgres.url(name))
            await s.open()
            try:
                await s.save_definitions([DEFINITION])

                async def create(s: PostgresStore = s) -> list[Task] | None:
                    if blocking:
                        return await asyncio.to_thread(s.create_many_blocking, batch)
                    return await s.create_many(batch)

                results.append(await stored_and_heard(postgres.url(name), create))
                assert [await s.get(t.id, include_deleted=True) for t in batch] == batch
            finally:
                await s.close()
        finally:
            postgres.drop_database(name)
    assert seen == [len(batch)]  # the second database's, alone
    (answer, rows, heard), (copied_answer, copied_rows, copied_heard) = results
    assert answer == copied_answer == batch
    assert rows == copied_rows
    assert len(rows["tasks"]) == len(batch) and len(rows["queue"]) == len(batch) - 3
    assert len(rows["events"]) == len(batch) + 1
    assert heard == copied_heard
    assert ("taskstatus_work", "") in heard


async def test_copy_is_left_to_the_statement_for_keys_messages_launchers_and_small_batches(
    store: PostgresStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A batch with an idempotency key (taken ones answered with their holder), with
    messages or with more than one launcher is created by the statement whatever its size, as
    is a batch below COPY_MIN_BATCH; a batch of COPY_MIN_BATCH plain tasks goes through COPY."""
    await store.save_definitions([DEFINITION])
    seen = copies(monkeypatch)
    size = postgres_store.COPY_MIN_BATCH
    assert await store.create_many([make_task() for _ in range(size - 1)])
    assert seen == []
    holder = make_task(idempotency_key="k")
    [first] = await store.create_many([holder])
    keyed = [make_task(idempotency_key="k"), *(make_task() for _ in range(size))]
    answered = await store.create_many(keyed)
    assert answered == [first, *keyed[1:]]
    assert await store.get(keyed[0].id) is None
    note = (Message(MessageType.INFO, "note"),)
    noted = [dataclasses.replace(make_task(), messages=note), *(make_task() for _ in range(size))]
    assert await asyncio.to_thread(store.create_many_blocking, noted) == noted
    assert (await store.get(noted[0].id)) == noted[0]
    mixed = [make_task(launcher="other"), *(make_task() for _ in range(size))]
    assert await store.create_many(mixed) == mixed
    assert seen == []
    plain = [make_task() for _ in range(size)]
    assert await store.create_many(plain) == plain
    assert seen == [size]
    for task in plain:
        assert await store.get(task.id) == task


@pytest.mark.parametrize("blocking", [False, True], ids=["loop", "blocking"])
async def test_a_batch_through_copy_wakes_an_idle_worker(
    store: PostgresStore, other: PostgresStore, monkeypatch: pytest.MonkeyPatch, blocking: bool
) -> None:
    """A batch created through COPY wakes a worker waiting on another node, and commits
    durably (synchronous_commit on), whole: a task id already stored fails the batch as the
    statement's does (UniqueViolation) and stores none of it."""
    await store.save_definitions([DEFINITION])
    seen = copies(monkeypatch, min_batch=2)
    await idle(other)
    batch = [make_task(), make_task()]

    async def create(tasks: list[Task]) -> list[Task] | None:
        if blocking:
            return await asyncio.to_thread(store.create_many_blocking, tasks)
        return await store.create_many(tasks)

    await wakes(other, lambda: create(batch))
    assert seen == [2]
    assert [await store.get(t.id) for t in batch] == batch
    again = [make_task(), batch[0]]
    with pytest.raises(psycopg.errors.UniqueViolation):
        await create(again)
    assert await store.get(again[0].id) is None
    assert await fetch(store.url, "SELECT count(*) FROM task_queue") == [(2,)]
    monkeypatch.setattr(postgres_store, "COPY_MIN_BATCH", NEVER)
    with pytest.raises(psycopg.errors.UniqueViolation):  # as the statement fails
        await create(again)


async def test_a_batch_through_copy_on_a_dead_connection_is_unavailable(
    store: PostgresStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    """When the blocking connection died, a COPY batch raises StoreUnavailable, as the
    statement does, and the next batch connects again and is stored."""
    await store.save_definitions([DEFINITION])
    seen = copies(monkeypatch, min_batch=2)
    assert await asyncio.to_thread(store.create_many_blocking, [make_task()]) is not None
    await fetch(
        store.url,
        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
        "WHERE datname = current_database() AND application_name = 'taskstatus submits'",
    )
    with pytest.raises(StoreUnavailable) as info:
        await asyncio.to_thread(store.create_many_blocking, [make_task(), make_task()])
    assert isinstance(info.value.cause, psycopg.OperationalError)
    batch = [make_task(), make_task()]
    assert await asyncio.to_thread(store.create_many_blocking, batch) == batch
    assert seen == [2, 2]


# --- concurrency ---------------------------------------------------------------------------------


async def test_the_first_setting_wins_across_nodes(database: str) -> None:
    """Nodes asking for a missing setting at the same time all get the same value (the JWT
    signing key of every API node, say)."""
    stores = [PostgresStore(database) for _ in range(5)]
    await asyncio.gather(*(s.open() for s in stores))
    try:
        values = await asyncio.gather(
            *(s.setting("key", functools.partial(str, f"value {i}")) for i, s in enumerate(stores))
        )
    finally:
        await asyncio.gather(*(s.close() for s in stores))
    assert len(set(values)) == 1


async def test_one_idempotency_key_from_many_nodes_is_one_task(database: str) -> None:
    """Nodes submitting with the same key at once all get the one task that was stored, and
    a batch that repeats a key gets the first of them twice."""
    stores = [PostgresStore(database) for _ in range(5)]
    await asyncio.gather(*(s.open() for s in stores))
    try:
        created = await asyncio.gather(
            *(
                s.create(make_task(idempotency_key="same", arguments={"n": i}))
                for i, s in enumerate(stores)
            )
        )
        assert len({t.id for t in created}) == 1
        first, second = make_task(idempotency_key="twice"), make_task(idempotency_key="twice")
        out = await stores[0].create_many([first, second])
        assert [t.id for t in out] == [first.id, first.id]
        rows = await fetch(database, "SELECT count(*) FROM tasks")
        assert rows == [(2,)]
    finally:
        await asyncio.gather(*(s.close() for s in stores))


# --- types -------------------------------------------------------------------------------------


async def test_times_come_back_in_utc_whatever_the_session_time_zone(database: str) -> None:
    """timestamptz values come back aware and in UTC, and JSON as Python values, on a
    connection whose time zone is far from UTC."""
    url = database + "?options=-c%20TimeZone%3DPacific%2FChatham"
    s = PostgresStore(url)
    await s.open()
    try:
        task = make_task(
            arguments={"deep": {"list": [1, "two", None, True, 1.5]}, "text": "été ✓"},
            target=Target("t-1"),
            run_at=now() + timedelta(hours=1),
        )
        await s.save_definitions([DEFINITION])
        await s.create(task)
        got = await s.get(task.id)
    finally:
        await s.close()
    assert got == task
    assert got.created.tzinfo is UTC and got.run_at is not None and got.run_at.tzinfo is UTC


# --- round trips ---------------------------------------------------------------------------------


async def test_batches_cost_the_same_round_trips_whatever_their_size(
    database: str, postgres: pg.PgServer
) -> None:
    """Counted at a proxy: creating, claiming, beating, reporting and finishing 1 task or 40
    is one round trip each (one statement with arrays)."""
    proxy = pg.RoundTrips(postgres.admin_url)
    port = await proxy.start()
    s = PostgresStore(pg.via_port(database, port), min_size=1, max_size=1)
    await s.open()
    try:
        await s.save_definitions([DEFINITION])
        note = (Message(MessageType.INFO, "note"),)
        counts: dict[str, int] = {}

        async def counted(name: str, op: Awaitable[Any]) -> Any:
            before = proxy.count
            result = await op
            counts[name] = proxy.count - before
            return result

        for n in (1, 40):
            counts.clear()

            tasks = [make_task() for _ in range(n)]
            await counted("create", s.create_many(tasks))
            claimed = await counted("claim", s.claim(W1, n, 30, ["noop"]))
            ids = [t.id for t in claimed]
            assert len(ids) == n
            await counted("heartbeat", s.heartbeat(W1, ids, 30))
            await counted("report", s.report(W1, [Progress(i, "p", 50, note) for i in ids]))
            outcomes = [
                Outcome(i, TaskState.SUCCEEDED, CompletionStatus.SUCCESS, messages=note)
                for i in ids
            ]
            done = await counted("finish", s.finish(W1, outcomes))
            assert done == set(ids)
            assert counts == dict.fromkeys(counts, 1), (n, counts)
    finally:
        await s.close()
        await proxy.close()


async def test_a_plain_claim_is_one_statement_alone_in_its_transaction(
    database: str, postgres: pg.PgServer
) -> None:
    """Counted at a proxy: once the node has read the handler limits (the first claim does),
    a claim of handlers without limits sends one statement, the claim, in its own
    transaction: no BEGIN, `lax` or COMMIT around it (each one a message the server wakes up
    for), whether it claims tasks or finds none."""
    proxy = pg.RoundTrips(postgres.admin_url)
    port = await proxy.start()
    s = PostgresStore(pg.via_port(database, port), min_size=1, max_size=1)
    await s.open()
    try:
        await s.create_many([make_task() for _ in range(5)])
        assert len(await s.claim(W1, 1, 30, ["noop"])) == 1  # reads the limits too
        for n, handler in ((3, "noop"), (0, "idle")):
            before = (proxy.count, proxy.statements)
            assert len(await s.claim(W1, 3, 30, [handler])) == n
            assert (proxy.count - before[0], proxy.statements - before[1]) == (1, 1), handler
    finally:
        await s.close()
        await proxy.close()


async def test_the_claim_statement_says_what_lax_says(store: PostgresStore) -> None:
    """The claim's statement, alone in its transaction, sets what a bookkeeping transaction's
    `lax` sets, in time for the counts' trigger, which it skips (EXPLAIN ANALYZE names the
    triggers that fired: an update of a counted table without it names that one), and for
    its commit, which does not wait for the disk; the settings end with the transaction."""
    await store.create_many([make_task(), make_task()])
    params = {"worker": W1, "lease": 30.0, "limit": 1, "handlers": ["noop"]}
    probe = "SELECT current_setting('synchronous_commit'), current_setting('taskstatus.counts')"
    touch = "UPDATE tasks SET priority = priority WHERE id = 'none'"

    async def explained(conn: psycopg.AsyncConnection[Any], sql: str, p: Any) -> str:
        rows = await (await conn.execute(f"EXPLAIN (ANALYZE, COSTS OFF) {sql}", p)).fetchall()
        return "\n".join(r[0] for r in rows)

    async with await psycopg.AsyncConnection.connect(store.url, autocommit=True) as conn:
        before = await (await conn.execute("SHOW synchronous_commit")).fetchone()
        async with conn.transaction(force_rollback=True):
            assert "Trigger tasks_count_updated" in await explained(conn, touch, None)
        async with conn.transaction(force_rollback=True):
            claimed = await explained(conn, QUERIES["claim"], params)
            assert "Update on tasks" in claimed and "Trigger" not in claimed, claimed
            assert await (await conn.execute(probe)).fetchone() == ("off", "unchanged")
        assert await (await conn.execute("SHOW synchronous_commit")).fetchone() == before


# --- plans ---------------------------------------------------------------------------------------


async def plan(store: PostgresStore, sql: str, params: Any) -> str:
    """PostgreSQL's EXPLAIN of `sql`, sequential scans discouraged so the fitting index shows."""
    async with await psycopg.AsyncConnection.connect(store.url, autocommit=True) as conn:
        await conn.execute("SET enable_seqscan = off")  # a tiny table: ask which index fits
        rows = await (await conn.execute(f"EXPLAIN {sql}", params)).fetchall()
    return "\n".join(r[0] for r in rows)


async def test_claims_lists_and_recovery_use_their_indexes(store: PostgresStore) -> None:
    """Each hot statement has an index that fits it (partial-index predicates included), so
    none of them reads the whole table (bench/pg_plans.py shows the plans at 1M rows)."""
    await store.create_many(
        [make_task(target=Target(f"t{i % 7}"), launcher=f"l{i % 3}") for i in range(300)]
    )
    done = await store.claim(W1, 280, 30, ["noop"])  # most tasks have ended, as in life
    statuses = (CompletionStatus.SUCCESS, CompletionStatus.ERROR)
    await store.finish(
        W1,
        [
            Outcome(t.id, TaskState.SUCCEEDED if i % 2 else TaskState.FAILED, statuses[i % 2 == 0])
            for i, t in enumerate(done)
        ],
    )
    async with await psycopg.AsyncConnection.connect(store.url, autocommit=True) as conn:
        await conn.execute("ANALYZE tasks")
    cutoff = now() - timedelta(days=90)
    recent = Condition(TaskField.CREATED, Op.GE, (cutoff,))
    cases: list[tuple[str | tuple[str, ...], str, Any]] = []
    for field, value, index in (
        (TaskField.COMPLETION_STATUS, "SUCCESS", "tasks_status_created"),
        (TaskField.TYPE, "QUARTZ", "tasks_type_created"),
        (TaskField.TARGET_ID, "t1", "tasks_target_created"),
        (TaskField.LAUNCHER, "l1", "tasks_launcher_created"),
    ):
        query = TaskQuery(
            all_of(Condition(field, Op.EQ, (value,)), recent),
            (SortKey(TaskField.CREATED, descending=True),),
            count=True,
        )
        page, count = list_statements(query)
        assert count is not None
        # a count by completion status sums task_counts (and counts its first day exactly)
        counted = (index, "task_counts_pkey") if field is TaskField.COMPLETION_STATUS else index
        cases += [(index, page.sql, page.params), (counted, count.sql, count.params)]
    pending = TaskQuery(
        all_of(Condition(TaskField.COMPLETION_STATUS, Op.ISNULL), recent),
        (SortKey(TaskField.CREATED),),
    )
    page, _ = list_statements(pending)
    # at 1M rows the pending index; on a table this small, the status index may do
    cases.append((("tasks_pending_created", "tasks_status_created"), page.sql, page.params))
    claim = {"worker": W1, "lease": 30.0, "handlers": ["noop"], "limit": 10}
    cases.append(("tasks_pkey", QUERIES["claim"], claim))  # its pick: see the next test
    cases.append(("tasks_inflight", QUERIES["recover"], {"grace": 0.0}))
    cases.append(("tasks_pkey", QUERIES["get_task"], {"id": "a" * 32, "include_deleted": False}))
    for indexes, sql, params in cases:
        text = await plan(store, sql, params)
        fits = (indexes,) if isinstance(indexes, str) else indexes
        assert any(f" {index} " in text for index in fits), f"{fits} not used by\n{sql}\n{text}"
        assert "Seq Scan on tasks" not in text, text


# Queued tasks as create_tasks stores them (a task row and its queue row), made in the
# database so that 100,000 take seconds; nothing analyzes them, as nothing does on a server
# with autovacuum off.
QUEUE_FILL = (
    """
    INSERT INTO tasks (id, handler, type, unique_name, description, launcher, created,
                       modified, state, run_at, priority)
    SELECT md5(g::text), 'noop', 'QUEUED_TASK', 'Task ' || g, 'queued', 'tester', now(),
           now(), 'queued', now() - interval '1 minute' + g * interval '1 microsecond', 0
    FROM generate_series(1, %(n)s) g
    """,
    """
    INSERT INTO task_queue (id, handler, priority, run_at)
    SELECT id, handler, priority, run_at FROM tasks WHERE state = 'queued'
    """,
)


async def nested_plans(url: str, statement: str, params: Any) -> list[str]:
    """The plans of the statements that run inside `statement` (functions' queries included),
    as auto_explain logs them; the statement is rolled back."""
    logged: list[str] = []
    async with await psycopg.AsyncConnection.connect(url, autocommit=True) as conn:
        conn.add_notice_handler(lambda notice: logged.append(notice.message_primary or ""))
        await conn.execute("LOAD 'auto_explain'")
        for setting in ("log_min_duration = 0", "log_nested_statements = on"):
            await conn.execute(f"SET auto_explain.{setting}")
        await conn.execute("SET client_min_messages = log")
        await conn.execute("BEGIN")
        await conn.execute(statement, params)
        await conn.execute("ROLLBACK")
    return logged


async def fill_queue(url: str, queued: int) -> None:
    """`queued` tasks of handler "noop" (QUEUE_FILL), with no statistics on the tables."""
    async with await psycopg.AsyncConnection.connect(url, autocommit=True) as conn:
        for statement in QUEUE_FILL:
            await conn.execute(statement, {"n": queued})
        cursor = await conn.execute(
            "SELECT count(*) FROM pg_stats WHERE tablename IN ('tasks', 'task_queue')"
        )
        assert await cursor.fetchone() == (0,), "the tables have statistics"


def claim_params(*handlers: str) -> dict[str, Any]:
    """A claim of 8 for `handlers`, as QUERIES["claim"] takes its parameters."""
    return {"worker": W1, "lease": 30.0, "handlers": list(handlers), "limit": 8}


def assert_ordered_pick(picked: str, index: str) -> None:
    """`picked` (a pick's plan) reads `index` in order, looks each task up by key, sorts
    nothing, scans no table, and is the generic plan kept for the session (0009: the
    handlers are a parameter, not constants planned anew at each claim)."""
    assert f"Index Scan using {index} on task_queue" in picked, picked
    assert "Index Scan using tasks_pkey on tasks" in picked, picked
    assert "Sort" not in picked and "Seq Scan" not in picked, picked
    assert re.search(r"handler = (ANY )?\(?\$\d+", picked), picked


@pytest.mark.slow
@pytest.mark.parametrize("queued", [10_000, 100_000])
async def test_the_claim_plan_needs_no_statistics(store: PostgresStore, queued: int) -> None:
    """With thousands of tasks queued and no statistics (no ANALYZE, autovacuum off), a claim
    for handlers of which one has due tasks picks them by an ordered, limited scan of that
    handler's range of the queue (task_queue_handler_due, 0013): no sort of the queue, no
    sequential scan, whatever the planner guesses about the number of rows; and that plan is
    the generic one, kept rather than made again at every claim."""
    await fill_queue(store.url, queued)
    logged = await nested_plans(store.url, QUERIES["claim"], claim_params("noop", "other"))
    picks = [p for p in logged if "FROM task_queue q" in p]
    assert len(picks) == 1, logged  # taskstatus_pick's query, as the function ran it
    assert_ordered_pick(picks[0], "task_queue_handler_due")
    probes = [p for p in logged if "FROM task_queue b" in p]  # which handlers have due tasks
    assert probes and all("Seq Scan" not in p and "Sort" not in p for p in probes), probes
    (outer,) = [p for p in logged if "taskstatus_due(" in p]  # the claim's own statement
    assert "Seq Scan" not in outer and "Sort" not in outer, outer
    assert len(await store.claim(W1, 8, 30, ["noop"])) == 8


@pytest.mark.slow
async def test_a_large_claim_dequeues_by_key_without_statistics(store: PostgresStore) -> None:
    """A claim of 500 at 10,000 queued, no statistics: its dequeue looks each claimed task's
    queue row up by key (so does taskstatus_dequeue, 0017, by its planner settings: without
    them it read the whole queue, a sequential scan per claim growing with the backlog)."""
    await fill_queue(store.url, 10_000)
    params = claim_params("noop") | {"limit": 500}
    logged = await nested_plans(store.url, QUERIES["claim"], params)
    ids = [r[0] for r in await fetch(store.url, "SELECT id FROM task_queue LIMIT 500")]
    logged += await nested_plans(store.url, "SELECT taskstatus_dequeue(%s)", [ids])
    deletes = [p for p in logged if "Delete on task_queue" in p]
    assert len(deletes) == 2, logged  # the claim's own, and the function's
    for plan in deletes:
        assert "task_queue_pkey" in plan and "Seq Scan" not in plan, plan


@pytest.mark.slow
async def test_a_claim_of_one_handler_reads_its_range_alone(store: PostgresStore) -> None:
    """A claim for one handler (a worker's usual claim) runs one query of the queue, that
    handler's ordered range, with no probe of which handlers have due tasks before it and no
    nested pick (0018), and no statistics needed; the range of a handler with nothing due
    is found empty the same way."""
    await fill_queue(store.url, 10_000)
    for handler, n in (("noop", 8), ("other", 0)):
        logged = await nested_plans(store.url, QUERIES["claim"], claim_params(handler))
        picks = [p for p in logged if "FROM task_queue q" in p]
        assert len(picks) == 1, logged
        assert_ordered_pick(picks[0], "task_queue_handler_due")
        assert not [p for p in logged if "FROM task_queue b" in p or "taskstatus_pick(" in p]
        assert len(await store.claim(W1, 8, 30, [handler])) == n


async def test_a_claim_of_one_handler_leaves_it_out_once_limited_elsewhere(
    store: PostgresStore, other: PostgresStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A node that read the handler limits before another node limited its one handler
    claims none of that handler's tasks by its plain claim: the one-handler pick (0018)
    tests the limits itself, as the pick of several handlers does."""
    # the node's list stays, and the TTL is longer than the machine has been up (monotonic
    # time counts from boot: a sentinel of 0.0 for "unread" then looked fresh)
    monkeypatch.setattr(postgres_schedules, "LIMITED_TTL", time.monotonic() + 3600.0)
    await store.create_many([make_task() for _ in range(3)])
    assert len(await store.claim(W1, 1, 30, ["noop"])) == 1  # reads the limits: none yet
    await other.save_limits(HandlerLimits("noop", concurrency=5))
    assert await store.claim(W1, 8, 30, ["noop"]) == []
    assert len(await other.claim(W1, 8, 30, ["noop"])) == 2  # within the limit, as limited


@pytest.mark.slow
async def test_a_claim_over_several_busy_handlers_scans_the_queue_in_order(
    store: PostgresStore,
) -> None:
    """When several of the claimer's handlers have due tasks, the pick is one ordered scan of
    the queue's due index over just those handlers (queue order across them: priority, then
    due time), with no statistics either; the claim takes the other handler's task first when
    its priority is higher."""
    await fill_queue(store.url, 10_000)
    await store.create_many([make_task("other", priority=1)])
    logged = await nested_plans(store.url, QUERIES["claim"], claim_params("noop", "other"))
    picks = [p for p in logged if "FROM task_queue q" in p]
    assert len(picks) == 1, logged
    assert_ordered_pick(picks[0], "task_queue_due")
    claimed = await store.claim(W1, 2, 30, ["noop", "other"])
    assert [t.handler for t in claimed] == ["other", "noop"]


@pytest.mark.slow
async def test_a_claim_for_handlers_with_nothing_due_reads_no_queue_range(
    store: PostgresStore,
) -> None:
    """A worker whose handlers have nothing due, while 100,000 tasks of another handler are
    queued, finds so with one index probe per handler and runs no pick: before 0013 each of
    its claims read the other handler's whole backlog (about 20 ms here)."""
    await fill_queue(store.url, 100_000)
    logged = await nested_plans(store.url, QUERIES["claim"], claim_params("other", "third"))
    assert not [p for p in logged if "FROM task_queue q" in p], logged
    probes = [p for p in logged if "FROM task_queue b" in p]
    assert probes, logged
    for probe in probes:
        assert "Index Only Scan using task_queue_handler_due" in probe or (
            "Index Scan using task_queue_handler_due" in probe
        ), probe
    assert await store.claim(W1, 8, 30, ["other", "third"]) == []


async def test_the_queue_holds_exactly_the_queued_tasks_through_racing_claims(
    store: PostgresStore, other: PostgresStore
) -> None:
    """Two nodes claim while their claimed tasks are handed back (running -> queued) at once:
    every queued task keeps its queue row and no queue row outlives its task's queued state,
    so nothing is stranded unclaimable (the claim dequeues in its own statement)."""
    await store.create_many([make_task() for _ in range(200)])

    async def churn(node: PostgresStore, worker: str) -> None:
        for _ in range(30):
            claimed = await node.claim(worker, 10, 30, ["noop"])
            await node.release(worker, [t.id for t in claimed[::2]])

    await asyncio.gather(churn(store, "w1"), churn(other, "w2"), churn(store, "w3"))
    assert await fetch(store.url, ORPHANS) == [(0, 0)]


ORPHANS = (
    "SELECT (SELECT count(*) FROM tasks t WHERE t.state = 'queued'"
    "        AND NOT EXISTS (SELECT FROM task_queue q WHERE q.id = t.id)),"
    "       (SELECT count(*) FROM task_queue q JOIN tasks t USING (id)"
    "        WHERE t.state <> 'queued')"
)


async def test_a_claim_dequeues_a_task_requeued_after_its_statement_began(
    store: PostgresStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A task claimed and handed back by another node after a claim's statement took its
    snapshot, but before its pick ran (the pick reads a newer one), is claimed with its newest
    version; the queue row that the hand-back inserted goes with it. The statement's own
    snapshot did not see that row, so before 0017 it outlived the claim: a running task's row
    that every later pick walked over. A lock on handler_limits, which only the pick reads,
    holds the claim between the two (after a first claim, which read the limits list that
    the next claims then trust)."""
    monkeypatch.setattr(postgres_schedules, "LIMITED_TTL", 3600.0)
    assert await store.claim(W1, 1, 30, ["noop"]) == []
    [task] = await store.create_many([make_task()])
    async with await psycopg.AsyncConnection.connect(store.url) as lock:
        await lock.execute("LOCK TABLE handler_limits IN ACCESS EXCLUSIVE MODE")
        claiming = asyncio.create_task(store.claim(W1, 1, 30, ["noop"]))
        async with await psycopg.AsyncConnection.connect(store.url, autocommit=True) as db:
            for _ in range(500):  # until the claim waits for the lock
                waiting = await (
                    await db.execute(
                        "SELECT count(*) FROM pg_locks l JOIN pg_stat_activity a USING (pid)"
                        " WHERE l.relation = 'handler_limits'::regclass AND NOT l.granted"
                        " AND a.query LIKE '%%taskstatus_due%%'"
                    )
                ).fetchone()
                if waiting and waiting[0]:
                    break
                await asyncio.sleep(0.01)
            else:
                raise AssertionError("the claim never reached the pick")
            # another node's claim and hand-back, committed in between (as the claim and
            # release statements do: the claim dequeues itself, the release's trigger requeues)
            await db.execute(
                "WITH c AS (UPDATE tasks SET state = 'running', lease_owner = 'w2',"
                " attempts = attempts + 1, version = version + 1 WHERE id = %(id)s RETURNING id)"
                " DELETE FROM task_queue WHERE id IN (SELECT id FROM c)",
                {"id": task.id},
            )
            await db.execute(
                "UPDATE tasks SET state = 'queued', lease_owner = NULL,"
                " attempts = attempts - 1, version = version + 1 WHERE id = %(id)s",
                {"id": task.id},
            )
        await lock.commit()
        claimed = await claiming
    assert [t.id for t in claimed] == [task.id]
    assert await fetch(store.url, ORPHANS) == [(0, 0)]


async def test_a_claimer_vacuums_the_queue_it_drains(
    store: PostgresStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Claims leave dead queue rows; after claiming QUEUE_VACUUM_AFTER tasks a store vacuums
    task_queue itself, in the background, so nothing depends on autovacuum."""
    monkeypatch.setattr(postgres_store, "QUEUE_VACUUM_AFTER", 20)

    async def vacuums() -> int:
        rows = await fetch(
            store.url,
            "SELECT vacuum_count + autovacuum_count FROM pg_stat_user_tables"
            " WHERE relname = 'task_queue'",
        )
        return int(rows[0][0])

    before = await vacuums()
    await store.create_many([make_task() for _ in range(30)])
    assert len(await store.claim(W1, 10, 30, ["noop"])) == 10
    assert await vacuums() == before  # not yet
    assert len(await store.claim(W1, 20, 30, ["noop"])) == 20
    vacuum = store._vacuum
    assert vacuum is not None
    await vacuum
    assert await vacuums() == before + 1


async def test_a_claim_of_whole_pages_keeps_every_task_on_its_page(store: PostgresStore) -> None:
    """A claim that takes every task of its pages at once finds room on those pages for all
    their new row versions (the fillfactor of migration 0014): each claimed task keeps its
    page, as a heap-only update does, and none moves to another page (where VACUUM would later
    offer the room it left to new tasks)."""
    await store.create_many([make_task() for _ in range(400)])
    page = "SELECT id, (ctid::text::point)[0] FROM tasks"
    before = dict(await fetch(store.url, page))
    assert len(await store.claim(W1, 400, 30, ["noop"])) == 400
    after = dict(await fetch(store.url, page))
    assert [i for i in before if after[i] != before[i]] == []


async def test_the_database_refuses_a_task_row_the_lifecycle_does_not_allow(
    store: PostgresStore,
) -> None:
    """The tasks table's CHECK (one since migration 0020, three before) refuses a row whose
    state is unknown, whose completion status does not match its state's side (none while
    queued, running or cancel_requested; one in an end state) or whose percent complete is
    outside 0..100, and takes every state on its own side."""
    [task] = await store.create_many([make_task()])
    change = (
        "UPDATE tasks SET state = %s, completion_status = %s, percent_complete = %s WHERE id = %s"
    )
    refused = [
        ("bogus", None, 0),
        ("bogus", "SUCCESS", 0),
        ("succeeded", None, 0),
        ("dead", None, 0),
        ("queued", "SUCCESS", 0),
        ("cancel_requested", "TERMINATED", 0),
        ("running", None, 101),
        ("running", None, -1),
        ("failed", "ERROR", 101),
    ]
    for state, status, percent in refused:
        with pytest.raises(psycopg.errors.CheckViolation):
            await fetch(store.url, change + " RETURNING id", [state, status, percent, task.id])
    pending = ("queued", "running", "cancel_requested")
    ended = ("succeeded", "failed", "cancelled", "dead")
    allowed = [(s, None, 0) for s in pending] + [(s, "SUCCESS", 100) for s in ended]
    for state, status, percent in allowed:
        rows = await fetch(store.url, change + " RETURNING id", [state, status, percent, task.id])
        assert rows == [(task.id,)], (state, status, percent)


# --- counts --------------------------------------------------------------------------------------


async def test_counts_by_status_stay_exact_through_every_write(store: PostgresStore) -> None:
    """A count by completion status (and the retention window) is a sum over task_counts;
    after any mix of writes, over tasks created across many days, it equals the exact count."""
    import random

    rng = random.Random(7)
    base = now() - timedelta(days=10)
    await store.save_definitions([DEFINITION])
    cutoff = base + timedelta(days=3, hours=5)  # mid-day: the first day is counted exactly
    statuses = list(CompletionStatus)

    def shapes() -> list[TaskQuery]:
        recent = Condition(TaskField.CREATED, Op.GE, (cutoff,))
        by = [
            Condition(TaskField.COMPLETION_STATUS, Op.ISNULL),
            Condition(TaskField.COMPLETION_STATUS, Op.PR),
            Condition(TaskField.COMPLETION_STATUS, Op.EQ, (CompletionStatus.SUCCESS,)),
            Condition(
                TaskField.COMPLETION_STATUS,
                Op.IN,
                (CompletionStatus.ERROR, CompletionStatus.TERMINATED),
            ),
        ]
        return [
            TaskQuery(all_of(b, r), limit=0, count=True) for b in by for r in (recent, None)
        ] + [
            TaskQuery(None, limit=0, count=True),
            TaskQuery(recent, limit=0, count=True),
        ]

    async def check() -> None:
        for query in shapes():
            rolled = (await store.query(query)).total
            exact_query = TaskQuery(
                all_of(query.where, Condition(TaskField.ID, Op.PR)), limit=0, count=True
            )  # `id pr` changes nothing but takes the exact path
            _, rollup = list_statements(query)
            assert rollup is not None and "task_counts" in rollup.sql
            assert type(rolled) is int  # not a Decimal, whose // truncates toward zero
            assert rolled == (await store.query(exact_query)).total, query

    for step in range(6):
        tasks = [
            make_task(now=base + timedelta(days=rng.uniform(0, 10)), max_attempts=1)
            for _ in range(rng.randint(20, 60))
        ]
        await store.create_many(tasks)
        claimed = await store.claim(W1, rng.randint(5, 40), 30, ["noop"])
        outcomes = []
        for t in claimed:
            status = rng.choice(statuses)
            if status is CompletionStatus.TEMPERROR:
                outcomes.append(Outcome(t.id, TaskState.QUEUED, None))  # a retry
            else:
                state = {
                    "SUCCESS": TaskState.SUCCEEDED,
                    "WARNING": TaskState.SUCCEEDED,
                    "ERROR": TaskState.FAILED,
                    "TERMINATED": TaskState.CANCELLED,
                }[status.value]
                outcomes.append(Outcome(t.id, state, status))
        await store.finish(W1, outcomes)
        await store.heartbeat(W1, [t.id for t in claimed], 30)
        victims = rng.sample(tasks, 3)
        await store.delete(victims[0].id, force=True, now=now())
        await store.update(
            victims[1].id, lambda t: t if t.terminal else dataclasses.replace(t, progress="poked")
        )
        if step == 3:
            await store.purge(base + timedelta(days=2))
        await check()


async def test_bookkeeping_transactions_skip_the_count_trigger(store: PostgresStore) -> None:
    """A worker's bookkeeping transaction (`lax`: claims, heartbeats, reports) says it changes
    no count, and the counts' update trigger is skipped there (migration 0011); the setting
    ends with that transaction, so any other update is counted."""
    await store.create_many([make_task(), make_task()])
    pending = "SELECT sum(n) FROM task_counts WHERE status = ''"
    done = "UPDATE tasks SET state = 'failed', completion_status = 'ERROR' WHERE id = %s"
    first, second = [r[0] for r in await fetch(store.url, "SELECT id FROM tasks ORDER BY id")]
    async with await psycopg.AsyncConnection.connect(store.url, autocommit=True) as conn:
        async with conn.transaction():
            await conn.execute(QUERIES["lax"])
            await conn.execute(done, [first])  # no bookkeeping statement does this: a probe
        assert (await (await conn.execute(pending)).fetchall())[0][0] == 2  # not counted
        await conn.execute(done, [second])
        assert (await (await conn.execute(pending)).fetchall())[0][0] == 1  # counted


async def test_count_writers_spread_over_shards(store: PostgresStore) -> None:
    """Each statement adds its counts to one of 16 shard rows of its status and day, picked
    at random, so concurrent finishes and submits rarely wait for each other's row lock; a
    count still sums to the exact total."""
    for _ in range(20):
        await store.create_many([make_task()])
    rows = await fetch(store.url, "SELECT count(*), sum(n) FROM task_counts WHERE status = ''")
    shards, total = rows[0]
    assert shards > 1 and total == 20
    pending = TaskQuery(Condition(TaskField.COMPLETION_STATUS, Op.ISNULL), limit=0, count=True)
    assert (await store.query(pending)).total == 20


async def test_the_counts_migration_counts_the_tasks_already_stored(store: PostgresStore) -> None:
    """A database from before task_counts (0002): opening it adds the rollup and fills it from
    the stored tasks, so counts are right from the first request."""
    await store.create_many([make_task(now=now() - timedelta(days=d % 5)) for d in range(40)])
    claimed = await store.claim(W1, 15, 30, ["noop"])
    await store.finish(
        W1, [Outcome(t.id, TaskState.SUCCEEDED, CompletionStatus.SUCCESS) for t in claimed]
    )
    async with await psycopg.AsyncConnection.connect(store.url, autocommit=True) as conn:
        await conn.execute(
            "DROP TABLE task_counts; DROP FUNCTION taskstatus_count_tasks() CASCADE;"
            " DELETE FROM schema_migrations WHERE version = 2"
        )
    reopened = PostgresStore(store.url)
    await reopened.open()
    try:
        done = Condition(TaskField.COMPLETION_STATUS, Op.EQ, (CompletionStatus.SUCCESS,))
        pending = Condition(TaskField.COMPLETION_STATUS, Op.ISNULL)
        for where, expected in ((done, 15), (pending, 25)):
            query = TaskQuery(where, limit=0, count=True)
            _, count = list_statements(query)
            assert count is not None and "task_counts" in count.sql
            assert (await reopened.query(query)).total == expected
    finally:
        await reopened.close()


# --- the finish's costs ---------------------------------------------------------------------------


async def test_a_finish_without_messages_runs_the_statement_without_their_insert(
    store: PostgresStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A batch of outcomes with no messages runs `finish_bare`, the finish without the
    messages' INSERT (issue 17); a batch with messages runs the whole `finish`. (The statement
    with messages is replaced by one that fails here: only a batch with messages reaches it.)"""
    assert "task_messages" not in QUERIES["finish_bare"]
    assert "INSERT INTO task_messages" in QUERIES["finish"]
    await store.create_many([make_task(), make_task()])
    first, second = await store.claim(W1, 2, 30, ["noop"])
    monkeypatch.setitem(QUERIES, "finish", "SELECT 1 / 0")
    done = Outcome(first.id, TaskState.SUCCEEDED, CompletionStatus.SUCCESS)
    assert await store.finish(W1, [done]) == {first.id}
    note = (Message(MessageType.INFO, "k", "done"),)
    noted = Outcome(second.id, TaskState.SUCCEEDED, CompletionStatus.SUCCESS, messages=note)
    with pytest.raises(psycopg.errors.DivisionByZero):
        await store.finish(W1, [noted])


async def test_the_indexes_keyed_by_one_task_do_not_deduplicate(store: PostgresStore) -> None:
    """The indexes of `tasks` whose key ends with the task's id hold no duplicates but the
    versions a finish leaves (it is not heap-only): B-tree deduplication is off there
    (migration 0021); the two whose keys repeat across tasks keep it."""
    rows = await fetch(
        store.url,
        "SELECT c.relname, coalesce(c.reloptions, '{}') FROM pg_index i"
        " JOIN pg_class c ON c.oid = i.indexrelid WHERE i.indrelid = 'tasks'::regclass",
    )
    options = dict(rows)
    undeduplicated = {
        "tasks_pkey",
        "tasks_status_created",
        "tasks_type_created",
        "tasks_target_created",
        "tasks_launcher_created",
        "tasks_handler_created",
        "tasks_created",
    }
    for name in undeduplicated:
        assert "deduplicate_items=off" in options[name], name
    for name in ("tasks_completed", "tasks_parent"):
        assert options[name] == [], name


async def test_a_handler_name_and_a_task_id_with_quotes_commas_and_backslashes_still_match(
    store: PostgresStore,
) -> None:
    """The claim's handlers and the finish's ids travel as text[] literals (text_array): a
    handler name and a task id with a comma, quotes, a backslash and braces still match."""
    odd = 'odd,"name"\\ {x}'
    task = await store.create(dataclasses.replace(make_task(odd), id='id,"1"\\ {y}'))
    claimed = await store.claim(W1, 8, 30, [odd, "noop"])
    assert [t.id for t in claimed] == [task.id]
    done = Outcome(task.id, TaskState.SUCCEEDED, CompletionStatus.SUCCESS, attempt=1)
    assert await store.finish(W1, [done]) == {task.id}
    got = await store.get(task.id)
    assert got is not None and got.completion_status is CompletionStatus.SUCCESS
