"""What the benchmarks share: scratch databases, worker and server processes, statistics."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import httpx
import psycopg

if TYPE_CHECKING:  # (the peers' drivers run where taskstatus is not installed)
    from taskstatus import Connection

ROOT = Path(__file__).resolve().parents[1]
PG_ADMIN = os.environ.get("TASKSTATUS_BENCH_POSTGRES", "postgresql://postgres@127.0.0.1:5432/test")


def cpu_seconds(pid: int) -> float:
    """utime + stime of process `pid` (all its threads, those that ended included)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")  # proc(5): 14, 15


def wait_drained(conn: Connection, timeout: float, poll: float = 0.05) -> None:
    """Until no task of `conn`'s store is unfinished; SystemExit after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while conn.count("completionStatus isnull") > 0:
        if time.monotonic() > deadline:
            raise SystemExit("timed out waiting for the workers")
        time.sleep(poll)


def median(values: list[float]) -> float:
    return float(statistics.median(values))


def percentile(values: list[float], p: float) -> float:
    ordered = sorted(values)
    k = max(0, min(len(ordered) - 1, round(p / 100 * (len(ordered) - 1))))
    return ordered[k]


@contextlib.contextmanager
def sqlite_url() -> Iterator[str]:
    folder = tempfile.mkdtemp(prefix="taskstatus-bench-")
    try:
        yield f"sqlite:///{folder}/bench.db"
    finally:
        shutil.rmtree(folder, ignore_errors=True)


@contextlib.contextmanager
def postgres_url() -> Iterator[str]:
    """A fresh PostgreSQL database, dropped afterwards."""
    name = f"taskstatus_bench_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(PG_ADMIN, autocommit=True) as admin:
        admin.execute(f'CREATE DATABASE "{name}"')
    base = PG_ADMIN.rsplit("/", 1)[0]
    try:
        yield f"{base}/{name}"
    finally:
        with psycopg.connect(PG_ADMIN, autocommit=True) as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@contextlib.contextmanager
def database(kind: str) -> Iterator[str]:
    with sqlite_url() if kind == "sqlite" else postgres_url() as url:
        yield url


def taskstatus(*args: str, **popen: object) -> subprocess.Popen[bytes]:
    """Start ``taskstatus ARGS`` (from this checkout) with the bench handlers importable."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("TASKSTATUS_")}
    return subprocess.Popen(  # type: ignore[call-overload, no-any-return]
        [sys.executable, "-m", "taskstatus", *args], cwd=ROOT, env=env, **popen
    )


@contextlib.contextmanager
def workers(url: str, count: int, *extra: str) -> Iterator[list[subprocess.Popen[bytes]]]:
    procs = [
        taskstatus(
            "worker",
            "--database",
            url,
            "--no-demo",
            "--import",
            "bench.handlers",
            *extra,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        for _ in range(count)
    ]
    try:
        yield procs
    finally:
        for p in procs:
            p.terminate()
        for p in procs:
            try:
                p.wait(30)
            except subprocess.TimeoutExpired:
                p.kill()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def api_client(url: str) -> dict[str, str]:
    """A new admin API client of the database at `url` (made with `taskstatus clients`)."""
    name = f"bench-{uuid.uuid4().hex[:8]}"
    proc = taskstatus(
        "clients",
        "create",
        name,
        "--scope",
        "tasks:admin",
        "--json",
        "--database",
        url,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    out, err = proc.communicate(timeout=60)
    if proc.returncode != 0:
        raise RuntimeError(f"taskstatus clients create failed: {err.decode()}")
    return dict(json.loads(out))


@contextlib.contextmanager
def server(
    url: str, *extra: str, procs: list[subprocess.Popen[bytes]] | None = None
) -> Iterator[tuple[str, str]]:
    """`taskstatus serve` (no workers, no rate limit, no access log); yields (base url, token).
    The process is appended to `procs` when given (to read its RSS, say)."""
    creds = api_client(url)
    folder = Path(tempfile.mkdtemp(prefix="taskstatus-bench-serve-"))
    port = free_port()
    proc = taskstatus(
        "serve",
        "--database",
        url,
        "--port",
        str(port),
        "--concurrency",
        "0",
        "--rate-limit",
        "0",
        "--no-access-log",
        "--no-demo",
        "--credentials-file",
        str(folder / "creds.json"),
        *extra,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    if procs is not None:
        procs.append(proc)
    base = f"http://127.0.0.1:{port}"
    try:
        wait_until(lambda: _ready(base), 60, "the server to start")
        token = httpx.post(
            f"{base}/oauth/token", data={"grant_type": "client_credentials", **creds}
        ).json()["access_token"]
        yield base, token
    finally:
        proc.terminate()
        proc.wait(30)
        shutil.rmtree(folder, ignore_errors=True)


def _ready(base: str) -> bool:
    try:
        return httpx.get(f"{base}/ready", timeout=1).status_code == 200
    except httpx.TransportError:
        return False


def wait_until(
    predicate: Callable[[], bool], timeout: float, what: str, every: float = 0.05
) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out waiting for {what}")
        time.sleep(every)
