"""What one claim costs the PostgreSQL server, in backend instructions (issue 17): a diagnostic.

    .venv/bin/python -m bench.pg_claim_cost [--queued 10000] [--claims 20 120]
        [--keep DIR] [--functions 40] [--only claim8|empty]

Runs the throwaway cluster of bench/pg_event_log_cost.py (its postmaster under callgrind,
autovacuum off, a callgrind file per backend). One database is filled as bench/pg_plans.py
--queue-only fills it (N queued no-op tasks of handler `noop`, no statistics); each run is a
copy of it (CREATE DATABASE ... TEMPLATE, so every run starts from the same pages) and one
PostgresStore of one connection making K claims through ``PostgresStore.claim``:
  - claim8: claims of 8 tasks of `noop` (the figure claim8_ms);
  - empty:  claims of 8 of handler `idle`, which has nothing queued (a claim that finds nothing).
The backend's count at K2 claims less its count at K1, over K2 - K1, is one claim's server
work without the connection's start-up, the first claim's planning and the limits' read (the
store reads the list of limited handlers at its first claim; here, not again: its TTL is made
endless, as it is in effect for a worker that claims more often than once a second).
`--functions N` prints, per function (callgrind_annotate of the K1 and the K2 file), the N
largest inclusive and self counts per claim. `--keep DIR` keeps the files (DIR/runs.json names
them). Needs valgrind; runs as root (the cluster as `postgres`) or as a user who may run
PostgreSQL. About 2 minutes.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

import psycopg

import taskstatus.store.postgres_schedules
from bench.pg_event_log_cost import Cluster, instructions, wait_gone
from bench.pg_plans import QUEUE_FILL
from taskstatus.store import StoreLimits
from taskstatus.store.postgres import PostgresStore

KINDS = {"claim8": ("noop", 8), "empty": ("idle", 0)}
# (kind, K) -> index -> (entries read, heap tuples fetched), from pg_stat_user_indexes
READS: dict[tuple[str, int], dict[str, tuple[int, int]]] = {}
LIMITS = StoreLimits(connect_timeout=60, pool_timeout=120, statement_timeout=600)


def _url(cluster: Cluster, db: str) -> str:
    return cluster.url.rsplit("/", 1)[0] + "/" + db


def template(cluster: Cluster, admin: psycopg.Connection[Any], queued: int) -> str:
    """The filled database every run copies."""
    db = f"pgclaim_{queued}"
    admin.execute(f'DROP DATABASE IF EXISTS "{db}"')
    admin.execute(f'CREATE DATABASE "{db}"')
    url = _url(cluster, db)

    async def migrated() -> None:
        store = PostgresStore(url, limits=LIMITS, min_size=1, max_size=1)
        await store.open()
        await store.close()

    asyncio.run(migrated())
    with psycopg.connect(url, autocommit=True) as conn:
        for statement in QUEUE_FILL:
            conn.execute(statement, {"n": queued})
        conn.execute("CHECKPOINT")
    wait_gone(admin, db)
    return db


def run(cluster: Cluster, admin: psycopg.Connection[Any], base: str, kind: str, k: int) -> Path:
    """K claims of `kind` on a copy of `base`: the callgrind file of the backend that served
    them."""
    db = f"{base}_{kind}_{k}"
    admin.execute(f'DROP DATABASE IF EXISTS "{db}"')
    admin.execute(f'CREATE DATABASE "{db}" TEMPLATE "{base}"')
    handler, expect = KINDS[kind]
    url = _url(cluster, db)

    async def claims() -> int:
        store = PostgresStore(url, limits=LIMITS, min_size=1, max_size=1)
        await store.open()
        try:
            async with store._db.connection() as c:
                pid = c.info.backend_pid
            for _ in range(k):
                got = await store.claim("bench", 8, 30.0, [handler])
                assert len(got) == expect, (kind, len(got))
        finally:
            await store.close()
        return pid

    pid = asyncio.run(claims())
    wait_gone(admin, db)
    with psycopg.connect(url, autocommit=True) as conn:
        rows = conn.execute(
            "SELECT indexrelname, idx_tup_read, idx_tup_fetch FROM pg_stat_user_indexes"
            " WHERE idx_tup_read > 0 ORDER BY 1"
        ).fetchall()
    READS[(kind, k)] = {name: (int(read), int(fetched)) for name, read, fetched in rows}
    wait_gone(admin, db)
    admin.execute(f'DROP DATABASE "{db}"')
    path = cluster.out / f"cg.{pid}"
    assert path.exists(), path
    return path


_LINE = re.compile(r"^\s*([\d,]+)\s+(?:\([^)]*\)\s+)?(\S.*?)\s*$")


def per_function(path: Path, inclusive: bool) -> dict[str, int]:
    """callgrind_annotate's count per function (inclusive or self) of one file."""
    out = subprocess.run(
        [
            "callgrind_annotate",
            f"--inclusive={'yes' if inclusive else 'no'}",
            "--threshold=100",
            str(path),
        ],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    counts: dict[str, int] = {}
    body = out.split("file:function", 1)[-1] if "file:function" in out else out
    for line in body.splitlines():
        m = _LINE.match(line)
        if m is None or "PROGRAM TOTALS" in line:
            continue
        name = re.sub(r"\s+\[[^\]]*\]$", "", m.group(2))  # the object's path
        counts[name] = counts.get(name, 0) + int(m.group(1).replace(",", ""))
    return counts


def table(small: Path, large: Path, claims: int, inclusive: bool, top: int) -> str:
    a, b = per_function(small, inclusive), per_function(large, inclusive)
    diff = {f: (b.get(f, 0) - a.get(f, 0)) / claims for f in set(a) | set(b)}
    rows = sorted(diff.items(), key=lambda kv: -abs(kv[1]))[:top]
    head = "inclusive" if inclusive else "self"
    return "\n".join(
        [f"  {head} k instructions per claim:"] + [f"    {v / 1000:9.1f}  {f}" for f, v in rows]
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--queued", type=int, default=10_000)
    parser.add_argument("--claims", type=int, nargs=2, default=[20, 120])
    parser.add_argument("--keep", help="keep the callgrind files in this folder")
    parser.add_argument("--functions", type=int, default=0, help="per-function table, N rows")
    parser.add_argument("--only", choices=sorted(KINDS), help="one kind only")
    args = parser.parse_args()
    if shutil.which("valgrind") is None:
        print("needs valgrind (Debian: apt-get install valgrind)", file=sys.stderr)
        return 1
    # the limits' list read once, at the first claim (see above)
    taskstatus.store.postgres_schedules.LIMITED_TTL = float("inf")
    root = Path(tempfile.mkdtemp(prefix="taskstatus-pgclaim-"))
    cluster = Cluster(root)
    small, large = args.claims
    kinds = [args.only] if args.only else list(KINDS)
    found: dict[str, dict[int, Path]] = {}
    try:
        cluster.start()
        with psycopg.connect(cluster.url, autocommit=True) as admin:
            base = template(cluster, admin, args.queued)
            for kind in kinds:
                found[kind] = {k: run(cluster, admin, base, kind, k) for k in (small, large)}
        cluster.stop()
        for kind in kinds:
            a, b = found[kind][small], found[kind][large]
            per = (instructions(b) - instructions(a)) / (large - small)
            print(
                f"{kind}: {per / 1000:.1f} k instructions per claim at {args.queued:,} queued"
                f" ({large} - {small} claims)",
                flush=True,
            )
            one, two = READS.get((kind, small), {}), READS.get((kind, large), {})
            for name in sorted(two):
                r1, f1 = one.get(name, (0, 0))
                r2, f2 = two[name]
                n = large - small
                print(f"  {name}: {(r2 - r1) / n:.1f} entries read, {(f2 - f1) / n:.1f} fetched")
            if args.functions:
                for inclusive in (True, False):
                    print(table(a, b, large - small, inclusive, args.functions), flush=True)
    finally:
        cluster.stop()
        if args.keep:
            keep = Path(args.keep)
            keep.mkdir(parents=True, exist_ok=True)
            names = {}
            for kind, paths in found.items():
                for k, p in paths.items():
                    if p.exists():
                        shutil.copy(p, keep / p.name)
                    names[f"{kind}/{k}"] = p.name
            (keep / "runs.json").write_text(json.dumps(names, indent=1))
        shutil.rmtree(root, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
