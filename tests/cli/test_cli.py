"""The taskstatus command, run as a real process: output, exit codes, one-line errors."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from taskstatus import connect

ROOT = Path(__file__).resolve().parents[2]
COMMANDS = [
    "serve",
    "submit",
    "get",
    "list",
    "cancel",
    "watch",
    "purge",
    "definitions",
    "worker",
    "migrate",
]


def ts(*args: str, check: bool = False) -> subprocess.CompletedProcess[str]:
    """Run the taskstatus command with `args`; with `check`, fail unless it exits 0."""
    result = subprocess.run(
        [sys.executable, "-m", "taskstatus", *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    if check:
        assert result.returncode == 0, result.stderr
    return result


@pytest.fixture
def db(tmp_path: Path) -> str:
    """A database where a node has published the demo handlers (as `serve` does)."""
    import taskstatus.demo  # noqa: F401 - registers the demo handlers in this process

    url = f"sqlite:///{tmp_path}/cli.db"
    with connect(url):
        pass
    return url


def test_every_command_has_help() -> None:
    """Every command is listed in the top help and has a --help naming --database."""
    top = ts("--help", check=True).stdout
    for command in COMMANDS:
        assert command in top
        assert "--database" in ts(command, "--help", check=True).stdout


def test_submit_get_list_cancel(db: str) -> None:
    """A submitted demo task is queued (no worker runs); get, list and cancel see it."""
    task_id = ts(
        "submit",
        "Sleep",
        '{"seconds": 3}',
        "--database",
        db,
        "--target-id",
        "src-1",
        "--target-type",
        "APPLICATION",
        "--priority",
        "4",
        check=True,
    ).stdout.strip()
    assert len(task_id) == 32

    shown = json.loads(ts("get", task_id, "--database", db, "--json", check=True).stdout)
    assert shown["id"] == task_id
    assert shown["completionStatus"] is None
    assert shown["target"] == {"id": "src-1", "type": "APPLICATION", "name": None}
    assert shown["taskDefinitionSummary"]["uniqueName"] == "Sleep"

    table = ts("list", "--database", db, "--pending", check=True).stdout
    assert task_id in table and "queued" in table
    listed = json.loads(
        ts("list", "--database", db, "-f", 'sourceId eq "src-1"', "--json", check=True).stdout
    )
    assert [t["id"] for t in listed] == [task_id]
    assert (
        json.loads(ts("list", "--database", db, "--completed", "--json", check=True).stdout) == []
    )

    cancelled = ts("cancel", task_id, "--database", db, check=True).stdout
    assert cancelled.strip() == f"{task_id} cancelled"
    watched = ts("watch", task_id, "--database", db)
    assert watched.returncode == 4  # TERMINATED
    assert "TERMINATED" in watched.stdout


def test_watch_and_submit_wait_exit_with_the_outcome(db: str) -> None:
    """With a worker running, --wait and watch exit 1 for an ERROR and 0 for a SUCCESS."""
    worker = subprocess.Popen(
        [sys.executable, "-m", "taskstatus", "worker", "--database", db, "--poll-interval", "0.05"],
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        failed = ts("submit", "Failing Task", "--database", db, "--wait")
        assert failed.returncode == 1
        ok = ts("submit", "Sleep", '{"seconds": 0.1}', "--database", db, "--wait", "--json")
        assert ok.returncode == 0, ok.stderr
        done = json.loads(ok.stdout)
        assert done["completionStatus"] == "SUCCESS"
        assert ts("watch", done["id"], "--database", db).returncode == 0
    finally:
        worker.terminate()
        worker.wait(20)


def test_watch_follows_a_worker_process_and_shows_its_messages(db: str) -> None:
    """watch, started before a worker in another process runs the task, follows its events
    to the end and prints the task's messages."""
    submitted = ts("submit", "Cloud Account Aggregation", '{"accounts": 50}', "--database", db)
    assert submitted.returncode == 0, submitted.stderr
    task_id = submitted.stdout.split()[0]
    watching = subprocess.Popen(
        [sys.executable, "-m", "taskstatus", "watch", task_id, "--database", db],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    worker = subprocess.Popen(
        [sys.executable, "-m", "taskstatus", "worker", "--database", db],
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        stdout, stderr = watching.communicate(timeout=60)
    finally:
        worker.terminate()
        worker.wait(20)
    assert watching.returncode in (0, 3), stderr  # SUCCESS or WARNING
    assert "Aggregating 50 accounts" in stdout
    assert task_id in stdout


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["submit", "Nope"], "error: unknown handler 'Nope'"),
        (["submit", "Sleep", '{"seconds": "x"}'], "error: invalid arguments for 'Sleep': seconds:"),
        (["submit", "Sleep", "{not json"], "error: arguments are not valid JSON"),
        (["submit", "Sleep", "[1]"], "error: arguments must be a JSON object"),
        (["get", "0" * 32], "error: no task with id"),
        (["cancel", "0" * 32], "error: no task with id"),
        (
            ["list", "-f", 'id eq "a" and'],
            "error: filters: expected a field name but found the end at column 14",
        ),
        (["list", "-f", "size gt 3"], "error: filters: unsupported field 'size'"),
        (["list", "-s", "bogus"], "error: sorters: cannot sort by 'bogus'"),
        (
            ["list", "-f", "created gt 9999-12-31T23:00:00-05:00"],
            "error: filters: 'created': 9999-12-31T23:00:00-05:00 is out of range",
        ),
        (
            ["submit", "Sleep", "--import", "no.such.module"],
            "error: cannot import 'no.such.module'",
        ),
    ],
)
def test_bad_input_is_one_line_and_nonzero(db: str, args: list[str], message: str) -> None:
    """Bad input to a command is one line on stderr, exit status 1, no traceback."""
    result = ts(*args, "--database", db)
    assert result.returncode == 1
    assert result.stderr.startswith(message), result.stderr
    assert result.stderr.count("\n") == 1
    assert "Traceback" not in result.stderr


def test_bad_database_url_is_one_line() -> None:
    """An unsupported database URL is reported in one line with exit status 1."""
    result = ts("list", "--database", "mysql://nowhere/db")
    assert result.returncode == 1
    assert result.stderr.startswith("error: unsupported database URL")
    assert result.stderr.count("\n") == 1


def test_usage_errors_exit_2() -> None:
    """A usage error (a missing argument) exits 2 without a traceback."""
    result = ts("submit")
    assert result.returncode == 2
    assert "Missing argument" in result.stderr
    assert "Traceback" not in result.stderr


def test_purge(db: str) -> None:
    """A finished task inside the window stays; with a zero-day window it goes."""
    task_id = ts("submit", "Sleep", "--database", db, check=True).stdout.strip()
    ts("cancel", task_id, "--database", db, check=True)
    assert ts("purge", "--database", db, check=True).stdout.strip() == "purged 0 tasks"
    assert (
        ts("purge", "--database", db, "--older-than-days", "0", check=True).stdout.strip()
        == "purged 1 tasks"
    )
    assert ts("get", task_id, "--database", db).returncode == 1


def test_definitions_lists_demo_handlers(db: str) -> None:
    """`taskstatus definitions` lists the demo handlers."""
    out = ts("definitions", "--database", db, check=True).stdout
    for name in ("Cloud Account Aggregation", "Failing Task", "Sleep", "Fan Out"):
        assert name in out


def test_clients_create_list_revoke(db: str) -> None:
    """`taskstatus clients` creates a client (its secret shown once), lists it and revokes it."""
    created = ts(
        "clients",
        "create",
        "svc",
        "--scope",
        "tasks:read",
        "--scope",
        "tasks:write",
        "--json",
        "--database",
        db,
        check=True,
    )
    creds = json.loads(created.stdout)
    assert set(creds) == {"client_id", "client_secret"}
    assert len(creds["client_secret"]) >= 40

    listed = json.loads(ts("clients", "list", "--json", "--database", db, check=True).stdout)
    assert [(c["client_id"], c["name"], c["scopes"], c["owner"], c["revoked"]) for c in listed] == [
        (creds["client_id"], "svc", ["tasks:read", "tasks:write"], "svc", None)
    ]
    assert creds["client_secret"] not in ts("clients", "list", "--database", db, check=True).stdout

    duplicate = ts("clients", "create", "svc", "--database", db)
    assert duplicate.returncode == 1
    assert duplicate.stderr.startswith("error: an active client is already named 'svc'")
    bad = ts("clients", "create", "other", "--scope", "tasks:everything", "--database", db)
    assert bad.returncode == 1
    assert bad.stderr.startswith(
        "error: scopes must be some of tasks:read, tasks:write, tasks:admin"
    )

    revoked = ts("clients", "revoke", creds["client_id"], "--database", db, check=True)
    assert revoked.stdout.strip() == f"{creds['client_id']} revoked"
    again = ts("clients", "revoke", creds["client_id"], "--database", db, check=True)
    assert "already revoked" in again.stdout
    unknown = ts("clients", "revoke", "nobody", "--database", db)
    assert (unknown.returncode, unknown.stderr.strip()) == (1, "error: no client with id nobody")


@pytest.mark.parametrize(
    "args",
    [
        ["get", "0" * 32],
        ["list"],
        ["watch", "0" * 32],
        ["cancel", "0" * 32],
        ["clear", "0" * 32, "ERROR"],
        ["delete", "0" * 32],
        ["purge"],
        ["definitions"],
    ],
)
def test_read_only_commands_refuse_a_missing_sqlite_file(tmp_path: Path, args: list[str]) -> None:
    """get, list, watch, cancel, clear, delete, purge and definitions name a SQLite file
    that does not exist, in one line, and do not create it."""
    path = tmp_path / "typo.db"
    result = ts(*args, "--database", f"sqlite:///{path}")
    assert result.returncode == 1
    assert result.stderr.startswith(f"error: no database at {path}"), result.stderr
    assert result.stderr.count("\n") == 1
    assert not path.exists()


def test_submit_and_migrate_create_the_sqlite_file(tmp_path: Path) -> None:
    """migrate and submit create a SQLite file that does not exist yet."""
    ts("migrate", "--database", f"sqlite:///{tmp_path}/a.db", check=True)
    assert (tmp_path / "a.db").exists()
    ts("submit", "Sleep", "-i", "taskstatus.demo", "-d", f"sqlite:///{tmp_path}/b.db", check=True)
    assert (tmp_path / "b.db").exists()


def test_watch_exits_6_for_no_such_task(db: str) -> None:
    """watch of an unknown id exits with its own code (6), not 1 (which means ERROR)."""
    result = ts("watch", "0" * 32, "--database", db)
    assert result.returncode == 6
    assert result.stderr.startswith("error: no task with id"), result.stderr


def test_an_unreachable_postgres_is_one_line() -> None:
    """A database that cannot be reached is a one-line StoreUnavailable error, not a trace."""
    result = ts("list", "--database", "postgresql://postgres@127.0.0.1:1/nowhere")
    assert result.returncode == 1
    assert result.stderr.startswith("error: the database is unavailable"), result.stderr
    assert result.stderr.count("\n") == 1


def test_every_serve_flag_has_an_environment_variable() -> None:
    """Each option of `serve` can also be set with a TASKSTATUS_* variable."""
    import typer.main

    from taskstatus.cli import app
    from taskstatus.cli import serve as _serve  # noqa: F401 - registers the command

    command = typer.main.get_command(app).commands["serve"]  # type: ignore[attr-defined]
    missing = [
        p.name
        for p in command.params
        if p.param_type_name == "option"
        and p.name != "help"
        and not str(p.envvar or "").startswith("TASKSTATUS_")
    ]
    assert missing == []


def test_docs_name_only_flags_that_exist() -> None:
    """Every --flag docs/api.md and README.md name is accepted by some taskstatus command
    (besides the few of uvicorn and mypy they quote)."""
    import re

    import typer.main

    from taskstatus.cli import app, clients, schedules, serve, tasks, workers  # noqa: F401

    known: set[str] = set()
    group = typer.main.get_command(app)
    for command in group.commands.values():  # type: ignore[attr-defined]
        commands = getattr(command, "commands", {"": command}).values()
        for c in commands:
            for p in c.params:
                known.update(o.split("=")[0] for o in (*p.opts, *p.secondary_opts))
    named = set()
    for doc in ("docs/api.md", "README.md"):
        named.update(re.findall(r"(?<![\w-])--[a-z][a-z-]+", (ROOT / doc).read_text()))
    # uvicorn's, mypy's, click's and stress-ng's
    others = {"--help", "--factory", "--http", "--strict", "--cpu"}
    assert named - known - others == set()


def test_worker_runs_with_concurrency_0_in_its_environment(db: str) -> None:
    """TASKSTATUS_CONCURRENCY=0 (serve's setting for API-only nodes) does not stop
    `taskstatus worker`, which reads TASKSTATUS_WORKER_CONCURRENCY."""
    import os
    import time

    env = {**os.environ, "TASKSTATUS_CONCURRENCY": "0", "TASKSTATUS_WORKER_CONCURRENCY": "3"}
    worker = subprocess.Popen(
        [sys.executable, "-m", "taskstatus", "worker", "--database", db],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        assert worker.stdout is not None
        deadline = time.monotonic() + 30
        line = ""
        while time.monotonic() < deadline and "started" not in line:
            line = worker.stdout.readline()
            assert line or worker.poll() is None, "the worker exited"
        assert "concurrency 3" in line, line
    finally:
        worker.terminate()
        worker.wait(20)
        if worker.stdout is not None:
            worker.stdout.close()
