"""A real `taskstatus serve` process on a free port, for the remote client's tests."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[2]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def clean_env(**extra: str) -> dict[str, str]:
    """The environment without TASKSTATUS_* settings of the caller, plus `extra`."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("TASKSTATUS_")}
    env.update(extra)
    return env


@dataclass
class Server:
    url: str
    database: str
    client_id: str
    client_secret: str
    log: Path
    process: subprocess.Popen[bytes]

    @property
    def credentials(self) -> dict[str, str]:
        return {"client_id": self.client_id, "client_secret": self.client_secret}

    def log_tail(self) -> str:
        return self.log.read_text(errors="replace")[-4000:]


@contextmanager
def serve(
    database: str, workdir: Path, *args: str, env: dict[str, str] | None = None
) -> Iterator[Server]:
    """`taskstatus serve` on `database` until the block ends; the admin credentials its first
    start wrote."""
    port = free_port()
    creds = workdir / f"creds-{port}.json"
    log = workdir / f"serve-{port}.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "taskstatus",
                "serve",
                "--database",
                database,
                "--port",
                str(port),
                "--credentials-file",
                str(creds),
                "--no-access-log",
                "--concurrency",
                "4",
                "--poll-interval",
                "0.2",
                *args,
            ],
            cwd=ROOT,
            env=env or clean_env(),
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            assert proc.poll() is None, log.read_text()[-3000:]
            try:
                if httpx.get(f"{url}/ready", timeout=2).status_code == 200 and creds.exists():
                    break
            except httpx.TransportError:
                pass
            assert time.monotonic() < deadline, "the server did not come up: " + log.read_text()
            time.sleep(0.1)
        data = json.loads(creds.read_text())
        yield Server(url, database, data["client_id"], data["client_secret"], log, proc)
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
