"""A real HTTP server per test: uvicorn on a loopback port, in a thread of the test process."""

from __future__ import annotations

import asyncio
import json
import sqlite3
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx
import psycopg
import pytest

import taskstatus.demo  # noqa: F401 - the demo handlers, as `serve` has them
from taskstatus.api import create_app
from taskstatus.api.server import uvicorn_config
from taskstatus.connection import Connection, connect
from taskstatus.credentials import IssuedClient, new_client
from taskstatus.service import utcnow
from taskstatus.settings import Settings
from taskstatus.store import make_store
from tests.conftest import serving


@dataclass
class Server:
    url: str
    database: str
    client_id: str
    client_secret: str
    settings: Settings
    app: Any = None  # the ASGI app, to look at its state
    _tokens: dict[tuple[str, str], str] = field(default_factory=dict)

    def token(self, client_id: str | None = None, secret: str | None = None, **form: str) -> str:
        key = (client_id or self.client_id, secret or self.client_secret)
        if key not in self._tokens or form:
            r = httpx.post(
                f"{self.url}/oauth/token",
                data={
                    "grant_type": "client_credentials",
                    "client_id": key[0],
                    "client_secret": key[1],
                    **form,
                },
            )
            assert r.status_code == 200, r.text
            if form:
                return str(r.json()["access_token"])
            self._tokens[key] = r.json()["access_token"]
        return self._tokens[key]

    def client(self, token: str | None = None) -> httpx.Client:
        """An HTTP client authenticated as the admin (or with `token`)."""
        return httpx.Client(
            base_url=self.url, headers={"Authorization": f"Bearer {token or self.token()}"}
        )

    def connect(self) -> Connection:
        """The Python API on the server's database (tasks launched by 'admin')."""
        return connect(self.database, launcher="admin")

    def sql(self, statement: str, *params: object) -> None:
        """Run SQL on the server's database behind its back (``?`` placeholders; datetimes
        are stored the way the backend stores them): to backdate a row, or break a table."""
        if self.database.startswith("sqlite"):
            values = [
                p.isoformat(timespec="microseconds") if isinstance(p, datetime) else p
                for p in params
            ]
            with sqlite3.connect(self.database.removeprefix("sqlite:///")) as db:
                db.execute(statement, values)
        else:
            with psycopg.connect(self.database, autocommit=True) as db:
                db.execute(statement.replace("?", "%s"), params)

    def new_client(self, name: str, *scopes: str, owner: str | None = None) -> tuple[str, str]:
        """A new API client (id, secret) with `scopes`."""

        async def create() -> IssuedClient:
            store = make_store(self.database)
            await store.open()
            try:
                issued = new_client(name, scopes, owner, utcnow())
                await store.save_client(issued.client)
                return issued
            finally:
                await store.close()

        issued = asyncio.run(create())
        return issued.client.id, issued.secret


def run_server(settings: Settings, **app_options: Any) -> Iterator[Server]:
    """A uvicorn server of `create_app(settings, **app_options)` in a thread, until the
    generator is closed."""
    app = create_app(settings, **app_options)
    config = uvicorn_config(
        app, settings, host="127.0.0.1", port=0, access_log=False, lifespan="on"
    )
    with serving(config) as port:
        creds = json.loads(settings.credentials_file.read_text())
        yield Server(
            f"http://127.0.0.1:{port}",
            settings.database,
            creds["client_id"],
            creds["client_secret"],
            settings,
            app,
        )


def settings_for(store_url: str, tmp_path: Path, **overrides: Any) -> Settings:
    base: dict[str, Any] = {
        "database": store_url,
        "credentials_file": tmp_path / "credentials.json",
        "concurrency": 4,
        "poll_interval": 0.05,
        "lease_seconds": 5,
        "grace_period": 1,
        "rate_limit": 0,
    }
    return Settings(**{**base, **overrides})


@pytest.fixture
def server(store_url: str, tmp_path: Path) -> Iterator[Server]:
    yield from run_server(settings_for(store_url, tmp_path))


@pytest.fixture
def idle_server(store_url: str, tmp_path: Path) -> Iterator[Server]:
    """A server without workers: submitted tasks stay queued."""
    yield from run_server(settings_for(store_url, tmp_path, concurrency=0))
