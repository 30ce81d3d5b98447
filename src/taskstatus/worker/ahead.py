"""How many tasks a worker claims at once: its free slots, and ahead of them only as far as is
harmless (issue 17).

A task claimed ahead shows as running before its handler starts, and waits in the worker while
other workers may be idle; so the worker claims ahead only as many tasks as its slots are
expected to start within a short horizon (`WorkerOptions.claim_ahead_ms`). The expectation is
Little's law on a moving mean of how long a run holds its slot, from its start to its end (the
handler and the worker's own work for it, so a worker whose loop is the bottleneck sees longer
runs): `slots * horizon / run` slots free within the horizon. No estimate (a fresh worker, or
one whose last claim found nothing: a quiet spell, one task at a time) or runs longer than the
horizon times the slots mean no claiming ahead, as without it.
"""

from __future__ import annotations

__all__ = ["ClaimAhead"]

# The weight of the newest run in the moving mean: about the last 8 runs count.
WEIGHT = 0.125


class ClaimAhead:
    """The claim rule of one worker: `size()` says how many tasks to claim now."""

    def __init__(self, slots: int, horizon_ms: float, batch: int) -> None:
        self.slots = slots
        self.batch = batch
        self._slot_seconds = slots * horizon_ms / 1000  # slot time the horizon holds
        self._run: float | None = None  # moving mean of a run's seconds in its slot

    @property
    def estimate(self) -> float | None:
        """The moving mean of a run's seconds in its slot (None: no estimate)."""
        return self._run

    def ran(self, seconds: float) -> None:
        """A run held its slot for `seconds`."""
        run = self._run
        self._run = seconds if run is None else run + WEIGHT * (seconds - run)

    def forget(self) -> None:
        """A claim found nothing: the next stretch of work starts without an estimate."""
        self._run = None

    def ahead(self) -> int:
        """How many tasks beyond the slots to hold: those the slots are expected to start
        within the horizon (0 without an estimate, or for runs longer than the horizon)."""
        run = self._run
        if run is None or not self._slot_seconds:
            return 0
        return min(self.batch, int(self._slot_seconds / max(run, 1e-6)))

    def size(self, running: int, waiting: int) -> int:
        """How many tasks to claim now, holding `running` and `waiting` (claimed ahead, not
        started); 0: wait until a slot frees. Without claiming ahead: the free slots. With it:
        nothing until half of what is held ahead has started, then up to the slots plus the
        tasks ahead (so a busy worker claims in batches, not one task per freed slot)."""
        ahead = self.ahead()
        held = running + waiting
        if held > self.slots + ahead // 2:
            return 0
        return max(0, min(self.batch, self.slots + ahead - held))
