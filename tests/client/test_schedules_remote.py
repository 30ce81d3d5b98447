"""Schedules and limits through the remote client against a real `taskstatus serve`, on SQLite
and PostgreSQL: the same methods and the same Schedule and HandlerLimits as a database
connection to the same database gives."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import uuid
from dataclasses import replace
from datetime import timedelta
from pathlib import Path

import pytest

import taskstatus
from taskstatus.client import AsyncRemoteConnection
from taskstatus.connection import AsyncConnection
from taskstatus.errors import BadRequest, ConflictError, NotFound
from taskstatus.handlers import Registry
from taskstatus.limits_policy import HandlerLimits
from taskstatus.schedules import Missed, Overlap, ScheduleNotFound
from tests.client.server import ROOT, Server, clean_env

SLEEP = "Sleep"
NEVER_SOON = "0 3 1 1 *"  # 03:00 on 1 January: no firing while a test runs


def _name() -> str:
    return f"remote-{uuid.uuid4().hex[:8]}"


def database_connection(server: Server) -> taskstatus.Connection:
    """A database connection to the server's own database, to compare with."""
    return taskstatus.Connection(AsyncConnection(server.database, registry=Registry()))


def test_schedule_lifecycle_sync(server: Server) -> None:
    """add, get, list, pause, resume and delete work over HTTP and return the Schedule the
    database holds."""
    name = _name()
    with (
        taskstatus.connect(server.url, **server.credentials) as ts,
        database_connection(server) as db,
    ):
        s = ts.schedules.add(
            name, SLEEP, {"seconds": 0}, cron=NEVER_SOON, timezone="Europe/Paris",
            missed="all", overlap=Overlap.SKIP,
        )  # fmt: skip
        assert (s.name, s.handler, s.arguments, s.cron, s.every) == (
            name, SLEEP, {"seconds": 0.0}, NEVER_SOON, None,
        )  # fmt: skip
        assert (s.timezone, s.missed, s.overlap, s.paused) == (
            "Europe/Paris", Missed.ALL, Overlap.SKIP, False,
        )  # fmt: skip
        assert s.next_fire is not None and s.created is not None
        assert ts.schedules.get(name) == db.schedules.get(name) == s
        assert s in ts.schedules.list()
        assert ts.schedules.list() == db.schedules.list()

        paused = ts.schedules.pause(name)
        assert paused.paused and paused.next_fire is None and paused.version > s.version
        assert db.schedules.get(name) == paused
        resumed = ts.schedules.resume(name)
        assert not resumed.paused and resumed.next_fire is not None
        assert db.schedules.get(name) == resumed

        ts.schedules.delete(name)
        assert name not in [x.name for x in ts.schedules.list()]
        with pytest.raises(ScheduleNotFound):
            db.schedules.get(name)


def test_update_sends_the_changed_fields(server: Server) -> None:
    """update applies the change function and stores exactly what it changed; with a stale
    expected_version it is a ConflictError and nothing changes."""
    name = _name()
    with taskstatus.connect(server.url, **server.credentials) as ts:
        s = ts.schedules.add(name, SLEEP, every=timedelta(hours=1))
        assert s.every == 3600.0
        new = ts.schedules.update(
            name, lambda x: replace(x, every=7200.0, arguments={"seconds": 1}),
            expected_version=s.version,
        )  # fmt: skip
        assert (new.every, new.arguments, new.version) == (7200.0, {"seconds": 1.0}, s.version + 1)
        with pytest.raises(ConflictError):
            ts.schedules.update(name, lambda x: replace(x, every=60.0), expected_version=s.version)
        assert ts.schedules.get(name) == new
        ts.schedules.delete(name)


def test_errors_are_typed(server: Server) -> None:
    """A bad cron expression is a BadRequest with the server's message; an unknown name a
    NotFound (ScheduleNotFound, as from a database); a taken name a ConflictError."""
    name = _name()
    with taskstatus.connect(server.url, **server.credentials) as ts:
        with pytest.raises(BadRequest, match="not a valid cron expression") as bad:
            ts.schedules.add(name, SLEEP, cron="61 * * * *")
        assert bad.value.status == 400 and bad.value.tracking_id
        with pytest.raises(BadRequest, match="unknown time zone"):
            ts.schedules.add(name, SLEEP, cron=NEVER_SOON, timezone="Mars/Olympus")
        for call in (ts.schedules.get, ts.schedules.pause, ts.schedules.delete):
            with pytest.raises(NotFound) as missing:
                call("no-such-schedule")
            assert isinstance(missing.value, ScheduleNotFound)
            assert missing.value.status == 404
        ts.schedules.add(name, SLEEP, cron=NEVER_SOON)
        with pytest.raises(ConflictError):
            ts.schedules.add(name, SLEEP, cron=NEVER_SOON)
        ts.schedules.delete(name)


def test_limits_set_get_list(server: Server) -> None:
    """set, get and list a handler's limits over HTTP: the HandlerLimits the database holds;
    all None removes them; an unknown handler is a BadRequest."""
    with (
        taskstatus.connect(server.url, **server.credentials) as ts,
        database_connection(server) as db,
    ):
        limits = ts.limits.set(SLEEP, concurrency=3, rate=2.5, burst=4, limit_key="seconds")
        assert limits == HandlerLimits(SLEEP, 3, 2.5, 4, "seconds")
        assert ts.limits.get(SLEEP) == db.limits.get(SLEEP) == limits
        assert limits in ts.limits.list()
        assert ts.limits.list() == db.limits.list()
        assert ts.limits.set(SLEEP) == HandlerLimits(SLEEP)
        assert ts.limits.get(SLEEP).empty
        with pytest.raises(BadRequest, match="unknown handler"):
            ts.limits.get("No Such Handler")
        with pytest.raises(BadRequest, match="burst"):
            ts.limits.set(SLEEP, burst=2)


def test_async_remote_schedules(server: Server) -> None:
    """The async remote connection offers the same schedules and limits, awaited."""

    async def scenario() -> None:
        name = _name()
        conn = await taskstatus.connect_async(server.url, **server.credentials)
        assert isinstance(conn, AsyncRemoteConnection)
        async with conn:
            s = await conn.schedules.add(name, SLEEP, every=30, paused=True)
            assert s.paused and s.next_fire is None
            assert await conn.schedules.get(name) == s
            await conn.schedules.delete(name)
            assert (await conn.limits.get(SLEEP)).handler == SLEEP

    asyncio.run(scenario())


def test_cli_against_a_server(server: Server, tmp_path: Path) -> None:
    """`taskstatus schedules ...` and `taskstatus limits ...` with TASKSTATUS_URL act on the
    server (no local database is made); a bad cron expression exits non-zero with the
    server's message."""
    env = clean_env(
        TASKSTATUS_URL=server.url,
        TASKSTATUS_CLIENT_ID=server.client_id,
        TASKSTATUS_CLIENT_SECRET=server.client_secret,
        TASKSTATUS_CONFIG_DIR=str(tmp_path / "config"),
        PYTHONPATH=str(ROOT / "src"),
    )

    def cli(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "taskstatus", *args],
            cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120,
        )  # fmt: skip

    name = _name()
    added = cli("schedules", "add", name, SLEEP, '{"seconds": 0}', "--every", "60", "--json")
    assert added.returncode == 0, added.stdout + added.stderr
    assert json.loads(added.stdout)[0]["name"] == name
    assert cli("schedules", "pause", name).returncode == 0
    listed = cli("schedules", "list", "--json")
    assert [d["paused"] for d in json.loads(listed.stdout) if d["name"] == name] == [True]
    bad = cli("schedules", "add", _name(), SLEEP, "--cron", "61 * * * *")
    assert bad.returncode != 0 and "not a valid cron expression" in bad.stdout + bad.stderr
    assert cli("schedules", "delete", name).returncode == 0
    limits = cli("limits", "set", SLEEP, "--concurrency", "2")
    assert limits.returncode == 0, limits.stdout + limits.stderr
    assert SLEEP in cli("limits", "list").stdout
    assert cli("limits", "set", SLEEP).returncode == 0
    assert not list(tmp_path.glob("*.db"))
