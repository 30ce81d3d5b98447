"""The remote client against a real `taskstatus serve` process, on SQLite and PostgreSQL:
every method, sync and async, through the OAuth2 token flow, and the same `Task` as a
database connection to the same database returns."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from datetime import timedelta
from pathlib import Path

import httpx
import pytest

import taskstatus
from taskstatus import CompletionStatus, TaskState
from taskstatus.client import AsyncRemoteConnection, save_login
from taskstatus.connection import AsyncConnection
from taskstatus.errors import (
    Forbidden,
    HasSubtasks,
    InvalidArguments,
    InvalidFilter,
    NotFound,
    Unauthorized,
    UnknownHandler,
    Unreachable,
    WaitTimeout,
)
from taskstatus.handlers import Registry
from taskstatus.model import IllegalTransition, Target, TargetType, Task
from tests.client.server import ROOT, Server, clean_env, free_port

SLEEP = "Sleep"


def database_connection(server: Server) -> taskstatus.Connection:
    """A database connection to the server's own database, to compare with."""
    return taskstatus.Connection(AsyncConnection(server.database, registry=Registry()))


def test_every_method_sync(server: Server) -> None:
    """Each method of the sync remote client does what the database connection does, and
    returns the very Task the database holds."""
    with (
        taskstatus.connect(server.url, **server.credentials) as ts,
        database_connection(server) as db,
    ):
        assert ts.remote and not db.remote
        target = Target("src-1", TargetType.APPLICATION, "AD")
        task = ts.submit(SLEEP, {"seconds": 0.2}, target=target, priority=5, max_attempts=2)
        assert task.state is TaskState.QUEUED and task.target == target
        assert (task.priority, task.max_attempts, task.arguments) == (5, 2, {"seconds": 0.2})
        later = ts.submit(SLEEP, {"seconds": 0}, run_at=timedelta(hours=1))  # stays queued
        assert later.run_at and later.run_at > later.created
        assert ts.get(later.id) == db.get(later.id) == later
        ts.delete(later.id)

        many = ts.submit_many(SLEEP, [{"seconds": 30}, {"seconds": 30}], parent=task)
        assert [t.parent_id for t in many] == [task.id, task.id]

        done = ts.wait(task.id, timeout=60)
        assert (
            done.state is TaskState.SUCCEEDED and done.completion_status is CompletionStatus.SUCCESS
        )
        assert done == db.get(task.id)
        assert done.attributes == {"slept": 0.2}

        ids = {t.id for t in many}
        pending = ts.pending()
        assert ids <= {t.id for t in pending} and all(t.pending for t in pending)
        assert [t.id for t in ts.query(f'parentId eq "{task.id}"', "created")] == [
            t.id for t in db.query(f'parentId eq "{task.id}"', "created")
        ]
        assert ts.count(f'parentId eq "{task.id}"') == 2 == db.count(f'parentId eq "{task.id}"')
        assert [t.id for t in ts.iterate(f'parentId eq "{task.id}"', page_size=1)] == [
            t.id for t in db.query(f'parentId eq "{task.id}"', "created")
        ]

        cancelled = ts.cancel(many[0].id)
        assert cancelled.state in (TaskState.CANCELLED, TaskState.CANCEL_REQUESTED)
        cleared = ts.clear(many[1].id, CompletionStatus.WARNING)
        assert cleared.completion_status is CompletionStatus.WARNING
        assert cleared == db.get(many[1].id)

        with pytest.raises(HasSubtasks) as blocked:
            ts.delete(task.id)
        subtasks = blocked.value.subtasks
        assert all(isinstance(t, Task) for t in subtasks)
        assert {t.id for t in subtasks if isinstance(t, Task)} == ids
        assert set(ts.delete(task.id, force=True)) == {task.id, *ids}
        with pytest.raises(NotFound):
            ts.get(task.id)

        names = {d.name for d in ts.definitions()}
        assert {SLEEP, "Fan Out"} <= names
        assert names == {d.name for d in db.definitions()}


@pytest.mark.anyio
async def test_every_method_async(server: Server) -> None:
    """The same methods from connect_async, awaited, with async iterators for the lists."""
    ts = await taskstatus.connect_async(server.url, **server.credentials)
    assert isinstance(ts, AsyncRemoteConnection)
    async with ts:
        task = await ts.submit(SLEEP, {"seconds": 0.1})
        many = await ts.submit_many(SLEEP, [{"seconds": 30}] * 3, parent=task.id)
        assert (await ts.get(task.id)).id == task.id
        done = await ts.wait(task.id, timeout=60)
        assert done.completion_status is CompletionStatus.SUCCESS
        children = f'parentId eq "{task.id}"'
        assert len(await ts.query(children)) == 3 == await ts.count(children)
        in_order = [t.id for t in await ts.query(children, "created")]
        assert sorted(in_order) == sorted(t.id for t in many)
        assert [t.id async for t in ts.iterate(children, page_size=2)] == in_order
        assert {t.id for t in many} <= {t.id for t in await ts.pending(limit=None)}
        await ts.cancel(many[0].id)
        await ts.clear(many[1].id, "ERROR")
        assert (await ts.get(many[1].id)).state is TaskState.FAILED
        with pytest.raises(HasSubtasks):
            await ts.delete(task.id)
        assert len(await ts.delete(task.id, force=True)) == 4
        assert SLEEP in {d.name for d in await ts.definitions()}


def test_errors_are_typed_with_tracking_ids(server: Server) -> None:
    """Each error the server sends comes back as the type a database connection raises, with
    the server's trackingId, which is also in the server's log."""
    with (
        taskstatus.connect(server.url, **server.credentials) as ts,
        database_connection(server) as db,
    ):
        for conn in (ts, db):
            with pytest.raises(NotFound):
                conn.get("0" * 32)
            with pytest.raises(InvalidFilter):
                conn.query('id gt "x"')
            with pytest.raises(InvalidArguments) as bad:
                conn.submit(SLEEP, {"seconds": -1})
            assert bad.value.handler == SLEEP and bad.value.errors
            with pytest.raises(UnknownHandler) as unknown:
                conn.submit("No such handler")
            assert SLEEP in unknown.value.known
        finished = ts.wait(ts.submit(SLEEP, {"seconds": 0}).id, timeout=60)
        with pytest.raises(IllegalTransition) as illegal:
            ts.cancel(finished.id)
        assert illegal.value.current is TaskState.SUCCEEDED
        with pytest.raises(NotFound) as missing:
            ts.get("f" * 32)
        tracking_id = missing.value.tracking_id
        assert tracking_id and missing.value.status == 404
        assert tracking_id in server.log_tail()


def test_same_idempotency_key_same_task(server: Server) -> None:
    """An idempotency key given twice returns the first task; without one, the client adds a
    fresh key to each submit, so two submits are two tasks."""
    with taskstatus.connect(server.url, **server.credentials) as ts:
        first = ts.submit(SLEEP, {"seconds": 0}, idempotency_key="nightly-1")
        again = ts.submit(SLEEP, {"seconds": 0}, idempotency_key="nightly-1")
        assert first.id == again.id
        a, b = ts.submit(SLEEP, {"seconds": 0}), ts.submit(SLEEP, {"seconds": 0})
        assert a.id != b.id and a.idempotency_key and a.idempotency_key != b.idempotency_key


def test_wait_long_polls_instead_of_polling(server: Server) -> None:
    """wait() on a task that runs for 2 s makes a few long-poll requests, not a poll loop;
    with a timeout that comes first it raises WaitTimeout."""
    with taskstatus.connect(server.url, **server.credentials) as ts:
        requests: list[str] = []

        async def count(request: httpx.Request) -> None:
            requests.append(request.url.path)

        ts._inner.transport.http.event_hooks["request"].append(count)  # type: ignore[union-attr]
        task = ts.submit(SLEEP, {"seconds": 2})
        requests.clear()
        assert ts.wait(task.id, timeout=60).completion_status is CompletionStatus.SUCCESS
        assert 1 <= len(requests) <= 3, requests
        slow = ts.submit(SLEEP, {"seconds": 30})
        with pytest.raises(WaitTimeout):
            ts.wait(slow.id, timeout=0.5)
        ts.cancel(slow.id)


def test_credentials_from_env_file_and_saved_login(
    server: Server, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Without arguments the client takes TASKSTATUS_CLIENT_ID/_SECRET, else a credentials
    file, else the login saved for that server; with none of them, Unauthorized says how."""
    with pytest.raises(Unauthorized, match="taskstatus login"):
        taskstatus.connect(server.url)

    monkeypatch.setenv("TASKSTATUS_CLIENT_ID", server.client_id)
    monkeypatch.setenv("TASKSTATUS_CLIENT_SECRET", server.client_secret)
    with taskstatus.connect(server.url) as ts:
        assert ts.count() >= 0
    monkeypatch.delenv("TASKSTATUS_CLIENT_ID")
    monkeypatch.delenv("TASKSTATUS_CLIENT_SECRET")

    file = tmp_path / "creds.json"
    file.write_text(json.dumps(server.credentials))
    with taskstatus.connect(server.url, credentials_file=str(file)) as ts:
        assert ts.count() >= 0
    monkeypatch.setenv("TASKSTATUS_CREDENTIALS_FILE", str(file))
    with taskstatus.connect(server.url) as ts:
        assert ts.count() >= 0
    monkeypatch.delenv("TASKSTATUS_CREDENTIALS_FILE")

    saved = save_login(server.url + "/", server.client_id, server.client_secret)
    assert saved.stat().st_mode & 0o777 == 0o600
    with taskstatus.connect(server.url) as ts:
        assert ts.count() >= 0


def test_wrong_secret_and_missing_scope(server: Server, tmp_path: Path) -> None:
    """A wrong secret is Unauthorized when connecting; a read-only client may read but its
    submit is Forbidden."""
    with pytest.raises(Unauthorized):
        taskstatus.connect(server.url, client_id=server.client_id, client_secret="wrong")
    created = subprocess.run(
        [
            sys.executable,
            "-m",
            "taskstatus",
            "clients",
            "create",
            f"reader-{free_port()}",
            "--scope",
            "tasks:read",
            "--json",
            "--database",
            server.database,
        ],
        cwd=ROOT,
        env=clean_env(),
        capture_output=True,
        text=True,
        check=True,
    )
    reader = json.loads(created.stdout)
    with taskstatus.connect(server.url, **reader) as ts:
        assert ts.query() == []  # it owns no tasks
        with pytest.raises(Forbidden) as refused:
            ts.submit(SLEEP, {"seconds": 0})
        assert "tasks:write" in str(refused.value) and refused.value.tracking_id


def test_token_renewed_before_it_expires(tmp_path: Path) -> None:
    """With 3-second tokens the client fetches a new one as the old one nears its end, and
    requests keep working past the first token's expiry."""
    from tests.client.server import serve

    with (
        serve(f"sqlite:///{tmp_path}/t.db", tmp_path, "--token-ttl", "3") as server,
        taskstatus.connect(server.url, **server.credentials) as ts,
    ):
        transport = ts._inner.transport  # type: ignore[union-attr]
        first = transport._token
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline:
            ts.count()
            time.sleep(0.2)
        assert transport._token != first


def test_unreachable_server(tmp_path: Path) -> None:
    """A server that is not there is Unreachable after the bounded retries, not a hang."""
    url = f"http://127.0.0.1:{free_port()}"
    with pytest.raises(Unreachable):
        taskstatus.connect(url, client_id="x", client_secret="y", retries=2)


def test_client_loads_nothing_of_the_server(server: Server) -> None:
    """A process that uses the remote client never imports FastAPI, Starlette, uvicorn or
    psycopg (the import-linter contract checks the code; this checks a real run)."""
    script = (
        "import sys, taskstatus\n"
        f"with taskstatus.connect({server.url!r}, client_id={server.client_id!r}, "
        f"client_secret={server.client_secret!r}) as ts:\n"
        "    ts.count()\n"
        "bad = [m for m in sys.modules if m.split('.')[0] in "
        "('fastapi', 'starlette', 'uvicorn', 'psycopg', 'psycopg_pool', 'taskstatus.api')]\n"
        "print(bad)\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", script], env=clean_env(), capture_output=True, text=True, check=True
    )
    assert done.stdout.strip() == "[]", done.stderr
