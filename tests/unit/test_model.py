"""The lifecycle and the model's rules, with no I/O."""

from __future__ import annotations

import dataclasses
import itertools
import time
import uuid
from datetime import UTC, datetime, timedelta

import pytest

from taskstatus.model import (
    LEASED_STATES,
    PENDING_STATES,
    TERMINAL_STATES,
    CompletionStatus,
    IllegalTransition,
    InvalidTaskChange,
    TaskState,
    cancel,
    check_completion,
    check_percent,
    check_transition,
    clear,
    new_id,
    sources,
)
from tests.conftest import SUMMARY, make_task

Q, R, CR = TaskState.QUEUED, TaskState.RUNNING, TaskState.CANCEL_REQUESTED
OK, FAIL, CANC, DEAD = TaskState.SUCCEEDED, TaskState.FAILED, TaskState.CANCELLED, TaskState.DEAD

# DESIGN.md's lifecycle, restated independently of the code's table.
LEGAL = {
    (Q, R),  # claim
    (Q, CANC),  # cancel before it runs
    (Q, OK),  # v2024 PATCH clears a pending task as SUCCESS/WARNING
    (Q, FAIL),  # ... or as ERROR/TEMPERROR
    (R, OK),
    (R, FAIL),
    (R, CR),
    (R, CANC),  # cleared by hand as TERMINATED while running
    (R, Q),  # retry, lease lost, handed back on shutdown
    (R, DEAD),  # lease lost with no attempts left
    (CR, CANC),
    (CR, OK),  # the handler finished before it saw the request
    (CR, FAIL),
}
NOW = datetime(2024, 1, 2, 3, 4, 5, tzinfo=UTC)


@pytest.mark.parametrize(("current", "target"), list(itertools.product(TaskState, TaskState)))
def test_every_transition_is_legal_or_refused(current: TaskState, target: TaskState) -> None:
    """Each of the 49 state pairs is either a lifecycle edge or an IllegalTransition."""
    if (current, target) in LEGAL:
        check_transition(current, target)
    else:
        with pytest.raises(IllegalTransition) as info:
            check_transition(current, target, "abc")
        assert info.value.current is current
        assert info.value.target is target
        assert "abc" in str(info.value)


def test_sources_are_the_inverse_of_the_table() -> None:
    """`sources(x)` (what SQL guards use) is exactly the states with an edge into x."""
    for target in TaskState:
        assert sources(target) == {c for c, t in LEGAL if t is target}


def test_state_groups() -> None:
    """Terminal and pending states split the lifecycle; leased states are pending ones."""
    assert {OK, FAIL, CANC, DEAD} == TERMINAL_STATES
    assert {Q, R, CR} == PENDING_STATES
    assert LEASED_STATES < PENDING_STATES
    assert not any(sources(s) & TERMINAL_STATES for s in TaskState)  # no way out of the end


def test_cancel_a_queued_task_ends_it() -> None:
    """Cancelling a queued task makes it cancelled/TERMINATED at once, with a completion time."""
    task = make_task()
    done = cancel(task, NOW)
    assert done.state is CANC
    assert done.completion_status is CompletionStatus.TERMINATED
    assert done.completed == NOW
    assert done.modified == NOW


def test_cancel_a_running_task_asks_it_to_stop() -> None:
    """Cancelling a running task only requests it; cancelling again changes nothing."""
    running = dataclasses.replace(make_task(), state=R, lease_owner="w")
    asked = cancel(running, NOW)
    assert asked.state is CR
    assert asked.completion_status is None
    assert asked.lease_owner == "w"  # the worker keeps its lease until it stops
    assert cancel(asked, NOW) is asked


@pytest.mark.parametrize("state", sorted(TERMINAL_STATES))
def test_a_finished_task_cannot_be_cancelled(state: TaskState) -> None:
    """Cancel on a finished task raises and the task object is unchanged."""
    task = dataclasses.replace(make_task(), state=state, completion_status=_status_for(state))
    before = dataclasses.replace(task)
    with pytest.raises(IllegalTransition):
        cancel(task, NOW)
    assert task == before


@pytest.mark.parametrize(
    ("status", "state"),
    [
        (CompletionStatus.SUCCESS, OK),
        (CompletionStatus.WARNING, OK),
        (CompletionStatus.ERROR, FAIL),
        (CompletionStatus.TEMPERROR, FAIL),
        (CompletionStatus.TERMINATED, CANC),
    ],
)
@pytest.mark.parametrize("current", [Q, R, CR])
def test_clear_ends_a_pending_task(
    current: TaskState, status: CompletionStatus, state: TaskState
) -> None:
    """Clearing (the v2024 PATCH) makes any pending task terminal and drops its lease."""
    task = dataclasses.replace(make_task(), state=current, lease_owner="w", lease_expires=NOW)
    if (current, state) not in LEGAL:
        with pytest.raises(IllegalTransition):
            clear(task, status, None, NOW)
        return
    done = clear(task, status, NOW - timedelta(hours=1), NOW)
    assert done.state is state
    assert done.completion_status is status
    assert done.completed == NOW - timedelta(hours=1)
    assert done.lease_owner is None
    assert done.lease_expires is None


def test_clear_a_finished_task_is_refused() -> None:
    """Clearing a task that has already finished raises IllegalTransition."""
    done = dataclasses.replace(make_task(), state=OK, completion_status=CompletionStatus.SUCCESS)
    with pytest.raises(IllegalTransition):
        clear(done, CompletionStatus.ERROR, None, NOW)


def test_completion_status_must_fit_the_state() -> None:
    """Pending states carry no status; terminal ones carry one of theirs."""
    check_completion(Q, None)
    check_completion(DEAD, CompletionStatus.TEMPERROR)
    with pytest.raises(InvalidTaskChange):
        check_completion(Q, CompletionStatus.SUCCESS)
    with pytest.raises(InvalidTaskChange):
        check_completion(OK, None)
    with pytest.raises(InvalidTaskChange):
        check_completion(DEAD, CompletionStatus.ERROR)
    with pytest.raises(InvalidTaskChange):
        check_completion(CANC, CompletionStatus.SUCCESS)


@pytest.mark.parametrize("value", [-1, 101, 140, 1.5, "50", True, None])
def test_percent_outside_0_to_100_is_refused(value: object) -> None:
    """A percentComplete outside 0 to 100 (or not an integer) is an InvalidTaskChange on that
    path."""
    with pytest.raises(InvalidTaskChange) as info:
        check_percent(value)
    assert info.value.path == "percentComplete"


def test_new_task_defaults() -> None:
    """A new task is queued, due now, named after its definition, version 1."""
    task = make_task(now=NOW)
    assert task.state is Q
    assert task.pending
    assert not task.terminal
    assert task.run_at == NOW
    assert task.unique_name == SUMMARY.unique_name
    assert task.description == SUMMARY.description
    assert task.percent_complete == 0
    assert task.messages == ()
    assert task.version == 1
    assert len(task.id) == 32
    assert int(task.id, 16) >= 0


@pytest.mark.parametrize(
    ("options", "path"),
    [
        ({"max_attempts": 0}, "max_attempts"),
        ({"timeout": 0}, "timeout"),
        ({"timeout": -1.0}, "timeout"),
        ({"run_at": datetime(2024, 1, 1)}, "run_at"),
    ],
)
def test_new_task_refuses_bad_options(options: dict[str, object], path: str) -> None:
    """new_task refuses a bad option, naming its path."""
    with pytest.raises(InvalidTaskChange) as info:
        make_task("noop", **options)
    assert info.value.path == path


def test_ids_are_32_lowercase_hex() -> None:
    """Task ids are 32 lowercase hexadecimal characters and do not repeat."""
    ids = {new_id() for _ in range(1000)}
    assert len(ids) == 1000
    assert all(len(i) == 32 and i == i.lower() and int(i, 16) >= 0 for i in ids)


def test_ids_are_uuid7_that_sort_by_the_millisecond_they_were_made() -> None:
    """A task id is a UUIDv7 (version 7, the RFC's variant) whose first 48 bits are its
    creation time in ms: an id made a millisecond later sorts after every earlier one."""
    before = int(time.time() * 1000)
    first = [new_id() for _ in range(200)]
    time.sleep(0.002)
    later = new_id()
    after = int(time.time() * 1000)
    for task_id in [*first, later]:
        parsed = uuid.UUID(hex=task_id)
        assert parsed.version == 7 and parsed.variant == uuid.RFC_4122
        assert before <= int(task_id[:12], 16) <= after
    assert later > max(first)


def _status_for(state: TaskState) -> CompletionStatus:
    return {
        OK: CompletionStatus.SUCCESS,
        FAIL: CompletionStatus.ERROR,
        CANC: CompletionStatus.TERMINATED,
        DEAD: CompletionStatus.TEMPERROR,
    }[state]
