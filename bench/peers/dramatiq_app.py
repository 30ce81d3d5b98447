"""Dramatiq's driver in the harness. Runs ONLY inside bench/.venvs/dramatiq.

Redis (the harness's own server, $BENCH_REDIS_URL, db 13) is the broker; Dramatiq keeps no
results, and a message is done when it is acked, which deletes it from the queue's
``dramatiq:default.msgs`` hash: the run is done when that hash is empty. ``worker`` is one
``dramatiq`` process with the given threads. Sub-commands as in _driver.py; there is no bulk
enqueue, so the submit sends message by message.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

import _driver
import dramatiq
import redis
from dramatiq.brokers.redis import RedisBroker

REDIS_URL = f"{os.environ.get('BENCH_REDIS_URL', 'redis://127.0.0.1:6379')}/13"
MESSAGES = "dramatiq:default.msgs"
DEAD = "dramatiq:default.XQ.msgs"

dramatiq.set_broker(RedisBroker(url=REDIS_URL))


@dramatiq.actor(queue_name="default")
def noop() -> None:
    return None


@dramatiq.actor(queue_name="default")
def stamp(marker: str) -> None:
    _driver.stamp(marker)


def cmd_setup(_: argparse.Namespace) -> None:
    redis.Redis.from_url(REDIS_URL).flushdb()
    _driver.emit({"setup": REDIS_URL})


cmd_drop = cmd_setup


def cmd_worker(args: argparse.Namespace) -> None:
    here = str(Path(__file__).resolve().parent)
    os.execv(  # noqa: S606 - becomes the dramatiq worker, arguments fixed here
        sys.executable,
        [
            sys.executable,
            "-m",
            "dramatiq",
            "dramatiq_app",
            "--path",
            here,
            "--processes",
            "1",
            "--threads",
            str(args.threads),
        ],
    )


def cmd_throughput(args: argparse.Namespace) -> None:
    db = redis.Redis.from_url(REDIS_URL)

    def submit(k: int) -> None:
        for _ in range(k):
            noop.send()

    report = _driver.throughput(
        "dramatiq",
        args.n,
        submit,
        lambda: db.hlen(MESSAGES) == 0,
        "actor.send per message",
        args.poll_ms,
    )
    report["succeeded"] = args.n if db.hlen(DEAD) == 0 else -int(db.hlen(DEAD))
    _driver.emit(report)


def cmd_pickup(args: argparse.Namespace) -> None:
    report = _driver.pickup(
        "dramatiq", args.tries, Path(args.marker), lambda m: stamp.send(m) and None
    )
    _driver.emit(report)


def main() -> None:
    _driver.main(globals(), {"--threads": 8})


if __name__ == "__main__":
    main()
