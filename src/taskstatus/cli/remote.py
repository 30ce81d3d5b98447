"""The CLI against a server: ``--url`` (or TASKSTATUS_URL) on the task commands, and
``login``/``logout``, which save and forget a server's client credentials (0600, in the user's
config directory, as ``gh auth login`` does)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Annotated

import typer

from taskstatus.cli import app, fail, out, run
from taskstatus.client import AsyncRemoteConnection, forget_login, is_remote, save_login
from taskstatus.client.credentials import server_key
from taskstatus.connection import AsyncConnection, AsyncTasks
from taskstatus.errors import Unauthorized

Url = Annotated[
    str | None,
    typer.Option(
        "--url",
        "-u",
        envvar="TASKSTATUS_URL",
        help="A taskstatus server, http(s)://host:port: talk to it instead of a database "
        "(credentials: TASKSTATUS_CLIENT_ID/_SECRET, TASKSTATUS_CREDENTIALS_FILE, or "
        "`taskstatus login`)",
    ),
]


@asynccontextmanager
async def open_tasks(
    database: str, url: str | None, *, must_exist: bool = False
) -> AsyncIterator[AsyncTasks]:
    """The server at `url` when one is given (no local database is opened or created), else
    the database (with `must_exist`, a SQLite file that does not exist is refused, not made)."""
    conn: AsyncTasks
    if url:
        if not is_remote(url):
            fail(f"--url must be an http:// or https:// URL, not {url!r}")
        conn = AsyncRemoteConnection(url)
    else:
        conn = AsyncConnection(database, must_exist=must_exist)
    await conn.open()
    try:
        yield conn
    finally:
        await conn.close()


@app.command()
def login(
    url: Annotated[
        str, typer.Option("--url", "-u", envvar="TASKSTATUS_URL", help="The server, http(s)://...")
    ],
    client_id: Annotated[
        str | None, typer.Option(help="The client id (asked for when not given)")
    ] = None,
) -> None:
    """Ask for a client id and secret, check them against the server, and save them for it
    (mode 0600 in the user's config directory)."""
    try:
        key = server_key(url)
    except ValueError as e:
        fail(str(e))
    client_id = client_id or typer.prompt("Client id").strip()
    secret = typer.prompt("Client secret", hide_input=True).strip()
    if not client_id or not secret:
        fail("a client id and a secret are needed")

    async def check() -> None:
        async with AsyncRemoteConnection(key, client_id=client_id, client_secret=secret):
            pass

    try:
        run(check())
    except Unauthorized as e:
        fail(f"{key} refused these credentials: {e}")
    path = save_login(key, client_id, secret)
    out.print(f"Logged in to {key} as {client_id}; saved in {path}", highlight=False)


@app.command()
def logout(
    url: Annotated[
        str, typer.Option("--url", "-u", envvar="TASKSTATUS_URL", help="The server, http(s)://...")
    ],
) -> None:
    """Forget the credentials saved for a server."""
    try:
        key = server_key(url)
    except ValueError as e:
        fail(str(e))
    if forget_login(key):
        out.print(f"Logged out of {key}", highlight=False)
    else:
        out.print(f"No saved login for {key}", highlight=False)
