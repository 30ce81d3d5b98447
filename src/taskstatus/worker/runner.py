"""The worker: claims due tasks in batches and runs their handlers.

One fetch loop plus three side tasks:

- the fetch loop claims up to the free slots at once, and ahead of them as many tasks as the
  slots are expected to start within `claim_ahead_ms` (worker/ahead.py: the rule), and sleeps
  until a wake-up (a submit in this process, or NOTIFY on PostgreSQL), a poll interval, a free
  slot or a stop; a task claimed ahead waits in the worker and starts when a slot frees;
- the writer writes outcomes as soon as they exist and coalesced progress every
  `flush_interval`, each as one batch, in order (a run's progress never lands after its end);
- the heartbeat extends the leases of running and waiting tasks and delivers cancellation;
- recovery requeues (or ends as dead) the tasks of workers whose lease expired.

Async handlers run on the event loop and are cancelled at their next await; sync handlers run
in a thread pool and see cancellation through `ctx.cancelled` / `ctx.check_cancelled()`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import random
import socket
import time
import traceback
import uuid
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import timedelta
from typing import Any, Unpack

import orjson

from taskstatus.caller import Caller
from taskstatus.errors import StoreUnavailable
from taskstatus.handlers import REGISTRY, Handler, Registry
from taskstatus.model import CompletionStatus, Message, MessageType, Task, TaskState
from taskstatus.options import SubtaskOptions
from taskstatus.scheduling import LimitService, ScheduleService
from taskstatus.service import Submission, TaskService, utcnow
from taskstatus.settings import (
    CLAIM_AHEAD_MS,
    CONCURRENCY,
    GRACE_PERIOD,
    LEASE_SECONDS,
    POLL_INTERVAL,
)
from taskstatus.store.base import Outcome, Progress, Store
from taskstatus.worker.ahead import ClaimAhead
from taskstatus.worker.context import Retry, StopReason, TaskCancelled, TaskContext

__all__ = ["Worker", "WorkerOptions"]

log = logging.getLogger("taskstatus.worker")


@dataclass(frozen=True)
class WorkerOptions:
    """How a worker runs; the main defaults are taskstatus.settings' (one place)."""

    concurrency: int = CONCURRENCY
    lease_seconds: float = LEASE_SECONDS
    poll_interval: float = POLL_INTERVAL
    flush_interval: float = 0.25
    heartbeat_interval: float | None = None  # default: min(lease / 3, 1 s)
    recover_interval: float | None = None  # default: min(lease / 2, 15 s)
    # How long a lease must stay expired, and the store reachable, before it is recovered
    # (default: the lease): time for cut-off workers to renew after an outage.
    recover_grace: float | None = None
    grace_period: float = GRACE_PERIOD
    claim_batch: int = 500
    # Claim beyond the free slots as many tasks as the slots are expected to start within
    # this many milliseconds (0: only free slots); see worker/ahead.py.
    claim_ahead_ms: float = CLAIM_AHEAD_MS
    retry_base: float = 1.0
    retry_max: float = 300.0
    # Whether this worker fires due schedules (every worker may: the store keeps one task
    # per firing), and how long it sleeps at most between looks.
    fire_schedules: bool = True
    schedule_poll: float = 1.0

    def __post_init__(self) -> None:
        if self.concurrency < 1:
            raise ValueError("concurrency must be at least 1")
        if self.lease_seconds <= 0:
            raise ValueError("lease_seconds must be positive")
        if self.claim_ahead_ms < 0:
            raise ValueError("claim_ahead_ms must not be negative")

    @property
    def heartbeat_every(self) -> float:
        return self.heartbeat_interval or min(self.lease_seconds / 3, 1.0)

    @property
    def recover_every(self) -> float:
        return self.recover_interval or max(0.1, min(self.lease_seconds / 2, 15.0))

    @property
    def grace(self) -> float:
        return self.lease_seconds if self.recover_grace is None else self.recover_grace


class _TimedOut(Exception):
    """The run used up its timeout (distinct from a TimeoutError the handler raises itself)."""


def _jsonable(value: Any) -> Any:
    """What a handler returned, as JSON (anything orjson cannot encode becomes its str)."""
    return orjson.loads(orjson.dumps(value, default=str, option=orjson.OPT_NON_STR_KEYS))


def new_worker_id() -> str:
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


@dataclass
class _Run:
    ctx: TaskContext
    handler: Handler
    future: asyncio.Task[None]
    started: float  # monotonic
    # Its asyncio task has taken its first step: only then may it be cancelled (a task
    # cancelled before that never enters `_run`, whose `finally` frees the slot).
    entered: bool = False


# Who a worker acts as when its handlers submit subtasks (launched by the parent's launcher).
WORKER = Caller.local("worker")


class Worker:
    """Runs the handlers of `registry` on the tasks of `store`. `await run()`, then `stop()`."""

    def __init__(
        self,
        store: Store,
        registry: Registry = REGISTRY,
        options: WorkerOptions | None = None,
        *,
        worker_id: str | None = None,
    ) -> None:
        self.store = store
        self.registry = registry
        self.options = options or WorkerOptions()
        self.id = worker_id or new_worker_id()
        self.service = TaskService(store, registry)
        self.schedules = ScheduleService(self.service, WORKER)
        self._running: dict[str, _Run] = {}
        # Claimed ahead, not started, with when (monotonic) they were claimed: they start in
        # this order as slots free.
        self._waiting: OrderedDict[str, tuple[Task, float]] = OrderedDict()
        self._claims = ClaimAhead(
            self.options.concurrency, self.options.claim_ahead_ms, self.options.claim_batch
        )
        self._outcomes: list[Outcome] = []
        self._handback: list[str] = []
        self._renewed = 0.0  # (monotonic) when the last heartbeat that renewed leases was sent
        self._threads = ThreadPoolExecutor(
            self.options.concurrency, thread_name_prefix="taskstatus-handler"
        )
        self._stopping: asyncio.Event | None = None
        self._slot_freed: asyncio.Event | None = None
        self._write_now: asyncio.Event | None = None
        self._last_progress_flush = 0.0
        # Since when (monotonic) every store call of this worker has succeeded; None while
        # they fail. Recovery of others' leases waits until it is `grace` old.
        self._reachable_since: float | None = time.monotonic()
        self._beat_since_reachable = False
        self._unstored = 0  # outcomes the writer holds and has not stored yet
        self.ready = asyncio.Event()

    @classmethod
    def of(
        cls,
        service: TaskService,
        options: WorkerOptions | None = None,
        *,
        worker_id: str | None = None,
    ) -> Worker:
        """A worker on the store of `service`, running the handlers of its registry."""
        worker = cls(service.store, service.registry, options, worker_id=worker_id)
        worker.service = service
        return worker

    # --- control ------------------------------------------------------------------------------

    def stop(self) -> None:
        """Stop claiming; running tasks get `grace_period` to finish, the rest are handed back
        (tasks claimed ahead and not started at once)."""
        if self._stopping is not None:
            self._stopping.set()
        if self._slot_freed is not None:  # the fetch loop may be waiting for a slot
            self._slot_freed.set()

    @property
    def running(self) -> int:
        return len(self._running)

    @property
    def waiting(self) -> int:
        """Tasks claimed ahead that have not started."""
        return len(self._waiting)

    async def run(self) -> None:
        self._stopping = asyncio.Event()
        self._slot_freed = asyncio.Event()
        self._write_now = asyncio.Event()
        if not len(self.registry):
            raise RuntimeError("this worker has no handlers: import a module that defines some")
        await self.service.publish_definitions()
        await LimitService(self.service, WORKER).declare(self.registry)
        await self.schedules.declare(self.registry)
        side = {
            "heartbeat": asyncio.create_task(self._every(self.options.heartbeat_every, self._beat)),
            "recovery": asyncio.create_task(self._every(self.options.recover_every, self._recover)),
        }
        if self.options.fire_schedules:
            side["schedules"] = asyncio.create_task(self._fire_schedules())
        writer = asyncio.create_task(self._writer())
        log.info(
            "worker %s started: %d handlers, concurrency %d, lease %gs",
            self.id,
            len(self.registry),
            self.options.concurrency,
            self.options.lease_seconds,
        )
        self.ready.set()
        try:
            await self._fetch(self.registry.names())
            await self._wind_down()
        finally:
            for task in side.values():
                task.cancel()
            await asyncio.gather(*side.values(), return_exceptions=True)
            self._write_now.set()
            writer.cancel()
            await asyncio.gather(writer, return_exceptions=True)
            await self._flush(final=True)
            self._threads.shutdown(wait=False, cancel_futures=True)
            log.info("worker %s stopped", self.id)

    # --- fetching -------------------------------------------------------------------------------

    async def _fetch(self, handlers: list[str]) -> None:
        assert self._stopping is not None and self._slot_freed is not None
        errors = 0
        while not self._stopping.is_set():
            size = self._claims.size(
                len(self._running),
                len(self._waiting),
                time.monotonic(),
                (run.started for run in self._running.values()),
            )
            if size <= 0:
                # `stop` sets it too: one event to wait on, not two tasks racing (each cycle
                # of a busy worker waits here once)
                self._slot_freed.clear()
                await self._slot_freed.wait()
                continue
            try:
                claimed = await self.store.claim(
                    self.id, size, self.options.lease_seconds, handlers
                )
                errors = 0
                self._reachable()
            except Exception as exc:
                errors += 1
                self._unreachable(exc, "claiming")
                await _first(asyncio.sleep(min(0.1 * 2**errors, 2.0)), self._stopping.wait())
                continue
            now = time.monotonic()
            for task in claimed:
                if task.id in self._waiting:  # claimed again (see _start): the newer attempt
                    self._waiting[task.id] = (task, now)
                elif task.id in self._running or len(self._running) < self.options.concurrency:
                    # (claimed again while running: the newer attempt takes the older's slot)
                    self._start(task)
                else:
                    self._waiting[task.id] = (task, now)
            if claimed:
                # let the handlers start before the next claim is prepared and sent
                await asyncio.sleep(0)
            else:
                self._claims.forget()
                await _first(
                    self.store.wait_for_work(self.options.poll_interval), self._stopping.wait()
                )

    def _start(self, task: Task) -> None:
        if task.id in self._running:
            # This worker was cut off long enough for its lease to be recovered and has now
            # claimed the task again: the older attempt stops (its writes are fenced anyway).
            self._deliver_stop(task.id, StopReason.LOST)
        handler = self.registry.require(task.handler)
        ctx = self._context(task)
        future = asyncio.create_task(self._run(handler, task, ctx), name=f"task {task.id}")
        now = time.monotonic()
        self._running[task.id] = _Run(ctx, handler, future, now)
        self._claims.started(now)

    def _start_waiting(self) -> None:
        """Start the first task claimed ahead whose lease still holds: one whose lease may have
        run out (the heartbeats that renew it failed for `lease_seconds`: another worker may
        have recovered it and be running it) is dropped, left to whoever holds it now."""
        expired = time.monotonic() - self.options.lease_seconds
        while self._waiting:
            task_id, (task, claimed) = self._waiting.popitem(last=False)
            if max(claimed, self._renewed) > expired:
                self._start(task)
                return
            log.info("task %s: claimed ahead, its lease may have run out: not started", task_id)

    def _context(self, task: Task) -> TaskContext:
        return TaskContext(
            task,
            loop=asyncio.get_running_loop(),
            submit=self._submit_child,
            on_report=self._reported,
        )

    def _stop_waiting(self, task: Task, reason: StopReason) -> None:
        """A stop for a task claimed ahead (no longer waiting): it never runs."""
        if reason is StopReason.SHUTDOWN:
            self._handback.append(task.id)
        elif reason is StopReason.CANCEL:
            ctx = self._context(task)
            ctx.request_stop(reason)
            self._outcomes.append(
                _end(
                    ctx,
                    TaskState.CANCELLED,
                    CompletionStatus.TERMINATED,
                    "the task was cancelled before it started",
                    "taskstatus.cancelled",
                    MessageType.INFO,
                )
            )
            if self._write_now is not None:
                self._write_now.set()
        # LOST: another writer owns it now
        if self._slot_freed is not None:  # fewer held: the fetch loop may claim
            self._slot_freed.set()

    async def _run(self, handler: Handler, task: Task, ctx: TaskContext) -> None:
        """One run, and its bookkeeping at its end, in the run's own task (a done callback
        would cost a callback and a loop turn more a task). Its task is only ever cancelled
        once it has entered (`_Run.entered`; a stop before that is seen here), so this always
        ends through its `finally`."""
        assert self._slot_freed is not None and self._write_now is not None
        assert self._stopping is not None
        run = self._running.get(task.id)
        if run is not None and run.future is asyncio.current_task():
            run.entered = True
        try:
            if ctx.stop_reason is not None:  # stopped before its first step: not run
                outcome = self._stopped(ctx)
            else:
                outcome = await self._execute(handler, task, ctx)
        except Exception as exc:
            log.error("task %s: the worker failed to end the run", task.id, exc_info=exc)
            outcome = None
        finally:  # cancelled too: the slot is free
            run = self._running.get(task.id)
            if run is not None and run.future is asyncio.current_task():  # not a newer attempt
                del self._running[task.id]
                self._claims.ran(time.monotonic() - run.started)
            if len(self._running) < self.options.concurrency and not self._stopping.is_set():
                self._start_waiting()
            self._slot_freed.set()
        if outcome is not None:
            self._outcomes.append(outcome)
            self._write_now.set()

    async def _submit_child(
        self,
        handler: Handler | str,
        arguments: Mapping[str, Any],
        *,
        parent: Task,
        **options: Unpack[SubtaskOptions],
    ) -> Task:
        """A subtask of `parent`, launched by the parent's launcher."""
        submission = Submission.of(options, parent=parent, launcher=parent.launcher)
        return await self.service.submit(WORKER, handler, arguments, submission)

    # --- running one task -----------------------------------------------------------------------

    async def _execute(self, handler: Handler, task: Task, ctx: TaskContext) -> Outcome | None:
        try:
            args = handler.parse(task.arguments)
        except Exception as e:
            return _end(
                ctx,
                TaskState.FAILED,
                CompletionStatus.ERROR,
                f"invalid arguments: {e}",
                "taskstatus.arguments",
            )
        try:
            if handler.is_async:
                result = await self._run_async(handler, ctx, args, task.timeout)
            else:
                result = await self._run_sync(handler, ctx, args, task.timeout)
        except TaskCancelled:
            return self._stopped(ctx)
        except _TimedOut:
            ctx.request_stop(StopReason.TIMEOUT)
            return _end(
                ctx,
                TaskState.FAILED,
                CompletionStatus.ERROR,
                f"the task timed out after {task.timeout:g} s",
                "taskstatus.timeout",
            )
        except Exception as e:
            if ctx.stop_reason in (StopReason.CANCEL, StopReason.LOST, StopReason.SHUTDOWN):
                return self._stopped(ctx)
            return self._failed(handler, task, ctx, e)
        if ctx.stop_reason in (StopReason.LOST, StopReason.SHUTDOWN):
            return self._stopped(ctx)
        if ctx.stop_reason is StopReason.CANCEL and ctx.saw_stop:
            # It returned because it saw the cancellation: cancelled, with what it produced.
            if isinstance(result, Mapping):
                for name, value in result.items():
                    ctx.set_attribute(name, value)
            return self._stopped(ctx)
        return self._succeeded(ctx, result)

    @staticmethod
    async def _run_async(
        handler: Handler, ctx: TaskContext, args: Any, timeout: float | None
    ) -> Any:
        try:
            if timeout is None:  # no deadline to arm (a timer and two task look-ups a run)
                return await handler.fn(ctx, args)
            deadline = asyncio.timeout(timeout)
            try:
                async with deadline:
                    return await handler.fn(ctx, args)
            except TimeoutError:
                if deadline.expired():
                    raise _TimedOut from None
                raise
        except asyncio.CancelledError:
            if ctx.stop_reason is None:  # not a stop we asked for: the worker is being torn down
                raise
            current = asyncio.current_task()
            if current is not None:
                current.uncancel()
            raise TaskCancelled(ctx.stop_reason) from None

    async def _run_sync(
        self, handler: Handler, ctx: TaskContext, args: Any, timeout: float | None
    ) -> Any:
        future = asyncio.get_running_loop().run_in_executor(self._threads, handler.fn, ctx, args)
        if timeout is None:
            return await future
        # A thread cannot be interrupted: on timeout stop waiting and tell the handler to stop.
        done, _ = await asyncio.wait({future}, timeout=timeout)
        if not done:
            raise _TimedOut
        return future.result()

    def _stopped(self, ctx: TaskContext) -> Outcome | None:
        reason = ctx.stop_reason or StopReason.CANCEL
        if reason is StopReason.LOST:  # another writer owns it now: cleared, deleted, recovered
            return None
        if reason is StopReason.SHUTDOWN:
            self._handback.append(ctx.id)
            return None
        return _end(
            ctx,
            TaskState.CANCELLED,
            CompletionStatus.TERMINATED,
            "the task was cancelled while running",
            "taskstatus.cancelled",
            MessageType.INFO,
        )

    def _succeeded(self, ctx: TaskContext, result: Any) -> Outcome:
        attributes = ctx.attributes
        if result is None:  # most handlers: no ABC check
            pass
        elif isinstance(result, Mapping):
            attributes.update(result)
        else:
            attributes["result"] = result
        progress, _, messages, returns = ctx.final_state()
        return Outcome(
            task_id=ctx.id,
            state=TaskState.SUCCEEDED,
            completion_status=CompletionStatus.WARNING if ctx.warned else CompletionStatus.SUCCESS,
            progress=progress,
            percent_complete=100,
            messages=messages,
            attributes=_jsonable(attributes) if attributes else attributes,
            returns=returns,
            attempt=ctx.attempt,
        )

    def _failed(
        self, handler: Handler, task: Task, ctx: TaskContext, exc: BaseException
    ) -> Outcome:
        retryable = isinstance(exc, (Retry, *handler.retry_on))
        # A Retry is the handler's own words; other exceptions are named by their type.
        what = str(exc) if isinstance(exc, Retry) else f"{type(exc).__name__}: {exc}".rstrip(": ")
        attempt = f"attempt {task.attempts} of {task.max_attempts}"
        if retryable and task.attempts < task.max_attempts:
            delay = (
                exc.delay
                if isinstance(exc, Retry) and exc.delay is not None
                else self._backoff(task.attempts)
            )
            progress, percent, messages, _ = ctx.final_state()
            note = Message(
                MessageType.WARN,
                f"{attempt} failed: {what}; retrying in {delay:.3g} s",
                "taskstatus.retry",
            )
            return Outcome(
                task_id=ctx.id,
                state=TaskState.QUEUED,
                completion_status=None,
                progress=progress,
                percent_complete=percent,
                messages=(*messages, note),
                attributes=_jsonable(ctx.attributes),
                run_at=utcnow() + timedelta(seconds=delay),
                attempt=ctx.attempt,
            )
        if retryable:
            return _end(
                ctx,
                TaskState.FAILED,
                CompletionStatus.TEMPERROR,
                f"{attempt} failed: {what}; no attempts are left",
                "taskstatus.retry",
            )
        log.warning(
            "task %s (%s) failed: %s",
            task.id,
            task.handler,
            "".join(traceback.format_exception(exc)).rstrip(),
        )
        return _end(ctx, TaskState.FAILED, CompletionStatus.ERROR, what, "taskstatus.error")

    def _backoff(self, attempt: int) -> float:
        """Exponential backoff with jitter: base * 2^(attempt-1), capped, +-20%."""
        delay = min(self.options.retry_max, self.options.retry_base * 2.0 ** (attempt - 1))
        return delay * random.uniform(0.8, 1.2)  # noqa: S311 - jitter, not security

    # --- side tasks -----------------------------------------------------------------------------

    async def _every(self, seconds: float, job: Callable[[], Awaitable[None]]) -> None:
        while True:
            await asyncio.sleep(seconds)
            try:
                await job()
            except Exception as exc:
                self._unreachable(exc, job.__name__.strip("_"))

    async def _fire_schedules(self) -> None:
        """Fire due schedules, then sleep until the next firing (at most schedule_poll)."""
        poll = self.options.schedule_poll
        while True:
            delay = poll
            try:
                fired, wake = await self.schedules.fire_due(lookahead=poll)
                if fired:
                    log.info("fired %d scheduled tasks", len(fired))
                if wake is not None:
                    delay = min(poll, max(0.005, (wake - utcnow()).total_seconds()))
            except Exception as exc:
                self._unreachable(exc, "firing schedules")
            await asyncio.sleep(delay)

    def _reachable(self) -> None:
        if self._reachable_since is None:
            self._reachable_since = time.monotonic()
            self._beat_since_reachable = False
            log.info("worker %s: the store answers again", self.id)

    def _unreachable(self, exc: Exception, what: str) -> None:
        """A store call failed: recovery of others' leases waits until the store has
        answered for a grace period again. Outages are logged without a traceback."""
        if isinstance(exc, StoreUnavailable):
            if self._reachable_since is not None:
                log.warning("worker %s: %s failed, retrying: %s", self.id, what, exc)
            self._reachable_since = None
        else:
            log.error("worker %s: %s failed; retrying", self.id, what, exc_info=exc)

    async def _beat(self) -> None:
        ids = [*self._running, *self._waiting]
        if not ids:
            self._beat_since_reachable = self._reachable_since is not None
            return
        sent = time.monotonic()
        beat = await self.store.heartbeat(self.id, ids, self.options.lease_seconds)
        self._renewed = sent
        self._reachable()
        self._beat_since_reachable = True
        for task_id in beat.lost:
            self._deliver_stop(task_id, StopReason.LOST)
        for task_id in beat.cancel:
            self._deliver_stop(task_id, StopReason.CANCEL)
        await self._hand_back_stale()

    async def _hand_back_stale(self) -> None:
        """Tasks claimed ahead that waited far longer than the horizon for a slot (the slots'
        runs took longer than their estimate: say handlers that wait for their subtasks) go
        back to the queue, for other workers."""
        since = time.monotonic() - self._claims.stale_after
        stale = []
        for task_id, (task, claimed) in self._waiting.items():  # in claim order
            if claimed >= since:
                break
            stale.append((task_id, (task, claimed)))
        if not stale:
            return
        for task_id, _ in stale:  # out before the await: none may start meanwhile
            del self._waiting[task_id]
        try:
            await self.store.release(self.id, [task_id for task_id, _ in stale])
        except BaseException:
            assert self._stopping is not None
            if self._stopping.is_set():  # the wind-down has taken the waiting ones already
                self._handback.extend(task_id for task_id, _ in stale)
            else:  # back at the front, in claim order
                self._waiting = OrderedDict([*stale, *self._waiting.items()])
            raise
        log.info("handed back %d tasks claimed ahead that waited for a slot", len(stale))
        if self._slot_freed is not None:
            self._slot_freed.set()

    def _deliver_stop(self, task_id: str, reason: StopReason) -> None:
        waiting = self._waiting.pop(task_id, None)
        if waiting is not None:
            self._stop_waiting(waiting[0], reason)
            return
        run = self._running.get(task_id)
        if run is None or run.ctx.stop_reason is not None:
            return
        log.info("task %s: stopping (%s)", task_id, reason)
        run.ctx.request_stop(reason)
        if run.handler.is_async and run.entered:  # (not entered: `_run` sees the stop)
            run.ctx.saw_stop = True  # it is at an await (this loop runs): it gets the error
            run.future.cancel()

    async def _recover(self) -> None:
        """Recover the leases of workers that stopped answering, but only once this worker
        has stored its own outcomes and renewed its own leases, and the store has answered
        for a grace period: after an outage, workers that were merely cut off renew first."""
        since = self._reachable_since
        if (
            since is None
            or time.monotonic() - since < self.options.grace
            or not self._beat_since_reachable
            or self._outcomes
            or self._unstored
        ):
            return
        found = await self.store.recover(self.options.grace)
        if found.requeued or found.dead or found.cancelled:
            log.warning(
                "recovered tasks of lost workers: %d requeued, %d dead, %d cancelled",
                len(found.requeued),
                len(found.dead),
                len(found.cancelled),
            )

    def _reported(self) -> None:
        """A handler reported: if nothing was written for a flush_interval, write now (the
        first report after a quiet spell reaches readers at once; a busy one is coalesced)."""
        if (
            self._write_now is not None
            and time.monotonic() - self._last_progress_flush >= self.options.flush_interval
        ):
            self._write_now.set()

    async def _writer(self) -> None:
        assert self._write_now is not None
        while True:
            if not self._write_now.is_set():
                # a deadline on this task rather than a sleep and a wait racing as two tasks:
                # a busy worker comes here once per batch of outcomes
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(self.options.flush_interval):
                        await self._write_now.wait()
            self._write_now.clear()
            await self._flush(final=False)

    async def _flush(self, *, final: bool) -> None:
        """Write due progress, then outcomes: one batch each, retried until stored."""
        now = time.monotonic()
        reports: list[Progress] = []
        if final or now - self._last_progress_flush >= self.options.flush_interval:
            reports = [r for run in list(self._running.values()) if (r := run.ctx.drain())]
            if reports:  # the interval counts from the last write, not from the last look
                self._last_progress_flush = now
        outcomes, self._outcomes = self._outcomes, []
        attempt = 0
        while reports or outcomes:
            self._unstored = len(outcomes)
            try:
                if reports:
                    await self.store.report(self.id, reports)
                    reports = []
                if outcomes:
                    stored = await self.store.finish(self.id, outcomes)
                    self._reachable()
                    kept = [o.task_id for o in outcomes if o.task_id not in stored]
                    if kept:
                        log.warning(
                            "worker %s: %d outcomes not stored: the tasks were cleared, "
                            "deleted or recovered meanwhile (%s)",
                            self.id,
                            len(kept),
                            ", ".join(kept[:5]),
                        )
                    outcomes = []
                    self._unstored = 0
            except Exception as exc:
                attempt += 1
                if final and attempt >= 3:
                    log.error(
                        "could not store %d outcomes; their leases will expire and "
                        "the tasks will be run again",
                        len(outcomes),
                        exc_info=exc,
                    )
                    return
                self._unreachable(exc, "writing outcomes")
                # keep what finished meanwhile with the rest, in order
                outcomes, self._outcomes = [*outcomes, *self._outcomes], []
                await asyncio.sleep(min(0.1 * 2**attempt, 2.0))

    # --- stopping --------------------------------------------------------------------------------

    async def _wind_down(self) -> None:
        """Hand back the tasks claimed ahead at once; let running tasks finish within the
        grace period; hand the rest back."""
        waiting = list(self._waiting)
        self._waiting.clear()
        if waiting:
            try:
                await self.store.release(self.id, waiting)
                log.info("handed %d tasks claimed ahead back to the queue", len(waiting))
            except Exception as exc:  # with the others at the end, then
                self._unreachable(exc, "handing back tasks claimed ahead")
                self._handback.extend(waiting)
        if self._running:
            log.info(
                "stopping: waiting up to %gs for %d running tasks",
                self.options.grace_period,
                len(self._running),
            )
            futures = [run.future for run in self._running.values()]
            await asyncio.wait(futures, timeout=self.options.grace_period)
        leftover = list(self._running)
        for task_id in leftover:
            self._deliver_stop(task_id, StopReason.SHUTDOWN)
        still = [run.future for run in self._running.values() if run.handler.is_async]
        if still:
            await asyncio.wait(still, timeout=5.0)
        # Sync handlers cannot be interrupted; their tasks are handed back all the same.
        handback = sorted({*self._handback, *self._running})
        self._handback.clear()
        if handback:
            await self._flush(final=True)
            await self.store.release(self.id, handback)
            log.info("handed %d unfinished tasks back to the queue", len(handback))


def _end(
    ctx: TaskContext,
    state: TaskState,
    status: CompletionStatus,
    text: str,
    key: str,
    kind: MessageType = MessageType.ERROR,
) -> Outcome:
    progress, percent, messages, returns = ctx.final_state()
    return Outcome(
        task_id=ctx.id,
        state=state,
        completion_status=status,
        progress=progress,
        percent_complete=percent,
        messages=(*messages, Message(kind, text, key)),
        attributes=_jsonable(ctx.attributes),
        returns=returns,
        attempt=ctx.attempt,
    )


async def _first(*aws: Awaitable[Any]) -> None:
    """Wait until the first of `aws` completes; cancel the others."""
    futures = [asyncio.ensure_future(a) for a in aws]
    try:
        await asyncio.wait(futures, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for f in futures:
            f.cancel()
        await asyncio.gather(*futures, return_exceptions=True)
