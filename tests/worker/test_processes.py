"""Workers as real processes: one killed with SIGKILL loses nothing; SIGTERM hands work back."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from taskstatus import CompletionStatus, TaskState, connect
from taskstatus.connection import Connection

ROOT = Path(__file__).resolve().parents[2]
TASKSTATUS = [sys.executable, "-m", "taskstatus"]


class Workers:
    """Worker processes started by a test, each logging to its own file; all killed at the end."""

    def __init__(self, url: str, logs: Path) -> None:
        self.url = url
        self.logs = logs
        self.procs: list[subprocess.Popen[bytes]] = []

    def start(self, *extra: str) -> subprocess.Popen[bytes]:
        log = self.logs / f"worker-{len(self.procs)}.log"
        with log.open("wb") as out:
            proc = subprocess.Popen(
                [
                    *TASKSTATUS,
                    "worker",
                    "--database",
                    self.url,
                    "--no-demo",
                    "--import",
                    "tests.worker.handlers",
                    *extra,
                ],
                cwd=ROOT,
                stdout=subprocess.DEVNULL,
                stderr=out,
            )
        self.procs.append(proc)
        return proc

    def log(self, proc: subprocess.Popen[bytes]) -> str:
        return (self.logs / f"worker-{self.procs.index(proc)}.log").read_text()

    def stop_all(self) -> None:
        for p in self.procs:
            if p.poll() is None:
                p.kill()
            p.wait(10)


def until(predicate: Callable[[], bool], timeout: float = 20, what: str = "condition") -> None:
    """Wait (up to `timeout` seconds) until `predicate()` is true; `what` names it on failure."""
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)


@pytest.fixture
def conn(store_url: str) -> Iterator[Connection]:
    """A connection to the test database, with the test handlers registered."""
    import tests.worker.handlers  # noqa: F401 - registers the handlers for submit

    with connect(store_url) as c:
        yield c


@pytest.fixture
def workers(store_url: str, tmp_path: Path) -> Iterator[Workers]:
    """Starts worker processes on the test database; kills them all afterwards."""
    w = Workers(store_url, tmp_path)
    yield w
    w.stop_all()


@pytest.mark.slow
def test_a_killed_worker_loses_nothing(conn: Connection, workers: Workers) -> None:
    """SIGKILL mid-task: once its lease expires another worker runs the task again, with the
    attempt counted, and the task ends exactly once."""
    doomed = workers.start("--lease-seconds", "1", "--concurrency", "2")
    task = conn.submit("Slow once", {"seconds": 60})
    until(lambda: conn.get(task.id).state is TaskState.RUNNING, what="the first run")
    until(lambda: str(doomed.pid) in (conn.get(task.id).progress or ""), what="progress")
    os.kill(doomed.pid, signal.SIGKILL)
    doomed.wait(10)

    survivor = workers.start("--lease-seconds", "1")
    done = conn.wait(task.id, 30)
    assert done.completion_status is CompletionStatus.SUCCESS
    assert done.attempts == 2
    assert done.attributes == {"pid": survivor.pid, "attempt": 2}
    assert "taskstatus.lease.requeued" in [m.key for m in done.messages]


@pytest.mark.slow
def test_sigterm_finishes_short_work_and_hands_back_the_rest(
    conn: Connection, workers: Workers
) -> None:
    """On SIGTERM a worker process finishes what ends within the grace period and hands back the
    rest."""
    proc = workers.start("--grace-period", "1.5", "--concurrency", "4")
    short = conn.submit("Nap", {"seconds": 0.5})
    long = conn.submit("Nap", {"seconds": 120})
    until(
        lambda: all(conn.get(t.id).state is TaskState.RUNNING for t in (short, long)),
        what="both running",
    )
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(20) == 0
    assert conn.get(short.id).completion_status is CompletionStatus.SUCCESS
    back = conn.get(long.id)
    assert (back.state, back.attempts, back.lease_owner) == (TaskState.QUEUED, 0, None)
    assert "handed 1 unfinished tasks back" in workers.log(proc)


@pytest.mark.slow
def test_two_worker_processes_share_a_queue(conn: Connection, workers: Workers) -> None:
    """Two processes drain 2,000 tasks; each task runs exactly once (attempts stay 1)."""
    for _ in range(2):
        workers.start("--concurrency", "50")
    tasks = conn.submit_many("Noop", [{}] * 2000)
    until(lambda: conn.count("completionStatus isnull") == 0, 60, "the queue to drain")
    assert conn.count('completionStatus eq "SUCCESS" and attempts eq 1') == 2000
    assert len({t.id for t in tasks}) == 2000


@pytest.mark.slow
def test_an_idle_worker_process_starts_a_task_at_once(conn: Connection, workers: Workers) -> None:
    """With a 30 s poll interval, a task submitted from another process starts well within
    it: woken by NOTIFY (PostgreSQL) or by the file's data_version (SQLite)."""
    workers.start("--poll-interval", "30")
    first = conn.submit("Noop", {})
    conn.wait(first.id, 30)  # the worker is up, and now idle
    time.sleep(0.5)
    started = time.monotonic()
    task = conn.submit("Noop", {})
    done = conn.wait(task.id, 10)
    assert done.completion_status is CompletionStatus.SUCCESS
    assert time.monotonic() - started < 3


@pytest.mark.slow
def test_a_killed_worker_loses_none_of_its_tasks_claimed_ahead(
    conn: Connection, workers: Workers
) -> None:
    """SIGKILL while tasks claimed ahead wait in the worker: like its running tasks, they are
    leased, so once the lease expires another worker runs every one of them, exactly once."""
    doomed = workers.start("--lease-seconds", "1", "--concurrency", "2", "--claim-ahead-ms", "1000")
    conn.submit_many("Noop", [{}] * 20, priority=9)  # an estimate, and a pace
    held = conn.submit_many("Slow once", [{"seconds": 60}] * 6)

    def claimed_ahead() -> bool:
        tasks = [conn.get(t.id) for t in held]
        return sum(t.state is TaskState.RUNNING for t in tasks) > 2

    until(claimed_ahead, what="tasks claimed ahead")
    os.kill(doomed.pid, signal.SIGKILL)
    doomed.wait(10)

    survivor = workers.start("--lease-seconds", "1", "--concurrency", "8")
    for t in held:
        done = conn.wait(t.id, 30)
        assert done.completion_status is CompletionStatus.SUCCESS
        assert done.attributes == {"pid": survivor.pid, "attempt": 2}
