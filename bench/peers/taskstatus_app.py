"""taskstatus's driver in the harness (runs in the checkout's .venv, the system under test).

The store is $BENCH_TASKSTATUS_URL (a sqlite:/// file or a postgresql:// database, which
``setup`` creates and ``drop`` drops). Workers are ``taskstatus worker`` processes that the
harness starts (run.py); the tasks are bench.handlers' ``bench.noop`` and ``bench.stamp``.
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path
from urllib.parse import urlsplit

import psycopg
from psycopg import sql

import bench.handlers  # noqa: F401 - the handlers submitted here
from bench.peers import _driver
from taskstatus import connect

URL = os.environ.get("BENCH_TASKSTATUS_URL", "")
HANDLER = os.environ.get("BENCH_TASKSTATUS_HANDLER", "bench.noop")
TEMPLATE = os.environ.get("BENCH_TASKSTATUS_TEMPLATE")  # a database to start from
# FILE_COPY (bench/stored.py, both sides): the copy of a large template checkpoints once
# instead of writing the template to the WAL (WAL_LOG, PostgreSQL 15's default: 1.6 GB for the
# 1 M template, with checkpoints still running through the timed run)
STRATEGY = os.environ.get("BENCH_TASKSTATUS_CREATE_STRATEGY")


def _admin() -> tuple[str, str]:
    parts = urlsplit(URL)
    return parts._replace(path="/postgres").geturl(), parts.path.lstrip("/")


def cmd_setup(_: argparse.Namespace) -> None:
    if URL.startswith("postgres"):
        admin, name = _admin()
        with psycopg.connect(admin, autocommit=True) as conn:
            conn.execute(
                sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
            )
            create = sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name))
            if TEMPLATE:
                create += sql.SQL(" TEMPLATE {}").format(sql.Identifier(TEMPLATE))
            if STRATEGY:
                create += sql.SQL(" STRATEGY {}").format(sql.Identifier(STRATEGY.lower()))
            conn.execute(create)
    else:
        Path(URL.removeprefix("sqlite:///")).unlink(missing_ok=True)
    with connect(URL):  # migrates
        pass
    _driver.emit({"setup": URL})


def cmd_drop(_: argparse.Namespace) -> None:
    if URL.startswith("postgres"):
        admin, name = _admin()
        with psycopg.connect(admin, autocommit=True) as conn:
            conn.execute(
                sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
            )
    else:
        for suffix in ("", "-wal", "-shm"):
            Path(URL.removeprefix("sqlite:///") + suffix).unlink(missing_ok=True)
    _driver.emit({"dropped": URL})


def cmd_throughput(args: argparse.Namespace) -> None:
    with connect(URL) as conn:
        before = conn.count('completionStatus eq "SUCCESS"')
        report = _driver.throughput(
            "taskstatus",
            args.n,
            lambda k: conn.submit_many(HANDLER, [{}] * k) and None,
            lambda: conn.count("completionStatus isnull") == 0,
            f"submit_many of {HANDLER} (one statement)",
            args.poll_ms,
        )
        after = conn.count('completionStatus eq "SUCCESS"')
        report["succeeded"] = after - before - _driver.WARMUP
    _driver.emit(report)


def cmd_pickup(args: argparse.Namespace) -> None:
    with connect(URL) as conn:
        report = _driver.pickup(
            "taskstatus",
            args.tries,
            Path(args.marker),
            lambda marker: conn.submit("bench.stamp", {"marker": marker}) and None,
        )
    _driver.emit(report)


def main() -> None:
    _driver.main(globals())


if __name__ == "__main__":
    main()
