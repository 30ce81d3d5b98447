"""What SQLite's event log costs a task, in instructions (issue 13): a diagnostic, not a figure.

    .venv/bin/python -m bench.event_log_cost [--tasks 1000 3000]

Counts with valgrind's callgrind (instructions, not seconds: the same count whatever else the
machine is doing) one process that submits N no-op tasks to a fresh SQLite store (batches of
500), claims them (100 at a time) and finishes them as a worker does, with the event log and
with its triggers dropped, for two N. The difference between the two N, per task, is what a
task costs the store without the process's start-up; with against without is the log's cost.
A CPU-time measure of the same (bench/events.py `costs`) moves 10-15 % between runs here.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import re
import shutil
import subprocess
import sys

from bench.common import ROOT, database
from bench.events import DROP_EVENT_LOG, _sql, noop_outcomes


def child(events: bool, n: int) -> None:
    """The counted work: submit, claim and finish `n` no-op tasks."""
    import bench.handlers  # noqa: F401 - registers bench.noop
    from taskstatus import connect
    from taskstatus.store import make_store

    with database("sqlite") as url, connect(url) as conn:
        if not events:
            _sql(url, DROP_EVENT_LOG["sqlite"])
        for _ in range(0, n, 500):
            conn.submit_many("bench.noop", [{}] * 500)

        async def work() -> None:
            store = make_store(url)
            await store.open()
            try:
                while got := await store.claim("bench-worker", 100, 60, ["bench.noop"]):
                    await store.finish("bench-worker", noop_outcomes(got))
            finally:
                await store.close()

        asyncio.run(work())


def instructions(events: bool, n: int) -> int:
    """callgrind's instruction count of one child process."""
    out = subprocess.run(
        [
            "valgrind",
            "--tool=callgrind",
            "--callgrind-out-file=/dev/null",
            sys.executable,
            "-m",
            "bench.event_log_cost",
            "--child",
            "on" if events else "off",
            str(n),
        ],
        cwd=ROOT,
        env={**os.environ, "PYTHONHASHSEED": "0"},
        capture_output=True,
        text=True,
        check=True,
    )
    found = re.search(r"I\s+refs:\s+([\d,]+)", out.stderr)
    if found is None:
        raise RuntimeError(f"no instruction count from callgrind:\n{out.stderr[-2000:]}")
    return int(found.group(1).replace(",", ""))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", type=int, nargs=2, default=[1000, 3000])
    parser.add_argument("--child", nargs=2, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args.child[0] == "on", int(args.child[1]))
        return 0
    if shutil.which("valgrind") is None:
        print("needs valgrind (Debian: apt-get install valgrind)", file=sys.stderr)
        return 1
    small, large = args.tasks
    per_task = {}
    for events in (True, False):
        counts = [instructions(events, n) for n in (small, large)]
        per_task[events] = (counts[1] - counts[0]) / (large - small)
        print(
            f"  log {'on ' if events else 'off'}: {per_task[events] / 1000:,.1f} k instructions"
            " a task (submit + claim + finish)",
            flush=True,
        )
    cost = per_task[True] - per_task[False]
    print(
        f"the event log: {cost / 1000:,.1f} k instructions a task,"
        f" {cost / per_task[False]:.1%} of the store's work without it"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
