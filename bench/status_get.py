"""status_get_rps, status_get_p99_ms, bare_asgi_rps: wrk with 32 connections for 10 s against
GET /v2024/task-status/{id} with a valid token (one server process), and against a bare ASGI app
on the same server stack returning the same bytes. The ratio shows what our layers cost."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import httpx

import bench.handlers  # noqa: F401 - registers the handler submitted here
from bench.common import ROOT, database, free_port, server, wait_until
from taskstatus import connect

CONNECTIONS = 32
SECONDS = 10


def ensure_wrk() -> str:
    found = shutil.which("wrk")
    if found:
        return found
    if os.geteuid() == 0 and shutil.which("apt-get"):
        subprocess.run(["apt-get", "install", "-y", "-q", "wrk"], check=True, capture_output=True)
        found = shutil.which("wrk")
    if not found:
        raise RuntimeError("wrk is needed: apt-get install wrk")
    return found


def wrk(url: str, headers: dict[str, str], seconds: int = SECONDS) -> tuple[float, float]:
    """(requests/s, p99 ms)."""
    args = [ensure_wrk(), "-t2", f"-c{CONNECTIONS}", f"-d{seconds}s", "--latency"]
    for name, value in headers.items():
        args += ["-H", f"{name}: {value}"]
    out = subprocess.run([*args, url], capture_output=True, text=True, check=True).stdout
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))  # type: ignore[union-attr]
    match = re.search(r"99%\s+([\d.]+)(us|ms|s)", out)
    assert match, out
    p99 = float(match.group(1)) * {"us": 0.001, "ms": 1.0, "s": 1000.0}[match.group(2)]
    non2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    if non2xx:
        raise RuntimeError(f"{non2xx.group(1)} failed requests:\n{out}")
    return rps, p99


def run(kind: str = "sqlite") -> dict[str, float]:
    with database(kind) as url:
        with connect(url) as conn:
            tasks = conn.submit_many("bench.noop", [{}] * 1000)
            task_id = tasks[500].id
        with server(url) as (base, token):
            headers = {"Authorization": f"Bearer {token}"}
            body = httpx.get(f"{base}/v2024/task-status/{task_id}", headers=headers).content
            rps, p99 = wrk(f"{base}/v2024/task-status/{task_id}", headers)
        folder = Path(tempfile.mkdtemp(prefix="taskstatus-bench-bare-"))
        (folder / "body.json").write_bytes(body)
        port = free_port()
        bare = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "uvicorn",
                "bench.bare_asgi:app",
                "--port",
                str(port),
                "--http",
                "h11",
                "--no-access-log",
                "--log-level",
                "warning",
            ],
            cwd=ROOT,
            env={**os.environ, "BENCH_BODY": str(folder / "body.json")},
        )
        try:
            wait_until(lambda: _up(port), 30, "the bare ASGI app")
            assert httpx.get(f"http://127.0.0.1:{port}/").content == body
            bare_rps, bare_p99 = wrk(f"http://127.0.0.1:{port}/", headers)
        finally:
            bare.terminate()
            bare.wait(30)
            shutil.rmtree(folder, ignore_errors=True)
    print(
        f"  GET task-status: {rps:.0f} req/s, p99 {p99:.2f} ms; bare ASGI: {bare_rps:.0f} req/s, "
        f"p99 {bare_p99:.2f} ms; ratio {rps / bare_rps:.2f}",
        flush=True,
    )
    return {
        "status_get_rps": rps,
        "status_get_p99_ms": p99,
        "bare_asgi_rps": bare_rps,
        "bare_asgi_p99_ms": bare_p99,
        "status_get_ratio": rps / bare_rps,
    }


def _up(port: int) -> bool:
    try:
        httpx.get(f"http://127.0.0.1:{port}/", timeout=1)
        return True
    except httpx.TransportError:
        return False
