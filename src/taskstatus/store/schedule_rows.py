"""Rows of the schedule and limit tables, both ways, for either database's Codec."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from taskstatus.limits_policy import HandlerLimits
from taskstatus.schedules import Missed, Overlap, Schedule
from taskstatus.store.rows import Codec

__all__ = ["limits_from_row", "limits_params", "schedule_from_row", "schedule_params"]


def schedule_params(s: Schedule, codec: Codec) -> dict[str, Any]:
    assert s.created is not None and s.modified is not None
    return {
        "name": s.name,
        "handler": s.handler,
        "arguments": codec.json_in(s.arguments),
        "cron": s.cron,
        "every": s.every,
        "timezone": s.timezone,
        "missed": s.missed.value,
        "overlap": s.overlap.value,
        "paused": s.paused,
        "next_fire": codec.opt_time_in(s.next_fire),
        "last_fire": codec.opt_time_in(s.last_fire),
        "last_task_id": s.last_task_id,
        "created": codec.time_in(s.created),
        "modified": codec.time_in(s.modified),
        "version": s.version,
    }


def schedule_from_row(row: Sequence[Any], codec: Codec) -> Schedule:
    (
        name, handler, arguments, cron, every, timezone, missed, overlap, paused, next_fire,
        last_fire, last_task_id, created, modified, version,
    ) = row  # fmt: skip
    return Schedule(
        name=name,
        handler=handler,
        arguments=dict(codec.json_out(arguments)),
        cron=cron,
        every=every,
        timezone=timezone,
        missed=Missed(missed),
        overlap=Overlap(overlap),
        paused=bool(paused),
        next_fire=codec.opt_time_out(next_fire),
        last_fire=codec.opt_time_out(last_fire),
        last_task_id=last_task_id,
        created=codec.time_out(created),
        modified=codec.time_out(modified),
        version=int(version),
    )


def limits_params(limits: HandlerLimits) -> dict[str, Any]:
    return {
        "handler": limits.handler,
        "concurrency": limits.concurrency,
        "rate": limits.rate,
        "burst": limits.burst,
        "limit_key": limits.limit_key,
        "declared": limits.declared,
    }


def limits_from_row(row: Sequence[Any]) -> HandlerLimits:
    handler, concurrency, rate, burst, limit_key, declared = row[:6]
    return HandlerLimits(handler, concurrency, rate, burst, limit_key, bool(declared))
