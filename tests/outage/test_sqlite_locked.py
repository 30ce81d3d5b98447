"""SQLite out of reach: the file locked by another process past the busy timeout.

The lock is real: another Python process holds ``BEGIN EXCLUSIVE`` on the file. Writes then
answer 503 with Retry-After in each dialect's error shape, within the busy timeout and a
margin; the Python API raises StoreUnavailable with SQLite's error as the cause; reads go on
(WAL); once the lock is gone everything works again and nothing stored before is lost.
"""

from __future__ import annotations

import sqlite3
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from taskstatus import StoreUnavailable, connect
from tests.api.conftest import Server, run_server, settings_for

LOCKER = """
import sqlite3, sys, time
db = sqlite3.connect(sys.argv[1], isolation_level=None)
db.execute("BEGIN EXCLUSIVE")
print("locked", flush=True)
sys.stdin.readline()
db.execute("ROLLBACK")
"""


@pytest.fixture
def sqlite_server(tmp_path: Path) -> Iterator[Server]:
    """A server without workers on a SQLite file, with a 0.5 s busy timeout."""
    url = f"sqlite:///{tmp_path}/tasks.db"
    yield from run_server(settings_for(url, tmp_path, concurrency=0, busy_timeout=0.5))


class Locker:
    """Another process holding the write lock of a SQLite file until released."""

    def __init__(self, path: str) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-c", LOCKER, path], stdin=subprocess.PIPE, stdout=subprocess.PIPE
        )
        assert self.proc.stdout is not None and self.proc.stdout.readline() == b"locked\n"

    def release(self) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write(b"\n")
        self.proc.stdin.close()
        self.proc.wait(10)
        if self.proc.stdout is not None:
            self.proc.stdout.close()


def test_writes_answer_503_while_another_process_holds_the_lock(
    sqlite_server: Server, monkeypatch: pytest.MonkeyPatch
) -> None:
    """While another process holds the lock: v2 create, Jira cancel and the Python API say
    "unavailable" (503 + Retry-After; StoreUnavailable) within a few seconds, reads go on,
    and afterwards the tasks stored before are all there and writes work again."""
    monkeypatch.setenv("TASKSTATUS_BUSY_TIMEOUT", "0.5")
    path = sqlite_server.database.removeprefix("sqlite:///")
    with sqlite_server.connect() as conn:
        before = conn.submit("Sleep", {"seconds": 1})
    token = sqlite_server.token()  # the token endpoint reads only; taken before, all the same
    locker = Locker(path)
    try:
        with sqlite_server.client(token) as http:
            started = time.monotonic()
            r = http.post("/v2/task/create", json={"handler": "Sleep", "request": {}})
            assert r.status_code == 503, r.text
            assert time.monotonic() - started < 5
            assert int(r.headers["Retry-After"]) > 0
            body = r.json()
            assert body["detailCode"] == "503 Service Unavailable"
            assert "locked" in body["causes"][0]["text"]

            r = http.post(f"/rest/api/2/task/{before.id}/cancel")
            assert r.status_code == 503, r.text
            assert "Retry-After" in r.headers
            assert "locked" in r.json()["errorMessages"][0]

            r = http.get(f"/v2024/task-status/{before.id}")  # WAL: readers are not blocked
            assert r.status_code == 200, r.text
        with pytest.raises(StoreUnavailable) as info, connect(sqlite_server.database) as conn:
            conn.submit("Sleep", {})
        assert isinstance(info.value.cause, sqlite3.OperationalError)
    finally:
        locker.release()
    with sqlite_server.client(token) as http:
        r = http.post("/v2/task/create", json={"handler": "Sleep", "request": {}})
        assert r.status_code == 201, r.text
        assert http.get(f"/v2024/task-status/{before.id}").status_code == 200
