"""Lease bookkeeping every backend shares: sorting a heartbeat's findings, lost-lease notes."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from taskstatus.model import LEASED_STATES, Message, MessageType, TaskState
from taskstatus.store.base import Heartbeat


def sort_heartbeat(
    worker_id: str, task_ids: Sequence[str], states: Mapping[str, tuple[str, str | None]]
) -> Heartbeat:
    """Tasks to cancel (cancel requested) and tasks this worker no longer holds (cleared by a
    user, deleted, or recovered by another node after the lease ran out)."""
    cancel_ids, lost = set(), set()
    for tid in task_ids:
        state, owner = states.get(tid, (None, None))
        current = TaskState(state) if state else None
        if owner != worker_id or current not in LEASED_STATES:
            lost.add(tid)
        elif current is TaskState.CANCEL_REQUESTED:
            cancel_ids.add(tid)
    return Heartbeat(cancel=frozenset(cancel_ids), lost=frozenset(lost))


def lost_lease_message(attempts: int, max_attempts: int, fate: str) -> Message:
    """The message a recovered task gets: requeued, dead, or cancelled."""
    text = {
        "requeued": f"The worker running attempt {attempts} of {max_attempts} stopped "
        "answering (its lease expired); the task was queued again.",
        "dead": f"The worker running attempt {attempts} of {max_attempts} stopped answering "
        "(its lease expired) and no attempts are left; the task is dead.",
        "cancelled": "The worker stopped answering while cancellation was requested; "
        "the task is cancelled.",
    }[fate]
    kind = MessageType.ERROR if fate == "dead" else MessageType.WARN
    return Message(type=kind, text=text, key=f"taskstatus.lease.{fate}")
