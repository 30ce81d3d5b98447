"""Task commands: submit, get, list, cancel, clear, delete, watch, purge, definitions.

All but purge also work against a server: ``--url`` (or TASKSTATUS_URL) in place of
``--database`` (cli/remote.py).
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from datetime import timedelta
from pathlib import Path
from typing import Annotated, Any

import orjson
import typer
from rich.console import Group
from rich.live import Live
from rich.progress import BarColumn, Progress, TaskProgressColumn, TextColumn, TimeElapsedColumn
from rich.table import Table
from rich.text import Text

from taskstatus.cli import DATABASE_DEFAULT, Database, Imports, app, fail, load_modules, out, run
from taskstatus.cli.remote import Url, open_tasks
from taskstatus.client import AsyncRemoteConnection, TaskEvent
from taskstatus.connection import AsyncConnection
from taskstatus.errors import HasSubtasks, NotFound
from taskstatus.model import CompletionStatus, Target, TargetType, Task, TaskState
from taskstatus.options import DEFAULT_PRIORITY
from taskstatus.views import iso, task_status

# `watch` exits with the task's outcome (2 is taken by usage errors), or NO_SUCH_TASK.
EXIT_CODES = {
    CompletionStatus.SUCCESS: 0,
    CompletionStatus.ERROR: 1,
    CompletionStatus.WARNING: 3,
    CompletionStatus.TERMINATED: 4,
    CompletionStatus.TEMPERROR: 5,
}
NO_SUCH_TASK = 6

Json = Annotated[bool, typer.Option("--json", help="Print the v2024 TaskStatus JSON")]


def _arguments(text: str | None) -> dict[str, Any]:
    if text is None:
        return {}
    if text.startswith("@"):
        text = Path(text[1:]).read_text()
    try:
        value = json.loads(text)
    except json.JSONDecodeError as e:
        fail(f"arguments are not valid JSON: {e}")
    if not isinstance(value, dict):
        fail("arguments must be a JSON object, like '{\"seconds\": 5}'")
    return value


def _print_json(value: Any) -> None:
    out.print_json(orjson.dumps(value).decode())


def _state_style(task: Task) -> str:
    return {
        TaskState.SUCCEEDED: "green",
        TaskState.FAILED: "red",
        TaskState.DEAD: "red",
        TaskState.CANCELLED: "yellow",
        TaskState.CANCEL_REQUESTED: "yellow",
        TaskState.RUNNING: "cyan",
    }.get(task.state, "")


@app.command()
def submit(
    handler: Annotated[str, typer.Argument(help="Name of the handler (task definition)")],
    arguments: Annotated[
        str | None, typer.Argument(help="Arguments as a JSON object, or @file.json")
    ] = None,
    database: Database = DATABASE_DEFAULT,
    url: Url = None,
    imports: Imports = None,
    target_id: Annotated[str | None, typer.Option(help="Id of what the task acts on")] = None,
    target_type: Annotated[TargetType | None, typer.Option(help="APPLICATION or IDENTITY")] = None,
    target_name: Annotated[str | None, typer.Option(help="Name of what the task acts on")] = None,
    priority: Annotated[int, typer.Option(help="Higher runs sooner")] = DEFAULT_PRIORITY,
    max_attempts: Annotated[int | None, typer.Option(min=1, help="Runs allowed in all")] = None,
    timeout: Annotated[float | None, typer.Option(min=0.001, help="Seconds a run may take")] = None,
    delay: Annotated[
        float | None, typer.Option(min=0, max=10 * 365 * 86400, help="Start no sooner than in N s")
    ] = None,
    idempotency_key: Annotated[
        str | None, typer.Option(help="Submitting the same key again returns the same task")
    ] = None,
    wait: Annotated[bool, typer.Option(help="Wait for the task to end")] = False,
    as_json: Json = False,
) -> None:
    """Submit a task and print its id."""
    load_modules(imports)
    args = _arguments(arguments)
    target = None
    if target_id or target_type or target_name:
        target = Target(target_id, target_type, target_name)

    async def go() -> Task:
        async with open_tasks(database, url) as conn:
            task = await conn.submit(
                handler,
                args,
                target=target,
                priority=priority,
                max_attempts=max_attempts,
                timeout=timeout,
                run_at=timedelta(seconds=delay) if delay else None,
                idempotency_key=idempotency_key,
            )
            return await conn.wait(task.id) if wait else task

    task = run(go())
    if as_json:
        _print_json(task_status(task))
    else:
        out.print(task.id)
    if wait and task.completion_status is not None:
        raise typer.Exit(EXIT_CODES[task.completion_status])


@app.command()
def get(
    task_id: Annotated[str, typer.Argument(help="Task id")],
    database: Database = DATABASE_DEFAULT,
    url: Url = None,
    as_json: Json = False,
) -> None:
    """Show one task: its state, progress, messages and result."""

    async def go() -> Task:
        async with open_tasks(database, url, must_exist=True) as conn:
            return await conn.get(task_id)

    task = run(go())
    if as_json:
        _print_json(task_status(task))
        return
    table = Table.grid(padding=(0, 2))
    table.add_column(style="bold")
    table.add_column()
    status = task.completion_status.value if task.completion_status else "-"
    rows: list[tuple[str, str | Text]] = [
        ("id", task.id),
        ("name", task.unique_name),
        ("handler", task.handler),
        ("state", Text(task.state.value, style=_state_style(task)) + f" ({status})"),
        ("progress", f"{task.percent_complete}% {task.progress or ''}"),
        ("attempts", f"{task.attempts} of {task.max_attempts}"),
        ("launcher", task.launcher),
        (
            "target",
            f"{task.target.type or ''} {task.target.name or ''} {task.target.id or ''}"
            if task.target
            else "-",
        ),
        ("parent", task.parent_id or "-"),
        ("created", iso(task.created) or ""),
        ("launched", iso(task.launched) or "-"),
        ("completed", iso(task.completed) or "-"),
        ("arguments", orjson.dumps(dict(task.arguments)).decode()),
        ("attributes", orjson.dumps(dict(task.attributes)).decode()),
    ]
    for name, value in rows:
        table.add_row(name, value)
    out.print(table)
    for m in task.messages:
        colour = {"ERROR": "red", "WARN": "yellow"}.get(m.type.value, "dim")
        out.print(Text("  ") + Text(f"{m.type.value:5}", style=colour) + f" {m.text}")


@app.command("list")
def list_(
    database: Database = DATABASE_DEFAULT,
    url: Url = None,
    filters: Annotated[
        str | None,
        typer.Option(
            "--filter", "-f", help='e.g. completionStatus eq "ERROR" and type eq "QUARTZ"'
        ),
    ] = None,
    sorters: Annotated[
        str, typer.Option("--sort", "-s", help="e.g. -created,uniqueName")
    ] = "-created",
    pending: Annotated[
        bool | None, typer.Option("--pending/--completed", help="Only one kind")
    ] = None,
    limit: Annotated[int, typer.Option(min=0, max=10000)] = 50,
    offset: Annotated[int, typer.Option(min=0)] = 0,
    as_json: Json = False,
) -> None:
    """List tasks, filtered and sorted with the standard collection syntax."""
    text = filters
    if pending is not None:
        kind = "completionStatus isnull" if pending else "completionStatus pr"
        text = f"{kind} and ({filters})" if filters else kind

    async def go() -> tuple[list[Task], int]:
        async with open_tasks(database, url, must_exist=True) as conn:
            found = await conn.query(text, sorters, limit=limit, offset=offset)
            return found, await conn.count(text)

    tasks, total = run(go())
    if as_json:
        _print_json([task_status(t) for t in tasks])
        return
    table = Table(title=f"{len(tasks)} of {total} tasks", title_justify="left")
    table.add_column("id", no_wrap=True, min_width=32)
    table.add_column("name", overflow="fold")
    table.add_column("state", no_wrap=True)
    table.add_column("%", justify="right", no_wrap=True)
    table.add_column("created", no_wrap=True)
    for t in tasks:
        status = f" {t.completion_status.value}" if t.completion_status else ""
        table.add_row(
            t.id,
            t.unique_name,
            Text(t.state.value, style=_state_style(t)) + status,
            str(t.percent_complete),
            t.created.strftime("%Y-%m-%d %H:%M:%S"),
        )
    out.print(table)


@app.command()
def cancel(
    task_id: Annotated[str, typer.Argument(help="Task id")],
    database: Database = DATABASE_DEFAULT,
    url: Url = None,
) -> None:
    """Cancel a queued task, or ask a running one to stop."""

    async def go() -> Task:
        async with open_tasks(database, url, must_exist=True) as conn:
            return await conn.cancel(task_id)

    task = run(go())
    out.print(f"{task.id} {task.state.value}")


@app.command()
def watch(
    task_id: Annotated[str, typer.Argument(help="Task id")],
    database: Database = DATABASE_DEFAULT,
    url: Url = None,
    interval: Annotated[
        float, typer.Option(min=0.05, help="Seconds between looks when no event comes")
    ] = 5.0,
) -> None:
    """Follow a task's events with a live progress bar and its messages under it, as they
    are committed (from any worker process or node); exit with its outcome (0 SUCCESS,
    1 ERROR, 3 WARNING, 4 TERMINATED, 5 TEMPERROR), or 6 if there is no such task."""

    async def go() -> Task:
        async with open_tasks(database, url, must_exist=True) as conn:
            try:
                task = await conn.get(task_id)
            except NotFound as e:
                fail(str(e), NO_SUCH_TASK)
            columns = (
                TextColumn("[bold]{task.fields[name]}"),
                BarColumn(),
                TaskProgressColumn(),
                TimeElapsedColumn(),
                TextColumn("{task.description}"),
            )
            bar = Progress(*columns, console=out)
            row = bar.add_task(task.progress or "", total=100, name=task.unique_name)
            bar.update(row, completed=task.percent_complete)
            messages = Text()
            with Live(Group(bar, messages), console=out, refresh_per_second=10):
                async for batch in _changes(conn, task_id, interval):
                    for kind, data in batch:
                        if "percentComplete" in data:  # progress, or the end's completed
                            bar.update(
                                row,
                                completed=data["percentComplete"],
                                description=data["progress"] or "",
                            )
                        elif kind == "message":
                            text = data.get("text") or data.get("localizedText", {}).get("message")
                            style = {"WARN": "yellow", "ERROR": "red"}.get(data.get("type", ""))
                            messages.append(f"{data.get('type', ''):5} {text}\n", style)
                    task = await conn.get(task_id)
                    if task.terminal:
                        bar.update(row, completed=task.percent_complete)
                        return task
            return await conn.get(task_id)

    task = run(go())
    assert task.completion_status is not None
    out.print(f"{task.id} {task.state.value} ({task.completion_status.value})")
    raise typer.Exit(EXIT_CODES[task.completion_status])


async def _changes(
    conn: AsyncConnection | AsyncRemoteConnection, task_id: str, interval: float
) -> AsyncIterator[list[tuple[str, dict[str, Any]]]]:
    """The task's events in batches (kind, v2024 data), from the start until it ends: from
    the store's notifications against a database, from the event stream against a server
    (a server without one is looked at every `interval` seconds). An empty batch now and
    then says: look at the task."""
    if isinstance(conn, AsyncRemoteConnection):
        stream: AsyncIterator[TaskEvent] = conn.watch(task_id)
        try:
            async for event in stream:
                yield [(event.kind, dict(event.data))]
        except NotFound:  # a server without the event stream
            while True:
                await asyncio.sleep(interval)
                yield []
        finally:
            await stream.aclose()  # type: ignore[attr-defined]
        return
    async for found in conn.service.events.stream(task_id, 0, interval):
        yield [(e.kind, dict(e.data)) for e in found]


@app.command()
def clear(
    task_id: Annotated[str, typer.Argument(help="Task id")],
    status: Annotated[
        CompletionStatus, typer.Argument(help="SUCCESS, WARNING, ERROR, TERMINATED or TEMPERROR")
    ],
    database: Database = DATABASE_DEFAULT,
    url: Url = None,
) -> None:
    """End a pending task by hand with a completion status; its worker is told to stop."""

    async def go() -> Task:
        async with open_tasks(database, url, must_exist=True) as conn:
            return await conn.clear(task_id, status)

    task = run(go())
    assert task.completion_status is not None
    out.print(f"{task.id} {task.state.value} ({task.completion_status.value})")


@app.command()
def delete(
    task_id: Annotated[str, typer.Argument(help="Task id")],
    database: Database = DATABASE_DEFAULT,
    url: Url = None,
    force: Annotated[bool, typer.Option(help="Also delete its subtasks")] = False,
) -> None:
    """Delete a task (kept as history), cancelling it if it runs. A task with subtasks needs
    --force, which deletes them too."""

    async def go() -> list[str]:
        async with open_tasks(database, url, must_exist=True) as conn:
            try:
                return await conn.delete(task_id, force=force)
            except HasSubtasks as e:
                ids = ", ".join(t.id for t in e.subtasks if isinstance(t, Task))
                fail(f"{e} ({ids})")

    for deleted in run(go()):
        out.print(f"{deleted} deleted")


@app.command()
def purge(
    database: Database = DATABASE_DEFAULT,
    older_than_days: Annotated[
        float, typer.Option(min=0, envvar="TASKSTATUS_RETENTION_DAYS", help="Retention window")
    ] = 90.0,
) -> None:
    """Delete for good the finished (or deleted) tasks older than the retention window."""

    async def go() -> int:
        async with AsyncConnection(database, must_exist=True) as conn:
            return await conn.service.purge(conn.caller, timedelta(days=older_than_days))

    out.print(f"purged {run(go())} tasks")


@app.command()
def definitions(
    database: Database = DATABASE_DEFAULT,
    url: Url = None,
    imports: Imports = None,
) -> None:
    """List the handlers (task definitions) known to this database or server."""
    load_modules(imports)

    async def go() -> list[tuple[str, str, str]]:
        async with open_tasks(database, url, must_exist=True) as conn:
            found = await conn.definitions()
            return [(d.name, d.summary.executor, d.summary.description) for d in found]

    table = Table("name", "executor", "description")
    for row in run(go()):
        table.add_row(*row)
    out.print(table)
