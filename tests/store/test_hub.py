"""The EventHub over a real store, on every backend: a live follower that fell behind gets
its progress coalesced, and a quiet follower gets heartbeats from the hub's one ticker."""

from __future__ import annotations

import asyncio
import time

import pytest

from taskstatus.events import BEHIND, EventHub
from taskstatus.store import Progress, Store
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
