"""A throwaway PostgreSQL cluster that a test starts, stops and starts again.

``initdb`` and ``pg_ctl`` come from the PostgreSQL installation (``/usr/lib/postgresql/*/bin``
or the PATH). PostgreSQL refuses to run as root: as root the cluster runs as the ``postgres``
user, or a dedicated ``taskstatus-pg`` system user that is created if neither exists. The data
directory lives in a fresh directory under the system's temporary folder (one the cluster's
user can reach) and is removed when the cluster is closed. It listens on 127.0.0.1 on a free
port, with trust authentication, and the same port after each restart.
"""

from __future__ import annotations

import glob
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
from pathlib import Path

import pytest

from tests import pg

DEDICATED_USER = "taskstatus-pg"


def binaries() -> Path | None:
    """The folder of initdb and pg_ctl, newest version first; None if not installed."""
    for folder in sorted(glob.glob("/usr/lib/postgresql/*/bin"), reverse=True):
        if os.access(f"{folder}/initdb", os.X_OK):
            return Path(folder)
    found = shutil.which("initdb")
    return Path(found).parent if found else None


def _user() -> str | None:
    """Whom to run PostgreSQL as: None (ourselves) unless we are root."""
    if os.geteuid() != 0:
        return None
    for name in ("postgres", DEDICATED_USER):
        try:
            pwd.getpwnam(name)
            return name
        except KeyError:
            continue
    subprocess.run(
        ["useradd", "--system", "--no-create-home", "--shell", "/usr/sbin/nologin", DEDICATED_USER],
        check=True,
    )
    return DEDICATED_USER


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Cluster:
    """initdb'd on creation; `start()`, `stop()`, `close()` (stops and removes it)."""

    def __init__(self) -> None:
        folder = binaries()
        if folder is None:
            message = "PostgreSQL's initdb/pg_ctl are not installed"
            if pg.required():
                pytest.fail(message)
            pytest.skip(message)
        self.bin = folder
        self.user = _user()
        self.root = Path(tempfile.mkdtemp(prefix="taskstatus-pgcluster-"))
        self.data = self.root / "data"
        self.log = self.root / "server.log"
        self.port = free_port()
        if self.user is not None:
            entry = pwd.getpwnam(self.user)
            os.chown(self.root, entry.pw_uid, entry.pw_gid)
        self._run(
            "initdb",
            "-D",
            str(self.data),
            "-U",
            "postgres",
            "--auth=trust",
            "--no-sync",
            "-E",
            "UTF8",
        )

    @property
    def url(self) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/postgres"

    def _run(self, tool: str, *args: str) -> None:
        result = subprocess.run(
            [str(self.bin / tool), *args],
            user=self.user,
            cwd=self.root,
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        if result.returncode != 0:
            log = self.log.read_text() if self.log.exists() else ""
            raise RuntimeError(f"{tool} failed: {result.stdout}{result.stderr}\n{log[-2000:]}")

    def start(self) -> None:
        options = (
            f"-p {self.port} -c listen_addresses=127.0.0.1 -k {self.root} "
            "-c fsync=off -c synchronous_commit=off -c max_connections=100"
        )
        self._run("pg_ctl", "-D", str(self.data), "-l", str(self.log), "-o", options, "-w", "start")

    def stop(self) -> None:
        """A fast shutdown: sessions are ended, as in a restart for maintenance."""
        self._run("pg_ctl", "-D", str(self.data), "-m", "fast", "-w", "stop")

    def close(self) -> None:
        if (self.data / "postmaster.pid").exists():
            self._run("pg_ctl", "-D", str(self.data), "-m", "immediate", "-w", "stop")
        shutil.rmtree(self.root, ignore_errors=True)
