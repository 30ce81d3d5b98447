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

import orjson
import psycopg
from psycopg.rows import TupleRow
from psycopg.types.json import Jsonb
from psycopg_pool import AsyncConnectionPool

from taskstatus.errors import ConflictError
from taskstatus.limits_policy import (
    Candidate,
    HandlerLimits,
    LimitWaits,
    key_of,
    pick_mixed,
    refill,
    waiting_concurrency,
    waiting_rate,
)
from taskstatus.model import Task
from taskstatus.schedules import Schedule, ScheduleNotFound
from taskstatus.store.edge import guarded
from taskstatus.store.rows import Codec, task_to_params
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
# When a node's list was read if it must be read at the next claim. Not 0.0: time.monotonic()
# counts from the machine's boot on Linux, so a list "read at 0.0" looked fresh on a machine up
# for less than the TTL (a CI machine booted minutes before, with the TTL raised in a test).
UNREAD = float("-inf")


_Q = load_queries("postgres")


def _codecs() -> tuple[Codec, Codec]:
    from taskstatus.store.postgres import CODEC, RECORD

    return CODEC, RECORD


@guarded
class PostgresSchedules:
    """The schedule and limit operations of PostgresStore, and its limited claim."""

    _limit_waits: LimitWaits
    _limited: tuple[float, dict[str, HandlerLimits]]

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
        self._limited = (UNREAD, {})  # read again at the next claim

    async def _claim(
        self, worker_id: str, limit: int, lease_seconds: float, handlers: Sequence[str]
    ) -> list[TupleRow]:
        """The claim's task rows. Without limited handlers (as this node last read them, at
        most LIMITED_TTL ago) it is the one statement of before, whose pick leaves limited
        handlers out whatever this node believes, alone in its transaction; when the list is
        due, it is read in the same round trip, in one transaction with the claim. With
        some, one transaction in two round trips: the lock of their limits rows and, after
        it, their counts and buckets and the due tasks of every claimed handler in queue
        order; then the claim of those within the limits, the buckets and the notes of those
        held back."""
        from taskstatus.store.postgres import QUERIES, text_array

        read_at, known = self._limited
        guess = {h: known[h] for h in handlers if h in known}
        plain = {
            "worker": worker_id,
            "lease": lease_seconds,
            "handlers": text_array(handlers),
            "limit": limit,
        }
        if not guess and time.monotonic() - read_at <= LIMITED_TTL:
            # the plain claim and nothing else: its one statement, which sets what `lax` does
            # (postgres.sql), in its own transaction: one message each way, no BEGIN, no COMMIT
            async with self._db.connection() as conn:
                return await (await conn.execute(QUERIES["claim"], plain)).fetchall()
        listed = None
        async with self._transaction() as conn:
            await conn.execute(QUERIES["lax"])  # as PostgresStore._lax
            if time.monotonic() - read_at > LIMITED_TTL:
                listed = await conn.execute(_Q["list_limits"])
            if not guess:
                claimed = await conn.execute(QUERIES["claim"], plain)
            else:
                claimed = await self._claim_within(
                    conn, worker_id, limit, lease_seconds, handlers, guess
                )
        rows = await claimed.fetchall() if claimed is not None else []
        if guess:  # the tasks of limited handlers: their end may free a slot someone waits for
            self._limit_waits.started([r[0] for r in rows if r[1] in guess])
        if listed is not None:
            fresh = {r[0]: limits_from_row(r) for r in await listed.fetchall()}
            self._limited = (time.monotonic(), fresh)
            if set(fresh).intersection(handlers) - set(guess) and len(rows) < limit:
                # limits this node just learnt of: their tasks are claimed now, not later
                rows += await self._claim(worker_id, limit - len(rows), lease_seconds, handlers)
        return rows

    async def _count(self, conn: Conn, limits: HandlerLimits) -> tuple[Any, Any]:
        """Send the reads of a limited handler's running slots and buckets (see `_counted`)."""
        p = {"handler": limits.handler}
        running = await conn.execute(_Q["limit_running"], p) if limits.concurrency else None
        buckets = await conn.execute(_Q["limit_buckets"], p) if limits.rate else None
        return running, buckets

    @staticmethod
    async def _counted(
        limits: HandlerLimits, cursors: tuple[Any, Any]
    ) -> tuple[dict[tuple[str, str], int], dict[tuple[str, str], float], Any]:
        """The running slots and refilled buckets by (handler, key), and the time the
        buckets were read at (which their new contents are stored with)."""
        h, (running_c, buckets_c) = limits.handler, cursors
        running = {(h, k): int(n) for k, n in (await running_c.fetchall() if running_c else [])}
        tokens: dict[tuple[str, str], float] = {}
        filled_at = None
        for k, left, elapsed, at in await buckets_c.fetchall() if buckets_c else []:
            filled_at = at  # the same on every row: the clock read under the lock
            if k is not None:
                tokens[(h, k)] = refill(limits, left, float(elapsed))
        return running, tokens, filled_at

    async def _look(
        self, conn: Conn, handlers: Sequence[str], limits: dict[str, HandlerLimits], scan: int
    ) -> Any:
        """Send the read of the due tasks of `handlers` (see `_candidates`)."""
        keyed = [h for h, x in limits.items() if x.limit_key is not None]
        return await conn.execute(
            _Q["limit_candidates"], {"handlers": list(handlers), "scan": scan, "keyed": keyed}
        )

    @staticmethod
    async def _candidates(cursor: Any, limits: dict[str, HandlerLimits]) -> list[Candidate]:
        rows = sorted(await cursor.fetchall(), key=lambda r: int(r[4]))
        return [
            Candidate(r[0], key_of(limits[r[1]], r[2]) if r[1] in limits else "", r[3], r[1])
            for r in rows
        ]

    async def _reads(
        self, conn: Conn, handlers: Sequence[str], limits: dict[str, HandlerLimits], scan: int
    ) -> tuple[dict[str, Any], list[Candidate]]:
        """Counts, buckets and candidates, sent together: one round trip."""
        sent = {h: await self._count(conn, x) for h, x in sorted(limits.items())}
        look = await self._look(conn, handlers, limits, scan)
        counted = {h: await self._counted(limits[h], c) for h, c in sent.items()}
        return counted, await self._candidates(look, limits)

    async def _claim_within(
        self,
        conn: Conn,
        worker_id: str,
        limit: int,
        lease_seconds: float,
        handlers: Sequence[str],
        guess: dict[str, HandlerLimits],
    ) -> Any:
        """The limited claim, in the transaction of `conn`; the cursor of the claim."""
        locking = await conn.execute(_Q["lock_limits"], {"handlers": sorted(guess)})
        keyless = all(g.limit_key is None for g in guess.values())
        # sent at once with the lock and run after it: each sees what its predecessor left
        if keyless:
            sent = {h: await self._count(conn, x) for h, x in sorted(guess.items())}
            counted = {h: await self._counted(guess[h], c) for h, c in sent.items()}
            candidates: list[Candidate] = []
        else:
            counted, candidates = await self._reads(conn, handlers, guess, limit)
        locked = {r[0]: limits_from_row(r) for r in await locking.fetchall()}
        if set(guess) - set(locked) or any(not locked[h].same(g) for h, g in guess.items()):
            self._limited = (UNREAD, {})  # they changed since this node read them: read again
            keyless = False
            counted, candidates = await self._reads(conn, handlers, locked, limit)
        if keyless:
            return await self._claim_keyless(
                conn, worker_id, limit, lease_seconds, handlers, locked, counted
            )
        running = {k: n for c in counted.values() for k, n in c[0].items()}
        tokens = {k: v for c in counted.values() for k, v in c[1].items()}
        picked = pick_mixed(locked, candidates, running, tokens, limit)
        if picked.waiting_for_slots:
            # Slots of tasks that ended are forgotten only when they are in the way: the
            # count includes them until then, and a claim costs no lookup per slot.
            for h in sorted(picked.waiting_for_slots):
                cursor = await conn.execute(_Q["forget_slots"], {"handler": h})
                running = {k: n for k, n in running.items() if k[0] != h}
                running |= {(h, k): int(n) for k, n in await cursor.fetchall()}
            picked = pick_mixed(locked, candidates, running, tokens, limit)
        if picked.held and len(picked.chosen) < limit and len(candidates) >= limit:
            # held tasks filled the first look: look further (other keys, other handlers)
            look = await self._look(conn, handlers, locked, min(limit + 500, 2000))
            candidates = await self._candidates(look, locked)
            picked = pick_mixed(locked, candidates, running, tokens, limit)
        slotted = [
            c for c in picked.chosen if c.handler in locked and locked[c.handler].concurrency
        ]
        claim = await conn.execute(
            _Q["claim_ids"],
            {
                "worker": worker_id,
                "lease": lease_seconds,
                "ids": [c.id for c in picked.chosen],
                "slot_ids": [c.id for c in slotted],
                "slot_handlers": [c.handler for c in slotted],
                "slot_keys": [c.key for c in slotted],
            },
        )
        for h, x in sorted(locked.items()):
            new = {k: v for (hh, k), v in picked.tokens.items() if hh == h}
            if x.rate is not None and new:
                await conn.execute(
                    _Q["save_buckets"],
                    {
                        "handler": h,
                        "keys": list(new),
                        "tokens": list(new.values()),
                        "at": counted[h][2],
                    },
                )
        if picked.held:
            await conn.execute(
                _Q["hold_notes"], {"ids": list(picked.held), "notes": list(picked.held.values())}
            )
        self._limit_waits.claimed_ids(bool(picked.held), picked.retry_in)
        return claim

    async def _claim_keyless(
        self,
        conn: Conn,
        worker_id: str,
        limit: int,
        lease_seconds: float,
        handlers: Sequence[str],
        locked: dict[str, HandlerLimits],
        counted: dict[str, Any],
    ) -> Any:
        """No limit is split by an argument: each limited handler may start its free slots
        and whole tokens' worth, and the pick and the claim are one statement."""
        allow: list[dict[str, Any]] = []
        held: list[tuple[str, str, int]] = []
        retry: float | None = None
        at = None
        for h, x in sorted(locked.items()):
            running, tokens, filled_at = counted[h]
            n = limit
            if x.concurrency is not None and x.concurrency - running.get((h, ""), 0) < limit:
                # slots of ended tasks are forgotten only when they are in the way
                cursor = await conn.execute(_Q["forget_slots"], {"handler": h})
                running = {(h, k): int(c) for k, c in await cursor.fetchall()}
            if x.concurrency is not None:
                n = min(n, max(0, x.concurrency - running.get((h, ""), 0)))
            have = None
            if x.rate is not None:
                have = tokens.get((h, ""), x.bucket_size)
                n = min(n, int(have))
                at = filled_at
                if n < limit:  # the next token, once these are spent
                    wait = (1.0 - (have - int(have))) / x.rate
                    retry = wait if retry is None else min(retry, wait)
            if n < limit:  # some of its due tasks may wait: they get the reason
                concurrency_bound = x.concurrency is not None and (
                    have is None or x.concurrency - running.get((h, ""), 0) <= int(have)
                )
                note = waiting_concurrency(x, "") if concurrency_bound else waiting_rate(x, "")
                held.append((h, note, limit - n))
            allow.append({"handler": h, "n": n, "slot": x.concurrency is not None, "tokens": have})
        claim = await conn.execute(
            _Q["claim_keyless"],
            {
                "worker": worker_id,
                "lease": lease_seconds,
                "handlers": list(handlers),
                "scan": limit + sum(limit - a["n"] for a in allow),
                "limit": limit,
                "allow": Jsonb(allow, dumps=orjson.dumps),
                "at": at,
            },
        )
        for h, note, n in held:
            await conn.execute(_Q["hold_next"], {"handler": h, "note": note, "n": min(n, 100)})
        self._limit_waits.claimed_ids(bool(held), retry)
        return claim
