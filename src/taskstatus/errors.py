"""The errors taskstatus raises on purpose, for users of every interface. No I/O.

Lifecycle errors (IllegalTransition, InvalidTaskChange) live with the rules in
taskstatus.model; everything here is re-exported from the package.
"""

from __future__ import annotations

from collections.abc import Sequence


class TaskStatusError(Exception):
    """Base of the errors taskstatus raises on purpose.

    Raised by the remote client, an error also carries the server's `tracking_id` (also in the
    server's log line of that request) and the HTTP `status`; both are None otherwise."""

    tracking_id: str | None = None
    status: int | None = None


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


class NoDatabase(StoreError):
    """A command that only reads or steers tasks was pointed at a SQLite file that does not
    exist (it would have made an empty one)."""

    def __init__(self, path: str) -> None:
        self.path = path
        super().__init__(
            f"no database at {path} (serve, worker, migrate and submit create one; "
            "check --database or TASKSTATUS_DATABASE)"
        )


class StoreUnavailable(StoreError):
    """The database cannot be reached or cannot take the operation now (PostgreSQL down or
    unreachable, a connection not free within the pool timeout, a statement past its timeout;
    SQLite locked past its busy timeout, the disk full), or, from the remote client, the
    server said 503. Nothing of the operation was stored unless it says so; trying again
    later is safe. `cause` is the database driver's error and `retry_after` a hint in
    seconds."""

    def __init__(
        self, message: str, cause: BaseException | None = None, retry_after: int = 2
    ) -> None:
        self.cause = cause
        self.retry_after = retry_after
        super().__init__(message)
        self.__cause__ = cause

    @classmethod
    def because(cls, what: str, cause: BaseException | None = None) -> StoreUnavailable:
        """An error saying: the database is unavailable (`what`): <the driver's message>."""
        detail = f": {' '.join(str(cause).split())}" if cause is not None and str(cause) else ""
        return cls(f"the database is unavailable ({what}){detail}", cause)


class ConflictError(StoreError):
    """The task changed under an update that asked for a version it no longer has."""


class WaitTimeout(TaskStatusError):
    """`wait` gave up before the task ended."""

    def __init__(self, task_id: str, timeout: float) -> None:
        self.task_id = task_id
        super().__init__(f"task {task_id} did not finish within {timeout:g} s")


class InvalidFilter(TaskStatusError, ValueError):
    """A filter or sorter that cannot be used; the message says what and where.
    (`taskstatus.query.QueryError`, what a database connection raises, is one.)"""


class HasSubtasks(StoreError):
    """`delete` without force of a task that has subtasks: nothing was deleted."""

    def __init__(self, task_id: str, subtasks: Sequence[object] = ()) -> None:
        self.task_id = task_id
        self.subtasks = list(subtasks)
        super().__init__(
            f"task {task_id} has {len(self.subtasks)} subtasks: delete with force=True to "
            "delete them too"
        )


class Unauthorized(TaskStatusError):
    """The server refused the credentials or the token (401), or none were found."""


class Forbidden(TaskStatusError):
    """The credentials are good but lack the scope the operation needs (403)."""


class RateLimited(TaskStatusError):
    """The server kept answering 429 after the client's retries; `retry_after` in seconds."""

    def __init__(self, message: str, retry_after: float | None = None) -> None:
        self.retry_after = retry_after
        super().__init__(message)


class BadRequest(TaskStatusError, ValueError):
    """The server refused the request as invalid (a 4xx with no more specific type)."""


class ServerError(TaskStatusError):
    """The server failed (5xx) or answered something the client cannot read."""


class Unreachable(TaskStatusError):
    """No answer from the server (connection refused, reset or timed out) after the retries."""
