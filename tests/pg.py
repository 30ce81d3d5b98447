"""PostgreSQL for the tests: a database per test, and a proxy that counts round trips.

Each session migrates one template database (through `PostgresStore.open`, the real path) and
clones a fresh database from it for each test (``CREATE DATABASE ... TEMPLATE``), so tests never
see each other's tasks, notifications or settings; all of it is dropped as the session ends.
The server is ``TASKSTATUS_TEST_POSTGRES`` (a postgresql:// URL of a database to connect to
with the right to create databases), by default the local one with trust authentication.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import os
import secrets
from collections.abc import Iterator
from urllib.parse import urlsplit

import psycopg
import pytest
from psycopg import sql

from taskstatus.store.postgres import PostgresStore

ADMIN_URL = os.environ.get("TASKSTATUS_TEST_POSTGRES", "postgresql://postgres@127.0.0.1:5432/test")


def required() -> bool:
    """On CI the PostgreSQL tests must run: a missing server fails them instead of skipping."""
    return os.environ.get("CI", "").strip().lower() in ("true", "1", "yes")


def database_url(admin_url: str, name: str) -> str:
    return urlsplit(admin_url)._replace(path=f"/{name}").geturl()


def via_port(url: str, port: int) -> str:
    """`url` with its host and port replaced by 127.0.0.1:`port` (a proxy's)."""
    parts = urlsplit(url)
    user = parts.netloc.rpartition("@")[0]
    return parts._replace(
        netloc=f"{user}@127.0.0.1:{port}" if user else f"127.0.0.1:{port}"
    ).geturl()


class PgServer:
    """The session's databases on one server: a migrated template and a clone per test."""

    def __init__(self, admin_url: str) -> None:
        self.admin_url = admin_url
        self.admin = psycopg.connect(admin_url, autocommit=True, connect_timeout=5)
        self.prefix = f"taskstatus_test_{os.getpid()}_{secrets.token_hex(3)}"
        self.template = f"{self.prefix}_template"
        self._numbers = itertools.count(1)
        self._created: list[str] = []

    def url(self, name: str) -> str:
        return database_url(self.admin_url, name)

    def create_database(self, template: str | None = None) -> str:
        """A new database cloned from `template` (by default the migrated one); its name."""
        name = f"{self.prefix}_{next(self._numbers)}"
        self.admin.execute(
            sql.SQL("CREATE DATABASE {} TEMPLATE {}").format(
                sql.Identifier(name), sql.Identifier(template or self.template)
            )
        )
        self._created.append(name)
        return name

    def drop_database(self, name: str) -> None:
        # FORCE: a worker process or an unclosed store may still be connected.
        self.admin.execute(
            sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
        )
        with contextlib.suppress(ValueError):
            self._created.remove(name)

    def migrate_template(self) -> None:
        self.admin.execute(
            sql.SQL("CREATE DATABASE {} TEMPLATE template0").format(sql.Identifier(self.template))
        )

        async def migrate() -> None:
            store = PostgresStore(self.url(self.template))
            await store.open()
            await store.close()

        asyncio.run(migrate())

    def close(self) -> None:
        if self.admin.closed:
            return
        for name in [*self._created, self.template]:
            self.drop_database(name)
        self.admin.close()


def server() -> Iterator[PgServer]:
    """The session's server, or a skip (a failure when CI=true) saying why there is none."""
    try:
        pg = PgServer(ADMIN_URL)
    except psycopg.OperationalError as exc:
        reason = f"PostgreSQL is not reachable at {ADMIN_URL}: {' '.join(str(exc).split())}"
        if required():
            pytest.fail(f"{reason}\nCI=true: the PostgreSQL tests must run.", pytrace=False)
        pytest.skip(f"{reason} (set TASKSTATUS_TEST_POSTGRES, or start a server)")
    try:
        pg.migrate_template()
        yield pg
    finally:
        pg.close()


class Statements:
    """The statements in one connection's stream of frontend messages (no TLS): each Bind of
    the extended protocol and each simple Query runs one (a BEGIN or a COMMIT too)."""

    PROTOCOL_3 = 196608  # the startup message's code; SSL and GSS requests come before it

    def __init__(self) -> None:
        self._pending = b""
        self._started = False

    def count(self, data: bytes) -> int:
        """How many statements `data`, the next bytes of the stream, completes."""
        self._pending += data
        found = 0
        while True:
            if self._started:  # a type byte, then the length of the rest
                if len(self._pending) < 5:
                    return found
                length = 1 + int.from_bytes(self._pending[1:5], "big")
            else:  # untyped: the length, then a code
                if len(self._pending) < 8:
                    return found
                length = int.from_bytes(self._pending[:4], "big")
            if len(self._pending) < length:
                return found
            message, self._pending = self._pending[:length], self._pending[length:]
            if not self._started:
                self._started = int.from_bytes(message[4:8], "big") == self.PROTOCOL_3
            elif message[:1] in (b"B", b"Q"):
                found += 1


class RoundTrips:
    """A TCP proxy in front of the server that counts round trips: a round trip begins each
    time a client sends after the server has answered (or for the first time). It counts the
    statements the clients send too (`Statements`)."""

    def __init__(self, admin_url: str) -> None:
        parts = urlsplit(admin_url)
        self.host = parts.hostname or "127.0.0.1"
        self.port = parts.port or 5432
        self.count = 0
        self.statements = 0
        self._server: asyncio.Server | None = None
        self._pumps: set[asyncio.Task[None]] = set()

    async def start(self) -> int:
        """Start listening; the proxy's port."""
        self._server = await asyncio.start_server(self._connection, "127.0.0.1", 0)
        port: int = self._server.sockets[0].getsockname()[1]
        return port

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
        for pump in self._pumps:
            pump.cancel()
        await asyncio.gather(*self._pumps, return_exceptions=True)

    async def _connection(
        self, client: asyncio.StreamReader, to_client: asyncio.StreamWriter
    ) -> None:
        server, to_server = await asyncio.open_connection(self.host, self.port)
        answered = [True]  # per connection: did the server speak last?
        statements = Statements()

        async def pump(src: asyncio.StreamReader, dst: asyncio.StreamWriter, up: bool) -> None:
            try:
                while data := await src.read(65536):
                    if up and answered[0]:
                        self.count += 1
                    if up:
                        self.statements += statements.count(data)
                    answered[0] = not up
                    dst.write(data)
                    await dst.drain()
            except (ConnectionError, asyncio.CancelledError):
                pass
            finally:
                dst.close()

        for pump_task in (
            asyncio.create_task(pump(client, to_server, up=True)),
            asyncio.create_task(pump(server, to_client, up=False)),
        ):
            self._pumps.add(pump_task)
            pump_task.add_done_callback(self._pumps.discard)
