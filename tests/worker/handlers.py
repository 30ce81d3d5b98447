"""Handlers the tests' worker processes import: ``--import tests.worker.handlers``."""

from __future__ import annotations

import asyncio
import os
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
