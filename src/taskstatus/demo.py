"""Demo handlers, registered on import, so that the quick start shows real behaviour.

- ``Cloud Account Aggregation`` walks a generated account source page by page, with progress,
  messages (a WARN for accounts without an owner) and counts as attributes and returns;
- ``Failing Task`` fails, permanently or (``transient``) with retries and backoff;
- ``Sleep`` sleeps, reporting progress each second, and stops at once when cancelled;
- ``Fan Out`` submits subtasks and records their ids.
"""

from __future__ import annotations

import asyncio
import random
from typing import Any

from pydantic import BaseModel, Field

from taskstatus.handlers import handler
from taskstatus.worker.context import Retry, TaskContext

AGGREGATION = "Cloud Account Aggregation"
FAILING = "Failing Task"
SLEEP = "Sleep"
FAN_OUT = "Fan Out"


class AggregationArgs(BaseModel):
    source: str = Field("Active Directory", description="Name of the source to aggregate")
    accounts: int = Field(500, ge=0, le=1_000_000, description="How many accounts it holds")
    page_size: int = Field(50, ge=1, le=10_000, description="Accounts read per page")
    page_delay: float = Field(0.05, ge=0, le=60, description="Seconds each page takes to read")
    seed: int = Field(0, description="Seed of the generated accounts")


@handler(
    AGGREGATION,
    description="Aggregates the accounts of a source, page by page.",
    arguments=AggregationArgs,
)
async def aggregate_accounts(ctx: TaskContext, args: AggregationArgs) -> dict[str, Any]:
    rng = random.Random(args.seed)  # noqa: S311 - generated demo data
    counts = {"total": 0, "created": 0, "updated": 0, "unchanged": 0, "ownerless": 0}
    ctx.info(
        f"Aggregating {args.accounts} accounts from {args.source}",
        key="aggregation.start",
        parameters=[{"source": args.source}],
    )
    ctx.add_return("Accounts scanned", "total")
    ctx.add_return("Accounts created", "created")
    for start in range(0, args.accounts, args.page_size):
        await asyncio.sleep(args.page_delay)
        for n in range(start, min(start + args.page_size, args.accounts)):
            counts["total"] += 1
            roll = rng.random()
            kind = "created" if roll < 0.2 else "updated" if roll < 0.5 else "unchanged"
            counts[kind] += 1
            if rng.random() < 0.002:
                counts["ownerless"] += 1
                ctx.warn(
                    f"Account acct-{n:07d} has no owner",
                    key="aggregation.ownerless",
                    parameters=[{"account": f"acct-{n:07d}"}],
                )
        done = counts["total"]
        percent = 100 * done // args.accounts if args.accounts else 100
        ctx.progress(f"Aggregated {done} of {args.accounts} accounts", percent)
    ctx.info(f"Aggregation of {args.source} finished", key="aggregation.done")
    return counts


class FailingArgs(BaseModel):
    message: str = Field("the source refused the connection", description="The error to raise")
    transient: bool = Field(False, description="Raise a retryable error (retried with backoff)")
    retry_delay: float | None = Field(None, ge=0, description="Seconds before a retry")


@handler(FAILING, description="Fails, to show errors and retries.", arguments=FailingArgs)
def fail(ctx: TaskContext, args: FailingArgs) -> None:
    ctx.progress("Connecting", 10)
    if args.transient:
        raise Retry(args.message, delay=args.retry_delay)
    raise RuntimeError(args.message)


class SleepArgs(BaseModel):
    seconds: float = Field(5.0, ge=0, le=86_400, description="How long to sleep")


@handler(
    SLEEP, description="Sleeps, reporting progress; cancellable at any moment.", arguments=SleepArgs
)
async def sleep(ctx: TaskContext, args: SleepArgs) -> dict[str, float]:
    step = min(1.0, args.seconds) or 0.0
    slept = 0.0
    while slept < args.seconds:
        chunk = min(step, args.seconds - slept)
        await asyncio.sleep(chunk)
        slept += chunk
        ctx.progress(f"Slept {slept:g} of {args.seconds:g} s", int(100 * slept / args.seconds))
    return {"slept": slept}


class FanOutArgs(BaseModel):
    children: int = Field(3, ge=0, le=1000, description="How many subtasks to submit")
    handler: str = Field(SLEEP, description="The handler the subtasks run")
    arguments: dict[str, Any] = Field(
        default_factory=lambda: {"seconds": 1.0}, description="The subtasks' arguments"
    )


@handler(FAN_OUT, description="Submits subtasks and records their ids.", arguments=FanOutArgs)
async def fan_out(ctx: TaskContext, args: FanOutArgs) -> dict[str, Any]:
    ids = []
    for i in range(args.children):
        child = await ctx.submit(
            args.handler, args.arguments, unique_name=f"{args.handler} #{i + 1}"
        )
        ids.append(child.id)
        ctx.progress(
            f"Submitted {i + 1} of {args.children} subtasks", 100 * (i + 1) // args.children
        )
    ctx.info(f"Submitted {len(ids)} subtasks", key="fanout.submitted")
    return {"children": ids}
