"""What PostgreSQL's finish costs at a worker's small batches (issue 17), in server instructions.

    .venv/bin/python -m bench.pg_finish_cost [--batch 1 8 32] [--statements 20 80] [--keep DIR]

The same throwaway cluster under callgrind as bench/pg_event_log_cost.py (whose helpers this
reuses), but with synchronous_commit on, as a finish's commit is. On one fresh database it
submits and claims enough no-op tasks (batches of 500, not counted), then, for each batch size
b, finishes them b outcomes a statement (store.finish, as the worker's writer sends them)
through two stores of their own: one sends S1 statements, the other S2. The difference of
their backends' counts over S2 - S1 is a finish statement of b outcomes, without connection
start-up and the first executions before psycopg prepares the statement (both stores have
those). From two sizes: the per-outcome part, (cost(b2) - cost(b1)) / (b2 - b1), and the
statement's fixed part, cost(b1) - b1 * that. Instructions, not time: the WAL flush's wait
and the kernel's work are not in them (fsync is off; a write is a system call).
`--keep DIR` keeps the callgrind files and DIR/phases.json (which files served which phase),
for `callgrind_annotate --inclusive=yes DIR/cg.<pid>`. About 2 minutes.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import shutil
import sys
import tempfile
from pathlib import Path
from typing import Any

import psycopg

import taskstatus.model
from bench.events import noop_outcomes
from bench.pg_event_log_cost import (
    BATCH,
    Cluster,
    _env_connect,
    claim_all,
    files,
    instructions,
    opened,
    seeded_ids,
    wait_gone,
)
from taskstatus.model import Task


def run(
    cluster: Cluster,
    admin: psycopg.Connection[Any],
    sizes: list[int],
    counts: list[int],
    prepare: str | None = None,
) -> dict[tuple[int, int], list[Path]]:
    """The callgrind files of the backends of each (batch size, statements) finish phase."""
    import bench.handlers  # noqa: F401 - registers bench.noop

    taskstatus.model.new_id = seeded_ids()
    db = "pgfinish"
    admin.execute(f'DROP DATABASE IF EXISTS "{db}"')
    admin.execute(f'CREATE DATABASE "{db}"')
    url = cluster.url.rsplit("/", 1)[0] + "/" + db
    n = sum(b * s for b in sizes for s in counts)

    with _env_connect(url) as conn:
        if prepare:  # after the migrations (the connection opened the store), before the tasks
            with psycopg.connect(url, autocommit=True) as c:
                c.execute(prepare)
        for i in range(0, n, BATCH):
            conn.submit_many("bench.noop", [{}] * min(BATCH, n - i))
    claimed = claim_all(url, n)
    wait_gone(admin, db)
    before = files(cluster)
    found: dict[tuple[int, int], list[Path]] = {}
    at = 0
    for b in sizes:
        for s in counts:
            batch = claimed[at : at + b * s]
            at += b * s

            async def finish(batch: list[Task] = batch, b: int = b) -> None:
                store = await opened(url)
                try:
                    for i in range(0, len(batch), b):
                        part = batch[i : i + b]
                        done = await store.finish("bench-worker", noop_outcomes(part))
                        assert len(done) == len(part), (len(done), len(part))
                finally:
                    await store.close()

            asyncio.run(finish())
            wait_gone(admin, db)
            now = files(cluster)
            found[(b, s)] = sorted(now - before)
            before = now
    return found


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, nargs="+", default=[1, 8, 32])
    parser.add_argument("--statements", type=int, nargs=2, default=[20, 80])
    parser.add_argument("--keep", help="keep the callgrind files in this folder")
    parser.add_argument("--prepare", help="SQL to run once the schema is made (a variant)")
    args = parser.parse_args()
    if shutil.which("valgrind") is None:
        print("needs valgrind (Debian: apt-get install valgrind)", file=sys.stderr)
        return 1
    sizes: list[int] = sorted(set(args.batch))
    counts: list[int] = args.statements
    root = Path(tempfile.mkdtemp(prefix="taskstatus-pgfinish-"))
    cluster = Cluster(root, synchronous_commit="on")
    got: dict[tuple[int, int], list[Path]] = {}
    totals: dict[tuple[int, int], int] = {}
    try:
        cluster.start()
        with psycopg.connect(cluster.url, autocommit=True) as admin:
            got = run(cluster, admin, sizes, counts, args.prepare)
        cluster.stop()
        totals = {key: sum(instructions(p) for p in paths) for key, paths in got.items()}
    finally:
        cluster.stop()
        if args.keep:
            keep = Path(args.keep)
            keep.mkdir(parents=True, exist_ok=True)
            for p in cluster.out.glob("cg.*"):
                shutil.copy(p, keep / p.name)
            names = {f"{b}x{s}": [p.name for p in paths] for (b, s), paths in got.items()}
            (keep / "phases.json").write_text(json.dumps(names, indent=1))
        shutil.rmtree(root, ignore_errors=True)
    small, large = counts
    per = {b: (totals[(b, large)] - totals[(b, small)]) / (large - small) for b in sizes}
    for b in sizes:
        print(
            f"  finish of {b:3}: {per[b] / 1000:8.1f} k instructions a statement, "
            f"{per[b] / b / 1000:7.1f} k an outcome",
            flush=True,
        )
    for b1, b2 in itertools.pairwise(sizes):
        each = (per[b2] - per[b1]) / (b2 - b1)
        print(
            f"  from {b1} to {b2}: {each / 1000:7.1f} k an outcome, "
            f"fixed {(per[b1] - b1 * each) / 1000:7.1f} k a statement"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
