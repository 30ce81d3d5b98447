"""Celery side of the peer benchmark. Runs ONLY inside bench/.venvs/celery.

Sub-commands (each prints exactly one JSON object on its last stdout line):

* ``worker``      -- prefork worker, concurrency 2; touches $BENCH_READY_FILE when ready.
* ``reset``       -- FLUSHDB the dedicated broker and result-backend Redis dbs.
* ``throughput``  -- submit N no-op tasks, wait until N results are in the backend.
* ``pickup``      -- one task at a time to an idle worker; latency until the body starts.

Broker and result backend each get their own dedicated Redis db (14 and 15 by
default) so that the result db holds nothing but ``celery-task-meta-*`` keys and
``DBSIZE`` is an O(1) count of stored results.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import redis
from celery import Celery, group
from celery.result import AsyncResult
from celery.signals import worker_ready

BROKER_URL = os.environ.get("BENCH_CELERY_BROKER", "redis://127.0.0.1:6379/14")
BACKEND_URL = os.environ.get("BENCH_CELERY_BACKEND", "redis://127.0.0.1:6379/15")
CONCURRENCY = 2
SUBMIT_METHODS = ("loop", "batch", "group", "group-batch")
DEFAULT_SUBMIT = "batch"

app = Celery("bench_peers", broker=BROKER_URL, backend=BACKEND_URL)
app.conf.update(
    broker_connection_retry_on_startup=True,
    worker_hijack_root_logger=True,
    worker_redirect_stdouts=False,
    result_expires=3600,
    # Everything else (prefetch multiplier 4, acks early, json serializer) stays default.
)


@app.task(name="bench_peers.noop")
def noop() -> None:
    return None


@app.task(name="bench_peers.stamp")
def stamp() -> float:
    """Return the wall-clock time at which the task body started."""
    return time.time()


@worker_ready.connect
def _touch_ready_file(**_: Any) -> None:
    path = os.environ.get("BENCH_READY_FILE")
    if path:
        Path(path).write_text(str(os.getpid()))


def _emit(payload: dict[str, Any]) -> None:
    sys.stdout.write(json.dumps(payload) + "\n")
    sys.stdout.flush()


def _results_db() -> redis.Redis:
    return redis.Redis.from_url(BACKEND_URL)


def cmd_worker(_: argparse.Namespace) -> None:
    app.worker_main(
        argv=[
            "worker",
            "--pool=prefork",
            f"--concurrency={CONCURRENCY}",
            "--loglevel=WARNING",
            # Start-up/cluster chatter only; task handling is unaffected.
            "--without-mingle",
            "--without-gossip",
            "--hostname=bench_peers@%h",
        ]
    )


def cmd_reset(_: argparse.Namespace) -> None:
    for url in (BROKER_URL, BACKEND_URL):
        redis.Redis.from_url(url).flushdb()
    _emit({"reset": [BROKER_URL, BACKEND_URL]})


def _warm_up(rounds: int = 5) -> None:
    """Open the broker/backend connections and prove both pool processes answer."""
    for _ in range(rounds):
        stamp.apply_async().get(timeout=60)


@contextmanager
def _producer(batch: bool) -> Iterator[Any]:
    with app.producer_or_acquire() as producer:
        if batch:
            # kombu >= 5.7: Redis publishes buffered in a non-transactional pipeline,
            # flushed every 1000 commands and on exit.
            with producer.batch():
                yield producer
        else:
            yield producer


def _submit(n: int, method: str) -> list[AsyncResult]:
    if method == "loop":
        with _producer(batch=False) as producer:
            return [noop.apply_async(producer=producer) for _ in range(n)]
    if method == "batch":
        with _producer(batch=True) as producer:
            return [noop.apply_async(producer=producer) for _ in range(n)]
    if method == "group":
        return list(group(noop.s() for _ in range(n)).apply_async().results)
    if method == "group-batch":
        with _producer(batch=True) as producer:
            res = group(noop.s() for _ in range(n)).apply_async(producer=producer)
        return list(res.results)
    raise SystemExit(f"unknown submit method {method!r}")


def cmd_throughput(args: argparse.Namespace) -> None:
    n: int = args.n
    db = _results_db()
    _warm_up()
    db.flushdb()  # forget the warm-up results: the result db now counts only this run
    gc.collect()
    poll_s = args.poll_ms / 1000

    t0 = time.perf_counter()
    results = _submit(n, args.method)
    t_submitted = time.perf_counter()
    while db.dbsize() < n:
        time.sleep(poll_s)
    t_done = time.perf_counter()

    # Verification (outside the timed window): every submitted id has a SUCCESS result.
    ids = [r.id for r in results]
    backend: Any = app.backend
    succeeded = 0
    for i in range(0, n, 1000):
        keys = [backend.get_key_for_task(task_id) for task_id in ids[i : i + 1000]]
        for raw in db.mget(keys):
            if raw is not None and json.loads(raw)["status"] == "SUCCESS":
                succeeded += 1
    _emit(
        {
            "peer": "celery",
            "n": n,
            "method": args.method,
            "submit_s": t_submitted - t0,
            "e2e_s": t_done - t0,
            "submit_per_s": n / (t_submitted - t0),
            "e2e_tasks_per_s": n / (t_done - t0),
            "succeeded": succeeded,
            "result_keys": db.dbsize(),
        }
    )


def cmd_pickup(args: argparse.Namespace) -> None:
    _warm_up()
    latencies_ms: list[float] = []
    for _ in range(args.tries):
        time.sleep(args.idle_ms / 1000)  # let the worker go idle (blocked on BRPOP)
        t0 = time.time()
        started = stamp.apply_async().get(timeout=30)
        latencies_ms.append((float(started) - t0) * 1000)
    _emit({"peer": "celery", "pickup_ms": latencies_ms})


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    sub = parser.add_subparsers(dest="cmd", required=True)
    sub.add_parser("worker").set_defaults(func=cmd_worker)
    sub.add_parser("reset").set_defaults(func=cmd_reset)
    tp = sub.add_parser("throughput")
    tp.add_argument("--n", type=int, default=10_000)
    tp.add_argument("--method", choices=SUBMIT_METHODS, default=DEFAULT_SUBMIT)
    tp.add_argument("--poll-ms", type=float, default=5.0)
    tp.set_defaults(func=cmd_throughput)
    pk = sub.add_parser("pickup")
    pk.add_argument("--tries", type=int, default=50)
    pk.add_argument("--idle-ms", type=float, default=100.0)
    pk.set_defaults(func=cmd_pickup)
    args = parser.parse_args()
    args.func(args)


if __name__ == "__main__":
    main()
