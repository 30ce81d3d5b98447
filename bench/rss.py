"""worker_rss_mb: peak resident memory of a worker process running 1,000 concurrent sleeping
tasks (async handlers, concurrency 1,000)."""

from __future__ import annotations

import time
from pathlib import Path

import bench.handlers  # noqa: F401 - registers the handler submitted here
from bench.common import database, wait_until, workers
from taskstatus import connect

TASKS = 1_000


def _peak_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError("no VmHWM in /proc status")


def run(kind: str = "sqlite") -> dict[str, float]:
    with (
        database(kind) as url,
        connect(url) as conn,
        workers(url, 1, "--concurrency", str(TASKS)) as (proc,),
    ):
        conn.submit_many("bench.sleep", [{"seconds": 20}] * TASKS)
        wait_until(lambda: conn.count('state eq "running"') == TASKS, 60, "all tasks to run")
        time.sleep(2)  # heartbeats and progress flushes of 1,000 running tasks
        peak = _peak_mb(proc.pid)
    print(f"  worker rss with {TASKS} running tasks: {peak:.1f} MB", flush=True)
    return {"worker_rss_mb": peak}
