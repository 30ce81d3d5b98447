"""Handlers of the schedule and limit tests' worker processes (``--import
tests.schedules.handlers``). Each run appends "start|end <time> <task id>" to the file its
arguments name: the handlers' own log of when they ran."""

from __future__ import annotations

import asyncio
import os
import time
from typing import Any

from taskstatus import TaskContext, handler


def _log(path: str, kind: str, task_id: str) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
    try:
        os.write(fd, f"{kind} {time.time():.6f} {task_id}\n".encode())
    finally:
        os.close(fd)


@handler("Logged nap", description="Sleeps, logging its start and end.")
async def logged_nap(ctx: TaskContext, args: dict[str, Any]) -> None:
    _log(args["log"], "start", ctx.id)
    await asyncio.sleep(float(args.get("seconds", 0.05)))
    _log(args["log"], "end", ctx.id)


@handler("Tick", description="Does nothing; a schedule fires it.")
def tick(ctx: TaskContext, args: dict[str, Any]) -> None:
    return None
