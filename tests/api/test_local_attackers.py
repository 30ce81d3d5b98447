"""Nobody on the host (or guessing from the network) gets in: owner-only database files, no
secrets in output, failed authentication limited, links only to configured hosts, no fork
bombs, no demo handlers unless asked, no undeclared arguments."""

from __future__ import annotations

import logging
import os
import pty
import sqlite3
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from taskstatus.caller import Caller
from taskstatus.limits import InputRejected
from taskstatus.query import TaskQuery
from taskstatus.redact import mask
from taskstatus.service import Submission, TaskService
from taskstatus.store import Store
from taskstatus.store.sqlite import SQLiteStore
from tests.api.conftest import Server, run_server, settings_for
from tests.conftest import DEFINITION, make_task

ROOT = Path(__file__).resolve().parents[2]
FORM = {"Content-Type": "application/x-www-form-urlencoded"}


# --- files and output ---------------------------------------------------------------------------


@pytest.mark.anyio
async def test_a_new_sqlite_database_and_its_wal_and_shm_are_owner_only(tmp_path: Path) -> None:
    """The database taskstatus creates, and SQLite's -wal and -shm beside it, are mode 0600
    even under a permissive umask."""
    old = os.umask(0o002)
    try:
        store = SQLiteStore(f"sqlite:///{tmp_path}/tasks.db")
        await store.open()
        await store.save_definitions([DEFINITION])
        await store.create(make_task())
        try:
            for name in ("tasks.db", "tasks.db-wal", "tasks.db-shm"):
                assert (tmp_path / name).stat().st_mode & 0o777 == 0o600, name
        finally:
            await store.close()
    finally:
        os.umask(old)


@pytest.mark.anyio
async def test_an_existing_database_others_can_read_is_warned_about(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """A database file of mode 0644 (made by an older version or by hand) gets a warning
    that says how to fix it."""
    path = tmp_path / "old.db"
    sqlite3.connect(path).close()
    path.chmod(0o644)
    store = SQLiteStore(f"sqlite:///{path}")
    with caplog.at_level(logging.WARNING, logger="taskstatus.store"):
        await store.open()
    await store.close()
    assert f"chmod 600 {path}" in caplog.text


def test_passwords_in_database_urls_are_masked() -> None:
    """URLs and connection strings keep everything but the password."""
    assert mask("postgresql://app:s3@cret@db:5432/tasks") == "postgresql://app:***@db:5432/tasks"
    assert mask("host=db password=hunter2 user=app") == "host=db password=*** user=app"
    assert mask("sqlite:///./tasks.db") == "sqlite:///./tasks.db"


def test_the_cli_never_prints_a_database_password(tmp_path: Path) -> None:
    """A database that cannot be reached: the one-line error hides the password."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("TASKSTATUS_")}
    for url in ("postgresql://app:hunter2@127.0.0.1:1/tasks", "mysql://app:hunter2@db/tasks"):
        run = subprocess.run(
            [sys.executable, "-m", "taskstatus", "migrate", "--database", url],
            capture_output=True,
            text=True,
            env=env,
            cwd=tmp_path,
            timeout=60,
            check=False,
        )
        assert run.returncode != 0
        assert "hunter2" not in run.stdout + run.stderr
        assert "error:" in run.stderr


def test_the_admin_secret_is_printed_only_to_a_terminal(tmp_path: Path) -> None:
    """The first-start announcement shows the secret on a terminal, and only says where it
    was saved when the output is a pipe or a file."""
    code = (
        "from pathlib import Path; from taskstatus.api.app import announce_admin; "
        "announce_admin('cid', 'the-secret', Path('creds.json'))"
    )
    piped = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, cwd=tmp_path, check=True
    )
    assert "the-secret" not in piped.stdout
    assert "creds.json (mode 0600) only" in piped.stdout
    controller, terminal = pty.openpty()
    subprocess.run([sys.executable, "-c", code], stdout=terminal, cwd=tmp_path, check=True)
    os.close(terminal)
    shown = b""
    while True:
        try:
            chunk = os.read(controller, 4096)
        except OSError:
            break
        if not chunk:
            break
        shown += chunk
    os.close(controller)
    assert b"client_secret: the-secret" in shown


# --- failed authentication ----------------------------------------------------------------------


def _token(url: str, client_id: str, secret: str, source: str = "127.0.0.1") -> httpx.Response:
    transport = httpx.HTTPTransport(local_address=source)
    with httpx.Client(transport=transport) as http:
        return http.post(
            f"{url}/oauth/token",
            data={
                "grant_type": "client_credentials",
                "client_id": client_id,
                "client_secret": secret,
            },
        )


def test_failed_token_requests_are_limited_per_client_and_per_address(
    store_url: str, tmp_path: Path
) -> None:
    """Past the allowed failures a client id is refused (429, Retry-After, OAuth's error)
    even with its right secret and from another address; and the address is refused for
    other client ids."""
    settings = settings_for(store_url, tmp_path, auth_failure_burst=3, auth_failure_rate=0.01)
    for srv in run_server(settings):
        for _ in range(3):
            assert _token(srv.url, srv.client_id, "wrong").status_code == 401
        for source in ("127.0.0.1", "127.0.0.2"):  # per client id
            r = _token(srv.url, srv.client_id, srv.client_secret, source)
            assert r.status_code == 429, r.text
            assert r.json()["error"] == "temporarily_unavailable"
            assert int(r.headers["Retry-After"]) >= 1
        other_id, other_secret = srv.new_client("other", "tasks:read")
        assert _token(srv.url, other_id, other_secret).status_code == 429  # per address
        assert _token(srv.url, other_id, other_secret, "127.0.0.3").status_code == 200


def test_failed_jira_basic_logins_are_limited(store_url: str, tmp_path: Path) -> None:
    """HTTP Basic on the Jira routes counts failures the same way: 401s, then 429s in Jira's
    shape with Retry-After, the right secret included."""
    settings = settings_for(store_url, tmp_path, auth_failure_burst=2, auth_failure_rate=0.01)
    for srv in run_server(settings):
        url = f"{srv.url}/rest/api/2/task/{'0' * 32}"
        for _ in range(2):
            assert httpx.get(url, auth=(srv.client_id, "wrong")).status_code == 401
        r = httpx.get(url, auth=(srv.client_id, srv.client_secret))
        assert r.status_code == 429, r.text
        assert r.json()["errorMessages"] and int(r.headers["Retry-After"]) >= 1


# --- links --------------------------------------------------------------------------------------


def _jira_task(srv: Server, host: str | None = None) -> httpx.Response:
    with srv.client() as http:
        task = http.post("/v2/task/create", json={"handler": "Sleep", "request": {}}).json()
        headers = {"Host": host} if host else {}
        return http.get(f"/rest/api/2/task/{task['task_id']}", headers=headers)


def test_jira_self_links_come_from_the_public_url(store_url: str, tmp_path: Path) -> None:
    """With a public URL, `self` starts with it whatever Host the request names."""
    settings = settings_for(store_url, tmp_path, public_url="https://tasks.example.com/")
    for srv in run_server(settings):
        r = _jira_task(srv, host="evil.example")
        assert r.status_code == 200, r.text
        assert r.json()["self"].startswith("https://tasks.example.com/rest/api/2/task/")


def test_a_host_outside_the_allow_list_gets_a_400_not_a_link(server: Server) -> None:
    """Without a public URL, links are built only for allowed hosts; another Host is a 400
    in Jira's shape."""
    r = _jira_task(server, host="evil.example")
    assert r.status_code == 400
    assert "evil.example" in r.json()["errorMessages"][0]
    r = _jira_task(server)
    assert r.status_code == 200 and r.json()["self"].startswith(server.url)


# --- submissions --------------------------------------------------------------------------------


@pytest.mark.anyio
async def test_subtasks_are_limited_in_depth_and_number(store: Store) -> None:
    """The service refuses a subtask nested past max_subtask_depth or past max_subtasks of
    one parent, naming the limit, and stores nothing for it."""
    await store.save_definitions([DEFINITION])
    service = TaskService(store, max_subtask_depth=2, max_subtasks=3)
    me = Caller.local("t")
    root = await service.submit(me, "noop", {}, Submission(launcher="t"))
    child = await service.submit(me, "noop", {}, Submission(launcher="t", parent=root))
    grandchild = await service.submit(me, "noop", {}, Submission(launcher="t", parent=child))
    with pytest.raises(InputRejected, match="max-subtask-depth = 2"):
        await service.submit(me, "noop", {}, Submission(launcher="t", parent=grandchild))
    await service.submit_many(me, "noop", [{}, {}], Submission(launcher="t", parent=root))
    with pytest.raises(InputRejected, match="max-subtasks = 3"):
        await service.submit(me, "noop", {}, Submission(launcher="t", parent=root.id))
    page = await service.query(me, TaskQuery(count=True))
    assert page.total == 5


def test_serve_runs_the_demo_handlers_only_when_asked(tmp_path: Path) -> None:
    """`taskstatus serve` without --demo knows no demo handler; `make serve` passes --demo,
    so the quick start still shows them."""
    from tests.client.server import serve

    assert "taskstatus serve --demo $(ARGS)" in (ROOT / "Makefile").read_text()
    with serve(f"sqlite:///{tmp_path}/t.db", tmp_path, "--no-demo") as srv:  # the last flag wins
        token = httpx.post(
            f"{srv.url}/oauth/token", data={"grant_type": "client_credentials", **srv.credentials}
        ).json()["access_token"]
        r = httpx.post(
            f"{srv.url}/v2/task/create",
            json={"handler": "Sleep"},
            headers={"Authorization": f"Bearer {token}"},
        )
        assert r.status_code == 400 and "unknown handler 'Sleep'" in r.text


def test_undeclared_arguments_are_a_400_naming_them(idle_server: Server) -> None:
    """A typo in a declared handler's arguments is refused, by name, in every dialect; the
    task is not stored."""
    with idle_server.client() as http:
        r = http.post("/v2/task/create", json={"handler": "Sleep", "request": {"secnds": 1}})
        assert r.status_code == 400 and "secnds" in r.text, r.text
        assert http.post("/v2/task/index", json={}).json() == []
