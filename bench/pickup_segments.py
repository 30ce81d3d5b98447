"""Where PostgreSQL pickup time goes (docs/benchmarks.md): a diagnostic, not a figure.

    .venv/bin/python -m bench.pickup_segments [--tries 40]

1. Segments of taskstatus's own path: a worker process whose store records when the
   notification arrives and when its claim starts and ends; this process records the submit.
2. The floor on this machine: bare psycopg, no framework. One process inserts a row and sends
   NOTIFY in one transaction; a listener process claims it with one UPDATE ... SKIP LOCKED.
Both after the same idle gap as bench/pickup.py.
"""

from __future__ import annotations

import argparse
import asyncio
import select
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import psycopg

from bench.common import ROOT, database, median, wait_until
from taskstatus import connect

IDLE = 0.05
LOG = Path(tempfile.gettempdir()) / "taskstatus-pickup-segments.log"


def instrumented_worker(argv: list[str]) -> None:
    """`taskstatus worker` with a store that logs notification and claim times to LOG."""
    from taskstatus.cli import main
    from taskstatus.store.postgres import PostgresStore

    out = LOG.open("a", buffering=1)

    class Recorded(asyncio.Event):
        def set(self) -> None:
            if not self.is_set():
                out.write(f"notify {time.time():.6f}\n")
            super().set()

    original_open, original_claim = PostgresStore.open, PostgresStore.claim

    async def open_(self: PostgresStore) -> None:
        self._work = Recorded()
        await original_open(self)

    async def claim(self: PostgresStore, *args: Any, **kwargs: Any) -> Any:
        start = time.time()
        claimed = await original_claim(self, *args, **kwargs)
        if claimed:
            out.write(f"claim {start:.6f} {time.time():.6f}\n")
        return claimed

    PostgresStore.open = open_  # type: ignore[method-assign]
    PostgresStore.claim = claim  # type: ignore[method-assign]
    sys.argv = ["taskstatus", "worker", *argv]
    main()


def segments(tries: int) -> dict[str, list[float]]:
    LOG.write_text("")
    seg: dict[str, list[float]] = {}
    with database("postgres") as url, connect(url) as conn:
        worker = subprocess.Popen(
            [
                *(sys.executable, "-m", "bench.pickup_segments", "--worker"),
                *("--database", url, "--import", "bench.handlers"),
                *("--concurrency", "10", "--poll-interval", "30"),
            ],
            cwd=ROOT,
        )
        try:
            conn.wait(conn.submit("bench.started", {}).id, 60)
            runs = []
            for _ in range(tries):
                time.sleep(IDLE)
                t0 = time.time()
                task = conn.submit("bench.started", {})
                t1 = time.time()
                done = conn.wait(task.id, 10)
                runs.append((t0, t1, float(done.attributes["started"])))
        finally:
            worker.terminate()
            worker.wait(30)
    lines = [line.split() for line in LOG.read_text().splitlines()]
    notes = [float(x[1]) for x in lines if x[0] == "notify"]
    claims = [(float(x[1]), float(x[2])) for x in lines if x[0] == "claim"]
    for t0, t1, started in runs:
        note = min((n for n in notes if n >= t0), default=None)
        claim = min((c for c in claims if c[0] >= t0), default=None)
        if note is None or claim is None:
            continue
        for name, value in (
            ("submit returns", t1 - t0),
            ("submit to notify", note - t0),
            ("notify to claim", claim[0] - note),
            ("claim", claim[1] - claim[0]),
            ("claim to handler", started - claim[1]),
            ("total", started - t0),
        ):
            seg.setdefault(name, []).append(value * 1000)
    return seg


def floor_listener(url: str, out: str) -> None:
    with (
        psycopg.connect(url, autocommit=True) as listen,
        psycopg.connect(url, autocommit=True) as work,
        open(out, "a", buffering=1) as log,
    ):
        listen.execute("LISTEN pickup_floor")
        while True:
            select.select([listen.fileno()], [], [])
            listen.pgconn.consume_input()
            if listen.pgconn.notifies() is None:
                continue
            while listen.pgconn.notifies() is not None:
                pass
            with work.transaction():
                work.execute("SET LOCAL synchronous_commit = off")
                work.execute(
                    "UPDATE pickup_floor SET state = 1 WHERE id = (SELECT id FROM pickup_floor"
                    " WHERE state = 0 LIMIT 1 FOR UPDATE SKIP LOCKED)"
                )
            log.write(f"{time.time():.6f}\n")


def floor(tries: int) -> dict[str, list[float]]:
    out = Path(tempfile.gettempdir()) / "taskstatus-pickup-floor.log"
    out.write_text("")
    submit, total = [], []
    with database("postgres") as url, psycopg.connect(url, autocommit=True) as conn:
        conn.execute("CREATE TABLE pickup_floor (id serial PRIMARY KEY, state int DEFAULT 0)")
        listener = subprocess.Popen(
            [sys.executable, "-m", "bench.pickup_segments", "--floor-listener", url, str(out)],
            cwd=ROOT,
        )
        try:
            # started under load, the listener may take seconds to say LISTEN: a notification
            # sent before that is lost, and its claim never comes
            def listening() -> bool:
                row = conn.execute(
                    "SELECT count(*) FROM pg_stat_activity WHERE query = 'LISTEN pickup_floor'"
                ).fetchone()
                return bool(row and row[0])

            wait_until(listening, 30, "the floor listener")
            for i in range(tries):
                time.sleep(IDLE)
                t0 = time.time()
                with conn.transaction():
                    conn.execute("INSERT INTO pickup_floor DEFAULT VALUES; NOTIFY pickup_floor")
                submit.append((time.time() - t0) * 1000)

                def claimed(n: int = i + 1) -> bool:
                    return len(out.read_text().split()) >= n

                wait_until(claimed, 5, "the claim", 0.0005)
                total.append((float(out.read_text().split()[i]) - t0) * 1000)
        finally:
            listener.kill()
            listener.wait()
    return {"submit returns": submit, "total": total}


def main() -> None:
    if sys.argv[1:2] == ["--worker"]:
        instrumented_worker(sys.argv[2:])
        return
    if sys.argv[1:2] == ["--floor-listener"]:
        floor_listener(sys.argv[2], sys.argv[3])
        return
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--tries", type=int, default=40)
    tries = parser.parse_args().tries
    import bench.handlers  # noqa: F401 - the handler the worker runs

    for title, measured in (
        ("taskstatus (submit through connect(), worker process)", segments(tries)),
        ("floor: bare psycopg insert + NOTIFY, listener claims with one UPDATE", floor(tries)),
    ):
        print(title)
        for name, values in measured.items():
            print(f"  {name:<18} p50 {median(values):6.2f} ms  (n={len(values)})")


if __name__ == "__main__":
    main()
