"""The errors taskstatus raises on purpose, for users of every interface. No I/O.

Lifecycle errors (IllegalTransition, InvalidTaskChange) live with the rules in
taskstatus.model; everything here is re-exported from the package.
"""

from __future__ import annotations

from collections.abc import Sequence


class TaskStatusError(Exception):
    """Base of the errors taskstatus raises on purpose."""


class UnknownHandler(TaskStatusError):
    """No node has registered a handler of this name; nothing was stored."""

    def __init__(self, name: str, known: Sequence[str] = ()) -> None:
        self.name = name
        self.known = list(known)
        hint = f" (known: {', '.join(self.known)})" if self.known else ""
        super().__init__(f"unknown handler {name!r}{hint}")


class InvalidArguments(TaskStatusError):
    """Arguments that fail the handler's schema; nothing was stored. `errors` lists each."""

    def __init__(self, handler: str, errors: Sequence[str]) -> None:
        self.handler = handler
        self.errors = list(errors)
        super().__init__(f"invalid arguments for {handler!r}: " + "; ".join(self.errors))


class StoreError(TaskStatusError):
    """Base of the errors a store raises on purpose."""


class NotFound(StoreError):
    def __init__(self, task_id: str) -> None:
        self.task_id = task_id
        super().__init__(f"no task with id {task_id}")


class ConflictError(StoreError):
    """The task changed under an update that asked for a version it no longer has."""


class WaitTimeout(TaskStatusError):
    """`wait` gave up before the task ended."""

    def __init__(self, task_id: str, timeout: float) -> None:
        self.task_id = task_id
        super().__init__(f"task {task_id} did not finish within {timeout:g} s")
