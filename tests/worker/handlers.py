"""Handlers the tests' worker processes import: ``--import tests.worker.handlers``."""

from __future__ import annotations

import asyncio
import os
import time
from typing import Any

from taskstatus import TaskContext, handler


@handler("Slow once", description="Sleeps on its first attempt only, then finishes at once.")
async def slow_once(ctx: TaskContext, args: dict[str, Any]) -> dict[str, Any]:
    ctx.progress(f"attempt {ctx.attempt} in pid {os.getpid()}", 10)
    if ctx.attempt == 1:
        await asyncio.sleep(float(args.get("seconds", 30)))
    return {"pid": os.getpid(), "attempt": ctx.attempt}


@handler("Nap", description="Sleeps for the given seconds.")
async def nap(ctx: TaskContext, args: dict[str, Any]) -> dict[str, Any]:
    await asyncio.sleep(float(args["seconds"]))
    return {"pid": os.getpid()}


@handler("Noop", description="Does nothing.")
def noop(ctx: TaskContext, args: dict[str, Any]) -> None:
    return None


_RUN_LOG: int | None = None


def _log_run(kind: str, ctx: TaskContext) -> None:
    """Append a line to this process's run log (one os.write on an O_APPEND descriptor: a
    killed process loses nothing it wrote)."""
    global _RUN_LOG
    if _RUN_LOG is None:
        folder = os.environ["TASKSTATUS_TEST_RUN_LOG"]
        _RUN_LOG = os.open(
            f"{folder}/runs-{os.getpid()}.log", os.O_WRONLY | os.O_CREAT | os.O_APPEND
        )
    os.write(_RUN_LOG, f"{kind} {ctx.id} {os.getpid()} {ctx.attempt} {time.time():.6f}\n".encode())


@handler("Logged", description="Logs its start and end, sleeping in between.")
async def logged(ctx: TaskContext, args: dict[str, Any]) -> None:
    _log_run("start", ctx)
    await asyncio.sleep(float(args.get("seconds", 0)))
    _log_run("end", ctx)
