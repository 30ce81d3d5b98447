"""``python -m bench`` (``make bench``): every benchmark, a table, and bench/results.json.

    python -m bench                 # taskstatus's own figures
    python -m bench --peers         # and the same workload on Celery and Procrastinate
    python -m bench --only e2e,pickup --record

Suites: e2e (e2e_tasks_per_s.*, submit_per_s.*), pickup (pickup_ms_p50.*), status
(status_get_rps, status_get_p99_ms, bare_asgi_rps), lists (list_p95_ms.*), rss
(worker_rss_mb), events (event_latency_ms_*, wait_wakeup_ms_p50.*, sse_streams_1000.*,
e2e_tasks_per_s.*.events_on/off; BENCH_EVENTS=latency,wakeup,streams,overhead picks),
peers (celery_e2e_tasks_per_s, procrastinate_e2e_tasks_per_s).
--record appends the table, the machine and the commit to docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

from bench import e2e, events, lists, pickup, rss, status_get
from bench.common import ROOT

RESULTS = ROOT / "bench" / "results.json"
RECORD = ROOT / "docs" / "benchmarks.md"

SUITES: dict[str, Callable[[], dict[str, float]]] = {
    "e2e": e2e.run,
    "pickup": pickup.run,
    "status": status_get.run,
    "lists": lists.run,
    "rss": rss.run,
    "events": events.run,
}

# figure -> (target as text, whether the measured value meets it); None when there is none
TARGETS: dict[str, tuple[str, Callable[[float, dict[str, float]], bool]]] = {
    "e2e_tasks_per_s.sqlite": (">= 5000", lambda v, f: v >= 5000),
    "e2e_tasks_per_s.postgres": (">= 5000", lambda v, f: v >= 5000),
    "pickup_ms_p50.sqlite": ("<= 3", lambda v, f: v <= 3),
    "pickup_ms_p50.postgres": ("<= 3", lambda v, f: v <= 3),
    "status_get_rps": (">= 50% of bare_asgi_rps", lambda v, f: v >= 0.5 * f["bare_asgi_rps"]),
    "status_get_p99_ms": ("< 20", lambda v, f: v < 20),
    "list_p95_ms.1m": (
        "< 20, <= 2x list_p95_ms.10k",
        lambda v, f: v < 20 and v <= 2 * f["list_p95_ms.10k"],
    ),
    "worker_rss_mb": ("< 200", lambda v, f: v < 200),
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
    "e2e_tasks_per_s.sqlite.events_on": (
        ">= 90% of .events_off",
        lambda v, f: v >= 0.9 * f["e2e_tasks_per_s.sqlite.events_off"],
    ),
    "celery_e2e_tasks_per_s": (
        "e2e >= 6x this",
        lambda v, f: (
            min(f.get("e2e_tasks_per_s.sqlite", 0), f.get("e2e_tasks_per_s.postgres", 0)) >= 6 * v
        ),
    ),
    "procrastinate_e2e_tasks_per_s": (
        "e2e >= 10x this",
        lambda v, f: (
            min(f.get("e2e_tasks_per_s.sqlite", 0), f.get("e2e_tasks_per_s.postgres", 0)) >= 10 * v
        ),
    ),
}


def _peers() -> dict[str, float]:
    from bench.peers.run import run_peers

    return run_peers()


def table(figures: dict[str, float]) -> str:
    rows = [
        f"| {'figure':<40} | {'value':>12} | {'target':<28} | met |",
        f"|{'-' * 42}|{'-' * 14}|{'-' * 30}|-----|",
    ]
    for name in sorted(figures):
        value = figures[name]
        shown = f"{value:,.1f}" if value < 1000 else f"{value:,.0f}"
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


def machine() -> str:
    commit = _git("rev-parse", "--short", "HEAD")
    dirty = _git("status", "--porcelain", "--untracked-files=no")
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
    parser.add_argument(
        "--only", help=f"comma-separated suites of: {', '.join([*SUITES, 'peers'])}"
    )
    parser.add_argument("--peers", action="store_true", help="also run Celery and Procrastinate")
    parser.add_argument(
        "--record", action="store_true", help="append the run to docs/benchmarks.md"
    )
    args = parser.parse_args(argv)

    chosen = args.only.split(",") if args.only else [*SUITES, *(["peers"] if args.peers else [])]
    unknown = set(chosen) - {*SUITES, "peers"}
    if unknown:
        parser.error(f"unknown suites: {', '.join(sorted(unknown))}")
    figures: dict[str, float] = json.loads(RESULTS.read_text()) if RESULTS.exists() else {}
    started = time.monotonic()
    for name in chosen:
        print(f"[bench] {name} ...", flush=True)
        suite = _peers if name == "peers" else SUITES[name]
        figures.update({k: round(v, 2) for k, v in suite().items()})
        RESULTS.write_text(json.dumps(figures, indent=2, sort_keys=True) + "\n")
    shown = table(figures)
    print(shown)
    print(f"[bench] {time.monotonic() - started:.0f} s; figures in {RESULTS.relative_to(ROOT)}")
    if args.record:
        stamp = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
        with RECORD.open("a") as out:
            out.write(f"\n## Run of {stamp}: {', '.join(chosen)}\n\n{machine()}\n\n{shown}\n")
        print(f"[bench] recorded in {RECORD.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
