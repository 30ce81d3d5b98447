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
  process's RSS and CPU, and status_get_rps (wrk, as bench/status_get.py) with those streams
  open against the same without them, in alternating rounds while a task reports in both. The
  streams are read by bench/sse_readers.py in a process of its own; the API process has CPU 0
  to itself, the readers, the worker and wrk CPU 1 (bench/README.md says exactly how).
- e2e_tasks_per_s.{kind}.events_on / .events_off: bench/e2e.py's run with the event log, and
  with its triggers dropped, in 5 pairs (which goes first alternates), median of each;
  .events_pair_ratio, the median of the pairs' ratios.
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
import queue
import subprocess
import sys
import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import Any

import httpx

import bench.handlers  # noqa: F401 - registers the handlers submitted here
from bench import e2e
from bench.common import (
    ROOT,
    cpu_seconds,
    database,
    median,
    percentile,
    server,
    wait_until,
    workers,
)
from bench.status_get import wrk
from taskstatus import connect
from taskstatus.model import CompletionStatus, Task, TaskState
from taskstatus.store import Outcome

STREAMS = 1000
TIMEOUT = httpx.Timeout(60, read=60)

DROP_EVENT_LOG = {
    "sqlite": [
        "DROP TRIGGER task_events_created",
        "DROP TRIGGER task_events_changed",
        "DROP TRIGGER task_events_launched",
        "DROP TRIGGER task_events_ended",
        "DROP TRIGGER task_events_message",
    ],
    "postgres": [
        "DROP TRIGGER tasks_events_inserted ON tasks",
        "DROP TRIGGER tasks_events_updated ON tasks",
        "DROP TRIGGER task_messages_events ON task_messages",
        # the claim and the finish write their events themselves (migration 0010) unless this
        # is off (postgres.sql: event_log); new connections read it, the workers' all are
        "DO $$ BEGIN EXECUTE format('ALTER DATABASE %I SET taskstatus.event_log = off', "
        "current_database()); END $$",
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


SERVER_CPU, LOAD_CPU = 0, 1  # the API process on one core; readers, worker and wrk on the other
TICKS = 140  # a round's task reports 10 times a second for 14 s; wrk runs WRK_SECONDS of them
QUIET_SECONDS = 3  # before wrk: the server's CPU with the streams alone
WRK_SECONDS = 5  # short rounds, many of them: the machine's other load changes by the minute


def _pin(pid: int, cpus: set[int]) -> None:
    """Every thread of process `pid` onto `cpus` (threads it starts later inherit)."""
    for tid in os.listdir(f"/proc/{pid}/task"):
        os.sched_setaffinity(int(tid), cpus)


class _Readers:
    """bench/sse_readers.py in a process of its own: `count` streams of `path`."""

    def __init__(self, base: str, token: str, path: str, count: int) -> None:
        host, port = base.removeprefix("http://").split(":")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "bench.sse_readers", host, port, path, str(count)],
            cwd=ROOT,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        assert self.proc.stdin is not None and self.proc.stdout is not None
        self.proc.stdin.write(token + "\n")
        self.proc.stdin.close()
        self.lines: queue.Queue[str] = queue.Queue()
        out = self.proc.stdout
        threading.Thread(target=lambda: [self.lines.put(x) for x in out], daemon=True).start()

    def opened(self, timeout: float) -> None:
        line = self.lines.get(timeout=timeout)
        if line.strip() != "opened":
            raise RuntimeError(f"the streams did not open: {line[:500]}")

    def result(self, timeout: float) -> dict[str, Any]:
        found: dict[str, Any] = json.loads(self.lines.get(timeout=timeout))
        self.proc.wait(30)
        return found

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()


def _rss_sampler(pid: int, stop: threading.Event, peak: list[float]) -> threading.Thread:
    def sample() -> None:
        while not stop.wait(0.25):
            peak[0] = max(peak[0], _rss_mb(pid))

    thread = threading.Thread(target=sample, daemon=True)
    thread.start()
    return thread


def _round(
    url: str, conn: Any, base: str, token: str, pid: int, count: int, target: str
) -> dict[str, Any]:
    """One round: a task reporting 10 times a second for 12 s, followed by `count` streams
    (none when 0), and wrk against a GET while it reports. The worker starts once the streams
    are open, so every stream sees the task live from its first report."""
    headers = {"Authorization": f"Bearer {token}"}
    task = conn.submit("bench.ticks", {"n": TICKS, "every": 0.1})
    path = f"/v2024/task-status/{task.id}/events"
    readers = _Readers(base, token, path, count) if count else None
    try:
        if readers:
            readers.opened(120)
        with workers(url, 1, "--concurrency", "10"):
            wait_until(lambda: conn.get(task.id).launched is not None, 60, "the task to start")
            time.sleep(1)
            logged_before, cpu_before = len(_all_events(url, task.id)), cpu_seconds(pid)
            time.sleep(QUIET_SECONDS)
            quiet_cpu = cpu_seconds(pid) - cpu_before
            quiet_events = len(_all_events(url, task.id)) - logged_before
            stop, peak = threading.Event(), [_rss_mb(pid)]
            sampler = _rss_sampler(pid, stop, peak)
            cpu_before = cpu_seconds(pid)
            rps, _ = wrk(target, headers, WRK_SECONDS)
            wrk_cpu = cpu_seconds(pid) - cpu_before
            stop.set()
            sampler.join()
            if conn.get(task.id).terminal:
                raise RuntimeError("the task ended before wrk did: raise TICKS")
            found = readers.result(120) if readers else {"ids": [], "errors": []}
            wait_until(lambda: conn.get(task.id).terminal, 60, "the task to end")
    finally:
        if readers:
            readers.close()
    logged = [e.seq for e in _all_events(url, task.id)]
    streams = found["ids"]
    return {
        "rps": rps,
        "rss_mb": peak[0],
        "cpu_pct": 100 * quiet_cpu / QUIET_SECONDS,  # of one core, before wrk
        # of one core, during wrk: near 100 when the server (not wrk) limits the rps
        "wrk_cpu_pct": 100 * wrk_cpu / WRK_SECONDS,
        # CPU per event sent on one stream (a with-round: `count` sends per logged event)
        "us_per_send": 1e6 * quiet_cpu / max(1, quiet_events * count),
        "events": len(logged),
        "errors": found["errors"],
        # each stream must have every logged event once, in order
        "missed": sum(len(set(logged) - set(ids)) for ids in streams)
        + len(logged) * len(found["errors"]),  # a stream that failed missed them all
        "repeated": sum(len(ids) - len(set(ids)) for ids in streams),
        "disordered": sum(ids != sorted(ids) for ids in streams),
        "exact": sum(ids == logged for ids in streams),
    }


def streams(count: int = STREAMS, rounds: int = 5) -> dict[str, float]:
    """`rounds` pairs of rounds, alternating: without streams (the task reporting, nobody
    following it), then with `count` streams following it. The API process has one core to
    itself and everything else the other, in both, when the machine has two."""
    pinned = (os.cpu_count() or 1) >= 2
    mine = os.sched_getaffinity(0)
    if pinned:
        os.sched_setaffinity(0, {LOAD_CPU})  # inherited by wrk, the readers and the worker
    try:
        with (
            database("sqlite") as url,
            connect(url) as conn,
            nodes(url, 1, "--max-streams-per-client", str(count + 10)) as api,
        ):
            base, token, pid = api[0]
            if pinned:
                _pin(pid, {SERVER_CPU})
            target = f"{base}/v2024/task-status/{conn.submit('bench.noop', {}).id}"
            rss_idle = _rss_mb(pid)
            without: list[dict[str, Any]] = []
            with_: list[dict[str, Any]] = []
            for _ in range(rounds):
                without.append(_round(url, conn, base, token, pid, 0, target))
                with_.append(_round(url, conn, base, token, pid, count, target))
                print(
                    f"  without {without[-1]['rps']:.0f} rps, with {count} streams "
                    f"{with_[-1]['rps']:.0f} rps, RSS {with_[-1]['rss_mb']:.0f} MB, "
                    f"server CPU without wrk {without[-1]['cpu_pct']:.0f}% / "
                    f"{with_[-1]['cpu_pct']:.0f}% ({with_[-1]['us_per_send']:.0f} us per send), "
                    f"during wrk {without[-1]['wrk_cpu_pct']:.0f}% / "
                    f"{with_[-1]['wrk_cpu_pct']:.0f}%, "
                    f"missed {with_[-1]['missed']}, repeated {with_[-1]['repeated']}, "
                    f"exact {with_[-1]['exact']}/{count}, errors {with_[-1]['errors'][:3]}, "
                    f"load {os.getloadavg()[0]:.2f}",
                    flush=True,
                )
    finally:
        os.sched_setaffinity(0, mine)
    rps_with = median([r["rps"] for r in with_])
    rps_without = median([r["rps"] for r in without])
    figures = {
        "sse_streams_1000.missed_events": float(
            sum(r["missed"] + r["repeated"] + r["disordered"] for r in with_)
        ),
        "sse_streams_1000.rss_mb": max(r["rss_mb"] for r in with_),
        "sse_streams_1000.rss_idle_mb": rss_idle,
        "sse_streams_1000.status_get_rps": rps_with,
        "sse_streams_1000.status_get_rps_without": rps_without,
        "sse_streams_1000.status_get_ratio": rps_with / rps_without,
        "sse_streams_1000.events_per_stream": float(median([r["events"] for r in with_])),
        "sse_streams_1000.server_cpu_pct": median([r["cpu_pct"] for r in with_]),
        "sse_streams_1000.server_cpu_pct_without": median([r["cpu_pct"] for r in without]),
        "sse_streams_1000.server_us_per_send": median([r["us_per_send"] for r in with_]),
        "sse_streams_1000.server_wrk_cpu_pct": median([r["wrk_cpu_pct"] for r in with_]),
        "sse_streams_1000.server_wrk_cpu_pct_without": median([r["wrk_cpu_pct"] for r in without]),
    }
    print(f"  {count} streams ({'pinned' if pinned else 'not pinned'}): {figures}", flush=True)
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


def overhead(kind: str, runs: int = 5) -> dict[str, float]:
    """Pairs of e2e runs with the log and without; which of a pair goes first alternates, so
    that a machine drifting during the run favours neither."""
    on: list[float] = []
    off: list[float] = []
    for i in range(runs):
        for events in (True, False) if i % 2 == 0 else (False, True):
            if events:
                on.append(e2e.one_run(kind)[0])
            else:
                off.append(
                    e2e.one_run(kind, prepare=lambda url: _sql(url, DROP_EVENT_LOG[kind]))[0]
                )
        print(f"  e2e {kind}: with events {on[-1]:.0f}/s, without {off[-1]:.0f}/s", flush=True)
    return {
        f"e2e_tasks_per_s.{kind}.events_on": median(on),
        f"e2e_tasks_per_s.{kind}.events_off": median(off),
        # the median of the pairs' ratios: what the drift of a shared machine moves least
        f"e2e_tasks_per_s.{kind}.events_pair_ratio": median(
            [a / b for a, b in zip(on, off, strict=True)]
        ),
    }


def noop_outcomes(tasks: Sequence[Task]) -> list[Outcome]:
    """What a worker sends when no-op `tasks` end: success at 100 %, empty attributes."""
    return [
        Outcome(
            t.id,
            TaskState.SUCCEEDED,
            CompletionStatus.SUCCESS,
            percent_complete=100,
            attributes={},
            returns=[],
        )
        for t in tasks
    ]


def _store_cpu(events: bool, n: int = 5000) -> dict[str, float]:
    """CPU microseconds per task of submit, claim and finish on a fresh SQLite file."""
    from taskstatus.store import make_store

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
                    await store.finish("bench-worker", noop_outcomes(got))
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
