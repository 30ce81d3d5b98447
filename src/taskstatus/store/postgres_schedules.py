"""Schedules and limits on PostgreSQL: PostgresStore's part of the Store protocol for them, and
the limited claim.

A limited claim is one transaction: it locks the handlers' handler_limits rows (so claims of a
limited handler, from any node, take turns there and each counts what the previous one
committed: READ COMMITTED gives every later statement a fresh snapshot), forgets the slots
of tasks that ended, counts the rest, refills the token buckets, picks due tasks in queue
order (taskstatus_pick, locked, SKIP LOCKED), claims those within the limits, and writes the
reason into the progress of those held back. The unlimited claim's pick (taskstatus_due)
leaves limited handlers out, so no claim passes a limit whatever a node believes.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Sequence
from datetime import datetime
from typing import Any

import psycopg
from psycopg.rows import TupleRow
from psycopg_pool import AsyncConnectionPool

from taskstatus.errors import ConflictError
from taskstatus.limits_policy import Candidate, HandlerLimits, LimitWaits, key_of, pick, refill
from taskstatus.model import Task
from taskstatus.schedules import Schedule, ScheduleNotFound
from taskstatus.store.edge import guarded
from taskstatus.store.rows import Codec, task_from_row, task_to_params
from taskstatus.store.schedule_rows import (
    limits_from_row,
    limits_params,
    schedule_from_row,
    schedule_params,
)
from taskstatus.store.sqlfiles import load_queries

__all__ = ["PostgresSchedules"]

Conn = psycopg.AsyncConnection[TupleRow]
# How long a node trusts its list of limited handlers before it reads it again. It only
# decides whether a claim also runs the limited claim: the pick itself reads the table.
LIMITED_TTL = 1.0


def _load() -> dict[str, str]:
    queries = load_queries("postgres")
    columns = queries["schedule_columns"]
    return {name: sql.replace("{schedule_columns}", columns) for name, sql in queries.items()}


_Q = _load()


def _codecs() -> tuple[Codec, Codec]:
    from taskstatus.store.postgres import CODEC, RECORD

    return CODEC, RECORD


@guarded
class PostgresSchedules:
    """The schedule and limit operations of PostgresStore, and its limited claim."""

    _limit_waits: LimitWaits
    _limited: tuple[float, frozenset[str]]

    @property
    def _db(self) -> AsyncConnectionPool[Conn]:
        raise NotImplementedError  # PostgresStore's

    def _transaction(self, begin: str = "BEGIN") -> contextlib.AbstractAsyncContextManager[Conn]:
        raise NotImplementedError  # PostgresStore's

    def _unavailable(self, exc: BaseException) -> str | None:
        raise NotImplementedError  # PostgresStore's

    async def _rows(self, name: str, params: dict[str, Any] | None = None) -> list[TupleRow]:
        async with self._db.connection() as conn:
            cursor = await conn.execute(_Q[name], params)
            return await cursor.fetchall() if cursor.description else []

    # --- schedules ----------------------------------------------------------------------------

    async def schedules(self) -> list[Schedule]:
        codec, _ = _codecs()
        return [schedule_from_row(r, codec) for r in await self._rows("list_schedules")]

    async def schedule(self, name: str) -> Schedule | None:
        codec, _ = _codecs()
        rows = await self._rows("get_schedule", {"name": name})
        return schedule_from_row(rows[0], codec) if rows else None

    async def create_schedule(self, schedule: Schedule) -> Schedule:
        codec, _ = _codecs()
        rows = await self._rows("insert_schedule", schedule_params(schedule, codec))
        if not rows:
            raise ConflictError(f"a schedule named {schedule.name} exists")
        return schedule_from_row(rows[0], codec)

    async def save_schedule(
        self, schedule: Schedule, *, expected_version: int | None = None
    ) -> Schedule:
        codec, _ = _codecs()
        params = schedule_params(schedule, codec)
        if expected_version is None:
            return schedule_from_row((await self._rows("upsert_schedule", params))[0], codec)
        rows = await self._rows("update_schedule", {**params, "version": expected_version})
        if rows:
            return schedule_from_row(rows[0], codec)
        exists = await self.schedule(schedule.name)
        if exists is None:
            raise ScheduleNotFound(schedule.name)
        raise ConflictError(
            f"schedule {schedule.name} changed meanwhile (version {exists.version}, "
            f"not {expected_version})"
        )

    async def delete_schedule(self, name: str) -> bool:
        rows = await self._rows("delete_schedule", {"name": name})
        return bool(rows and rows[0][0])

    async def due_schedules(self, now: datetime) -> list[Schedule]:
        codec, _ = _codecs()
        return [
            schedule_from_row(r, codec) for r in await self._rows("due_schedules", {"now": now})
        ]

    async def fire_schedule(
        self,
        schedule: Schedule,
        firings: Sequence[tuple[datetime, Task | None]],
        next_fire: datetime,
        now: datetime,
    ) -> list[Task]:
        from taskstatus.store.postgres import QUERIES, _doc, _messages

        _, record = _codecs()
        by_id = {t.id: t for _, t in firings if t is not None}
        async with self._transaction() as conn:
            moved = await conn.execute(
                _Q["advance_schedule"],
                {
                    "name": schedule.name,
                    "next": next_fire,
                    "expected": schedule.next_fire,
                    "now": now,
                },
            )
            if not await moved.fetchall():
                return []  # another node fired it (the transaction ends empty)
            cursor = await conn.execute(
                _Q["insert_firings"],
                {
                    "name": schedule.name,
                    "now": now,
                    "times": [when for when, _ in firings],
                    "tasks": [t.id if t else None for _, t in firings],
                },
            )
            recorded = sorted(await cursor.fetchall())
            tasks = [by_id[tid] for _, tid in recorded if tid is not None]
            if tasks:
                rows = [task_to_params(t, record) | {"ord": i} for i, t in enumerate(tasks)]
                await conn.execute(QUERIES["create_tasks"], {"tasks": _doc(rows), **_messages([])})
                last_fire = max(when for when, tid in recorded if tid is not None)
                await conn.execute(
                    _Q["schedule_fired"],
                    {"name": schedule.name, "last_fire": last_fire, "last_task_id": tasks[-1].id},
                )
        return tasks

    async def firings(self, name: str) -> list[tuple[datetime, str | None]]:
        return [(r[0], r[1]) for r in await self._rows("firings", {"name": name})]

    # --- limits -------------------------------------------------------------------------------

    async def handler_limits(self) -> list[HandlerLimits]:
        return [limits_from_row(r) for r in await self._rows("list_limits")]

    async def save_limits(self, limits: HandlerLimits) -> None:
        if limits.empty:
            await self._rows("delete_limits", {"handler": limits.handler})
        else:
            await self._rows("upsert_limits", limits_params(limits))
        self._limited = (0.0, frozenset())  # read again at the next claim

    async def _claim_unlimited(
        self, params: dict[str, Any], handlers: Sequence[str]
    ) -> tuple[list[TupleRow], list[str]]:
        """The claim's one statement (its pick leaves limited handlers out), with the commit
        that does not wait for the disk (PostgresStore._lax); and those of `handlers` that
        have limits, read in the same round trip when this node's list is older than
        LIMITED_TTL."""
        from taskstatus.store.postgres import QUERIES

        read_at, names = self._limited
        listed = None
        async with self._transaction() as conn:
            await conn.execute("SET LOCAL synchronous_commit = off")
            if time.monotonic() - read_at > LIMITED_TTL:
                listed = await conn.execute(_Q["list_limits"])
            cursor = await conn.execute(QUERIES["claim"], params)
        rows = await cursor.fetchall()
        if listed is not None:
            names = frozenset(r[0] for r in await listed.fetchall())
            self._limited = (time.monotonic(), names)
        return rows, sorted(names.intersection(handlers))

    async def _claim_limited(
        self, worker_id: str, free: int, lease_seconds: float, handlers: Sequence[str]
    ) -> list[Task]:
        codec, _ = _codecs()
        tasks: list[Task] = []
        retry: float | None = None
        async with self._transaction() as conn:
            await conn.execute("SET LOCAL synchronous_commit = off")  # as the claim (_lax)
            locked = await (
                await conn.execute(_Q["lock_limits"], {"handlers": handlers})
            ).fetchall()
            for row in locked:
                want = free - len(tasks)
                if want <= 0:
                    break
                limits = limits_from_row(row)
                p: dict[str, Any] = {"handler": limits.handler}
                running: dict[str, int] = {}
                if limits.concurrency is not None:
                    cursor = await conn.execute(_Q["limit_running"], p)
                    running = {k: int(n) for k, n in await cursor.fetchall()}
                tokens: dict[str, float] = {}
                filled_at = None
                if limits.rate is not None:
                    cursor = await conn.execute(_Q["limit_buckets"], p)
                    for k, left, elapsed, filled_at in await cursor.fetchall():
                        if k is not None:
                            tokens[k] = refill(limits, left, float(elapsed))
                # Without a key, what holds one task back holds every later one.
                scan = want if limits.limit_key is None else min(want + 500, 2000)
                cursor = await conn.execute(_Q["limit_candidates"], {**p, "scan": scan})
                found = sorted(await cursor.fetchall(), key=lambda r: int(r[3]))
                candidates = [Candidate(r[0], key_of(limits, r[1]), r[2]) for r in found]
                picked = pick(limits, candidates, running, tokens, want)
                if picked.chosen:
                    cursor = await conn.execute(
                        _Q["claim_ids"],
                        {
                            **p,
                            "worker": worker_id,
                            "lease": lease_seconds,
                            "ids": [tid for tid, _ in picked.chosen],
                            "keys": [key for _, key in picked.chosen],
                            "count": limits.concurrency is not None,
                        },
                    )
                    tasks += [task_from_row(r, codec) for r in await cursor.fetchall()]
                if limits.rate is not None and picked.tokens:
                    await conn.execute(
                        _Q["save_buckets"],
                        {
                            **p,
                            "keys": list(picked.tokens),
                            "tokens": list(picked.tokens.values()),
                            "at": filled_at,
                        },
                    )
                if picked.held:
                    await conn.execute(
                        _Q["hold_notes"],
                        {"ids": list(picked.held), "notes": list(picked.held.values())},
                    )
                if picked.retry_in is not None:
                    retry = picked.retry_in if retry is None else min(retry, picked.retry_in)
        self._limit_waits.claimed(tasks, retry)
        return tasks
