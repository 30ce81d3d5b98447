"""The remote client against one `taskstatus serve` process on SQLite (no in-process workers
for the latency figures; 4 for the wait figure), printing its figures as JSON:

- `client_get_ms_p50/p99`: the sync client's `get` of one task, 500 calls after 50;
- `client_submit_ms_p50`: one `submit` (with the idempotency key the client adds), 200 calls;
- `client_submit_many_1000_ms`: `submit_many` of 1,000 tasks, one request;
- `client_wait_requests`: HTTP requests one `wait()` makes for a task that runs 3 s;
- `client_burst_*`: 20 concurrent submits against `--rate-limit 5 --rate-burst 5`: seconds to
  complete all, how many 429s were answered, and how many tasks were stored (must be 20).

    .venv/bin/python -m bench.client
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx

import taskstatus
from taskstatus.client import AsyncRemoteConnection


def _port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextmanager
def serve(workdir: Path, *args: str) -> Iterator[tuple[str, dict[str, str]]]:
    port = _port()
    creds = workdir / f"creds-{port}.json"
    env = {k: v for k, v in os.environ.items() if not k.startswith("TASKSTATUS_")}
    proc = subprocess.Popen(
        [sys.executable, "-m", "taskstatus", "serve", "--database",
         f"sqlite:///{workdir}/bench-{port}.db", "--port", str(port), "--credentials-file",
         str(creds), "--no-access-log", *args],
        env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while not creds.exists() or httpx.get(f"{url}/ready").status_code != 200:
            if time.monotonic() > deadline:
                raise RuntimeError("the server did not start")
            time.sleep(0.1)
        yield url, json.loads(creds.read_text())
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(30)


def _ms(samples: list[float], q: float) -> float:
    ordered = sorted(samples)
    return round(1000 * ordered[min(len(ordered) - 1, int(q * len(ordered)))], 2)


def latency(url: str, creds: dict[str, str]) -> dict[str, Any]:
    with taskstatus.connect(url, **creds) as ts:
        task = ts.submit("Sleep", {"seconds": 0})
        for _ in range(50):
            ts.get(task.id)
        gets = []
        for _ in range(500):
            started = time.perf_counter()
            ts.get(task.id)
            gets.append(time.perf_counter() - started)
        submits = []
        for _ in range(200):
            started = time.perf_counter()
            ts.submit("Sleep", {"seconds": 0})
            submits.append(time.perf_counter() - started)
        started = time.perf_counter()
        ts.submit_many("Sleep", [{"seconds": 0}] * 1000)
        many = time.perf_counter() - started
    return {
        "client_get_ms_p50": _ms(gets, 0.5),
        "client_get_ms_p99": _ms(gets, 0.99),
        "client_submit_ms_p50": round(1000 * statistics.median(submits), 2),
        "client_submit_many_1000_ms": round(1000 * many, 1),
    }


def wait_requests(url: str, creds: dict[str, str]) -> dict[str, Any]:
    with taskstatus.connect(url, **creds) as ts:
        task = ts.submit("Sleep", {"seconds": 3})
        sent: list[str] = []

        async def hook(request: httpx.Request) -> None:
            sent.append(request.url.path)

        ts._inner.transport.http.event_hooks["request"].append(hook)  # type: ignore[union-attr]
        ts.wait(task.id, timeout=60)
    return {"client_wait_requests": len(sent)}


async def burst(url: str, creds: dict[str, str]) -> dict[str, Any]:
    async with AsyncRemoteConnection(url, **creds, retries=10) as ts:
        statuses: list[int] = []

        async def hook(response: httpx.Response) -> None:
            statuses.append(response.status_code)

        ts.transport.http.event_hooks["response"].append(hook)
        started = time.perf_counter()
        tasks = await asyncio.gather(*(ts.submit("Sleep", {"seconds": 0}) for _ in range(20)))
        elapsed = time.perf_counter() - started
        stored = await ts.count()
    return {
        "client_burst_20_at_5_per_s_s": round(elapsed, 2),
        "client_burst_429s": statuses.count(429),
        "client_burst_tasks_stored": stored,
        "client_burst_distinct_ids": len({t.id for t in tasks}),
    }


def main() -> None:
    figures: dict[str, Any] = {}
    with tempfile.TemporaryDirectory() as tmp:
        workdir = Path(tmp)
        with serve(workdir, "--concurrency", "0", "--rate-limit", "0") as (url, creds):
            figures.update(latency(url, creds))
        with serve(workdir, "--concurrency", "4") as (url, creds):
            figures.update(wait_requests(url, creds))
        limited = ("--concurrency", "0", "--rate-limit", "5", "--rate-burst", "5")
        with serve(workdir, *limited) as (url, creds):
            figures.update(asyncio.run(burst(url, creds)))
    print(json.dumps(figures, indent=2))


if __name__ == "__main__":
    main()
