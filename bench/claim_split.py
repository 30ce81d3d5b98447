"""Where a claim's round trip goes (issue 17): a diagnostic, not a recorded figure.

    .venv/bin/python -m bench.claim_split [--queued 100000] [--tries 200] [--url URL]

Fills a scratch database as bench/pg_plans.py --queue-only does (queued no-op tasks of one
handler, no statistics) and times, interleaved claim by claim so that the machine's load
falls on every part alike, through a store of one connection (medians, ms):
  - claim:     PostgresStore.claim of 8 tasks (the figure claim8_ms);
  - idle:      a claim of a handler with nothing queued (claim8_ms...idle_handlers);
  - rows:      the store's claim without decoding its rows into Tasks;
  - txn_noop:  a pipelined transaction as the store's bookkeeping one (BEGIN, lax, a
               statement, COMMIT) with ``SELECT 1`` for the statement;
  - select1:   a lone ``SELECT 1`` on a pooled connection (the floor of a round trip);
and for each its wall time, the client's CPU time (``_cpu``, this process) and the server's
(``_srv``, the connection's backend, from /proc/PID/schedstat): CPU time moves far less with
the machine's load than the wall time does. Then the claim statement's execution as the
server times it (``server_claim``: EXPLAIN ANALYZE, TIMING OFF, rolled back) and that of
taskstatus_due alone (``server_due``).
"""

from __future__ import annotations

import argparse
import asyncio
import re
import statistics
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import psycopg

from bench.pg_plans import DEFAULT_URL, QUEUE_FILL, drop_database, fresh_database
from taskstatus.store.postgres import QUERIES, PostgresStore

PARAMS = {"worker": "bench", "lease": 30.0, "limit": 8, "handlers": ["noop"]}


def _on_cpu(pid: int) -> float:
    """Seconds process `pid` has run on a CPU (the scheduler's count, in ns)."""
    return int(Path(f"/proc/{pid}/schedstat").read_text().split()[0]) / 1e9


async def _explained(conn: psycopg.AsyncConnection[Any], text: str, params: Any) -> float:
    await conn.execute("BEGIN")
    rows = await (
        await conn.execute(f"EXPLAIN (ANALYZE, TIMING OFF, COSTS OFF) {text}", params)
    ).fetchall()
    await conn.execute("ROLLBACK")
    found = re.search(r"Execution Time: ([\d.]+) ms", "\n".join(r[0] for r in rows))
    return float(found.group(1)) if found else float("nan")


async def run(admin_url: str, queued: int, tries: int) -> dict[str, float]:
    database = f"taskstatus_bench_split_{queued}"
    url = await fresh_database(admin_url, database)
    store = PostgresStore(url, min_size=1, max_size=1)
    await store.open()
    times: dict[str, list[float]] = {}
    try:
        async with await psycopg.AsyncConnection.connect(url, autocommit=True) as conn:
            for statement in QUEUE_FILL:
                await conn.execute(statement, {"n": queued})
        async with store._db.connection() as c:
            backend = c.info.backend_pid

        async def claim() -> None:
            assert len(await store.claim("bench", 8, 30.0, ["noop"])) == 8

        async def idle() -> None:
            assert not await store.claim("bench", 8, 30.0, ["idle"])

        async def rows() -> None:
            assert len(await store._claim("bench", 8, 30.0, ["noop"])) == 8

        async def txn_noop() -> None:
            async with store._transaction() as c:
                await c.execute(QUERIES["lax"])
                cur = await c.execute("SELECT 1")
            await cur.fetchall()

        async def select1() -> None:
            async with store._db.connection() as c:
                await (await c.execute("SELECT 1")).fetchall()

        parts: dict[str, Callable[[], Awaitable[None]]] = {
            "claim": claim,
            "idle": idle,
            "rows": rows,
            "txn_noop": txn_noop,
            "select1": select1,
        }
        for _ in range(10):  # warm: prepared statements, the functions' plans
            for part in parts.values():
                await part()
        for _ in range(tries):
            for name, part in parts.items():
                started, cpu, srv = time.perf_counter(), time.process_time(), _on_cpu(backend)
                await part()
                times.setdefault(name, []).append(time.perf_counter() - started)
                times.setdefault(f"{name}_cpu", []).append(time.process_time() - cpu)
                times.setdefault(f"{name}_srv", []).append(_on_cpu(backend) - srv)
        figures = {name: statistics.median(t) * 1000 for name, t in times.items()}
        async with await psycopg.AsyncConnection.connect(url, autocommit=True) as conn:
            due = "SELECT taskstatus_due(%(handlers)s::text[], %(limit)s)"
            for name, text in (("server_claim", QUERIES["claim"]), ("server_due", due)):
                for _ in range(3):
                    await _explained(conn, text, PARAMS)
                got = [await _explained(conn, text, PARAMS) for _ in range(min(tries, 50))]
                figures[name] = statistics.median(got)
    finally:
        await store.close()
        await drop_database(admin_url, database)
    return figures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--url", default=DEFAULT_URL)
    parser.add_argument("--queued", type=int, default=100_000)
    parser.add_argument("--tries", type=int, default=200)
    args = parser.parse_args()
    figures = asyncio.run(run(args.url, args.queued, args.tries))
    print(" ".join(f"{k}={v:.3f}" for k, v in figures.items()))


if __name__ == "__main__":
    main()
