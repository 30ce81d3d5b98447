"""Query plans of the PostgreSQL store at 1,000,000 tasks: the statements the API really runs.

Creates a scratch database, migrates it with `PostgresStore.open()`, fills it in bulk with
``INSERT ... SELECT generate_series`` (about a minute for a million tasks, the indexes kept up
to date as it goes), VACUUM ANALYZEs it, and prints ``EXPLAIN (ANALYZE, BUFFERS)`` of each
statement, warm, then a summary of execution times.
The list statements are built by ``taskstatus.store.postgres.list_statements`` (what the
store's ``query()`` runs) from the `TaskQuery` the v2024 endpoints build (filters parsed by the
API's grammar, plus the retention and visibility conditions of ``taskstatus.service.visible``), and
the worker statements are the store's own named queries, so the plans are of the real SQL.
Exits 1 if any plan reads the tasks table with a sequential scan.

Then the claim without statistics: for 10,000 and 100,000 queued tasks in a fresh database that
nothing analyzes (as on a server with autovacuum off), the plan of the claim's pick
(``taskstatus_due``, run as the function runs it) and of the claim, and the median round trip
of ``PostgresStore.claim`` of 8 tasks, fresh and after 90 % of the queue was claimed; exits 1 if
the pick sorts or reads a table sequentially.

Usage::

    .venv/bin/python bench/pg_plans.py [--url URL] [--rows N] [--database NAME] [--keep] [--reuse]

--url       a database to connect to, with the right to create databases
            (default: $TASKSTATUS_TEST_POSTGRES or postgresql://postgres@127.0.0.1:5432/test)
--rows      how many tasks to generate (default 1000000)
--database  the scratch database (default taskstatus_bench_plans); dropped at the end
--keep      keep the scratch database afterwards
--reuse     use the scratch database as it is, if it exists (no regeneration)
--queue-only  only the claim without statistics
"""

from __future__ import annotations

import argparse
import asyncio
import os
import re
import statistics
import sys
import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import urlsplit

import psycopg
from psycopg import sql

from taskstatus.api.v2024 import NEWEST_FIRST, OLDEST_FIRST, PENDING
from taskstatus.caller import Caller
from taskstatus.credentials import ADMIN, READ
from taskstatus.fields import TASK_STATUS
from taskstatus.query import Expr, SortKey, TaskQuery, all_of, parse_bound
from taskstatus.service import visible as service_visible
from taskstatus.store.postgres import QUERIES, PostgresStore, Statement, list_statements

DEFAULT_URL = os.environ.get(
    "TASKSTATUS_TEST_POSTGRES", "postgresql://postgres@127.0.0.1:5432/test"
)
HANDLERS = 20
LAUNCHERS = 200
SOURCES = 1000

# A realistic mix: most tasks ended long ago, a few are pending, a quarter is past the 90-day
# retention window, half a percent is deleted history; 20% of the tasks have two messages.
GENERATE = """
SELECT setseed(0.42);
INSERT INTO definitions (name, summary, schema, max_attempts, timeout, updated)
SELECT 'handler-' || h,
       jsonb_build_object('id', md5('def' || h), 'unique_name', 'handler-' || h,
                          'description', 'bench handler ' || h, 'parent_name', 'handler-' || h,
                          'executor', 'bench.handler_' || h, 'arguments', '{}'::jsonb),
       '{"type": "object"}', NULL, NULL, now()
FROM generate_series(0, %(handlers)s - 1) h;
INSERT INTO tasks (
    id, handler, type, unique_name, description, launcher, target_id, target_type, target_name,
    created, modified, launched, completed, completion_status, returns, attributes, progress,
    percent_complete, state, arguments, priority, run_at, attempts, max_attempts, lease_owner,
    lease_expires, deleted_at, version)
SELECT md5(g::text), 'handler-' || (g %% %(handlers)s),
       CASE WHEN r_type < 0.85 THEN 'QUEUED_TASK' WHEN r_type < 0.97 THEN 'QUARTZ' ELSE 'QPOC' END,
       'Task ' || g, 'bench task ' || g, 'user-' || (g %% %(launchers)s),
       CASE WHEN r_src < 0.9 THEN 'src-' || ((g * 7) %% %(sources)s) END,
       CASE WHEN r_src < 0.9 THEN 'APPLICATION' END,
       CASE WHEN r_src < 0.9 THEN 'Source ' || ((g * 7) %% %(sources)s) END,
       created, created + interval '1 minute',
       CASE WHEN state <> 'queued' THEN created + interval '1 second' END,
       CASE WHEN status IS NOT NULL THEN created + interval '1 minute' END,
       status, '[]', CASE WHEN status IS NOT NULL THEN jsonb_build_object('count', g) ELSE '{}' END,
       CASE WHEN status IS NOT NULL THEN 'done' END,
       CASE WHEN status IS NOT NULL THEN 100 ELSE 0 END,
       state, jsonb_build_object('n', g), (g %% 3), created,
       CASE WHEN state = 'queued' THEN 0 ELSE 1 END, 3,
       CASE WHEN state = 'running' THEN 'bench-worker' END,
       CASE WHEN state = 'running' THEN now() + interval '1 hour' END,
       CASE WHEN status IS NOT NULL AND r_del < 0.005 THEN created + interval '2 minutes' END,
       2
FROM (
    SELECT g, r_type, r_src, r_del, created,
           CASE WHEN r_state < 0.02 THEN 'queued' WHEN r_state < 0.03 THEN 'running'
                WHEN r_state < 0.78 THEN 'succeeded' WHEN r_state < 0.93 THEN 'failed'
                WHEN r_state < 0.98 THEN 'cancelled' ELSE 'dead' END AS state,
           CASE WHEN r_state < 0.03 THEN NULL WHEN r_state < 0.73 THEN 'SUCCESS'
                WHEN r_state < 0.78 THEN 'WARNING' WHEN r_state < 0.93 THEN 'ERROR'
                WHEN r_state < 0.98 THEN 'TERMINATED' ELSE 'TEMPERROR' END AS status
    FROM (
        SELECT g, random() AS r_type, random() AS r_src, random() AS r_del,
               random() AS r_state, now() - random() * interval '120 days' AS created
        FROM generate_series(1, %(rows)s) g
    ) r
) s;
INSERT INTO task_messages (task_id, type, key, text, locale, parameters)
SELECT md5(g::text), t, 'bench', 'message ' || n || ' of task ' || g, 'en-US', NULL
FROM generate_series(1, %(rows)s, 5) g, generate_series(1, 2) n,
     LATERAL (SELECT CASE WHEN n = 1 THEN 'INFO' ELSE 'WARN' END AS t) k;
"""


def visible(owner: str | None, cutoff: datetime) -> Expr:
    """What the API adds to every list: the retention window and, for a caller without the
    admin scope (`owner`), its own tasks only (taskstatus.service.visible)."""
    scopes = frozenset({READ}) if owner else frozenset({ADMIN})
    expr = service_visible(Caller("bench", owner or "admin", scopes, cutoff))
    assert expr is not None
    return expr


@dataclass
class Case:
    name: str
    statement: Statement
    writes: bool = False  # run inside a transaction that is rolled back


def url_of(admin_url: str, database: str) -> str:
    return urlsplit(admin_url)._replace(path=f"/{database}").geturl()


async def drop_database(admin_url: str, database: str) -> None:
    """Drop `database` if it exists, whoever is connected to it."""
    async with await psycopg.AsyncConnection.connect(admin_url, autocommit=True) as admin:
        await admin.execute(
            sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(database))
        )


async def fresh_database(admin_url: str, database: str) -> str:
    """An empty `database` (dropped first if it exists), and its URL."""
    await drop_database(admin_url, database)
    async with await psycopg.AsyncConnection.connect(admin_url, autocommit=True) as admin:
        await admin.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(database)))
    return url_of(admin_url, database)


def api_query(
    filters: str | None,
    sort: tuple[SortKey, ...],
    where: Expr | None = None,
    *,
    count: bool = False,
    owner: str | None = None,
) -> TaskQuery:
    """The TaskQuery the v2024 list endpoints build: limit 250, the 90-day retention window,
    and for a non-admin caller (`owner`) its own tasks."""
    cutoff = datetime.now(UTC) - timedelta(days=90)
    return TaskQuery(
        where=all_of(where, parse_bound(filters, TASK_STATUS), visible(owner, cutoff)),
        sort=sort,
        limit=250,
        count=count,
    )


def list_cases(name: str, query: TaskQuery) -> list[Case]:
    page, count = list_statements(query)
    cases = [Case(f"{name}: page", page)]
    if count is not None:
        cases.append(Case(f"{name}: count", count))
    return cases


def cases() -> list[Case]:
    return [
        *list_cases(
            'completionStatus eq "SUCCESS", -created, limit 250',
            api_query('completionStatus eq "SUCCESS"', NEWEST_FIRST),
        ),
        *list_cases(
            'completionStatus eq "SUCCESS", -created, limit 250, count=true',
            api_query('completionStatus eq "SUCCESS"', NEWEST_FIRST, count=True),
        ),
        *list_cases(
            "pending-tasks (completionStatus null), created, limit 250, count=true",
            api_query(None, OLDEST_FIRST, PENDING, count=True),
        ),
        *list_cases('type eq "QUARTZ", -created', api_query('type eq "QUARTZ"', NEWEST_FIRST)),
        *list_cases(
            'sourceId eq "src-17", -created, count=true',
            api_query('sourceId eq "src-17"', NEWEST_FIRST, count=True),
        ),
        *list_cases(
            'a non-admin caller (launcher eq "user-7"), -created, count=true',
            api_query(None, NEWEST_FIRST, count=True, owner="user-7"),
        ),
        *list_cases(
            'definition eq "handler-3", -created',
            api_query('definition eq "handler-3"', NEWEST_FIRST),
        ),
        *list_cases("no filter, -created", api_query(None, NEWEST_FIRST)),
        Case(
            "get by id",
            Statement(
                QUERIES["get_task"],
                {"id": "c4ca4238a0b923820dcc509a6f75849b", "include_deleted": False},
            ),  # md5('1')
        ),
        Case(
            "claim 10 (5 of 20 handlers)",
            Statement(
                QUERIES["claim"],
                {
                    "worker": "bench",
                    "lease": 30.0,
                    "limit": 10,
                    "handlers": [f"handler-{h}" for h in range(5)],
                },
            ),
            writes=True,
        ),
        Case("recover expired leases", Statement(QUERIES["recover"], {"grace": 0.0}), writes=True),
    ]


async def load(admin_url: str, database: str, rows: int, reuse: bool) -> None:
    async with await psycopg.AsyncConnection.connect(admin_url, autocommit=True) as admin:
        exists = await (
            await admin.execute("SELECT 1 FROM pg_database WHERE datname = %s", [database])
        ).fetchone()
    if exists and reuse:
        print(f"reusing {database}")
        return
    url = await fresh_database(admin_url, database)
    store = PostgresStore(url)
    await store.open()  # the migrations, as a node applies them
    await store.close()
    started = time.perf_counter()
    async with await psycopg.AsyncConnection.connect(url, autocommit=True) as conn:
        params = {"rows": rows, "handlers": HANDLERS, "launchers": LAUNCHERS, "sources": SOURCES}
        for statement in GENERATE.split(";\n"):
            if statement.strip():
                await conn.execute(statement, params)
        loaded = time.perf_counter()
        await conn.execute("VACUUM (ANALYZE) tasks")
        await conn.execute("VACUUM (ANALYZE) task_messages")
        await conn.execute("ANALYZE definitions")
        size = await (
            await conn.execute("SELECT pg_size_pretty(pg_total_relation_size('tasks'))")
        ).fetchone()
    print(
        f"generated {rows:,} tasks in {loaded - started:.1f} s, vacuum+analyze "
        f"{time.perf_counter() - loaded:.1f} s; tasks with indexes: {size[0] if size else '?'}"
    )


async def explain(url: str, case: Case) -> tuple[str, float, float]:
    """The plan text, the execution time and the planning time (ms) it reports."""
    async with await psycopg.AsyncConnection.connect(url, autocommit=True) as conn:
        if case.writes:
            await conn.execute("BEGIN")
        params: Any = case.statement.params
        await conn.execute(case.statement.sql, params)  # warm the cache: timings are warm
        if case.writes:
            await conn.execute("ROLLBACK")
            await conn.execute("BEGIN")
        rows = await (
            await conn.execute(f"EXPLAIN (ANALYZE, BUFFERS) {case.statement.sql}", params)
        ).fetchall()
        if case.writes:
            await conn.execute("ROLLBACK")
    text = "\n".join(r[0] for r in rows)
    execution = re.search(r"Execution Time: ([\d.]+) ms", text)
    planning = re.search(r"Planning Time: ([\d.]+) ms", text)
    return (
        text,
        float(execution.group(1)) if execution else float("nan"),
        float(planning.group(1)) if planning else float("nan"),
    )


# Queued tasks as create_tasks stores them (the task and its queue row), generated in the
# database; nothing analyzes them.
QUEUE_FILL = (
    """
    INSERT INTO tasks (id, handler, type, unique_name, description, launcher, created,
                       modified, state, run_at, priority)
    SELECT md5(g::text), 'noop', 'QUEUED_TASK', 'Task ' || g, 'queued', 'bench', now(), now(),
           'queued', now() - interval '1 minute' + g * interval '1 microsecond', 0
    FROM generate_series(1, %(n)s) g
    """,
    """
    INSERT INTO task_queue (id, handler, priority, run_at)
    SELECT id, handler, priority, run_at FROM tasks WHERE state = 'queued'
    """,
)


async def nested_plans(url: str, statement: Statement) -> list[str]:
    """auto_explain's plans (ANALYZE, BUFFERS) of `statement` and of the statements run inside
    it (taskstatus_due's query, the triggers'), warm; rolled back."""
    logged: list[str] = []
    async with await psycopg.AsyncConnection.connect(url, autocommit=True) as conn:
        await conn.execute("LOAD 'auto_explain'")
        for setting in (
            "log_min_duration = 0",
            "log_nested_statements = on",
            "log_analyze = on",
            "log_buffers = on",
        ):
            await conn.execute(f"SET auto_explain.{setting}")
        await conn.execute("SET client_min_messages = log")
        params: Any = statement.params
        for _ in range(2):  # the first warms the caches and the function's plan
            logged.clear()
            await conn.execute("BEGIN")
            await conn.execute(statement.sql, params)
            await conn.execute("ROLLBACK")
        conn.add_notice_handler(lambda notice: logged.append(notice.message_primary or ""))
        await conn.execute("BEGIN")
        await conn.execute(statement.sql, params)
        await conn.execute("ROLLBACK")
    return logged


async def claim_ms(store: PostgresStore, tries: int = 200, handlers: str = "noop") -> float:
    """The median round trip (ms) of a claim of 8 tasks through the store; for handlers
    other than the queued ones' ("idle"), of a claim that finds nothing."""
    times = []
    for _ in range(tries):
        started = time.perf_counter()
        got = await store.claim("bench", 8, 30.0, [handlers])
        times.append(time.perf_counter() - started)
        assert len(got) == (8 if handlers == "noop" else 0)
    return statistics.median(times) * 1000


async def queue_check(admin_url: str, queued: int) -> tuple[dict[str, float], bool]:
    """The claim at `queued` tasks with no statistics: its figures, and whether its pick is
    an ordered index scan (no sort, no sequential scan)."""
    database = f"taskstatus_bench_queue_{queued}"
    url = await fresh_database(admin_url, database)
    store = PostgresStore(url)
    await store.open()
    figures: dict[str, float] = {}
    try:
        async with await psycopg.AsyncConnection.connect(url, autocommit=True) as conn:
            for statement in QUEUE_FILL:
                await conn.execute(statement, {"n": queued})
            stats = await (
                await conn.execute(
                    "SELECT count(*) FROM pg_stats WHERE tablename IN ('tasks', 'task_queue')"
                )
            ).fetchone()
        claim = Statement(
            QUERIES["claim"], {"worker": "bench", "lease": 30.0, "limit": 8, "handlers": ["noop"]}
        )
        logged = await nested_plans(url, claim)
        picked = next((p for p in logged if "FROM task_queue q" in p), "")
        text = next((p for p in logged if "taskstatus_due(" in p), "")
        # an ordered scan of the one busy handler's range (migration 0013), and the generic
        # plan kept for the session (0009: the handler a parameter), not one planned anew at
        # every claim
        fits = (
            "Index Scan using task_queue_handler_due" in picked
            and not re.search(r"Sort|Seq Scan", picked + text)
            and re.search(r"handler = \(\$\d+\)", picked) is not None
        )
        label = f"{queued // 1000}k"
        print(f"\n=== {queued:,} queued, statistics rows: {stats[0] if stats else '?'}")
        print(f"--- the pick (taskstatus_pick)\n{picked}\n--- the claim\n{text}")
        for name, logged_plan in (("claim8_pick_exec_ms", picked), ("claim8_exec_ms", text)):
            took = re.search(r"duration: ([\d.]+) ms", logged_plan)
            figures[f"{name}.{label}"] = float(took.group(1)) if took else float("nan")
        figures[f"claim8_ms.{label}"] = await claim_ms(store)
        # a worker whose handlers have nothing due, beside the backlog of another (0013)
        figures[f"claim8_ms.{label}.idle_handlers"] = await claim_ms(store, 100, "idle")
        # drain 90 % of the queue (the store vacuums it as it goes), then again
        drained = 8 * 200
        while drained < queued * 9 // 10:
            drained += len(await store.claim("bench", 500, 30.0, ["noop"]))
        figures[f"claim8_ms.{label}.drained"] = await claim_ms(store, 100)
    finally:
        await store.close()
        await drop_database(admin_url, database)
    return figures, fits


async def queue_checks(admin_url: str) -> tuple[dict[str, float], bool]:
    figures: dict[str, float] = {}
    good = True
    for queued in (10_000, 100_000):
        more, fits = await queue_check(admin_url, queued)
        figures |= more
        good = good and fits
    print(
        "\n=== the claim without statistics (ms; pick/claim: server execution, claim8_ms: "
        "round trip of PostgresStore.claim, median)"
    )
    for name, value in figures.items():
        print(f"{name:<40} {value:>8.3f}")
    print(
        f"the pick is an ordered index scan, planned once, at every size: {'yes' if good else 'NO'}"
    )
    return figures, good


async def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--url", default=DEFAULT_URL)
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--database", default="taskstatus_bench_plans")
    parser.add_argument("--keep", action="store_true")
    parser.add_argument("--reuse", action="store_true")
    parser.add_argument("--queue-only", action="store_true")
    args = parser.parse_args()
    if args.queue_only:
        return 0 if (await queue_checks(args.url))[1] else 1
    await load(args.url, args.database, args.rows, args.reuse)
    url = url_of(args.url, args.database)
    summary: list[tuple[str, float, float, bool]] = []
    try:
        for case in cases():
            text, execution, planning = await explain(url, case)
            seq = "Seq Scan on tasks" in text
            summary.append((case.name, execution, planning, seq))
            print(f"\n=== {case.name}\n{text}")
    finally:
        if not args.keep:
            await drop_database(args.url, args.database)
    print(f"\n=== summary ({args.rows:,} tasks; warm; ms)")
    print(f"{'statement':<75} {'execute':>9} {'plan':>7}  seq scan on tasks")
    for name, execution, planning, seq in summary:
        print(f"{name:<75} {execution:>9.3f} {planning:>7.3f}  {'YES' if seq else 'no'}")
    _, good = await queue_checks(args.url)
    return 1 if any(seq for *_, seq in summary) or not good else 0


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
