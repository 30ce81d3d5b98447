"""Schedules and limits on SQLite: the SQLiteStore's part of the Store protocol for them, and
the limited claim, which runs inside the claim's write transaction (BEGIN IMMEDIATE: one
writer at a time across every process on the file, so each claim counts what the previous
one left)."""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any, TypeVar

import orjson

from taskstatus.errors import ConflictError
from taskstatus.limits_policy import (
    Candidate,
    HandlerLimits,
    key_of,
    pick,
    refill,
)
from taskstatus.model import Task
from taskstatus.schedules import Schedule, ScheduleNotFound
from taskstatus.store.edge import guarded
from taskstatus.store.rows import Codec, task_from_row
from taskstatus.store.schedule_rows import (
    limits_from_row,
    limits_params,
    schedule_from_row,
    schedule_params,
)
from taskstatus.store.sqlfiles import load_queries
from taskstatus.store.sqlite_created import insert_params
from taskstatus.store.wakeups import Wakeups

__all__ = ["SQLiteSchedules", "claim_limited", "limited_handlers"]

T = TypeVar("T")


_Q = load_queries("sqlite")


def _codec() -> Codec:
    from taskstatus.store.sqlite import CODEC

    return CODEC


def _t(value: datetime) -> str:
    return value.astimezone(UTC).isoformat(timespec="microseconds")


def limited_handlers(conn: sqlite3.Connection, handlers: Sequence[str]) -> dict[str, HandlerLimits]:
    """The limits of those of `handlers` that have some."""
    wanted = set(handlers)
    return {
        row[0]: limits_from_row(row) for row in conn.execute(_Q["list_limits"]) if row[0] in wanted
    }


def claim_limited(
    conn: sqlite3.Connection,
    limited: dict[str, HandlerLimits],
    worker_id: str,
    free: int,
    lease_seconds: float,
    now: datetime,
) -> tuple[list[Task], bool, float | None]:
    """Claim up to `free` tasks of the limited handlers within their limits; hold the others
    back with the reason in their progress. The tasks, whether some were held back, and in how
    many seconds a rate limit gives a held task a token (None: no task waits for one)."""
    codec = _codec()
    tasks: list[Task] = []
    retry: float | None = None
    held = False
    at = _t(now)
    for handler in sorted(limited):
        if free - len(tasks) <= 0:
            break
        limits = limited[handler]
        want = free - len(tasks)
        p = {"handler": handler}
        running: dict[str, int] = {}
        if limits.concurrency is not None:
            conn.execute(_Q["forget_slots"], p)
            running = {k: n for k, n in conn.execute(_Q["limit_running"], p)}
        tokens: dict[str, float] = {}
        if limits.rate is not None:
            for key, left, when in conn.execute(_Q["limit_buckets"], p):
                elapsed = (now - datetime.fromisoformat(when)).total_seconds()
                tokens[key] = refill(limits, left, elapsed)
        # Without a key, what holds one task back holds every later one: `want` is enough.
        scan = want if limits.limit_key is None else min(want + 500, 2000)
        rows = conn.execute(_Q["limit_candidates"], {**p, "now": at, "scan": scan}).fetchall()
        candidates = [
            Candidate(tid, key_of(limits, orjson.loads(args)), progress)
            for tid, args, progress in rows
        ]
        picked = pick(limits, candidates, running, tokens, want)
        expires = _t(now + timedelta(seconds=lease_seconds))
        for tid, key in picked.chosen:
            row = conn.execute(
                _Q["claim_id"], {"id": tid, "worker": worker_id, "expires": expires, "now": at}
            ).fetchone()
            if row is None:
                continue
            tasks.append(task_from_row(row, codec))
            if limits.concurrency is not None:
                conn.execute(_Q["insert_slot"], {**p, "id": tid, "key": key})
        if limits.rate is not None:
            conn.executemany(
                _Q["save_bucket"],
                [{**p, "key": k, "tokens": v, "now": at} for k, v in picked.tokens.items()],
            )
        if picked.held:
            held = True
            conn.executemany(
                _Q["hold_note"],
                [{"id": tid, "note": note, "now": at} for tid, note in picked.held.items()],
            )
        if picked.retry_in is not None:
            retry = picked.retry_in if retry is None else min(retry, picked.retry_in)
    return tasks, held, retry


@guarded
class SQLiteSchedules:
    """The schedule and limit operations of SQLiteStore."""

    _wakeups: Wakeups

    async def _write(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        raise NotImplementedError  # SQLiteStore's

    async def _read(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        raise NotImplementedError  # SQLiteStore's

    def _unavailable(self, exc: BaseException) -> str | None:
        raise NotImplementedError  # SQLiteStore's

    async def schedules(self) -> list[Schedule]:
        codec = _codec()
        rows = await self._read(lambda c: c.execute(_Q["list_schedules"]).fetchall())
        return [schedule_from_row(r, codec) for r in rows]

    async def schedule(self, name: str) -> Schedule | None:
        codec = _codec()
        row = await self._read(lambda c: c.execute(_Q["get_schedule"], {"name": name}).fetchone())
        return schedule_from_row(row, codec) if row else None

    async def create_schedule(self, schedule: Schedule) -> Schedule:
        codec = _codec()
        params = schedule_params(schedule, codec)
        row = await self._write(lambda c: c.execute(_Q["insert_schedule"], params).fetchone())
        if row is None:
            raise ConflictError(f"a schedule named {schedule.name} exists")
        return schedule_from_row(row, codec)

    async def save_schedule(
        self, schedule: Schedule, *, expected_version: int | None = None
    ) -> Schedule:
        codec = _codec()
        params = schedule_params(schedule, codec)

        def run(conn: sqlite3.Connection) -> Any:
            if expected_version is None:
                return conn.execute(_Q["upsert_schedule"], params).fetchone()
            row = conn.execute(
                _Q["update_schedule"], {**params, "version": expected_version}
            ).fetchone()
            if row is None:
                exists = conn.execute(_Q["get_schedule"], params).fetchone()
                if exists is None:
                    raise ScheduleNotFound(schedule.name)
                raise ConflictError(
                    f"schedule {schedule.name} changed meanwhile (version {exists[-1]}, "
                    f"not {expected_version})"
                )
            return row

        return schedule_from_row(await self._write(run), codec)

    async def delete_schedule(self, name: str) -> bool:
        def run(conn: sqlite3.Connection) -> bool:
            gone = conn.execute(_Q["delete_schedule"], {"name": name}).rowcount
            conn.execute(_Q["delete_firings"], {"name": name})
            return bool(gone)

        return await self._write(run)

    async def due_schedules(self, now: datetime) -> list[Schedule]:
        codec = _codec()
        rows = await self._read(
            lambda c: c.execute(_Q["due_schedules"], {"now": _t(now)}).fetchall()
        )
        return [schedule_from_row(r, codec) for r in rows]

    async def fire_schedule(
        self,
        schedule: Schedule,
        firings: Sequence[tuple[datetime, Task | None]],
        next_fire: datetime,
        now: datetime,
    ) -> list[Task]:
        codec = _codec()
        assert schedule.next_fire is not None
        name = schedule.name

        def run(conn: sqlite3.Connection) -> list[Task]:
            moved = conn.execute(
                _Q["advance_schedule"],
                {
                    "name": name,
                    "next": _t(next_fire),
                    "expected": _t(schedule.next_fire),  # type: ignore[arg-type]
                    "now": _t(now),
                },
            ).rowcount
            if not moved:
                return []
            stored: list[Task] = []
            last: tuple[datetime, Task] | None = None
            for when, task in firings:
                recorded = conn.execute(
                    _Q["insert_firing"],
                    {
                        "name": name,
                        "fire_time": _t(when),
                        "task_id": task.id if task else None,
                        "now": _t(now),
                    },
                ).rowcount
                if recorded and task is not None:
                    conn.execute(_Q["insert_task"], insert_params(task, codec))
                    stored.append(task)
                    last = (when, task)
            if last is not None:
                conn.execute(
                    _Q["schedule_fired"],
                    {"name": name, "last_fire": _t(last[0]), "last_task_id": last[1].id},
                )
            return stored

        stored = await self._write(run)
        if stored:
            self._wakeups.notify()
        return stored

    async def firings(self, name: str) -> list[tuple[datetime, str | None]]:
        rows = await self._read(lambda c: c.execute(_Q["firings"], {"name": name}).fetchall())
        return [(datetime.fromisoformat(t), tid) for t, tid in rows]

    async def handler_limits(self) -> list[HandlerLimits]:
        rows = await self._read(lambda c: c.execute(_Q["list_limits"]).fetchall())
        return [limits_from_row(r) for r in rows]

    async def save_limits(self, limits: HandlerLimits) -> None:
        p = {"handler": limits.handler}

        def run(conn: sqlite3.Connection) -> None:
            if limits.empty:
                for q in ("delete_limits", "delete_limit_state", "delete_limit_buckets"):
                    conn.execute(_Q[q], p)
            else:
                conn.execute(_Q["upsert_limits"], {**limits_params(limits), "now": _t(_now())})

        await self._write(run)


def _now() -> datetime:
    return datetime.now(UTC)
