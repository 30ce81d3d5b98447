"""Who may see which task: the rule the service (taskstatus.service) applies for every caller.

A caller sees a task when it was created at or after the caller's retention cutoff and,
without the admin scope, when the caller's owner launched it. Anything else is answered as if
it did not exist (NotFound), so a caller cannot learn which ids other owners have. No I/O.
"""

from __future__ import annotations

from taskstatus.caller import Caller
from taskstatus.errors import NotFound
from taskstatus.model import Task
from taskstatus.query import Condition, Expr, Op, TaskField, all_of

__all__ = ["check_visible", "visible"]


def visible(caller: Caller) -> Expr | None:
    """The filter that limits a query to what `caller` may see (None: everything)."""
    retained = (
        None if caller.cutoff is None else Condition(TaskField.CREATED, Op.GE, (caller.cutoff,))
    )
    owner = None if caller.admin else Condition(TaskField.LAUNCHER, Op.EQ, (caller.owner,))
    return all_of(retained, owner)


def check_visible(caller: Caller, task: Task) -> Task:
    """`task`, or NotFound when `caller` may not see it."""
    if (caller.cutoff is not None and task.created < caller.cutoff) or (
        not caller.admin and task.launcher != caller.owner
    ):
        raise NotFound(task.id)
    return task
