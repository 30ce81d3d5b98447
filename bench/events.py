"""Live events (issue 13):

- event_latency_ms_p50/_p99.{postgres,sqlite}: `ctx.progress(time.time())` in a worker process
  -> the `progress` event read by an SSE client (same host clock). PostgreSQL: two API
  processes, the task submitted to the first, followed through the second; SQLite: one API
  process and the worker process on one file. The handler reports every 0.3 s, slower than the
  worker's coalescing (flush_interval 0.25 s), so each report is its own write.
- wait_wakeup_ms_p50.{postgres,sqlite}: a task's `completed` time in the store -> the
  `GET ?wait=30` waiting on it returns.
- sse_streams_1000.*: 1,000 SSE streams on one API process (SQLite), each following a task
  that reports 10 times a second: missed events (each stream against the stored log), the API
  process's RSS, and status_get_rps (wrk, as bench/status_get.py) with those streams open
  against the mean of the same without them, before and after. The 1,000 clients run in this
  process, on the same 2 cores as the server, the worker and wrk.
- e2e_tasks_per_s.{kind}.events_on / .events_off: bench/e2e.py's run with the event log, and
  with its triggers dropped, alternating, median of 3 each.
- event_log_cpu_us.sqlite.{submit,claim,finish}.{on,off} (BENCH_EVENTS=costs, not in the
  default run): the CPU time of this process per task of the SQLite store's submit (batches of
  1,000), claim and finish (batches of 100, outcomes as the worker sends them), with the log
  and without, alternating, median of 5: what the log costs the store, less noisy than the
  e2e figure on a shared machine.
"""

from __future__ import annotations

import asyncio
import json
import os
import threading
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import Any

import httpx

import bench.handlers  # noqa: F401 - registers the handlers submitted here
from bench import e2e
from bench.common import database, median, percentile, server, workers
from bench.status_get import wrk
from taskstatus import connect

STREAMS = 1000
TIMEOUT = httpx.Timeout(60, read=60)

DROP_EVENT_LOG = {
    "sqlite": [
        "DROP TRIGGER task_events_created",
        "DROP TRIGGER task_events_changed",
        "DROP TRIGGER task_events_launched",
        "DROP TRIGGER task_events_ended",
        "DROP TRIGGER task_events_ended_progress",
        "DROP TRIGGER task_events_message",
    ],
    "postgres": [
        "DROP TRIGGER tasks_events_inserted ON tasks",
        "DROP TRIGGER tasks_events_updated ON tasks",
        "DROP TRIGGER task_messages_events ON task_messages",
    ],
}


def _sql(url: str, statements: list[str]) -> None:
    if url.startswith("sqlite"):
        import sqlite3

        with sqlite3.connect(url.removeprefix("sqlite:///")) as db:
            for s in statements:
                db.execute(s)
    else:
        import psycopg

        with psycopg.connect(url, autocommit=True) as db:
            for s in statements:
                db.execute(s)  # type: ignore[arg-type]


@contextmanager
def nodes(url: str, count: int, *extra: str) -> Iterator[list[tuple[str, str, int]]]:
    """`count` API processes: (base url, token, pid) each."""
    with ExitStack() as stack:
        found = []
        for _ in range(count):
            procs: list[Any] = []
            base, token = stack.enter_context(server(url, *extra, procs=procs))
            found.append((base, token, procs[0].pid))
        yield found


def _sse_lines(base: str, token: str, path: str) -> Iterator[tuple[float, str, str]]:
    """(arrival time, event kind, data) of each event of a stream."""
    headers = {"Authorization": f"Bearer {token}"}
    with httpx.stream("GET", f"{base}{path}", headers=headers, timeout=TIMEOUT) as r:
        r.raise_for_status()
        kind = ""
        for line in r.iter_lines():
            if line.startswith("event: "):
                kind = line[7:]
            elif line.startswith("data: "):
                yield time.time(), kind, line[6:]


def latency(kind: str, reports: int = 60) -> dict[str, float]:
    count = 2 if kind == "postgres" else 1
    with database(kind) as url, connect(url) as conn, nodes(url, count) as api:
        task = conn.submit("bench.ticks", {"n": reports, "every": 0.3})
        base, token, _ = api[-1]
        lags: list[float] = []
        got: list[float] = []

        def follow() -> None:
            for at, event, data in _sse_lines(base, token, f"/v2024/task-status/{task.id}/events"):
                if event == "progress":
                    lags.append(1000 * (at - float(json.loads(data)["progress"])))
                if event == "completed":
                    return

        reader = threading.Thread(target=follow)
        reader.start()
        time.sleep(0.5)
        with workers(url, 1, "--concurrency", "10"):
            reader.join(reports * 0.3 + 60)
        got = sorted(lags)
    figures = {
        f"event_latency_ms_p50.{kind}": percentile(got, 50),
        f"event_latency_ms_p99.{kind}": percentile(got, 99),
    }
    print(f"  {kind}: {len(got)} progress events, {figures}", flush=True)
    return figures


def wakeup(kind: str, rounds: int = 20) -> dict[str, float]:
    with (
        database(kind) as url,
        connect(url) as conn,
        nodes(url, 1) as api,
        workers(url, 1, "--concurrency", "10"),
    ):
        base, token, _ = api[0]
        headers = {"Authorization": f"Bearer {token}"}
        lags = []
        with httpx.Client(base_url=base, headers=headers, timeout=TIMEOUT) as client:
            for _ in range(rounds):
                task = conn.submit("bench.sleep", {"seconds": 0.3})
                r = client.get(f"/v2024/task-status/{task.id}", params={"wait": "30"})
                returned = time.time()
                assert r.json()["completionStatus"] == "SUCCESS", r.text
                completed = conn.get(task.id).completed
                assert completed is not None
                lags.append(1000 * (returned - completed.timestamp()))
    figure = {f"wait_wakeup_ms_p50.{kind}": median(lags)}
    print(f"  {kind}: {figure} (p99 {percentile(sorted(lags), 99):.1f} ms)", flush=True)
    return figure


def _rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


async def _open_streams(
    base: str, token: str, path: str, count: int, opened: threading.Event
) -> list[list[int]]:
    """`count` streams of `path`; each one's event ids, until the terminal event."""
    limits = httpx.Limits(max_connections=count + 10, max_keepalive_connections=0)
    async with httpx.AsyncClient(
        base_url=base, headers={"Authorization": f"Bearer {token}"}, limits=limits, timeout=TIMEOUT
    ) as client:
        ready = 0

        async def one() -> list[int]:
            nonlocal ready
            ids: list[int] = []
            async with client.stream("GET", path) as r:
                r.raise_for_status()
                async for line in r.aiter_lines():
                    if line.startswith("event: snapshot"):
                        ready += 1
                        if ready == count:
                            opened.set()
                    elif line.startswith("id: "):
                        ids.append(int(line[4:]))
                    elif line.startswith("event: completed"):
                        return ids
            return ids

        return await asyncio.gather(*(one() for _ in range(count)))


def streams(count: int = STREAMS) -> dict[str, float]:
    with (
        database("sqlite") as url,
        connect(url) as conn,
        nodes(url, 1, "--max-streams-per-client", str(count + 10)) as api,
    ):
        base, token, pid = api[0]
        probe = conn.submit("bench.noop", {}).id
        target = f"{base}/v2024/task-status/{probe}"
        headers = {"Authorization": f"Bearer {token}"}
        rps_without, _ = wrk(target, headers)
        rss_idle = _rss_mb(pid)
        task = conn.submit("bench.ticks", {"n": 250, "every": 0.1})  # 25 s of reports
        opened = threading.Event()
        results: list[list[list[int]]] = []
        follower = threading.Thread(
            target=lambda: results.append(
                asyncio.run(
                    _open_streams(
                        base, token, f"/v2024/task-status/{task.id}/events", count, opened
                    )
                )
            )
        )
        follower.start()
        if not opened.wait(120):
            raise TimeoutError("the streams did not open")
        with workers(url, 1, "--concurrency", "10"):
            time.sleep(3)
            rss_open = _rss_mb(pid)
            rps_with, _ = wrk(target, headers)
            follower.join(120)
        rps_without = (rps_without + wrk(target, headers)[0]) / 2  # before and after
        assert results, "the streams did not end"
        logged = [e.seq for e in _all_events(url, task.id)]
        missed = sum(len(set(logged) - set(ids)) for ids in results[0])
        doubled = sum(len(ids) - len(set(ids)) for ids in results[0])
    figures = {
        "sse_streams_1000.missed_events": float(missed + doubled),
        "sse_streams_1000.rss_mb": rss_open,
        "sse_streams_1000.rss_idle_mb": rss_idle,
        "sse_streams_1000.status_get_rps": rps_with,
        "sse_streams_1000.status_get_rps_without": rps_without,
        "sse_streams_1000.status_get_ratio": rps_with / rps_without,
        "sse_streams_1000.events_per_stream": float(len(logged)),
    }
    print(f"  {count} streams: {figures}", flush=True)
    return figures


def _all_events(url: str, task_id: str) -> list[Any]:
    from taskstatus.store import make_store

    async def read() -> list[Any]:
        store = make_store(url)
        await store.open()
        try:
            return await store.events({task_id: 0}, 100_000)
        finally:
            await store.close()

    return asyncio.run(read())


def overhead(kind: str, runs: int = 3) -> dict[str, float]:
    on, off = [], []
    for _ in range(runs):
        on.append(e2e.one_run(kind)[0])
        off.append(e2e.one_run(kind, prepare=lambda url: _sql(url, DROP_EVENT_LOG[kind]))[0])
        print(f"  e2e {kind}: with events {on[-1]:.0f}/s, without {off[-1]:.0f}/s", flush=True)
    return {
        f"e2e_tasks_per_s.{kind}.events_on": median(on),
        f"e2e_tasks_per_s.{kind}.events_off": median(off),
    }


def _store_cpu(events: bool, n: int = 5000) -> dict[str, float]:
    """CPU microseconds per task of submit, claim and finish on a fresh SQLite file."""
    from taskstatus.model import CompletionStatus, TaskState
    from taskstatus.store import Outcome, make_store

    with database("sqlite") as url, connect(url) as conn:
        if not events:
            _sql(url, DROP_EVENT_LOG["sqlite"])
        start = time.process_time()
        for _ in range(0, n, 1000):
            conn.submit_many("bench.noop", [{}] * 1000)
        submit = time.process_time() - start

        async def work() -> tuple[float, float]:
            store = make_store(url)
            await store.open()
            claim = finish = 0.0
            try:
                while True:
                    a = time.process_time()
                    got = await store.claim("bench-worker", 100, 60, ["bench.noop"])
                    b = time.process_time()
                    if not got:
                        return claim, finish
                    done = [
                        Outcome(
                            t.id,
                            TaskState.SUCCEEDED,
                            CompletionStatus.SUCCESS,
                            percent_complete=100,
                            attributes={},
                            returns=[],
                        )
                        for t in got
                    ]
                    await store.finish("bench-worker", done)
                    claim += b - a
                    finish += time.process_time() - b
            finally:
                await store.close()

        claim, finish = asyncio.run(work())
    return {"submit": 1e6 * submit / n, "claim": 1e6 * claim / n, "finish": 1e6 * finish / n}


def costs(runs: int = 5) -> dict[str, float]:
    got: dict[str, list[float]] = {}
    for _ in range(runs):
        for events in (True, False):
            for step, us in _store_cpu(events).items():
                got.setdefault(
                    f"event_log_cpu_us.sqlite.{step}.{'on' if events else 'off'}", []
                ).append(us)
    figures = {name: median(values) for name, values in sorted(got.items())}
    print(f"  {figures}", flush=True)
    return figures


def run() -> dict[str, float]:
    figures: dict[str, float] = {}
    only = os.environ.get("BENCH_EVENTS", "latency,wakeup,streams,overhead").split(",")
    for kind in ("postgres", "sqlite"):
        if "latency" in only:
            figures.update(latency(kind))
        if "wakeup" in only:
            figures.update(wakeup(kind))
    if "streams" in only:
        figures.update(streams())
    if "overhead" in only:
        for kind in ("postgres", "sqlite"):
            figures.update(overhead(kind))
    if "costs" in only:
        figures.update(costs())
    return figures
