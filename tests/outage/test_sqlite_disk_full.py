"""SQLite on a full disk: a real small file system (tmpfs) filled up by the store itself.

Mounting needs root (as on CI); elsewhere the test is skipped. Writes then raise
StoreUnavailable with SQLite's SQLITE_FULL as the cause, the API answers 503 with
Retry-After, and every task stored before the disk filled is still there and readable.
"""

from __future__ import annotations

import contextlib
import sqlite3
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from taskstatus import StoreUnavailable, Task, TaskContext, connect, handler
from tests.api.conftest import run_server, settings_for


@pytest.fixture
def small_disk() -> Iterator[Path]:
    """A 1 MiB tmpfs, mounted for the test."""
    folder = Path(tempfile.mkdtemp(prefix="taskstatus-full-"))
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(folder)],
        capture_output=True,
        check=False,
    )
    if mounted.returncode != 0:
        folder.rmdir()
        pytest.skip(f"cannot mount a small file system here: {mounted.stderr.decode().strip()}")
    try:
        yield folder
    finally:
        subprocess.run(["umount", "-l", str(folder)], check=False)
        with contextlib.suppress(OSError):
            folder.rmdir()


def test_a_full_disk_is_store_unavailable_and_loses_nothing_stored(
    small_disk: Path, tmp_path: Path
) -> None:
    """Submitting until the disk is full: the first refused write is StoreUnavailable (cause
    SQLITE_FULL), the HTTP API answers 503 with Retry-After, and every task stored before
    can still be read, unchanged."""

    @handler("Padded", description="Takes any JSON object; never runs (no workers here).")
    async def padded(ctx: TaskContext, args: dict[str, Any]) -> None:
        """A handler that declares no arguments, so a big padding argument is accepted."""

    url = f"sqlite:///{small_disk}/tasks.db"
    stored: list[Task] = []
    big = {"seconds": 0, "padding": "x" * 20_000}
    for server in run_server(settings_for(url, tmp_path, concurrency=0)):
        with connect(url) as conn:
            with pytest.raises(StoreUnavailable) as info:  # noqa: PT012 - fill, then refusal
                for _ in range(1000):
                    stored.append(conn.submit("Padded", big))
            cause = info.value.cause
            assert isinstance(cause, sqlite3.OperationalError), cause
            assert cause.sqlite_errorcode & 0xFF == sqlite3.SQLITE_FULL
            assert "disk full" in str(info.value)
            assert len(stored) > 5
            for task in stored:
                assert conn.get(task.id) == task
        with server.client() as http:
            r = http.post("/v2/task/create", json={"handler": "Padded", "request": big})
            assert r.status_code == 503, r.text
            assert "Retry-After" in r.headers
            assert "disk full" in r.json()["causes"][0]["text"]
            assert http.get(f"/v2024/task-status/{stored[-1].id}").status_code == 200
