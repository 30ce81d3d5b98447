"""The README's two quick-start commands, from a fresh clone of the committed tree.

`make serve` must bootstrap its own environment and serve the API on an embedded SQLite file,
with the admin credentials written on first start; `make test` must bootstrap its own
environment and run ruff, mypy, import-linter and pytest (here on the unit tests: the whole
suite is what CI runs with this very command).
"""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import time
from pathlib import Path

import httpx
import pytest

ROOT = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.slow


def free_port() -> int:
    """A TCP port free on the loopback interface now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="module")
def clone(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A fresh git clone of this repository, shared by the module's tests."""
    target = tmp_path_factory.mktemp("quickstart") / "taskstatus"
    subprocess.run(["git", "clone", "--quiet", str(ROOT), str(target)], check=True, timeout=120)
    return target


def test_make_serve_from_a_fresh_clone(clone: Path) -> None:
    """`make serve` in a fresh clone bootstraps its environment and serves the API."""
    port = free_port()
    log = (clone.parent / "serve.log").open("w")
    proc = subprocess.Popen(
        ["make", "serve", f"ARGS=--port {port}"],
        cwd=clone,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
        env={k: v for k, v in os.environ.items() if not k.startswith("TASKSTATUS_")},
    )
    try:
        url = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 600  # a first bootstrap installs the dependencies
        while True:
            assert proc.poll() is None, (clone.parent / "serve.log").read_text()[-3000:]
            try:
                if httpx.get(f"{url}/ready", timeout=2).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert time.monotonic() < deadline, "make serve did not come up"
            time.sleep(1)
        creds = json.loads((clone / "taskstatus-credentials.json").read_text())
        assert (clone / "taskstatus-credentials.json").stat().st_mode & 0o777 == 0o600
        assert (clone / "taskstatus.db").exists()
        token = httpx.post(
            f"{url}/oauth/token", data={"grant_type": "client_credentials", **creds}
        ).json()
        r = httpx.get(
            f"{url}/v2024/task-status", headers={"Authorization": f"Bearer {token['access_token']}"}
        )
        assert (r.status_code, r.json()) == (200, [])
        output = (clone.parent / "serve.log").read_text()
        assert "First start: created the admin API client" in output
        assert creds["client_secret"] not in output  # not a terminal: only in the file
        assert "taskstatus-credentials.json (mode 0600) only" in output
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(60)
        log.close()


def test_make_test_from_a_fresh_clone(clone: Path) -> None:
    """`make test` in a fresh clone bootstraps its environment, lints and passes the unit tests."""
    result = subprocess.run(
        ["make", "test", "TEST_ARGS=tests/unit -q -p no:cacheprovider"],
        cwd=clone,
        capture_output=True,
        text=True,
        timeout=1200,
        check=False,
        env={k: v for k, v in os.environ.items() if not k.startswith("TASKSTATUS_")},
    )
    assert result.returncode == 0, (result.stdout + result.stderr)[-4000:]
    assert "All checks passed!" in result.stdout
    assert "Success: no issues found" in result.stdout
    assert re.search(r"Contracts: \d+ kept, 0 broken\.", result.stdout), result.stdout[-2000:]
    assert " passed" in result.stdout
