"""CPU a no-op task costs the harness's `taskstatus worker` processes: a diagnostic, not a figure.

    .venv/bin/python -m bench.worker_cpu [--n 20000] [--concurrency 8] [--runs 1]

The harness's matched setting (bench/peers/run.py: 2 worker processes, PostgreSQL, a fresh
database): a warm-up of 100 tasks, then `n` `bench.noop` tasks in one `submit_many`; the
workers' utime+stime (/proc/<pid>/stat, every thread) is read before the submit and once
nothing is left to run. CPU, not wall time, so that other load on the machine moves it less.
Run it from each checkout (the workers are that checkout's `.venv`) to compare two trees.
"""

from __future__ import annotations

import argparse
import os
import time
import uuid

from bench.common import cpu_seconds, wait_drained
from bench.peers import run as harness
from taskstatus import connect


def one(n: int, concurrency: int) -> tuple[float, float]:
    """One run: the workers' CPU microseconds a task and the run's tasks a second."""
    tag = f"cpu{uuid.uuid4().hex[:8]}"
    [system] = harness.systems(["taskstatus_postgres"], "", tag)
    setting = harness.Setting(f"2 x {concurrency}", 2, ("--concurrency", str(concurrency)))
    assert system.taskstatus_url is not None
    harness.SCRATCH_DIR.mkdir(parents=True, exist_ok=True)
    harness.run_driver(system, "setup")
    try:
        with harness.workers(system, setting) as procs, connect(system.taskstatus_url) as conn:

            conn.submit_many("bench.noop", [{}] * 100)
            wait_drained(conn, 120)
            time.sleep(0.5)
            before = sum(cpu_seconds(p.pid) for p in procs)
            t0 = time.perf_counter()
            conn.submit_many("bench.noop", [{}] * n)
            wait_drained(conn, 900)
            wall = time.perf_counter() - t0
            after = sum(cpu_seconds(p.pid) for p in procs)
    finally:
        harness.run_driver(system, "drop")
    return (after - before) / n * 1e6, n / wall


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n", type=int, default=20_000)
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--runs", type=int, default=1)
    args = parser.parse_args()
    for _ in range(args.runs):
        us, rate = one(args.n, args.concurrency)
        print(
            f"workers' CPU {us:.1f} us/task, {rate:,.0f} tasks/s "
            f"(n {args.n}, 2 x {args.concurrency}, load {os.getloadavg()[0]:.2f})",
            flush=True,
        )


if __name__ == "__main__":
    main()
