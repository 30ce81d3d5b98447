"""Who may see which task: the same rule for every dialect.

A caller sees a task when it is inside the retention window and, without the admin scope,
when the caller's owner launched it. Anything else is answered as if it did not exist (404),
so a caller cannot learn which ids other owners have.
"""

from __future__ import annotations

from datetime import datetime

from taskstatus.api.auth import Principal
from taskstatus.errors import NotFound
from taskstatus.model import Task
from taskstatus.query import Condition, Expr, Op, TaskField, all_of


def visible(principal: Principal, cutoff: datetime) -> Expr:
    """The filter that limits a query to what `principal` may see."""
    owner = None if principal.admin else Condition(TaskField.LAUNCHER, Op.EQ, (principal.owner,))
    expr = all_of(Condition(TaskField.CREATED, Op.GE, (cutoff,)), owner)
    assert expr is not None
    return expr


def can_see(principal: Principal, task: Task, cutoff: datetime) -> bool:
    return task.created >= cutoff and (principal.admin or task.launcher == principal.owner)


def check_visible(principal: Principal, task: Task, cutoff: datetime) -> Task:
    """`task`, or NotFound when the caller may not see it."""
    if not can_see(principal, task, cutoff):
        raise NotFound(task.id)
    return task
