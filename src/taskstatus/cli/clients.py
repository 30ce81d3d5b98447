"""clients: create, list and revoke the OAuth2 clients of the HTTP API."""

from __future__ import annotations

from typing import Annotated

import orjson
import typer
from rich.table import Table

from taskstatus.cli import DATABASE_DEFAULT, Database, app, out, run
from taskstatus.credentials import SCOPES, ApiClient, IssuedClient
from taskstatus.service import TaskService, utcnow

clients = typer.Typer(help="Manage the API's OAuth2 clients.", no_args_is_help=True)
app.add_typer(clients, name="clients")


@clients.command("create")
def create(
    name: Annotated[str, typer.Argument(help="A name for the client (unique among active ones)")],
    scope: Annotated[
        list[str] | None,
        typer.Option("--scope", "-s", help=f"Repeatable: {', '.join(SCOPES)} (default: read)"),
    ] = None,
    owner: Annotated[
        str | None, typer.Option(help="Launcher of the tasks it submits (default: the name)")
    ] = None,
    as_json: Annotated[
        bool, typer.Option("--json", help='Print {"client_id", "client_secret"}')
    ] = False,
    database: Database = DATABASE_DEFAULT,
) -> None:
    """Create a client and print its id and secret (the secret is shown only now)."""
    scopes = [s for item in scope or ["tasks:read"] for s in item.replace(",", " ").split()]

    async def go() -> IssuedClient:
        async with TaskService.from_url(database) as service:
            return await service.clients.create(name, scopes, owner, utcnow())

    issued = run(go())
    if as_json:
        out.print(orjson.dumps(issued.as_json()).decode(), highlight=False, soft_wrap=True)
    else:
        out.print(
            f"client_id:     {issued.client.id}\nclient_secret: {issued.secret}", highlight=False
        )
        out.print(
            f"scopes: {' '.join(issued.client.scopes)}; owner: {issued.client.owner}",
            highlight=False,
        )


@clients.command("list")
def list_(
    database: Database = DATABASE_DEFAULT,
    as_json: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """List clients (secrets are never shown)."""

    async def go() -> list[ApiClient]:
        async with TaskService.from_url(database) as service:
            return await service.clients.list_all()

    found = run(go())
    if as_json:
        rows = [
            {
                "client_id": c.id,
                "name": c.name,
                "scopes": list(c.scopes),
                "owner": c.owner,
                "created": c.created.isoformat(),
                "revoked": c.revoked.isoformat() if c.revoked else None,
            }
            for c in found
        ]
        out.print(orjson.dumps(rows).decode(), highlight=False, soft_wrap=True)
        return
    table = Table("client_id", "name", "scopes", "owner", "created", "revoked")
    for c in found:
        table.add_row(
            c.id,
            c.name,
            " ".join(c.scopes),
            c.owner,
            c.created.strftime("%Y-%m-%d %H:%M"),
            c.revoked.strftime("%Y-%m-%d %H:%M") if c.revoked else "",
        )
    out.print(table)


@clients.command("revoke")
def revoke(
    client_id: Annotated[str, typer.Argument(help="The client's id")],
    database: Database = DATABASE_DEFAULT,
) -> None:
    """Revoke a client: its secret and tokens stop working (within 10 s on every node)."""

    async def go() -> bool:
        async with TaskService.from_url(database) as service:
            return await service.clients.revoke(client_id, utcnow())

    out.print(f"{client_id} revoked" if run(go()) else f"{client_id} was already revoked")
