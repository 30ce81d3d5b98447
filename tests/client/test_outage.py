"""A database outage seen through the remote client: the server's 503 + Retry-After becomes
StoreUnavailable once the bounded retries run out, and a short outage is waited out. The
outage is real: another process holds SQLite's write lock past the server's busy timeout."""

from __future__ import annotations

import subprocess
import sys
import threading
import time
from collections.abc import Iterator

import pytest

import taskstatus
from taskstatus.errors import StoreUnavailable
from tests.client.server import Server, clean_env, serve

LOCKER = """
import sqlite3, sys
db = sqlite3.connect(sys.argv[1], isolation_level=None)
db.execute("BEGIN EXCLUSIVE")
print("locked", flush=True)
sys.stdin.readline()
db.execute("ROLLBACK")
"""


class Locker:
    """Another process holding the write lock of a SQLite file until released."""

    def __init__(self, path: str) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-c", LOCKER, path], stdin=subprocess.PIPE, stdout=subprocess.PIPE
        )
        assert self.proc.stdout is not None and self.proc.stdout.readline() == b"locked\n"

    def release(self) -> None:
        if self.proc.poll() is not None:
            return
        assert self.proc.stdin is not None and self.proc.stdout is not None
        self.proc.stdin.write(b"\n")
        self.proc.stdin.close()
        self.proc.wait(10)
        self.proc.stdout.close()


@pytest.fixture(scope="module")
def lockable(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """A server on SQLite whose writes wait at most 0.5 s for the lock."""
    workdir = tmp_path_factory.mktemp("outage")
    env = clean_env(TASKSTATUS_BUSY_TIMEOUT="0.5")
    with serve(f"sqlite:///{workdir}/t.db", workdir, "--concurrency", "0", env=env) as s:
        yield s


def test_outage_is_store_unavailable_after_the_retries(lockable: Server) -> None:
    """While the database is locked, a submit ends in StoreUnavailable (with the server's
    trackingId and Retry-After) after its one retry; reads go on; afterwards the same
    idempotency key stores the task once."""
    path = lockable.database.removeprefix("sqlite:///")
    with taskstatus.connect(lockable.url, **lockable.credentials, retries=1) as ts:
        before = ts.submit("Sleep", {"seconds": 1})
        locker = Locker(path)
        try:
            with pytest.raises(StoreUnavailable) as down:
                ts.submit("Sleep", {"seconds": 1}, idempotency_key="during-outage")
            assert down.value.status == 503 and down.value.tracking_id
            assert getattr(down.value, "retry_after", 0) > 0
            assert ts.get(before.id).id == before.id  # reads go on (WAL)
        finally:
            locker.release()
        first = ts.submit("Sleep", {"seconds": 1}, idempotency_key="during-outage")
        again = ts.submit("Sleep", {"seconds": 1}, idempotency_key="during-outage")
        assert first.id == again.id
        assert ts.count('uniqueName eq "Sleep"') == 2


def test_a_short_outage_is_waited_out(lockable: Server) -> None:
    """A lock released within the client's retries is invisible to the caller: the submit
    honours the 503's Retry-After and succeeds."""
    path = lockable.database.removeprefix("sqlite:///")
    with taskstatus.connect(lockable.url, **lockable.credentials, retries=5) as ts:
        locker = Locker(path)
        timer = threading.Timer(1.5, locker.release)
        timer.start()
        try:
            started = time.monotonic()
            task = ts.submit("Sleep", {"seconds": 0})
            assert time.monotonic() - started >= 1.0  # it did wait for the database
            assert task.id
        finally:
            timer.cancel()
            locker.release()
