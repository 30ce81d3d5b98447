"""The harness: one workload, one way of counting, for taskstatus and its peers.

    .venv/bin/python -m bench.peers.run [--systems a,b] [--n 10000] [--runs 3] [--quick]

Systems: taskstatus on PostgreSQL and on SQLite (the checkout's .venv), Celery (Redis),
Procrastinate (PostgreSQL, psycopg), PgQueuer (PostgreSQL, asyncpg) and Dramatiq (Redis),
each peer in its own virtual environment under bench/.venvs/ (created on first use, exact
pins in PINS), each on this machine's PostgreSQL or on a Redis server the harness starts on
a free port. The drivers (``bench/peers/<system>_app.py``, the shared part in ``_driver.py``)
run in the system's venv; this module imports none of the systems.

Every run starts from fresh state (a new database, or an emptied Redis db), starts the
worker processes, warms them up, submits N no-op tasks in bulk where the system can, and
counts completion where the system records it, polling every 5 ms (_driver.py). Tiers:

* matched: 2 worker processes with 8 concurrent slots each, for every system; RUNS runs;
* best: a sweep of each system's settings (one run each, the matched result included),
  then the fastest setting again until it has RUNS runs; the setting is reported with it.

Runs alternate between the systems so that background load falls on all alike; figures are
medians. Pickup: the matched setting, idle workers, one task at a time (_driver.pickup).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator, Sequence
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

ROOT = Path(__file__).resolve().parents[2]
PEERS_DIR = Path(__file__).resolve().parent
VENVS_DIR = ROOT / "bench" / ".venvs"
SCRATCH_DIR = ROOT / "bench" / ".peers"
PYTHON = "python3.11"
PG_ADMIN = os.environ.get("TASKSTATUS_BENCH_POSTGRES", "postgresql://postgres@127.0.0.1:5432/test")

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
    "pgqueuer": (
        "pgqueuer==1.6.0",
        "asyncpg==0.32.0",
        "annotated-doc==0.0.7",
        "annotated-types==0.8.0",
        "anyio==4.16.0",
        "croniter==7.0.0",
        "idna==3.20",
        "markdown-it-py==4.3.0",
        "mdurl==0.1.2",
        "pydantic==2.14.4",
        "pydantic-settings==2.16.3",
        "pydantic_core==2.50.5",
        "Pygments==2.21.0",
        "python-dateutil==4.0.0",
        "python-dotenv==1.2.4",
        "rich==15.0.0",
        "shellingham==1.5.4",
        "tabulate==0.10.0",
        "typer==0.29.2",
        "typing-inspection==0.4.5",
        "typing_extensions==4.16.0",
        "tzdata==2026.6",
    ),
    "dramatiq": ("dramatiq[redis]==2.2.1", "redis==8.1.0"),
}

# Imports the driver under its own name (not __main__) and runs its CLI.
_BOOT = (
    "import importlib, sys; d, m = sys.argv[1:3]; sys.path.insert(0, d); "
    "sys.argv = [m, *sys.argv[3:]]; importlib.import_module(m).main()"
)
DRIVER_TIMEOUT_S = 900.0
PICKUP_TRIES = 30


def _log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


# --------------------------------------------------------------------------- venvs, services


def ensure_venv(peer: str) -> Path:
    """The peer venv's python, the venv created or refreshed when its pins changed."""
    venv = VENVS_DIR / peer
    python = venv / "bin" / "python"
    stamp = venv / ".bench-pins"
    wanted = "\n".join(PINS[peer]) + "\n"
    if python.exists() and stamp.exists() and stamp.read_text() == wanted:
        return python
    _log(f"[harness] creating {venv} ({PINS[peer][0]})")
    subprocess.run([PYTHON, "-m", "venv", "--clear", str(venv)], check=True)
    pip = [str(python), "-m", "pip", "install", "--quiet", "--disable-pip-version-check"]
    res = subprocess.run([*pip, *PINS[peer]], capture_output=True, text=True, check=False)
    if res.returncode != 0:
        raise RuntimeError(f"pip install into {venv} failed:\n{res.stdout}\n{res.stderr}")
    stamp.write_text(wanted)
    return python


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextmanager
def redis_server() -> Iterator[str]:
    """A Redis server of this run's own, on a free port, no persistence; its URL."""
    if shutil.which("redis-server") is None:
        raise RuntimeError("redis-server is needed (apt-get install redis-server)")
    port = _free_port()
    folder = tempfile.mkdtemp(prefix="bench-redis-")
    proc = subprocess.Popen(
        [
            "redis-server",
            "--bind",
            "127.0.0.1",
            "--port",
            str(port),
            "--save",
            "",
            "--appendonly",
            "no",
            "--dir",
            folder,
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 10
        while True:
            ping = subprocess.run(
                ["redis-cli", "-p", str(port), "ping"], capture_output=True, text=True, check=False
            )
            if ping.stdout.strip() == "PONG":
                break
            if time.monotonic() > deadline:
                raise RuntimeError("redis-server did not answer PING")
            time.sleep(0.05)
        yield f"redis://127.0.0.1:{port}"
    finally:
        proc.terminate()
        proc.wait(10)
        shutil.rmtree(folder, ignore_errors=True)


# --------------------------------------------------------------------------- systems


@dataclass(frozen=True)
class Setting:
    label: str  # printed beside the figure
    processes: int
    args: tuple[str, ...]  # the worker's arguments


@dataclass
class System:
    name: str
    python: Path
    module: str
    env: dict[str, str]
    matched: Setting
    sweep: tuple[Setting, ...]  # besides the matched setting
    taskstatus_url: str | None = None

    def driver(self, *args: str) -> list[str]:
        return [str(self.python), "-c", _BOOT, str(PEERS_DIR), self.module, *args]

    def worker_cmd(self, setting: Setting) -> list[str]:
        if self.taskstatus_url is not None:
            return [
                str(self.python),
                "-m",
                "taskstatus",
                "worker",
                "--database",
                self.taskstatus_url,
                "--no-demo",
                "--import",
                "bench.handlers",
                *setting.args,
            ]
        return self.driver("worker", *setting.args)


def _env(**extra: str) -> dict[str, str]:
    skip = ("PYTHONPATH", "VIRTUAL_ENV")
    env = {k: v for k, v in os.environ.items() if k not in skip and not k.startswith("TASKSTATUS_")}
    env.update(extra)
    return env


def systems(chosen: Sequence[str], redis_url: str, tag: str) -> list[System]:
    """The systems, each with its matched setting (2 processes x 8 slots) and its sweep."""
    base = urlsplit(PG_ADMIN)._replace(path="").geturl()
    out: list[System] = []
    for name in chosen:
        if name.startswith("taskstatus_"):
            kind = name.removeprefix("taskstatus_")
            url = (
                f"{base}/bench_{tag}_taskstatus"
                if kind == "postgres"
                else f"sqlite:///{SCRATCH_DIR / f'taskstatus-{tag}.db'}"
            )
            out.append(
                System(
                    name,
                    Path(sys.executable),
                    "taskstatus_app",
                    _env(BENCH_TASKSTATUS_URL=url),
                    Setting("2 processes x concurrency 8", 2, ("--concurrency", "8")),
                    tuple(
                        Setting(f"2 processes x concurrency {c}", 2, ("--concurrency", str(c)))
                        for c in (64, 500)
                    ),
                    taskstatus_url=url,
                )
            )
        elif name == "celery":
            out.append(
                System(
                    name,
                    ensure_venv("celery"),
                    "celery_app",
                    _env(BENCH_REDIS_URL=redis_url),
                    Setting(
                        "2 workers x threads pool 8", 2, ("--pool", "threads", "--concurrency", "8")
                    ),
                    (
                        Setting(
                            "1 worker x prefork 2", 1, ("--pool", "prefork", "--concurrency", "2")
                        ),
                        Setting(
                            "2 workers x prefork 2", 2, ("--pool", "prefork", "--concurrency", "2")
                        ),
                        Setting(
                            "1 worker x prefork 8", 1, ("--pool", "prefork", "--concurrency", "8")
                        ),
                    ),
                )
            )
        elif name == "procrastinate":
            out.append(
                System(
                    name,
                    ensure_venv("procrastinate"),
                    "procrastinate_app",
                    _env(BENCH_PG_URL_BASE=base, BENCH_PG_DB=f"bench_{tag}_procrastinate"),
                    Setting("2 workers x concurrency 8", 2, ("--concurrency", "8")),
                    tuple(
                        Setting(f"2 workers x concurrency {c}", 2, ("--concurrency", str(c)))
                        for c in (32, 100)
                    ),
                )
            )
        elif name == "pgqueuer":
            out.append(
                System(
                    name,
                    ensure_venv("pgqueuer"),
                    "pgqueuer_app",
                    _env(BENCH_PG_URL_BASE=base, BENCH_PG_DB=f"bench_{tag}_pgqueuer"),
                    Setting(
                        "2 workers x 8 jobs (batch 4, max_concurrent_tasks 8)",
                        2,
                        ("--batch-size", "4", "--max-concurrent", "8"),
                    ),
                    tuple(
                        Setting(f"2 workers x batch {b}", 2, ("--batch-size", str(b)))
                        for b in (10, 100, 500)
                    ),
                )
            )
        elif name == "dramatiq":
            out.append(
                System(
                    name,
                    ensure_venv("dramatiq"),
                    "dramatiq_app",
                    _env(BENCH_REDIS_URL=redis_url),
                    Setting("2 processes x 8 threads", 2, ("--threads", "8")),
                    tuple(
                        Setting(f"2 processes x {t} threads", 2, ("--threads", str(t)))
                        for t in (1, 32)
                    ),
                )
            )
        else:
            raise SystemExit(f"unknown system {name!r}")
    return out


# --------------------------------------------------------------------------- processes


def run_driver(system: System, *args: str) -> dict[str, Any]:
    """One driver sub-command to completion; its JSON report."""
    res = subprocess.run(
        system.driver(*args),
        capture_output=True,
        text=True,
        cwd=ROOT,
        env=system.env,
        timeout=DRIVER_TIMEOUT_S,
        check=False,
    )
    lines = [line for line in res.stdout.splitlines() if line.strip()]
    if res.returncode != 0 or not lines:
        raise RuntimeError(
            f"{system.name} {' '.join(args)} failed (rc={res.returncode}):\n"
            f"{res.stderr[-3000:]}\n{res.stdout[-1000:]}"
        )
    report: dict[str, Any] = json.loads(lines[-1])
    return report


def _stop(proc: subprocess.Popen[bytes]) -> None:
    """Stop a worker this harness started: SIGTERM, then SIGKILL to its session."""
    if proc.poll() is None:
        proc.terminate()
        with suppress(subprocess.TimeoutExpired):
            proc.wait(timeout=20)
    with suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, signal.SIGKILL)  # its own session: prefork children too
    proc.wait()


@contextmanager
def workers(system: System, setting: Setting) -> Iterator[list[subprocess.Popen[bytes]]]:
    procs: list[subprocess.Popen[bytes]] = []
    logs = []
    try:
        for i in range(setting.processes):
            log = (SCRATCH_DIR / f"{system.name}-worker-{i}.log").open("wb")
            logs.append(log)
            procs.append(
                subprocess.Popen(
                    system.worker_cmd(setting),
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    cwd=ROOT,
                    env=system.env,
                    start_new_session=True,
                )
            )
        yield procs
        for i, proc in enumerate(procs):
            if proc.poll() is not None:
                tail = (SCRATCH_DIR / f"{system.name}-worker-{i}.log").read_text()[-2000:]
                raise RuntimeError(f"{system.name} worker died during the run:\n{tail}")
    finally:
        for proc in procs:
            _stop(proc)
        for log in logs:
            log.close()


def one_run(system: System, setting: Setting, n: int) -> dict[str, Any]:
    SCRATCH_DIR.mkdir(parents=True, exist_ok=True)  # bench/stored.py calls this on its own
    run_driver(system, "setup")
    try:
        with workers(system, setting):
            report = run_driver(system, "throughput", "--n", str(n))
    finally:
        run_driver(system, "drop")
    if report.get("succeeded") != n:
        raise RuntimeError(f"{system.name} ({setting.label}): {report.get('succeeded')}/{n} done")
    _log(
        f"[harness] {system.name:<20} {setting.label:<52} {report['e2e_tasks_per_s']:9.0f} "
        f"tasks/s (submit {report['submit_per_s']:8.0f}/s), load {os.getloadavg()[0]:.2f}"
    )
    return report


def pickup(system: System, tries: int) -> list[float]:
    run_driver(system, "setup")
    marker = SCRATCH_DIR / f"{system.name}.marker"
    try:
        with workers(system, system.matched):
            report = run_driver(system, "pickup", "--tries", str(tries), "--marker", str(marker))
    finally:
        run_driver(system, "drop")
    return [float(x) for x in report["pickup_ms"]]


# --------------------------------------------------------------------------- the benchmark


@dataclass
class Results:
    runs: dict[tuple[str, str], list[dict[str, Any]]] = field(default_factory=dict)
    best: dict[str, str] = field(default_factory=dict)  # system -> the best setting's label
    matched: dict[str, str] = field(default_factory=dict)
    pickup_ms: dict[str, list[float]] = field(default_factory=dict)
    load: list[tuple[float, float, float]] = field(default_factory=list)

    def median(self, system: str, label: str, key: str = "e2e_tasks_per_s") -> float:
        return float(statistics.median(r[key] for r in self.runs[(system, label)]))

    def figures(self) -> dict[str, float | str]:
        out: dict[str, float | str] = {}
        for system, label in self.matched.items():
            out[f"harness.{system}.matched_e2e_tasks_per_s"] = round(self.median(system, label), 1)
            out[f"harness.{system}.matched_submit_per_s"] = round(
                self.median(system, label, "submit_per_s"), 1
            )
        for system, label in self.best.items():
            out[f"harness.{system}.best_e2e_tasks_per_s"] = round(self.median(system, label), 1)
            out[f"harness.{system}.best_setting"] = label
        for system, latencies in self.pickup_ms.items():
            out[f"harness.{system}.pickup_ms_p50"] = round(statistics.median(latencies), 2)
        for kind in ("postgres", "sqlite"):
            system = f"taskstatus_{kind}"
            if system in self.best:
                out[f"e2e_tasks_per_s.{kind}"] = out[f"harness.{system}.best_e2e_tasks_per_s"]
                out[f"submit_per_s.{kind}"] = round(
                    self.median(system, self.best[system], "submit_per_s"), 1
                )
        if "taskstatus_postgres" in self.pickup_ms:
            out["pickup_ms_p50.postgres"] = out["harness.taskstatus_postgres.pickup_ms_p50"]
        peers = [s for s in self.matched if not s.startswith("taskstatus_")]
        if peers and "taskstatus_postgres" in self.matched:
            for tier, chosen in (("matched", self.matched), ("best", self.best)):
                top = max(peers, key=lambda s: self.median(s, chosen[s]))
                ours = self.median("taskstatus_postgres", chosen["taskstatus_postgres"])
                out[f"peers_{tier}_e2e"] = round(ours / self.median(top, chosen[top]), 2)
                out[f"peers_{tier}_e2e.best_peer"] = top
        return out


def benchmark(
    chosen: Sequence[str],
    n: int = 10_000,
    runs: int = 3,
    pickup_tries: int = PICKUP_TRIES,
    sweep: bool = True,
) -> Results:
    SCRATCH_DIR.mkdir(parents=True, exist_ok=True)
    results = Results(load=[os.getloadavg()])
    tag = uuid.uuid4().hex[:6]
    with redis_server() as redis_url:
        all_systems = systems(chosen, redis_url, tag)
        for system in all_systems:
            results.matched[system.name] = system.matched.label
        for _ in range(runs):  # matched, the systems taking turns
            for system in all_systems:
                report = one_run(system, system.matched, n)
                results.runs.setdefault((system.name, system.matched.label), []).append(report)
        for system in all_systems:  # best: the sweep, one run each
            settings = {system.matched.label: system.matched}
            for setting in system.sweep if sweep else ():
                settings[setting.label] = setting
                results.runs[(system.name, setting.label)] = [one_run(system, setting, n)]
            top = max(settings, key=lambda label: results.median(system.name, label))
            results.best[system.name] = top
        for _ in range(runs - 1):  # ... and the winners until they have `runs` runs
            for system in all_systems:
                label = results.best[system.name]
                done = results.runs[(system.name, label)]
                if len(done) < runs:
                    done.append(one_run(system, {s.label: s for s in system.sweep}[label], n))
        for system in all_systems:
            latencies = pickup(system, pickup_tries)
            results.pickup_ms[system.name] = latencies
            _log(
                f"[harness] {system.name:<20} pickup p50 {statistics.median(latencies):.2f} ms "
                f"(min {min(latencies):.2f}, max {max(latencies):.2f}, {len(latencies)} tries)"
            )
    results.load.append(os.getloadavg())
    return results


ALL = (
    "taskstatus_postgres",
    "taskstatus_sqlite",
    "celery",
    "procrastinate",
    "pgqueuer",
    "dramatiq",
)


def run_harness(chosen: Sequence[str] = ALL, n: int = 10_000, runs: int = 3) -> dict[str, Any]:
    """The figures of one harness run (bench/__main__.py's e2e and peers suites)."""
    results = benchmark(chosen, n, runs)
    print(table(results), flush=True)
    return results.figures()


def table(results: Results) -> str:
    rows = [
        "| system | tier | setting | e2e tasks/s (median) | runs | submit/s | pickup p50 ms |",
        "|---|---|---|---|---|---|---|",
    ]
    for system, matched in results.matched.items():
        for tier, label in (("matched", matched), ("best", results.best[system])):
            runs = ", ".join(f"{r['e2e_tasks_per_s']:,.0f}" for r in results.runs[(system, label)])
            latencies = results.pickup_ms.get(system) if tier == "matched" else None
            shown = f"{statistics.median(latencies):.2f}" if latencies else ""
            rows.append(
                f"| {system} | {tier} | {label} | {results.median(system, label):,.0f} | {runs} | "
                f"{results.median(system, label, 'submit_per_s'):,.0f} | {shown} |"
            )
    sweeps = [
        f"{system} {label}: {statistics.median(r['e2e_tasks_per_s'] for r in runs):,.0f}"
        for (system, label), runs in results.runs.items()
    ]
    rows.append("")
    rows.append("every setting run (median tasks/s): " + "; ".join(sweeps))
    lb, la = results.load[0], results.load[-1]
    rows.append(
        f"load average before {lb[0]:.2f} {lb[1]:.2f} {lb[2]:.2f}, "
        f"after {la[0]:.2f} {la[1]:.2f} {la[2]:.2f}"
    )
    return "\n".join(rows)


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--systems", default=",".join(ALL))
    parser.add_argument("--n", type=int, default=10_000, help="tasks per run")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--pickup-tries", type=int, default=PICKUP_TRIES)
    parser.add_argument("--no-sweep", action="store_true", help="the matched tier only")
    args = parser.parse_args(argv)
    results = benchmark(
        args.systems.split(","), args.n, args.runs, args.pickup_tries, sweep=not args.no_sweep
    )
    print(table(results))
    print(json.dumps(results.figures()))


if __name__ == "__main__":
    main()
