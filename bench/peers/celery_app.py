"""Celery's driver in the harness. Runs ONLY inside bench/.venvs/celery.

Redis (the harness's own server, $BENCH_REDIS_URL) is the broker (db 14) and the result
backend (db 15): a finished task is a ``celery-task-meta-*`` key in the result db, so
``DBSIZE`` of that db counts them. Sub-commands as in _driver.py; ``worker`` takes the pool
and the concurrency. Everything else (prefetch multiplier 4, acks early, json) is Celery's
default.
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path
from typing import Any

import _driver
import redis
from celery import Celery

REDIS = os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379")
BROKER_URL = f"{REDIS}/14"
BACKEND_URL = f"{REDIS}/15"

app = Celery("bench_peers", broker=BROKER_URL, backend=BACKEND_URL)
app.conf.update(
    broker_connection_retry_on_startup=True,
    worker_hijack_root_logger=True,
    worker_redirect_stdouts=False,
    result_expires=3600,
)


@app.task(name="bench_peers.noop")
def noop() -> None:
    return None


@app.task(name="bench_peers.stamp", ignore_result=True)
def stamp(marker: str) -> None:
    _driver.stamp(marker)


def cmd_worker(args: argparse.Namespace) -> None:
    app.worker_main(
        argv=[
            "worker",
            f"--pool={args.pool}",
            f"--concurrency={args.concurrency}",
            "--loglevel=WARNING",
            "--without-mingle",
            "--without-gossip",
            f"--hostname=bench_{os.getpid()}@%h",
        ]
    )


def cmd_setup(_: argparse.Namespace) -> None:
    for url in (BROKER_URL, BACKEND_URL):
        redis.Redis.from_url(url).flushdb()
    _driver.emit({"setup": [BROKER_URL, BACKEND_URL]})


cmd_drop = cmd_setup


def cmd_throughput(args: argparse.Namespace) -> None:
    db = redis.Redis.from_url(BACKEND_URL)
    expected = 0

    def submit(k: int) -> None:
        nonlocal expected
        expected += k
        with app.producer_or_acquire() as producer, producer.batch():
            # kombu >= 5.7: publishes buffered in a Redis pipeline
            for _ in range(k):
                noop.apply_async(producer=producer)

    report = _driver.throughput(
        "celery",
        args.n,
        submit,
        lambda: db.dbsize() >= expected,
        "apply_async in producer.batch()",
        args.poll_ms,
    )
    succeeded = 0
    for key in db.scan_iter(count=1000):
        raw: Any = db.get(key)
        succeeded += raw is not None and b'"SUCCESS"' in raw
    report["succeeded"] = succeeded - _driver.WARMUP
    _driver.emit(report)


def cmd_pickup(args: argparse.Namespace) -> None:
    report = _driver.pickup(
        "celery", args.tries, Path(args.marker), lambda m: stamp.apply_async((m,)) and None
    )
    _driver.emit(report)


def main() -> None:
    _driver.main(globals(), {"--pool": "prefork", "--concurrency": 2})


if __name__ == "__main__":
    main()
