"""Many nodes on one PostgreSQL database: two API servers, three workers, one killed.

5,000 tasks go in through the HTTP API of both servers (a token from one is accepted by the
other: the signing key is shared through the database); a worker is killed with SIGKILL while
it holds tasks. Every task must end exactly once, as SUCCESS, none lost and none run by two
workers at the same time; the killed worker's tasks are finished by the others. Each run of the
handler appends "start" and "end" lines to its process's log (unbuffered, so a killed process
loses nothing it wrote), which is how "at the same time" is checked. (Delivery is at least
once: a run of the killed worker may reach its end just before the kill, its outcome unstored;
the task then runs again after the lease expires, never at the same time.)
"""

from __future__ import annotations

import asyncio
import itertools
import json
import os
import signal
import subprocess
import sys
import time
from collections import defaultdict
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests import pg

ROOT = Path(__file__).resolve().parents[2]
TASKS = 5_000  # enough to kill a worker mid-run; 20,000 outlasted the timeout on a loaded machine
pytestmark = [pytest.mark.slow, pytest.mark.postgres]


@pytest.fixture
def database(postgres: pg.PgServer) -> Iterator[str]:
    """A new PostgreSQL database's URL, dropped afterwards."""
    name = postgres.create_database()
    try:
        yield postgres.url(name)
    finally:
        postgres.drop_database(name)


def start(args: list[str], log: Path, env: dict[str, str]) -> subprocess.Popen[bytes]:
    """Start `taskstatus args` as a process, its output going to `log`."""
    with log.open("wb") as out:
        return subprocess.Popen(
            [sys.executable, "-m", "taskstatus", *args], cwd=ROOT, env=env, stdout=out, stderr=out
        )


def wait_for(predicate, timeout: float, what: str) -> None:  # type: ignore[no-untyped-def]
    """Wait (up to `timeout` seconds) until `predicate()` is true; `what` names it on failure."""
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.1)


async def submit_all(urls: list[str], token: str, count: int) -> list[str]:
    """`count` tasks through POST /v2/task/create, spread over the servers, 32 at a time."""
    headers = {"Authorization": f"Bearer {token}"}
    limits = httpx.Limits(max_connections=16)
    clients = [
        httpx.AsyncClient(base_url=u, headers=headers, limits=limits, timeout=60) for u in urls
    ]
    ids: list[str] = []

    async def one(i: int) -> None:
        r = await clients[i % len(clients)].post(
            "/v2/task/create", json={"handler": "Logged", "request": {"seconds": 0.05}}
        )
        assert r.status_code == 201, r.text
        ids.append(r.json()["task_id"])

    try:
        for start_at in range(0, count, 32):
            await asyncio.gather(*(one(i) for i in range(start_at, min(start_at + 32, count))))
    finally:
        for c in clients:
            await c.aclose()
    return ids


def test_two_servers_three_workers_one_killed(database: str, tmp_path: Path) -> None:
    """Two API nodes and three workers on one PostgreSQL: a killed worker's tasks run again
    elsewhere, never twice at once."""
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("TASKSTATUS_")},
        "TASKSTATUS_TEST_RUN_LOG": str(tmp_path),
    }
    ports = [_free_port(), _free_port()]
    servers = [
        start(
            [
                "serve",
                "--database",
                database,
                "--port",
                str(port),
                "--concurrency",
                "0",
                "--rate-limit",
                "0",
                "--no-access-log",
                "--no-demo",
                "--import",
                "tests.worker.handlers",
                "--credentials-file",
                str(tmp_path / f"creds-{i}.json"),
            ],
            tmp_path / f"server-{i}.log",
            env,
        )
        for i, port in enumerate(ports)
    ]
    workers = [
        start(
            [
                "worker",
                "--database",
                database,
                "--no-demo",
                "--import",
                "tests.worker.handlers",
                "--concurrency",
                "40",
                "--lease-seconds",
                "2",
            ],
            tmp_path / f"worker-{i}.log",
            env,
        )
        for i in range(3)
    ]
    procs = [*servers, *workers]
    try:
        urls = [f"http://127.0.0.1:{p}" for p in ports]
        wait_for(lambda: all(_ready(u) for u in urls), 60, "both servers")
        creds_file = next(f for f in tmp_path.glob("creds-*.json"))  # only the first start has one
        creds = json.loads(creds_file.read_text())
        token = httpx.post(
            f"{urls[0]}/oauth/token", data={"grant_type": "client_credentials", **creds}
        ).json()["access_token"]
        # the other server accepts the first one's token: the key is shared
        assert (
            httpx.get(
                f"{urls[1]}/v2024/task-status", headers={"Authorization": f"Bearer {token}"}
            ).status_code
            == 200
        )

        victim = workers[1]
        killed_at: list[float] = []

        async def submit_and_kill() -> list[str]:
            submitting = asyncio.create_task(submit_all(urls, token, TASKS))
            # kill a worker in the middle, while it holds tasks (a loaded machine may
            # submit slower than the workers run: wait until a run is under way)
            while len(_runs_of(tmp_path, victim.pid)) < 300 or not _unfinished(
                tmp_path, victim.pid
            ):
                await asyncio.sleep(0.01)
            os.kill(victim.pid, signal.SIGKILL)
            killed_at.append(time.time())
            return await submitting

        ids = asyncio.run(submit_and_kill())
        assert len(ids) == len(set(ids)) == TASKS
        victim.wait(10)

        headers = {"Authorization": f"Bearer {token}"}

        def pending() -> int:
            r = httpx.get(
                f"{urls[0]}/v2024/task-status/pending-tasks",
                params={"count": "true", "limit": 0},
                headers=headers,
            )
            return int(r.headers["X-Total-Count"])

        wait_for(lambda: pending() == 0, 300, "every task to end")
        done = httpx.post(
            f"{urls[1]}/v2/task/index",
            headers=headers,
            json={"filter": {"status": "completed"}, "per-page": 1},
        ).headers
        assert int(done["X-Pagination-Total-Count"]) == TASKS  # none lost, none failed
    finally:
        for p in procs:
            if p.poll() is None:
                p.terminate()
        for p in procs:
            try:
                p.wait(30)
            except subprocess.TimeoutExpired:
                p.kill()

    # What the runs logged. A run of the killed worker may have reached its end without its
    # outcome being stored (the kill came first): the task then ran again, later, elsewhere.
    runs = _all_runs(tmp_path)
    assert set(runs) == set(ids)
    rerun = set()
    for task_id, task_runs in runs.items():
        survivors = [r for r in task_runs if r["pid"] != victim.pid]
        by_victim = [r for r in task_runs if r["pid"] == victim.pid]
        assert len(by_victim) <= 1, (task_id, task_runs)
        assert len(survivors) <= 1, (task_id, task_runs)  # a live worker's run is stored once
        assert all(r["end"] is not None for r in survivors), (task_id, task_runs)
        if not survivors:  # the killed worker finished it, and its outcome is the stored one
            assert by_victim[0]["end"] is not None, (task_id, task_runs)
        if by_victim and survivors:
            rerun.add(task_id)
            assert int(survivors[0]["attempt"]) >= 2, (
                task_id,
                task_runs,
            )  # the lost attempt counted
        spans = sorted(
            (r["start"], r["end"] if r["end"] is not None else killed_at[0]) for r in task_runs
        )
        for (_, end), (next_start, _) in itertools.pairwise(spans):
            assert next_start >= end, (task_id, task_runs)  # never two runs at the same time
    assert rerun, "the killed worker held no task when it died"
    unfinished = {
        t for t in rerun if any(r["end"] is None for r in runs[t] if r["pid"] == victim.pid)
    }
    assert unfinished, "no run of the killed worker was cut short"


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _ready(url: str) -> bool:
    try:
        return httpx.get(f"{url}/ready", timeout=1).status_code == 200
    except httpx.TransportError:
        return False


def _lines(folder: Path, pid: int | None = None) -> list[list[str]]:
    pattern = f"runs-{pid}.log" if pid else "runs-*.log"
    return [line.split() for f in folder.glob(pattern) for line in f.read_text().splitlines()]


def _unfinished(folder: Path, pid: int) -> bool:
    """Whether the process has a run that started and has not ended."""
    lines = _lines(folder, pid)
    ended = {(line[1], line[3]) for line in lines if line[0] == "end"}
    return any(line[0] == "start" and (line[1], line[3]) not in ended for line in lines)


def _runs_of(folder: Path, pid: int) -> list[list[str]]:
    return [line for line in _lines(folder, pid) if line[0] == "start"]


def _all_runs(folder: Path) -> dict[str, list[dict[str, Any]]]:
    """task id -> its runs: pid, attempt, start time and end time (None if never ended)."""
    runs: dict[tuple[str, int, int], dict[str, Any]] = {}
    for kind, task_id, pid, attempt, at in _lines(folder):
        key = (task_id, int(pid), int(attempt))
        run = runs.setdefault(
            key, {"pid": int(pid), "attempt": int(attempt), "start": None, "end": None}
        )
        run[kind] = float(at)
    by_task: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for (task_id, _, _), run in runs.items():
        by_task[task_id].append(run)
    return dict(by_task)
