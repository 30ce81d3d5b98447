"""The Store contract: every backend must pass these (the `store` fixture runs each)."""

from __future__ import annotations

import asyncio
import dataclasses
from datetime import timedelta

import pytest

from taskstatus.errors import ConflictError, NotFound
from taskstatus.fields import TASK_STATUS
from taskstatus.model import (
    CompletionStatus,
    IllegalTransition,
    Message,
    MessageType,
    ReturnDetail,
    Target,
    TargetType,
    Task,
    TaskState,
    TaskType,
    cancel,
    clear,
)
from taskstatus.query import Condition, Op, TaskField, TaskQuery, parse_bound, parse_sorters
from taskstatus.store import ApiClient, Outcome, Progress, Store, make_store
from tests.conftest import DEFINITION, make_task, now

pytestmark = pytest.mark.anyio

W1, W2 = "worker-1", "worker-2"


async def seeded(store: Store, *tasks: Task) -> list[Task]:
    """`tasks` stored in one batch, with the test handler's definition."""
    await store.save_definitions([DEFINITION])
    return await store.create_many(list(tasks))


def q(filters: str | None = None, sorters: str | None = None, **kw: object) -> TaskQuery:
    """A TaskQuery from filter and sorter texts of the v2024 grammar."""
    return TaskQuery(
        where=parse_bound(filters, TASK_STATUS),
        sort=parse_sorters(sorters, TASK_STATUS),
        **kw,  # type: ignore[arg-type]
    )


async def running(store: Store, n: int = 1, worker: str = W1, lease: float = 30) -> list[Task]:
    """`n` new tasks claimed by `worker` with a lease of `lease` seconds."""
    await seeded(store, *(make_task() for _ in range(n)))
    claimed = await store.claim(worker, n, lease, ["noop"])
    assert len(claimed) == n
    return claimed


# --- create and read -------------------------------------------------------------------------


async def test_create_and_get_round_trip(store: Store) -> None:
    """Every field survives the database, with the definition summary attached."""
    task = make_task(
        arguments={"source": "AD", "nested": {"a": [1, 2]}},
        target=Target("src-1", TargetType.APPLICATION, "Active Directory"),
        priority=5,
        max_attempts=7,
        timeout=12.5,
        unique_name="Big Task",
        description="A really big task",
    )
    [created] = await seeded(store, task)
    assert created == task
    got = await store.get(task.id)
    assert got == task
    assert got is not None
    assert got.definition == DEFINITION.summary


async def test_get_unknown_is_none(store: Store) -> None:
    """Getting an id no task has answers None, not an error."""
    assert await store.get("0" * 32) is None


async def test_task_with_unregistered_handler_still_reads(store: Store) -> None:
    """A task whose definition no node stored shows a placeholder summary, not an error."""
    task = make_task(handler="elsewhere")
    await store.create(task)
    got = await store.get(task.id)
    assert got is not None
    assert got.definition.unique_name == "elsewhere"
    assert got.definition.parent_name == "elsewhere"


async def test_bulk_create_is_one_batch(store: Store) -> None:
    """create_many stores 500 tasks in their order, all of them counted."""
    tasks = [make_task(arguments={"i": i}) for i in range(500)]
    created = await seeded(store, *tasks)
    assert [t.id for t in created] == [t.id for t in tasks]
    page = await store.query(q(limit=None, count=True))
    assert page.total == 500


async def test_idempotency_key_returns_the_first_task(store: Store) -> None:
    """The same key from the same launcher stores nothing new and returns the original."""
    first = make_task(idempotency_key="k1", arguments={"n": 1})
    [a] = await seeded(store, first)
    [b] = await store.create_many([make_task(idempotency_key="k1", arguments={"n": 2})])
    assert b.id == a.id
    assert b.arguments == {"n": 1}
    other = await store.create(make_task(idempotency_key="k1", launcher="someone-else"))
    assert other.id != a.id  # keys are per launcher
    assert (await store.query(q(count=True))).total == 2


# --- query ---------------------------------------------------------------------------------------


async def test_query_filters_sorts_pages_and_counts(store: Store) -> None:
    """A query filters on completion status, target and type, sorts, pages and counts the
    matches."""
    base = now() - timedelta(hours=1)
    tasks = [
        make_task(
            now=base + timedelta(minutes=i),
            target=Target(f"src-{i % 3}"),
            type=TaskType.QUARTZ if i % 2 else TaskType.QUEUED_TASK,
        )
        for i in range(10)
    ]
    await seeded(store, *tasks)
    # finish three as SUCCESS, one as ERROR
    claimed = await store.claim(W1, 4, 30, ["noop"])
    outcomes = [
        Outcome(t.id, TaskState.SUCCEEDED, CompletionStatus.SUCCESS) for t in claimed[:3]
    ] + [Outcome(claimed[3].id, TaskState.FAILED, CompletionStatus.ERROR)]
    assert await store.finish(W1, outcomes) == {t.id for t in claimed}

    page = await store.query(q("completionStatus isnull", "created", count=True))
    assert page.total == 6
    assert [t.created for t in page.items] == sorted(t.created for t in page.items)

    page = await store.query(q('completionStatus eq "SUCCESS"', "-created", count=True))
    assert page.total == 3
    assert [t.id for t in page.items] == [
        t.id for t in sorted(claimed[:3], key=lambda t: t.created, reverse=True)
    ]

    page = await store.query(q('sourceId in ("src-0", "src-1")', count=True))
    assert page.total == len([t for t in tasks if t.target and t.target.id in ("src-0", "src-1")])

    page = await store.query(q('type eq "QUARTZ" and not completionStatus pr', count=True))
    expected = [
        t for t in tasks if t.type is TaskType.QUARTZ and t.id not in {c.id for c in claimed}
    ]
    assert page.total == len(expected)

    # paging: limit/offset walk the whole sorted set without overlap
    seen: list[str] = []
    for offset in range(0, 10, 3):
        page = await store.query(q(None, "created", offset=offset, limit=3, count=True))
        assert page.total == 10
        seen += [t.id for t in page.items]
    assert seen == [t.id for t in sorted(tasks, key=lambda t: t.created)]

    # count is None unless asked for
    assert (await store.query(q())).total is None


async def test_not_includes_nulls(store: Store) -> None:
    """`not completionStatus eq "SUCCESS"` matches pending tasks (null status) too, and `ne`
    matches nulls; two-valued logic, whatever SQL does with NULL."""
    [a, b] = await seeded(store, make_task(), make_task())
    [claimed] = await store.claim(W1, 1, 30, ["noop"])
    await store.finish(W1, [Outcome(claimed.id, TaskState.SUCCEEDED, CompletionStatus.SUCCESS)])
    other = b if claimed.id == a.id else a
    for text in (
        'not completionStatus eq "SUCCESS"',
        'completionStatus ne "SUCCESS"',
        'not completionStatus in ("SUCCESS")',
    ):
        page = await store.query(q(text))
        assert [t.id for t in page.items] == [other.id], text
    page = await store.query(q('not (completionStatus ne "SUCCESS")'))
    assert [t.id for t in page.items] == [claimed.id]


async def test_text_operators(store: Store) -> None:
    """sw and co match case-insensitively, and % and _ in the value are literal characters."""
    names = ["Cloud Account Aggregation", "cloud export", "100% done_now", "Other"]
    await seeded(store, *(make_task(unique_name=n) for n in names))

    async def names_for(text: str) -> set[str]:
        return {t.unique_name for t in (await store.query(q(text))).items}

    assert await names_for('uniqueName sw "cloud"') == {names[0], names[1]}  # case-insensitive
    assert await names_for('uniqueName co "ACCOUNT"') == {names[0]}
    assert await names_for('uniqueName co "0%"') == {names[2]}  # % and _ are literal
    assert await names_for('uniqueName co "e_n"') == {names[2]}
    assert await names_for('uniqueName co "e_x"') == set()


async def test_date_filters(store: Store) -> None:
    """ge and lt on created split the tasks at the given time, quoted or not."""
    base = now() - timedelta(days=2)
    tasks = [make_task(now=base + timedelta(hours=i)) for i in range(5)]
    await seeded(store, *tasks)
    cut = (base + timedelta(hours=2)).isoformat()
    page = await store.query(q(f"created ge {cut}", count=True))
    assert page.total == 3
    page = await store.query(q(f'created lt "{cut}"', count=True))
    assert page.total == 2


async def test_deleted_tasks_are_history(store: Store) -> None:
    """A deleted task is cancelled and hidden from get and query, but kept for include_deleted."""
    [a, b] = await seeded(store, make_task(), make_task())
    result = await store.delete(a.id, force=False, now=now())
    assert result.deleted == [a.id]
    assert await store.get(a.id) is None
    kept = await store.get(a.id, include_deleted=True)
    assert kept is not None
    assert kept.deleted_at is not None
    assert kept.state is TaskState.CANCELLED  # it was queued: deleting cancels it
    assert [t.id for t in (await store.query(q())).items] == [b.id]
    assert {t.id for t in (await store.query(q(include_deleted=True))).items} == {a.id, b.id}


# --- updates -------------------------------------------------------------------------------------


async def test_update_applies_a_change(store: Store) -> None:
    """update stores the change the function returns and bumps the version by one."""
    [task] = await seeded(store, make_task())
    done = await store.update(task.id, lambda t: cancel(t, now()))
    assert done.state is TaskState.CANCELLED
    assert done.version == task.version + 1
    assert await store.get(task.id) == done


async def test_illegal_transition_changes_nothing(store: Store) -> None:
    """An update the lifecycle refuses raises IllegalTransition and leaves the task as it was."""
    [task] = await seeded(store, make_task())
    await store.update(task.id, lambda t: cancel(t, now()))
    before = await store.get(task.id)
    with pytest.raises(IllegalTransition):
        await store.update(task.id, lambda t: clear(t, CompletionStatus.SUCCESS, None, now()))
    assert await store.get(task.id) == before


async def test_update_unknown_task(store: Store) -> None:
    """Updating an id no task has raises NotFound."""
    with pytest.raises(NotFound):
        await store.update("f" * 32, lambda t: t)


async def test_update_with_a_stale_version_conflicts(store: Store) -> None:
    """An update asking for a version the task no longer has raises ConflictError and stores
    nothing."""
    [task] = await seeded(store, make_task())
    await store.update(task.id, lambda t: dataclasses.replace(t, priority=3))
    with pytest.raises(ConflictError):
        await store.update(
            task.id, lambda t: dataclasses.replace(t, priority=4), expected_version=1
        )
    got = await store.get(task.id)
    assert got is not None
    assert got.priority == 3


async def test_update_appends_messages(store: Store) -> None:
    """A message added by an update is stored with its key and parameters."""
    [task] = await seeded(store, make_task())
    note = Message(MessageType.INFO, "by hand", key="k", parameters=({"a": 1}, "b"))
    got = await store.update(
        task.id, lambda t: dataclasses.replace(t, messages=(*t.messages, note))
    )
    assert got.messages == (note,)
    assert (await store.get(task.id)) == got


async def test_no_lost_update_between_worker_and_user(store: Store) -> None:
    """A user's change and a worker's progress on the same task both survive, however they
    interleave: the user's change is re-applied to the fresh row if the worker wrote first."""
    [task] = await running(store)
    percents = list(range(1, 51))

    async def worker() -> None:
        for p in percents:
            await store.report(
                W1, [Progress(task.id, f"at {p}", p, (Message(MessageType.INFO, f"m{p}"),))]
            )

    async def user() -> None:
        for i in range(50):

            def add(t: Task, i: int = i) -> Task:
                return dataclasses.replace(t, attributes={**t.attributes, f"u{i}": i})

            await store.update(task.id, add)

    await asyncio.gather(worker(), user())
    got = await store.get(task.id)
    assert got is not None
    assert got.percent_complete == 50
    assert got.attributes == {f"u{i}": i for i in range(50)}
    assert [m.text for m in got.messages] == [f"m{p}" for p in percents]


# --- claims, leases and outcomes -----------------------------------------------------------------


async def test_claim_order_priority_then_due_time(store: Store) -> None:
    """Claims take the highest priority first, then the oldest, skip tasks not due yet, and set the
    lease."""
    t0 = now() - timedelta(minutes=10)
    low_old = make_task(now=t0, priority=0)
    high_new = make_task(now=t0 + timedelta(minutes=5), priority=9)
    low_new = make_task(now=t0 + timedelta(minutes=6), priority=0)
    future = make_task(run_at=now() + timedelta(hours=1), priority=99)
    await seeded(store, low_new, future, low_old, high_new)
    claimed = await store.claim(W1, 10, 30, ["noop"])
    assert [t.id for t in claimed] == [high_new.id, low_old.id, low_new.id]
    for t in claimed:
        assert t.state is TaskState.RUNNING
        assert t.lease_owner == W1
        assert t.attempts == 1
        assert t.launched is not None
        assert t.lease_expires is not None and t.lease_expires > now()
    assert await store.claim(W1, 10, 30, ["noop"]) == []  # the future one is not due


async def test_a_claim_returns_the_task_as_a_run_reads_it(store: Store) -> None:
    """A claimed task carries what a run reads (arguments, attributes, attempt, lease) but not
    its messages nor its definition summary, which no run reads; `get` has the whole task."""
    task = dataclasses.replace(
        make_task(arguments={"n": 1}, priority=3),
        attributes={"a": 1},
        messages=(Message(MessageType.INFO, "noted before it ran"),),
    )
    await seeded(store, task)
    [claimed] = await store.claim(W1, 1, 30, ["noop"])
    assert (claimed.id, claimed.arguments, claimed.attributes) == (task.id, {"n": 1}, {"a": 1})
    assert (claimed.priority, claimed.attempts, claimed.lease_owner) == (3, 1, W1)
    assert claimed.messages == ()
    assert claimed.definition.unique_name == "noop" and claimed.definition.id == ""
    whole = await store.get(task.id)
    assert whole is not None
    assert [m.text for m in whole.messages] == ["noted before it ran"]
    assert whole.definition == DEFINITION.summary


async def test_claim_only_named_handlers(store: Store) -> None:
    """A worker claims only tasks of the handlers it names (none: nothing)."""
    await seeded(store, make_task(), make_task(handler="other"))
    claimed = await store.claim(W1, 10, 30, ["other"])
    assert [t.handler for t in claimed] == ["other"]
    assert await store.claim(W1, 10, 30, []) == []


async def test_concurrent_claimers_never_share_a_task(store: Store, store_url: str) -> None:
    """Four claimers on separate connections (stores) take 400 tasks in batches: each task
    goes to exactly one of them."""
    await seeded(store, *(make_task() for _ in range(400)))
    others = [make_store(store_url) for _ in range(3)]
    for s in others:
        await s.open()
    try:
        stores = [store, *others]

        async def claimer(i: int) -> list[str]:
            got: list[str] = []
            while True:
                batch = await stores[i].claim(f"w{i}", 7, 30, ["noop"])
                if not batch:
                    return got
                got += [t.id for t in batch]

        results = await asyncio.gather(*(claimer(i) for i in range(4)))
    finally:
        for s in others:
            await s.close()
    everything = [tid for r in results for tid in r]
    assert len(everything) == 400
    assert len(set(everything)) == 400


async def test_heartbeat_extends_and_reports_cancel_and_loss(store: Store) -> None:
    """A heartbeat extends the worker's leases and reports which tasks were asked to stop and which
    it lost."""
    a, b, c = await running(store, 3, lease=5)
    await store.update(b.id, lambda t: cancel(t, now()))  # running -> cancel_requested
    await store.update(c.id, lambda t: clear(t, CompletionStatus.ERROR, None, now()))  # cleared
    beat = await store.heartbeat(W1, [a.id, b.id, c.id], 60)
    assert beat.cancel == {b.id}
    assert beat.lost == {c.id}
    got = await store.get(a.id)
    assert got is not None and got.lease_expires is not None
    assert got.lease_expires > now() + timedelta(seconds=50)
    assert (await store.heartbeat(W2, [a.id], 60)).lost == {a.id}  # not W2's


async def test_report_writes_only_to_own_leased_tasks(store: Store) -> None:
    """Progress, messages, attributes and returns are stored from the lease holder only."""
    [mine] = await running(store)
    m = Message(MessageType.WARN, "careful", key="w", parameters=("x",))
    await store.report(
        W1,
        [
            Progress(
                mine.id,
                "half way",
                50,
                (m,),
                attributes={"n": 1},
                returns=(ReturnDetail("N", "n"),),
            )
        ],
    )
    await store.report(W2, [Progress(mine.id, "hijack", 99, (m,))])
    got = await store.get(mine.id)
    assert got is not None
    assert (got.progress, got.percent_complete) == ("half way", 50)
    assert got.messages == (m,)
    assert got.attributes == {"n": 1}
    assert got.returns == (ReturnDetail("N", "n"),)


async def test_finish_success_and_failure(store: Store) -> None:
    """finish stores each outcome (state, status, progress, messages, attributes) and names the
    tasks it ended."""
    a, b = await running(store, 2)
    done = await store.finish(
        W1,
        [
            Outcome(
                a.id,
                TaskState.SUCCEEDED,
                CompletionStatus.WARNING,
                "done",
                100,
                (Message(MessageType.WARN, "odd"),),
                {"count": 3},
                (ReturnDetail("C", "count"),),
            ),
            Outcome(
                b.id,
                TaskState.FAILED,
                CompletionStatus.ERROR,
                messages=(Message(MessageType.ERROR, "boom"),),
            ),
        ],
    )
    assert done == {a.id, b.id}
    ga, gb = await store.get(a.id), await store.get(b.id)
    assert ga is not None and gb is not None
    assert (ga.state, ga.completion_status, ga.percent_complete) == (
        TaskState.SUCCEEDED,
        CompletionStatus.WARNING,
        100,
    )
    assert ga.attributes == {"count": 3}
    assert ga.completed is not None and ga.lease_owner is None
    assert [m.text for m in ga.messages] == ["odd"]
    assert (gb.state, gb.completion_status) == (TaskState.FAILED, CompletionStatus.ERROR)
    assert [m.text for m in gb.messages] == ["boom"]


async def test_finish_does_not_overwrite_a_cleared_task(store: Store) -> None:
    """A user cleared the task while it ran: the worker's late outcome is not stored."""
    [task] = await running(store)
    await store.update(task.id, lambda t: clear(t, CompletionStatus.TERMINATED, None, now()))
    done = await store.finish(
        W1,
        [
            Outcome(
                task.id,
                TaskState.SUCCEEDED,
                CompletionStatus.SUCCESS,
                messages=(Message(MessageType.INFO, "late"),),
            )
        ],
    )
    assert done == set()
    got = await store.get(task.id)
    assert got is not None
    assert got.completion_status is CompletionStatus.TERMINATED
    assert got.messages == ()


async def test_finish_refuses_another_workers_task(store: Store) -> None:
    """A worker cannot finish a task another worker holds: nothing is ended."""
    [task] = await running(store)
    assert (
        await store.finish(W2, [Outcome(task.id, TaskState.SUCCEEDED, CompletionStatus.SUCCESS)])
        == set()
    )


async def test_finish_cancel_requested_as_cancelled(store: Store) -> None:
    """A run asked to stop finishes as cancelled."""
    [task] = await running(store)
    await store.update(task.id, lambda t: cancel(t, now()))
    done = await store.finish(
        W1, [Outcome(task.id, TaskState.CANCELLED, CompletionStatus.TERMINATED)]
    )
    assert done == {task.id}
    got = await store.get(task.id)
    assert got is not None and got.state is TaskState.CANCELLED


async def test_retry_requeues_for_later(store: Store) -> None:
    """A retry outcome queues the task again, leaseless, not claimable before its new due time."""
    [task] = await running(store)
    later = now() + timedelta(seconds=60)
    done = await store.finish(W1, [Outcome(task.id, TaskState.QUEUED, None, run_at=later)])
    assert done == {task.id}
    got = await store.get(task.id)
    assert got is not None
    assert (got.state, got.completion_status, got.lease_owner, got.attempts) == (
        TaskState.QUEUED,
        None,
        None,
        1,
    )
    assert got.run_at == later
    assert await store.claim(W1, 1, 30, ["noop"]) == []  # not due yet


async def test_release_hands_back_without_counting_the_attempt(store: Store) -> None:
    """A released task is queued again without using up an attempt, unless a cancel was asked."""
    a, b = await running(store, 2)
    await store.update(b.id, lambda t: cancel(t, now()))
    await store.release(W1, [a.id, b.id])
    ga, gb = await store.get(a.id), await store.get(b.id)
    assert ga is not None and gb is not None
    assert (ga.state, ga.attempts, ga.lease_owner) == (TaskState.QUEUED, 0, None)
    assert gb.state is TaskState.CANCELLED  # a cancel request wins over hand-back
    again = await store.claim(W2, 5, 30, ["noop"])
    assert [t.id for t in again] == [a.id]
    assert again[0].attempts == 1


async def test_recover_requeues_then_ends_as_dead(store: Store) -> None:
    """An expired lease requeues the task while attempts are left, then ends it as dead
    (TEMPERROR), with a message each time; a cancel request wins."""
    t1 = make_task(max_attempts=2)
    t2 = make_task()
    await seeded(store, t1, t2)
    await store.claim(W1, 2, 0.05, ["noop"])
    await store.update(t2.id, lambda t: cancel(t, now()))
    await asyncio.sleep(0.1)
    found = await store.recover()
    assert found.requeued == [t1.id]
    assert found.cancelled == [t2.id]
    [again] = await store.claim(W2, 1, 0.05, ["noop"])
    assert again.id == t1.id and again.attempts == 2
    await asyncio.sleep(0.1)
    found = await store.recover()
    assert found.dead == [t1.id]
    got = await store.get(t1.id)
    assert got is not None
    assert (got.state, got.completion_status) == (TaskState.DEAD, CompletionStatus.TEMPERROR)
    assert [m.key for m in got.messages] == ["taskstatus.lease.requeued", "taskstatus.lease.dead"]
    assert got.messages[-1].type is MessageType.ERROR
    assert (await store.recover()).dead == []  # nothing left to recover


async def test_recover_leaves_live_leases_alone(store: Store) -> None:
    """Recovery requeues, kills and cancels nothing while the leases are live."""
    await running(store, 2, lease=60)
    found = await store.recover()
    assert (found.requeued, found.dead, found.cancelled) == ([], [], [])


async def test_recover_waits_for_the_grace_period(store: Store) -> None:
    """recover(grace) leaves a lease that expired less than `grace` seconds ago, so its
    worker can still renew it (a heartbeat after expiry keeps the task)."""
    [task] = await running(store, 1, lease=0.05)
    await asyncio.sleep(0.1)
    assert (await store.recover(grace=60)).requeued == []
    beat = await store.heartbeat(W1, [task.id], 30)  # the worker is back: still its task
    assert beat.lost == frozenset()
    assert (await store.recover()).requeued == []
    got = await store.get(task.id)
    assert got is not None and (got.state, got.lease_owner) == (TaskState.RUNNING, W1)


async def test_writes_are_fenced_by_the_attempt_that_claimed(store: Store) -> None:
    """A stale run (attempt 1, recovered and claimed again by the same worker as attempt 2)
    can neither report on nor finish the newer attempt; the newer one can."""
    [first] = await running(store, 1, lease=0.05)
    await asyncio.sleep(0.1)
    assert (await store.recover()).requeued == [first.id]
    [second] = await store.claim(W1, 1, 30, ["noop"])
    assert (second.id, second.attempts) == (first.id, 2)
    stale = Message(MessageType.INFO, "from attempt 1")
    await store.report(W1, [Progress(first.id, "stale", 90, (stale,), attempt=1)])
    done = await store.finish(
        W1, [Outcome(first.id, TaskState.SUCCEEDED, CompletionStatus.SUCCESS, attempt=1)]
    )
    assert done == set()
    got = await store.get(first.id)
    assert got is not None
    assert (got.state, got.progress) == (TaskState.RUNNING, second.progress)
    assert "from attempt 1" not in [m.text for m in got.messages]
    await store.report(W1, [Progress(first.id, "fresh", 50, attempt=2)])
    done = await store.finish(
        W1, [Outcome(first.id, TaskState.SUCCEEDED, CompletionStatus.SUCCESS, attempt=2)]
    )
    assert done == {first.id}


# --- deletion and retention -------------------------------------------------------------------


async def test_delete_with_subtasks_needs_force(store: Store) -> None:
    """Without force a task with subtasks is not deleted; with force the tree is, running ones
    asked to stop."""
    [parent] = await seeded(store, make_task())
    child = await store.create(make_task(parent_id=parent.id, parent_name=parent.unique_name))
    grandchild = await store.create(make_task(parent_id=child.id))
    blocked = await store.delete(parent.id, force=False, now=now())
    assert blocked.deleted == []
    assert [t.id for t in blocked.blocked_by] == [child.id]
    assert await store.get(parent.id) is not None

    # a running subtask is cancelled (asked to stop) before it is deleted
    await store.claim(W1, 10, 30, ["noop"])
    forced = await store.delete(parent.id, force=True, now=now())
    assert set(forced.deleted) == {parent.id, child.id, grandchild.id}
    for tid in forced.deleted:
        assert await store.get(tid) is None
        kept = await store.get(tid, include_deleted=True)
        assert kept is not None and kept.state is TaskState.CANCEL_REQUESTED
    assert (await store.heartbeat(W1, [child.id], 30)).cancel == {child.id}


async def test_delete_unknown(store: Store) -> None:
    """Deleting an id no task has raises NotFound."""
    with pytest.raises(NotFound):
        await store.delete("a" * 32, force=True, now=now())


async def test_children(store: Store) -> None:
    """children lists a task's direct subtasks in the order they were created."""
    [parent] = await seeded(store, make_task())
    kids = [await store.create(make_task(parent_id=parent.id)) for _ in range(3)]
    assert [t.id for t in await store.children(parent.id)] == [k.id for k in kids]


async def test_purge_removes_old_finished_tasks_only(store: Store) -> None:
    """A purge removes finished tasks past the cutoff and keeps queued and recent ones."""
    old = now() - timedelta(days=100)
    done_old, pending_old, done_new = make_task(now=old), make_task(now=old), make_task()
    await seeded(store, done_old, pending_old, done_new)
    for t in (done_old, done_new):
        await store.update(t.id, lambda x: clear(x, CompletionStatus.SUCCESS, None, now()))
    await store.update(
        done_old.id, lambda x: dataclasses.replace(x, messages=(Message(MessageType.INFO, "m"),))
    )
    assert await store.purge(now() - timedelta(days=90)) == 1
    assert await store.get(done_old.id, include_deleted=True) is None
    assert await store.get(pending_old.id) is not None  # queued work is never dropped
    assert await store.get(done_new.id) is not None


# --- wake-ups, definitions, clients, settings ------------------------------------------------


async def test_submit_wakes_an_idle_waiter(store: Store) -> None:
    """Storing a task wakes a worker waiting for work before its poll interval ends."""
    await store.save_definitions([DEFINITION])
    waiter = asyncio.create_task(store.wait_for_work(10))
    await asyncio.sleep(0.05)
    assert not waiter.done()
    await store.create(make_task())
    await asyncio.wait_for(waiter, 2)


async def test_definitions(store: Store) -> None:
    """Saving definitions is idempotent, a changed one replaces the stored one, unknown names are
    None."""
    await store.save_definitions([DEFINITION])
    await store.save_definitions([DEFINITION])  # idempotent
    assert await store.definition("noop") == DEFINITION
    assert await store.definition("nope") is None
    changed = dataclasses.replace(DEFINITION, max_attempts=9, timeout=2.5)
    await store.save_definitions([changed])
    assert await store.definitions() == [changed]


async def test_clients(store: Store) -> None:
    """A saved client reads back equal; revoking it once succeeds and marks it revoked."""
    c = ApiClient("cid", "name", "salt$hash", ("tasks:read",), "owner", now())
    await store.save_client(c)
    assert await store.client("cid") == c
    assert await store.client("other") is None
    assert await store.revoke_client("cid", now())
    assert not await store.revoke_client("cid", now())
    revoked = await store.client("cid")
    assert revoked is not None and revoked.revoked is not None
    assert [x.id for x in await store.clients()] == ["cid"]


async def test_settings_first_writer_wins(store: Store) -> None:
    """A shared setting keeps the first value stored; later callers' defaults are not even made."""
    calls: list[int] = []

    def make(value: str):  # type: ignore[no-untyped-def]
        def f() -> str:
            calls.append(1)
            return value

        return f

    assert await store.setting("k", make("one")) == "one"
    assert await store.setting("k", make("two")) == "one"
    assert len(calls) == 1


async def test_ping(store: Store) -> None:
    """ping returns when the database answers."""
    await store.ping()


async def test_reads_always_show_the_latest_write(store: Store) -> None:
    """However a store serves repeated reads (SQLite reuses a task it decoded while its version
    is unchanged), every kind of write shows in the next read: a worker's report, a user's
    change, a new definition, a deletion."""
    [task] = await running(store)
    assert (await store.get(task.id)) == (await store.get(task.id))
    await store.report(W1, [Progress(task.id, "step 2", 40, (Message(MessageType.INFO, "hi"),))])
    got = await store.get(task.id)
    assert got is not None
    assert (got.progress, [m.text for m in got.messages]) == ("step 2", ["hi"])
    await store.update(task.id, lambda t: dataclasses.replace(t, attributes={"by": "user"}))
    got = await store.get(task.id)
    assert got is not None and got.attributes == {"by": "user"}
    await store.save_definitions(
        [
            dataclasses.replace(
                DEFINITION,
                summary=dataclasses.replace(DEFINITION.summary, description="described anew"),
            )
        ]
    )
    got = await store.get(task.id)
    assert got is not None and got.definition.description == "described anew"
    await store.delete(task.id, force=True, now=now())
    assert await store.get(task.id) is None
    assert await store.get(task.id, include_deleted=True) is not None


async def test_count_cap_bounds_an_exact_count(store: Store) -> None:
    """With count_cap, a count is exact below the cap and the cap itself at or past it."""
    await seeded(store, *(make_task() for _ in range(5)))
    where = parse_bound('definition eq "noop"', TASK_STATUS)  # no rollup answers this one

    async def total(cap: int) -> int | None:
        return (await store.query(TaskQuery(where, limit=0, count=True, count_cap=cap))).total

    assert (await total(3), await total(5), await total(10)) == (3, 5, 5)


async def test_finished_per_minute_counts_finishes_by_status(store: Store) -> None:
    """Finished tasks are counted per UTC minute and completion status from `since` on;
    pending tasks are not counted."""
    first, second, third, _pending = await seeded(store, *(make_task() for _ in range(4)))
    at = now()
    for task, status in ((first, "SUCCESS"), (second, "SUCCESS"), (third, "ERROR")):

        def end(t: Task, s: str = status) -> Task:
            return clear(t, CompletionStatus(s), None, at)

        await store.update(task.id, end)
    rows = await store.finished_per_minute(None, at - timedelta(minutes=5))
    by_status: dict[CompletionStatus, int] = {}
    for minute, status, n in rows:
        assert minute.second == 0 and minute.utcoffset() == timedelta(0)
        by_status[status] = by_status.get(status, 0) + n
    assert by_status == {CompletionStatus.SUCCESS: 2, CompletionStatus.ERROR: 1}
    assert await store.finished_per_minute(None, at + timedelta(minutes=5)) == []


async def test_co_on_arguments_searches_their_json_text(store: Store) -> None:
    """`co` on arguments (or attributes) finds the text anywhere in the JSON document."""
    wanted = make_task(arguments={"account": "needle-42"})
    await seeded(store, wanted, make_task(arguments={"account": "hay"}))
    found = await store.query(
        TaskQuery(Condition(TaskField.ARGUMENTS, Op.CO, ("needle-4",)), count=True)
    )
    assert ([t.id for t in found.items], found.total) == ([wanted.id], 1)
    found = await store.query(TaskQuery(Condition(TaskField.ATTRIBUTES, Op.CO, ("needle",))))
    assert found.items == []


async def test_tally_counts_each_value_in_one_pass(store: Store) -> None:
    """tally counts the matching tasks per value of a field, over at most count_cap rows."""
    first, *_ = await seeded(store, *(make_task() for _ in range(4)))
    await store.update(first.id, lambda t: cancel(t, now()))
    pending = parse_bound("completionStatus isnull", TASK_STATUS)
    everything = await store.tally(TaskQuery(), TaskField.STATE)
    assert everything == {"queued": 3, "cancelled": 1}
    assert await store.tally(TaskQuery(pending), TaskField.STATE) == {"queued": 3}
    assert sum((await store.tally(TaskQuery(count_cap=2), TaskField.STATE)).values()) == 2
