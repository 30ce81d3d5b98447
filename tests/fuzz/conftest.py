"""A real `taskstatus serve` process (uvicorn) per backend, for tools that probe it from the
outside; and a summary, at the end of the run, of how many inputs they sent."""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from tests import pg

SENT: Counter[str] = Counter()  # inputs sent, by "tool backend"
ERRORS_5XX: Counter[str] = Counter()


ACCESS = re.compile(r'"[A-Z]+ \S+ HTTP/1\.[01]" (\d{3})')


@dataclass
class Live:
    backend: str
    url: str
    database: str
    token: str
    client_id: str
    client_secret: str
    log: Path

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"}

    def answered(self) -> tuple[int, int]:
        """(requests, of them >= 500) the server's access log shows so far."""
        statuses = [int(m.group(1)) for m in ACCESS.finditer(self.log.read_text())]
        return len(statuses), sum(s >= 500 for s in statuses)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def serve(backend: str, database: str, tmp: Path) -> Iterator[Live]:
    """`python -m taskstatus serve --demo` on a free port until the fixture ends."""
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("TASKSTATUS_")}
    env["TASKSTATUS_CREDENTIALS_FILE"] = str(tmp / "credentials.json")
    log_path = tmp / "serve.log"
    with log_path.open("w") as log:
        proc = subprocess.Popen(
            [
                *(sys.executable, "-m", "taskstatus", "serve", "--demo", "--database", database),
                *("--port", str(port), "--concurrency", "2"),
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
            env=env,
            start_new_session=True,
        )
        try:
            url = f"http://127.0.0.1:{port}"
            deadline = time.monotonic() + 60
            while True:
                assert proc.poll() is None, log_path.read_text()[-3000:]
                try:
                    if httpx.get(f"{url}/ready", timeout=2).status_code == 200:
                        break
                except httpx.TransportError:
                    pass
                assert time.monotonic() < deadline, "the server did not come up"
                time.sleep(0.2)
            creds = json.loads((tmp / "credentials.json").read_text())
            token = httpx.post(
                f"{url}/oauth/token", data={"grant_type": "client_credentials", **creds}
            ).json()["access_token"]
            yield Live(
                backend, url, database, token, creds["client_id"], creds["client_secret"], log_path
            )
        finally:
            os.killpg(proc.pid, signal.SIGTERM)
            proc.wait(60)


@pytest.fixture(
    scope="module", params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)]
)
def live(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Live]:
    """A running server of each backend, with the demo handlers and a few tasks."""
    tmp = tmp_path_factory.mktemp(f"live-{request.param}")
    if request.param == "sqlite":
        yield from _seeded(serve("sqlite", f"sqlite:///{tmp}/tasks.db", tmp))
        return
    server: pg.PgServer = request.getfixturevalue("postgres")
    name = server.create_database()
    try:
        yield from _seeded(serve("postgres", server.url(name), tmp))
    finally:
        server.drop_database(name)


def _seeded(lives: Iterator[Live]) -> Iterator[Live]:
    for live in lives:
        with httpx.Client(base_url=live.url, headers=live.headers) as http:
            for seconds in (0, 3600):
                r = http.post(
                    "/v2/task/create", json={"handler": "Sleep", "request": {"seconds": seconds}}
                )
                assert r.status_code == 201, r.text
        yield live


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    if not SENT:
        return
    terminalreporter.section("generated inputs sent to a live server")
    for key in sorted(SENT):
        terminalreporter.write_line(
            f"{key}: {SENT[key]} requests, {ERRORS_5XX[key]} answered >= 500"
        )
