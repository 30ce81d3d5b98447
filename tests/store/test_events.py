"""The event log, on every backend: written with the changes, in order, purged with the task,
and signalled to followers in this and other processes."""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import Sequence
from dataclasses import replace
from datetime import datetime, timedelta
from pathlib import Path

import pytest

from taskstatus.model import (
    CompletionStatus,
    IllegalTransition,
    Message,
    MessageType,
    TaskState,
    cancel,
)
from taskstatus.store import Outcome, Progress, Store, make_store
from taskstatus.store.base import TaskEvent
from taskstatus.store.rows import task_to_params
from taskstatus.store.sqlfiles import load_migrations
from taskstatus.store.sqlite import _Q, CODEC, _statements
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
    give created, launched, progress + message, progress + attributes + message, completed:
    numbered 1..n, the completion last and carrying its status."""
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
    assert set(kinds(events[4:7])) == {"progress", "attributes", "message"}
    assert events[-1].kind == "completed"
    assert len(events) == 8
    assert events[1].data["attempt"] == 1
    assert by_kind["progress"].data == {"progress": "half", "percentComplete": 50}
    assert by_kind["message"].data["text"] == "hi"
    assert events[-1].data["completionStatus"] == "SUCCESS"
    assert events[-1].data["state"] == "succeeded"
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


async def test_the_common_changes_have_the_events_any_change_would(store: Store) -> None:
    """A claim, an end with its last progress, an end with a message and no progress, and the
    cancel of a queued task (SQLite writes these with triggers of their own) give the same
    events, numbered on, as the general rules: `completed` last, after the end's message."""
    a, b, c = await seeded(store, make_task(), make_task(), make_task())
    await store.claim(W1, 2, 30, ["noop"])
    done = Outcome(a.id, TaskState.SUCCEEDED, CompletionStatus.SUCCESS, percent_complete=100)
    failed = Outcome(
        b.id,
        TaskState.FAILED,
        CompletionStatus.ERROR,
        messages=(Message(MessageType.ERROR, "boom"),),
        attributes={},
        returns=[],
    )
    assert await store.finish(W1, [done, failed]) == {a.id, b.id}
    await store.update(c.id, lambda t: cancel(t, now()))
    events = {t.id: await history(store, t.id) for t in (a, b, c)}
    assert kinds(events[a.id]) == ["created", "launched", "progress", "completed"]
    assert kinds(events[b.id]) == ["created", "launched", "message", "completed"]
    assert kinds(events[c.id]) == ["created", "completed"]
    for got in events.values():
        assert [e.seq for e in got] == list(range(1, len(got) + 1))
    launched, progress, completed = events[a.id][1:]
    assert launched.data["attempt"] == 1 and launched.data["launched"]
    assert progress.data == {"progress": None, "percentComplete": 100}
    assert completed.data["state"] == "succeeded"
    assert completed.data["completionStatus"] == "SUCCESS" and completed.data["completed"]
    assert events[b.id][-1].data["completionStatus"] == "ERROR"
    assert events[c.id][-1].data["state"] == "cancelled"
    stored = await store.get(a.id)
    assert stored is not None and progress.version == completed.version == stored.version
    created = events[c.id][0].data
    # PostgreSQL's jsonb trims a fraction's trailing zeros (…04.31757): compare instants
    assert created["state"] == "queued" and set(created) == {"state", "runAt"}
    assert datetime.fromisoformat(created["runAt"]) == c.created


async def test_a_task_stored_ended_has_created_then_completed(store: Store) -> None:
    """A task inserted already ended (an import) gets `created` and `completed`, with the
    data an end gives (SQLite builds the JSON of these two by concatenation)."""
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
    before = [m for m in load_migrations("sqlite") if m.name != "event_fast_paths"]
    assert [m.version for m in before] == [1, 2, 3, 4]
    for migration in before:
        for statement in _statements(migration.sql):
            old.execute(statement)
    old.execute("PRAGMA user_version = 4")
    task = make_task()
    old.execute(_Q["insert_task"], task_to_params(task, CODEC))
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
