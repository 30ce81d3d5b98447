"""e2e_tasks_per_s.*, submit_per_s.*, pickup_ms_p50.postgres and the peers' figures: the
harness (bench/peers/run.py), one workload and one way of counting for every system.

``run()`` is taskstatus alone (PostgreSQL and SQLite, both tiers); ``run_with_peers()`` adds
Celery, Procrastinate, PgQueuer and Dramatiq to the same run, so that the ratios
(``peers_matched_e2e``, ``peers_best_e2e``) compare figures measured side by side. Each adds
one run with a sync handler (run in a thread) at the best setting:
``e2e_tasks_per_s.{postgres,sqlite}.sync_handler``. ``one_run()`` is the run bench/events.py
times with and without the event log.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import bench.handlers  # noqa: F401 - registers the handlers submitted here
from bench.common import database, wait_until, workers
from bench.peers import run as harness
from taskstatus import Connection, connect

OURS = ("taskstatus_postgres", "taskstatus_sqlite")
# one_run: the events suite's with/without comparison (bench/events.py), its own method: two
# workers at concurrency 500, timed to the last task's `completed`
TASKS = 10_000
CONCURRENCY = 500
WARMUP = 100


def _sync_handler(figures: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for system in harness.systems(OURS, "", "sync"):
        label = str(figures[f"harness.{system.name}.best_setting"])
        setting = {s.label: s for s in (system.matched, *system.sweep)}[label]
        system.env["BENCH_TASKSTATUS_HANDLER"] = "bench.noop_sync"
        report = harness.one_run(system, setting, 10_000)
        out[f"e2e_tasks_per_s.{system.name.removeprefix('taskstatus_')}.sync_handler"] = report[
            "e2e_tasks_per_s"
        ]
    return out


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


def run() -> dict[str, Any]:
    figures = harness.run_harness(OURS)
    return figures | _sync_handler(figures)


def run_with_peers() -> dict[str, Any]:
    figures = harness.run_harness(harness.ALL)
    return figures | _sync_handler(figures)
