"""``taskstatus schedules ...`` and ``taskstatus limits ...``: manage schedules and limits in
the database every node shares (the service's rules: taskstatus.scheduling), or, with --url
or TASKSTATUS_URL, on a server (the remote client's `connect(url).schedules`)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Annotated, Any, TypeVar

import orjson
import typer
from rich.table import Table

from taskstatus.cli import DATABASE_DEFAULT, Database, Imports, app, load_modules, out, run
from taskstatus.cli.remote import Url, open_tasks
from taskstatus.cli.tasks import _arguments
from taskstatus.connection import AsyncTasks
from taskstatus.limits_policy import HandlerLimits
from taskstatus.schedules import Missed, Overlap, Schedule, schedule_document
from taskstatus.service import utcnow

T = TypeVar("T")

schedules_app = typer.Typer(help="Schedules: run a handler by cron or at an interval.")
limits_app = typer.Typer(help="Limits: most running and most starts per second, every node.")
app.add_typer(schedules_app, name="schedules")
app.add_typer(limits_app, name="limits")

Json = Annotated[bool, typer.Option("--json", help="Print JSON")]


def _with(database: str, url: str | None, job: Callable[[AsyncTasks], Awaitable[T]]) -> T:
    async def go() -> T:
        async with open_tasks(database, url, must_exist=True) as conn:
            return await job(conn)

    return run(go())


def _show(items: list[Schedule], as_json: bool) -> None:
    now = utcnow()
    docs = [schedule_document(s, now, upcoming=3) for s in items]
    if as_json:
        out.print_json(orjson.dumps(docs).decode())
        return
    table = Table("name", "handler", "when", "timezone", "missed", "overlap", "next firings")
    for s, d in zip(items, docs, strict=True):
        when = s.cron if s.cron is not None else f"every {s.every:g} s"
        upcoming = "paused" if s.paused else ", ".join(d["nextFires"])
        table.add_row(s.name, s.handler, when, s.timezone, s.missed, s.overlap, upcoming)
    out.print(table)


@schedules_app.command("add")
def add(
    name: Annotated[str, typer.Argument(help="Name of the schedule")],
    handler: Annotated[str, typer.Argument(help="Handler each firing runs")],
    arguments: Annotated[
        str | None, typer.Argument(help="Arguments as a JSON object, or @file.json")
    ] = None,
    cron: Annotated[
        str | None, typer.Option(help="Cron expression: 5 fields, or 6 with seconds first")
    ] = None,
    every: Annotated[float | None, typer.Option(help="Interval in seconds")] = None,
    timezone: Annotated[str, typer.Option(help="IANA time zone of the cron expression")] = "UTC",
    missed: Annotated[Missed, typer.Option(help="Missed firings: fire once (skip) or all")] = (
        Missed.SKIP
    ),
    overlap: Annotated[
        Overlap, typer.Option(help="Fire while the previous task is pending (allow) or not")
    ] = Overlap.ALLOW,
    paused: Annotated[bool, typer.Option(help="Create it paused")] = False,
    database: Database = DATABASE_DEFAULT,
    url: Url = None,
    imports: Imports = None,
    as_json: Json = False,
) -> None:
    """Create a schedule (--cron EXPR or --every SECONDS)."""
    load_modules(imports)
    args = _arguments(arguments)
    created = _with(
        database,
        url,
        lambda c: c.schedules.add(
            name,
            handler,
            args,
            cron=cron,
            every=every,
            timezone=timezone,
            missed=missed,
            overlap=overlap,
            paused=paused,
        ),
    )
    _show([created], as_json)


@schedules_app.command("list")
def list_(database: Database = DATABASE_DEFAULT, url: Url = None, as_json: Json = False) -> None:
    """List the schedules with their next firing times."""
    _show(_with(database, url, lambda c: c.schedules.list()), as_json)


@schedules_app.command("pause")
def pause(
    name: Annotated[str, typer.Argument()], database: Database = DATABASE_DEFAULT, url: Url = None
) -> None:
    """Pause a schedule: it fires no more until resumed."""
    _show([_with(database, url, lambda c: c.schedules.pause(name))], False)


@schedules_app.command("resume")
def resume(
    name: Annotated[str, typer.Argument()], database: Database = DATABASE_DEFAULT, url: Url = None
) -> None:
    """Resume a schedule: it fires from its next firing time after now."""
    _show([_with(database, url, lambda c: c.schedules.resume(name))], False)


@schedules_app.command("delete")
def delete(
    name: Annotated[str, typer.Argument()], database: Database = DATABASE_DEFAULT, url: Url = None
) -> None:
    """Delete a schedule (the tasks it fired stay)."""
    _with(database, url, lambda c: c.schedules.delete(name))
    out.print(f"deleted {name}")


def _limits_row(limits: HandlerLimits) -> list[str]:
    def text(value: Any) -> str:
        return "-" if value is None else f"{value:g}" if isinstance(value, float) else str(value)

    return [
        limits.handler,
        text(limits.concurrency),
        text(limits.rate),
        text(limits.burst if limits.rate is None else limits.bucket_size),
        text(limits.limit_key),
    ]


@limits_app.command("list")
def limits_list(database: Database = DATABASE_DEFAULT, url: Url = None) -> None:
    """List the handlers' limits."""
    table = Table("handler", "concurrency", "rate /s", "burst", "limit key")
    for limits in _with(database, url, lambda c: c.limits.list()):
        table.add_row(*_limits_row(limits))
    out.print(table)


@limits_app.command("set")
def limits_set(
    handler: Annotated[str, typer.Argument(help="Handler to limit")],
    concurrency: Annotated[int | None, typer.Option(help="Most running at once")] = None,
    rate: Annotated[float | None, typer.Option(help="Most starts per second")] = None,
    burst: Annotated[float | None, typer.Option(help="Starts allowed at once (rate)")] = None,
    limit_key: Annotated[
        str | None, typer.Option(help="Argument whose values each get these limits")
    ] = None,
    database: Database = DATABASE_DEFAULT,
    url: Url = None,
    imports: Imports = None,
) -> None:
    """Replace a handler's limits on every node (no option: remove them)."""
    load_modules(imports)
    limits = _with(
        database,
        url,
        lambda c: c.limits.set(
            handler, concurrency=concurrency, rate=rate, burst=burst, limit_key=limit_key
        ),
    )
    out.print("no limits" if limits.empty else " ".join(_limits_row(limits)))
