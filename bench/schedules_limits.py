"""Schedules and limits across worker nodes on PostgreSQL (issue 16's table):

- ``schedule_tasks_60s``: a 1-second interval schedule, 3 worker processes, 60 s: the tasks
  whose firing time falls in the window, ``schedule_duplicates`` (tasks beyond one per firing
  time) and ``schedule_missed`` (firing times of the window without a task), and
  ``schedule_fire_lag_ms_p50`` (a task's `created` after its firing time);
- ``limit_concurrency_max_running``: a handler limited to 2 running, 3 nodes x concurrency 20,
  200 tasks of 50 ms: the most running at any instant from the handlers' own start/end log,
  and ``limit_concurrency_elapsed_s``;
- ``limit_rate_max_1s``: limited to 20 starts/s (burst 20), 3 nodes, 400 tasks: the most
  starts in any 1-second window by the tasks' `launched` (the store's clock when the claim
  took the token), against ``limit_rate_bound`` (rate + burst); ``.handler_log`` the same
  from the handlers' own log (a handler starts a few ms after its claim, unevenly, so a
  window there may hold one more); ``limit_rate_starts_per_s`` over the run;
- ``e2e_tasks_per_s.postgres.limited`` / ``.unlimited``: the e2e run of bench/e2e.py
  (``one_run``: 2 workers x 500, 10,000 no-op tasks) with a concurrency limit of 2,000 on the
  no-op handler (above the 1,000 slots) and without, alternating, 5 runs each, medians;
  ``e2e_limited_vs_unlimited``.

``BENCH_SCHEDULE_SECONDS`` shortens the schedule window (default 60);
``BENCH_LIMITS=schedule,concurrency,rate,e2e`` picks parts.
"""

from __future__ import annotations

import os
import tempfile
import time
from datetime import timedelta
from pathlib import Path
from typing import Any

import bench.handlers  # noqa: F401 - registers the handlers submitted here
from bench.common import database, median, wait_until, workers
from bench.e2e import one_run
from taskstatus import Connection, connect

NODES = 3


def _warm(conn: Connection) -> None:
    """Wait until the workers run tasks (their loops, schedules' included, are going)."""
    conn.submit_many("bench.noop", [{}] * 30)
    wait_until(lambda: conn.count("completionStatus isnull") == 0, 120, "the warm-up", 0.1)
    time.sleep(1.0)


def _log_events(path: Path) -> list[tuple[float, str]]:
    events = []
    for line in path.read_text().splitlines():
        kind, at, _ = line.split()
        events.append((float(at), kind))
    return events


def _most_running(path: Path) -> int:
    running = most = 0
    # at a tie an end comes first: a slot freed and taken at the same instant is not 3
    for _, kind in sorted(_log_events(path), key=lambda e: (e[0], e[1] != "end")):
        running += 1 if kind == "start" else -1
        most = max(most, running)
    return most


def _most_in_a_second(times: list[float]) -> int:
    times = sorted(times)
    most, j = 0, 0
    for i, first in enumerate(times):
        while j < len(times) and times[j] < first + 1.0:
            j += 1
        most = max(most, j - i)
    return most


def schedule(seconds: float) -> dict[str, Any]:
    with database("postgres") as url, connect(url) as conn:
        with workers(url, NODES, "--concurrency", "4"):
            _warm(conn)
            conn.schedules.add("tick", "bench.noop", every=timedelta(seconds=1))
            wait_until(lambda: conn.schedules.get("tick").last_fire is not None, 30, "a firing")
            start = conn.schedules.get("tick").last_fire
            assert start is not None
            time.sleep(seconds + 1.5)
            conn.schedules.pause("tick")
            time.sleep(1.0)
        firings = conn.schedules.firings("tick")
        tasks = {t.id: t for t in conn.query('launcher eq "schedule:tick"', limit=None)}
    end = start + timedelta(seconds=seconds)
    window = [(when, tid) for when, tid in firings if start <= when < end]
    lags = [
        (tasks[tid].created - when).total_seconds() * 1000 for when, tid in window if tid in tasks
    ]
    expected = [start + timedelta(seconds=i) for i in range(round(seconds))]
    recorded = {when for when, tid in window if tid is not None}
    return {
        "schedule_tasks_60s": sum(1 for _, tid in window if tid in tasks),
        "schedule_duplicates": len(tasks) - len({tid for _, tid in firings if tid is not None}),
        "schedule_missed": sum(1 for when in expected if when not in recorded),
        "schedule_fire_lag_ms_p50": round(median(lags), 1) if lags else None,
    }


def concurrency() -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as folder, database("postgres") as url:
        log = Path(folder) / "runs.log"
        with connect(url) as conn:
            conn.limits.set("bench.logged_sleep", concurrency=2)
            with workers(url, NODES, "--concurrency", "20"):
                _warm(conn)
                began = time.time()
                conn.submit_many("bench.logged_sleep", [{"log": str(log), "seconds": 0.05}] * 200)
                wait_until(
                    lambda: conn.count("completionStatus isnull") == 0, 600, "the tasks", 0.1
                )
                elapsed = time.time() - began
            assert (
                conn.count('completionStatus eq "SUCCESS" and uniqueName eq "bench.logged_sleep"')
                == 200
            )
        return {
            "limit_concurrency_max_running": _most_running(log),
            "limit_concurrency_elapsed_s": round(elapsed, 2),
        }


def rate() -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as folder, database("postgres") as url:
        log = Path(folder) / "runs.log"
        with connect(url) as conn:
            conn.limits.set("bench.logged_sleep", rate=20.0, burst=20.0)
            with workers(url, NODES, "--concurrency", "20"):
                _warm(conn)
                conn.submit_many("bench.logged_sleep", [{"log": str(log), "seconds": 0}] * 400)
                wait_until(
                    lambda: conn.count("completionStatus isnull") == 0, 600, "the tasks", 0.1
                )
            assert (
                conn.count('completionStatus eq "SUCCESS" and uniqueName eq "bench.logged_sleep"')
                == 400
            )
            tasks = conn.query('uniqueName eq "bench.logged_sleep"', limit=None)
        launched = [t.launched.timestamp() for t in tasks if t.launched is not None]
        starts = [at for at, kind in _log_events(log) if kind == "start"]
        return {
            "limit_rate_max_1s": _most_in_a_second(launched),
            "limit_rate_max_1s.handler_log": _most_in_a_second(starts),
            "limit_rate_bound": 40,
            "limit_rate_starts_per_s": round((len(starts) - 1) / (max(starts) - min(starts)), 2),
        }


def _limited(url: str) -> None:
    with connect(url) as conn:
        conn.limits.set("bench.noop", concurrency=2000)


def e2e(runs: int = 5) -> dict[str, Any]:
    unlimited, limited = [], []
    for _ in range(runs):
        unlimited.append(one_run("postgres")[0])
        limited.append(one_run("postgres", prepare=_limited)[0])
    u, lim = median(unlimited), median(limited)
    return {
        "e2e_tasks_per_s.postgres.unlimited": round(u),
        "e2e_tasks_per_s.postgres.limited": round(lim),
        "e2e_limited_vs_unlimited": round(lim / u, 3),
        "e2e_limited_runs": " ".join(str(round(x)) for x in limited),
        "e2e_unlimited_runs": " ".join(str(round(x)) for x in unlimited),
    }


def run() -> dict[str, Any]:
    parts = os.environ.get("BENCH_LIMITS", "schedule,concurrency,rate,e2e").split(",")
    figures: dict[str, Any] = {}
    if "schedule" in parts:
        figures |= schedule(float(os.environ.get("BENCH_SCHEDULE_SECONDS", "60")))
    if "concurrency" in parts:
        figures |= concurrency()
    if "rate" in parts:
        figures |= rate()
    if "e2e" in parts:
        figures |= e2e()
    return figures


if __name__ == "__main__":
    import json

    print(json.dumps(run(), indent=2))
