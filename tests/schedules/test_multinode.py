"""Schedules and limits with several worker processes on one database, on SQLite and on
PostgreSQL: the rows of issue 16's table as functional checks (shorter than the bench, and
no timing assertions beyond what the store itself guarantees)."""

from __future__ import annotations

import collections
import itertools
import time
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest

from taskstatus import connect
from taskstatus.connection import Connection
from tests.worker.test_processes import Workers, until

pytestmark = [pytest.mark.slow, pytest.mark.timeout(240)]


@pytest.fixture
def conn(store_url: str) -> Iterator[Connection]:
    """A connection to the test database, with the schedule tests' handlers registered."""
    import tests.schedules.handlers  # noqa: F401 - registers the handlers for submit

    with connect(store_url) as c:
        yield c


@pytest.fixture
def nodes(store_url: str, tmp_path: Path) -> Iterator[Workers]:
    """Starts worker processes on the test database; kills them all afterwards."""
    w = Workers(store_url, tmp_path)
    yield w
    w.stop_all()


def start(nodes: Workers, n: int, concurrency: int) -> None:
    """Start `n` worker processes with the test handlers, each running `concurrency` at once."""
    for _ in range(n):
        nodes.start("--import", "tests.schedules.handlers", "--concurrency", str(concurrency))


def most_at_once(log: Path) -> int:
    """The most runs between their start and end at any instant, from the handlers' log."""
    events = []
    for line in log.read_text().splitlines():
        kind, at, _ = line.split()
        events.append((float(at), 0 if kind == "end" else 1))  # an end before a start at a tie
    running = most = 0
    for _, starts in sorted(events):
        running += 1 if starts else -1
        most = max(most, running)
    return most


def test_an_interval_schedule_fires_once_per_firing_with_three_nodes(
    conn: Connection, nodes: Workers
) -> None:
    """Three worker processes race to fire a 1-second schedule: every firing time has exactly
    one task (QUARTZ, launched by schedule:tick), none is missed while they run."""
    conn.schedules.add("tick", "Tick", every=timedelta(seconds=1))
    start(nodes, 3, 4)
    until(lambda: conn.count('launcher eq "schedule:tick"') >= 6, 90, "six firings")
    conn.schedules.pause("tick")
    time.sleep(1.5)  # a firing in flight when paused lands before we look
    tasks = conn.query('launcher eq "schedule:tick"', limit=None)
    recorded = conn.schedules.firings("tick")
    with_task = [tid for _, tid in recorded if tid is not None]
    assert sorted(with_task) == sorted(t.id for t in tasks)  # one task per firing, no other
    times = [when for when, _ in recorded]
    assert len(set(times)) == len(times)
    # whole seconds apart (a gap of 2 or more: every node stalled, and `skip` fired once)
    gaps = [(b - a).total_seconds() for a, b in itertools.pairwise(times)]
    assert all(g >= 1 and abs(g - round(g)) < 1e-6 for g in gaps), gaps
    assert all(t.type.value == "QUARTZ" for t in tasks)
    assert conn.count('launcher eq "schedule:tick"') == len(tasks)  # no more after the pause


def test_a_concurrency_limit_holds_across_three_nodes(
    conn: Connection, nodes: Workers, tmp_path: Path
) -> None:
    """Limited to 2 running, 3 processes of 10 slots each run 30 short tasks: never more
    than 2 at once by the handlers' own log, and every task succeeds (no attempt lost)."""
    log = tmp_path / "runs.log"
    conn.limits.set("Logged nap", concurrency=2)
    tasks = conn.submit_many("Logged nap", [{"log": str(log), "seconds": 0.05}] * 30)
    start(nodes, 3, 10)
    for t in tasks:
        done = conn.wait(t.id, timeout=180)
        assert done.completion_status is not None and done.completion_status.value == "SUCCESS"
        assert done.attempts == 1
    assert most_at_once(log) <= 2
    assert len(log.read_text().splitlines()) == 60


def test_a_rate_limit_holds_across_three_nodes(conn: Connection, nodes: Workers) -> None:
    """Limited to 5 starts/s (burst 5), 3 processes start 25 tasks: no 1-second window of
    claim times holds more than rate + burst."""
    conn.limits.set("Tick", rate=5.0, burst=5.0)
    tasks = conn.submit_many("Tick", [{}] * 25)
    start(nodes, 3, 10)
    launched = []
    for t in tasks:
        done = conn.wait(t.id, timeout=180)
        assert done.launched is not None and done.attempts == 1
        launched.append(done.launched.timestamp())
    launched.sort()
    in_a_second = max(
        sum(1 for x in launched[i:] if x < first + 1.0) for i, first in enumerate(launched)
    )
    assert in_a_second <= 10, launched


def test_a_per_key_limit_splits_by_argument(
    conn: Connection, nodes: Workers, tmp_path: Path
) -> None:
    """concurrency 1 per `log` value: two keys run side by side, neither runs twice at once."""
    conn.limits.set("Logged nap", concurrency=1, limit_key="log")
    logs = [tmp_path / "a.log", tmp_path / "b.log"]
    tasks = conn.submit_many(
        "Logged nap", [{"log": str(logs[i % 2]), "seconds": 0.05} for i in range(12)]
    )
    start(nodes, 2, 5)
    for t in tasks:
        assert conn.wait(t.id, timeout=180).completion_status is not None
    assert [most_at_once(p) for p in logs] == [1, 1]
    counts = collections.Counter(p.name for p in logs for _ in p.read_text().splitlines())
    assert counts == {"a.log": 12, "b.log": 12}
