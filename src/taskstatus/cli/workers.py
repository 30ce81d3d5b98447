"""Process commands: worker, migrate."""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import sys
import threading
from collections.abc import Callable
from typing import Annotated

import typer

from taskstatus.cli import (
    DATABASE_DEFAULT,
    Database,
    Imports,
    app,
    configure_logging,
    load_modules,
    out,
    run,
)
from taskstatus.redact import mask
from taskstatus.service import TaskService
from taskstatus.settings import (
    CLAIM_AHEAD_MS,
    CONCURRENCY,
    GRACE_PERIOD,
    LEASE_SECONDS,
    POLL_INTERVAL,
)
from taskstatus.worker import Worker, WorkerOptions

log = logging.getLogger("taskstatus.cli")

# Not TASKSTATUS_CONCURRENCY: that is serve's in-process slots, 0 on API-only nodes, and a
# worker node may share their environment.
Concurrency = Annotated[
    int,
    typer.Option(min=1, envvar="TASKSTATUS_WORKER_CONCURRENCY", help="Tasks run at once"),
]
LeaseSeconds = Annotated[
    float,
    typer.Option(
        min=0.1, envvar="TASKSTATUS_LEASE_SECONDS", help="How long a claim lasts unrenewed"
    ),
]
GracePeriod = Annotated[
    float,
    typer.Option(min=0, envvar="TASKSTATUS_GRACE_PERIOD", help="Seconds running tasks get on stop"),
]
RecoverGrace = Annotated[
    float | None,
    typer.Option(
        min=0,
        envvar="TASKSTATUS_RECOVER_GRACE",
        help="Seconds an expired lease waits, store reachable, before recovery (default: lease)",
    ),
]
PollInterval = Annotated[
    float, typer.Option(min=0.01, envvar="TASKSTATUS_POLL_INTERVAL", help="Idle poll (safety net)")
]
ClaimAheadMs = Annotated[
    float,
    typer.Option(
        min=0,
        envvar="TASKSTATUS_CLAIM_AHEAD_MS",
        help="Claim beyond free slots what they are expected to start within this many ms (0: off)",
    ),
]
Demo = Annotated[
    bool,
    typer.Option("--demo/--no-demo", envvar="TASKSTATUS_DEMO", help="Also run the demo handlers"),
]


def install_stop_signals(stop: Callable[[], None]) -> None:
    """SIGTERM/SIGINT stop gracefully; a second one exits at once."""
    loop = asyncio.get_running_loop()
    count = 0

    def on_signal(signum: int) -> None:
        nonlocal count
        count += 1
        if count > 1:
            log.warning("second %s: exiting now", signal.Signals(signum).name)
            os._exit(128 + signum)
        log.info("%s: stopping (again to exit at once)", signal.Signals(signum).name)
        stop()

    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, on_signal, signum)


def exit_past_stuck_threads() -> None:
    """Sync handlers that ignored their stop still hold threads that the interpreter would wait
    for at exit; their tasks were handed back, so leave without them."""
    stuck = [
        t for t in threading.enumerate() if t.name.startswith("taskstatus-handler") and t.is_alive()
    ]
    if stuck:
        log.warning("%d handler threads did not stop; exiting without them", len(stuck))
        logging.shutdown()
        sys.stdout.flush()
        os._exit(0)


@app.command()
def worker(
    database: Database = DATABASE_DEFAULT,
    imports: Imports = None,
    concurrency: Concurrency = CONCURRENCY,
    lease_seconds: LeaseSeconds = LEASE_SECONDS,
    grace_period: GracePeriod = GRACE_PERIOD,
    recover_grace: RecoverGrace = None,
    poll_interval: PollInterval = POLL_INTERVAL,
    claim_ahead_ms: ClaimAheadMs = CLAIM_AHEAD_MS,
    demo: Demo = True,
) -> None:
    """Run handlers on submitted tasks until SIGTERM or SIGINT."""
    configure_logging()
    if demo:
        import taskstatus.demo  # noqa: F401 - registers the demo handlers
    load_modules(imports)
    options = WorkerOptions(
        concurrency=concurrency,
        lease_seconds=lease_seconds,
        grace_period=grace_period,
        recover_grace=recover_grace,
        poll_interval=poll_interval,
        claim_ahead_ms=claim_ahead_ms,
    )

    async def go() -> None:
        async with TaskService.from_url(database) as service:
            w = Worker.of(service, options)
            install_stop_signals(w.stop)
            await w.run()

    run(go())
    exit_past_stuck_threads()


@app.command()
def migrate(database: Database = DATABASE_DEFAULT) -> None:
    """Apply pending schema migrations (nodes also do this when they start)."""

    async def go() -> None:
        async with TaskService.from_url(database):
            pass

    run(go())
    out.print(f"{mask(database)}: schema up to date")
