"""What one task costs a worker process, in instructions (issue 17): a diagnostic.

    .venv/bin/python -m bench.worker_cost [--tasks 300 1500] [--handler bench.noop]

One Worker (8 slots, as the matched tier's) in a process of its own under callgrind drains a
queue of no-op tasks on a fresh PostgreSQL database ($TASKSTATUS_BENCH_POSTGRES), submitted
beforehand by another process; it stops once its finishes have stored them all. The process's
count at N2 tasks less its count at N1, over N2 - N1, is a task's client work: the claim's
and the finish's share, the runs, the outcomes, the event loop and psycopg, without start-up.
The side jobs that run by the clock (heartbeat, recovery, schedules), which callgrind's
slowdown would make many times more frequent, are pushed out of the window. `--handler
bench.noop_sync` measures a sync handler (run in the worker's thread pool). Instructions, not
time: the figure does not move with the machine's load. Needs valgrind. About 2 minutes.
"""

from __future__ import annotations

import argparse
import asyncio
import re
import subprocess
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from bench.common import postgres_url

if TYPE_CHECKING:
    from taskstatus.store import Outcome

# What the drained worker runs: its own process, so that callgrind counts it alone.
_CHILD = """
import asyncio, sys
import bench.handlers  # noqa: F401
from bench.worker_cost import drain
asyncio.run(drain(sys.argv[1], int(sys.argv[2])))
"""


async def drain(url: str, n: int) -> None:
    """Run one worker on `url` until it has stored `n` outcomes, then stop it."""
    from taskstatus.handlers import REGISTRY
    from taskstatus.store import make_store
    from taskstatus.worker import Worker, WorkerOptions

    store = make_store(url)
    await store.open()
    options = WorkerOptions(
        concurrency=8,
        lease_seconds=3600,
        heartbeat_interval=3000,
        recover_interval=3000,
        fire_schedules=False,
    )
    worker = Worker(store, REGISTRY, options)
    finish = store.finish
    stored = 0
    done = asyncio.Event()

    async def counted(worker_id: str, outcomes: Sequence[Outcome]) -> set[str]:
        nonlocal stored
        ids = await finish(worker_id, outcomes)
        stored += len(ids)
        if stored >= n:
            done.set()
        return ids

    store.finish = counted  # type: ignore[method-assign]
    run = asyncio.create_task(worker.run())
    await done.wait()
    worker.stop()
    await run
    await store.close()


def instructions(n: int, handler: str, folder: Path) -> int:
    """The worker process's instructions draining `n` tasks of `handler`."""
    with postgres_url() as url:
        submit = (
            "import bench.handlers\nfrom taskstatus import connect\n"
            f"with connect({url!r}) as conn:\n    conn.submit_many({handler!r}, [{{}}] * {n})\n"
        )
        subprocess.run([sys.executable, "-c", submit], check=True)
        out = folder / f"callgrind.{n}"
        subprocess.run(
            [
                *("valgrind", "--tool=callgrind", f"--callgrind-out-file={out}"),
                *(sys.executable, "-c", _CHILD, url, str(n)),
            ],
            check=True,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
    found = re.search(r"^summary: (\d+)", out.read_text(), re.MULTILINE)
    if found is None:
        raise RuntimeError(f"no summary line in {out}")
    return int(found.group(1))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--tasks", type=int, nargs=2, default=(300, 1500), metavar=("N1", "N2"))
    parser.add_argument("--handler", default="bench.noop")
    args = parser.parse_args()
    n1, n2 = args.tasks
    with tempfile.TemporaryDirectory(prefix="bench-worker-cost-") as folder:
        at1 = instructions(n1, args.handler, Path(folder))
        at2 = instructions(n2, args.handler, Path(folder))
    print(
        f"{args.handler}: {(at2 - at1) / (n2 - n1) / 1000:.1f} k instructions a task in the "
        f"worker process ({at1:,} at {n1}, {at2:,} at {n2})"
    )


if __name__ == "__main__":
    main()
