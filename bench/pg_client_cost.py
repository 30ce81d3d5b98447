"""What a statement costs the client in CPU, by driver and event loop: a diagnostic (issue 17).

    .venv/bin/python -m bench.pg_client_cost [--calls 2000] [--warmup 200]

Would asyncpg make the worker's statements cheaper to send? On a scratch database migrated by
the store, each (driver, way, loop) runs, after a warm-up, `calls` of:

* ``SELECT 1``;
* ``claim``: the store's plain claim of `batch` tasks (postgres.sql ``claim``; 8 by default,
  the matched tier's slots);
* ``finish``: the finish of those as succeeded (``finish_bare``);

claims and finishes taking turns on a queue filled beforehand (submit_many, not counted). The
figure is the client's CPU (time.process_time) per call; beside it the serving backend's
(/proc/<pid>/schedstat, read between calls, outside the client's count). Ways:

* psycopg ``store``: PostgresStore.claim / .finish themselves (what a worker calls: with the
  store's building of parameters and decoding of rows into Tasks); SELECT 1 on its pool;
* psycopg ``pool``: the store's pool (AsyncConnectionPool) and the same SQL and parameters,
  rows fetched, not decoded into Tasks (psycopg prepares a statement on its 5th execution);
* psycopg ``conn``: one AsyncConnection, no pool;
* asyncpg ``pool`` and ``conn``: the same SQL with $n placeholders, through asyncpg's prepared
  statement cache (`fetch`) on a pool of one connection (no reset query at release, as
  psycopg's pool), or a statement prepared once on one connection; jsonb encoded and decoded
  by orjson, as the store's psycopg does;

each on asyncio's loop and on uvloop's. asyncpg is not a dependency of taskstatus: its rows
are skipped, with a message, where it is not importable (a scratch venv: ``python3.11 -m venv
/tmp/apg && /tmp/apg/bin/pip install -r requirements.lock asyncpg==0.32.0 && /tmp/apg/bin/pip
install --no-deps -e .``, then run it with /tmp/apg/bin/python). CPU, not wall time: what the
worker processes spend, which is what the matched tier is short of (docs/benchmarks.md).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import re
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import orjson
import psycopg
from psycopg.types.json import Jsonb, set_json_loads

import bench.handlers  # noqa: F401 - bench.noop, submitted here
from bench.common import postgres_url
from bench.events import noop_outcomes
from taskstatus import connect
from taskstatus.model import TaskState
from taskstatus.store import make_store
from taskstatus.store.postgres import _SOURCES, QUERIES, PostgresStore, _results

try:
    import asyncpg
except ImportError:
    asyncpg = None

try:
    import uvloop
except ImportError:
    uvloop = None

WORKER = "bench-client-cost"
HANDLERS = ["bench.noop"]
LEASE = 30.0


def numbered(sql: str) -> tuple[str, list[str]]:
    """psycopg's %(name)s SQL as asyncpg's $n SQL, and the names in $n order."""
    names: list[str] = []

    def place(m: re.Match[str]) -> str:
        if m.group(1) not in names:
            names.append(m.group(1))
        return f"${names.index(m.group(1)) + 1}"

    return re.sub(r"%\((\w+)\)s", place, sql).replace("%%", "%"), names


def outcome_rows(ids: Sequence[str]) -> list[dict[str, Any]]:
    """The outcome document's rows PostgresStore.finish sends for no-op successes."""
    outcomes = noop_outcomes([_Id(i) for i in ids])  # type: ignore[list-item]
    rows = []
    for o, results in zip(outcomes, _results(outcomes), strict=True):
        row = {
            "id": o.task_id,
            "state": o.state.value,
            "completion_status": "SUCCESS",
            "percent_complete": 100,
            "sources": _SOURCES[TaskState.SUCCEEDED],
            **results,
        }
        rows.append({k: v for k, v in row.items() if v is not None})
    return rows


def finish_params(ids: list[str]) -> dict[str, Any]:
    """The finish_bare statement's parameters (psycopg) for no-op successes of `ids`."""
    return {"worker": WORKER, "id": ids, "outcomes": Jsonb(outcome_rows(ids), dumps=orjson.dumps)}


@dataclass
class _Id:
    id: str


def backend_ns(pid: int) -> int:
    """Nanoseconds backend `pid` has run (schedstat: exact, unlike stat's clock ticks)."""
    with open(f"/proc/{pid}/schedstat") as f:
        return int(f.read().split()[0])


@dataclass
class Tally:
    client: dict[str, float] = field(default_factory=dict)  # statement -> CPU seconds
    server: dict[str, int] = field(default_factory=dict)  # statement -> backend ns
    calls: dict[str, int] = field(default_factory=dict)

    async def time(self, what: str, pid: int, call: Callable[[], Awaitable[Any]]) -> Any:
        s0 = backend_ns(pid)
        c0 = time.process_time()
        result = await call()
        c1 = time.process_time()
        self.client[what] = self.client.get(what, 0.0) + c1 - c0
        self.server[what] = self.server.get(what, 0) + backend_ns(pid) - s0
        self.calls[what] = self.calls.get(what, 0) + 1
        return result


# One way of running the three statements: SELECT 1, a claim (the claimed ids back) and a
# finish of the ids given; and the pid of the backend that serves them.
@dataclass
class Way:
    pid: int
    select1: Callable[[], Awaitable[Any]]
    claim: Callable[[], Awaitable[list[str]]]
    finish: Callable[[list[str]], Awaitable[Any]]


Opened = tuple[Way, Callable[[], Awaitable[None]]]  # a way and what closes it

CLAIM = {"worker": WORKER, "lease": LEASE, "handlers": HANDLERS}


async def psycopg_store(url: str, batch: int) -> Opened:
    store = make_store(url)
    assert isinstance(store, PostgresStore)
    await store.open()
    pool = store._db
    async with pool.connection() as c:  # the pool's one connection, as sequential calls use
        pid = c.info.backend_pid
    claimed: dict[str, Any] = {}

    async def select1() -> Any:
        async with pool.connection() as c:
            return await (await c.execute("SELECT 1")).fetchall()

    async def claim() -> list[str]:
        tasks = await store.claim(WORKER, batch, LEASE, HANDLERS)
        claimed.update((t.id, t) for t in tasks)
        return [t.id for t in tasks]

    async def finish(ids: list[str]) -> Any:
        return await store.finish(WORKER, noop_outcomes([claimed.pop(i) for i in ids]))

    return Way(pid, select1, claim, finish), store.close


async def psycopg_pool(url: str, batch: int) -> Opened:
    store = make_store(url)
    assert isinstance(store, PostgresStore)
    await store.open()
    pool = store._db
    async with pool.connection() as c:
        pid = c.info.backend_pid

    async def select1() -> Any:
        async with pool.connection() as c:
            return await (await c.execute("SELECT 1")).fetchall()

    async def claim() -> list[str]:
        async with pool.connection() as c:
            rows = await (await c.execute(QUERIES["claim"], {**CLAIM, "limit": batch})).fetchall()
        return [r[0] for r in rows]

    async def finish(ids: list[str]) -> Any:
        async with pool.connection() as c:
            return await (await c.execute(QUERIES["finish_bare"], finish_params(ids))).fetchall()

    return Way(pid, select1, claim, finish), store.close


async def psycopg_conn(url: str, batch: int) -> Opened:
    conn = await psycopg.AsyncConnection.connect(url, autocommit=True, options="-c TimeZone=UTC")
    set_json_loads(orjson.loads, conn)

    async def select1() -> Any:
        return await (await conn.execute("SELECT 1")).fetchall()

    async def claim() -> list[str]:
        rows = await (await conn.execute(QUERIES["claim"], {**CLAIM, "limit": batch})).fetchall()
        return [r[0] for r in rows]

    async def finish(ids: list[str]) -> Any:
        return await (await conn.execute(QUERIES["finish_bare"], finish_params(ids))).fetchall()

    return Way(conn.info.backend_pid, select1, claim, finish), conn.close


async def _asyncpg_codecs(conn: Any) -> None:
    for name in ("json", "jsonb"):
        await conn.set_type_codec(
            name,
            encoder=lambda v: orjson.dumps(v).decode(),
            decoder=orjson.loads,
            schema="pg_catalog",
        )


CLAIM_N, CLAIM_NAMES = numbered(QUERIES["claim"])
FINISH_N, FINISH_NAMES = numbered(QUERIES["finish_bare"])


def _args(names: list[str], values: dict[str, Any]) -> list[Any]:
    return [values[n] for n in names]


async def _keep(conn: Any) -> None:
    """No reset on release: asyncpg's default (Connection.reset) is a statement (RESET ALL,
    UNLISTEN *, ...) at every release, where psycopg's pool sends none for an idle
    autocommit connection; the store would not need it either."""


async def asyncpg_pool(url: str, batch: int) -> Opened:
    pool = await asyncpg.create_pool(
        url,
        min_size=1,
        max_size=1,
        init=_asyncpg_codecs,
        reset=_keep,
        server_settings={"TimeZone": "UTC"},
    )
    async with pool.acquire() as c:
        pid = c.get_server_pid()
    claim_args = _args(CLAIM_NAMES, {**CLAIM, "limit": batch})

    async def select1() -> Any:
        async with pool.acquire() as c:
            return await c.fetch("SELECT 1")

    async def claim() -> list[str]:
        async with pool.acquire() as c:
            rows = await c.fetch(CLAIM_N, *claim_args)
        return [r[0] for r in rows]

    async def finish(ids: list[str]) -> Any:
        values = {"worker": WORKER, "id": ids, "outcomes": outcome_rows(ids)}
        async with pool.acquire() as c:
            return await c.fetch(FINISH_N, *_args(FINISH_NAMES, values))

    return Way(pid, select1, claim, finish), pool.close


async def asyncpg_conn(url: str, batch: int) -> Opened:
    conn = await asyncpg.connect(url, server_settings={"TimeZone": "UTC"})
    await _asyncpg_codecs(conn)
    one = await conn.prepare("SELECT 1")
    claim_stmt = await conn.prepare(CLAIM_N)
    finish_stmt = await conn.prepare(FINISH_N)
    claim_args = _args(CLAIM_NAMES, {**CLAIM, "limit": batch})

    async def select1() -> Any:
        return await one.fetch()

    async def claim() -> list[str]:
        return [r[0] for r in await claim_stmt.fetch(*claim_args)]

    async def finish(ids: list[str]) -> Any:
        values = {"worker": WORKER, "id": ids, "outcomes": outcome_rows(ids)}
        return await finish_stmt.fetch(*_args(FINISH_NAMES, values))

    return Way(conn.get_server_pid(), select1, claim, finish), conn.close


WAYS: dict[
    tuple[str, str], Callable[[str, int], Awaitable[tuple[Way, Callable[[], Awaitable[None]]]]]
]
WAYS = {
    ("psycopg", "store"): psycopg_store,
    ("psycopg", "pool"): psycopg_pool,
    ("psycopg", "conn"): psycopg_conn,
    ("asyncpg", "pool"): asyncpg_pool,
    ("asyncpg", "conn"): asyncpg_conn,
}


async def some(way: Way, tally: Tally, batch: int, calls: int) -> None:
    """`calls` of each statement, one way, counted in `tally`."""
    for _ in range(calls):
        await tally.time("SELECT 1", way.pid, way.select1)
    for _ in range(calls):
        ids = await tally.time("claim", way.pid, way.claim)
        if len(ids) != batch:
            raise SystemExit(f"a claim got {len(ids)} tasks, not {batch}: the queue ran short")
        await tally.time("finish", way.pid, lambda ids=ids: way.finish(ids))


def loops() -> dict[str, Callable[[], asyncio.AbstractEventLoop]]:
    found = {"asyncio": asyncio.new_event_loop}
    if uvloop is not None:
        found["uvloop"] = uvloop.new_event_loop
    return found


STATEMENTS = ("SELECT 1", "claim", "finish")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--calls", type=int, default=2000)
    parser.add_argument("--warmup", type=int, default=200)
    parser.add_argument("--batch", type=int, default=8, help="tasks a claim and a finish take")
    parser.add_argument("--rounds", type=int, default=10, help="the calls are split in rounds")
    parser.add_argument("--ways", default=",".join(f"{d} {w}" for d, w in WAYS))
    args = parser.parse_args()
    if asyncpg is None:
        print("asyncpg is not importable here: its rows are skipped (see --help for a venv)")
    if uvloop is None:
        print("uvloop is not importable here: asyncio's loop only")
    chosen = [
        (driver, way)
        for driver, way in WAYS
        if f"{driver} {way}" in args.ways.split(",") and (driver != "asyncpg" or asyncpg)
    ]
    keys = [(driver, way, loop) for driver, way in chosen for loop in loops()]
    per_round = max(1, args.calls // args.rounds)
    results = {key: Tally() for key in keys}
    with postgres_url() as url, contextlib.ExitStack() as stack:
        with connect(url) as conn:  # migrates; the queue every claim takes from
            total = (args.warmup + per_round * args.rounds) * args.batch * len(keys)
            for _ in range(0, total, 500):
                conn.submit_many("bench.noop", [{}] * 500)
        runners = {
            name: stack.enter_context(asyncio.Runner(loop_factory=factory))
            for name, factory in loops().items()
        }
        opened = {}
        for driver, way, loop in keys:
            opened[(driver, way, loop)] = runners[loop].run(WAYS[(driver, way)](url, args.batch))
            stack.callback(runners[loop].run, opened[(driver, way, loop)][1]())
        for key in keys:  # the warm-up, not counted
            runners[key[2]].run(some(opened[key][0], Tally(), args.batch, args.warmup))
        # rounds, every way in each, in a rotating order, so that the machine's changing load
        # falls on all of them alike
        for r in range(args.rounds):
            for key in keys[r % len(keys) :] + keys[: r % len(keys)]:
                runners[key[2]].run(some(opened[key][0], results[key], args.batch, per_round))
    print(
        f"client CPU / backend CPU per call, us ({per_round * args.rounds} calls of each "
        f"after {args.warmup}, batch {args.batch}; load {os.getloadavg()[0]:.2f})"
    )
    print("| driver | way | loop | " + " | ".join(STATEMENTS) + " |")
    print("|---|---|---|" + "---|" * len(STATEMENTS))
    for (driver, way, loop_name), tally in results.items():
        cells = [
            f"{tally.client[s] / tally.calls[s] * 1e6:.0f} / "
            f"{tally.server[s] / tally.calls[s] / 1e3:.0f}"
            for s in STATEMENTS
        ]
        print(f"| {driver} | {way} | {loop_name} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
