"""Procrastinate side of the peer benchmark. Runs ONLY inside bench/.venvs/procrastinate.

Sub-commands (each prints exactly one JSON object on its last stdout line):

* ``setup``       -- drop + recreate the scratch database and apply Procrastinate's schema.
* ``drop``        -- drop the scratch database.
* ``worker``      -- one worker, concurrency 10, LISTEN/NOTIFY on (the default).
* ``throughput``  -- ``batch_defer_async`` N no-op jobs, wait until all are ``succeeded``.
* ``pickup``      -- one job at a time to an idle worker; latency until the body starts.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

import procrastinate
import psycopg
from psycopg import sql

PG_BASE = os.environ.get("BENCH_PG_BASE", "host=127.0.0.1 port=5432 user=postgres")
DB_NAME = os.environ.get("BENCH_PG_DB", "bench_procrastinate")
DSN = f"{PG_BASE} dbname={DB_NAME}"
CONCURRENCY = 10
NOOP = "bench_peers.noop"

app = procrastinate.App(connector=procrastinate.PsycopgConnector(conninfo=DSN))


@app.task(name=NOOP)
async def noop() -> None:
    return None


@app.task(name="bench_peers.stamp")
async def stamp(marker: str) -> None:
    """Record the wall-clock time at which the task body started."""
    started = time.time()
    tmp = Path(marker + ".tmp")
    tmp.write_text(repr(started))
    tmp.replace(marker)


def _emit(payload: dict[str, Any]) -> None:
    sys.stdout.write(json.dumps(payload) + "\n")
    sys.stdout.flush()


def _drop_database(conn: psycopg.Connection[Any]) -> None:
    conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(DB_NAME)))


def cmd_setup(_: argparse.Namespace) -> None:
    with psycopg.connect(f"{PG_BASE} dbname=postgres", autocommit=True) as conn:
        _drop_database(conn)
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(DB_NAME)))

    async def apply() -> None:
        async with app.open_async():
            await app.schema_manager.apply_schema_async()

    asyncio.run(apply())
    _emit({"setup": DB_NAME})


def cmd_drop(_: argparse.Namespace) -> None:
    with psycopg.connect(f"{PG_BASE} dbname=postgres", autocommit=True) as conn:
        _drop_database(conn)
    _emit({"dropped": DB_NAME})


def cmd_worker(_: argparse.Namespace) -> None:
    # SIGTERM/SIGINT trigger Procrastinate's own graceful stop.
    app.run_worker(concurrency=CONCURRENCY, name="bench_peers", listen_notify=True)


async def _stamp_once(marker: Path, timeout_s: float = 60.0) -> float:
    """Defer one stamp job and return body start minus submit time, in seconds."""
    marker.unlink(missing_ok=True)
    t0 = time.time()
    await stamp.defer_async(marker=str(marker))
    deadline = time.monotonic() + timeout_s
    while not marker.exists():
        if time.monotonic() > deadline:
            raise SystemExit("stamp job was not picked up (is the worker running?)")
        await asyncio.sleep(0.0005)
    started = float(marker.read_text())
    marker.unlink()
    return started - t0


async def _wait_idle(conn: psycopg.AsyncConnection[Any], poll_s: float) -> None:
    """Wait until no job is todo/doing (served by a partial index on status)."""
    query = (
        "SELECT EXISTS (SELECT 1 FROM procrastinate_jobs"
        " WHERE status = ANY (ARRAY['todo', 'doing']::procrastinate_job_status[]))"
    )
    while True:
        row = await (await conn.execute(query)).fetchone()
        if row is not None and not row[0]:
            return
        await asyncio.sleep(poll_s)


async def _throughput(
    n: int, chunk: int, poll_s: float, marker: Path, analyze: bool
) -> dict[str, Any]:
    async with (
        app.open_async(),
        await psycopg.AsyncConnection.connect(DSN, autocommit=True) as conn,
    ):
        for _ in range(3):  # warm-up: connections open, worker fetching and listening
            await _stamp_once(marker)
        await _wait_idle(conn, poll_s)

        t0 = time.perf_counter()
        for i in range(0, n, chunk):
            await noop.batch_defer_async(*({} for _ in range(min(chunk, n - i))))
        t_submitted = time.perf_counter()
        if analyze:
            # Diagnostic variant (inside the timed window): give the planner statistics
            # for the backlog, as autovacuum would in a long-lived database. See run.py.
            await conn.execute("ANALYZE procrastinate_jobs")
        await _wait_idle(conn, poll_s)
        t_done = time.perf_counter()

        cur = await conn.execute(
            "SELECT status::text, count(*) FROM procrastinate_jobs"
            " WHERE task_name = %s GROUP BY status",
            (NOOP,),
        )
        by_status = {str(s): int(c) for s, c in await cur.fetchall()}
    return {
        "peer": "procrastinate",
        "n": n,
        "method": f"batch_defer_async x{-(-n // chunk)} (chunk {chunk})"
        + (" + ANALYZE" if analyze else ""),
        "submit_s": t_submitted - t0,
        "e2e_s": t_done - t0,
        "submit_per_s": n / (t_submitted - t0),
        "e2e_tasks_per_s": n / (t_done - t0),
        "succeeded": by_status.get("succeeded", 0),
        "by_status": by_status,
    }


def cmd_throughput(args: argparse.Namespace) -> None:
    chunk = args.chunk or args.n
    report = _throughput(args.n, chunk, args.poll_ms / 1000, Path(args.marker), args.analyze)
    _emit(asyncio.run(report))


async def _pickup(tries: int, idle_s: float, marker: Path) -> list[float]:
    async with (
        app.open_async(),
        await psycopg.AsyncConnection.connect(DSN, autocommit=True) as conn,
    ):
        for _ in range(3):
            await _stamp_once(marker)
        latencies_ms: list[float] = []
        for _ in range(tries):
            await _wait_idle(conn, 0.005)
            await asyncio.sleep(idle_s)  # worker idle, waiting on LISTEN
            latencies_ms.append(await _stamp_once(marker) * 1000)
    return latencies_ms


def cmd_pickup(args: argparse.Namespace) -> None:
    latencies = asyncio.run(_pickup(args.tries, args.idle_ms / 1000, Path(args.marker)))
    _emit({"peer": "procrastinate", "pickup_ms": latencies})


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    sub = parser.add_subparsers(dest="cmd", required=True)
    sub.add_parser("setup").set_defaults(func=cmd_setup)
    sub.add_parser("drop").set_defaults(func=cmd_drop)
    sub.add_parser("worker").set_defaults(func=cmd_worker)
    tp = sub.add_parser("throughput")
    tp.add_argument("--n", type=int, default=10_000)
    tp.add_argument("--chunk", type=int, default=0, help="jobs per batch_defer call (0: all)")
    tp.add_argument("--poll-ms", type=float, default=5.0)
    tp.add_argument("--marker", required=True, help="scratch file for the stamp task")
    tp.add_argument("--analyze", action="store_true", help="ANALYZE the jobs table after submit")
    tp.set_defaults(func=cmd_throughput)
    pk = sub.add_parser("pickup")
    pk.add_argument("--tries", type=int, default=50)
    pk.add_argument("--idle-ms", type=float, default=100.0)
    pk.add_argument("--marker", required=True, help="scratch file for the stamp task")
    pk.set_defaults(func=cmd_pickup)
    args = parser.parse_args()
    args.func(args)


if __name__ == "__main__":
    main()
