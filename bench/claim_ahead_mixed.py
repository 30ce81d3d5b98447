"""How long tasks claimed ahead wait, with slow handlers among fast ones: a diagnostic.

    .venv/bin/python -m bench.claim_ahead_mixed [--chunks 50] [--fast 99] [--slow 1]
        [--seconds 0.2] [--python PATH] [-- ARGS]

The harness's matched setting (2 `taskstatus worker` processes x 8 slots, PostgreSQL, a fresh
database). `chunks` times: `fast` `bench.started` tasks (no-ops that store when they started)
then `slow` `bench.sleep` tasks of `seconds`, each chunk one `submit_many`, as fast as they
go. For every fast task: its wait from its claim (`launched`, set by the claim) to its
handler's start, which is what claiming ahead adds, and from its submit to its start (what a
submitter waits); and the time for the whole lot. A fast
task claimed ahead behind slow ones waits for a slot; the horizon bounds how many do.
`--python` runs the workers on another checkout's interpreter; arguments after `--` go to
`taskstatus worker`.
"""

from __future__ import annotations

import argparse
import os
import time
import uuid
from dataclasses import replace
from pathlib import Path

import psycopg

from bench.common import percentile, wait_drained
from bench.peers import run as harness
from taskstatus import connect


def one(args: argparse.Namespace) -> str:
    tag = f"mx{uuid.uuid4().hex[:8]}"
    [system] = harness.systems(["taskstatus_postgres"], "", tag)
    if args.python is not None:
        system = replace(system, python=args.python)
    setting = harness.Setting("2 x 8", 2, ("--concurrency", "8", *args.worker_args))
    assert system.taskstatus_url is not None
    url = system.taskstatus_url
    harness.SCRATCH_DIR.mkdir(parents=True, exist_ok=True)
    harness.run_driver(system, "setup")
    try:
        with harness.workers(system, setting), connect(url) as conn:

            conn.submit_many("bench.noop", [{}] * 100)
            wait_drained(conn, 120, 0.02)
            time.sleep(0.5)
            t0 = time.perf_counter()
            for _ in range(args.chunks):
                conn.submit_many("bench.started", [{}] * args.fast)
                if args.slow:
                    conn.submit_many("bench.sleep", [{"seconds": args.seconds}] * args.slow)
            wait_drained(conn, 900, 0.02)
            wall = time.perf_counter() - t0
        with psycopg.connect(url) as db:
            rows = db.execute(
                "SELECT extract(epoch FROM created)::float8, extract(epoch FROM launched)::float8,"
                " (attributes->>'started')::float8 FROM tasks WHERE handler = 'bench.started'"
            ).fetchall()
    finally:
        harness.run_driver(system, "drop")
    waits = [(started - launched) * 1000 for _, launched, started in rows]
    queued = [(started - created) * 1000 for created, _, started in rows]
    n = args.chunks * (args.fast + args.slow)
    over = sum(1 for w in waits if w > 50)
    return (
        f"{args.label or 'this tree'}: claim-to-start of {len(waits)} fast tasks: "
        f"p50 {percentile(waits, 50):.1f} ms, p99 {percentile(waits, 99):.1f} ms, "
        f"max {max(waits):.1f} ms, {over} over 50 ms; submit-to-start p50 "
        f"{percentile(queued, 50):.0f} ms, p99 {percentile(queued, 99):.0f} ms; "
        f"{n} tasks in {wall:.2f} s "
        f"(load {os.getloadavg()[0]:.2f})"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--chunks", type=int, default=50)
    parser.add_argument("--fast", type=int, default=99)
    parser.add_argument("--slow", type=int, default=1)
    parser.add_argument("--seconds", type=float, default=0.2)
    parser.add_argument("--runs", type=int, default=1)
    parser.add_argument("--python", type=Path, default=None, help="the workers' interpreter")
    parser.add_argument("--label", default="")
    parser.add_argument("worker_args", nargs="*", help="after --: more `taskstatus worker` args")
    args = parser.parse_args()
    for _ in range(args.runs):
        print(one(args), flush=True)


if __name__ == "__main__":
    main()
