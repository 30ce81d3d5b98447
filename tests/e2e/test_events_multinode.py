"""Events across processes and nodes: a worker process runs a task, and an SSE client of
another API process gets its events live (PostgreSQL: two API nodes, the task submitted
through one and followed through the other; SQLite: the API and the worker are two processes
on one file). Also: `connect().wait()` in this process is woken by that worker's events."""

from __future__ import annotations

import json
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from taskstatus.connection import connect
from tests import pg
from tests.api.sse import read
from tests.e2e.test_multinode import _free_port, _ready, start, wait_for

pytestmark = pytest.mark.slow


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def database(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A fresh database URL: a SQLite file, or a new PostgreSQL database dropped afterwards."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path}/tasks.db"
        return
    server: pg.PgServer = request.getfixturevalue("postgres")
    name = server.create_database()
    try:
        yield server.url(name)
    finally:
        server.drop_database(name)


def test_a_worker_process_events_reach_another_api_node(database: str, tmp_path: Path) -> None:
    """Events a worker in another process commits reach an SSE client of an API node other
    than the one the task was submitted to, in order, through to `completed`."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("TASKSTATUS_")}
    nodes = 2 if database.startswith("postgresql") else 1
    ports = [_free_port() for _ in range(nodes)]
    common = ["--database", database, "--rate-limit", "0", "--no-access-log"]
    procs = [
        start(
            [
                "serve",
                "--demo",
                *common,
                "--port",
                str(port),
                "--concurrency",
                "0",
                "--credentials-file",
                str(tmp_path / f"creds-{i}.json"),
            ],
            tmp_path / f"server-{i}.log",
            env,
        )
        for i, port in enumerate(ports)
    ]
    try:
        urls = [f"http://127.0.0.1:{p}" for p in ports]
        wait_for(lambda: all(_ready(u) for u in urls), 60, "the servers")
        creds = json.loads(next(tmp_path.glob("creds-*.json")).read_text())
        token = httpx.post(
            f"{urls[0]}/oauth/token", data={"grant_type": "client_credentials", **creds}
        ).json()["access_token"]
        headers = {"Authorization": f"Bearer {token}"}
        r = httpx.post(
            f"{urls[0]}/v2/task/create",
            headers=headers,
            json={"handler": "Sleep", "request": {"seconds": 2}},
        )
        assert r.status_code == 201, r.text
        task_id = r.json()["task_id"]
        with httpx.stream(
            "GET",
            f"{urls[-1]}/v2024/task-status/{task_id}/events",
            headers=headers,
            timeout=httpx.Timeout(30, read=30),
        ) as stream:
            assert stream.status_code == 200
            procs.append(
                start(
                    ["worker", "--database", database, "--concurrency", "2"],
                    tmp_path / "worker.log",
                    env,
                )
            )
            with connect(database) as conn:
                done = conn.wait(task_id, timeout=60)  # woken by the worker's events
            assert done.completion_status is not None
            got = read(stream)
        kinds = [e.event for e in got]
        assert kinds[:3] == ["snapshot", "created", "launched"]
        assert kinds[-1] == "completed" and "progress" in kinds
        assert [int(e.id) for e in got[1:] if e.id] == list(range(1, len(got)))
        assert got[-1].data["completionStatus"] == "SUCCESS"
    finally:
        for p in procs:
            if p.poll() is None:
                p.terminate()
        for p in procs:
            try:
                p.wait(30)
            except subprocess.TimeoutExpired:
                p.kill()
