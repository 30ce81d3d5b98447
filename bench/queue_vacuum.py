"""How often a store should vacuum its queue (QUEUE_VACUUM_AFTER): a diagnostic, not a figure.

    .venv/bin/python -m bench.queue_vacuum [--queued 20000 100000] [--every 1000 2000 5000 20000]

Each claimed task leaves a dead row in task_queue whose index entries every later claim steps
over until a VACUUM removes them, so a claim's cost grows with the tasks claimed since the
last one, and a VACUUM's cost grows with the queue. For each queue size (no statistics, filled
as bench/pg_plans.py --queue-only fills it) and each threshold T, one store drains the queue in
claims of 8 and this script runs ``VACUUM task_queue`` after every T tasks claimed (the
store's own vacuum is turned off, so both are timed in the same process, one after the
other). Prints, per task, the claims' and the vacuums' wall time and the server CPU of each
(/proc of the two backends; the wall time of a claim is mostly its round trip), and the
median claim in the first and the last eighth of the drain (ms).
"""

from __future__ import annotations

import argparse
import asyncio
import time

import psycopg

import taskstatus.store.postgres as postgres_store
from bench.common import cpu_seconds, median, postgres_url
from bench.pg_plans import QUEUE_FILL
from taskstatus.store.postgres import PostgresStore

BATCH = 8


async def drain(url: str, every: int) -> dict[str, float]:
    """Claim the whole queue, BATCH at a time, vacuuming after every `every` tasks."""
    store = PostgresStore(url, min_size=1, max_size=1)
    await store.open()
    claims: list[float] = []
    vacuums: list[float] = []
    since = 0
    try:
        async with await psycopg.AsyncConnection.connect(url, autocommit=True) as admin:
            mine = (await (await admin.execute("SELECT pg_backend_pid()")).fetchone() or [0])[0]
            others = "SELECT pid FROM pg_stat_activity WHERE datname = current_database()"
            rows = await (await admin.execute(others)).fetchall()
            [server] = [pid for (pid,) in rows if pid != mine]  # the store's one connection
            cpu0 = cpu_seconds(server), cpu_seconds(mine)
            while True:
                start = time.perf_counter()
                got = await store.claim("bench-worker", BATCH, 3600, ["noop"])
                claims.append(time.perf_counter() - start)
                if not got:
                    break
                since += len(got)
                if since >= every:
                    since = 0
                    start = time.perf_counter()
                    await admin.execute("VACUUM task_queue")
                    vacuums.append(time.perf_counter() - start)
            cpu1 = cpu_seconds(server), cpu_seconds(mine)
    finally:
        await store.close()
    tasks = BATCH * (len(claims) - 1)
    eighth = max(1, len(claims) // 8)
    return {
        "claims_us": sum(claims) / tasks * 1e6,
        "vacuums_us": sum(vacuums) / tasks * 1e6,
        "claim_cpu_us": (cpu1[0] - cpu0[0]) / tasks * 1e6,
        "vacuum_cpu_us": (cpu1[1] - cpu0[1]) / tasks * 1e6,
        "first_ms": median(claims[:eighth]) * 1e3,
        "last_ms": median(claims[-eighth - 1 : -1]) * 1e3,
        "vacuum_ms": median(vacuums) * 1e3 if vacuums else 0.0,
    }


async def migrate(url: str) -> None:
    store = PostgresStore(url)
    await store.open()
    await store.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--queued", type=int, nargs="+", default=[20_000, 100_000])
    parser.add_argument("--every", type=int, nargs="+", default=[1_000, 2_000, 5_000, 20_000])
    args = parser.parse_args()
    postgres_store.QUEUE_VACUUM_AFTER = 1 << 62  # this script vacuums, timed
    print("per task (us): the claims' and the vacuums' wall time, and the server CPU of each")
    print("(the claiming backend's, the vacuuming backend's); claims of the first and last")
    print("eighth and the median vacuum (ms)")
    print(
        f"{'queued':>8} {'every':>7} {'claims':>8} {'vacuums':>8} {'claimCPU':>8}"
        f" {'vacCPU':>8} {'first':>7} {'last':>7} {'vacuum':>7}"
    )
    for queued in args.queued:
        for every in args.every:
            with postgres_url() as url:
                asyncio.run(migrate(url))
                with psycopg.connect(url, autocommit=True) as conn:
                    for statement in QUEUE_FILL:
                        conn.execute(statement, {"n": queued})
                f = asyncio.run(drain(url, every))
            print(
                f"{queued:>8} {every:>7} {f['claims_us']:>8.1f} {f['vacuums_us']:>8.1f}"
                f" {f['claim_cpu_us']:>8.1f} {f['vacuum_cpu_us']:>8.1f}"
                f" {f['first_ms']:>7.3f} {f['last_ms']:>7.3f}"
                f" {f['vacuum_ms']:>7.1f}",
                flush=True,
            )


if __name__ == "__main__":
    main()
