"""Peer benchmark orchestrator: the taskstatus workload on Celery and on Procrastinate.

Run from /work/main with the project venv::

    .venv/bin/python -m bench.peers.run [--n 10000] [--runs 3]

This module imports neither peer. Each peer lives in its own venv under
``bench/.venvs/<peer>`` (created here on first use, exact pins in ``PINS``) and its
app/worker/driver code is ``bench/peers/<peer>_app.py``, run in subprocesses by the
peer venv's python. Drivers report back as one JSON line on stdout.

Workload, per run and per peer: fresh broker state (Celery: FLUSHDB of the dedicated
Redis dbs; Procrastinate: drop + recreate the scratch database), worker started and
warmed up, then N no-op tasks submitted in bulk; timed from the first submit until
the last task is terminal in the peer's own store (Celery: N SUCCESS results in the
Redis result backend; Procrastinate: no job left todo/doing, all N ``succeeded``).
Runs alternate between the peers so that background load hits both alike.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import statistics
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
PEERS_DIR = Path(__file__).resolve().parent
VENVS_DIR = ROOT / "bench" / ".venvs"
SCRATCH_DIR = ROOT / "bench" / ".peers"
PYTHON = "python3.11"

# Exact pins, transitive dependencies included (pip freeze of a clean install).
PINS: dict[str, tuple[str, ...]] = {
    "celery": (
        "celery[redis]==5.7.0",
        "amqp==5.4.2",
        "billiard==4.3.2",
        "click==8.5.1",
        "click-didyoumean==0.3.1",
        "click-plugins==1.1.1.2",
        "click-repl==0.4.1",
        "kombu==5.7.0",
        "packaging==26.3",
        "prompt_toolkit==3.0.53",
        "python-dateutil==2.9.0.post0",
        "redis==8.1.0",
        "six==1.17.0",
        "typing_extensions==4.16.0",
        "tzlocal==5.4.5",
        "vine==5.1.0",
        "wcwidth==0.9.4",
    ),
    "procrastinate": (
        "procrastinate==3.10.0",
        "asgiref==3.13.0",
        "attrs==26.1.0",
        "croniter==7.0.0",
        "packaging==26.3",
        "psycopg[binary]==3.3.9",
        "psycopg-binary==3.3.9",
        "psycopg-pool==3.3.3",
        "python-dateutil==4.0.0",
        "typing_extensions==4.16.0",
        "tzdata==2026.6",
    ),
}

REDIS_HOST, REDIS_PORT = "127.0.0.1", 6379
REDIS_START = (
    "redis-server",
    "--daemonize",
    "yes",
    "--bind",
    "127.0.0.1 -::1",
    "--port",
    str(REDIS_PORT),
    "--save",
    "",
    "--appendonly",
    "no",
    "--dir",
    "/var/lib/redis",
    "--logfile",
    "/var/log/redis/ci.log",
)
PG_HOST, PG_PORT = "127.0.0.1", 5432

# Imports the peer module under its own name (not __main__) and runs its CLI.
_BOOT = (
    "import importlib, sys; d, m = sys.argv[1:3]; sys.path.insert(0, d); "
    "sys.argv = [m, *sys.argv[3:]]; importlib.import_module(m).main()"
)
DRIVER_TIMEOUT_S = 900.0
READY_TIMEOUT_S = 60.0
PICKUP_TRIES = 50
# Diagnostic variant, not part of run_peers(): see the note in main()'s --help.
ANALYZED = "procrastinate+analyze"


def _log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


# --------------------------------------------------------------------------- venvs


def ensure_venv(peer: str) -> Path:
    """Return the peer venv's python, creating/refreshing the venv if its pins changed."""
    venv = VENVS_DIR / peer
    python = venv / "bin" / "python"
    stamp = venv / ".bench-pins"
    wanted = "\n".join(PINS[peer]) + "\n"
    if python.exists() and stamp.exists() and stamp.read_text() == wanted:
        return python
    _log(f"[peers] creating {venv} ({PINS[peer][0]})")
    subprocess.run([PYTHON, "-m", "venv", "--clear", str(venv)], check=True)
    pip = [str(python), "-m", "pip", "install", "--quiet", "--disable-pip-version-check"]
    res = subprocess.run([*pip, *PINS[peer]], capture_output=True, text=True, check=False)
    if res.returncode != 0:
        raise RuntimeError(f"pip install into {venv} failed:\n{res.stdout}\n{res.stderr}")
    stamp.write_text(wanted)
    return python


# --------------------------------------------------------------------------- services


def ensure_redis() -> None:
    ping = ("redis-cli", "-h", REDIS_HOST, "-p", str(REDIS_PORT), "ping")

    def up() -> bool:
        res = subprocess.run(ping, capture_output=True, text=True, check=False)
        return res.stdout.strip() == "PONG"

    if up():
        return
    _log("[peers] starting redis-server")
    subprocess.run(REDIS_START, check=True)
    deadline = time.monotonic() + 10
    while not up():
        if time.monotonic() > deadline:
            raise RuntimeError("redis-server did not answer PING")
        time.sleep(0.1)


def ensure_postgres() -> None:
    res = subprocess.run(
        ("pg_isready", "-h", PG_HOST, "-p", str(PG_PORT)),
        capture_output=True,
        text=True,
        check=False,
    )
    if res.returncode != 0:
        raise RuntimeError(f"PostgreSQL not reachable at {PG_HOST}:{PG_PORT}: {res.stdout}")


# --------------------------------------------------------------------------- processes


def _env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    env.update(extra)
    return env


def _peer_cmd(python: Path, module: str, args: Sequence[str]) -> list[str]:
    return [str(python), "-c", _BOOT, str(PEERS_DIR), module, *args]


def _tail(path: Path, lines: int = 30) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return ""


def run_driver(
    python: Path, module: str, args: Sequence[str], env: dict[str, str] | None = None
) -> dict[str, Any]:
    """Run one peer sub-command to completion and return its JSON report."""
    res = subprocess.run(
        _peer_cmd(python, module, args),
        capture_output=True,
        text=True,
        cwd=ROOT,
        env=env or _env(),
        timeout=DRIVER_TIMEOUT_S,
        check=False,
    )
    lines = [line for line in res.stdout.splitlines() if line.strip()]
    if res.returncode != 0 or not lines:
        raise RuntimeError(
            f"{module} {' '.join(args)} failed (rc={res.returncode}):\n"
            f"{res.stderr[-3000:]}\n{res.stdout[-1000:]}"
        )
    report: dict[str, Any] = json.loads(lines[-1])
    return report


def _stop(proc: subprocess.Popen[bytes]) -> None:
    """Stop a worker we started: SIGTERM (graceful), then SIGKILL its whole session."""
    if proc.poll() is None:
        proc.terminate()
        with suppress(subprocess.TimeoutExpired):
            proc.wait(timeout=20)
    # The worker was started in its own session (pgid == its pid): reap stragglers
    # such as Celery prefork children.
    with suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()


@contextmanager
def worker(
    python: Path, module: str, log_path: Path, env: dict[str, str]
) -> Iterator[subprocess.Popen[bytes]]:
    with log_path.open("wb") as log:
        proc = subprocess.Popen(
            _peer_cmd(python, module, ["worker"]),
            stdout=log,
            stderr=subprocess.STDOUT,
            cwd=ROOT,
            env=env,
            start_new_session=True,
        )
    try:
        yield proc
    finally:
        _stop(proc)


def _wait_file(path: Path, proc: subprocess.Popen[bytes], log_path: Path) -> None:
    deadline = time.monotonic() + READY_TIMEOUT_S
    while not path.exists():
        if proc.poll() is not None:
            raise RuntimeError(f"worker exited (rc={proc.returncode}):\n{_tail(log_path)}")
        if time.monotonic() > deadline:
            raise RuntimeError(f"worker not ready after {READY_TIMEOUT_S}s:\n{_tail(log_path)}")
        time.sleep(0.05)


def _check_alive(proc: subprocess.Popen[bytes], log_path: Path) -> None:
    if proc.poll() is not None:
        raise RuntimeError(f"worker died during the run:\n{_tail(log_path)}")


# --------------------------------------------------------------------------- peers


class CeleryPeer:
    name = "celery"
    module = "celery_app"

    def __init__(self, python: Path) -> None:
        self.python = python
        self.ready = SCRATCH_DIR / "celery.ready"
        self.log = SCRATCH_DIR / "celery-worker.log"
        self.env = _env(BENCH_READY_FILE=str(self.ready))

    @contextmanager
    def _fresh_worker(self) -> Iterator[subprocess.Popen[bytes]]:
        run_driver(self.python, self.module, ["reset"])  # FLUSHDB broker + result dbs
        self.ready.unlink(missing_ok=True)
        with worker(self.python, self.module, self.log, self.env) as proc:
            _wait_file(self.ready, proc, self.log)
            yield proc

    def throughput(self, n: int) -> dict[str, Any]:
        with self._fresh_worker() as proc:
            report = run_driver(self.python, self.module, ["throughput", "--n", str(n)])
            _check_alive(proc, self.log)
        return report

    def pickup(self, tries: int) -> list[float]:
        with self._fresh_worker() as proc:
            report = run_driver(self.python, self.module, ["pickup", "--tries", str(tries)])
            _check_alive(proc, self.log)
        return [float(x) for x in report["pickup_ms"]]

    def cleanup(self) -> None:
        run_driver(self.python, self.module, ["reset"])
        self.ready.unlink(missing_ok=True)


class ProcrastinatePeer:
    name = "procrastinate"
    module = "procrastinate_app"

    def __init__(self, python: Path) -> None:
        self.python = python
        self.marker = SCRATCH_DIR / "procrastinate.marker"
        self.log = SCRATCH_DIR / "procrastinate-worker.log"
        self.env = _env()

    @contextmanager
    def _fresh_worker(self) -> Iterator[subprocess.Popen[bytes]]:
        run_driver(self.python, self.module, ["setup"])  # drop + recreate db, apply schema
        with worker(self.python, self.module, self.log, self.env) as proc:
            yield proc  # the driver's warm-up jobs wait for the worker to be up

    def throughput(self, n: int, analyze: bool = False) -> dict[str, Any]:
        args = ["throughput", "--n", str(n), "--marker", str(self.marker)]
        if analyze:
            args.append("--analyze")
        with self._fresh_worker() as proc:
            report = run_driver(self.python, self.module, args)
            _check_alive(proc, self.log)
        return report

    def pickup(self, tries: int) -> list[float]:
        args = ["pickup", "--tries", str(tries), "--marker", str(self.marker)]
        with self._fresh_worker() as proc:
            report = run_driver(self.python, self.module, args)
            _check_alive(proc, self.log)
        return [float(x) for x in report["pickup_ms"]]

    def cleanup(self) -> None:
        run_driver(self.python, self.module, ["drop"])
        self.marker.unlink(missing_ok=True)


Peer = CeleryPeer | ProcrastinatePeer


# --------------------------------------------------------------------------- benchmark


@dataclass
class PeerResults:
    runs: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    pickup_ms: dict[str, list[float]] = field(default_factory=dict)
    load_before: tuple[float, float, float] = (0.0, 0.0, 0.0)
    load_after: tuple[float, float, float] = (0.0, 0.0, 0.0)

    def figures(self) -> dict[str, float]:
        """Medians. Procrastinate's headline figure is its run with table statistics (ANALYZE
        after the submit, inside the timed window), as a long-lived database has them: on a
        fresh table without statistics its fetch function gets a poor generic plan and runs
        at about half the speed, which would flatter the comparison; that figure is kept
        as procrastinate_e2e_tasks_per_s.fresh_db."""
        out: dict[str, float] = {}
        for peer in ("celery", "procrastinate"):
            label = ANALYZED if peer == "procrastinate" and ANALYZED in self.runs else peer
            out[f"{peer}_e2e_tasks_per_s"] = round(
                statistics.median(r["e2e_tasks_per_s"] for r in self.runs[label]), 1
            )
        if ANALYZED in self.runs:
            out["procrastinate_e2e_tasks_per_s.fresh_db"] = round(
                statistics.median(r["e2e_tasks_per_s"] for r in self.runs["procrastinate"]), 1
            )
        for peer in ("celery", "procrastinate"):
            out[f"{peer}_submit_per_s"] = round(
                statistics.median(r["submit_per_s"] for r in self.runs[peer]), 1
            )
        for peer in ("celery", "procrastinate"):
            if self.pickup_ms.get(peer):
                out[f"{peer}_pickup_ms_p50"] = round(statistics.median(self.pickup_ms[peer]), 2)
        return out


def _describe(peer: str, i: int, runs: int, r: dict[str, Any]) -> str:
    return (
        f"[peers] {peer:<13} run {i}/{runs}: e2e {r['e2e_tasks_per_s']:8.1f} tasks/s "
        f"({r['e2e_s']:.2f} s), submit {r['submit_per_s']:8.1f} tasks/s "
        f"({r['submit_s']:.2f} s), load {os.getloadavg()[0]:.2f}"
    )


def benchmark(
    n: int = 10_000,
    runs: int = 3,
    pickup_tries: int = PICKUP_TRIES,
    analyze_variant: bool = False,
) -> PeerResults:
    SCRATCH_DIR.mkdir(parents=True, exist_ok=True)
    ensure_redis()
    ensure_postgres()
    peers: list[Peer] = [
        CeleryPeer(ensure_venv("celery")),
        ProcrastinatePeer(ensure_venv("procrastinate")),
    ]
    results = PeerResults(load_before=os.getloadavg())
    try:
        # Alternate the peers run by run so that background load is shared fairly.
        for i in range(1, runs + 1):
            for peer in peers:
                variants = [(peer.name, False)]
                if analyze_variant and isinstance(peer, ProcrastinatePeer):
                    variants.append((ANALYZED, True))
                for label, analyze in variants:
                    report = peer.throughput(n, analyze=True) if analyze else peer.throughput(n)
                    if report["succeeded"] != n:
                        raise RuntimeError(f"{label}: only {report['succeeded']}/{n} succeeded")
                    results.runs.setdefault(label, []).append(report)
                    _log(_describe(label, i, runs, report))
        for peer in peers:
            try:
                latencies = peer.pickup(pickup_tries)
            except (RuntimeError, subprocess.TimeoutExpired) as exc:  # nice-to-have figure
                _log(f"[peers] {peer.name} pickup latency not measured: {exc}")
                continue
            results.pickup_ms[peer.name] = latencies
            _log(
                f"[peers] {peer.name:<13} pickup: p50 {statistics.median(latencies):.2f} ms "
                f"(min {min(latencies):.2f}, max {max(latencies):.2f}, {len(latencies)} tries)"
            )
    finally:
        for peer in peers:
            try:
                peer.cleanup()
            except (RuntimeError, subprocess.TimeoutExpired) as exc:
                _log(f"[peers] {peer.name} cleanup failed: {exc}")
    results.load_after = os.getloadavg()
    return results


def run_peers(n: int = 10_000, runs: int = 3) -> dict[str, float]:
    """Median end-to-end (and submit) tasks/s of each peer, plus pickup p50 in ms."""
    return benchmark(n, runs, analyze_variant=True).figures()


def _table(results: PeerResults, n: int) -> str:
    rows = [f"Peer benchmark: {n} no-op tasks per run, {os.cpu_count()} CPUs"]
    rows.append(f"{'peer':<22}{'run':>5}{'e2e tasks/s':>14}{'e2e s':>9}{'submit/s':>12}")
    for peer, runs in results.runs.items():
        for i, r in enumerate(runs, 1):
            rows.append(
                f"{peer:<22}{i:>5}{r['e2e_tasks_per_s']:>14.1f}{r['e2e_s']:>9.2f}"
                f"{r['submit_per_s']:>12.1f}"
            )
        rows.append(
            f"{peer:<22}{'med':>5}"
            f"{statistics.median(r['e2e_tasks_per_s'] for r in runs):>14.1f}"
            f"{statistics.median(r['e2e_s'] for r in runs):>9.2f}"
            f"{statistics.median(r['submit_per_s'] for r in runs):>12.1f}"
            f"   submit: {runs[0]['method']}"
        )
    for peer, lat in results.pickup_ms.items():
        q = statistics.quantiles(lat, n=10)
        rows.append(
            f"{peer:<22}pickup p50 {statistics.median(lat):.2f} ms, p90 {q[-1]:.2f} ms "
            f"({len(lat)} tries)"
        )
    lb, la = results.load_before, results.load_after
    rows.append(
        f"load average before {lb[0]:.2f} {lb[1]:.2f} {lb[2]:.2f}, "
        f"after {la[0]:.2f} {la[1]:.2f} {la[2]:.2f}"
    )
    return "\n".join(rows)


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Celery and Procrastinate peer benchmark.")
    parser.add_argument("--n", type=int, default=10_000, help="tasks per run")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--pickup-tries", type=int, default=PICKUP_TRIES)
    parser.add_argument(
        "--analyze-variant",
        action="store_true",
        help=(
            "also time Procrastinate with an ANALYZE of its jobs table right after the "
            "submit (inside the timed window). On a freshly created database the table "
            "has no statistics, and after 5 calls PostgreSQL switches the cached plan "
            "of procrastinate_fetch_job_v2 to a generic plan whose cost grows with the "
            "backlog (~7 ms per fetch at 10k queued jobs vs ~0.05 ms), so the default "
            "figure is 'fresh database, out of the box'; this row shows the same "
            "workload once statistics exist, as in a long-lived, autovacuumed database. "
            "Shown in the table only, not in the JSON figures."
        ),
    )
    args = parser.parse_args(argv)
    results = benchmark(args.n, args.runs, args.pickup_tries, args.analyze_variant)
    print(_table(results, args.n))
    print(json.dumps(results.figures()))


if __name__ == "__main__":
    main()
