"""Where PostgreSQL's bulk COPY starts to pay for a submit (issue 17): a diagnostic.

    .venv/bin/python -m bench.pg_copy_cost [--sizes 1 8 32 64 128 500] [--tasks 6000]
        [--rounds 3] [--url postgresql://postgres@127.0.0.1:5432/postgres]

On a fresh database, submits batches of each size through `create_many_blocking` (the path
`connect()`'s submit takes), once by the statement `create_tasks` and once by binary COPY
(postgres.COPY_MIN_BATCH switched between 1 and never), alternating, `--rounds` times, about
`--tasks` tasks a size each round. Prints per task: wall, the client's CPU and the backend's
CPU (/proc, utime + stime of the connection's server process), medians over the rounds. The
table keeps growing through the run, alike for both paths (they alternate).
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import time
from datetime import UTC, datetime

import psycopg

from bench.common import cpu_seconds
from taskstatus.model import TaskDefinitionSummary, new_task
from taskstatus.store import postgres as pg_store
from taskstatus.store.postgres import PostgresStore

SUMMARY = TaskDefinitionSummary("0" * 32, "bench.noop", "", "bench.noop", "bench.noop", {})
NEVER = sys.maxsize


def run(url: str, sizes: list[int], tasks: int, rounds: int) -> None:
    admin_url = url
    db = "copy17_copycost"
    with psycopg.connect(admin_url, autocommit=True) as admin:
        admin.execute(f'DROP DATABASE IF EXISTS "{db}" WITH (FORCE)')
        admin.execute(f'CREATE DATABASE "{db}"')
    store_url = url.rsplit("/", 1)[0] + "/" + db
    runner = asyncio.Runner()
    store = PostgresStore(store_url)
    runner.run(store.open())
    try:
        results: dict[tuple[int, str], list[tuple[float, float, float]]] = {}
        warm = [new_task(handler="bench.noop", definition=SUMMARY, arguments={},
                         launcher="bench", now=datetime.now(UTC)) for _ in range(10)]  # fmt: skip
        assert store.create_many_blocking(warm) is not None
        conn = store._blocking
        assert conn is not None
        pid = conn.info.backend_pid
        for _ in range(rounds):
            for size in sizes:
                for mode in ("statement", "copy"):
                    pg_store.COPY_MIN_BATCH = 1 if mode == "copy" else NEVER
                    batches = max(1, tasks // size)
                    made = [
                        [new_task(handler="bench.noop", definition=SUMMARY, arguments={},
                                  launcher="bench", now=datetime.now(UTC))
                         for _ in range(size)]
                        for _ in range(batches)
                    ]  # fmt: skip
                    b0, c0, t0 = cpu_seconds(pid), time.process_time(), time.perf_counter()
                    for batch in made:
                        assert store.create_many_blocking(batch) is not None
                    t1, c1, b1 = time.perf_counter(), time.process_time(), cpu_seconds(pid)
                    n = batches * size
                    results.setdefault((size, mode), []).append(
                        ((t1 - t0) / n * 1e6, (c1 - c0) / n * 1e6, (b1 - b0) / n * 1e6)
                    )
        print(f"{'size':>6} {'path':>9} {'wall us':>9} {'client us':>10} {'backend us':>11}")
        for size in sizes:
            for mode in ("statement", "copy"):
                rows = results[(size, mode)]
                wall, client, backend = (statistics.median(col) for col in zip(*rows, strict=True))
                print(f"{size:>6} {mode:>9} {wall:>9.1f} {client:>10.1f} {backend:>11.1f}")
    finally:
        runner.run(store.close())
        runner.close()
        with psycopg.connect(admin_url, autocommit=True) as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{db}" WITH (FORCE)')


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[1, 8, 16, 32, 64, 128, 500])
    parser.add_argument("--tasks", type=int, default=6000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--url", default="postgresql://postgres@127.0.0.1:5432/postgres")
    args = parser.parse_args()
    run(args.url, args.sizes, args.tasks, args.rounds)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
