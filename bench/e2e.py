"""e2e_tasks_per_s.* and submit_per_s.*: 10,000 no-op tasks submitted in bulk through the Python
API; two worker processes run them; timed from the first submit until the last is terminal in
the store. Median of 3 runs, each on a fresh database."""

from __future__ import annotations

import time
from collections.abc import Callable

import bench.handlers  # noqa: F401 - registers the handlers submitted here
from bench.common import database, median, wait_until, workers
from taskstatus import Connection, connect

TASKS = 10_000
RUNS = 3
CONCURRENCY = 500
WARMUP = 100


def one_run(
    kind: str,
    handler: str = "bench.noop",
    n: int = TASKS,
    prepare: Callable[[str], None] | None = None,
) -> tuple[float, float]:
    """(end-to-end tasks/s, submit tasks/s) of one run; `prepare(url)` runs on the migrated
    database before the workers start (bench/events.py drops the event log's triggers)."""
    with database(kind) as url, connect(url) as conn:
        if prepare is not None:
            prepare(url)
        with workers(url, 2, "--concurrency", str(CONCURRENCY)):
            return _timed(conn, handler, n)


def _timed(conn: Connection, handler: str, n: int) -> tuple[float, float]:
    # warm up: the workers are running, connected and idle when the clock starts
    conn.submit_many(handler, [{}] * WARMUP)
    wait_until(lambda: conn.count("completionStatus isnull") == 0, 120, "the warm-up")
    time.sleep(0.5)
    start = time.time()
    conn.submit_many(handler, [{}] * n)
    submitted = time.time()
    # Poll gently (a count every few ms would load the database being measured); the end
    # is when the last task became terminal, its `completed` time in the store.
    wait_until(lambda: not conn.query("completionStatus isnull", limit=1), 300, "the end", 0.1)
    last = conn.query("completionStatus pr", "-completed", limit=1)[0]
    assert last.completed is not None
    done = last.completed.timestamp()
    assert conn.count('completionStatus eq "SUCCESS"') == n + WARMUP
    return n / (done - start), n / (submitted - start)


def run(kinds: tuple[str, ...] = ("sqlite", "postgres"), runs: int = RUNS) -> dict[str, float]:
    figures: dict[str, float] = {}
    for kind in kinds:
        results = []
        for i in range(runs):
            results.append(one_run(kind))
            print(
                f"  e2e {kind} run {i + 1}: {results[-1][0]:.0f} tasks/s, "
                f"submit {results[-1][1]:.0f} tasks/s",
                flush=True,
            )
        figures[f"e2e_tasks_per_s.{kind}"] = median([r[0] for r in results])
        figures[f"submit_per_s.{kind}"] = median([r[1] for r in results])
        sync = one_run(kind, "bench.noop_sync")
        print(f"  e2e {kind} sync handler: {sync[0]:.0f} tasks/s", flush=True)
        figures[f"e2e_tasks_per_s.{kind}.sync_handler"] = sync[0]
    return figures
