"""What every system's driver shares (standard library only: it runs in each system's venv).

A driver is ``bench/peers/<system>_app.py`` with the sub-commands ``setup``, ``drop``,
``worker`` (one worker process), ``throughput`` and ``pickup``; each prints one JSON object on
its last stdout line. The workload and the counting are the same for every system:

* throughput: a warm-up of WARMUP no-op tasks (the workers connected and running), then N
  no-op tasks submitted in bulk where the system has a bulk submit; the clock runs from the
  first submit until a poll, every POLL_MS, finds nothing left to do where the system records
  it (``done`` below);
* pickup: an idle worker (IDLE_MS without work), one task whose handler writes the
  wall-clock time it started to a marker file; the latency is that time minus the time just
  before the submit.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

WARMUP = 100
POLL_MS = 5.0
IDLE_MS = 50.0


def emit(payload: dict[str, Any]) -> None:
    sys.stdout.write(json.dumps(payload) + "\n")
    sys.stdout.flush()


def stamp(marker: str) -> None:
    """The pickup handler's body: the time it started, written atomically to `marker`."""
    started = time.time()
    tmp = Path(marker + ".tmp")
    tmp.write_text(repr(started))
    tmp.replace(marker)


def wait(done: Callable[[], bool], timeout: float, what: str, poll_ms: float = POLL_MS) -> float:
    """Poll `done` every `poll_ms` until it is true; the perf_counter time it was."""
    deadline = time.monotonic() + timeout
    while True:
        if done():
            return time.perf_counter()
        if time.monotonic() > deadline:
            raise SystemExit(f"timed out waiting for {what}")
        time.sleep(poll_ms / 1000)


def throughput(
    system: str,
    n: int,
    submit: Callable[[int], None],
    done: Callable[[], bool],
    method: str,
    poll_ms: float = POLL_MS,
) -> dict[str, Any]:
    """One timed run: warm-up, then `n` tasks from the first submit to the poll that finds
    them all done."""
    submit(WARMUP)
    wait(done, 120, "the warm-up")
    time.sleep(0.5)
    t0 = time.perf_counter()
    submit(n)
    submitted = time.perf_counter()
    finished = wait(done, 900, "the run", poll_ms)
    return {
        "system": system,
        "n": n,
        "method": method,
        "submit_s": submitted - t0,
        "e2e_s": finished - t0,
        "submit_per_s": n / (submitted - t0),
        "e2e_tasks_per_s": n / (finished - t0),
    }


def pickup(
    system: str,
    tries: int,
    marker: Path,
    submit_stamp: Callable[[str], None],
    idle_ms: float = IDLE_MS,
) -> dict[str, Any]:
    """`tries` pickups (after 3 to warm up); latencies in ms."""
    latencies: list[float] = []
    for i in range(tries + 3):
        marker.unlink(missing_ok=True)
        time.sleep(idle_ms / 1000)
        t0 = time.time()
        submit_stamp(str(marker))
        wait(marker.exists, 60, "the pickup", 0.2)
        started = float(marker.read_text())
        if i >= 3:
            latencies.append((started - t0) * 1000)
    marker.unlink(missing_ok=True)
    return {"system": system, "pickup_ms": latencies}


Command = Callable[[argparse.Namespace], None]


def main(driver: Mapping[str, Any], worker_options: Mapping[str, int | str] | None = None) -> None:
    """Parse a driver's command line and run the sub-command asked for: `driver` is the
    driver module's globals (its docstring and its ``cmd_<name>`` functions);
    `worker_options` are its worker's own flags with their defaults (their type from it)."""
    parser = argparse.ArgumentParser(description=driver["__doc__"])
    sub = parser.add_subparsers(dest="cmd", required=True)

    def command(name: str) -> argparse.ArgumentParser:
        found: Command = driver[f"cmd_{name}"]
        p = sub.add_parser(name)
        p.set_defaults(func=found)
        return p

    command("setup")
    command("drop")
    if worker_options is not None:
        wk = command("worker")
        for flag, default in worker_options.items():
            wk.add_argument(flag, type=type(default), default=default)
    tp = command("throughput")
    tp.add_argument("--n", type=int, default=10_000)
    tp.add_argument("--poll-ms", type=float, default=POLL_MS)
    pk = command("pickup")
    pk.add_argument("--tries", type=int, default=30)
    pk.add_argument("--marker", required=True)
    args = parser.parse_args()
    args.func(args)
