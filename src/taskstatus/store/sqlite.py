"""The embedded store: one SQLite file in WAL mode.

Writes run on one thread, each in a ``BEGIN IMMEDIATE`` transaction, which also serializes the
writers of several processes sharing the file; reads run on a small pool of reader connections,
which WAL never blocks. The sqlite3 module releases the GIL while SQLite works, so the event loop
keeps serving while a statement runs.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import os
import sqlite3
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any, TypeVar

import orjson

from taskstatus.errors import NoDatabase
from taskstatus.limits_policy import LimitWaits
from taskstatus.model import (
    CompletionStatus,
    Task,
    TaskDefinition,
    TaskState,
    cancel,
    sources,
)
from taskstatus.query import Expr, TaskField, TaskQuery
from taskstatus.store.base import (
    ApiClient,
    ConflictError,
    DeleteResult,
    EventCallback,
    Heartbeat,
    NotFound,
    Outcome,
    Page,
    Progress,
    Recovered,
    StoreLimits,
    StoreUnavailable,
    TaskEvent,
)
from taskstatus.store.edge import guarded
from taskstatus.store.leases import lost_lease_message, sort_heartbeat
from taskstatus.store.rows import (
    Codec,
    changed_columns,
    client_from_row,
    client_params,
    definition_from_row,
    definition_params,
    message_params,
    result_params,
    task_from_row,
)
from taskstatus.store.sqlfiles import load_migrations, load_queries
from taskstatus.store.sqlfilter import COLUMNS, SqlDialect, compile_order, compile_where
from taskstatus.store.sqlite_created import created_event, insert_params
from taskstatus.store.sqlite_schedules import (
    SQLiteSchedules,
    claim_limited,
    limited_handlers,
)
from taskstatus.store.wakeups import Wakeups

T = TypeVar("T")

log = logging.getLogger("taskstatus.store")
_Q = load_queries("sqlite")


def _time_in(value: datetime) -> str:
    return value.astimezone(UTC).isoformat(timespec="microseconds")


def _time_out(value: str) -> datetime:
    return datetime.fromisoformat(value)


def _news_since(
    conn: sqlite3.Connection, after: tuple[int, int, int]
) -> tuple[list[Any], list[Any], tuple[int, int, int]]:
    """The events after the event id after[0], the tasks after the rowid after[1] (or after
    the lowest a purge after after[2] left: the next ids may be the purged ones, 0007), and
    the cursor that follows."""
    conn.execute("BEGIN")  # one snapshot for all
    try:
        last_purge, floor, event_floor = conn.execute(
            _Q["purges_since"], {"after": after[2]}
        ).fetchone()
        since_id = after[0] if event_floor is None else min(after[0], event_floor)
        since = after[1] if floor is None else min(after[1], floor)
        events = conn.execute(_Q["events_since"], {"after": since_id}).fetchall()
        tasks = conn.execute(_Q["tasks_since"], {"after": since}).fetchall()
    finally:
        conn.execute("COMMIT")
    cursor = (
        max([since_id, *(row[2] for row in events)]),
        max([since, *(row[1] for row in tasks)]),
        after[2] if last_purge is None else last_purge,
    )
    return events, tasks, cursor


def _json_in(value: Any) -> str:
    return orjson.dumps(value, option=orjson.OPT_SORT_KEYS).decode()


CODEC = Codec(
    time_in=_time_in,
    time_out=datetime.fromisoformat,
    json_in=_json_in,
    json_out=orjson.loads,
)
DIALECT = SqlDialect(
    placeholder="?",
    encode_time=_time_in,
    encode_json=_json_in,
    json_placeholder="json(?)",
    like="LIKE",
)


# How often an idle worker looks whether another process changed the file.
DATA_VERSION_POLL = 0.01
# How often a process with event subscribers looks whether another process wrote events
# (a commit of this process is seen at once).
EVENT_POLL = 0.005
# How many decoded tasks `get` keeps to hand out again while they have not changed.
RECENT_TASKS = 4096
# SQLite's primary result codes that mean "the database cannot be used now", not a bug:
# BUSY and LOCKED (another connection holds the lock past the busy timeout), NOMEM, IOERR,
# FULL (the disk or the file system is full), CANTOPEN, PROTOCOL.
UNAVAILABLE_CODES = {
    5: "locked",
    6: "locked",
    7: "out of memory",
    10: "disk I/O error",
    13: "disk full",
    14: "cannot open the file",
    15: "locking protocol",
}


def _now() -> datetime:
    return datetime.now(UTC)


def _data_version(conn: sqlite3.Connection) -> int:
    return int(conn.execute("PRAGMA data_version").fetchone()[0])


def owner_only(path: str) -> None:
    """Create the database file readable and writable by its owner only: it holds the token
    signing key (SQLite gives its -wal and -shm files the database file's mode). An existing
    file, or -wal/-shm, that others may read is left as it is, with a warning."""
    try:
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        pass
    else:
        os.close(fd)
    for name in (path, f"{path}-wal", f"{path}-shm"):
        try:
            mode = os.stat(name).st_mode & 0o777
        except FileNotFoundError:
            continue
        if mode & 0o077:
            log.warning(
                "%s has mode %03o: others on this host can read it, and with it the key that "
                "signs access tokens; run: chmod 600 %s",
                name,
                mode,
                name,
            )


def path_of(url: str) -> str:
    """``sqlite:///relative.db``, ``sqlite:////abs/path.db`` or a plain path -> a file path."""
    if url.startswith("sqlite:///"):
        return url[len("sqlite:///") :]
    if url.startswith("sqlite://"):
        raise ValueError(f"not a SQLite URL (use sqlite:///path/to/file.db): {url}")
    return url


def _statements(script: str) -> list[str]:
    """Split a migration script into statements, the way SQLite's own parser sees them."""
    out, buf = [], ""
    for line in script.splitlines(keepends=True):
        buf += line
        if sqlite3.complete_statement(buf):
            if buf.strip():
                out.append(buf.strip())
            buf = ""
    if buf.strip() and not all(
        ln.strip().startswith("--") or not ln.strip() for ln in buf.splitlines()
    ):
        raise ValueError(f"incomplete statement at the end of a migration: {buf.strip()[:80]}")
    return out


@guarded
class SQLiteStore(SQLiteSchedules):
    """The Store protocol on one SQLite file (see taskstatus.store.base for the contract).

    A write waits at most `busy_timeout` in all, queueing behind this process's other
    writes included; past it, or on a full disk or an I/O error, an operation raises
    StoreUnavailable (store/edge.py) and what was stored before stays stored."""

    def __init__(
        self,
        url: str,
        *,
        synchronous: str = "NORMAL",
        readers: int = 2,
        limits: StoreLimits | None = None,
        must_exist: bool = False,
    ) -> None:
        self.url = url
        self._must_exist = must_exist
        self.path = os.path.abspath(path_of(url))
        self.limits = limits or StoreLimits()
        self._synchronous = synchronous
        self._busy_timeout = self.limits.busy_timeout
        self._local = threading.local()
        self._connections: list[sqlite3.Connection] = []
        self._connections_lock = threading.Lock()
        self._writer = ThreadPoolExecutor(1, thread_name_prefix="sqlite-writer")
        self._readers = ThreadPoolExecutor(readers, thread_name_prefix="sqlite-reader")
        self._wakeups = Wakeups.for_key(self.path)
        self._opened = False
        self._recent: dict[str, tuple[tuple[int, str | None], Task]] = {}
        self._event_callbacks: dict[int, EventCallback] = {}
        self._event_watch: asyncio.Task[None] | None = None
        self._event_poke: asyncio.Event | None = None
        self._limit_waits = LimitWaits()

    # --- plumbing -----------------------------------------------------------------------------

    def _conn(self) -> sqlite3.Connection:
        conn: sqlite3.Connection | None = getattr(self._local, "conn", None)
        if conn is None:
            conn = sqlite3.connect(
                self.path,
                isolation_level=None,
                check_same_thread=False,
                timeout=self._busy_timeout,
                cached_statements=256,
            )
            conn.execute(f"PRAGMA synchronous = {self._synchronous}")
            conn.execute("PRAGMA temp_store = MEMORY")
            conn.execute("PRAGMA cache_size = -65536")
            self._local.conn = conn
            with self._connections_lock:
                self._connections.append(conn)
        return conn

    def _in_tx(
        self, fn: Callable[[sqlite3.Connection], T], immediate: bool, deadline: float | None = None
    ) -> T:
        conn = self._conn()
        if deadline is not None:
            # A write queued behind others waits only for what is left of its busy timeout.
            left = deadline - time.monotonic()
            if left <= 0:
                raise StoreUnavailable.because(
                    f"locked: writes queued past the busy timeout of {self._busy_timeout:g} s"
                )
            wait_ms = max(1, int(min(left, self._busy_timeout) * 1000))
            if abs(wait_ms - getattr(self._local, "busy_ms", 0)) > 50:  # most writes: as is
                conn.execute(f"PRAGMA busy_timeout = {wait_ms:d}")
                self._local.busy_ms = wait_ms
        conn.execute("BEGIN IMMEDIATE" if immediate else "BEGIN")
        try:
            result = fn(conn)
            conn.execute("COMMIT")
        except BaseException:
            # A failed COMMIT (a full disk, say) may leave the transaction open, or SQLite
            # may have rolled it back already.
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            raise
        return result

    async def _write(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        loop = asyncio.get_running_loop()
        deadline = time.monotonic() + self._busy_timeout
        try:
            return await loop.run_in_executor(self._writer, self._in_tx, fn, True, deadline)
        finally:
            if self._event_poke is not None:  # followers of this process's events look now
                self._event_poke.set()

    async def _read(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._readers, self._in_tx, fn, False)

    def _point(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        """A one-statement read by key, on the calling (event loop) thread's own connection.
        In WAL mode readers never wait for writers, and such a read takes tens of
        microseconds; a hop to a reader thread would cost several times that."""
        return fn(self._conn())

    @staticmethod
    def _task(conn: sqlite3.Connection, task_id: str, include_deleted: bool) -> Task | None:
        row = conn.execute(
            _Q["get_task"], {"id": task_id, "include_deleted": include_deleted}
        ).fetchone()
        return task_from_row(row, CODEC) if row else None

    # --- lifecycle of the store -------------------------------------------------------------------

    def _unavailable(self, exc: BaseException) -> str | None:
        """Why the file cannot be used now, if `exc` says so (store/edge.py)."""
        if isinstance(exc, sqlite3.OperationalError):
            code = getattr(exc, "sqlite_errorcode", None)
            if code is not None and code & 0xFF in UNAVAILABLE_CODES:
                what = UNAVAILABLE_CODES[code & 0xFF]
                if what == "locked":
                    what = f"locked by another connection past {self._busy_timeout:g} s"
                return f"SQLite {what}: {self.path}"
        return None

    async def open(self) -> None:
        if self._opened:
            return
        loop = asyncio.get_running_loop()
        await loop.run_in_executor(self._writer, self._migrate)
        self._opened = True

    def _migrate(self) -> None:
        if self._must_exist and not os.path.exists(self.path):
            raise NoDatabase(self.path)
        directory = os.path.dirname(self.path)
        if directory:
            os.makedirs(directory, exist_ok=True)
        owner_only(self.path)
        conn = self._conn()
        conn.execute("PRAGMA journal_mode = WAL")
        for migration in load_migrations("sqlite"):
            conn.execute("BEGIN IMMEDIATE")  # the lock makes nodes that start together take turns
            try:
                (current,) = conn.execute("PRAGMA user_version").fetchone()
                if current < migration.version:
                    for statement in _statements(migration.sql):
                        conn.execute(statement)
                    conn.execute(f"PRAGMA user_version = {migration.version:d}")
            except BaseException:
                conn.execute("ROLLBACK")
                raise
            conn.execute("COMMIT")

    async def close(self) -> None:
        self._event_callbacks.clear()
        if self._event_watch is not None:
            self._event_watch.cancel()
            await asyncio.gather(self._event_watch, return_exceptions=True)
            self._event_watch = None
        self._wakeups.close()
        self._writer.shutdown(wait=True)
        self._readers.shutdown(wait=True)
        with self._connections_lock:
            for conn in self._connections:
                conn.close()
            self._connections.clear()

    async def ping(self) -> None:
        self._point(lambda conn: conn.execute("SELECT 1").fetchone())

    # --- tasks ----------------------------------------------------------------------------------

    async def create(self, task: Task) -> Task:
        return (await self.create_many([task]))[0]

    async def create_many(self, tasks: Sequence[Task]) -> list[Task]:
        if not tasks:
            return []

        def run(conn: sqlite3.Connection) -> list[Task]:
            conn.executemany(_Q["insert_task"], [insert_params(t, CODEC) for t in tasks])
            messages = [message_params(t.id, m, CODEC) for t in tasks for m in t.messages]
            if messages:
                conn.executemany(_Q["insert_message"], messages)
            out = []
            for t in tasks:  # an idempotency key already in use yields the task that has it
                if t.idempotency_key is None:
                    out.append(t)
                    continue
                row = conn.execute(
                    _Q["get_by_idempotency_key"],
                    {"launcher": t.launcher, "key": t.idempotency_key},
                ).fetchone()
                out.append(task_from_row(row, CODEC))
            return out

        created = await self._write(run)
        self._wakeups.notify()
        return created

    async def get(self, task_id: str, *, include_deleted: bool = False) -> Task | None:
        return self._point(lambda conn: self._recent_task(conn, task_id, include_deleted))

    def _recent_task(
        self, conn: sqlite3.Connection, task_id: str, include_deleted: bool
    ) -> Task | None:
        """The task, decoded again only if it changed since this process last read it: a
        probe of its version (clients poll tasks that mostly have not changed). The same
        Task object comes back while nothing changed."""
        probe = conn.execute(_Q["probe_task"], {"id": task_id}).fetchone()
        if probe is None:
            return None
        version, deleted_at, defined = probe
        if deleted_at is not None and not include_deleted:
            return None
        key = (version, defined)
        seen = self._recent.get(task_id)
        if seen is not None and seen[0] == key:
            return seen[1]
        task = self._task(conn, task_id, include_deleted=True)
        if task is not None:
            if len(self._recent) >= RECENT_TASKS:
                self._recent.clear()
            self._recent[task_id] = (key, task)  # a newer row under an older key: re-read next time
        return task

    async def query(self, query: TaskQuery) -> Page:
        where, params = compile_where(query.where, DIALECT)
        if not query.include_deleted:
            where = f"({where}) AND tasks.deleted_at IS NULL"
        order = compile_order(query.sort)
        limit = -1 if query.limit is None else query.limit
        select = (
            f"SELECT {_Q['columns']} FROM tasks WHERE {where} ORDER BY {order} LIMIT ? OFFSET ?"
        )

        def run(conn: sqlite3.Connection) -> Page:
            rows = conn.execute(select, [*params, limit, query.offset]).fetchall()
            total = None
            if query.count and query.count_cap is not None:
                (total,) = conn.execute(
                    f"SELECT count(*) FROM (SELECT 1 FROM tasks WHERE {where} LIMIT ?)",
                    [*params, query.count_cap],
                ).fetchone()
            elif query.count:
                (total,) = conn.execute(
                    f"SELECT count(*) FROM tasks WHERE {where}", params
                ).fetchone()
            return Page([task_from_row(r, CODEC) for r in rows], total)

        return await self._read(run)

    async def update(
        self,
        task_id: str,
        change: Callable[[Task], Task],
        *,
        expected_version: int | None = None,
    ) -> Task:
        def run(conn: sqlite3.Connection) -> Task:
            old = self._task(conn, task_id, include_deleted=False)
            if old is None:
                raise NotFound(task_id)
            if expected_version is not None and old.version != expected_version:
                raise ConflictError(
                    f"task {task_id} is at version {old.version}, not {expected_version}"
                )
            new = change(old)
            return self._store_change(conn, old, new)

        # BEGIN IMMEDIATE holds the write lock from the read to the write: nobody can slip in.
        return await self._write(run)

    @staticmethod
    def _store_change(conn: sqlite3.Connection, old: Task, new: Task) -> Task:
        columns = changed_columns(old, new, CODEC)
        added = new.messages[len(old.messages) :]
        if not columns and not added:
            return old
        columns["version"] = old.version + 1
        assignments = ", ".join(f"{c} = :{c}" for c in columns)
        cursor = conn.execute(
            f"UPDATE tasks SET {assignments} WHERE id = :_id AND version = :_version",
            {**columns, "_id": old.id, "_version": old.version},
        )
        if cursor.rowcount != 1:
            raise ConflictError(f"task {old.id} changed during the update")
        if added:
            conn.executemany(
                _Q["insert_message"], [message_params(old.id, m, CODEC) for m in added]
            )
        return replace(new, version=old.version + 1)

    async def tally(self, query: TaskQuery, field: TaskField) -> dict[Any, int]:
        where, params = compile_where(query.where, DIALECT)
        if not query.include_deleted:
            where = f"({where}) AND tasks.deleted_at IS NULL"
        column = COLUMNS[field]
        limit = -1 if query.count_cap is None else query.count_cap
        select = (
            f"SELECT value, count(*) FROM (SELECT {column} AS value FROM tasks WHERE {where}"
            " LIMIT ?) GROUP BY value"
        )

        def run(conn: sqlite3.Connection) -> dict[Any, int]:
            return {v: n for v, n in conn.execute(select, [*params, limit]).fetchall()}

        return await self._read(run)

    async def finished_per_minute(
        self, where: Expr | None, since: datetime
    ) -> list[tuple[datetime, CompletionStatus, int]]:
        sql_where, params = compile_where(where, DIALECT)
        select = (
            "SELECT substr(tasks.completed, 1, 16), tasks.completion_status, count(*) FROM tasks"
            f" WHERE tasks.completed >= ? AND tasks.deleted_at IS NULL AND ({sql_where})"
            " GROUP BY 1, 2"
        )

        def run(conn: sqlite3.Connection) -> list[tuple[datetime, CompletionStatus, int]]:
            rows = conn.execute(select, [_time_in(since), *params]).fetchall()
            return [
                (datetime.fromisoformat(m).replace(tzinfo=UTC), CompletionStatus(s), n)
                for m, s, n in rows
                if s is not None
            ]

        return await self._read(run)

    async def children(self, task_id: str) -> list[Task]:
        def run(conn: sqlite3.Connection) -> list[Task]:
            rows = conn.execute(_Q["children"], {"id": task_id}).fetchall()
            return [task_from_row(r, CODEC) for r in rows]

        return await self._read(run)

    async def delete(self, task_id: str, *, force: bool, now: datetime) -> DeleteResult:
        def run(conn: sqlite3.Connection) -> DeleteResult:
            root = self._task(conn, task_id, include_deleted=False)
            if root is None:
                raise NotFound(task_id)
            kids = [task_from_row(r, CODEC) for r in conn.execute(_Q["children"], {"id": task_id})]
            if kids and not force:
                return DeleteResult(deleted=[], blocked_by=kids)
            tree = [task_from_row(r, CODEC) for r in conn.execute(_Q["tree"], {"id": task_id})]
            for task in tree:
                gone = cancel(task, now) if task.pending else task
                self._store_change(conn, task, replace(gone, deleted_at=now, modified=now))
            return DeleteResult(deleted=[t.id for t in tree])

        return await self._write(run)

    async def purge(self, before: datetime) -> int:
        def run(conn: sqlite3.Connection) -> int:
            params = {"before": _time_in(before)}
            conn.execute(_Q["purge_messages"], params)
            purged: int = conn.execute(_Q["purge_tasks"], params).rowcount
            if purged:
                conn.execute(_Q["purged"])
                conn.execute(_Q["forget_purges"])
            return purged

        return await self._write(run)

    # --- workers --------------------------------------------------------------------------------

    async def claim(
        self, worker_id: str, limit: int, lease_seconds: float, handlers: Sequence[str]
    ) -> list[Task]:
        if limit <= 0 or not handlers:
            return []

        def run(conn: sqlite3.Connection) -> tuple[list[Task], float | None]:
            now = _now()
            limited = limited_handlers(conn, handlers)  # theirs: claim_limited, below
            plain = [h for h in handlers if h not in limited]
            rows = conn.execute(
                _Q["claim"],
                {
                    "worker": worker_id,
                    "expires": _time_in(now + timedelta(seconds=lease_seconds)),
                    "now": _time_in(now),
                    "handlers": _json_in(plain),
                    "limit": limit,
                },
            ).fetchall()
            tasks = [task_from_row(r, CODEC) for r in rows]
            if not limited or len(tasks) >= limit:
                return tasks, None
            more, held, retry = claim_limited(
                conn, limited, worker_id, limit - len(tasks), lease_seconds, now
            )
            self._limit_waits.claimed(more, held, retry)
            return tasks + more, retry

        tasks, _ = await self._write(run)
        tasks.sort(key=lambda t: (-t.priority, t.run_at or t.created))
        return tasks

    async def heartbeat(
        self, worker_id: str, task_ids: Sequence[str], lease_seconds: float
    ) -> Heartbeat:
        if not task_ids:
            return Heartbeat()
        ids = _json_in(list(task_ids))

        def run(conn: sqlite3.Connection) -> Heartbeat:
            expires = _time_in(_now() + timedelta(seconds=lease_seconds))
            conn.execute(_Q["extend_leases"], {"expires": expires, "worker": worker_id, "ids": ids})
            states = {
                row[0]: (row[1], row[2]) for row in conn.execute(_Q["lease_states"], {"ids": ids})
            }
            return sort_heartbeat(worker_id, task_ids, states)

        return await self._write(run)

    async def report(self, worker_id: str, reports: Sequence[Progress]) -> None:
        if not reports:
            return

        def run(conn: sqlite3.Connection) -> None:
            now = _time_in(_now())
            conn.executemany(
                _Q["report"],
                [
                    {
                        "id": r.task_id,
                        "worker": worker_id,
                        "progress": r.progress,
                        "percent_complete": r.percent_complete,
                        **result_params(r.attributes, r.returns, CODEC),
                        "now": now,
                        "attempt": r.attempt,
                    }
                    for r in reports
                ],
            )
            messages = [
                {**message_params(r.task_id, m, CODEC), "worker": worker_id, "attempt": r.attempt}
                for r in reports
                for m in r.messages
            ]
            if messages:
                conn.executemany(_Q["insert_message_if_leased"], messages)

        await self._write(run)

    async def finish(self, worker_id: str, outcomes: Sequence[Outcome]) -> set[str]:
        if not outcomes:
            return set()

        def run(conn: sqlite3.Connection) -> set[str]:
            now = _time_in(_now())
            held = {
                task_id: (state, attempts)
                for task_id, state, attempts in conn.execute(
                    _Q["held_states"],
                    {"ids": _json_in([o.task_id for o in outcomes]), "worker": worker_id},
                )
            }
            # One check per batch, in the write transaction: the lifecycle allows the outcome,
            # and the task is still at the attempt that ran (a stale run never overwrites).
            accepted = [
                o
                for o in outcomes
                if o.task_id in held
                and TaskState(held[o.task_id][0]) in sources(o.state)
                and o.attempt in (None, held[o.task_id][1])
            ]
            # the first outcome of a task is the one stored (a second finds its lease gone)
            rows = {o.task_id: _finish_row(o) for o in reversed(accepted)}
            conn.execute(
                _Q["finish"],
                {"outcomes": _json_in(list(rows.values())), "worker": worker_id, "now": now},
            )
            messages = [message_params(o.task_id, m, CODEC) for o in accepted for m in o.messages]
            if messages:
                conn.executemany(_Q["insert_message"], messages)
            return {o.task_id for o in accepted}

        done = await self._write(run)
        freed = self._limit_waits.ended([o.task_id for o in outcomes])  # a limited slot
        if freed or any(o.state is TaskState.QUEUED for o in outcomes):
            self._wakeups.notify()
        return done

    async def release(self, worker_id: str, task_ids: Sequence[str]) -> None:
        if not task_ids:
            return
        params = {"worker": worker_id, "ids": _json_in(list(task_ids))}

        def run(conn: sqlite3.Connection) -> None:
            now = _time_in(_now())
            conn.execute(_Q["release"], {**params, "now": now})
            conn.execute(_Q["release_cancelled"], {**params, "now": now})

        await self._write(run)
        self._wakeups.notify()

    async def recover(self, grace: float = 0.0) -> Recovered:
        def run(conn: sqlite3.Connection) -> Recovered:
            now = _now()
            params = {
                "now": _time_in(now),
                "expired_before": _time_in(now - timedelta(seconds=grace)),
            }
            requeued = conn.execute(_Q["recover_requeue"], params).fetchall()
            dead = conn.execute(_Q["recover_dead"], params).fetchall()
            cancelled = conn.execute(_Q["recover_cancelled"], params).fetchall()
            notes = [
                message_params(tid, lost_lease_message(attempts, most, fate), CODEC)
                for fate, rows in (("requeued", requeued), ("dead", dead), ("cancelled", cancelled))
                for tid, attempts, most in rows
            ]
            if notes:
                conn.executemany(_Q["insert_message"], notes)
            return Recovered(
                requeued=[r[0] for r in requeued],
                dead=[r[0] for r in dead],
                cancelled=[r[0] for r in cancelled],
            )

        recovered = await self._write(run)
        if recovered.requeued:
            self._wakeups.notify()
        return recovered

    async def wait_for_work(self, timeout: float) -> None:
        """A submit in this process wakes at once; one in another process (a separate worker
        or API node on the same file) within DATA_VERSION_POLL: SQLite's data_version changes
        when another connection commits, and reading it costs a few microseconds."""
        deadline = time.monotonic() + self._limit_waits.timeout(timeout)
        version = self._point(_data_version)
        while (left := deadline - time.monotonic()) > 0:
            if await self._wakeups.wait(min(left, DATA_VERSION_POLL)):
                return
            if self._point(_data_version) != version:
                return

    # --- events -------------------------------------------------------------------------------

    async def events(self, cursors: Mapping[str, int], limit: int = 1000) -> list[TaskEvent]:
        def run(conn: sqlite3.Connection) -> list[TaskEvent]:
            # seq 1, `created`, is in the task's row (0007; stored for older tasks)
            from_start = [task_id for task_id, after in cursors.items() if after < 1]
            created = (
                {
                    row[0]: row[1:]
                    for row in conn.execute(_Q["created_events"], {"ids": _json_in(from_start)})
                }
                if from_start and limit > 0
                else {}
            )
            out: list[TaskEvent] = []
            for task_id, after in cursors.items():
                first = created.get(task_id)
                if first is not None:
                    out.append(created_event(task_id, *first))
                out.extend(
                    TaskEvent(
                        row[0], row[1], row[2], row[3], _time_out(row[4]), orjson.loads(row[5])
                    )
                    for row in conn.execute(
                        _Q["task_events"],
                        {"id": task_id, "after": after, "limit": limit - (first is not None)},
                    )
                )
            return out

        return self._point(run)  # key lookups: as cheap as `get`

    def on_events(self, callback: EventCallback) -> Callable[[], None]:
        """Commits of this process are seen when they return; those of other processes
        within EVENT_POLL, by SQLite's data_version (a read of shared memory): then the
        events after the last id seen say which tasks have news."""
        key = id(callback)
        self._event_callbacks[key] = callback
        if self._event_watch is None or self._event_watch.done():
            self._event_poke = asyncio.Event()
            # Both now, the version first: a commit from here on changes the version, and its
            # events come after the cursor. (Read when the watch first runs, the version
            # could already count a commit made meanwhile, whose events would then wait for
            # the next commit to be seen.)
            version = self._point(_data_version)
            cursor = self._point(lambda conn: tuple(conn.execute(_Q["last_event_id"]).fetchone()))
            self._event_watch = asyncio.create_task(
                self._watch_events(self._event_poke, version, cursor),
                name="taskstatus event watch",
            )

        def stop() -> None:
            self._event_callbacks.pop(key, None)

        return stop

    async def _watch_events(
        self, poke: asyncio.Event, version: int, cursor: tuple[int, int, int]
    ) -> None:
        """Follows the file: `cursor` is the last event id, task rowid and purge seen (a new
        task has no event row: its `created` is in its own, migration 0007)."""
        while self._event_callbacks:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(EVENT_POLL):
                    await poke.wait()
            poke.clear()
            now = self._point(_data_version)
            if now == version:
                continue
            version = now
            rows, tasks, cursor = self._point(functools.partial(_news_since, after=cursor))
            if not rows and not tasks:
                continue
            firsts = {task_id: 1 for task_id, _ in tasks}
            for task_id, first, _ in rows:
                firsts[task_id] = min(first, firsts.get(task_id, first))
            news = list(firsts.items())
            for callback in list(self._event_callbacks.values()):
                callback(news)
        self._event_poke = None

    # --- definitions, clients, settings -----------------------------------------------------

    async def save_definitions(self, definitions: Sequence[TaskDefinition]) -> None:
        if not definitions:
            return
        now = _now()
        rows = [definition_params(d, CODEC, now) for d in definitions]
        await self._write(lambda conn: conn.executemany(_Q["save_definition"], rows))

    async def definition(self, name: str) -> TaskDefinition | None:
        def run(conn: sqlite3.Connection) -> TaskDefinition | None:
            row = conn.execute(_Q["get_definition"], {"name": name}).fetchone()
            return definition_from_row(row, CODEC) if row else None

        return self._point(run)

    async def definitions(self) -> list[TaskDefinition]:
        def run(conn: sqlite3.Connection) -> list[TaskDefinition]:
            return [definition_from_row(r, CODEC) for r in conn.execute(_Q["list_definitions"])]

        return await self._read(run)

    async def save_client(self, client: ApiClient) -> None:
        params = client_params(client, CODEC)
        await self._write(lambda conn: conn.execute(_Q["save_client"], params))

    async def client(self, client_id: str) -> ApiClient | None:
        def run(conn: sqlite3.Connection) -> ApiClient | None:
            row = conn.execute(_Q["get_client"], {"id": client_id}).fetchone()
            return client_from_row(row, CODEC) if row else None

        return self._point(run)

    async def clients(self) -> list[ApiClient]:
        def run(conn: sqlite3.Connection) -> list[ApiClient]:
            return [client_from_row(r, CODEC) for r in conn.execute(_Q["list_clients"])]

        return await self._read(run)

    async def revoke_client(self, client_id: str, now: datetime) -> bool:
        params = {"id": client_id, "now": _time_in(now)}
        return await self._write(
            lambda conn: conn.execute(_Q["revoke_client"], params).rowcount == 1
        )

    async def setting(self, key: str, default: Callable[[], str]) -> str:
        def get(conn: sqlite3.Connection) -> str | None:
            row = conn.execute(_Q["get_setting"], {"key": key}).fetchone()
            return None if row is None else str(row[0])

        value = self._point(get)
        if value is not None:
            return value

        def put(conn: sqlite3.Connection) -> str:
            conn.execute(_Q["insert_setting"], {"key": key, "value": default()})
            stored = get(conn)
            assert stored is not None
            return stored

        return await self._write(put)


def _finish_row(o: Outcome) -> list[Any]:
    """An outcome as a row of the finish statement's :outcomes (attributes and returns as
    their stored JSON text)."""
    results = result_params(o.attributes, o.returns, CODEC)
    return [
        o.task_id,
        o.state.value,
        o.completion_status.value if o.completion_status else None,
        o.progress,
        o.percent_complete,
        results["attributes"],
        results["returns"],
        None if o.run_at is None else _time_in(o.run_at),
    ]
