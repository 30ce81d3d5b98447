"""Schedules and limits through the service, on every backend: the missed-firing and overlap
policies, pause and resume, schedules declared in code, and every bad input refused. The
service's clock is set by the test, so firings are exact."""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from taskstatus.caller import Caller
from taskstatus.errors import ConflictError, Forbidden, InvalidArguments, NotFound, UnknownHandler
from taskstatus.handlers import Registry, handler
from taskstatus.limits import InputRejected
from taskstatus.model import CompletionStatus, TaskType
from taskstatus.schedules import MAX_CATCH_UP, Missed, Schedule, due_firings, patched
from taskstatus.scheduling import LimitService, ScheduleService
from taskstatus.service import TaskService
from taskstatus.store import Store
from taskstatus.worker.context import TaskContext

pytestmark = pytest.mark.anyio

T0 = datetime(2030, 1, 1, 12, 0, tzinfo=UTC)
ME = Caller.local("tester")


class Clock:
    """The service's clock, moved by the test."""

    def __init__(self) -> None:
        self.now = T0

    def __call__(self) -> datetime:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += timedelta(seconds=seconds)


@pytest.fixture
def clock() -> Clock:
    """The test's clock, which the test moves by hand."""
    return Clock()


@pytest.fixture
def handlers() -> Registry:
    """A registry of the test handlers: a plain one and one with a nightly schedule."""
    registry = Registry()

    @handler("sync", arguments={"properties": {"n": {"type": "integer"}}}, registry=registry)
    def sync(ctx: TaskContext, args: dict[str, Any]) -> None:
        """Syncs."""

    @handler("nightly", schedule="0 2 * * *", registry=registry)
    def nightly(ctx: TaskContext, args: dict[str, Any]) -> None:
        """Runs at 2."""

    @handler("often", schedule=timedelta(seconds=30), concurrency=2, registry=registry)
    def often(ctx: TaskContext, args: dict[str, Any]) -> None:
        """Runs every 30 s."""

    return registry


@pytest.fixture
async def schedules(store: Store, handlers: Registry, clock: Clock) -> ScheduleService:
    """The schedule service over a task service on `store` with the test handlers and clock."""
    tasks = TaskService(store, handlers, clock=clock)
    await tasks.publish_definitions()
    return ScheduleService(tasks, ME)


async def test_a_new_schedule_fires_at_its_first_time_after_now(
    schedules: ScheduleService, clock: Clock
) -> None:
    """A cron schedule in a time zone fires at that zone's wall time, as a QUARTZ task."""
    s = await schedules.add("eu", "sync", {"n": 1}, cron="0 9 * * *", timezone="Europe/Paris")
    assert s.next_fire == datetime(2030, 1, 2, 8, 0, tzinfo=UTC)  # 09:00 in Paris (CET)
    assert await schedules.fire_due() == ([], None)
    clock.now = datetime(2030, 1, 2, 8, 0, 0, 1, tzinfo=UTC)
    [task], _ = await schedules.fire_due()
    assert task.type is TaskType.QUARTZ and task.launcher == "schedule:eu"
    assert task.arguments == {"n": 1} and task.handler == "sync"
    after = await schedules.get("eu")
    assert after.next_fire == datetime(2030, 1, 3, 8, 0, tzinfo=UTC)
    assert after.last_task_id == task.id and after.last_fire == datetime(2030, 1, 2, 8, tzinfo=UTC)


async def test_missed_skip_fires_once_for_the_latest_firing(
    schedules: ScheduleService, clock: Clock
) -> None:
    """With `skip`, five missed firings make one task, for the latest of them."""
    await schedules.add("s", "sync", every=10)
    clock.advance(55)
    fired, _ = await schedules.fire_due()
    assert len(fired) == 1
    assert await schedules.firings("s") == [(T0 + timedelta(seconds=50), fired[0].id)]
    assert (await schedules.get("s")).next_fire == T0 + timedelta(seconds=60)


async def test_missed_all_catches_up_every_firing_up_to_the_bound(
    schedules: ScheduleService, clock: Clock
) -> None:
    """With `all`, each missed firing gets its task; past MAX_CATCH_UP only the latest do."""
    await schedules.add("a", "sync", every=10, missed="all")
    clock.advance(55)
    fired, _ = await schedules.fire_due()
    assert [when for when, _ in await schedules.firings("a")] == [
        T0 + timedelta(seconds=10 * i) for i in range(1, 6)
    ]
    assert len(fired) == 5
    await schedules.add("b", "sync", every=1, missed="all")
    clock.advance(1000)
    fired, _ = await schedules.fire_due()
    assert len([t for t in fired if t.launcher == "schedule:b"]) == MAX_CATCH_UP


async def test_overlap_skip_waits_for_the_previous_task(
    schedules: ScheduleService, store: Store, clock: Clock
) -> None:
    """With overlap `skip`, a firing while the last task is pending is recorded as skipped;
    once it has ended, the next firing runs."""
    await schedules.add("o", "sync", every=10, overlap="skip")
    clock.advance(10)
    [first], _ = await schedules.fire_due()
    clock.advance(10)
    assert (await schedules.fire_due())[0] == []
    await schedules.tasks.clear(ME, first.id, CompletionStatus.SUCCESS)
    clock.advance(10)
    [second], _ = await schedules.fire_due()
    assert [tid for _, tid in await schedules.firings("o")] == [first.id, None, second.id]


async def test_overlap_allow_fires_beside_a_pending_task(
    schedules: ScheduleService, clock: Clock
) -> None:
    """With overlap `allow` (the default), each firing runs whatever the last one does."""
    await schedules.add("o", "sync", every=10)
    for _ in range(3):
        clock.advance(10)
        assert len((await schedules.fire_due())[0]) == 1


async def test_pause_and_resume(schedules: ScheduleService, clock: Clock) -> None:
    """A paused schedule does not fire; resumed, it fires from now on (nothing caught up)."""
    await schedules.add("p", "sync", every=10, missed="all")
    paused = await schedules.pause("p")
    assert paused.paused and paused.next_fire is None
    clock.advance(100)
    assert (await schedules.fire_due())[0] == []
    resumed = await schedules.resume("p")
    assert not resumed.paused and resumed.next_fire == clock.now + timedelta(seconds=10)
    clock.advance(10)
    assert len((await schedules.fire_due())[0]) == 1


async def test_update_by_json_patch_and_delete(schedules: ScheduleService) -> None:
    """A JSON Patch changes when it fires (from now on); delete removes it."""
    await schedules.add("u", "sync", every=10)
    ops = [{"op": "replace", "path": "/every", "value": 60}]
    changed = await schedules.update("u", lambda s: patched(s, ops))
    assert changed.every == 60 and changed.next_fire == T0 + timedelta(seconds=60)
    assert changed.version == 2
    with pytest.raises(ConflictError):
        await schedules.update("u", lambda s: s, expected_version=1)
    await schedules.delete("u")
    with pytest.raises(NotFound):
        await schedules.get("u")
    with pytest.raises(NotFound):
        await schedules.delete("u")


async def test_schedules_declared_in_code(schedules: ScheduleService, handlers: Registry) -> None:
    """@handler(schedule=...) makes a schedule named after the handler when a worker starts;
    starting again keeps an unchanged one's next firing and pause."""
    await schedules.declare(handlers)
    names = {s.name: s for s in await schedules.list()}
    assert set(names) == {"nightly", "often"}
    assert names["nightly"].cron == "0 2 * * *" and names["often"].every == 30
    await schedules.pause("often")
    await schedules.declare(handlers)
    again = await schedules.get("often")
    assert again.paused and again.version == names["often"].version + 1


async def test_limits_declared_in_code_and_set_at_run_time(
    schedules: ScheduleService, handlers: Registry
) -> None:
    """@handler(concurrency=...) is stored at a worker start; set() replaces it everywhere,
    and a later worker start leaves that alone until it is removed."""
    limits = LimitService(schedules.tasks, ME)
    await limits.declare(handlers)
    assert [(x.handler, x.concurrency, x.declared) for x in await limits.list()] == [
        ("often", 2, True)
    ]
    await limits.set("often", rate=3.0)
    await limits.declare(handlers)  # a worker starts again
    got = await limits.get("often")
    assert (got.concurrency, got.rate, got.declared) == (None, 3.0, False)
    await limits.set("often")
    assert await limits.list() == []
    await limits.declare(handlers)
    assert [(x.handler, x.concurrency) for x in await limits.list()] == [("often", 2)]


@pytest.mark.parametrize(
    ("kwargs", "says"),
    [
        ({"cron": "61 * * * *"}, "cron: '61 * * * *' is not a valid cron expression"),
        ({"cron": "* * * * * * *"}, "cron: '* * * * * * *' has 7 fields"),
        ({"cron": "0 2 * *"}, "has 4 fields"),
        ({"cron": "0 2 * * *", "timezone": "Mars/Olympus"}, "timezone: unknown time zone"),
        ({"cron": "0 2 * * *", "every": 5}, "either cron or every"),
        ({}, "either cron or every"),
        ({"every": 0}, "every: 0 is not an interval"),
        ({"every": float("nan")}, "every: nan is not an interval"),
        ({"every": 5, "missed": "some"}, "missed: skip|all"),
        ({"every": 5, "overlap": "queue"}, "overlap: allow|skip"),
        ({"every": 5, "name": "bad name!"}, "name: 'bad name!' is not a schedule name"),
    ],
)
async def test_bad_schedules_are_refused(
    schedules: ScheduleService, kwargs: dict[str, Any], says: str
) -> None:
    """Each bad field is refused with a message that names it; nothing is stored."""
    kwargs = dict(kwargs)  # (the parameters are shared by both backends)
    name = kwargs.pop("name", "x")
    with pytest.raises(InputRejected) as e:
        await schedules.add(name, "sync", **kwargs)
    assert says in str(e.value)
    assert await schedules.list() == []


async def test_unknown_handlers_and_bad_arguments_are_refused(schedules: ScheduleService) -> None:
    """A schedule names a known handler with arguments it accepts."""
    with pytest.raises(UnknownHandler):
        await schedules.add("x", "nope", every=5)
    with pytest.raises(InvalidArguments):
        await schedules.add("x", "sync", {"n": "one"}, every=5)
    with pytest.raises(InvalidArguments):
        await schedules.add("x", "sync", {"m": 1}, every=5)
    await schedules.add("x", "sync", every=5)
    with pytest.raises(ConflictError):
        await schedules.add("x", "sync", every=5)
    with pytest.raises(InputRejected, match="path: '/name' cannot be changed"):
        await schedules.update("x", lambda s: patched(s, [{"op": "replace", "path": "/name"}]))
    ops = [{"op": "replace", "path": "/timezone", "value": "Nowhere"}]
    with pytest.raises(InputRejected, match="timezone: unknown"):
        await schedules.update("x", lambda s: patched(s, ops))


@pytest.mark.parametrize(
    ("kwargs", "says"),
    [
        ({"concurrency": 0}, "concurrency: 0 is not"),
        ({"concurrency": True}, "concurrency: True is not"),
        ({"rate": -1.0}, "rate: -1.0 is not"),
        ({"rate": float("inf")}, "rate: inf is not"),
        ({"burst": 5.0}, "burst: only with a rate"),
        ({"rate": 5.0, "burst": 0.5}, "burst: at least 1"),
        ({"concurrency": 1, "limit_key": ""}, "limit_key: names an argument"),
    ],
)
async def test_bad_limits_are_refused(
    schedules: ScheduleService, kwargs: dict[str, Any], says: str
) -> None:
    """Each bad limit is refused with a message that names it."""
    with pytest.raises(InputRejected, match=says.replace("(", r"\(")):
        await LimitService(schedules.tasks, ME).set("sync", **kwargs)
    with pytest.raises(UnknownHandler):
        await LimitService(schedules.tasks, ME).set("nope", concurrency=1)


def test_cron_across_a_dst_change() -> None:
    """A wall time skipped by spring-forward fires once, right after the gap; the repeated
    hour of fall-back fires once."""
    spring = Schedule(
        "d", "h", {}, cron="30 2 * * *", timezone="Europe/Berlin",
        next_fire=datetime(2026, 3, 28, 1, 30, tzinfo=UTC),
    )  # fmt: skip
    fires, nxt = due_firings(spring, datetime(2026, 3, 29, 12, tzinfo=UTC))
    assert fires == [datetime(2026, 3, 29, 1, 0, tzinfo=UTC)]  # 03:00 CEST, after the gap
    assert nxt == datetime(2026, 3, 30, 0, 30, tzinfo=UTC)  # 02:30 CEST
    autumn = dataclasses.replace(
        spring, missed=Missed.ALL, next_fire=datetime(2026, 10, 24, 0, 30, tzinfo=UTC)
    )
    fires, _ = due_firings(autumn, datetime(2026, 10, 26, 12, tzinfo=UTC))
    assert len(fires) == 3  # the 24th, the 25th (once), the 26th


async def test_changing_schedules_and_limits_needs_admin(schedules: ScheduleService) -> None:
    """A caller without the admin scope may read schedules and limits, not change them."""
    reader = Caller("c1", "someone", frozenset({"tasks:read"}))
    theirs = ScheduleService(schedules.tasks, reader)
    assert await theirs.list() == []
    with pytest.raises(Forbidden):
        await theirs.add("x", "sync", every=5)
    await schedules.add("x", "sync", every=5)
    for attempt in (theirs.pause("x"), theirs.delete("x"), theirs.fire_due()):
        with pytest.raises(Forbidden):
            await attempt
    with pytest.raises(Forbidden):
        await LimitService(schedules.tasks, reader).set("sync", concurrency=1)
    assert (await theirs.get("x")).paused is False
