"""The official SailPoint Python SDKs, unchanged, against a real server: every TaskManagementApi
operation with the SDK's own configuration and token flow, parsed into the SDK's own models,
with its warnings about unknown enum values treated as failures.

sailpoint 1.4.2 is the last release whose v2024 package has the five operations of the seeds;
the newest 2.x (pinned below) calls the same resource at /task-status/v1. The two cannot share
an environment (both are the package `sailpoint`), so each gets a virtual environment of its
own under .venv/sdk, made on first use.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from taskstatus.model import TaskState
from tests.api.conftest import Server

ROOT = Path(__file__).resolve().parents[2]
SCRIPTS = Path(__file__).parent / "sdk"
SDKS = {"sailpoint-1.4.2": "sailpoint==1.4.2", "sailpoint-2": "sailpoint==2.1.72"}

pytestmark = pytest.mark.slow


def sdk_python(name: str) -> Path:
    """The interpreter of a virtual environment holding only the SDK `name`."""
    requirement = SDKS[name]
    venv = ROOT / ".venv" / "sdk" / name
    python = venv / "bin" / "python"
    stamp = venv / ".requirement"
    if stamp.exists() and stamp.read_text() == requirement:
        return python
    subprocess.run([sys.executable, "-m", "venv", "--clear", str(venv)], check=True)
    subprocess.run(
        [
            str(python),
            "-m",
            "pip",
            "install",
            "--quiet",
            "--disable-pip-version-check",
            requirement,
        ],
        check=True,
        timeout=900,
    )
    stamp.write_text(requirement)
    return python


def drive(name: str, script: str, server: Server, ids: dict[str, str]) -> dict[str, Any]:
    """Run an SDK `script` in its own environment against `server`; what it printed, as JSON."""
    env = {
        **os.environ,
        "SAIL_BASE_URL": server.url,
        "SAIL_CLIENT_ID": server.client_id,
        "SAIL_CLIENT_SECRET": server.client_secret,
    }
    result = subprocess.run(
        [str(sdk_python(name)), str(SCRIPTS / script), json.dumps(ids)],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
        cwd=SCRIPTS,
        check=False,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert "Unable to fetch access token" not in result.stdout
    return dict(json.loads(result.stdout.strip().splitlines()[-1]))


def setup_tasks(server: Server) -> dict[str, str]:
    """A succeeded, a warned, a running and a queued task."""
    with server.connect() as conn:
        ok = conn.submit("Sleep", {"seconds": 0})
        warned = conn.submit(
            "Cloud Account Aggregation", {"accounts": 2000, "page_size": 500, "page_delay": 0}
        )
        running = conn.submit("Sleep", {"seconds": 120})
        for t in (ok, warned):
            conn.wait(t.id, 30)
        deadline = time.monotonic() + 20
        while conn.get(running.id).state is not TaskState.RUNNING:
            assert time.monotonic() < deadline
            time.sleep(0.05)
        queued = conn.submit(
            "Sleep", {"seconds": 1}, run_at=__import__("datetime").timedelta(hours=1)
        )
    return {"succeeded": ok.id, "warned": warned.id, "running": running.id, "queued": queued.id}


def test_sailpoint_1_4_2(server: Server) -> None:
    """The SailPoint SDK 1.4.2 lists pending tasks (and their HEAD), gets, lists and patches tasks
    here."""
    ids = setup_tasks(server)
    out = drive("sailpoint-1.4.2", "sailpoint_1_4.py", server, ids)
    assert out["pending_headers"] is None  # HEAD: no body, the SDK returns None
    assert out["pending_headers_status"] == 200
    assert out["pending_headers_total"] == "2"
    assert {t["id"] for t in out["pending"]} == {ids["running"], ids["queued"]}
    assert out["pending_total"] == "2"
    assert all(t["completionStatus"] is None for t in out["pending"])

    one = out["one"]
    assert one["id"] == ids["succeeded"]
    assert one["completionStatus"] == "SUCCESS"
    assert one["percentComplete"] == 100
    assert one["taskDefinitionSummary"]["uniqueName"] == "Sleep"
    assert one["type"] == "QUEUED_TASK"

    assert [t["id"] for t in out["completed"]] == [ids["warned"], ids["succeeded"]]
    assert out["completed"][0]["completionStatus"] == "WARNING"
    assert any(m["type"] == "WARN" for m in out["completed"][0]["messages"])
    assert out["completed_total"] == "1"  # completionStatus eq "Success": case-insensitive
    assert out["empty"] == []

    patched = out["patched"]
    assert patched["id"] == ids["running"]
    assert patched["completionStatus"] == "TERMINATED"
    assert patched["completed"].startswith("2024-06-01T12:00:00")
    assert out["missing"] == 404
    assert out["bad_filter"]["status"] == 400
    assert "unsupported field 'nope'" in out["bad_filter"]["body"]["causes"][0]["text"]


def test_sailpoint_2(server: Server) -> None:
    """The SailPoint SDK 2.x lists pending and completed tasks, gets and patches one, and sees a
    404."""
    ids = setup_tasks(server)
    out = drive("sailpoint-2", "sailpoint_2.py", server, ids)
    assert [t["id"] for t in out["pending"]] == [ids["running"], ids["queued"]]
    assert out["pending_total"] == "2"
    assert {t["id"] for t in out["completed"]} == {ids["succeeded"]}
    assert out["one"]["id"] == ids["succeeded"]
    assert out["patched"]["completionStatus"] == "ERROR"
    assert out["missing"] == 404
    with server.connect() as conn:
        assert conn.get(ids["queued"]).state is TaskState.FAILED
