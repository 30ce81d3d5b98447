"""The shared store: one PostgreSQL database for many API and worker nodes, through psycopg 3.

PostgreSQL coordinates the nodes: claims lock rows with ``FOR UPDATE SKIP LOCKED`` so claimers
never wait for each other; idle workers sleep on ``LISTEN`` and every write that makes work
(a submit, a retry, a hand-back, a recovery) sends a ``NOTIFY`` in its own transaction; nodes
that start together take turns at the migrations under an advisory lock. Due times and leases
use the database clock, the one clock all nodes share.

Round trips are what a remote database costs, so each operation is one statement where it can
be: batches travel as arrays (``unnest``) and data-modifying CTEs write a task and its messages
together. The few operations with two steps (recover, delete, a counted page) run in pipeline
mode, so BEGIN and COMMIT ride along with the statements. A large batch of plain tasks is
the exception: binary COPY stores it (`_copy_rows`), a few round trips that save the server
parsing it as JSON, about half its work. The SQL is in ``sql/postgres.sql``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
from collections.abc import AsyncIterator, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, date, datetime, timedelta
from typing import Any

import orjson
import psycopg
from psycopg.abc import Params
from psycopg.conninfo import conninfo_to_dict, make_conninfo
from psycopg.rows import TupleRow
from psycopg.types.json import Jsonb, set_json_loads
from psycopg_pool import AsyncConnectionPool, PoolTimeout

from taskstatus.limits_policy import HandlerLimits, LimitWaits
from taskstatus.model import (
    CompletionStatus,
    Message,
    Task,
    TaskDefinition,
    TaskState,
    cancel,
    sources,
)
from taskstatus.query import And, Condition, Expr, Op, TaskField, TaskQuery
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
    StoreError,
    StoreLimits,
    StoreUnavailable,
    TaskEvent,
)
from taskstatus.store.edge import guarded
from taskstatus.store.leases import lost_lease_message, sort_heartbeat
from taskstatus.store.postgres_schedules import UNREAD, PostgresSchedules
from taskstatus.store.rows import (
    TASK_COLUMNS,
    Codec,
    changed_columns,
    client_from_row,
    client_params,
    definition_from_row,
    definition_params,
    message_params,
    result_params,
    returns_to_json,
    task_from_row,
    task_to_params,
)
from taskstatus.store.sqlfiles import load_migrations, load_queries
from taskstatus.store.sqlfilter import COLUMNS, SqlDialect, compile_order, compile_where

__all__ = ["CODEC", "DIALECT", "QUERIES", "PostgresStore", "Statement", "list_statements"]

log = logging.getLogger(__name__)

Conn = psycopg.AsyncConnection[TupleRow]

# The advisory lock key that serializes schema migrations across nodes ("taskmigr" in ASCII).
MIGRATION_LOCK = 0x7461736B6D696772
# How many times `update` applies a change before it gives up (each lost race to another
# writer costs one more read and write).
UPDATE_ATTEMPTS = 100
# A listener that heard nothing for this long checks that its connection still lives.
LISTENER_CHECK_SECONDS = 15.0
RECONNECT_DELAYS = (0.1, 5.0)  # first and longest wait before the listener reconnects
PING_TIMEOUT = 0.8  # /ready answers within a second
# While the server is unreachable it is probed this often (first and longest wait); the
# pool's own reconnection backs off to minutes, so a fresh pool replaces it on an answer.
PROBE_DELAYS = (0.25, 1.0)
# Each claimed task leaves a dead row in task_queue and its indexes, which claims then step
# over; a store vacuums the queue itself after claiming this many tasks (autovacuum may be off,
# as it is on CI, or late), so a claim stays as fast as on a fresh queue.
QUEUE_VACUUM_AFTER = 20_000

_NOT_OPEN = "the PostgreSQL store is not open: call open() first"


def _load() -> dict[str, str]:
    queries = load_queries("postgres")
    messages = queries.pop("messages")
    event_log = queries.pop("event_log")
    lax = queries["lax"]  # a query of its own, and what the plain claim sets itself
    added = queries.pop("finish_messages")
    # the finish of a batch with messages, and of one without (postgres.sql)
    queries["finish_bare"] = queries["finish"].replace("{finish_messages}", "")
    queries["finish"] = queries["finish"].replace("{finish_messages}", f" {added}")
    return {
        name: sql.replace("{messages}", messages)
        .replace("{event_log}", event_log)
        .replace("{lax}", lax)
        .replace("{task_columns}", ", ".join(TASK_COLUMNS))
        for name, sql in queries.items()
    }


QUERIES = _load()
_BY_KEY = QUERIES["get_by_idempotency_key"]


# The states each outcome's target may be entered from, as `finish` reads them.
_SOURCES = {state: ",".join(sorted(s.value for s in sources(state))) for state in TaskState}


def _utc(value: datetime) -> datetime:
    """A time in UTC: as it comes from a UTC session, at no cost (a session whose time zone
    was set elsewhere, by a pooler say, still gets converted)."""
    return value if value.tzinfo is UTC else value.astimezone(UTC)


def _jsonb(value: Any) -> Jsonb:
    return Jsonb(value, dumps=orjson.dumps)


def _same(value: Any) -> Any:
    return value


def text_array(values: Iterable[str]) -> str:
    """`values` as the literal of a text[] (each element quoted), for a ``%s::text[]``
    parameter: psycopg sends a str as it is, where its dumper of a list costs ~9 us a call in
    Python (a claim's handlers, a finish's ids: twice a batch of a worker)."""
    quoted = [
        v.replace("\\", "\\\\").replace('"', '\\"') if '"' in v or "\\" in v else v for v in values
    ]
    return '{"' + '","'.join(quoted) + '"}' if quoted else "{}"


# psycopg does the conversions: times are aware datetimes (shown in UTC, whatever the session's
# time zone), JSON goes in as jsonb and comes out parsed (orjson, set on each connection).
CODEC = Codec(time_in=_utc, time_out=_utc, json_in=_jsonb, json_out=_same)
# A batch travels as one JSON document (postgres.sql): its rows' values as JSON values.
RECORD = Codec(time_in=_utc, time_out=_utc, json_in=_same, json_out=_same)
DIALECT = SqlDialect(
    placeholder="%s",
    encode_time=_utc,
    encode_json=_jsonb,
    json_placeholder="%s",
    like="ILIKE",
)


@dataclass(frozen=True, slots=True)
class Statement:
    """SQL with psycopg placeholders, and its parameters."""

    sql: str
    params: Params | None = None


def list_statements(query: TaskQuery) -> tuple[Statement, Statement | None]:
    """The SELECT of one page of `query` and, if it asks for the total, the count: exactly
    what `PostgresStore.query` runs (bench/pg_plans.py explains these)."""
    where, params = compile_where(query.where, DIALECT)
    if not query.include_deleted:
        where = f"({where}) AND tasks.deleted_at IS NULL"
    order = compile_order(query.sort)
    page = Statement(
        f"SELECT {QUERIES['columns']} FROM tasks WHERE {where} ORDER BY {order} LIMIT %s OFFSET %s",
        [*params, query.limit, query.offset],  # LIMIT NULL is no limit
    )
    count = _rollup_count(query, where, params) or (
        Statement(f"SELECT count(*) FROM tasks WHERE {where}", params)
        if query.count_cap is None
        else Statement(
            f"SELECT count(*) FROM (SELECT 1 FROM tasks WHERE {where} LIMIT %s) capped",
            [*params, query.count_cap],
        )
    )
    return page, count if query.count else None


def _rollup_count(query: TaskQuery, where: str, params: list[Any]) -> Statement | None:
    """A count that task_counts answers, when `query` filters on nothing but the completion
    status and a lower bound of `created` (the retention window): the whole UTC days after
    that bound are a sum over task_counts, the rest of the first day an exact count through
    the index. None for any other filter (an exact count; such filters pick few rows)."""
    if query.include_deleted:
        return None
    parts = query.where.items if isinstance(query.where, And) else (query.where,)
    status: Condition | None = None
    since: datetime | None = None
    for part in parts:
        if part is None:
            continue
        if not isinstance(part, Condition):
            return None
        if part.field is TaskField.COMPLETION_STATUS and status is None:
            status = part
        elif part.field is TaskField.CREATED and part.op is Op.GE and since is None:
            since = part.values[0]
        else:
            return None
    if status is None or status.op in (Op.EQ, Op.IN):
        wanted = "true" if status is None else "status = ANY(%s)"
        status_params: list[Any] = [] if status is None else [[str(v) for v in status.values]]
    elif status.op is Op.ISNULL:
        wanted, status_params = "status = ''", []
    elif status.op is Op.PR:
        wanted, status_params = "status <> ''", []
    else:
        return None
    if since is None:
        return Statement(
            f"SELECT coalesce(sum(n), 0)::bigint FROM task_counts WHERE {wanted}", status_params
        )
    first_day = since.astimezone(UTC).date()
    if first_day == date.max:  # no next midnight to split at; nothing is counted there anyway
        return None
    next_midnight = datetime.combine(first_day + timedelta(days=1), datetime.min.time(), UTC)
    return Statement(
        # sum() of bigint is numeric (a Decimal, whose // truncates): cast back
        f"SELECT ((SELECT coalesce(sum(n), 0) FROM task_counts WHERE {wanted} AND day > %s)"
        f" + (SELECT count(*) FROM tasks WHERE {where} AND tasks.created < %s))::bigint",
        [*status_params, first_day, *params, next_midnight],
    )


def _doc(rows: list[dict[str, Any]]) -> Jsonb:
    """A batch's rows as the one JSON document its statement reads with jsonb_to_recordset."""
    return _jsonb(rows)


def _results(batch: Sequence[Progress | Outcome]) -> list[dict[str, Any]]:
    """The batch's attributes and returns, one row each, as `report` and `finish` read them."""
    return [result_params(item.attributes, item.returns, RECORD) for item in batch]


def _outcome_row(o: Outcome) -> dict[str, Any]:
    """An outcome as its row of the finish's document, with only the keys that have a value:
    a key costs the server's JSON parse ~5 k instructions a task, and one left out reads as
    NULL, as null does. Built key by key (a worker writes one a task); the states are str
    enums, which orjson writes as their values (no `.value`: a Python property each)."""
    row: dict[str, Any] = {"id": o.task_id, "state": o.state, "sources": _SOURCES[o.state]}
    if o.completion_status is not None:
        row["completion_status"] = o.completion_status
    if o.progress is not None:
        row["progress"] = o.progress
    if o.percent_complete is not None:
        row["percent_complete"] = o.percent_complete
    if o.run_at is not None:
        row["run_at"] = _utc(o.run_at)
    if o.attempt is not None:
        row["attempt"] = o.attempt
    if o.messages:  # the finish counts their events (0015)
        row["messages"] = len(o.messages)
    if o.attributes is not None:  # as result_params, which `report` uses
        row["attributes"] = dict(o.attributes)
    if o.returns is not None:
        row["returns"] = returns_to_json(o.returns)
    return row


def _messages(messages: Iterable[tuple[str, Message]]) -> dict[str, Jsonb]:
    """New messages as the document of the ``messages`` block (an empty one if none)."""
    rows = []
    for ord_, (task_id, m) in enumerate(messages):
        row = message_params(task_id, m, RECORD)
        rows.append({"task_id": row.pop("id"), **row, "ord": ord_})
    return {"messages": _doc(rows)}


def _change(old: Task, new: Task) -> tuple[str, dict[str, Any]] | None:
    """The statement that stores `new` over `old` if the row is still at `old.version`, or
    None when nothing changed. It answers how many rows it updated (0 or 1)."""
    columns = changed_columns(old, new, CODEC)
    added = new.messages[len(old.messages) :]
    if not columns and not added:
        return None
    columns["version"] = old.version + 1
    # The names come from rows.MUTABLE_COLUMNS, never from input.
    assignments = ", ".join(f"{c} = %({c})s" for c in columns)
    return QUERIES["update_task"].replace("{assignments}", assignments), {
        **columns,
        "_id": old.id,
        "_version": old.version,
        **_messages((old.id, m) for m in added),
    }


def _merge_reports(reports: Sequence[Progress]) -> list[Progress]:
    """One report per task, as if they were written in order: the last progress, the last
    attributes and returns given, every message."""
    merged: dict[str, Progress] = {}
    for r in reports:
        prev = merged.get(r.task_id)
        if prev is not None:
            r = Progress(
                r.task_id,
                r.progress,
                r.percent_complete,
                (*prev.messages, *r.messages),
                prev.attributes if r.attributes is None else r.attributes,
                prev.returns if r.returns is None else r.returns,
                r.attempt,
            )
        merged[r.task_id] = r
    return list(merged.values())


async def _configure(conn: Conn) -> None:
    set_json_loads(orjson.loads, conn)


def _create_params(tasks: Sequence[Task]) -> dict[str, Any]:
    """The parameters of `create_tasks` for a batch."""
    rows = [task_to_params(t, RECORD) | {"ord": i} for i, t in enumerate(tasks)]
    return {"tasks": _doc(rows), **_messages((t.id, m) for t in tasks for m in t.messages)}


# A batch of at least this many tasks goes through binary COPY when it can (`_copy_rows`). The
# server's work is less at any size (callgrind, bench/pg_copy_cost.py: 885 k instructions for
# a batch of 1 against 1162 k; 202 k a task against 383 k at 64, 188 k against 359 k at 500),
# but a COPY costs round trips (BEGIN, the wake-up, two for each COPY, COMMIT: libpq cannot
# pipeline a COPY), each a few system calls for the client and the backend, and psycopg's
# write_row costs the client more than orjson's one document. Measured (CPU a task, client /
# backend, this 2-core machine, 9 rounds): at 64 15 / 35 us against the statement's 10 / 43,
# at 128 11.6 / 27.7 against 7.9 / 40.3, at 256 8.5 / 23.4 against 7.4 / 39.1, at 500
# 7.0 / 20.0 against 5.7 / 40.0: from 128 the sum is a quarter less or better, wall a third.
COPY_MIN_BATCH = 128


def _jsonb_binary(value: Any) -> str:
    """`value` in jsonb's binary format (a version byte, 1, and the JSON text) as a binary
    COPY's field carries it (no type: the server's jsonb_recv reads it), by orjson, as the
    statement's document is; as text, which psycopg's text dumper copies in C (its bytea
    dumper is Python's, a few times slower)."""
    return "\x01" + orjson.dumps(value).decode()


# A task's values as the binary COPY writes them (`_copy_rows`).
COPY = Codec(time_in=_utc, time_out=_utc, json_in=_jsonb_binary, json_out=_same)
# The type of each of rows.TASK_COLUMNS, as psycopg dumps it for the binary COPY (jsonb as its
# wire format, text: COPY's codec).
_COLUMN_TYPES = {
    "created": "timestamptz", "modified": "timestamptz", "launched": "timestamptz",
    "completed": "timestamptz", "run_at": "timestamptz", "lease_expires": "timestamptz",
    "deleted_at": "timestamptz",
    "percent_complete": "int4", "priority": "int4", "attempts": "int4", "max_attempts": "int4",
    "version": "int4", "timeout": "float8",
}  # fmt: skip
_TASK_TYPES = [_COLUMN_TYPES.get(c, "text") for c in TASK_COLUMNS]
_QUEUE_TYPES = ["text", "text", "int4", "timestamptz"]


@dataclass(frozen=True, slots=True)
class _Copy:
    """A batch as the rows of its COPYs: the tasks' and their queue rows."""

    tasks: list[tuple[Any, ...]]
    queue: list[tuple[Any, ...]]


def _copy_rows(tasks: Sequence[Task]) -> _Copy | None:
    """The batch as COPY rows, or None when it goes by the statement `create_tasks`: when it is
    small (`COPY_MIN_BATCH`), when a task has an idempotency key (the statement's ON CONFLICT
    answers who holds it) or messages (rows of another table), or when the batch has more than
    one launcher (the statement inserts in (launcher, input) order, which decides the order of
    the event log's notifications; with one launcher that is input order, COPY's)."""
    if len(tasks) < COPY_MIN_BATCH:
        return None
    launcher = tasks[0].launcher
    for t in tasks:
        if t.idempotency_key is not None or t.messages or t.launcher != launcher:
            return None
    rows = []
    queue = []
    for t in tasks:
        row = task_to_params(t, COPY)  # its keys in the order of TASK_COLUMNS, COPY's
        rows.append(tuple(row.values()))
        if row["state"] == "queued" and row["deleted_at"] is None:
            queue.append((row["id"], row["handler"], row["priority"], row["run_at"]))
    return _Copy(rows, queue)


async def _copy(conn: Conn, batch: _Copy) -> None:
    """Store `batch` (`_copy_rows`) in one transaction with the durable commit of any submit:
    what `create_tasks` does for a batch it stores whole, wake-up included (asked first: a
    transaction's notifications go out in the order asked, and the statement's wake-up comes
    before the event log's, which its trigger sends at the end of the insert)."""
    async with conn.transaction():
        cursor = conn.cursor()
        await cursor.execute(QUERIES["wake_workers"])
        async with cursor.copy(QUERIES["copy_tasks"]) as copy:
            copy.set_types(_TASK_TYPES)
            for row in batch.tasks:
                await copy.write_row(row)
        if batch.queue:
            async with cursor.copy(QUERIES["copy_queue"]) as copy:
                copy.set_types(_QUEUE_TYPES)
                for row in batch.queue:
                    await copy.write_row(row)


def _copy_blocking(conn: psycopg.Connection[TupleRow], batch: _Copy) -> None:
    """`_copy` on a blocking connection."""
    with conn.transaction():
        cursor = conn.cursor()
        cursor.execute(QUERIES["wake_workers"])
        with cursor.copy(QUERIES["copy_tasks"]) as copy:
            copy.set_types(_TASK_TYPES)
            for row in batch.tasks:
                copy.write_row(row)
        if batch.queue:
            with cursor.copy(QUERIES["copy_queue"]) as copy:
                copy.set_types(_QUEUE_TYPES)
                for row in batch.queue:
                    copy.write_row(row)


def _key_params(task: Task) -> dict[str, Any]:
    return {"launcher": task.launcher, "key": task.idempotency_key}


def _holder(task: Task, row: TupleRow | None) -> Task:
    """The task that has the idempotency key `task` could not be stored with."""
    if row is None:
        raise StoreError(f"task {task.id} was neither stored nor a duplicate")
    return task_from_row(row, CODEC)


async def _fetch_task(conn: Conn, task_id: str, include_deleted: bool) -> Task | None:
    cursor = await conn.execute(
        QUERIES["get_task"], {"id": task_id, "include_deleted": include_deleted}
    )
    row = await cursor.fetchone()
    return task_from_row(row, CODEC) if row else None


async def _migrate(conn: Conn) -> None:
    """Apply the pending migrations in one transaction. The advisory lock makes nodes that
    start at the same moment take turns: the first applies them, the others find them done."""
    async with conn.transaction():
        await conn.execute(QUERIES["lock_migrations"], {"key": MIGRATION_LOCK})
        await conn.execute(QUERIES["create_migrations_table"])
        applied = {
            v for (v,) in await (await conn.execute(QUERIES["applied_migrations"])).fetchall()
        }
        for migration in load_migrations("postgres"):
            if migration.version in applied:
                continue
            await conn.execute(migration.sql)  # no parameters: a script of several statements
            await conn.execute(
                QUERIES["record_migration"], {"version": migration.version, "name": migration.name}
            )
            log.info("applied migration %04d_%s", migration.version, migration.name)


def _parse_news(payload: str) -> list[tuple[str, int]]:
    """A taskstatus_events payload, "task_id:first_seq,...", as pairs."""
    news = []
    for item in payload.split(","):
        task_id, _, first = item.rpartition(":")
        if task_id:
            news.append((task_id, int(first)))
    return news


@guarded
class PostgresStore(PostgresSchedules):
    """The Store protocol on PostgreSQL (see taskstatus.store.base for the contract).

    Every wait is bounded (`StoreLimits`): connecting, taking a pooled connection, each
    statement and a silent peer. An operation that cannot reach the database raises
    StoreUnavailable (store/edge.py)."""

    def __init__(
        self,
        url: str,
        *,
        min_size: int = 1,
        max_size: int = 10,
        limits: StoreLimits | None = None,
    ) -> None:
        self.url = url
        self.limits = limits or StoreLimits()
        self._min_size = min_size
        self._max_size = max_size
        self._pool: AsyncConnectionPool[Conn] | None = None
        self._revive: asyncio.Task[None] | None = None
        self._retired: set[asyncio.Task[None]] = set()  # old pools, closing
        self._listener: asyncio.Task[None] | None = None
        self._listening = asyncio.Event()  # set once the listener has said LISTEN
        self._work = asyncio.Event()  # set by a notification, cleared when a wait returns
        self._event_callbacks: dict[int, EventCallback] = {}
        self._listening_events = False  # whether the listener also hears taskstatus_events
        self._claimed = 0  # tasks claimed since the queue was last vacuumed
        self._vacuum: asyncio.Task[None] | None = None
        self._limit_waits = LimitWaits()
        self._limited: tuple[float, dict[str, HandlerLimits]] = (UNREAD, {})  # (when read, limits)
        # create_many_blocking's connection (blocking psycopg, opened at its first use) and
        # the lock of whichever thread uses it
        self._blocking: psycopg.Connection[TupleRow] | None = None
        self._blocking_lock = threading.Lock()

    # --- plumbing -----------------------------------------------------------------------------

    def _conninfo(self, application: str) -> str:
        """The URL, named in pg_stat_activity unless the URL names itself, with the session
        in UTC (psycopg then parses times faster and they need no conversion, _utc) and the
        limits: statement timeout, connect timeout, and TCP keepalives with a user timeout so
        a peer that went silent is given up on. What the URL sets itself wins."""
        given = conninfo_to_dict(self.url)
        limits = self.limits
        statement_ms = max(1, round(limits.statement_timeout * 1000))
        options = f"-c statement_timeout={statement_ms} {given.get('options', '')} -c TimeZone=UTC"
        extra: dict[str, Any] = {"options": options.strip()}
        defaults: dict[str, Any] = {
            "application_name": application,
            "connect_timeout": max(2, round(limits.connect_timeout)),
            "keepalives": 1,
            "keepalives_idle": 5,
            "keepalives_interval": 2,
            "keepalives_count": 3,
            "tcp_user_timeout": statement_ms + 5000,
        }
        extra |= {k: v for k, v in defaults.items() if k not in given}
        return make_conninfo(self.url, **extra)

    def _unavailable(self, exc: BaseException) -> str | None:
        """Which wait ran out, if `exc` means PostgreSQL cannot be used now (store/edge.py)."""
        what = self._which_wait(exc)
        if isinstance(exc, psycopg.OperationalError):
            self._revive_soon()  # a connection failed: the server may have gone away
        return what

    def _which_wait(self, exc: BaseException) -> str | None:
        if isinstance(exc, PoolTimeout):
            what = f"no connection within {self.limits.pool_timeout:g} s"
        elif isinstance(exc, psycopg.errors.QueryCanceled):
            what = f"a statement ran past {self.limits.statement_timeout:g} s or was cancelled"
        elif isinstance(exc, psycopg.OperationalError):
            what = "PostgreSQL is unreachable or refused the connection"
        elif isinstance(exc, TimeoutError):
            what = "PostgreSQL did not answer in time"
        else:
            return None
        return what

    def _revive_soon(self) -> None:
        if self._pool is not None and (self._revive is None or self._revive.done()):
            self._revive = asyncio.create_task(self._probe(), name="taskstatus probe")

    async def _probe(self) -> None:
        """Probe the server with a connection of our own until it answers, then replace the
        pool: its connections broke together when the server went away, and its own
        reconnection attempts back off (1, 2, 4, ... s), which after a long outage would
        keep requests failing for as long again."""
        delay = PROBE_DELAYS[0]
        conninfo = self._conninfo("taskstatus probe")
        while self._pool is not None:
            try:
                async with await psycopg.AsyncConnection.connect(conninfo, autocommit=True) as c:
                    await c.execute("SELECT 1")
            except psycopg.Error:
                await asyncio.sleep(delay)
                delay = min(delay * 2, PROBE_DELAYS[1])
                continue
            old, self._pool = self._pool, self._new_pool()
            await self._pool.open(wait=False)
            closing = asyncio.create_task(old.close(timeout=self.limits.statement_timeout))
            self._retired.add(closing)
            closing.add_done_callback(self._retired.discard)
            log.info("PostgreSQL answers again: connections renewed")
            return

    def _new_pool(self) -> AsyncConnectionPool[Conn]:
        return AsyncConnectionPool(
            self._conninfo("taskstatus"),
            min_size=self._min_size,
            max_size=self._max_size,
            open=False,
            timeout=self.limits.pool_timeout,
            kwargs={"autocommit": True},  # a lone statement is its own transaction
            configure=_configure,
            name="taskstatus",
        )

    @property
    def _db(self) -> AsyncConnectionPool[Conn]:
        if self._pool is None:
            raise StoreError(_NOT_OPEN)
        return self._pool

    @contextlib.asynccontextmanager
    async def _transaction(self, begin: str = "BEGIN") -> AsyncIterator[Conn]:
        """A pooled connection in one transaction, in pipeline mode: statements queue up and
        travel together when a result is fetched and at the end of the block, so BEGIN and
        COMMIT cost no round trip of their own. An error rolls back (the pool's context)."""
        async with self._db.connection() as conn, conn.pipeline():
            await conn.execute(begin)
            yield conn
            await conn.execute("COMMIT")

    async def _lax(self, sql: str, params: Params) -> list[TupleRow]:
        """Run a worker's bookkeeping statement (a claim, a heartbeat, a progress report)
        with a commit that does not wait for the disk (postgres.sql: ``lax``), in one round
        trip. Were the server to crash right after, the write would be lost and redone: a
        claim lost leaves the task queued for another claim, a heartbeat or a report is sent
        again. Submissions and outcomes keep their full durability."""
        async with self._transaction() as conn:
            await conn.execute(QUERIES["lax"])
            cursor = await conn.execute(sql, params)
        return await cursor.fetchall() if cursor.description else []

    # --- lifecycle of the store -------------------------------------------------------------------

    async def open(self) -> None:
        if self._pool is not None:
            return
        # Migrate on a connection of its own: an unreachable server fails here at once, with
        # libpq's message, rather than after the pool's timeout.
        conninfo = self._conninfo("taskstatus migrations")
        async with await psycopg.AsyncConnection.connect(conninfo, autocommit=True) as conn:
            await _migrate(conn)
        pool = self._new_pool()
        try:
            await pool.open(wait=True, timeout=max(self.limits.pool_timeout, 5.0))
        except BaseException:
            await pool.close()
            raise
        self._pool = pool

    async def close(self) -> None:
        self._event_callbacks.clear()
        if self._vacuum is not None:
            await asyncio.gather(self._vacuum, return_exceptions=True)
            self._vacuum = None
        if self._listener is not None:
            self._listener.cancel()
            await asyncio.gather(self._listener, return_exceptions=True)
            self._listener = None
        if self._revive is not None:
            self._revive.cancel()
            await asyncio.gather(self._revive, return_exceptions=True)
            self._revive = None
        await asyncio.gather(*self._retired, return_exceptions=True)
        if self._pool is not None:
            pool, self._pool = self._pool, None
            await pool.close()
        with self._blocking_lock:  # after a blocking create still running on another thread
            blocking, self._blocking = self._blocking, None
        if blocking is not None:
            blocking.close()

    async def ping(self) -> None:
        async with asyncio.timeout(PING_TIMEOUT):
            async with self._db.connection(timeout=PING_TIMEOUT) as conn:
                await conn.execute("SELECT 1")

    # --- tasks ----------------------------------------------------------------------------------

    async def create(self, task: Task) -> Task:
        return (await self.create_many([task]))[0]

    async def create_many(self, tasks: Sequence[Task]) -> list[Task]:
        if not tasks:
            return []
        batch = _copy_rows(tasks)
        async with self._db.connection() as conn:
            if batch is not None:
                await _copy(conn, batch)
                return list(tasks)
            cursor = await conn.execute(QUERIES["create_tasks"], _create_params(tasks))
            answers = await cursor.fetchall()
            out: list[Task] = []
            for task, (stored, _woke) in zip(tasks, answers, strict=True):
                # a task not stored: its idempotency key was taken (by an earlier task, a rival
                # transaction or an earlier row of this batch): answer with the task that has it
                if not stored:
                    cursor = await conn.execute(_BY_KEY, _key_params(task))
                    task = _holder(task, await cursor.fetchone())
                out.append(task)
        return out

    def create_many_blocking(self, tasks: Sequence[Task]) -> list[Task] | None:
        """`create_many` on the calling thread, through a blocking connection of its own (the
        pool's belong to the store's event loop): the synchronous `connect()` submits without
        a hop to that loop's thread and back (BlockingCreate). The same statement, the same
        durable commit. None when not open or when another thread is using the connection."""
        if not tasks:
            return []
        if not self._blocking_lock.acquire(blocking=False):
            return None
        try:
            if self._pool is None:  # (under the lock: close() takes it to close the connection)
                return None
            conn = self._blocking
            try:
                if conn is None:
                    conn = psycopg.Connection.connect(
                        self._conninfo("taskstatus submits"), autocommit=True
                    )
                    set_json_loads(orjson.loads, conn)
                    self._blocking = conn
                batch = _copy_rows(tasks)
                if batch is not None:
                    _copy_blocking(conn, batch)
                    return list(tasks)
                answers = conn.execute(QUERIES["create_tasks"], _create_params(tasks)).fetchall()
                out: list[Task] = []
                for task, (stored, _woke) in zip(tasks, answers, strict=True):
                    if not stored:  # as in create_many
                        cursor = conn.execute(_BY_KEY, _key_params(task))
                        task = _holder(task, cursor.fetchone())
                    out.append(task)
                return out
            except Exception as exc:
                if conn is not None and conn.broken:
                    self._blocking = None  # the next call connects again
                    conn.close()
                what = None if isinstance(exc, StoreError) else self._which_wait(exc)
                if what is None:
                    raise
                raise StoreUnavailable.because(what, exc) from exc
        finally:
            self._blocking_lock.release()

    async def get(self, task_id: str, *, include_deleted: bool = False) -> Task | None:
        async with self._db.connection() as conn:
            return await _fetch_task(conn, task_id, include_deleted)

    async def query(self, query: TaskQuery) -> Page:
        page, count = list_statements(query)
        if count is None:
            async with self._db.connection() as conn:
                rows = await (await conn.execute(page.sql, page.params)).fetchall()
            return Page([task_from_row(r, CODEC) for r in rows])
        # The page and its total from one snapshot, in one round trip: the pipeline sends
        # all four statements together and collects the results as the block ends.
        async with self._db.connection() as conn:
            async with conn.pipeline():
                await conn.execute("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY")
                page_cursor = await conn.execute(page.sql, page.params)
                count_cursor = await conn.execute(count.sql, count.params)
                await conn.execute("COMMIT")
            rows = await page_cursor.fetchall()
            total = await count_cursor.fetchone()
        assert total is not None
        return Page([task_from_row(r, CODEC) for r in rows], total[0])

    async def update(
        self,
        task_id: str,
        change: Callable[[Task], Task],
        *,
        expected_version: int | None = None,
    ) -> Task:
        async with self._db.connection() as conn:
            for _ in range(UPDATE_ATTEMPTS):
                old = await _fetch_task(conn, task_id, include_deleted=False)
                if old is None:
                    raise NotFound(task_id)
                if expected_version is not None and old.version != expected_version:
                    raise ConflictError(
                        f"task {task_id} is at version {old.version}, not {expected_version}"
                    )
                new = change(old)
                statement = _change(old, new)
                if statement is None:
                    return old
                row = await (await conn.execute(*statement)).fetchone()
                if row is not None and row[0] == 1:
                    return replace(new, version=old.version + 1)
                # Another writer got there first: apply the change to what it wrote.
        raise ConflictError(f"task {task_id} kept changing; gave up after {UPDATE_ATTEMPTS} tries")

    async def tally(self, query: TaskQuery, field: TaskField) -> dict[Any, int]:
        where, params = compile_where(query.where, DIALECT)
        if not query.include_deleted:
            where = f"({where}) AND tasks.deleted_at IS NULL"
        column = COLUMNS[field]
        select = (
            f"SELECT value, count(*) FROM (SELECT {column} AS value FROM tasks WHERE {where}"
            " LIMIT %s) capped GROUP BY value"
        )
        async with self._db.connection() as conn:
            rows = await (await conn.execute(select, [*params, query.count_cap])).fetchall()
        return {v: n for v, n in rows}

    async def finished_per_minute(
        self, where: Expr | None, since: datetime
    ) -> list[tuple[datetime, CompletionStatus, int]]:
        sql_where, params = compile_where(where, DIALECT)
        select = (
            "SELECT date_trunc('minute', tasks.completed), tasks.completion_status, count(*)"
            " FROM tasks WHERE tasks.completed >= %s AND tasks.deleted_at IS NULL"
            f" AND ({sql_where}) GROUP BY 1, 2"
        )
        async with self._db.connection() as conn:
            rows = await (await conn.execute(select, [since, *params])).fetchall()
        return [(m, CompletionStatus(s), n) for m, s, n in rows if s is not None]

    async def children(self, task_id: str) -> list[Task]:
        async with self._db.connection() as conn:
            rows = await (await conn.execute(QUERIES["children"], {"id": task_id})).fetchall()
        return [task_from_row(r, CODEC) for r in rows]

    async def delete(self, task_id: str, *, force: bool, now: datetime) -> DeleteResult:
        async with self._transaction() as conn:
            cursor = await conn.execute(QUERIES["tree_for_update"], {"id": task_id})
            tree = [task_from_row(r, CODEC) for r in await cursor.fetchall()]
            root = next((t for t in tree if t.id == task_id), None)
            if root is None or root.deleted_at is not None:
                raise NotFound(task_id)
            kids = sorted(
                (t for t in tree if t.parent_id == task_id and t.id != task_id),
                key=lambda t: (t.created, t.id),
            )
            if kids and not force:
                return DeleteResult(deleted=[], blocked_by=kids)
            for task in tree:
                gone = cancel(task, now) if task.pending else task
                statement = _change(task, replace(gone, deleted_at=now, modified=now))
                if statement is not None:  # the rows are locked: the version guard holds
                    await conn.execute(*statement)
            return DeleteResult(deleted=[t.id for t in tree])

    async def purge(self, before: datetime) -> int:
        async with self._db.connection() as conn:
            cursor = await conn.execute(QUERIES["purge"], {"before": before})
            row = await cursor.fetchone()
        return int(row[0]) if row else 0

    # --- workers --------------------------------------------------------------------------------

    async def claim(
        self, worker_id: str, limit: int, lease_seconds: float, handlers: Sequence[str]
    ) -> list[Task]:
        if limit <= 0 or not handlers:
            return []
        rows = await self._claim(worker_id, limit, lease_seconds, handlers)
        self._claimed += len(rows)
        if self._claimed >= QUEUE_VACUUM_AFTER and (self._vacuum is None or self._vacuum.done()):
            self._claimed = 0
            self._vacuum = asyncio.create_task(self._vacuum_queue(), name="taskstatus vacuum")
        tasks = [task_from_row(r, CODEC) for r in rows]
        tasks.sort(key=lambda t: (-t.priority, t.run_at or t.created))
        return tasks

    async def heartbeat(
        self, worker_id: str, task_ids: Sequence[str], lease_seconds: float
    ) -> Heartbeat:
        if not task_ids:
            return Heartbeat()
        params = {"worker": worker_id, "lease": lease_seconds, "ids": list(task_ids)}
        rows = await self._lax(QUERIES["heartbeat"], params)
        return sort_heartbeat(worker_id, task_ids, {r[0]: (r[1], r[2]) for r in rows})

    async def report(self, worker_id: str, reports: Sequence[Progress]) -> None:
        if not reports:
            return
        batch = _merge_reports(reports)
        params = {
            "worker": worker_id,
            "id": [r.task_id for r in batch],
            "reports": _doc(
                [
                    {
                        "id": r.task_id,
                        "progress": r.progress,
                        "percent_complete": r.percent_complete,
                        "attempt": r.attempt,
                    }
                    | results
                    for r, results in zip(batch, _results(batch), strict=True)
                ]
            ),
            **_messages((r.task_id, m) for r in batch for m in r.messages),
        }
        await self._lax(QUERIES["report"], params)

    async def finish(self, worker_id: str, outcomes: Sequence[Outcome]) -> set[str]:
        if not outcomes:
            return set()
        first: dict[str, Outcome] = {}
        for o in outcomes:  # a task's first outcome ends its run; a later one finds it ended
            first.setdefault(o.task_id, o)
        batch = list(first.values())
        params: dict[str, Any] = {"worker": worker_id, "id": text_array(first)}
        params["outcomes"] = _doc([_outcome_row(o) for o in batch])
        sql = QUERIES["finish_bare"]
        if any(o.messages for o in batch):
            sql = QUERIES["finish"]
            params |= _messages((o.task_id, m) for o in batch for m in o.messages)
        async with self._db.connection() as conn:
            found = await (await conn.execute(sql, params)).fetchall()
            if self._limit_waits.ended(list(first)):  # a limited slot is free: wake the nodes
                await conn.execute(QUERIES["wake"])
        return {r[0] for r in found}

    async def release(self, worker_id: str, task_ids: Sequence[str]) -> None:
        if not task_ids:
            return
        async with self._db.connection() as conn:
            await conn.execute(QUERIES["release"], {"worker": worker_id, "ids": list(task_ids)})

    async def recover(self, grace: float = 0.0) -> Recovered:
        found: dict[str, list[str]] = {"requeued": [], "dead": [], "cancelled": []}
        async with self._transaction() as conn:
            rows = await (await conn.execute(QUERIES["recover"], {"grace": grace})).fetchall()
            if rows:
                notes = [
                    (task_id, lost_lease_message(attempts, most, fate))
                    for fate, task_id, attempts, most in rows
                ]
                await conn.execute(QUERIES["insert_messages"], _messages(notes))
            for fate, task_id, _, _ in rows:
                found[fate].append(task_id)
            if found["requeued"]:
                await conn.execute(QUERIES["wake"])
        return Recovered(**found)

    async def _vacuum_queue(self) -> None:
        """Remove the queue's dead rows, in the background of the claims. SKIP_LOCKED: when
        another node is vacuuming it already, there is nothing to add."""
        try:
            async with self._db.connection() as conn:
                await conn.execute(QUERIES["vacuum_queue"])
        except psycopg.Error as exc:  # the next threshold tries again
            log.warning("could not vacuum task_queue: %s", exc)

    # --- wake-ups -------------------------------------------------------------------------------

    async def wait_for_work(self, timeout: float) -> None:
        if self._pool is None:  # a closed store must not start a listener
            raise StoreError(_NOT_OPEN)
        if self._listener is None or self._listener.done():
            self._start_listener()
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(self._limit_waits.timeout(timeout)):
                await self._listening.wait()
                await self._work.wait()
        self._work.clear()

    def _start_listener(self) -> None:
        self._listening.clear()
        self._listener = asyncio.create_task(self._listen(), name="taskstatus listener")

    async def _listen(self) -> None:
        """Keep one connection (not the pool's) listening, and set `_work` at each
        notification. If the connection drops, reconnect, and then wake the waiters: what
        was notified meanwhile is lost, so they should look. With event followers it also
        hears taskstatus_events and tells them which tasks have news (None after a gap)."""
        delay = RECONNECT_DELAYS[0]
        missed = False
        conninfo = self._conninfo("taskstatus listener")
        while True:
            try:
                async with await psycopg.AsyncConnection.connect(conninfo, autocommit=True) as conn:
                    await conn.execute(QUERIES["listen"])
                    events = bool(self._event_callbacks)
                    if events:
                        await conn.execute(QUERIES["listen_events"])
                    self._listening_events = events
                    self._listening.set()
                    if missed:
                        self._work.set()
                    if events:  # what was committed before LISTEN took effect: look again
                        self._tell_events(None)
                    delay = RECONNECT_DELAYS[0]
                    while True:
                        async for note in conn.notifies(timeout=LISTENER_CHECK_SECONDS):
                            if note.channel == "taskstatus_events":
                                self._tell_events(_parse_news(note.payload))
                            else:
                                self._work.set()
                        await conn.execute("SELECT 1")  # quiet for a while: still connected?
            except psycopg.Error as exc:
                log.warning("LISTEN connection lost (%s); reconnecting in %.1f s", exc, delay)
            except Exception:
                log.exception("LISTEN connection failed; reconnecting in %.1f s", delay)
            missed = True
            self._listening_events = False
            await asyncio.sleep(delay)
            delay = min(delay * 2, RECONNECT_DELAYS[1])

    def _tell_events(self, news: Sequence[tuple[str, int]] | None) -> None:
        for callback in list(self._event_callbacks.values()):
            try:
                callback(news)
            except Exception:
                log.exception("an event follower failed")

    # --- events -------------------------------------------------------------------------------

    async def events(self, cursors: Mapping[str, int], limit: int = 1000) -> list[TaskEvent]:
        if not cursors:
            return []
        params = {"ids": list(cursors), "afters": list(cursors.values()), "limit": limit}
        async with self._db.connection() as conn:
            rows = await (await conn.execute(QUERIES["task_events"], params)).fetchall()
        # an event's data is jsonb (`data`) or, from the hot paths, JSON text (`doc`, 0019)
        return [
            TaskEvent(
                r[0], r[1], r[2], r[3], _utc(r[4]), r[5] if r[6] is None else orjson.loads(r[6])
            )
            for r in rows
        ]

    def on_events(self, callback: EventCallback) -> Callable[[], None]:
        """One LISTEN per store (per process), shared with the workers' wake-ups: a
        listener started without event followers is restarted once to hear them too."""
        if self._pool is None:
            raise StoreError(_NOT_OPEN)
        key = id(callback)
        self._event_callbacks[key] = callback
        if self._listener is None or self._listener.done():
            self._start_listener()
        elif not self._listening_events:
            self._listener.cancel()  # it reconnects listening to both; followers re-read
            self._start_listener()

        def stop() -> None:
            self._event_callbacks.pop(key, None)

        return stop

    # --- definitions, clients, settings -----------------------------------------------------

    async def save_definitions(self, definitions: Sequence[TaskDefinition]) -> None:
        if not definitions:
            return
        now = datetime.now(UTC)
        last = {d.name: d for d in definitions}  # one row per name, the last given wins
        rows = [definition_params(d, CODEC, now) for d in last.values()]
        params = {column: [r[column] for r in rows] for column in rows[0]}
        async with self._db.connection() as conn:
            await conn.execute(QUERIES["save_definitions"], params)

    async def definition(self, name: str) -> TaskDefinition | None:
        async with self._db.connection() as conn:
            cursor = await conn.execute(QUERIES["get_definition"], {"name": name})
            row = await cursor.fetchone()
        return definition_from_row(row, CODEC) if row else None

    async def definitions(self) -> list[TaskDefinition]:
        async with self._db.connection() as conn:
            rows = await (await conn.execute(QUERIES["list_definitions"])).fetchall()
        return [definition_from_row(r, CODEC) for r in rows]

    async def save_client(self, client: ApiClient) -> None:
        async with self._db.connection() as conn:
            await conn.execute(QUERIES["save_client"], client_params(client, CODEC))

    async def client(self, client_id: str) -> ApiClient | None:
        async with self._db.connection() as conn:
            row = await (await conn.execute(QUERIES["get_client"], {"id": client_id})).fetchone()
        return client_from_row(row, CODEC) if row else None

    async def clients(self) -> list[ApiClient]:
        async with self._db.connection() as conn:
            rows = await (await conn.execute(QUERIES["list_clients"])).fetchall()
        return [client_from_row(r, CODEC) for r in rows]

    async def revoke_client(self, client_id: str, now: datetime) -> bool:
        async with self._db.connection() as conn:
            cursor = await conn.execute(QUERIES["revoke_client"], {"id": client_id, "now": now})
            return cursor.rowcount == 1

    async def setting(self, key: str, default: Callable[[], str]) -> str:
        async with self._db.connection() as conn:
            row = await (await conn.execute(QUERIES["get_setting"], {"key": key})).fetchone()
            if row is not None:
                return str(row[0])
            # First writer wins: insert unless present, then read whichever value won. In one
            # pipeline the read is a new statement, so it sees a rival's committed insert.
            async with conn.pipeline():
                await conn.execute(QUERIES["insert_setting"], {"key": key, "value": default()})
                cursor = await conn.execute(QUERIES["get_setting"], {"key": key})
            row = await cursor.fetchone()
        if row is None:
            raise StoreError(f"setting {key!r} was neither stored nor found")
        return str(row[0])
