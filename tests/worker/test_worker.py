"""The worker runtime in-process: outcomes, retries, timeouts, cancellation, progress, subtasks."""

from __future__ import annotations

import asyncio
import itertools
import re
import threading
import time
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import asynccontextmanager
from dataclasses import replace
from typing import Any

import pytest

from taskstatus.caller import Caller
from taskstatus.handlers import Registry, handler
from taskstatus.model import CompletionStatus, MessageType, Task, TaskState, clear
from taskstatus.service import Submission, TaskService, utcnow
from taskstatus.store import Store
from taskstatus.worker import Retry, TaskCancelled, TaskContext, Worker, WorkerOptions

pytestmark = pytest.mark.anyio

FAST = WorkerOptions(
    concurrency=8,
    lease_seconds=5,
    poll_interval=0.05,
    flush_interval=0.05,
    retry_base=0.1,
    grace_period=1.0,
)


LOCAL = Caller.local("test")


@asynccontextmanager
async def worker(
    store: Store, registry: Registry, options: WorkerOptions = FAST
) -> AsyncIterator[Worker]:
    """A running worker of `registry` on `store`, stopped when the block ends."""
    w = Worker(store, registry, options)
    running = asyncio.create_task(w.run())
    await asyncio.wait_for(w.ready.wait(), 5)
    try:
        yield w
    finally:
        w.stop()
        await asyncio.wait_for(running, 10)


async def submit(
    store: Store, registry: Registry, name: str, args: dict[str, Any] | None = None, **options: Any
) -> Task:
    """A task of handler `name` submitted through the service, launched by "test"."""
    service = TaskService(store, registry)
    return await service.submit(LOCAL, name, args or {}, Submission(launcher="test", **options))


async def wait(store: Store, task_id: str, timeout: float = 10) -> Task:
    """The task once it has ended (WaitTimeout after `timeout` seconds)."""
    return await TaskService(store).wait(LOCAL, task_id, timeout)


async def wait_for(predicate: Callable[[], bool], timeout: float = 5) -> None:
    """Wait (up to `timeout` seconds) until `predicate()` is true."""
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "condition not met in time"
        await asyncio.sleep(0.01)


async def test_success_stores_result_progress_messages_returns(
    store: Store, registry: Registry
) -> None:
    """A handler's progress, messages, attributes, returns and result are stored with SUCCESS."""

    @handler("ok", registry=registry)
    async def ok(ctx: TaskContext, args: dict[str, Any]) -> dict[str, Any]:
        ctx.progress("working", 40)
        ctx.info("hello", key="greeting", parameters=[{"who": "you"}, 3, None])
        ctx.set_attribute("side", True)
        ctx.add_return("Count", "count")
        return {"count": args["n"] * 2}

    async with worker(store, registry):
        task = await submit(store, registry, "ok", {"n": 21})
        done = await wait(store, task.id)
    assert done.state is TaskState.SUCCEEDED
    assert done.completion_status is CompletionStatus.SUCCESS
    assert done.attributes == {"count": 42, "side": True}
    assert done.percent_complete == 100
    assert done.progress == "working"
    assert [(m.type, m.text, m.key, m.parameters) for m in done.messages] == [
        (MessageType.INFO, "hello", "greeting", ({"who": "you"}, "3", None))
    ]
    assert [(r.name, r.attribute_name) for r in done.returns] == [("Count", "count")]
    assert done.attempts == 1
    assert done.launched is not None and done.completed is not None


async def test_a_warning_makes_the_outcome_warning(store: Store, registry: Registry) -> None:
    """A handler that logged a warning succeeds with WARNING."""

    @handler("warns", registry=registry)
    def warns(ctx: TaskContext, args: dict[str, Any]) -> None:
        ctx.warn("something odd")

    async with worker(store, registry):
        done = await wait(store, (await submit(store, registry, "warns")).id)
    assert done.completion_status is CompletionStatus.WARNING
    assert done.state is TaskState.SUCCEEDED


async def test_non_dict_and_non_json_results(store: Store, registry: Registry) -> None:
    """A result that is not a dict is stored as {"result": value}; values JSON cannot hold as their
    text."""

    @handler("values", registry=registry)
    def values(ctx: TaskContext, args: dict[str, Any]) -> Any:
        return {"when": {1, 2}} if args["odd"] else 7

    async with worker(store, registry):
        a = await submit(store, registry, "values", {"odd": False})
        b = await submit(store, registry, "values", {"odd": True})
        assert (await wait(store, a.id)).attributes == {"result": 7}
        assert (await wait(store, b.id)).attributes == {"when": "{1, 2}"}


async def test_an_exception_fails_the_task_with_its_message(
    store: Store, registry: Registry
) -> None:
    """A handler's exception fails the task (ERROR), its message stored as an ERROR message."""

    @handler("boom", registry=registry)
    def boom(ctx: TaskContext, args: dict[str, Any]) -> None:
        ctx.progress("step 1", 30)
        raise KeyError("no such account")

    async with worker(store, registry):
        done = await wait(store, (await submit(store, registry, "boom")).id)
    assert done.state is TaskState.FAILED
    assert done.completion_status is CompletionStatus.ERROR
    assert done.percent_complete == 30
    assert done.messages[-1].type is MessageType.ERROR
    assert "KeyError" in done.messages[-1].text and "no such account" in done.messages[-1].text
    assert done.attempts == 1  # not retryable: no second run


async def test_retryable_errors_back_off_exponentially(store: Store, registry: Registry) -> None:
    """Two transient failures, then success: three attempts, each wait at least the stated
    delay, the second delay twice the first (within jitter)."""
    starts: list[float] = []

    @handler("flaky", registry=registry, retry_on=(ConnectionError,), max_attempts=3)
    def flaky(ctx: TaskContext, args: dict[str, Any]) -> str:
        starts.append(time.monotonic())
        if ctx.attempt < 3:
            raise ConnectionError(f"refused on attempt {ctx.attempt}")
        return "ok"

    async with worker(store, registry):
        done = await wait(store, (await submit(store, registry, "flaky")).id)
    assert done.completion_status is CompletionStatus.SUCCESS
    assert done.attempts == 3
    retries = [m for m in done.messages if m.key == "taskstatus.retry"]
    assert len(retries) == 2
    delays = [float(re.search(r"retrying in ([\d.]+) s", m.text).group(1)) for m in retries]  # type: ignore[union-attr]
    assert 0.08 <= delays[0] <= 0.12
    assert 0.16 <= delays[1] <= 0.24
    gaps = [b - a for a, b in itertools.pairwise(starts)]
    assert all(gap >= delay * 0.95 for gap, delay in zip(gaps, delays, strict=True))


async def test_retries_exhausted_is_temperror(store: Store, registry: Registry) -> None:
    """A handler that keeps asking for a retry ends as TEMPERROR after max_attempts runs."""

    @handler("always", registry=registry)
    def always(ctx: TaskContext, args: dict[str, Any]) -> None:
        raise Retry("still down", delay=0.01)

    async with worker(store, registry):
        done = await wait(store, (await submit(store, registry, "always", max_attempts=2)).id)
    assert (done.state, done.completion_status, done.attempts) == (
        TaskState.FAILED,
        CompletionStatus.TEMPERROR,
        2,
    )
    assert "no attempts are left" in done.messages[-1].text


@pytest.mark.parametrize("kind", ["async", "sync"])
async def test_timeout_ends_the_task_as_error(store: Store, registry: Registry, kind: str) -> None:
    """A run past its timeout is stopped (async or in its thread) and ends as ERROR."""
    saw_stop = threading.Event()

    if kind == "async":

        @handler("slow", registry=registry)
        async def slow(ctx: TaskContext, args: dict[str, Any]) -> None:
            await asyncio.sleep(30)

    else:

        @handler("slow", registry=registry)
        def slow_sync(ctx: TaskContext, args: dict[str, Any]) -> None:
            for _ in range(3000):
                if ctx.cancelled:
                    saw_stop.set()
                    return
                time.sleep(0.01)

    async with worker(store, registry):
        started = time.monotonic()
        done = await wait(store, (await submit(store, registry, "slow", timeout=0.3)).id)
        assert time.monotonic() - started < 5
        if kind == "sync":
            await wait_for(saw_stop.is_set)  # the thread was told to stop
    assert (done.state, done.completion_status) == (TaskState.FAILED, CompletionStatus.ERROR)
    assert done.messages[-1].key == "taskstatus.timeout"
    assert "timed out after 0.3 s" in done.messages[-1].text


async def test_a_handlers_own_timeout_error_is_a_plain_failure(
    store: Store, registry: Registry
) -> None:
    """A TimeoutError the handler raises itself is its failure (retried per retry_on), not the
    run's timeout."""

    @handler("net", registry=registry, retry_on=(TimeoutError,), max_attempts=2)
    async def net(ctx: TaskContext, args: dict[str, Any]) -> None:
        raise TimeoutError("upstream took too long")

    async with worker(store, registry, replace(FAST, retry_base=0.01)):
        done = await wait(store, (await submit(store, registry, "net", timeout=30)).id)
    assert done.completion_status is CompletionStatus.TEMPERROR  # retried, not "timed out"
    assert done.attempts == 2


@pytest.mark.parametrize("kind", ["async", "sync"])
async def test_cancel_a_running_task(store: Store, registry: Registry, kind: str) -> None:
    """Cancelling a running task stops its handler (async or sync) and ends it as cancelled."""
    started = threading.Event()

    if kind == "async":

        @handler("long", registry=registry)
        async def long(ctx: TaskContext, args: dict[str, Any]) -> None:
            started.set()
            await asyncio.sleep(60)

    else:

        @handler("long", registry=registry)
        def long_sync(ctx: TaskContext, args: dict[str, Any]) -> None:
            started.set()
            while True:
                ctx.check_cancelled()
                time.sleep(0.01)

    opts = replace(FAST, heartbeat_interval=0.05)
    async with worker(store, registry, opts):
        task = await submit(store, registry, "long")
        await wait_for(started.is_set)
        asked = await TaskService(store).cancel(LOCAL, task.id)
        assert asked.state is TaskState.CANCEL_REQUESTED
        done = await wait(store, task.id, 5)
    assert (done.state, done.completion_status) == (
        TaskState.CANCELLED,
        CompletionStatus.TERMINATED,
    )
    assert done.messages[-1].key == "taskstatus.cancelled"


@pytest.mark.parametrize("kind", ["async", "sync"])
async def test_a_handler_that_returns_after_seeing_the_cancel_ends_cancelled(
    store: Store, registry: Registry, kind: str
) -> None:
    """A handler that sees the cancel (ctx.cancelled; at an await) and returns early ends
    CANCELLED/TERMINATED, keeping the attributes it set and returned."""
    started = threading.Event()

    if kind == "async":

        @handler("polite", registry=registry)
        async def polite(ctx: TaskContext, args: dict[str, Any]) -> dict[str, Any]:
            ctx.set_attribute("done", 3)
            started.set()
            try:
                await asyncio.sleep(60)
            except asyncio.CancelledError:  # the cancel, delivered at the await
                return {"partial": True}
            return {"partial": False}

    else:

        @handler("polite", registry=registry)
        def polite_sync(ctx: TaskContext, args: dict[str, Any]) -> dict[str, Any]:
            ctx.set_attribute("done", 3)
            started.set()
            while not ctx.cancelled:
                time.sleep(0.01)
            return {"partial": True}

    async with worker(store, registry, replace(FAST, heartbeat_interval=0.05)):
        task = await submit(store, registry, "polite")
        await wait_for(started.is_set)
        await TaskService(store).cancel(LOCAL, task.id)
        done = await wait(store, task.id, 5)
    assert (done.state, done.completion_status) == (
        TaskState.CANCELLED,
        CompletionStatus.TERMINATED,
    )
    assert done.attributes == {"done": 3, "partial": True}
    assert done.messages[-1].key == "taskstatus.cancelled"


async def test_a_handler_that_finishes_without_seeing_the_cancel_keeps_its_outcome(
    store: Store, registry: Registry
) -> None:
    """A sync handler that never looks at ctx.cancelled and finishes after a cancel request
    keeps its own outcome (SUCCESS, its return value)."""
    started, go_on = threading.Event(), threading.Event()

    @handler("deaf", registry=registry)
    def deaf(ctx: TaskContext, args: dict[str, Any]) -> dict[str, Any]:
        started.set()
        go_on.wait(10)
        return {"total": 7}

    async with worker(store, registry, replace(FAST, heartbeat_interval=0.05)):
        task = await submit(store, registry, "deaf")
        await wait_for(started.is_set)
        await TaskService(store).cancel(LOCAL, task.id)
        await asyncio.sleep(0.3)  # several heartbeats: the stop reaches the context
        go_on.set()
        done = await wait(store, task.id, 5)
    assert (done.state, done.completion_status) == (TaskState.SUCCEEDED, CompletionStatus.SUCCESS)
    assert done.attributes == {"total": 7}


async def test_clearing_a_running_task_stops_its_handler(store: Store, registry: Registry) -> None:
    """A v2024 clear makes the task terminal at once; the handler is told to stop and its
    late outcome does not overwrite the user's."""
    started, stopped = threading.Event(), threading.Event()

    @handler("long", registry=registry)
    async def long(ctx: TaskContext, args: dict[str, Any]) -> None:
        started.set()
        try:
            await asyncio.sleep(60)
        finally:
            stopped.set()

    opts = replace(FAST, heartbeat_interval=0.05)
    async with worker(store, registry, opts) as w:
        task = await submit(store, registry, "long")
        await wait_for(started.is_set)
        await store.update(task.id, lambda t: clear(t, CompletionStatus.WARNING, None, utcnow()))
        await wait_for(stopped.is_set)
        await wait_for(lambda: w.running == 0)
    done = await store.get(task.id)
    assert done is not None
    assert done.completion_status is CompletionStatus.WARNING
    assert done.messages == ()


async def test_progress_is_coalesced(store: Store, registry: Registry) -> None:
    """10,000 progress reports and 2,000 messages in half a second take a handful of writes
    (each write bumps the version), and nothing reported is lost."""

    @handler("chatty", registry=registry)
    async def chatty(ctx: TaskContext, args: dict[str, Any]) -> None:
        for i in range(10_000):
            ctx.progress(f"item {i}", i // 100)
            if i % 5 == 0:
                ctx.info(f"m{i}")
            if i % 1000 == 0:
                await asyncio.sleep(0.05)

    async with worker(store, registry, replace(FAST, flush_interval=0.1)):
        done = await wait(store, (await submit(store, registry, "chatty")).id)
    assert done.completion_status is CompletionStatus.SUCCESS
    assert done.progress == "item 9999"
    assert [m.text for m in done.messages] == [f"m{i}" for i in range(0, 10_000, 5)]
    assert done.version < 20, f"{done.version - 1} writes for 12,000 reports"


async def test_subtasks(store: Store, registry: Registry) -> None:
    """ctx.submit (async or sync handler) queues subtasks with the parent's id and launcher; they
    run."""

    @handler("child", registry=registry)
    def child(ctx: TaskContext, args: dict[str, Any]) -> int:
        return int(args["i"])

    @handler("parent", registry=registry)
    async def parent(ctx: TaskContext, args: dict[str, Any]) -> dict[str, Any]:
        kids = [await ctx.submit("child", {"i": i}) for i in range(3)]
        return {"kids": [k.id for k in kids]}

    @handler("sync-parent", registry=registry)
    def sync_parent(ctx: TaskContext, args: dict[str, Any]) -> dict[str, Any]:
        return {"kid": ctx.submit_sync("child", {"i": 9}).id}

    async with worker(store, registry):
        p = await wait(store, (await submit(store, registry, "parent")).id)
        s = await wait(store, (await submit(store, registry, "sync-parent")).id)
        kids = [await wait(store, k) for k in [*p.attributes["kids"], s.attributes["kid"]]]
    assert [k.parent_id for k in kids] == [p.id, p.id, p.id, s.id]
    assert all(k.parent_name == "parent" for k in kids[:3])
    assert [k.attributes["result"] for k in kids] == [0, 1, 2, 9]
    assert {k.id for k in await store.children(p.id)} == set(p.attributes["kids"])
    assert all(k.launcher == "test" for k in kids)


async def test_an_idle_worker_wakes_on_submit_not_on_poll(store: Store, registry: Registry) -> None:
    """With a 30 s poll interval, a task submitted in this process still starts at once."""
    started = asyncio.Event()

    @handler("ping", registry=registry)
    async def ping(ctx: TaskContext, args: dict[str, Any]) -> None:
        started.set()

    opts = replace(FAST, poll_interval=30)
    async with worker(store, registry, opts):
        await asyncio.sleep(0.2)  # the worker is idle, waiting
        await submit(store, registry, "ping")
        await asyncio.wait_for(started.wait(), 5)


async def test_concurrency_is_respected(store: Store, registry: Registry) -> None:
    """A worker never runs more tasks at once than its concurrency."""
    now_running, peak = 0, 0

    @handler("busy", registry=registry)
    async def busy(ctx: TaskContext, args: dict[str, Any]) -> None:
        nonlocal now_running, peak
        now_running += 1
        peak = max(peak, now_running)
        await asyncio.sleep(0.05)
        now_running -= 1

    service = TaskService(store, registry)
    opts = replace(FAST, concurrency=3)
    async with worker(store, registry, opts):
        tasks = await service.submit_many(LOCAL, "busy", [{}] * 20, Submission(launcher="t"))
        for t in tasks:
            assert (await wait(store, t.id)).completion_status is CompletionStatus.SUCCESS
    assert peak == 3


async def test_graceful_stop_finishes_short_tasks_and_hands_back_long_ones(
    store: Store, registry: Registry
) -> None:
    """On stop, runs that end within the grace period finish; the others are handed back queued."""
    started = asyncio.Event()

    @handler("short", registry=registry)
    async def short(ctx: TaskContext, args: dict[str, Any]) -> None:
        await started.wait()
        await asyncio.sleep(0.2)

    @handler("long", registry=registry)
    async def long(ctx: TaskContext, args: dict[str, Any]) -> None:
        started.set()
        await asyncio.sleep(60)

    w = Worker(store, registry, replace(FAST, grace_period=1.0))
    run = asyncio.create_task(w.run())
    a = await submit(store, registry, "short")
    b = await submit(store, registry, "long")
    await asyncio.wait_for(started.wait(), 5)
    await wait_for(lambda: w.running == 2)
    w.stop()
    await asyncio.wait_for(run, 10)
    ga, gb = await store.get(a.id), await store.get(b.id)
    assert ga is not None and gb is not None
    assert ga.completion_status is CompletionStatus.SUCCESS
    assert (gb.state, gb.attempts, gb.lease_owner) == (TaskState.QUEUED, 0, None)


async def test_a_stop_reaches_a_worker_whose_every_slot_is_busy(
    store: Store, registry: Registry
) -> None:
    """A worker waiting for a free slot (its one slot busy) still stops: the slot's wait ends
    at the stop, the run is handed back after the grace period and `run` returns."""
    started = asyncio.Event()

    @handler("busy", registry=registry)
    async def busy(ctx: TaskContext, args: dict[str, Any]) -> None:
        started.set()
        await asyncio.sleep(60)

    w = Worker(store, registry, replace(FAST, concurrency=1, grace_period=0.1))
    run = asyncio.create_task(w.run())
    task = await submit(store, registry, "busy")
    await asyncio.wait_for(started.wait(), 10)
    w.stop()
    await asyncio.wait_for(run, 20)
    got = await store.get(task.id)
    assert got is not None and (got.state, got.lease_owner) == (TaskState.QUEUED, None)


async def test_check_cancelled_raises(store: Store, registry: Registry) -> None:
    """TaskCancelled raised by the handler itself (without a cancel) ends as TERMINATED."""

    @handler("quits", registry=registry)
    def quits(ctx: TaskContext, args: dict[str, Any]) -> None:
        raise TaskCancelled("gave up")

    async with worker(store, registry):
        done = await wait(store, (await submit(store, registry, "quits")).id)
    assert done.completion_status is CompletionStatus.TERMINATED


async def test_worker_needs_handlers(store: Store, registry: Registry) -> None:
    """A worker with an empty registry refuses to run."""
    with pytest.raises(RuntimeError, match="no handlers"):
        await Worker(store, registry, FAST).run()


# --- claiming ahead (issue 17) ------------------------------------------------------------------

# Two slots and a horizon long enough that a few fast runs make the worker claim far ahead.
AHEAD = replace(FAST, concurrency=2, claim_ahead_ms=1000, heartbeat_interval=0.05)


def gate_handler(registry: Registry) -> tuple[asyncio.Event, list[str]]:
    """Registers "gate": a run with {"hold": true} waits for the returned event, others end at
    once; every run's task id is listed as it starts."""
    gate, started = asyncio.Event(), []

    @handler("gate", registry=registry)
    async def gate_run(ctx: TaskContext, args: dict[str, Any]) -> None:
        started.append(ctx.id)
        if args.get("hold"):
            await gate.wait()

    return gate, started


async def states(store: Store, ids: list[str]) -> list[TaskState]:
    """The stored state of each task of `ids`."""
    found = [await store.get(i) for i in ids]
    return [t.state for t in found if t is not None]


async def held_behind_fast_runs(
    store: Store, registry: Registry, fast: int = 20, held: int = 8
) -> tuple[list[Task], list[Task]]:
    """`fast` quick "gate" tasks first (higher priority), then `held` ones that hold their slot:
    queued before the worker starts, so that it claims them in one stretch of work."""
    quick = [await submit(store, registry, "gate", priority=9) for _ in range(fast)]
    slow = [await submit(store, registry, "gate", {"hold": True}) for _ in range(held)]
    return quick, slow


def both_slots_held(w: Worker, started: list[str], quick: list[Task], slow: list[Task]) -> bool:
    """Both slots run held tasks (every quick one has started) and the other held ones wait
    in the worker, claimed ahead."""
    return len(started) == len(quick) + 2 and w.waiting == len(slow) - 2


async def test_a_worker_claims_ahead_of_fast_runs(store: Store, registry: Registry) -> None:
    """Once fast runs gave it an estimate, a worker claims beyond its free slots: every held
    task is claimed (running in the store) while only its two slots run handlers."""
    gate, started = gate_handler(registry)
    quick, slow = await held_behind_fast_runs(store, registry)
    async with worker(store, registry, AHEAD) as w:
        await wait_for(lambda: both_slots_held(w, started, quick, slow))
        assert set(await states(store, [t.id for t in slow])) == {TaskState.RUNNING}
        assert w.running == 2
        assert [i for i in started if i in {t.id for t in slow}] == started[len(quick) :]
        assert len(started) == len(quick) + 2
        gate.set()
        for t in slow:
            assert (await wait(store, t.id)).completion_status is CompletionStatus.SUCCESS
    assert len(started) == len(quick) + len(slow)


async def test_no_claiming_ahead_without_an_estimate(store: Store, registry: Registry) -> None:
    """A fresh worker (no run has ended) claims only its free slots, however long the horizon."""
    gate, started = gate_handler(registry)
    slow = [await submit(store, registry, "gate", {"hold": True}) for _ in range(6)]
    async with worker(store, registry, AHEAD) as w:
        await wait_for(lambda: len(started) == 2)
        await asyncio.sleep(0.3)  # several turns of the fetch loop
        assert w.waiting == 0
        assert sorted(await states(store, [t.id for t in slow])).count(TaskState.RUNNING) == 2
        gate.set()


async def test_no_claiming_ahead_of_slow_runs(store: Store, registry: Registry) -> None:
    """Runs that take longer than the slots' share of the horizon (0.3 s each, 2 slots, a
    100 ms horizon) give no claiming ahead: only the free slots are claimed."""
    gate, started = gate_handler(registry)

    @handler("slow", registry=registry)
    async def slow_run(ctx: TaskContext, args: dict[str, Any]) -> None:
        await asyncio.sleep(0.3)

    first = [await submit(store, registry, "slow", priority=9) for _ in range(4)]
    held = [await submit(store, registry, "gate", {"hold": True}) for _ in range(6)]
    async with worker(store, registry, replace(AHEAD, claim_ahead_ms=100)) as w:
        for t in first:
            await wait(store, t.id)
        await wait_for(lambda: len(started) == 2)
        await asyncio.sleep(0.3)
        assert w.waiting == 0
        assert sorted(await states(store, [t.id for t in held])).count(TaskState.RUNNING) == 2
        gate.set()


async def test_claim_ahead_0_is_off(store: Store, registry: Registry) -> None:
    """claim_ahead_ms=0 claims only free slots, fast runs or not."""
    gate, started = gate_handler(registry)
    quick, slow = await held_behind_fast_runs(store, registry)
    async with worker(store, registry, replace(AHEAD, claim_ahead_ms=0)) as w:
        await wait_for(lambda: len(started) == len(quick) + 2)
        await asyncio.sleep(0.3)
        assert w.waiting == 0
        assert sorted(await states(store, [t.id for t in slow])).count(TaskState.RUNNING) == 2
        gate.set()


async def test_a_cancelled_waiting_task_never_runs(store: Store, registry: Registry) -> None:
    """Cancelling a task claimed ahead ends it cancelled at the next heartbeat, without its
    handler ever starting; the others still run."""
    gate, started = gate_handler(registry)
    quick, slow = await held_behind_fast_runs(store, registry)
    async with worker(store, registry, AHEAD) as w:
        await wait_for(lambda: both_slots_held(w, started, quick, slow))
        victim = slow[-1]
        assert victim.id not in started
        await TaskService(store).cancel(LOCAL, victim.id)
        done = await wait(store, victim.id)
        assert (done.state, done.completion_status) == (
            TaskState.CANCELLED,
            CompletionStatus.TERMINATED,
        )
        assert done.messages[-1].key == "taskstatus.cancelled"
        assert w.waiting == len(slow) - 3
        gate.set()
        for t in slow[:-1]:
            assert (await wait(store, t.id)).completion_status is CompletionStatus.SUCCESS
    assert victim.id not in started


async def test_a_waiting_task_cancelled_as_it_starts_frees_its_slot(
    store: Store, registry: Registry
) -> None:
    """A task claimed ahead that a slot starts while a heartbeat is in flight, and that this
    heartbeat's answer cancels before its run took a step, ends cancelled without running and
    gives its slot back: a task submitted afterwards still runs (its run was once cancelled
    before it entered, so the slot leaked)."""
    release, first_done = asyncio.Event(), asyncio.Event()
    started: list[str] = []

    @handler("first", registry=registry)
    async def first(ctx: TaskContext, args: dict[str, Any]) -> None:
        await release.wait()
        first_done.set()

    @handler("later", registry=registry)
    async def later(ctx: TaskContext, args: dict[str, Any]) -> None:
        started.append(ctx.id)

    await submit(store, registry, "first", priority=9)
    victim = await submit(store, registry, "later")
    w = Worker(store, registry, replace(AHEAD, concurrency=1))
    # two at once, one of them ahead (the rule would, once it has an estimate)
    w._claims.size = lambda running, waiting, now, started=(): max(0, 2 - running - waiting)  # type: ignore[method-assign]
    real = store.heartbeat
    armed = False

    async def heartbeat(worker_id: str, ids: Sequence[str], lease: float) -> Any:
        nonlocal armed
        beat = await real(worker_id, ids, lease)
        if armed and victim.id in beat.cancel:
            armed = False
            release.set()  # the head's run ends meanwhile and starts the victim from waiting
            await first_done.wait()
        return beat

    store.heartbeat = heartbeat  # type: ignore[method-assign, assignment]
    running = asyncio.create_task(w.run())
    try:
        await wait_for(lambda: w.waiting == 1 and w.running == 1)
        await TaskService(store).cancel(LOCAL, victim.id)
        armed = True
        done = await wait(store, victim.id)
        assert (done.state, done.completion_status) == (
            TaskState.CANCELLED,
            CompletionStatus.TERMINATED,
        )
        after = await submit(store, registry, "later")
        assert (await wait(store, after.id)).completion_status is CompletionStatus.SUCCESS
        assert started == [after.id]
    finally:
        release.set()
        w.stop()
        await asyncio.wait_for(running, 10)


async def test_a_stop_hands_back_waiting_tasks_at_once(store: Store, registry: Registry) -> None:
    """On stop, tasks claimed ahead are handed back queued at once, unstarted and with their
    attempt not counted, while the running ones still get their grace period."""
    gate, started = gate_handler(registry)
    quick, slow = await held_behind_fast_runs(store, registry)
    w = Worker(store, registry, replace(AHEAD, grace_period=5.0))
    running = asyncio.create_task(w.run())
    await wait_for(lambda: both_slots_held(w, started, quick, slow))
    waiting = [t for t in slow if t.id not in started]
    w.stop()
    await wait_for(lambda: w.waiting == 0)
    await asyncio.sleep(0.3)
    assert not running.done()  # the two running ones are in their grace period
    back = [await store.get(t.id) for t in waiting]
    assert [(t.state, t.attempts, t.lease_owner) for t in back if t is not None] == [
        (TaskState.QUEUED, 0, None)
    ] * len(waiting)
    gate.set()
    await asyncio.wait_for(running, 10)
    assert not {t.id for t in waiting} & set(started)


async def test_leases_of_waiting_tasks_are_renewed(store: Store, registry: Registry) -> None:
    """Tasks claimed ahead keep their lease while they wait, as running ones do: after several
    lease lengths none has expired and recovery finds nothing."""
    gate, started = gate_handler(registry)
    quick, slow = await held_behind_fast_runs(store, registry)
    opts = replace(AHEAD, lease_seconds=0.5, recover_interval=60)
    async with worker(store, registry, opts) as w:
        await wait_for(lambda: both_slots_held(w, started, quick, slow))
        await asyncio.sleep(1.5)
        assert w.waiting == len(slow) - 2
        found = [await store.get(t.id) for t in slow]
        now = utcnow()
        assert all(
            t is not None and t.lease_owner == w.id and t.lease_expires and t.lease_expires > now
            for t in found
        )
        recovered = await store.recover(0)
        assert not (recovered.requeued or recovered.dead or recovered.cancelled)
        gate.set()
        for t in slow:
            assert (await wait(store, t.id)).completion_status is CompletionStatus.SUCCESS


async def test_tasks_claimed_ahead_that_wait_too_long_go_back(
    store: Store, registry: Registry
) -> None:
    """Tasks claimed ahead still waiting for a slot after ten horizons (2 s here: the slots'
    runs took far longer than estimated, say parents waiting for their subtasks) are handed
    back to the queue unstarted, their attempt not counted, and run once slots free."""
    gate, started = gate_handler(registry)
    quick, slow = await held_behind_fast_runs(store, registry)
    async with worker(store, registry, replace(AHEAD, claim_ahead_ms=200)) as w:
        await wait_for(lambda: len(started) == len(quick) + 2 and w.waiting > 0)
        unstarted = [t for t in slow if t.id not in started]
        await asyncio.sleep(1.0)
        assert w.waiting > 0  # not before the ten horizons
        await wait_for(lambda: w.waiting == 0, timeout=5)
        await asyncio.sleep(0.3)  # the hand-back's statement
        back = [await store.get(t.id) for t in unstarted]
        assert [(t.state, t.attempts, t.lease_owner) for t in back if t is not None] == [
            (TaskState.QUEUED, 0, None)
        ] * len(unstarted)
        gate.set()
        for t in slow:
            assert (await wait(store, t.id)).completion_status is CompletionStatus.SUCCESS
