"""The CLI against a server (``--url`` / TASKSTATUS_URL), login and logout, and ``watch``
driven in a real terminal (tmux), against a real `taskstatus serve` process."""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

import taskstatus
from tests.client.server import ROOT, Server, clean_env

needs_tmux = pytest.mark.skipif(shutil.which("tmux") is None, reason="needs tmux")


def cli(
    *args: str, env: dict[str, str], cwd: Path, check: bool = True
) -> subprocess.CompletedProcess[str]:
    """Run `taskstatus args` in `cwd` with `env`; with `check`, fail unless it exits 0."""
    done = subprocess.run(
        [sys.executable, "-m", "taskstatus", *args],
        cwd=cwd,
        env={**env, "PYTHONPATH": str(ROOT / "src")},
        capture_output=True,
        text=True,
        timeout=120,
    )
    if check:
        assert done.returncode == 0, done.stdout + done.stderr
    return done


@pytest.fixture
def env(server: Server, tmp_path: Path) -> dict[str, str]:
    """The environment of a user of that server: its URL and credentials, their own config
    directory, and no database settings."""
    return clean_env(
        TASKSTATUS_URL=server.url,
        TASKSTATUS_CLIENT_ID=server.client_id,
        TASKSTATUS_CLIENT_SECRET=server.client_secret,
        TASKSTATUS_CONFIG_DIR=str(tmp_path / "config"),
    )


def test_task_commands_against_a_server(
    server: Server, env: dict[str, str], tmp_path: Path
) -> None:
    """submit, get, list, cancel, clear, delete and definitions work through --url /
    TASKSTATUS_URL, with the same outputs and exit codes as against a database, and create
    no database in the working directory."""
    cwd = tmp_path / "work"
    cwd.mkdir()
    task_id = cli("submit", "Sleep", '{"seconds": 30}', env=env, cwd=cwd).stdout.strip()
    shown = json.loads(cli("get", task_id, "--json", env=env, cwd=cwd).stdout)
    assert shown["id"] == task_id and shown["uniqueName"] == "Sleep"
    assert task_id in cli("get", task_id, env=env, cwd=cwd).stdout
    listed = cli("list", "--pending", "--limit", "500", env=env, cwd=cwd).stdout
    assert task_id in listed
    assert "cancel" in cli("cancel", task_id, env=env, cwd=cwd).stdout

    other = cli("submit", "Sleep", '{"seconds": 30}', env=env, cwd=cwd).stdout.strip()
    assert "WARNING" in cli("clear", other, "WARNING", env=env, cwd=cwd).stdout
    assert f"{other} deleted" in cli("delete", other, env=env, cwd=cwd).stdout

    parent = cli(
        "submit",
        "Fan Out",
        '{"children": 2, "arguments": {"seconds": 30}}',
        "--wait",
        env=env,
        cwd=cwd,
    ).stdout.strip()
    refused = cli("delete", parent, env=env, cwd=cwd, check=False)
    assert refused.returncode == 1 and "force" in refused.stderr
    assert len(cli("delete", parent, "--force", env=env, cwd=cwd).stdout.splitlines()) == 3

    done = cli("submit", "Failing Task", "--wait", env=env, cwd=cwd, check=False)
    assert done.returncode == 1  # the task's outcome, ERROR

    assert "Sleep" in cli("definitions", env=env, cwd=cwd).stdout
    missing = cli("get", "0" * 32, env=env, cwd=cwd, check=False)
    assert missing.returncode == 1 and "no task with id" in missing.stderr
    assert len(missing.stderr.strip().splitlines()) == 1
    assert list(cwd.iterdir()) == []  # no local database was created


def test_without_credentials_the_error_says_how(server: Server, tmp_path: Path) -> None:
    """With a URL but no credentials anywhere, the CLI says in one line how to give them."""
    env = clean_env(TASKSTATUS_CONFIG_DIR=str(tmp_path / "config"))
    done = cli("list", "--url", server.url, env=env, cwd=tmp_path, check=False)
    assert done.returncode == 1
    assert "taskstatus login" in done.stderr and len(done.stderr.strip().splitlines()) == 1


class Terminal:
    """A tmux session on its own server socket: type into it, read its screen."""

    def __init__(self, name: str, command: str, env: dict[str, str], cwd: Path) -> None:
        self.socket = name
        assignments = " ".join(f"{k}={shlex.quote(v)}" for k, v in env.items())
        self._tmux(
            "new-session",
            "-d",
            "-s",
            "t",
            "-x",
            "120",
            "-y",
            "30",
            "-c",
            str(cwd),
            f"env -i {assignments} {command}; echo EXIT=$?; sleep 600",
        )

    def _tmux(self, *args: str) -> str:
        return subprocess.run(
            ["tmux", "-L", self.socket, *args], capture_output=True, text=True, check=True
        ).stdout

    def type(self, text: str) -> None:
        self._tmux("send-keys", "-t", "t", "-l", "--", text)  # a secret may start with "-"
        self._tmux("send-keys", "-t", "t", "Enter")

    def screen(self) -> str:
        return self._tmux("capture-pane", "-p", "-t", "t")

    def wait_for(self, predicate: Callable[[str], bool], timeout: float = 60) -> str:
        deadline = time.monotonic() + timeout
        while True:
            text = self.screen()
            if predicate(text):
                return text
            assert time.monotonic() < deadline, f"terminal never showed it:\n{text}"
            time.sleep(0.1)

    def close(self) -> None:
        subprocess.run(["tmux", "-L", self.socket, "kill-server"], capture_output=True, check=False)


@pytest.fixture
def terminal(tmp_path: Path) -> Iterator[Callable[[str, dict[str, str]], Terminal]]:
    """Opens terminals (tmux sessions) running a command; all closed after the test."""
    opened: list[Terminal] = []

    def open_terminal(command: str, env: dict[str, str]) -> Terminal:
        t = Terminal(
            f"ts14-{os.getpid()}-{len(opened)}-{time.monotonic_ns()}", command, env, tmp_path
        )
        opened.append(t)
        return t

    yield open_terminal
    for t in opened:
        t.close()


def _cli_command(*args: str) -> str:
    return " ".join(shlex.quote(a) for a in (sys.executable, "-m", "taskstatus", *args))


@needs_tmux
def test_login_then_logout_in_a_terminal(
    server: Server, tmp_path: Path, terminal: Callable[[str, dict[str, str]], Terminal]
) -> None:
    """`login --url` asks for the id and the secret (not echoed), checks them, saves them
    0600; the CLI then works with no other credentials; `logout` forgets them; a wrong secret
    is refused and saves nothing."""
    config = tmp_path / "config"
    env = clean_env(TASKSTATUS_CONFIG_DIR=str(config), PYTHONPATH=str(ROOT / "src"))
    env.pop("TMUX", None)

    wrong = terminal(_cli_command("login", "--url", server.url), env)
    wrong.wait_for(lambda s: "Client id" in s)
    wrong.type(server.client_id)
    wrong.wait_for(lambda s: "Client secret" in s)
    wrong.type("not-the-secret")
    screen = wrong.wait_for(lambda s: "EXIT=" in s)
    assert "refused" in screen and "EXIT=1" in screen
    assert not (config / "logins.json").exists()

    login = terminal(_cli_command("login", "--url", server.url), env)
    login.wait_for(lambda s: "Client id" in s)
    login.type(server.client_id)
    login.wait_for(lambda s: "Client secret" in s)
    login.type(server.client_secret)
    screen = login.wait_for(lambda s: "EXIT=" in s)
    assert "Logged in" in screen and "EXIT=0" in screen, screen
    assert server.client_secret not in screen  # the secret was not echoed
    saved = config / "logins.json"
    assert saved.stat().st_mode & 0o777 == 0o600
    assert json.loads(saved.read_text())[server.url]["client_id"] == server.client_id

    assert "tasks" in cli("list", "--url", server.url, env=env, cwd=tmp_path).stdout
    assert "Logged out" in cli("logout", "--url", server.url, env=env, cwd=tmp_path).stdout
    after = cli("list", "--url", server.url, env=env, cwd=tmp_path, check=False)
    assert after.returncode == 1 and "taskstatus login" in after.stderr


def _slept(screen: str) -> int:
    """The seconds the Sleep demo handler last reported on a terminal screen (0: none yet)."""
    found = re.findall(r"Slept (\d+) of \d+ s", screen)
    return int(found[-1]) if found else 0


@needs_tmux
def test_watch_follows_the_stream_in_a_terminal(
    server: Server, env: dict[str, str], terminal: Callable[[str, dict[str, str]], Terminal]
) -> None:
    """`watch --url` in a real terminal shows the live progress bar and the task's progress
    text as it moves, and exits with the task's outcome: 4 for a task cancelled while
    watched, 0 for SUCCESS with the bar at 100%."""
    env = {**env, "PYTHONPATH": str(ROOT / "src")}
    env.pop("TMUX", None)
    with taskstatus.connect(server.url, **server.credentials) as ts:
        # Long enough that a CLI slow to start on a loaded machine still sees it move.
        running = ts.submit("Sleep", {"seconds": 120})
        watch = terminal(_cli_command("watch", running.id), env)
        first = _slept(watch.wait_for(lambda s: _slept(s) > 0))
        watch.wait_for(lambda s: _slept(s) > first)  # it moves without a new command
        ts.cancel(running.id)
        screen = watch.wait_for(lambda s: "EXIT=" in s)
        assert "(TERMINATED)" in screen and "EXIT=4" in screen, screen

        done = ts.submit("Sleep", {"seconds": 0})
        ts.wait(done.id, timeout=60)
        watch = terminal(_cli_command("watch", done.id), env)
        screen = watch.wait_for(lambda s: "EXIT=" in s)
        assert "succeeded (SUCCESS)" in screen and "EXIT=0" in screen, screen
        assert "100%" in screen
