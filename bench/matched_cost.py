"""CPU and transactions a no-op task costs in the harness's matched setting, workers and
PostgreSQL backends both: a diagnostic, not a figure.

    .venv/bin/python -m bench.matched_cost [--n 20000] [--runs 1] [--python PATH] [-- ARGS]

bench/worker_cpu.py's run (2 `taskstatus worker` processes x 8 slots, a fresh database, a
warm-up of 100 tasks, then `n` `bench.noop` tasks in one `submit_many`), read three ways
between the submit and the moment nothing is left to run: the workers' utime+stime, the
utime+stime of the database's backends (/proc, so this must run on the database's machine),
and the database's committed transactions (pg_stat_database.xact_commit; this harness's own
polls, one every 50 ms, are among them). `--python` runs the workers on another checkout's
interpreter (its `.venv/bin/python`: that tree's taskstatus) to compare two trees in one
harness; arguments after `--` go to `taskstatus worker`.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import time
import uuid
from dataclasses import replace
from pathlib import Path
from urllib.parse import urlsplit

import psycopg

from bench.common import cpu_seconds, wait_drained
from bench.peers import run as harness
from taskstatus import connect


def _backends(admin: psycopg.Connection[tuple[object, ...]], db: str) -> dict[int, float]:
    rows = admin.execute(
        "SELECT pid FROM pg_stat_activity WHERE datname = %s AND backend_type = 'client backend'",
        (db,),
    ).fetchall()
    out = {}
    for (pid,) in rows:
        assert isinstance(pid, int)
        with contextlib.suppress(OSError):  # it ended meanwhile
            out[pid] = cpu_seconds(pid)
    return out


def _commits(admin: psycopg.Connection[tuple[object, ...]], db: str) -> int:
    admin.execute("SELECT pg_stat_clear_snapshot()")
    row = admin.execute(
        "SELECT xact_commit FROM pg_stat_database WHERE datname = %s", (db,)
    ).fetchone()
    assert row is not None and isinstance(row[0], int)
    return row[0]


def one(n: int, python: Path | None, extra: tuple[str, ...]) -> dict[str, float]:
    tag = f"mc{uuid.uuid4().hex[:8]}"
    [system] = harness.systems(["taskstatus_postgres"], "", tag)
    if python is not None:
        system = replace(system, python=python)
    setting = harness.Setting("2 x 8", 2, ("--concurrency", "8", *extra))
    assert system.taskstatus_url is not None
    db = urlsplit(system.taskstatus_url).path.lstrip("/")
    harness.SCRATCH_DIR.mkdir(parents=True, exist_ok=True)
    harness.run_driver(system, "setup")
    try:
        with (
            harness.workers(system, setting) as procs,
            connect(system.taskstatus_url) as conn,
            psycopg.connect(harness.PG_ADMIN, autocommit=True) as admin,
        ):

            conn.submit_many("bench.noop", [{}] * 100)
            wait_drained(conn, 120)
            time.sleep(0.5)
            workers0 = sum(cpu_seconds(p.pid) for p in procs)
            backends0 = _backends(admin, db)
            commits0 = _commits(admin, db)
            t0 = time.perf_counter()
            conn.submit_many("bench.noop", [{}] * n)
            wait_drained(conn, 900)
            wall = time.perf_counter() - t0
            workers1 = sum(cpu_seconds(p.pid) for p in procs)
            backends1 = _backends(admin, db)
            commits1 = _commits(admin, db)
    finally:
        harness.run_driver(system, "drop")
    backend_s = sum(cpu - backends0.get(pid, 0.0) for pid, cpu in backends1.items())
    return {
        "workers_us": (workers1 - workers0) / n * 1e6,
        "backends_us": backend_s / n * 1e6,
        "xacts": (commits1 - commits0) / n,
        "rate": n / wall,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n", type=int, default=20_000)
    parser.add_argument("--runs", type=int, default=1)
    parser.add_argument("--python", type=Path, default=None, help="the workers' interpreter")
    parser.add_argument("--label", default="")
    parser.add_argument("worker_args", nargs="*", help="after --: more `taskstatus worker` args")
    args = parser.parse_args()
    for _ in range(args.runs):
        r = one(args.n, args.python, tuple(args.worker_args))
        print(
            f"{args.label or 'this tree'}: workers {r['workers_us']:.1f} us/task, "
            f"backends {r['backends_us']:.1f} us/task, {r['xacts']:.3f} transactions/task, "
            f"{r['rate']:,.0f} tasks/s (n {args.n}, load {os.getloadavg()[0]:.2f})",
            flush=True,
        )


if __name__ == "__main__":
    main()
