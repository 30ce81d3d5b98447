"""The claim rule (worker/ahead.py) on its own, with made-up times: how many tasks to claim."""

from __future__ import annotations

from taskstatus.worker.ahead import ClaimAhead


def test_without_an_estimate_it_claims_the_free_slots() -> None:
    """No run has ended (or the last claim found nothing): the free slots, as without
    claiming ahead, and nothing while every slot is busy."""
    rule = ClaimAhead(8, 20, 500)
    for t in range(8):
        rule.started(t / 1000)
    assert rule.size(0, 0, 0.01) == 8
    assert rule.size(5, 0, 0.01) == 3
    assert rule.size(8, 0, 0.01) == 0
    rule.ran(0.0001)
    rule.forget()
    assert rule.size(8, 0, 0.01) == 0


def test_ahead_is_bounded_by_the_slots_and_by_the_pace() -> None:
    """Ahead: at most what the slots free within the horizon (8 slots x 20 ms / 10 ms runs =
    16) and at most what the worker started in the last horizon (its own pace)."""
    rule = ClaimAhead(8, 20, 500)
    for t in range(40):  # 40 starts within the last 20 ms
        rule.started(t / 2000)
    rule.ran(0.010)
    assert rule.ahead(0.02) == 16
    rule.forget()
    rule.ran(0.001)  # 1 ms runs: the slots would allow 160
    assert rule.ahead(0.02) == 40  # ... but it started 40 in the last 20 ms
    assert rule.ahead(0.03) == 20  # 10 ms later: only the last 20 of them are that recent
    assert rule.ahead(0.05) == 0  # nothing started for a horizon: no claiming ahead


def test_slow_runs_give_no_claiming_ahead() -> None:
    """Runs longer than the horizon times the slots (8 x 20 ms) never claim ahead, however
    many started together."""
    rule = ClaimAhead(8, 20, 500)
    for _ in range(8):
        rule.started(1.0)
        rule.ran(0.2)
    assert rule.ahead(1.001) == 0
    assert rule.size(0, 0, 1.001) == 8


def test_it_refills_in_batches_and_respects_claim_batch() -> None:
    """A busy worker claims again only once half of what it holds ahead has started, then up to
    the slots plus the tasks ahead, never more than claim_batch."""
    rule = ClaimAhead(8, 20, 30)
    for t in range(100):
        rule.started(t / 10000)
    rule.ran(0.0001)
    assert rule.ahead(0.01) == 30  # the batch caps it
    assert rule.size(8, 16, 0.01) == 0  # 16 ahead of 30: more than half left
    assert rule.size(8, 15, 0.01) == 15
    assert rule.size(0, 0, 0.01) == 30  # slots + ahead, capped by claim_batch


def test_a_zero_horizon_is_off() -> None:
    """claim_ahead_ms=0: the free slots only, whatever the runs."""
    rule = ClaimAhead(8, 0, 500)
    for t in range(100):
        rule.started(t / 10000)
    rule.ran(0.0001)
    assert rule.ahead(0.01) == 0
    assert rule.size(4, 0, 0.01) == 4


def test_slots_whose_run_outlasted_the_horizon_are_not_counted() -> None:
    """A slot whose run has gone on for longer than the horizon is taken for a slow run, not
    expected to free within it, however fast the mean run: with all 8 so, no claiming ahead;
    with 4, half the slots' share (4 x 20 ms / 1 ms)."""
    rule = ClaimAhead(8, 20, 500)
    for t in range(100):
        rule.started(0.1 + t / 10000)
    rule.ran(0.001)
    now = 0.11
    assert rule.ahead(now) == 100  # the pace
    assert rule.ahead(now, [0.05] * 8) == 0
    assert rule.size(8, 0, now, [0.05] * 8) == 0
    assert rule.ahead(now, [0.05] * 4 + [0.105] * 4) == 80
