"""Procrastinate's driver in the harness. Runs ONLY inside bench/.venvs/procrastinate.

Its jobs live in the scratch database $BENCH_PG_DB (``setup`` recreates it and applies the
schema); a job is done when its status is no longer todo or doing. ``worker`` takes the
concurrency; LISTEN/NOTIFY is on (the default). Sub-commands as in _driver.py.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import threading
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Any

import _driver
import procrastinate
import psycopg
from psycopg import sql

PG_BASE = os.environ.get("BENCH_PG_URL_BASE", "postgresql://postgres@127.0.0.1:5432")
DB_NAME = os.environ.get("BENCH_PG_DB", "bench_procrastinate")
DSN = f"{PG_BASE}/{DB_NAME}"
NOOP = "bench_peers.noop"

app = procrastinate.App(connector=procrastinate.PsycopgConnector(conninfo=DSN))


@app.task(name=NOOP)
async def noop() -> None:
    return None


@app.task(name="bench_peers.stamp")
async def stamp(marker: str) -> None:
    _driver.stamp(marker)


def _drop(conn: psycopg.Connection[Any]) -> None:
    conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(DB_NAME)))


def cmd_setup(_: argparse.Namespace) -> None:
    with psycopg.connect(f"{PG_BASE}/postgres", autocommit=True) as conn:
        _drop(conn)
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(DB_NAME)))

    async def apply() -> None:
        async with app.open_async():
            await app.schema_manager.apply_schema_async()

    asyncio.run(apply())
    _driver.emit({"setup": DB_NAME})


def cmd_drop(_: argparse.Namespace) -> None:
    with psycopg.connect(f"{PG_BASE}/postgres", autocommit=True) as conn:
        _drop(conn)
    _driver.emit({"dropped": DB_NAME})


def cmd_worker(args: argparse.Namespace) -> None:
    app.run_worker(concurrency=args.concurrency, listen_notify=True)


class Loop:
    """An event loop in a thread, for the sync harness helpers to call into."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        threading.Thread(target=self.loop.run_forever, daemon=True).start()

    def run(self, coro: Coroutine[Any, Any, Any]) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result()


def _with_app(body: Callable[[Loop], dict[str, Any]]) -> dict[str, Any]:
    loop = Loop()
    loop.run(app.open_async().__aenter__())
    try:
        return body(loop)
    finally:
        loop.run(app.close_async())


def cmd_throughput(args: argparse.Namespace) -> None:
    pending = (
        "SELECT EXISTS (SELECT 1 FROM procrastinate_jobs"
        " WHERE status = ANY (ARRAY['todo', 'doing']::procrastinate_job_status[]))"
    )

    def body(loop: Loop) -> dict[str, Any]:
        with psycopg.connect(DSN, autocommit=True) as conn:

            def done() -> bool:
                row = conn.execute(pending).fetchone()
                return row is not None and not row[0]

            report = _driver.throughput(
                "procrastinate",
                args.n,
                lambda k: loop.run(noop.batch_defer_async(*({} for _ in range(k)))),
                done,
                "batch_defer_async",
                args.poll_ms,
            )
            row = conn.execute(
                "SELECT count(*) FROM procrastinate_jobs WHERE task_name = %s"
                " AND status = 'succeeded'",
                [NOOP],
            ).fetchone()
        report["succeeded"] = (row[0] if row else 0) - _driver.WARMUP
        return report

    _driver.emit(_with_app(body))


def cmd_pickup(args: argparse.Namespace) -> None:
    def body(loop: Loop) -> dict[str, Any]:
        return _driver.pickup(
            "procrastinate",
            args.tries,
            Path(args.marker),
            lambda m: loop.run(stamp.defer_async(marker=m)) and None,
        )

    _driver.emit(_with_app(body))


def main() -> None:
    _driver.main(globals(), {"--concurrency": 10})


if __name__ == "__main__":
    main()
