"""How many tasks a worker claims at once: its free slots, and ahead of them only as far as is
harmless (issue 17).

A task claimed ahead shows as running before its handler starts, and waits in the worker while
other workers may be idle; so the worker claims ahead only as many tasks as it is expected to
start within a short horizon (`WorkerOptions.claim_ahead_ms`), the lesser of two bounds:

- its slots: Little's law on a moving mean of how long a run holds its slot (start to end),
  `slots * horizon / run` slots free within the horizon;
- its own pace: no more than it started in the last horizon (a worker whose loop, not its
  slots, is the bottleneck, as with no-op handlers, starts tasks no faster than it did).

No estimate (a fresh worker, or one whose last claim found nothing: a quiet spell, one task at
a time) or runs longer than the horizon times the slots mean no claiming ahead, as without it.
"""

from __future__ import annotations

from collections import deque

__all__ = ["ClaimAhead"]

# The weight of the newest run in the moving mean: about the last 8 runs count.
WEIGHT = 0.125


class ClaimAhead:
    """The claim rule of one worker: `size()` says how many tasks to claim now."""

    def __init__(self, slots: int, horizon_ms: float, batch: int) -> None:
        self.slots = slots
        self.batch = batch
        self._horizon = horizon_ms / 1000
        self._slot_seconds = slots * self._horizon  # slot time the horizon holds
        self._run: float | None = None  # moving mean of a run's seconds in its slot
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
        self._run = seconds if run is None else run + WEIGHT * (seconds - run)

    def forget(self) -> None:
        """A claim found nothing: the next stretch of work starts without an estimate."""
        self._run = None

    def ahead(self, now: float) -> int:
        """How many tasks beyond the slots to hold: those the worker is expected to start
        within the horizon (0 without an estimate, or for runs longer than the horizon)."""
        run = self._run
        if run is None or not self._horizon:
            return 0
        starts, since = self._starts, now - self._horizon
        while starts and starts[0] < since:
            starts.popleft()
        return min(self.batch, int(self._slot_seconds / max(run, 1e-6)), len(starts))

    def size(self, running: int, waiting: int, now: float) -> int:
        """How many tasks to claim now, holding `running` and `waiting` (claimed ahead, not
        started); 0: wait until a slot frees. Without claiming ahead: the free slots. With it:
        nothing until half of what is held ahead has started, then up to the slots plus the
        tasks ahead (so a busy worker claims in batches, not one task per freed slot)."""
        ahead = self.ahead(now)
        held = running + waiting
        if held > self.slots + ahead // 2:
            return 0
        return max(0, min(self.batch, self.slots + ahead - held))
