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

__all__ = ["check_visible", "visible", "visible_task"]


def visible(caller: Caller) -> Expr | None:
    """The filter that limits a query to what `caller` may see (None: everything)."""
    retained = (
        None if caller.cutoff is None else Condition(TaskField.CREATED, Op.GE, (caller.cutoff,))
    )
    owner = None if caller.admin else Condition(TaskField.LAUNCHER, Op.EQ, (caller.owner,))
    return all_of(retained, owner)


def visible_task(caller: Caller, task: Task) -> bool:
    """Whether `caller` may see `task` (the rule of `visible`, for one task)."""
    return (caller.cutoff is None or task.created >= caller.cutoff) and (
        caller.admin or task.launcher == caller.owner
    )


def check_visible(caller: Caller, task: Task) -> Task:
    """`task`, or NotFound when `caller` may not see it."""
    if not visible_task(caller, task):
        raise NotFound(task.id)
    return task
