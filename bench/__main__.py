"""``python -m bench`` (``make bench``): every benchmark, a table, and bench/results.json.

    python -m bench                 # taskstatus's own figures
    python -m bench --peers         # and the same harness run with Celery, Procrastinate,
                                    # PgQueuer and Dramatiq
    python -m bench --only e2e,pickup --record

Suites: e2e (the harness, bench/peers/run.py, on taskstatus: e2e_tasks_per_s.*,
submit_per_s.*, pickup_ms_p50.postgres, harness.*), peers (the same harness run with every
peer: peers_matched_e2e, peers_best_e2e), claim (claim8_ms.*: a claim of 8 without
statistics), stored (e2e with 1,000,000 finished tasks stored vs empty), pickup
(pickup_ms_p50.sqlite, in process), status (status_get_rps, status_get_p99_ms,
bare_asgi_rps), lists (list_p95_ms.*), rss (worker_rss_mb),
ui (ui_ms_p50.*, ui_ms_p95.*: the dashboard's pages at 1 M tasks),
events (event_latency_ms_*, wait_wakeup_ms_p50.*, sse_streams_1000.*,
e2e_tasks_per_s.*.events_on/off; BENCH_EVENTS=latency,wakeup,streams,overhead picks),
limits (schedule_*, limit_*, e2e_tasks_per_s.postgres.limited/unlimited: bench/schedules_limits.py).
--record appends the table, the machine and the commit to docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import subprocess
import sys
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from bench import e2e, events, lists, pickup, rss, schedules_limits, status_get, stored, ui
from bench.common import ROOT

RESULTS = ROOT / "bench" / "results.json"
RECORD = ROOT / "docs" / "benchmarks.md"


def _claim() -> dict[str, Any]:
    from bench.common import PG_ADMIN
    from bench.pg_plans import queue_checks

    return asyncio.run(queue_checks(PG_ADMIN))[0]


SUITES: dict[str, Callable[[], dict[str, Any]]] = {
    "e2e": e2e.run,
    "peers": e2e.run_with_peers,
    "claim": _claim,
    "stored": stored.run,
    "pickup": pickup.run,
    "status": status_get.run,
    "lists": lists.run,
    "rss": rss.run,
    "events": events.run,
    "ui": ui.run,
    "limits": schedules_limits.run,
}
DEFAULT = (
    "e2e",
    "claim",
    "stored",
    "pickup",
    "status",
    "lists",
    "rss",
    "events",
    "ui",
    "limits",
)

Check = Callable[[float, dict[str, Any]], bool]
# figure -> (target as text, whether the measured value meets it); None when there is none
TARGETS: dict[str, tuple[str, Check]] = {
    "peers_matched_e2e": (">= 2 (x the best peer)", lambda v, f: v >= 2),
    "peers_best_e2e": (">= 1 (x the best peer)", lambda v, f: v >= 1),
    "e2e_tasks_per_s.sqlite": (">= 25000", lambda v, f: v >= 25_000),
    "e2e_tasks_per_s.postgres": (">= 20000", lambda v, f: v >= 20_000),
    "pickup_ms_p50.sqlite": ("<= 3", lambda v, f: v <= 3),
    "pickup_ms_p50.postgres": ("<= 3", lambda v, f: v <= 3),
    "e2e_stored_1m_vs_empty": (">= 0.9", lambda v, f: v >= 0.9),
    "claim8_ms.100k": ("<= 1", lambda v, f: v <= 1),
    "status_get_rps": (">= 50% of bare_asgi_rps", lambda v, f: v >= 0.5 * f["bare_asgi_rps"]),
    "status_get_p99_ms": ("< 20", lambda v, f: v < 20),
    "list_p95_ms.1m": (
        "< 20, <= 2x list_p95_ms.10k",
        lambda v, f: v < 20 and v <= 2 * f["list_p95_ms.10k"],
    ),
    "worker_rss_mb": ("< 200", lambda v, f: v < 200),
    **{
        f"ui_ms_p95.{who}.{page}": ("< 300", lambda v, f: v < 300)
        for who in ("admin", "reader")
        for page in (
            "overview",
            "tasks",
            "tasks_pending",
            "tasks_filter",
            "tasks_search",
            "task",
            "handlers",
            "workers",
        )
    },
    "event_latency_ms_p50.postgres": ("<= 20", lambda v, f: v <= 20),
    "event_latency_ms_p99.postgres": ("<= 100", lambda v, f: v <= 100),
    "event_latency_ms_p50.sqlite": ("<= 30", lambda v, f: v <= 30),
    "event_latency_ms_p99.sqlite": ("<= 100", lambda v, f: v <= 100),
    "wait_wakeup_ms_p50.postgres": ("<= 20", lambda v, f: v <= 20),
    "wait_wakeup_ms_p50.sqlite": ("<= 20", lambda v, f: v <= 20),
    "sse_streams_1000.missed_events": ("0", lambda v, f: v == 0),
    "sse_streams_1000.rss_mb": ("< 300", lambda v, f: v < 300),
    "sse_streams_1000.status_get_ratio": (">= 0.7", lambda v, f: v >= 0.7),
    "e2e_tasks_per_s.postgres.events_on": (
        ">= 90% of .events_off",
        lambda v, f: v >= 0.9 * f["e2e_tasks_per_s.postgres.events_off"],
    ),
    "schedule_tasks_60s": ("60 +- 1", lambda v, f: abs(v - 60) <= 1),
    "schedule_duplicates": ("0", lambda v, f: v == 0),
    "limit_concurrency_max_running": ("<= 2", lambda v, f: v <= 2),
    "limit_rate_max_1s": ("<= 40 (rate + burst)", lambda v, f: v <= 40),
    "e2e_limited_vs_unlimited": (">= 0.9", lambda v, f: v >= 0.9),
    "e2e_tasks_per_s.sqlite.events_on": (
        ">= 90% of .events_off",
        lambda v, f: v >= 0.9 * f["e2e_tasks_per_s.sqlite.events_off"],
    ),
}


def table(figures: dict[str, Any]) -> str:
    rows = [
        f"| {'figure':<40} | {'value':>12} | {'target':<28} | met |",
        f"|{'-' * 42}|{'-' * 14}|{'-' * 30}|-----|",
    ]
    for name in sorted(figures):
        value = figures[name]
        if isinstance(value, str):  # a setting, printed beside its figure
            rows.append(f"| {name:<40} | {value[:60]} | | |")
            continue
        shown = (
            f"{value:,.2f}" if value < 10 else f"{value:,.1f}" if value < 1000 else f"{value:,.0f}"
        )
        target, met = "", ""
        if name in TARGETS:
            target = TARGETS[name][0]
            try:
                met = "yes" if TARGETS[name][1](value, figures) else "NO"
            except KeyError:
                met = "?"
        rows.append(f"| {name:<40} | {shown:>12} | {target:<28} | {met:<3} |")
    return "\n".join(rows)


def _git(*args: str) -> str:
    run = subprocess.run(["git", *args], cwd=ROOT, capture_output=True, text=True, check=False)
    return run.stdout.strip()


def _dirty() -> bool:
    return bool(_git("status", "--porcelain", "--untracked-files=no"))


def machine(dirty: bool) -> str:
    """The commit measured (`dirty`: with uncommitted changes), the CPU, Python, the load."""
    commit = _git("rev-parse", "--short", "HEAD")
    cpu = next(
        (
            line.split(":", 1)[1].strip()
            for line in Path("/proc/cpuinfo").read_text().splitlines()
            if line.startswith("model name")
        ),
        platform.processor(),
    )
    load = ", ".join(f"{x:.2f}" for x in os.getloadavg())
    changes = " (with uncommitted changes)" if dirty else ""
    return (
        f"commit {commit}{changes}; {os.cpu_count()} x {cpu}; "
        f"Python {platform.python_version()}; load average at the end {load}"
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bench",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--only", help=f"comma-separated suites of: {', '.join(SUITES)}")
    parser.add_argument(
        "--peers", action="store_true", help="run the harness with every peer (replaces e2e)"
    )
    parser.add_argument(
        "--record", action="store_true", help="append the run to docs/benchmarks.md"
    )
    args = parser.parse_args(argv)

    chosen = args.only.split(",") if args.only else list(DEFAULT)
    if args.peers or "peers" in chosen:  # one harness run: taskstatus and the peers together
        chosen = ["peers" if c == "e2e" else c for c in chosen if c != "peers"]
        chosen = chosen if "peers" in chosen else ["peers", *chosen]
    unknown = set(chosen) - set(SUITES)
    if unknown:
        parser.error(f"unknown suites: {', '.join(sorted(unknown))}")
    figures: dict[str, Any] = json.loads(RESULTS.read_text()) if RESULTS.exists() else {}
    dirty = _dirty()  # before this run rewrites bench/results.json
    started = time.monotonic()
    this_run: dict[str, Any] = {}  # results.json keeps earlier runs' figures too; this not
    for name in chosen:
        print(f"[bench] {name} ...", flush=True)
        measured = SUITES[name]()
        this_run.update({k: v if isinstance(v, str) else round(v, 3) for k, v in measured.items()})
        figures.update(this_run)
        RESULTS.write_text(json.dumps(figures, indent=2, sort_keys=True) + "\n")
    shown = table(this_run)
    print(shown)
    print(f"[bench] {time.monotonic() - started:.0f} s; figures in {RESULTS.relative_to(ROOT)}")
    if args.record:
        stamp = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
        with RECORD.open("a") as out:
            out.write(f"\n## Run of {stamp}: {', '.join(chosen)}\n\n{machine(dirty)}\n\n{shown}\n")
        print(f"[bench] recorded in {RECORD.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
