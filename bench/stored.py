"""e2e_stored_1m_vs_empty: the harness's taskstatus PostgreSQL run on a database that already
holds 1,000,000 finished tasks (bench/pg_plans.py's mix less its pending tasks: finished over
120 days, messages, deleted history; vacuumed and analyzed once, as a long-lived database
is), against the same run on an empty database, both created with STRATEGY FILE_COPY. The two
alternate, 3 runs each, at the best setting of the last harness run in bench/results.json
(2 processes x concurrency 500 when there is none); medians.
"""

from __future__ import annotations

import asyncio
import json
import statistics
from typing import Any

import psycopg

from bench.common import PG_ADMIN, ROOT
from bench.peers import run as harness
from bench.pg_plans import load, url_of

TEMPLATE = "taskstatus_bench_stored_1m"
ROWS = 1_031_000  # about 3 % are pending (removed): 1,000,000 finished remain
RUNS = 3


def _setting(system: harness.System) -> harness.Setting:
    results = ROOT / "bench" / "results.json"
    figures: dict[str, Any] = json.loads(results.read_text()) if results.exists() else {}
    label = figures.get("harness.taskstatus_postgres.best_setting", "")
    settings = {s.label: s for s in (system.matched, *system.sweep)}
    return settings.get(label) or settings["2 processes x concurrency 500"]


def run() -> dict[str, float]:
    asyncio.run(load(PG_ADMIN, TEMPLATE, ROWS, reuse=False))
    with psycopg.connect(url_of(PG_ADMIN, TEMPLATE), autocommit=True) as conn:
        conn.execute("DELETE FROM tasks WHERE completion_status IS NULL")
        # in creation order, as a store that took its tasks over time lays them out: the
        # generator's rows come in random creation order, and the pending tasks deleted above
        # (3 %, the newest in a real store) would leave holes on every page, which the free
        # space map offers to each new task (one cold page and one WAL full-page image per
        # task; helper analysis in docs/benchmarks.md)
        conn.execute("CLUSTER tasks USING tasks_created")
        conn.execute("VACUUM (ANALYZE) tasks")
        row = conn.execute("SELECT count(*) FROM tasks").fetchone()
    print(f"  stored: {row[0] if row else '?':,} finished tasks in {TEMPLATE}", flush=True)
    (empty,) = harness.systems(["taskstatus_postgres"], "", "stored_empty")
    (full,) = harness.systems(["taskstatus_postgres"], "", "stored_1m")
    full.env["BENCH_TASKSTATUS_TEMPLATE"] = TEMPLATE
    for system in (empty, full):  # both copied alike, neither inheriting a checkpoint
        system.env["BENCH_TASKSTATUS_CREATE_STRATEGY"] = "FILE_COPY"
    setting = _setting(empty)
    rates: dict[str, list[float]] = {"empty": [], "1m": []}
    try:
        for _ in range(RUNS):
            for name, system in (("empty", empty), ("1m", full)):
                rates[name].append(harness.one_run(system, setting, 10_000)["e2e_tasks_per_s"])
    finally:
        with psycopg.connect(PG_ADMIN, autocommit=True) as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{TEMPLATE}" WITH (FORCE)')
    medians = {name: statistics.median(values) for name, values in rates.items()}
    print(
        f"  stored ({setting.label}): empty {medians['empty']:.0f}, 1M {medians['1m']:.0f} tasks/s"
    )
    return {
        "e2e_tasks_per_s.postgres.stored_empty": medians["empty"],
        "e2e_tasks_per_s.postgres.stored_1m": medians["1m"],
        "e2e_stored_1m_vs_empty": medians["1m"] / medians["empty"],
    }
