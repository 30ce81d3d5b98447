"""e2e_tasks_per_s.*, submit_per_s.*, pickup_ms_p50.postgres and the peers' figures: the
harness (bench/peers/run.py), one workload and one way of counting for every system.

``run()`` is taskstatus alone (PostgreSQL and SQLite, both tiers); ``run_with_peers()`` adds
Celery, Procrastinate, PgQueuer and Dramatiq to the same run, so that the ratios
(``peers_matched_e2e``, ``peers_best_e2e``) compare figures measured side by side. Each adds
one run with a sync handler (run in a thread) at the best setting:
``e2e_tasks_per_s.{postgres,sqlite}.sync_handler``.
"""

from __future__ import annotations

from typing import Any

from bench.peers import run as harness

OURS = ("taskstatus_postgres", "taskstatus_sqlite")


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


def run() -> dict[str, Any]:
    figures = harness.run_harness(OURS)
    return figures | _sync_handler(figures)


def run_with_peers() -> dict[str, Any]:
    figures = harness.run_harness(harness.ALL)
    return figures | _sync_handler(figures)
