"""The event log, on every backend: written with the changes, in order, purged with the task,
and signalled to followers in this and other processes."""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import Sequence
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

import psycopg
import pytest

from taskstatus.model import (
    CompletionStatus,
    IllegalTransition,
    Message,
    MessageType,
    Task,
    TaskState,
    cancel,
)
from taskstatus.store import Outcome, Progress, Store, make_store
from taskstatus.store.base import TaskEvent
from taskstatus.store.postgres import QUERIES, RECORD, _doc, _messages
from taskstatus.store.rows import task_to_params
from taskstatus.store.sqlfiles import load_migrations
from taskstatus.store.sqlite import CODEC, _statements
from tests import pg
from tests.conftest import make_task, now
from tests.store.test_contract import W1, W2, seeded

pytestmark = pytest.mark.anyio


async def history(store: Store, task_id: str) -> list[TaskEvent]:
    """Every event of the task, from the start."""
    return await store.events({task_id: 0})


def kinds(events: Sequence[TaskEvent]) -> list[str]:
    """The kinds of `events`, in order."""
    return [e.kind for e in events]


async def test_a_run_writes_its_events_in_order(store: Store) -> None:
    """Create, claim, progress with a message, and a finish with a message and attributes
    give created, launched, progress + message, attributes + message, completed: numbered
    1..n, the completion last and carrying its status and the end's progress."""
    [task] = await seeded(store, make_task())
    await store.claim(W1, 1, 30, ["noop"])
    await store.report(W1, [Progress(task.id, "half", 50, (Message(MessageType.INFO, "hi"),))])
    await store.report(W1, [Progress(task.id, "half", 50)])  # nothing a reader sees changed
    done = Outcome(
        task.id,
        TaskState.SUCCEEDED,
        CompletionStatus.SUCCESS,
        progress="all",
        percent_complete=100,
        messages=(Message(MessageType.INFO, "bye"),),
        attributes={"n": 1},
    )
    assert await store.finish(W1, [done]) == {task.id}
    events = await history(store, task.id)
    assert [e.seq for e in events] == list(range(1, len(events) + 1))
    by_kind = {e.kind: e for e in events[:4]}
    assert kinds(events[:2]) == ["created", "launched"]
    assert set(kinds(events[2:4])) == {"progress", "message"}  # one change: either order
    assert set(kinds(events[4:6])) == {"attributes", "message"}
    assert events[-1].kind == "completed"
    assert len(events) == 7
    assert events[1].data["attempt"] == 1
    assert by_kind["progress"].data == {"progress": "half", "percentComplete": 50}
    assert by_kind["message"].data["text"] == "hi"
    assert events[-1].data["completionStatus"] == "SUCCESS"
    assert events[-1].data["state"] == "succeeded"
    assert (events[-1].data["progress"], events[-1].data["percentComplete"]) == ("all", 100)
    got = await store.get(task.id)
    assert got is not None and events[-1].version == got.version


async def test_cursors_and_limits_page_through_the_log(store: Store) -> None:
    """Events after a cursor, at most `limit` per task, for several tasks in one call."""
    a, b = await seeded(store, make_task(), make_task())
    await store.claim(W1, 2, 30, ["noop"])
    assert kinds(await store.events({a.id: 1})) == ["launched"]
    assert await store.events({a.id: 2}) == []
    both = await store.events({a.id: 0, b.id: 0}, limit=1)
    assert [(e.task_id, e.seq) for e in both] == [(a.id, 1), (b.id, 1)]


async def test_retry_cancel_and_lease_loss_have_their_events(store: Store) -> None:
    """A retry is `retried`; a cancel request `cancel_requested`; an expired lease
    `lease_lost` then, with no attempts left, a lost-lease message and `completed` last."""
    t1 = make_task(max_attempts=2)
    t2 = make_task()
    await seeded(store, t1, t2)
    await store.claim(W1, 2, 30, ["noop"])
    retry = Outcome(t1.id, TaskState.QUEUED, None, run_at=now() - timedelta(seconds=1))
    assert await store.finish(W1, [retry]) == {t1.id}
    await store.update(t2.id, lambda t: cancel(t, now()))
    assert kinds(await history(store, t1.id))[-1] == "retried"
    assert kinds(await history(store, t2.id))[-1] == "cancel_requested"
    [again] = await store.claim(W2, 1, 0.05, ["noop"])
    assert again.id == t1.id
    await asyncio.sleep(0.1)
    assert (await store.recover()).dead == [t1.id]
    tail = kinds(await history(store, t1.id))[-4:]
    assert tail == ["launched", "lease_lost", "message", "completed"]


async def test_a_rolled_back_change_writes_no_event(store: Store) -> None:
    """A change that fails (an illegal transition) leaves the log as it was."""
    [task] = await seeded(store, make_task())
    await store.update(task.id, lambda t: cancel(t, now()))
    before = await history(store, task.id)
    with pytest.raises(IllegalTransition):
        await store.update(task.id, lambda t: cancel(t, now()))
    assert await history(store, task.id) == before


async def test_purge_removes_the_events(store: Store) -> None:
    """Purging a task removes its event log too."""
    old = make_task(now=now() - timedelta(days=100))
    await seeded(store, old)
    await store.update(old.id, lambda t: cancel(t, now()))
    assert await history(store, old.id)
    assert await store.purge(now() - timedelta(days=90)) == 1
    assert await history(store, old.id) == []


async def test_followers_hear_of_commits_from_another_store(store: Store) -> None:
    """A store's event followers are told of events another store object (another process
    or node on the same database) commits, with the first new seq of each task."""
    heard: list[tuple[str, int]] = []
    got = asyncio.Event()

    def listen(news: Sequence[tuple[str, int]] | None) -> None:
        heard.extend(news or [])
        if heard:
            got.set()

    stop = store.on_events(listen)
    other = make_store(store.url)
    await other.open()
    try:
        await asyncio.sleep(0.2)  # the listener is up (PostgreSQL)
        [task] = await seeded(other, make_task())
        async with asyncio.timeout(10):
            while (task.id, 1) not in heard:
                await got.wait()
                got.clear()
        heard.clear()
        await other.update(task.id, lambda t: cancel(t, now()))
        async with asyncio.timeout(10):
            while (task.id, 2) not in heard:
                await got.wait()
                got.clear()
    finally:
        stop()
        await other.close()


async def common_changes(store: Store) -> dict[str, list[TaskEvent]]:
    """The changes most tasks make, each on a task of its own, and every task's events by the
    change's name: a claim; ends with their last progress, with a message and no progress,
    with progress and messages; a retry with a message; the cancel of a queued task; and the
    cancel of a running one, which its worker then ends."""
    tasks = await seeded(store, *(make_task(max_attempts=2) for _ in range(6)))
    names = ["claimed", "done", "failed", "failed_messages", "retried", "cancelled_running"]
    ids = dict(zip(names, (t.id for t in tasks), strict=True))
    assert len(await store.claim(W1, 6, 30, ["noop"])) == 6
    [queued] = await seeded(store, make_task())
    ids["cancelled_queued"] = queued.id
    await store.update(ids["cancelled_running"], lambda t: cancel(t, now()))
    note = Message(MessageType.ERROR, "boom")
    outcomes = [
        Outcome(ids["done"], TaskState.SUCCEEDED, CompletionStatus.SUCCESS, percent_complete=100),
        Outcome(
            ids["failed"],
            TaskState.FAILED,
            CompletionStatus.ERROR,
            messages=(note,),
            attributes={},
            returns=[],
        ),
        Outcome(
            ids["failed_messages"],
            TaskState.FAILED,
            CompletionStatus.ERROR,
            progress="step 2",
            percent_complete=40,
            messages=(Message(MessageType.INFO, "step 1 done"), note),
            attributes={"step": 2},
        ),
        Outcome(
            ids["retried"],
            TaskState.QUEUED,
            None,
            messages=(Message(MessageType.WARN, "attempt 1 of 2 failed"),),
            run_at=datetime(2030, 1, 1, tzinfo=UTC),
        ),
        Outcome(
            ids["cancelled_running"],
            TaskState.CANCELLED,
            CompletionStatus.TERMINATED,
            messages=(Message(MessageType.INFO, "the task was cancelled while running"),),
        ),
    ]
    assert await store.finish(W1, outcomes) == {o.task_id for o in outcomes}
    await store.update(ids["cancelled_queued"], lambda t: cancel(t, now()))
    return {name: await history(store, task_id) for name, task_id in ids.items()}


async def test_the_common_changes_have_the_events_any_change_would(store: Store) -> None:
    """The common changes (SQLite writes them with triggers of their own, PostgreSQL's claim
    and finish in the statements) give the events of the general rules, numbered on:
    `completed` last, after the end's messages, carrying the end's progress (no `progress`
    event of its own)."""
    events = await common_changes(store)
    assert {name: kinds(got) for name, got in events.items()} == {
        "claimed": ["created", "launched"],
        "done": ["created", "launched", "completed"],
        "failed": ["created", "launched", "message", "completed"],
        "failed_messages": [
            "created", "launched", "attributes", "message", "message", "completed"
        ],
        "retried": ["created", "launched", "retried", "message"],
        "cancelled_running": [
            "created", "launched", "cancel_requested", "message", "completed"
        ],
        "cancelled_queued": ["created", "completed"],
    }  # fmt: skip
    for got in events.values():
        assert [e.seq for e in got] == list(range(1, len(got) + 1))
    launched, completed = events["done"][1:]
    assert launched.data["attempt"] == 1 and launched.data["launched"]
    assert completed.data["state"] == "succeeded"
    assert completed.data["completionStatus"] == "SUCCESS" and completed.data["completed"]
    assert (completed.data["progress"], completed.data["percentComplete"]) == (None, 100)
    stored = await store.get(events["done"][0].task_id)
    assert stored is not None and completed.version == stored.version
    assert events["failed"][-1].data["completionStatus"] == "ERROR"
    assert events["failed"][-1].data["percentComplete"] == 0
    failed = events["failed_messages"]
    assert failed[2].data == {"attributes": {"step": 2}, "returns": failed[2].data["returns"]}
    assert [e.data["text"] for e in failed[3:5]] == ["step 1 done", "boom"]
    assert (failed[5].data["progress"], failed[5].data["percentComplete"]) == ("step 2", 40)
    assert len({e.version for e in failed[2:]}) == 1
    retried = events["retried"][2]
    assert retried.data["attempt"] == 1
    assert datetime.fromisoformat(retried.data["runAt"]) == datetime(2030, 1, 1, tzinfo=UTC)
    assert events["cancelled_running"][-1].data["state"] == "cancelled"
    assert events["cancelled_running"][-1].data["completionStatus"] == "TERMINATED"
    assert events["cancelled_queued"][-1].data["state"] == "cancelled"
    created = events["cancelled_queued"][0].data
    # PostgreSQL's jsonb trims a fraction's trailing zeros (…04.31757): compare instants
    assert created["state"] == "queued" and set(created) == {"state", "runAt"}
    queued = await store.get(events["cancelled_queued"][0].task_id)
    assert queued is not None and datetime.fromisoformat(created["runAt"]) == queued.created


# The event data that are times of the change: equal in two runs only in being set.
_TIMES = {"launched", "completed", "modified", "deleted", "runAt"}


def _comparable(events: Sequence[TaskEvent]) -> list[tuple[int, str, int, dict[str, object]]]:
    """What two runs of the same changes share of `events`: all but the times of the run."""
    return [
        (
            e.seq,
            e.kind,
            e.version,
            {k: (v is not None if k in _TIMES else v) for k, v in e.data.items()},
        )
        for e in events
    ]


@pytest.mark.postgres
async def test_the_statements_write_the_events_the_general_trigger_would(
    postgres: pg.PgServer,
) -> None:
    """PostgreSQL's claim and finish write their events in the statements (migration 0010):
    the same events, numbers, versions and data as the general row trigger gives the same
    changes on a database where it writes every change's (as before 0010)."""
    general = postgres.create_database()
    fast = postgres.create_database()
    try:
        with psycopg.connect(postgres.url(general), autocommit=True) as db:
            db.execute("DROP TRIGGER tasks_events_updated ON tasks")
            db.execute(
                "CREATE TRIGGER tasks_events_updated AFTER UPDATE ON tasks FOR EACH ROW"
                " WHEN (OLD.version IS DISTINCT FROM NEW.version)"
                " EXECUTE FUNCTION taskstatus_task_changed()"
            )
            db.execute(f'ALTER DATABASE "{general}" SET taskstatus.event_log = off')
        got: dict[str, dict[str, list[TaskEvent]]] = {}
        for name in (general, fast):
            store = make_store(postgres.url(name))
            await store.open()
            try:
                got[name] = await common_changes(store)
            finally:
                await store.close()
    finally:
        postgres.drop_database(general)
        postgres.drop_database(fast)
    assert got[general].keys() == got[fast].keys()
    for change, events in got[fast].items():
        assert _comparable(events) == _comparable(got[general][change]), change
    assert sum(len(events) for events in got[fast].values()) == 26


async def test_a_task_stored_ended_has_created_then_completed(store: Store) -> None:
    """A task inserted already ended (an import) gets `created` and `completed`, with the
    data of its state (SQLite builds the JSON of these two by concatenation, which cannot
    escape a progress text: the snapshot that starts every stream has the task's progress)."""
    ended = replace(
        make_task(),
        state=TaskState.SUCCEEDED,
        completion_status=CompletionStatus.SUCCESS,
        completed=now(),
    )
    [task] = await seeded(store, ended)
    events = await history(store, task.id)
    assert kinds(events) == ["created", "completed"]
    assert events[0].data["state"] == "succeeded"
    assert events[1].data == {
        "state": "succeeded",
        "completionStatus": "SUCCESS",
        "completed": events[1].data["completed"],
    }
    assert ended.completed is not None
    assert datetime.fromisoformat(events[1].data["completed"]) == ended.completed


async def test_a_database_migrated_with_events_keeps_them_and_numbers_on(tmp_path: Path) -> None:
    """A SQLite file whose tasks have events from before the event triggers were redone keeps
    those events as they were, and a task's next events continue its numbering and ids."""
    path = tmp_path / "old.db"
    old = sqlite3.connect(path, isolation_level=None)
    before = [m for m in load_migrations("sqlite") if m.version < 5]
    assert [m.version for m in before] == [1, 2, 3, 4]
    for migration in before:
        for statement in _statements(migration.sql):
            old.execute(statement)
    old.execute("PRAGMA user_version = 4")
    task = make_task()
    row = task_to_params(task, CODEC)  # the insert as it was before 0007's columns
    old.execute(f"INSERT INTO tasks ({', '.join(row)}) VALUES (:{', :'.join(row)})", row)
    old.execute(
        "UPDATE tasks SET state = 'running', attempts = 1, lease_owner = ?, "
        "version = version + 1 WHERE id = ?",
        (W1, task.id),
    )
    kept = old.execute("SELECT * FROM task_events ORDER BY id").fetchall()
    assert [row[3] for row in kept] == ["created", "launched"]
    old.close()
    store = make_store(f"sqlite:///{path}")
    await store.open()
    try:
        done = Outcome(task.id, TaskState.SUCCEEDED, CompletionStatus.SUCCESS)
        assert await store.finish(W1, [done]) == {task.id}
        events = await history(store, task.id)
    finally:
        await store.close()
    assert kinds(events) == ["created", "launched", "completed"]
    assert [e.seq for e in events] == [1, 2, 3]
    with sqlite3.connect(path) as db:
        rows = db.execute("SELECT * FROM task_events ORDER BY id").fetchall()
        (version,) = db.execute("PRAGMA user_version").fetchone()
    assert rows[:2] == kept and rows[2][0] > kept[-1][0]
    assert version == len(load_migrations("sqlite"))


@pytest.mark.postgres
async def test_a_postgres_database_migrated_with_events_keeps_them_and_numbers_on(
    postgres: pg.PgServer,
) -> None:
    """A PostgreSQL database whose tasks got events from the general trigger alone (before
    0010) keeps them as they were; the statements number the next ones on, a claim after the
    migration and an end of a task claimed before it, with its messages before `completed`."""
    name = postgres.create_database(template="template0")
    url = postgres.url(name)
    try:
        before = [m for m in load_migrations("postgres") if m.version < 10]
        assert before[-1].name == "pick_plan_once"
        one, two = make_task(), make_task()
        with psycopg.connect(url, autocommit=True) as db:
            for migration in before:
                db.execute(migration.sql)
            db.execute(QUERIES["create_migrations_table"])
            for migration in before:
                db.execute(
                    QUERIES["record_migration"],
                    {"version": migration.version, "name": migration.name},
                )
            rows = [task_to_params(t, RECORD) | {"ord": i} for i, t in enumerate((one, two))]
            # today's insert also sets events_version (0010) and last_seq (0015): columns
            # here for the insert only
            db.execute("ALTER TABLE tasks ADD events_version integer, ADD last_seq integer")
            db.execute(QUERIES["create_tasks"], {"tasks": _doc(rows), **_messages([])})
            db.execute("ALTER TABLE tasks DROP events_version, DROP last_seq")
            db.execute(  # the claim of `one`, as the statement before 0010 was
                "UPDATE tasks SET state = 'running', attempts = 1, lease_owner = %s,"
                " lease_expires = now() + interval '30 seconds', launched = now(),"
                " modified = now(), version = version + 1 WHERE id = %s",
                (W1, one.id),
            )
            kept = db.execute("SELECT * FROM task_events ORDER BY task_id, seq").fetchall()
        assert sorted((r[0], r[1], r[2]) for r in kept) == sorted(
            [(one.id, 1, "created"), (one.id, 2, "launched"), (two.id, 1, "created")]
        )
        store = make_store(url)
        await store.open()
        try:
            [claimed] = await store.claim(W2, 1, 30, ["noop"])
            assert claimed.id == two.id
            done = Outcome(
                one.id,
                TaskState.SUCCEEDED,
                CompletionStatus.SUCCESS,
                percent_complete=100,
                messages=(Message(MessageType.INFO, "done"),),
            )
            assert await store.finish(W1, [done]) == {one.id}
            events = {t.id: await history(store, t.id) for t in (one, two)}
        finally:
            await store.close()
        assert kinds(events[one.id]) == ["created", "launched", "message", "completed"]
        assert kinds(events[two.id]) == ["created", "launched"]
        for got in events.values():
            assert [e.seq for e in got] == list(range(1, len(got) + 1))
        with psycopg.connect(url, autocommit=True) as db:
            now_rows = db.execute("SELECT * FROM task_events ORDER BY task_id, seq").fetchall()
            (version,) = db.execute("SELECT max(version) FROM schema_migrations").fetchone() or (0,)
        old_rows = [r for r in now_rows if (r[0], r[1]) in {(k[0], k[1]) for k in kept}]
        # kept as they were; the doc column (0019) that came after them is NULL on them
        assert [r[:6] for r in old_rows] == kept and {r[6:] for r in old_rows} == {(None,)}
        assert version == len(load_migrations("postgres"))
    finally:
        postgres.drop_database(name)


@pytest.mark.postgres
async def test_postgres_numbers_on_from_the_row_or_a_lookup(postgres: pg.PgServer) -> None:
    """PostgreSQL's claim and finish number their events from the task's last_seq (0015) when
    its version was made by a statement that set it (insert, claim, finish, with the finish's
    messages), and look the last seq up when other events came last (messages at the insert, a
    report, a hold note, recovery): every task's seqs stay 1..n, `completed` last, through
    retries with messages, and last_seq is the task's last seq whenever the row vouches."""
    name = postgres.create_database()
    url = postgres.url(name)
    note = Message(MessageType.INFO, "note")
    try:
        store = make_store(url)
        await store.open()
        try:
            t1 = replace(make_task(max_attempts=3), messages=(note,))
            t2 = make_task(max_attempts=3)
            await seeded(store, t1, t2)
            await store.claim(W1, 2, 30, ["noop"])
            await store.report(W1, [Progress(t1.id, "half", 50, (note,))])
            soon = now() - timedelta(seconds=1)
            retries = [
                Outcome(t1.id, TaskState.QUEUED, None, run_at=soon, messages=(note,)),
                Outcome(t2.id, TaskState.QUEUED, None, run_at=soon, messages=(note, note)),
            ]
            assert await store.finish(W1, retries) == {t1.id, t2.id}
            assert len(await store.claim(W2, 2, 30, ["noop"])) == 2
            ends = [
                Outcome(t.id, TaskState.SUCCEEDED, CompletionStatus.SUCCESS, messages=(note,))
                for t in (t1, t2)
            ]
            assert await store.finish(W2, ends) == {t1.id, t2.id}
            for t in (t1, t2):
                events = await history(store, t.id)
                assert [e.seq for e in events] == list(range(1, len(events) + 1))
                assert events[-1].kind == "completed"
            assert kinds(await history(store, t2.id)) == [
                "created", "launched", "retried", "message", "message", "launched", "message",
                "completed",
            ]  # fmt: skip
        finally:
            await store.close()
        with psycopg.connect(url) as db:
            rows = db.execute(
                # what the row says: last_seq and the events of a finish's kinds
                "SELECT t.id, t.last_seq + coalesce((t.event_kinds & 129 = 1)::int"
                " + (t.event_kinds & 2 <> 0)::int + (t.event_kinds & 16 <> 0)::int"
                " + (t.event_kinds & 32 <> 0)::int + (t.event_kinds & 128 <> 0)::int, 0),"
                " (SELECT max(seq) FROM task_events e WHERE e.task_id = t.id)"
                " FROM tasks t WHERE t.events_version = -t.version"  # kept (0016)
            ).fetchall()
        assert sorted(r[0] for r in rows) == sorted([t1.id, t2.id])
        assert all(r[1] == r[2] for r in rows), rows
    finally:
        postgres.drop_database(name)


async def retried_once(store: Store) -> Task:
    """A new task that W1 claimed and sent back to the queue for a retry, due at once."""
    task = make_task(max_attempts=3)
    await seeded(store, task)
    await store.claim(W1, 1, 30, ["noop"])
    retry = Outcome(task.id, TaskState.QUEUED, None, run_at=now() - timedelta(seconds=1))
    assert await store.finish(W1, [retry]) == {task.id}
    return task


# A claim as workers from before migration 0015 made it (0010-0014): events_version set,
# last_seq left as it was, the launched event numbered by a lookup.
OLD_CLAIM = """
WITH claimed AS (
    UPDATE tasks SET state = 'running', lease_owner = %(worker)s,
        lease_expires = now() + interval '30 seconds', attempts = attempts + 1,
        launched = coalesce(launched, now()), modified = now(),
        version = version + 1, events_version = version + 1
    WHERE id = %(id)s AND state = 'queued'
    RETURNING id, version, modified, attempts, launched
),
dequeued AS (DELETE FROM task_queue WHERE id IN (SELECT id FROM claimed))
INSERT INTO task_events (task_id, seq, kind, version, at, data)
SELECT c.id, l.last + 1, 'launched', c.version, c.modified,
       jsonb_build_object('attempt', c.attempts, 'launched', c.launched)
FROM claimed c JOIN taskstatus_last_seqs(ARRAY[%(id)s]) l ON l.task_id = c.id COLLATE "C"
"""


@pytest.mark.postgres
async def test_postgres_a_claim_by_an_older_worker_leaves_no_stale_last_seq(
    postgres: pg.PgServer,
) -> None:
    """A worker from before 0015, beside newer ones (a rolling upgrade), claims a task whose
    row a newer worker's retry gave a last_seq, and leaves it stale: the newer worker's finish
    looks the last seq up (the row is not marked as kept, 0016) instead of failing on a
    duplicate seq, and the events go on 1..n, `completed` last."""
    name = postgres.create_database()
    url = postgres.url(name)
    try:
        store = make_store(url)
        await store.open()
        try:
            task = await retried_once(store)
            with psycopg.connect(url, autocommit=True) as db:
                db.execute(OLD_CLAIM, {"worker": W2, "id": task.id})
            end = Outcome(task.id, TaskState.SUCCEEDED, CompletionStatus.SUCCESS)
            assert await store.finish(W2, [end]) == {task.id}
            events = await history(store, task.id)
            assert [e.seq for e in events] == list(range(1, len(events) + 1))
            assert kinds(events) == ["created", "launched", "retried", "launched", "completed"]
        finally:
            await store.close()
    finally:
        postgres.drop_database(name)


@pytest.mark.postgres
async def test_postgres_a_task_inserted_with_messages_is_counted_by_any_node(
    postgres: pg.PgServer,
) -> None:
    """A task inserted with messages by the insert statement alone (as a node from before
    0016 or any other code does, without the store marking it) is marked by its messages'
    trigger: its claim numbers `launched` after the messages, not after `created`."""
    name = postgres.create_database()
    url = postgres.url(name)
    note = Message(MessageType.INFO, "note")
    try:
        task = replace(make_task(), messages=(note, note))
        rows = [task_to_params(task, RECORD) | {"ord": 0}]
        with psycopg.connect(url, autocommit=True) as db:
            store = make_store(url)
            await store.open()  # migrates
            try:
                db.execute(
                    QUERIES["create_tasks"],
                    {"tasks": _doc(rows), **_messages((task.id, m) for m in task.messages)},
                )
                assert await store.claim(W1, 1, 30, ["noop"])
                events = await history(store, task.id)
            finally:
                await store.close()
        assert kinds(events) == ["created", "message", "message", "launched"]
        assert [e.seq for e in events] == [1, 2, 3, 4]
    finally:
        postgres.drop_database(name)


@pytest.mark.postgres
async def test_postgres_tasks_from_before_0015_are_numbered_by_a_lookup(
    postgres: pg.PgServer,
) -> None:
    """A task whose last change a statement wrote before migration 0015 has no last_seq (the
    migration leaves such rows as they are rather than rewrite the history): its next claim
    and finish look its last seq up, so a retried task's events go on 1..n, `completed` last."""
    name = postgres.create_database()
    url = postgres.url(name)
    try:
        store = make_store(url)
        await store.open()
        try:
            task = await retried_once(store)
            with psycopg.connect(url, autocommit=True) as db:  # as 0015 leaves such a row
                db.execute("UPDATE tasks SET last_seq = NULL WHERE id = %s", [task.id])
            assert len(await store.claim(W2, 1, 30, ["noop"])) == 1
            end = Outcome(task.id, TaskState.SUCCEEDED, CompletionStatus.SUCCESS)
            assert await store.finish(W2, [end]) == {task.id}
            events = await history(store, task.id)
            assert [e.seq for e in events] == list(range(1, len(events) + 1))
            assert kinds(events) == ["created", "launched", "retried", "launched", "completed"]
        finally:
            await store.close()
    finally:
        postgres.drop_database(name)


# Texts a JSON document must escape: quotes, backslashes, control characters, non-ASCII.
_AWKWARD = ['say "hi"', "back\\slash", "line\nbreak\ttab\r", "\x01\x1f", "é ✓ 😀", "", None]


@pytest.mark.postgres
async def test_postgres_hot_event_docs_are_the_data_jsonb_would_be(postgres: pg.PgServer) -> None:
    """The docs the insert, the claim and the finish write as text (0019) parse to exactly the
    data jsonb_build_object gives the same values (escapes, NULLs, times in the session's zone),
    in any session time zone; and the store reads such a row and a jsonb row alike."""
    name = postgres.create_database()
    url = postgres.url(name)
    try:
        with psycopg.connect(url, autocommit=True) as db:
            for zone in ("UTC", "Asia/Kolkata"):
                db.execute(f"SET TIME ZONE '{zone}'")
                for text in _AWKWARD:
                    for percent in (None, 0, 100):
                        row = db.execute(
                            "SELECT taskstatus_completed_doc('failed', %(s)s, now(), %(t)s, %(p)s)"
                            "::jsonb = jsonb_build_object('state', 'failed', 'completionStatus',"
                            " %(s)s::text, 'completed', now(), 'progress', %(t)s::text,"
                            " 'percentComplete', %(p)s::integer),"
                            " taskstatus_launched_doc(%(p)s, now())::jsonb"
                            " IS NOT DISTINCT FROM"
                            " jsonb_build_object('attempt', %(p)s::integer, 'launched', now())"
                            " OR %(p)s IS NULL",
                            {"s": text or "ERROR", "t": text, "p": percent},
                        ).fetchone()
                        assert row == (True, True), (zone, text, percent)
        store = make_store(url)
        await store.open()
        try:
            [task] = await seeded(store, make_task())
            await store.claim(W1, 1, 30, ["noop"])
            ends = [
                Outcome(task.id, TaskState.FAILED, CompletionStatus.ERROR, progress=_AWKWARD[2])
            ]
            assert await store.finish(W1, ends) == {task.id}
            await store.update(task.id, lambda t: replace(t, description="later"))  # general: jsonb
            events = await history(store, task.id)
        finally:
            await store.close()
        with psycopg.connect(url, autocommit=True) as db:
            stored = db.execute(
                "SELECT kind, data IS NULL, doc IS NULL FROM task_events ORDER BY seq"
            ).fetchall()
    finally:
        postgres.drop_database(name)
    assert stored == [
        ("created", True, False),
        ("launched", True, False),
        ("completed", True, False),
        ("updated", False, True),
    ]
    assert kinds(events) == ["created", "launched", "completed", "updated"]
    assert events[2].data["progress"] == _AWKWARD[2]
    assert events[2].data["completionStatus"] == "ERROR"
    assert events[1].data["attempt"] == 1
    assert set(events[3].data) == {"modified"}


async def test_sqlite_created_is_in_the_task_row_and_still_comes_first(tmp_path: Path) -> None:
    """On SQLite a task's `created` is kept in its row, not as a row of the log (0007): a
    submit writes no event row, and a reader from the start still gets `created` as seq 1
    with the state and runAt of the creation after a retry moved the task's run_at; a limit
    of 1 gives `created` alone, and a cursor at 1 what follows it."""
    store = make_store(f"sqlite:///{tmp_path}/tasks.db")
    await store.open()
    try:
        [task] = await seeded(store, make_task(max_attempts=3))
        with sqlite3.connect(tmp_path / "tasks.db") as db:
            assert db.execute("SELECT count(*) FROM task_events").fetchone() == (0,)
        await store.claim(W1, 1, 30, ["noop"])
        later = datetime(2030, 1, 1, tzinfo=UTC)
        retry = Outcome(task.id, TaskState.QUEUED, None, run_at=later)
        assert await store.finish(W1, [retry]) == {task.id}
        events = await history(store, task.id)
        assert kinds(events) == ["created", "launched", "retried"]
        assert [e.seq for e in events] == [1, 2, 3]
        assert (events[0].version, events[0].at) == (1, task.modified)
        assert events[0].data == {
            "state": "queued",
            "runAt": CODEC.time_in(task.run_at or task.created),
        }
        assert await store.events({task.id: 0}, 1) == events[:1]
        assert await store.events({task.id: 1}) == events[1:]
        # a task due later keeps its own runAt (the row's JSON, not the usual empty text)
        due = datetime(2031, 1, 1, tzinfo=UTC)
        [later_task] = await seeded(store, replace(make_task(), run_at=due))
        [created] = await history(store, later_task.id)
        assert (created.kind, created.seq, created.version) == ("created", 1, 1)
        assert created.data == {"state": "queued", "runAt": CODEC.time_in(due)}
    finally:
        await store.close()


class _News:
    """What a store's follower of every task (`on_events`) has been told: (task, first seq)."""

    def __init__(self) -> None:
        self.heard: list[tuple[str, int]] = []
        self._got = asyncio.Event()

    def listen(self, news: Sequence[tuple[str, int]] | None) -> None:
        self.heard.extend(news or [])
        self._got.set()

    async def hears(self, task_id: str, seq: int) -> None:
        """Until news of the task from `seq` or before (one read may see several commits)."""
        async with asyncio.timeout(5):
            while not any(t == task_id and first <= seq for t, first in self.heard):
                await self._got.wait()
                self._got.clear()


async def test_sqlite_followers_hear_of_a_task_made_after_the_newest_was_purged(
    tmp_path: Path,
) -> None:
    """A follower in another process learns of a new task from its rowid (0007): a purge that
    removed the newest task does not let the next task take its rowid, which the follower
    has already seen, so the follower still hears of the next task's `created`."""
    url = f"sqlite:///{tmp_path}/tasks.db"
    store, other = make_store(url), make_store(url)
    await store.open()
    await other.open()
    news = _News()
    stop = store.on_events(news.listen)
    try:
        [old] = await seeded(other, make_task(now=now() - timedelta(days=100)))
        await news.hears(old.id, 1)
        await other.update(old.id, lambda t: cancel(t, now()))
        assert await other.purge(now() - timedelta(days=90)) == 1
        [new] = await seeded(other, make_task())
        await news.hears(new.id, 1)
    finally:
        stop()
        await other.close()
        await store.close()


async def test_sqlite_a_task_inserted_by_an_older_process_keeps_its_stored_created(
    tmp_path: Path,
) -> None:
    """A process from before 0007 on a migrated file inserts a task without created_event:
    the insert trigger stores its `created` as before, so its history still starts at seq 1
    and goes on from there."""
    path = tmp_path / "tasks.db"
    store = make_store(f"sqlite:///{path}")
    await store.open()
    try:
        await seeded(store)
        task = make_task()
        row = task_to_params(task, CODEC)  # the insert as it was before 0007's column
        with sqlite3.connect(path) as db:
            db.execute(f"INSERT INTO tasks ({', '.join(row)}) VALUES (:{', :'.join(row)})", row)
        await store.claim(W1, 1, 30, ["noop"])
        events = await history(store, task.id)
    finally:
        await store.close()
    assert kinds(events) == ["created", "launched"]
    assert [e.seq for e in events] == [1, 2]


async def test_sqlite_followers_hear_of_events_after_the_newest_were_purged(
    tmp_path: Path,
) -> None:
    """Event ids have no AUTOINCREMENT (0007): after a purge removed the newest events, the
    next event may take an id a follower in another process has seen; the purge's record of
    the highest id left makes the follower read again past it, so it hears of that event."""
    url = f"sqlite:///{tmp_path}/tasks.db"
    store, other = make_store(url), make_store(url)
    await store.open()
    await other.open()
    news = _News()
    stop = store.on_events(news.listen)
    try:
        kept, old = await seeded(other, make_task(), make_task(now=now() - timedelta(days=100)))
        await other.update(old.id, lambda t: cancel(t, now()))
        await news.hears(old.id, 2)  # the newest event, id 1
        assert await other.purge(now() - timedelta(days=90)) == 1
        news.heard.clear()
        await other.update(kept.id, lambda t: cancel(t, now()))
        await news.hears(kept.id, 2)
    finally:
        stop()
        await other.close()
        await store.close()
