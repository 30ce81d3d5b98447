"""What PostgreSQL's event log costs a task, in server instructions (issue 13): a diagnostic.

    .venv/bin/python -m bench.pg_event_log_cost [--tasks 1000 3000] [--keep DIR]

Starts a throwaway PostgreSQL cluster (initdb in a temporary folder, Debian's binaries under
/usr/lib/postgresql/*/bin, autovacuum off) whose postmaster runs under valgrind's callgrind:
every backend it forks writes its own instruction count when it exits. Instructions, not
seconds: the same count whatever else the machine is doing (CPU time on this shared 2-core
machine moves by +-10 %). On a fresh database per run, one process submits N no-op tasks
(batches of 500), then claims them all (500 at a time), then finishes them all (500 at a
time), each phase through its own store (so its own backends): the count of the backends that
served a phase is that phase's server work. Each run is made with the event log and with it
dropped (bench/events.py DROP_EVENT_LOG), for two N; (count at the larger N - count at the
smaller) / (difference of N) is a task's cost without connection start-up and migrations.
The workers' client CPU is not counted (bench/event_log_cost.py counts SQLite's in-process).
`--keep DIR` keeps the callgrind files (cg.<pid>, one per backend; named per phase in
DIR/phases.json) for `callgrind_annotate`. The task ids come from a seeded generator (seeded_ids).
Needs valgrind; runs as root (the cluster runs as the `postgres` user) or as a user who may
run PostgreSQL. About 3 minutes (5 when two run at once).
"""

from __future__ import annotations

import argparse
import asyncio
import glob
import itertools
import json
import os
import pwd
import random
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import psycopg

import taskstatus.model
from bench.events import DROP_EVENT_LOG, _sql, noop_outcomes
from taskstatus import Connection, connect
from taskstatus.model import Task
from taskstatus.store import Store, StoreLimits, make_store

PHASES = ("submit", "claim", "finish")
BATCH = 500
LIMITS = StoreLimits(connect_timeout=60, pool_timeout=120, statement_timeout=600)


# The tasks' ids, laid out as the store's (model.new_id: UUIDv7, a millisecond then random
# bits), 50 a millisecond as a submitter makes them, from a seeded generator: every run of a
# tree lays its indexes out alike (with the store's own ids a phase's count moved by up to
# ~10 k instructions a task between runs: page splits, B-tree deduplication and bottom-up
# deletion differ), and a batch's ids are in no order within a millisecond, as they are.
def seeded_ids() -> Callable[[], str]:
    rng = random.Random(13)
    counter = itertools.count()

    def new_id() -> str:
        millis = 0x018F_0000_0000 + next(counter) // 50
        rand = rng.getrandbits(74)
        value = (millis << 80) | (0x7 << 76) | ((rand >> 62) << 64) | (0b10 << 62)
        return f"{value | (rand & ((1 << 62) - 1)):032x}"

    return new_id


def _bin() -> Path:
    for folder in sorted(glob.glob("/usr/lib/postgresql/*/bin"), reverse=True):
        if os.access(f"{folder}/postgres", os.X_OK):
            return Path(folder)
    found = shutil.which("postgres")
    if found is None:
        raise SystemExit("PostgreSQL's server binaries are not installed")
    return Path(found).parent


def _port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Cluster:
    """initdb'd in `root`; the postmaster under callgrind, one output file per process."""

    def __init__(self, root: Path, synchronous_commit: str = "off") -> None:
        self.bin = _bin()
        self.synchronous_commit = synchronous_commit
        self.root = root
        self.out = root / "callgrind"
        self.port = _port()
        self.user = "postgres" if os.geteuid() == 0 else None
        self.out.mkdir(parents=True)
        if self.user is not None:
            entry = pwd.getpwnam(self.user)
            for p in (root, self.out):
                os.chown(p, entry.pw_uid, entry.pw_gid)
        subprocess.run(
            [
                str(self.bin / "initdb"),
                "-D",
                str(root / "data"),
                "-U",
                "postgres",
                "--auth=trust",
                "--no-sync",
                "-E",
                "UTF8",
            ],
            user=self.user,
            capture_output=True,
            check=True,
        )
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/postgres"

    def start(self) -> None:
        log = open(self.root / "server.log", "wb")  # noqa: SIM115 - the server's, kept open
        self.proc = subprocess.Popen(
            [
                "valgrind",
                "--tool=callgrind",
                "--trace-children=yes",
                "--dump-instr=no",
                f"--callgrind-out-file={self.out}/cg.%p",
                str(self.bin / "postgres"),
                "-D",
                str(self.root / "data"),
                "-p",
                str(self.port),
                "-k",
                str(self.root),
                "-c",
                "listen_addresses=127.0.0.1",
                "-c",
                "autovacuum=off",
                "-c",
                "fsync=off",
                "-c",
                f"synchronous_commit={self.synchronous_commit}",
                "-c",
                "huge_pages=off",
                "-c",
                "max_connections=40",
            ],
            user=self.user,
            cwd=self.root,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        deadline = time.monotonic() + 120
        while True:
            try:
                psycopg.connect(self.url, connect_timeout=5).close()
                return
            except psycopg.OperationalError:
                if time.monotonic() > deadline or self.proc.poll() is not None:
                    raise RuntimeError((self.root / "server.log").read_text()[-3000:]) from None
                time.sleep(1)

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.terminate()  # SIGTERM: a smart shutdown, every process dumps its counts
            self.proc.wait(300)


def instructions(path: Path) -> int:
    """A callgrind file's total instruction count (its summary line)."""
    for line in path.read_text(errors="replace").splitlines():
        if line.startswith(("summary:", "totals:")):
            return int(line.split()[1])
    return 0


def files(cluster: Cluster) -> set[Path]:
    return set(cluster.out.glob("cg.*"))


def wait_gone(admin: psycopg.Connection[Any], db: str) -> None:
    """Until no backend serves `db` (each one has written its counts when it exited)."""
    for _ in range(600):
        row = admin.execute(
            "SELECT count(*) FROM pg_stat_activity WHERE datname = %s", [db]
        ).fetchone()
        if row is not None and row[0] == 0:
            time.sleep(0.5)
            return
        time.sleep(0.2)
    raise RuntimeError(f"backends of {db} did not exit")


async def opened(url: str) -> Store:
    """An open store on `url`, with waits long enough for a server under callgrind."""
    store = make_store(url, limits=LIMITS)
    await store.open()
    return store


def claim_all(url: str, n: int) -> list[Task]:
    """The `n` queued bench.noop tasks, claimed BATCH at a time through one store."""
    claimed: list[Task] = []

    async def claim() -> None:
        store = await opened(url)
        try:
            while got := await store.claim("bench-worker", BATCH, 3600, ["bench.noop"]):
                claimed.extend(got)
        finally:
            await store.close()

    asyncio.run(claim())
    assert len(claimed) == n, (len(claimed), n)
    return claimed


def run(
    cluster: Cluster, admin: psycopg.Connection[Any], events: bool, n: int
) -> dict[str, list[Path]]:
    """One run on a fresh database: the callgrind files of each phase's backends."""
    import bench.handlers  # noqa: F401 - registers bench.noop

    taskstatus.model.new_id = seeded_ids()

    db = f"pgcost_{'on' if events else 'off'}_{n}"
    admin.execute(f'DROP DATABASE IF EXISTS "{db}"')
    admin.execute(f'CREATE DATABASE "{db}"')
    url = cluster.url.rsplit("/", 1)[0] + "/" + db

    async def migrated() -> None:
        await (await opened(url)).close()

    # the schema (and the log dropped) first: its backends are nobody's phase
    asyncio.run(migrated())
    if not events:
        _sql(url, DROP_EVENT_LOG["postgres"])
    wait_gone(admin, db)
    found: dict[str, list[Path]] = {}
    before = files(cluster)

    def phase(name: str) -> None:
        nonlocal before
        wait_gone(admin, db)
        now = files(cluster)
        found[name] = sorted(now - before)
        before = now

    with _env_connect(url) as conn:
        for _ in range(0, n, BATCH):
            conn.submit_many("bench.noop", [{}] * BATCH)
    phase("submit")

    claimed = claim_all(url, n)
    phase("claim")

    async def finish() -> None:
        store = await opened(url)
        try:
            for i in range(0, n, BATCH):
                done = await store.finish("bench-worker", noop_outcomes(claimed[i : i + BATCH]))
                assert len(done) == len(claimed[i : i + BATCH])
        finally:
            await store.close()

    asyncio.run(finish())
    phase("finish")
    if events:  # the log was written: 3 events a task (created, launched, completed)
        with psycopg.connect(url) as c:
            count = c.execute("SELECT count(*) FROM task_events").fetchone()
            assert count is not None and count[0] == 3 * n, count
        wait_gone(admin, db)
        before = files(cluster)
    return found


def _env_connect(url: str) -> Connection:
    """A client connection whose store waits as long as callgrind's slowness needs."""
    os.environ.update(
        TASKSTATUS_CONNECT_TIMEOUT="60",
        TASKSTATUS_POOL_TIMEOUT="120",
        TASKSTATUS_STATEMENT_TIMEOUT="600",
    )
    return connect(url)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", type=int, nargs=2, default=[1000, 3000])
    parser.add_argument("--keep", help="keep the callgrind files in this folder")
    parser.add_argument("--only", choices=["on", "off"], help="one mode only")
    args = parser.parse_args()
    if shutil.which("valgrind") is None:
        print("needs valgrind (Debian: apt-get install valgrind)", file=sys.stderr)
        return 1
    root = Path(tempfile.mkdtemp(prefix="taskstatus-pgcost-"))
    cluster = Cluster(root)
    small, large = args.tasks
    modes = [m == "on" for m in ([args.only] if args.only else ["on", "off"])]
    counts: dict[tuple[bool, int, str], int] = {}
    names: dict[str, list[str]] = {}
    try:
        cluster.start()
        with psycopg.connect(cluster.url, autocommit=True) as admin:
            for events in modes:
                for n in (small, large):
                    got = run(cluster, admin, events, n)
                    for ph, paths in got.items():
                        counts[(events, n, ph)] = sum(instructions(p) for p in paths)
                        names[f"{'on' if events else 'off'}/{n}/{ph}"] = [p.name for p in paths]
        cluster.stop()
    finally:
        cluster.stop()
        if args.keep:
            keep = Path(args.keep)
            keep.mkdir(parents=True, exist_ok=True)
            for p in cluster.out.glob("cg.*"):
                shutil.copy(p, keep / p.name)
            (keep / "phases.json").write_text(json.dumps(names, indent=1))
        shutil.rmtree(root, ignore_errors=True)
    per: dict[tuple[bool, str], float] = {}
    for events in modes:
        row = []
        for ph in PHASES:
            per[(events, ph)] = (counts[(events, large, ph)] - counts[(events, small, ph)]) / (
                large - small
            )
            row.append(f"{ph} {per[(events, ph)] / 1000:7.1f}")
        total = sum(per[(events, ph)] for ph in PHASES)
        print(
            f"  log {'on ' if events else 'off'}: k instructions a task: {'  '.join(row)}"
            f"  total {total / 1000:7.1f}",
            flush=True,
        )
    if len(modes) == 2:
        row = [f"{ph} {(per[(True, ph)] - per[(False, ph)]) / 1000:7.1f}" for ph in PHASES]
        cost = sum(per[(True, ph)] - per[(False, ph)] for ph in PHASES)
        off = sum(per[(False, ph)] for ph in PHASES)
        print(
            f"  the log:  k instructions a task: {'  '.join(row)}  total {cost / 1000:7.1f}"
            f" ({cost / off:.1%} of the server's work without it)"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
