"""The handlers benchmark workers import (``--import bench.handlers``)."""

from __future__ import annotations

import asyncio
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
