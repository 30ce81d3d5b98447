"""PgQueuer's driver in the harness. Runs ONLY inside bench/.venvs/pgqueuer (asyncpg).

Its queue is the ``pgqueuer`` table of the scratch database $BENCH_PG_DB (``setup``
recreates it and installs the schema); a finished job is deleted from that table (and logged
in ``pgqueuer_log``), so the run is done when the table is empty. ``worker`` takes the
dequeue batch size and the per-worker cap on jobs in flight (0: none). Sub-commands as in
_driver.py.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import threading
from collections.abc import Coroutine
from datetime import timedelta
from pathlib import Path
from typing import Any

import _driver
import asyncpg
from pgqueuer import AsyncpgDriver, QueueManager
from pgqueuer.models import Job
from pgqueuer.queries import Queries

PG_BASE = os.environ.get("BENCH_PG_URL_BASE", "postgresql://postgres@127.0.0.1:5432")
DB_NAME = os.environ.get("BENCH_PG_DB", "bench_pgqueuer")
DSN = f"{PG_BASE}/{DB_NAME}"


async def _admin(statement: str) -> None:
    conn = await asyncpg.connect(f"{PG_BASE}/postgres")
    try:
        await conn.execute(statement)
    finally:
        await conn.close()


def cmd_setup(_: argparse.Namespace) -> None:
    async def setup() -> None:
        await _admin(f'DROP DATABASE IF EXISTS "{DB_NAME}" WITH (FORCE)')
        await _admin(f'CREATE DATABASE "{DB_NAME}"')
        conn = await asyncpg.connect(DSN)
        try:
            await Queries(AsyncpgDriver(conn)).install()
        finally:
            await conn.close()

    asyncio.run(setup())
    _driver.emit({"setup": DB_NAME})


def cmd_drop(_: argparse.Namespace) -> None:
    asyncio.run(_admin(f'DROP DATABASE IF EXISTS "{DB_NAME}" WITH (FORCE)'))
    _driver.emit({"dropped": DB_NAME})


def cmd_worker(args: argparse.Namespace) -> None:
    async def work() -> None:
        conn = await asyncpg.connect(DSN)
        qm = QueueManager(Queries(AsyncpgDriver(conn)))

        @qm.entrypoint("noop")
        async def noop(job: Job) -> None:
            return None

        @qm.entrypoint("stamp")
        async def stamp(job: Job) -> None:
            _driver.stamp((job.payload or b"").decode())

        await qm.run(
            batch_size=args.batch_size,
            max_concurrent_tasks=args.max_concurrent or None,
            dequeue_timeout=timedelta(seconds=30),
        )

    asyncio.run(work())


class Loop:
    """An event loop in a thread, for the sync harness helpers to call into."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        threading.Thread(target=self.loop.run_forever, daemon=True).start()

    def run(self, coro: Coroutine[Any, Any, Any]) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result()


def cmd_throughput(args: argparse.Namespace) -> None:
    loop = Loop()
    conn = loop.run(asyncpg.connect(DSN))
    queries = Queries(AsyncpgDriver(conn))
    poll = loop.run(asyncpg.connect(DSN))

    def submit(k: int) -> None:
        loop.run(queries.enqueue(["noop"] * k, [None] * k, [0] * k))

    def done() -> bool:
        return bool(loop.run(poll.fetchval("SELECT NOT EXISTS (SELECT 1 FROM pgqueuer)")))

    report = _driver.throughput(
        "pgqueuer",
        args.n,
        submit,
        done,
        "Queries.enqueue of lists (one statement)",
        args.poll_ms,
    )
    succeeded = loop.run(
        poll.fetchval(
            "SELECT count(*) FROM pgqueuer_log WHERE entrypoint = 'noop' AND status = 'successful'"
        )
    )
    report["succeeded"] = int(succeeded) - _driver.WARMUP
    loop.run(conn.close())
    loop.run(poll.close())
    _driver.emit(report)


def cmd_pickup(args: argparse.Namespace) -> None:
    loop = Loop()
    conn = loop.run(asyncpg.connect(DSN))
    queries = Queries(AsyncpgDriver(conn))
    report = _driver.pickup(
        "pgqueuer",
        args.tries,
        Path(args.marker),
        lambda m: loop.run(queries.enqueue("stamp", m.encode())) and None,
    )
    loop.run(conn.close())
    _driver.emit(report)


def main() -> None:
    _driver.main(globals(), {"--batch-size": 10, "--max-concurrent": 0})


if __name__ == "__main__":
    main()
