"""The Store contract for schedules and limits, on every backend (the `store` fixture)."""

from __future__ import annotations

import asyncio
import dataclasses
from datetime import UTC, datetime, timedelta

import pytest

from taskstatus.errors import ConflictError, NotFound
from taskstatus.limits_policy import HandlerLimits
from taskstatus.model import CompletionStatus, Task, TaskState, TaskType
from taskstatus.schedules import Schedule
from taskstatus.store import Outcome, Store, make_store
from tests.conftest import DEFINITION, make_task, now

pytestmark = pytest.mark.anyio

W1, W2 = "worker-1", "worker-2"


def a_schedule(name: str = "nightly", **kw: object) -> Schedule:
    """A nightly schedule of the test handler named `name`, with `kw` overriding its fields."""
    t = now()
    fields: dict[str, object] = {"cron": "0 2 * * *", "created": t, "modified": t} | kw
    return Schedule(name, "noop", {"n": 1}, **fields)  # type: ignore[arg-type]


def fired_task(name: str) -> Task:
    """A task as schedule `name` launches it (type QUARTZ)."""
    return make_task(launcher=f"schedule:{name}", type=TaskType.QUARTZ)


async def test_schedules_round_trip(store: Store) -> None:
    """A schedule is stored, read, listed, replaced by version and deleted."""
    s = a_schedule(next_fire=datetime(2030, 1, 1, 2, tzinfo=UTC))
    created = await store.create_schedule(s)
    assert created == dataclasses.replace(s, version=1)
    assert await store.schedule("nightly") == created
    assert [x.name for x in await store.schedules()] == ["nightly"]
    with pytest.raises(ConflictError):
        await store.create_schedule(s)
    changed = await store.save_schedule(
        dataclasses.replace(s, cron="0 3 * * *"), expected_version=1
    )
    assert changed.cron == "0 3 * * *" and changed.version == 2
    with pytest.raises(ConflictError):
        await store.save_schedule(s, expected_version=1)
    assert await store.delete_schedule("nightly")
    assert not await store.delete_schedule("nightly")
    with pytest.raises(NotFound):
        await store.save_schedule(s, expected_version=2)


async def test_due_schedules_leave_paused_and_future_ones_out(store: Store) -> None:
    """Only schedules not paused whose next firing has come are due."""
    t = now()
    await store.create_schedule(a_schedule("due", next_fire=t - timedelta(seconds=1)))
    await store.create_schedule(a_schedule("later", next_fire=t + timedelta(hours=1)))
    await store.create_schedule(a_schedule("paused", paused=True, next_fire=None))
    assert [s.name for s in await store.due_schedules(t)] == ["due"]


async def test_a_firing_stores_one_task_however_many_nodes_race(store_url: str) -> None:
    """Four store connections fire the same due schedule at once: one task, one firing."""
    stores = [make_store(store_url) for _ in range(4)]
    for s in stores:
        await s.open()
    try:
        await stores[0].save_definitions([DEFINITION])
        fire_at = now() - timedelta(seconds=1)
        schedule = await stores[0].create_schedule(a_schedule(next_fire=fire_at))
        nxt = fire_at + timedelta(days=1)
        results = await asyncio.gather(
            *(
                s.fire_schedule(schedule, [(fire_at, fired_task("nightly"))], nxt, now())
                for s in stores
            )
        )
        assert sorted(len(r) for r in results) == [0, 0, 0, 1]
        [task] = [t for r in results for t in r]
        assert await stores[1].get(task.id) == task
        assert await stores[1].firings("nightly") == [(fire_at, task.id)]
        after = await stores[2].schedule("nightly")
        assert after is not None and after.next_fire == nxt and after.last_task_id == task.id
        # a node that still sees the old next firing (or bypasses the guard) adds nothing
        assert (
            await stores[3].fire_schedule(schedule, [(fire_at, fired_task("x"))], nxt, now()) == []
        )
        again = dataclasses.replace(after, next_fire=nxt)
        assert (
            await stores[3].fire_schedule(
                again, [(fire_at, fired_task("nightly"))], nxt + timedelta(days=1), now()
            )
            == []
        )
    finally:
        for s in stores:
            await s.close()


async def test_a_skipped_firing_is_recorded_without_a_task(store: Store) -> None:
    """A firing skipped (overlap) moves the schedule on and keeps no task."""
    fire_at = now() - timedelta(seconds=1)
    schedule = await store.create_schedule(a_schedule(next_fire=fire_at))
    assert (
        await store.fire_schedule(schedule, [(fire_at, None)], fire_at + timedelta(1), now()) == []
    )
    assert await store.firings("nightly") == [(fire_at, None)]


# --- limits -----------------------------------------------------------------------------------


async def queued(store: Store, n: int, **kw: object) -> list[Task]:
    """`n` queued tasks with distinct due times, oldest first (a known queue order)."""
    await store.save_definitions([DEFINITION])
    tasks = [make_task("noop", **kw) for _ in range(n)]
    for i, t in enumerate(tasks):  # distinct due times: a known queue order
        tasks[i] = dataclasses.replace(t, run_at=t.created - timedelta(seconds=n - i))
    return await store.create_many(tasks)


def done(task: Task) -> Outcome:
    """The SUCCESS outcome of `task`'s current attempt."""
    return Outcome(task.id, TaskState.SUCCEEDED, CompletionStatus.SUCCESS, attempt=task.attempts)


async def test_limits_round_trip(store: Store) -> None:
    """Limits are stored for every node; empty limits remove them."""
    limits = HandlerLimits("noop", concurrency=2, rate=5.0, burst=3.0, limit_key="source")
    await store.save_limits(limits)
    assert await store.handler_limits() == [limits]
    await store.save_limits(HandlerLimits("noop"))
    assert await store.handler_limits() == []


async def test_a_concurrency_limit_holds_across_claimers(store_url: str) -> None:
    """Two nodes claim a handler limited to 2 running: 2 run; the rest wait, in queue order,
    with the reason in their progress and no attempt counted; an end frees a slot."""
    a, b = make_store(store_url), make_store(store_url)
    await a.open()
    await b.open()
    try:
        tasks = await queued(a, 6)
        await a.save_limits(HandlerLimits("noop", concurrency=2))
        got = await asyncio.gather(a.claim(W1, 10, 30, ["noop"]), b.claim(W2, 10, 30, ["noop"]))
        claimed = [t for g in got for t in g]
        assert sorted(t.id for t in claimed) == sorted(t.id for t in tasks[:2])
        assert await a.claim(W1, 10, 30, ["noop"]) == []
        waiting = await b.get(tasks[2].id)
        assert waiting is not None and waiting.state is TaskState.QUEUED
        assert waiting.progress == "waiting: limit of 2 running reached"
        assert waiting.attempts == 0
        first = next(t for t in claimed if t.id == tasks[0].id)
        owner = W1 if first in got[0] else W2
        assert await (a if owner == W1 else b).finish(owner, [done(first)]) == {first.id}
        [nxt] = await b.claim(W2, 10, 30, ["noop"])
        assert nxt.id == tasks[2].id and nxt.progress is None  # the note goes when it starts
    finally:
        await a.close()
        await b.close()


async def test_a_concurrency_limit_per_key(store: Store) -> None:
    """With limit_key, each value of the argument has its own limit."""
    ads = await queued(store, 3, arguments={"source": "AD"})
    ldap = await queued(store, 2, arguments={"source": "LDAP"})
    await store.save_limits(HandlerLimits("noop", concurrency=1, limit_key="source"))
    claimed = await store.claim(W1, 10, 30, ["noop"])
    assert {t.id for t in claimed} == {ads[0].id, ldap[0].id}
    held = await store.get(ads[1].id)
    assert held is not None and held.progress == "waiting: limit of 1 running reached for source=AD"


async def test_a_rate_limit_spends_its_bucket(store: Store) -> None:
    """A rate of 1 start/s with a burst of 3: 3 start at once, the next waits for a token."""
    tasks = await queued(store, 5)
    await store.save_limits(HandlerLimits("noop", rate=1.0, burst=3.0))
    claimed = await store.claim(W1, 10, 30, ["noop"])
    assert [t.id for t in claimed] == [t.id for t in tasks[:3]]
    held = await store.get(tasks[3].id)
    assert held is not None and held.progress == "waiting: limit of 1 starts per second reached"
    await asyncio.sleep(1.2)
    more = await store.claim(W1, 10, 30, ["noop"])
    assert 1 <= len(more) <= 2 and more[0].id == tasks[3].id


async def test_unlimited_handlers_claim_as_before_beside_limited_ones(store: Store) -> None:
    """A limit on one handler leaves the others' claims alone."""
    await store.save_definitions([DEFINITION])
    other = [make_task("other") for _ in range(3)]
    await store.create_many(other)
    await queued(store, 3)
    await store.save_limits(HandlerLimits("noop", concurrency=1))
    claimed = await store.claim(W1, 10, 30, ["noop", "other"])
    assert sorted(t.handler for t in claimed) == ["noop", "other", "other", "other"]
