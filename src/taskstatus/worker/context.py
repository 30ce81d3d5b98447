"""TaskContext: what a running handler uses to report progress, log, and see cancellation.

Reporting only records the latest state in memory (thread-safe, so sync handlers in worker
threads may call it); the worker writes what changed a few times a second, however often a
handler reports.
"""

from __future__ import annotations

import asyncio
import enum
import threading
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Any, NamedTuple, Unpack

from taskstatus.model import Message, MessageType, ReturnDetail, Task, check_percent
from taskstatus.options import SubtaskOptions
from taskstatus.store.base import Progress

__all__ = ["FinalState", "Retry", "StopReason", "TaskCancelled", "TaskContext"]


class StopReason(enum.StrEnum):
    """Why the worker told a handler to stop."""

    CANCEL = "cancel"  # the task was cancelled (asked to stop)
    LOST = "lost"  # the worker no longer holds it (cleared, deleted or recovered by another)
    SHUTDOWN = "shutdown"  # the worker is stopping: the task is handed back
    TIMEOUT = "timeout"  # the run passed its timeout


class FinalState(NamedTuple):
    """What a run leaves for its outcome: progress, percent, unflushed messages, returns."""

    progress: str | None
    percent: int
    messages: tuple[Message, ...]
    returns: list[ReturnDetail]


class TaskCancelled(Exception):
    """Raised by `TaskContext.check_cancelled` when the task must stop."""


class Retry(Exception):
    """Raise from a handler to say the failure is transient: the task runs again later
    (after `delay` seconds, or exponential backoff) while attempts are left."""

    def __init__(self, message: str = "", *, delay: float | None = None) -> None:
        self.delay = delay
        super().__init__(message)


SubmitFn = Callable[..., Awaitable[Task]]


def _parameter(value: Any) -> Any:
    """Message parameters are objects or strings (what TaskStatus clients can read): a number
    or a flag is kept as its text."""
    return value if value is None or isinstance(value, dict | str) else str(value)


class TaskContext:
    """The handle a handler gets for the task it runs."""

    def __init__(
        self,
        task: Task,
        *,
        loop: asyncio.AbstractEventLoop,
        submit: SubmitFn,
        on_report: Callable[[], None] | None = None,
    ) -> None:
        self.task = task
        self._loop = loop
        self._submit = submit
        self._on_report = on_report  # told (on the loop) of the first report since a drain
        self._lock = threading.Lock()
        self._progress = task.progress
        self._percent = task.percent_complete
        self._messages: list[Message] = []
        self._attributes: dict[str, Any] = dict(task.attributes)
        self._returns: list[ReturnDetail] = list(task.returns)
        self._dirty = False
        self._attributes_dirty = False
        self._returns_dirty = False
        self._warned = False
        # A plain flag (a bool write is atomic) rather than a threading.Event per task; the
        # asyncio.Event exists only once a handler awaits wait_cancelled.
        self._stopped = False
        self._stop_async: asyncio.Event | None = None
        self.stop_reason: StopReason | None = None
        # Set once the handler has looked and seen that it must stop: a run that ends after
        # that ends as stopped (cancelled), not with the outcome it returns.
        self.saw_stop = False

    # --- what the task is -----------------------------------------------------------------------

    @property
    def id(self) -> str:
        return self.task.id

    @property
    def attempt(self) -> int:
        """1 on the first run, 2 on the first retry, ..."""
        return self.task.attempts

    @property
    def arguments(self) -> Mapping[str, Any]:
        return self.task.arguments

    # --- reporting --------------------------------------------------------------------------------

    def progress(self, text: str | None = None, percent: int | None = None) -> None:
        """Set the progress text and/or the percentage complete (an integer from 0 to 100)."""
        if percent is not None:
            check_percent(percent, "percent")
        with self._lock:
            if text is not None:
                self._progress = text
            if percent is not None:
                self._percent = percent
            was_dirty, self._dirty = self._dirty, True
        self._reported(was_dirty)

    def _reported(self, was_dirty: bool) -> None:
        """The first report since the worker's last write: tell it, so that a report after a
        quiet spell is written at once (a busy reporter is still coalesced)."""
        if was_dirty or self._on_report is None:
            return
        try:
            on_loop = asyncio.get_running_loop() is self._loop
        except RuntimeError:
            on_loop = False
        if on_loop:
            self._on_report()
        else:
            self._loop.call_soon_threadsafe(self._on_report)

    def _log(
        self, kind: MessageType, text: str, key: str, parameters: Sequence[Any] | None
    ) -> None:
        message = Message(
            type=kind,
            text=str(text),
            key=key,
            parameters=None if parameters is None else tuple(_parameter(p) for p in parameters),
        )
        with self._lock:
            self._messages.append(message)
            self._warned = self._warned or kind is MessageType.WARN
            was_dirty, self._dirty = self._dirty, True
        self._reported(was_dirty)

    def info(self, text: str, key: str = "", parameters: Sequence[Any] | None = None) -> None:
        self._log(MessageType.INFO, text, key, parameters)

    def warn(self, text: str, key: str = "", parameters: Sequence[Any] | None = None) -> None:
        """Log a warning; the task then ends as WARNING instead of SUCCESS."""
        self._log(MessageType.WARN, text, key, parameters)

    def error(self, text: str, key: str = "", parameters: Sequence[Any] | None = None) -> None:
        self._log(MessageType.ERROR, text, key, parameters)

    def set_attribute(self, name: str, value: Any) -> None:
        with self._lock:
            self._attributes[name] = value
            self._attributes_dirty = self._dirty = True

    @property
    def attributes(self) -> dict[str, Any]:
        with self._lock:
            return dict(self._attributes)

    def add_return(self, name: str, attribute_name: str) -> None:
        """Label an attribute as one of the task's returns (TaskStatus ``returns``)."""
        with self._lock:
            self._returns.append(ReturnDetail(name, attribute_name))
            self._returns_dirty = self._dirty = True

    # --- cancellation ----------------------------------------------------------------------------

    @property
    def cancelled(self) -> bool:
        """True once the task must stop: cancelled, cleared, timed out, or its worker stopping."""
        if self._stopped:
            self.saw_stop = True
        return self._stopped

    def check_cancelled(self) -> None:
        """Raise TaskCancelled if the task must stop; call it between units of work."""
        if self._stopped:
            self.saw_stop = True
            raise TaskCancelled(self.stop_reason or "cancelled")

    async def wait_cancelled(self, timeout: float | None = None) -> bool:
        """Wait until the task must stop (True) or `timeout` passes (False). Async handlers
        only (sync ones poll `cancelled`)."""
        if self._stop_async is None:
            self._stop_async = asyncio.Event()
            if self._stopped:
                self._stop_async.set()
        try:
            await asyncio.wait_for(self._stop_async.wait(), timeout)
        except TimeoutError:
            return False
        self.saw_stop = True
        return True

    # --- subtasks --------------------------------------------------------------------------------

    async def submit(
        self, handler: Any, arguments: Mapping[str, Any], **options: Unpack[SubtaskOptions]
    ) -> Task:
        """Submit a subtask of this task (the options of `connect().submit`, and a name and
        description: `taskstatus.options.SubtaskOptions`)."""
        return await self._submit(handler, arguments, parent=self.task, **options)

    def submit_sync(
        self, handler: Any, arguments: Mapping[str, Any], **options: Unpack[SubtaskOptions]
    ) -> Task:
        """`submit` for sync handlers, which run in worker threads."""
        try:
            running = asyncio.get_running_loop()
        except RuntimeError:
            running = None
        if running is self._loop:
            raise RuntimeError("submit_sync blocks: from an async handler use 'await ctx.submit'")
        future = asyncio.run_coroutine_threadsafe(
            self.submit(handler, arguments, **options), self._loop
        )
        return future.result()

    # --- the worker's side -------------------------------------------------------------------

    def request_stop(self, reason: StopReason) -> None:
        """Tell the handler to stop (called on the worker's loop)."""
        if self.stop_reason is None:
            self.stop_reason = reason
        self._stopped = True
        if self._stop_async is not None:
            self._stop_async.set()

    @property
    def warned(self) -> bool:
        return self._warned

    def drain(self) -> Progress | None:
        """What changed since the last drain, or None."""
        with self._lock:
            if not self._dirty:
                return None
            report = Progress(
                task_id=self.task.id,
                progress=self._progress,
                percent_complete=self._percent,
                messages=tuple(self._messages),
                attributes=dict(self._attributes) if self._attributes_dirty else None,
                returns=tuple(self._returns) if self._returns_dirty else None,
                attempt=self.task.attempts,
            )
            self._messages.clear()
            self._dirty = self._attributes_dirty = self._returns_dirty = False
            return report

    def final_state(self) -> FinalState:
        """Progress, percent, unflushed messages and returns, for the run's outcome."""
        with self._lock:
            messages = tuple(self._messages)
            self._messages.clear()
            self._dirty = False
            return FinalState(self._progress, self._percent, messages, list(self._returns))
