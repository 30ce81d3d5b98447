"""The handlers benchmark workers import (``--import bench.handlers``)."""

from __future__ import annotations

import asyncio
import os
import time
from typing import Any

from bench.peers._driver import stamp as write_stamp
from taskstatus import TaskContext, handler


@handler("bench.noop", description="Does nothing (async).")
async def noop(ctx: TaskContext, args: dict[str, Any]) -> None:
    return None


@handler("bench.noop_sync", description="Does nothing (a sync function, run in a thread).")
def noop_sync(ctx: TaskContext, args: dict[str, Any]) -> None:
    return None


@handler("bench.started", description="Records the wall-clock time it started.")
async def started(ctx: TaskContext, args: dict[str, Any]) -> dict[str, float]:
    return {"started": time.time()}


@handler("bench.sleep", description="Sleeps.")
async def sleep(ctx: TaskContext, args: dict[str, Any]) -> None:
    await asyncio.sleep(float(args["seconds"]))


@handler("bench.stamp", description="Writes the wall-clock time it started to args['marker'].")
async def stamp(ctx: TaskContext, args: dict[str, Any]) -> None:
    write_stamp(str(args["marker"]))


@handler("bench.ticks", description="Reports its wall-clock time as progress, n times.")
async def ticks(ctx: TaskContext, args: dict[str, Any]) -> None:
    n, every = int(args.get("n", 100)), float(args.get("every", 0.1))
    for i in range(n):
        ctx.progress(repr(time.time()), 100 * (i + 1) // n)
        await asyncio.sleep(every)


@handler("bench.logged_sleep", description="Sleeps, appending its start and end to a file.")
async def logged_sleep(ctx: TaskContext, args: dict[str, Any]) -> None:
    _log(args["log"], "start", ctx.id)
    await asyncio.sleep(float(args["seconds"]))
    _log(args["log"], "end", ctx.id)


def _log(path: str, kind: str, task_id: str) -> None:
    # one write on an O_APPEND descriptor: lines of several processes never interleave
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
    try:
        os.write(fd, f"{kind} {time.time():.6f} {task_id}\n".encode())
    finally:
        os.close(fd)
