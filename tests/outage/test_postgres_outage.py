"""PostgreSQL stopped for real under a running system, shorter and longer than the lease.

A throwaway cluster (tests/pgcluster.py) serves one API server (``serve --concurrency 0``) and
two worker processes with a 3 s lease. Tasks of the ``Logged`` handler (each run logs its
start and end, tests/worker/handlers.py) are running when the cluster is stopped; some of them
finish during the outage. Meanwhile a client keeps calling the API (v2 create, v2024 list,
Jira GET, the token endpoint, /ready) with a 15 s timeout.

What must hold: every request is answered (a 503 with Retry-After while the database is
away, nothing else >= 500, no hang, no dropped connection); every task accepted ends as
SUCCESS (none lost); no handler that finished runs again, and none runs twice at all (both
workers stayed alive: their leases are renewed, not recovered). The test prints its figures.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from collections import Counter, defaultdict
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest

from tests.pgcluster import Cluster, free_port

ROOT = Path(__file__).resolve().parents[2]
LEASE = 3.0
TASKS = 60
HANG = 10.0  # a request slower than this counts as a hang
pytestmark = [pytest.mark.slow, pytest.mark.postgres]


@dataclass
class Traffic:
    """A client calling the API in a loop, in a thread, recording every answer."""

    url: str
    token: str
    task_id: str
    answers: list[tuple[str, int | str, float, float]] = field(default_factory=list)
    created: list[str] = field(default_factory=list)
    stop: threading.Event = field(default_factory=threading.Event)

    def run(self) -> None:
        headers = {"Authorization": f"Bearer {self.token}"}
        calls = [
            (
                "create",
                "POST",
                "/v2/task/create",
                {"handler": "Logged", "request": {"seconds": 0.2}},
            ),
            ("list", "GET", "/v2024/task-status?limit=5", None),
            ("jira", "GET", f"/rest/api/2/task/{self.task_id}", None),
            ("token", "POST", "/oauth/token", None),
            ("ready", "GET", "/ready", None),
        ]
        with httpx.Client(base_url=self.url, headers=headers, timeout=15) as http:
            n = 0
            while not self.stop.is_set():
                name, method, path, body = calls[n % len(calls)]
                n += 1
                started = time.monotonic()
                try:
                    if name == "token":
                        r = http.post(path, data={"grant_type": "client_credentials"}, auth=CREDS)
                    else:
                        r = http.request(method, path, json=body)
                    status: int | str = r.status_code
                    if status == 503:
                        assert int(r.headers["Retry-After"]) > 0, r.headers
                    if name == "create" and status == 201:
                        self.created.append(r.json()["task_id"])
                except httpx.HTTPError as e:
                    status = type(e).__name__
                self.answers.append((name, status, started, time.monotonic() - started))
                time.sleep(0.02)


CREDS: tuple[str, str] = ("", "")


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


def runs(folder: Path) -> dict[str, list[tuple[str, int, float]]]:
    """task id -> its logged events (start/end, pid, time), in time order."""
    out: dict[str, list[tuple[str, int, float]]] = defaultdict(list)
    for f in folder.glob("runs-*.log"):
        for line in f.read_text().splitlines():
            kind, task_id, pid, _attempt, at = line.split()
            out[task_id].append((kind, int(pid), float(at)))
    for events in out.values():
        events.sort(key=lambda e: e[2])
    return dict(out)


@pytest.fixture
def cluster() -> Iterator[Cluster]:
    """A throwaway PostgreSQL cluster the test may stop and start, closed afterwards."""
    c = Cluster()
    c.start()
    try:
        yield c
    finally:
        c.close()


@pytest.mark.parametrize("outage", [1.5, 8.0], ids=["shorter-than-lease", "longer-than-lease"])
def test_an_outage_loses_nothing_and_answers_clearly(
    cluster: Cluster, tmp_path: Path, outage: float
) -> None:
    """PostgreSQL stopped for `outage` seconds (lease 3 s): 0 lost, 0 re-runs of finished
    handlers, 0 answers >= 500 other than 503, 0 hangs; figures printed."""
    global CREDS
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("TASKSTATUS_")},
        "TASKSTATUS_TEST_RUN_LOG": str(tmp_path),
        "TASKSTATUS_POOL_TIMEOUT": "2",
        "TASKSTATUS_CONNECT_TIMEOUT": "2",
        "TASKSTATUS_TOKEN_RATE_LIMIT": "0",
    }
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    common = ["--database", cluster.url, "--no-demo", "--import", "tests.worker.handlers"]
    server = start(
        [
            "serve",
            *common,
            "--port",
            str(port),
            "--concurrency",
            "0",
            "--rate-limit",
            "0",
            "--no-access-log",
            "--credentials-file",
            str(tmp_path / "creds.json"),
        ],
        tmp_path / "server.log",
        env,
    )
    procs = [server]
    try:
        wait_for(lambda: _ready(url), 60, "the server")
        workers = [
            start(
                ["worker", *common, "--concurrency", "50", "--lease-seconds", str(LEASE)],
                tmp_path / f"worker-{i}.log",
                env,
            )
            for i in range(2)
        ]
        procs += workers
        creds = json.loads((tmp_path / "creds.json").read_text())
        CREDS = (creds["client_id"], creds["client_secret"])
        token = httpx.post(
            f"{url}/oauth/token", data={"grant_type": "client_credentials"}, auth=CREDS
        ).json()["access_token"]
        headers = {"Authorization": f"Bearer {token}"}
        # Runs that end before, during and after the outage.
        span = outage + 2 * LEASE
        ids = []
        with httpx.Client(base_url=url, headers=headers, timeout=30) as http:
            for i in range(TASKS):
                seconds = 1.0 + span * i / TASKS
                r = http.post(
                    "/v2/task/create", json={"handler": "Logged", "request": {"seconds": seconds}}
                )
                assert r.status_code == 201, r.text
                ids.append(r.json()["task_id"])
        wait_for(lambda: len(runs(tmp_path)) >= TASKS, 60, "every task to start")

        traffic = Traffic(url, token, ids[0])
        thread = threading.Thread(target=traffic.run, daemon=True)
        thread.start()
        time.sleep(0.5)
        down_at = time.monotonic()
        cluster.stop()
        time.sleep(outage)
        cluster.start()
        up_at = time.monotonic()
        time.sleep(2 * LEASE + 2)  # past the grace period: recovery has had its chance
        traffic.stop.set()
        thread.join(30)

        def pending() -> int:
            r = httpx.get(
                f"{url}/v2024/task-status/pending-tasks",
                params={"count": "true", "limit": 0},
                headers=headers,
            )
            return int(r.headers["X-Total-Count"]) if r.status_code == 200 else -1

        wait_for(lambda: pending() == 0, 120, "every task to end")
        accepted = ids + traffic.created
        with httpx.Client(base_url=url, headers=headers, timeout=30) as http:
            outcomes = Counter(
                http.get(f"/v2024/task-status/{i}").json()["completionStatus"] for i in accepted
            )
    finally:
        for p in procs:
            if p.poll() is None:
                p.terminate()
        for p in procs:
            try:
                p.wait(30)
            except subprocess.TimeoutExpired:
                p.kill()

    logged = runs(tmp_path)
    starts = {t: sum(1 for e in ev if e[0] == "start") for t, ev in logged.items()}
    rerun_finished = [
        t
        for t, ev in logged.items()
        if any(
            e[0] == "start"
            for e in ev[next((i for i, e in enumerate(ev) if e[0] == "end"), len(ev)) :]
        )
    ]
    twice = [t for t, n in starts.items() if n > 1]
    ended_in_outage = sum(
        1
        for t in ids
        for kind, _, at in logged.get(t, [])
        if kind == "end" and down_at <= _mono(at) <= up_at
    )
    statuses = Counter(str(s) for _, s, _, _ in traffic.answers)
    errors = [
        a for a in traffic.answers if not isinstance(a[1], int) or (a[1] >= 500 and a[1] != 503)
    ]
    hangs = [a for a in traffic.answers if a[3] > HANG]
    in_outage = [a for a in traffic.answers if down_at <= a[2] <= up_at]
    ready_in_outage = [a[3] for a in in_outage if a[0] == "ready"]
    slowest = max(a[3] for a in traffic.answers)
    lost = len(accepted) - outcomes.get("SUCCESS", 0)
    print(
        f"\noutage {outage:g} s (lease {LEASE:g} s): {len(traffic.answers)} requests answered "
        f"({dict(sorted(statuses.items()))}), {statuses.get('503', 0)} x 503, "
        f"{len(errors)} other >= 500 or dropped, {len(hangs)} hangs (> {HANG:g} s), slowest "
        f"{slowest:.2f} s, /ready during the outage at most "
        f"{max(ready_in_outage, default=0):.2f} s; {len(accepted)} tasks accepted, {lost} lost, "
        f"{ended_in_outage} handlers finished during the outage, {len(rerun_finished)} re-runs "
        f"of finished handlers, {len(twice)} tasks run twice; outcomes {dict(outcomes)}"
    )
    assert errors == [], errors[:10]
    assert hangs == [], hangs[:10]
    assert lost == 0, outcomes
    assert rerun_finished == [], {t: logged[t] for t in rerun_finished[:5]}
    assert twice == [], {t: logged[t] for t in twice[:5]}
    assert statuses.get("503", 0) > 0 or outage < 2  # the outage was seen
    assert all(d < 5 for d in ready_in_outage), ready_in_outage


def _mono(wall: float) -> float:
    """A time.time() value from a run log on the monotonic clock of this process."""
    return wall - time.time() + time.monotonic()


def _ready(url: str) -> bool:
    try:
        return httpx.get(f"{url}/ready", timeout=1).status_code == 200
    except httpx.TransportError:
        return False
