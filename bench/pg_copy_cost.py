"""Where PostgreSQL's bulk COPY starts to pay for a submit (issue 17): a diagnostic.

    .venv/bin/python -m bench.pg_copy_cost [--sizes 1 8 16 32 64 128 500] [--tasks 6000]
        [--rounds 3] [--modes statement copy staging] [--callgrind]
        [--url postgresql://postgres@127.0.0.1:5432/postgres]

On a fresh database, submits batches of each size through `create_many_blocking` (the path
`connect()`'s submit takes) by each mode: the statement `create_tasks`, binary COPY
(postgres.COPY_MIN_BATCH switched between 1 and never), or `staging` (the alternative not
taken: COPY into a temporary table, then one INSERT ... SELECT keeping ON CONFLICT),
alternating, `--rounds` times, about `--tasks` tasks a size each round. Prints per task:
wall, the client's CPU and the backend's CPU (/proc, utime + stime of the connection's
server process), medians over the rounds. With --callgrind, on a throwaway cluster under
callgrind (bench/pg_event_log_cost.py's), the backend's instructions a task instead: a fresh
connection per count, two counts per size and mode, their difference over the difference of
tasks (connection start-up left out). The table keeps growing through a run, alike for every
mode (they alternate).
"""

from __future__ import annotations

import argparse
import asyncio
import shutil
import statistics
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import psycopg
from psycopg.rows import TupleRow

from bench.common import cpu_seconds
from bench.pg_event_log_cost import LIMITS, Cluster, instructions
from taskstatus.model import Task, TaskDefinitionSummary, new_task
from taskstatus.store import postgres as pg_store
from taskstatus.store.postgres import PostgresStore
from taskstatus.store.rows import TASK_COLUMNS

# The alternative measured and not taken: COPY into a temporary table, then one INSERT ...
# SELECT that keeps the statement's ON CONFLICT (a batch's messages would need a second
# staging table or the JSON document still; plain batches here have none).
_COLUMNS = ", ".join(TASK_COLUMNS)
STAGE = (
    "CREATE TEMP TABLE IF NOT EXISTS bench_stage (LIKE tasks INCLUDING DEFAULTS, ord int)"
    " ON COMMIT DELETE ROWS"
)
COPY_STAGE = f"COPY bench_stage ({_COLUMNS}, ord) FROM STDIN (FORMAT BINARY)"
FROM_STAGE = f"""
WITH inserted AS (
    INSERT INTO tasks ({_COLUMNS}) SELECT {_COLUMNS} FROM bench_stage
    ORDER BY launcher, idempotency_key, ord
    ON CONFLICT (launcher, idempotency_key) WHERE idempotency_key IS NOT NULL DO NOTHING
    RETURNING id
), queued AS (
    INSERT INTO task_queue (id, handler, priority, run_at)
    SELECT s.id, s.handler, s.priority, s.run_at FROM bench_stage s JOIN inserted USING (id)
    WHERE s.state = 'queued' AND s.deleted_at IS NULL
)
SELECT inserted.id IS NOT NULL,
       (SELECT pg_notify('taskstatus_work', '') WHERE EXISTS (SELECT FROM inserted))
FROM bench_stage s LEFT JOIN inserted USING (id) ORDER BY s.ord
"""


def staged(conn: psycopg.Connection[TupleRow], batch: Any) -> None:
    """The staging alternative of postgres._copy_blocking."""
    with conn.transaction():
        cursor = conn.cursor()
        with cursor.copy(COPY_STAGE) as copy:
            copy.set_types([*pg_store._TASK_TYPES, "int4"])
            for i, row in enumerate(batch.tasks):
                copy.write_row((*row, i))
        answers = cursor.execute(FROM_STAGE).fetchall()
        assert all(stored for stored, _ in answers)


SUMMARY = TaskDefinitionSummary("0" * 32, "bench.noop", "", "bench.noop", "bench.noop", {})
NEVER = sys.maxsize
COPY_BLOCKING = pg_store._copy_blocking


def _tasks(size: int, batches: int) -> list[list[Task]]:
    return [
        [new_task(handler="bench.noop", definition=SUMMARY, arguments={}, launcher="bench",
                  now=datetime.now(UTC)) for _ in range(size)]
        for _ in range(batches)
    ]  # fmt: skip


def _submit(store: PostgresStore, mode: str, batches: list[list[Task]]) -> None:
    pg_store.COPY_MIN_BATCH = NEVER if mode == "statement" else 1
    pg_store._copy_blocking = staged if mode == "staging" else COPY_BLOCKING  # type: ignore[assignment]
    for batch in batches:
        assert store.create_many_blocking(batch) is not None


def _connection(store: PostgresStore) -> psycopg.Connection[TupleRow]:
    """The store's blocking connection, connected (by a submit of one task) and staged."""
    _submit(store, "statement", _tasks(1, 1))
    conn = store._blocking
    assert conn is not None
    conn.execute(STAGE)
    return conn


def timed(
    store: PostgresStore, sizes: list[int], tasks: int, rounds: int, modes: list[str]
) -> None:
    """Wall, client CPU and backend CPU a task, medians over the rounds."""
    results: dict[tuple[int, str], list[tuple[float, float, float]]] = {}
    pid = _connection(store).info.backend_pid
    for _ in range(rounds):
        for size in sizes:
            for mode in modes:
                made = _tasks(size, max(1, tasks // size))
                b0, c0, t0 = cpu_seconds(pid), time.process_time(), time.perf_counter()
                _submit(store, mode, made)
                t1, c1, b1 = time.perf_counter(), time.process_time(), cpu_seconds(pid)
                n = len(made) * size
                results.setdefault((size, mode), []).append(
                    ((t1 - t0) / n * 1e6, (c1 - c0) / n * 1e6, (b1 - b0) / n * 1e6)
                )
    print(f"{'size':>6} {'path':>9} {'wall us':>9} {'client us':>10} {'backend us':>11}")
    for size in sizes:
        for mode in modes:
            rows = results[(size, mode)]
            wall, client, backend = (statistics.median(col) for col in zip(*rows, strict=True))
            print(f"{size:>6} {mode:>9} {wall:>9.1f} {client:>10.1f} {backend:>11.1f}")


def counted(
    store: PostgresStore, cluster: Cluster, sizes: list[int], tasks: int, modes: list[str]
) -> None:
    """The backend's instructions a task under callgrind: a fresh connection submits k
    batches and exits, for two k (about tasks / 3 and tasks tasks); the difference over the
    difference of tasks leaves out the connection's start."""
    print(f"{'size':>6} {'path':>9} {'k instr':>9}")
    for size in sizes:
        for mode in modes:
            counts = []
            ks = (max(1, tasks // 3 // size), max(2, tasks // size))
            for k in ks:
                made = _tasks(size, k)
                pid = _connection(store).info.backend_pid
                _submit(store, mode, made)
                conn, store._blocking = store._blocking, None
                assert conn is not None
                conn.close()
                out = cluster.out / f"cg.{pid}"
                for _ in range(600):
                    if out.exists() and instructions(out):
                        break
                    time.sleep(0.2)
                counts.append(instructions(out))
            per = (counts[1] - counts[0]) / ((ks[1] - ks[0]) * size)
            print(f"{size:>6} {mode:>9} {per / 1000:>9.1f}", flush=True)


def run(
    url: str, sizes: list[int], tasks: int, rounds: int, modes: list[str], cluster: Cluster | None
) -> None:
    db = "copy17_copycost"
    with psycopg.connect(url, autocommit=True) as admin:
        admin.execute(f'DROP DATABASE IF EXISTS "{db}" WITH (FORCE)')
        admin.execute(f'CREATE DATABASE "{db}"')
    runner = asyncio.Runner()
    store = PostgresStore(url.rsplit("/", 1)[0] + "/" + db, limits=LIMITS)
    runner.run(store.open())
    try:
        if cluster is None:
            timed(store, sizes, tasks, rounds, modes)
        else:
            counted(store, cluster, sizes, tasks, modes)
    finally:
        runner.run(store.close())
        runner.close()
        with psycopg.connect(url, autocommit=True) as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{db}" WITH (FORCE)')


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[1, 8, 16, 32, 64, 128, 500])
    parser.add_argument("--tasks", type=int, default=6000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--modes", nargs="+", default=["statement", "copy"],
                        choices=["statement", "copy", "staging"])  # fmt: skip
    parser.add_argument("--callgrind", action="store_true", help="count instructions instead")
    parser.add_argument("--url", default="postgresql://postgres@127.0.0.1:5432/postgres")
    args = parser.parse_args()
    if not args.callgrind:
        run(args.url, args.sizes, args.tasks, args.rounds, args.modes, None)
        return 0
    root = Path(tempfile.mkdtemp(prefix="taskstatus-copycost-"))
    cluster = Cluster(root)
    try:
        cluster.start()
        run(cluster.url, args.sizes, args.tasks, args.rounds, args.modes, cluster)
    finally:
        cluster.stop()
        shutil.rmtree(root, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
