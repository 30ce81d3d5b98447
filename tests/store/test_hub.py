"""The EventHub over a real store, on every backend: a live follower that fell behind gets
its progress coalesced, a quiet follower gets heartbeats from the hub's one ticker, and a
follower that pushes gets each live event once, in order, from its push or from the
stream."""

from __future__ import annotations

import asyncio
import threading
import time

import pytest

from taskstatus.events import BEHIND, TERMINAL_EVENT, EventHub, TaskEvent
from taskstatus.model import CompletionStatus, TaskState
from taskstatus.store import Outcome, Progress, Store, make_store
from tests.conftest import make_task
from tests.store.test_contract import W1, seeded

pytestmark = pytest.mark.anyio

WAIT = 30.0  # seconds: generous, for a loaded machine


async def test_a_follower_behind_gets_its_progress_coalesced(store: Store) -> None:
    """A live follower that did not read while more than BEHIND progress events came gets
    them as one, the last; the replay before it was not coalesced."""
    [task] = await seeded(store, make_task())
    await store.claim(W1, 1, 30, ["noop"])
    hub = EventHub(store)
    stream = hub.stream(task.id, 0, WAIT)
    try:
        assert [e.kind for e in await anext(stream)] == ["created", "launched"]
        assert await anext(stream) == []  # caught up: live from here
        reports = BEHIND + 10
        for n in range(reports):
            await store.report(W1, [Progress(task.id, f"step {n}", n)])
        deadline = time.monotonic() + WAIT
        while len(await hub.read(task.id, 2)) < reports:  # the hub has them all
            assert time.monotonic() < deadline, "the hub did not hear of the reports"
            await asyncio.sleep(0.05)
        [last] = await asyncio.wait_for(anext(stream), WAIT)
        assert (last.kind, last.seq, last.data["progress"]) == (
            "progress",
            2 + reports,
            f"step {reports - 1}",
        )
    finally:
        await stream.aclose()
    assert hub.followers == 0


async def test_a_quiet_follower_gets_heartbeats(store: Store) -> None:
    """A caught-up follower with nothing new gets an empty batch after its heartbeat, again
    and again, and leaves nothing behind when it stops."""
    [task] = await seeded(store, make_task())
    hub = EventHub(store)
    stream = hub.stream(task.id, 0, 0.2)
    try:
        assert [e.kind for e in await anext(stream)] == ["created"]
        assert await anext(stream) == []  # caught up
        for _ in range(3):
            assert await asyncio.wait_for(anext(stream), WAIT) == []
    finally:
        await stream.aclose()
    assert hub.followers == 0


async def test_a_pushing_follower_gets_each_event_once_in_order(store: Store) -> None:
    """Live events go to `push` while the follower waits, and to the stream when push turns
    them down (every other call here) or the batch has the terminal event: together, every
    event after the replay once, in order; the replay and the terminal event never go to
    push, and the follower is gone once the stream ends."""
    [task] = await seeded(store, make_task())
    await store.claim(W1, 1, 30, ["noop"])
    hub = EventHub(store)
    got: list[tuple[str, int]] = []  # (by which way, seq), in the order they came
    calls = 0

    def push(events: list[TaskEvent]) -> bool:
        nonlocal calls
        calls += 1
        if calls % 2 == 0:
            return False  # not now: the stream yields them
        got.extend(("push", e.seq) for e in events)
        return True

    stream = hub.stream(task.id, 0, WAIT, push)
    try:
        assert [e.kind for e in await anext(stream)] == ["created", "launched"]
        assert await anext(stream) == []  # caught up: live from here

        async def consume() -> None:
            async for batch in stream:
                got.extend(("stream", e.seq) for e in batch)
                if batch and batch[-1].kind == TERMINAL_EVENT:
                    return

        consumer = asyncio.create_task(consume())
        reports = 12
        for n in range(reports):
            await store.report(W1, [Progress(task.id, f"step {n}", n)])
            deadline = time.monotonic() + WAIT
            while len(got) < n + 1:  # this one has arrived, one way or the other
                assert time.monotonic() < deadline, f"report {n} did not arrive: {got}"
                await asyncio.sleep(0.01)
        done = Outcome(task.id, TaskState.SUCCEEDED, CompletionStatus.SUCCESS)
        assert await store.finish(W1, [done]) == {task.id}
        await asyncio.wait_for(consumer, WAIT)
    finally:
        await stream.aclose()
    seqs = [seq for _, seq in got]
    assert seqs == list(range(3, 3 + len(seqs))), got  # after created (1), launched (2)
    assert len(seqs) >= reports + 1  # every report, the completion (and its progress)
    ways = {way for way, _ in got}
    assert ways == {"push", "stream"}, got
    assert got[-1][0] == "stream"  # the terminal event
    assert hub.followers == 0


async def test_the_first_commit_after_following_is_heard(store: Store, store_url: str) -> None:
    """A commit made as soon as the first follower has caught up, before the store's watch
    has had a turn of the event loop (another process's, here a thread's while this loop
    waits), reaches the follower without waiting for another commit. (SQLite's watch once
    took its data_version baseline at its first turn, which then counted that commit: its
    event waited for the next one.)"""
    [task] = await seeded(store, make_task())
    await store.claim(W1, 1, 30, ["noop"])
    hub = EventHub(store)

    async def report_elsewhere() -> None:
        other = make_store(store_url)
        await other.open()
        try:
            await other.report(W1, [Progress(task.id, "step 1", 1)])
        finally:
            await other.close()

    stream = hub.stream(task.id, 0, WAIT)
    try:
        assert [e.kind for e in await anext(stream)] == ["created", "launched"]
        assert await anext(stream) == []  # caught up
        following = asyncio.ensure_future(anext(stream))
        elsewhere = threading.Thread(target=lambda: asyncio.run(report_elsewhere()))
        elsewhere.start()
        elsewhere.join(WAIT)  # blocking this loop: the commit is in before anything runs
        batch = await asyncio.wait_for(following, WAIT)
        assert [(e.seq, e.kind) for e in batch] == [(3, "progress")]
    finally:
        await stream.aclose()
