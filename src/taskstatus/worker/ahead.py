"""How many tasks a worker claims at once: its free slots, and ahead of them only as far as is
harmless (issue 17).

A task claimed ahead shows as running before its handler starts, and waits in the worker while
other workers may be idle; so the worker claims ahead only as many tasks as it is expected to
start within a short horizon (`WorkerOptions.claim_ahead_ms`), the lesser of two bounds:

- its slots: Little's law on a moving mean of how long a run holds its slot (start to end),
  `horizon / run` starts a slot within the horizon, counting only the slots whose run has not
  gone on for longer than the horizon already (those are taken for slow runs, whatever the
  mean: slow handlers among fast ones);
- its own pace: no more than it started in the last horizon (a worker whose loop, not its
  slots, is the bottleneck, as with no-op handlers, starts tasks no faster than it did).

No estimate (a fresh worker, or one whose last claim found nothing: a quiet spell, one task at
a time) or runs longer than the horizon times the slots mean no claiming ahead, as without it.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable

__all__ = ["ClaimAhead"]

# The moving mean is the plain mean of the runs since the estimate began, then a moving mean
# over about this many runs: long enough that a mix of slow and fast handlers is seen as its
# mean (Little's law wants the mean), short enough to follow a change within a few cycles.
RUNS = 64


class ClaimAhead:
    """The claim rule of one worker: `size()` says how many tasks to claim now."""

    def __init__(self, slots: int, horizon_ms: float, batch: int) -> None:
        self.slots = slots
        self.batch = batch
        self._horizon = horizon_ms / 1000
        self._run: float | None = None  # moving mean of a run's seconds in its slot
        self._runs = 0  # the runs the mean has seen, up to RUNS
        self._starts: deque[float] = deque()  # when (monotonic) runs started, the last horizon

    @property
    def stale_after(self) -> float:
        """Seconds after which a task claimed ahead that still waits for a slot goes back to
        the queue (ten horizons, at least a second: its wait was misjudged)."""
        return max(1.0, 10 * self._horizon)

    @property
    def estimate(self) -> float | None:
        """The moving mean of a run's seconds in its slot (None: no estimate)."""
        return self._run

    def started(self, now: float) -> None:
        """A run started at `now` (monotonic)."""
        if self._horizon:
            self._starts.append(now)

    def ran(self, seconds: float) -> None:
        """A run held its slot for `seconds`."""
        run = self._run
        if run is None:
            self._run, self._runs = seconds, 1
            return
        self._runs = min(self._runs + 1, RUNS)
        self._run = run + (seconds - run) / self._runs

    def forget(self) -> None:
        """A claim found nothing: the next stretch of work starts without an estimate."""
        self._run = None

    def ahead(self, now: float, started: Iterable[float] = ()) -> int:
        """How many tasks beyond the slots to hold: those the worker is expected to start
        within the horizon (0 without an estimate, or for runs longer than the horizon).
        `started`: when each running run started."""
        run = self._run
        if run is None or not self._horizon:
            return 0
        starts, since = self._starts, now - self._horizon
        while starts and starts[0] < since:
            starts.popleft()
        per_slot = self._horizon / max(run, 1e-6)
        ahead = min(self.batch, int(self.slots * per_slot), len(starts))
        if ahead:
            slow = sum(1 for at in started if at < since)
            ahead = min(ahead, int((self.slots - slow) * per_slot))
        return ahead

    def size(self, running: int, waiting: int, now: float, started: Iterable[float] = ()) -> int:
        """How many tasks to claim now, holding `running` (which started at `started`) and
        `waiting` (claimed ahead, not started); 0: wait until a slot frees. Without claiming
        ahead: the free slots. With it: nothing until half of what is held ahead has started,
        then up to the slots plus the tasks ahead (so a busy worker claims in batches, not one
        task per freed slot)."""
        held = running + waiting
        if held > self.slots + self.ahead(now) // 2:  # (the slots' runs only if it may claim)
            return 0
        return max(0, min(self.batch, self.slots + self.ahead(now, started) - held))
