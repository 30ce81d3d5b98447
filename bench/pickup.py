"""pickup_ms_p50.sqlite: one task submitted to an idle worker until its handler starts; 50
tries. The worker runs in this process (its own event loop thread and store), woken by the
in-process wake-up a submit sends. PostgreSQL's pickup (worker processes woken by NOTIFY) is
measured by the harness, as every peer's is (bench/peers/run.py: pickup_ms_p50.postgres).
"""

from __future__ import annotations

import asyncio
import threading
import time

from bench.common import database, median, percentile, wait_until
from taskstatus import TaskContext, connect, handler
from taskstatus.handlers import Registry
from taskstatus.store import make_store
from taskstatus.worker import Worker, WorkerOptions

TRIES = 50
IDLE_POLL = 30.0  # a poll this slow cannot be what starts the task

_started: dict[str, float] = {}
_local = Registry()


@handler("bench.pickup", registry=_local)
async def _pickup(ctx: TaskContext, args: dict[str, object]) -> None:
    _started[ctx.id] = time.perf_counter()


def sqlite_in_process(tries: int = TRIES) -> list[float]:
    with database("sqlite") as url:
        loop = asyncio.new_event_loop()
        store = make_store(url)
        worker = Worker(store, _local, WorkerOptions(concurrency=10, poll_interval=IDLE_POLL))

        async def serve() -> None:
            await store.open()
            await worker.run()
            await store.close()

        thread = threading.Thread(target=loop.run_until_complete, args=(serve(),), daemon=True)
        thread.start()
        samples = []
        with connect(url, registry=_local) as conn:
            wait_until(worker.ready.is_set, 30, "the worker")
            for _ in range(tries):
                time.sleep(0.05)  # let the worker go idle (waiting for a wake-up)
                before = time.perf_counter()
                task = conn.submit("bench.pickup", {})
                wait_until(lambda t=task.id: t in _started, 10, "the handler", every=0.0005)
                samples.append((_started[task.id] - before) * 1000)
        loop.call_soon_threadsafe(worker.stop)
        thread.join(30)
    return samples


def run() -> dict[str, float]:
    import bench.handlers  # noqa: F401 - the handler the worker process runs

    figures = {}
    for kind, measure in (("sqlite", sqlite_in_process),):
        samples = measure()
        figures[f"pickup_ms_p50.{kind}"] = median(samples)
        figures[f"pickup_ms_p95.{kind}"] = percentile(samples, 95)
        print(
            f"  pickup {kind}: p50 {median(samples):.2f} ms, p95 {percentile(samples, 95):.2f} ms",
            flush=True,
        )
    return figures
