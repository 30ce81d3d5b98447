"""The dashboard's pages (GET): overview, tasks, a task, handlers, workers, sign-in.

Every page is whole HTML that reads without JavaScript; with it, htmx's SSE extension keeps
the live parts current (ui/live.py).
"""

from __future__ import annotations

import asyncio
import time
from datetime import UTC, datetime
from typing import Any

from fastapi import APIRouter, Request
from starlette.responses import RedirectResponse, Response

from taskstatus.api.deps import app_state
from taskstatus.api.errors import as_api_error
from taskstatus.errors import NotFound
from taskstatus.model import CompletionStatus, TaskState
from taskstatus.ui import forms
from taskstatus.ui.caller import SignedIn, signed_in, to_login
from taskstatus.ui.charts import throughput_chart
from taskstatus.ui.listing import PAGE_SIZES, SORTABLE, ListQuery
from taskstatus.ui.render import page
from taskstatus.views import crud_task, jira_task, task_status

__all__ = ["overview_context", "router"]

router = APIRouter(prefix="/ui", include_in_schema=False)


def base_context(request: Request, who: SignedIn | None, **context: Any) -> dict[str, Any]:
    """What every page's header and notices need, and `context`."""
    return {
        "session": who,
        "principal": who.session.caller if who else None,
        "can_write": bool(who and who.viewer.can_write),
        "csrf": who.csrf if who else "",
        "notice": request.query_params.get("notice", ""),
        "error": request.query_params.get("error", ""),
        **context,
    }


def own_worker(request: Request) -> tuple[str, int] | None:
    found: tuple[str, int] | None = getattr(request.app.state, "ui_worker", None)
    return found


async def overview_context(request: Request, who: SignedIn) -> dict[str, Any]:
    """What the overview shows (its live part is re-rendered from this too)."""
    viewer = who.viewer
    started = time.perf_counter()
    by_state, by_status, oldest, rows, workers = await asyncio.gather(
        viewer.by_state(),
        viewer.by_status(),
        viewer.oldest_queued(),
        viewer.throughput(),
        viewer.workers(own_worker(request)),
    )
    now = datetime.now(UTC)
    return {
        "by_state": by_state,
        "by_status": by_status,
        "oldest": oldest,
        "chart": throughput_chart(rows, now),
        "workers": workers,
        "now": now,
        "statuses": list(CompletionStatus),
        "took_ms": (time.perf_counter() - started) * 1000,
    }


@router.get("")
async def overview(request: Request) -> Response:
    who = await signed_in(request)
    if who is None:
        return to_login(request)
    context = await overview_context(request, who)
    return page(request, "overview.html", base_context(request, who, title="Overview", **context))


@router.get("/tasks")
async def tasks(request: Request) -> Response:
    who = await signed_in(request)
    if who is None:
        return to_login(request)
    query = ListQuery.from_params(request.query_params)
    where, sort = query.where(), query.sort_keys()
    items, total = await who.viewer.page(where, sort, query.offset, query.limit)
    handlers = [d.name for d in await who.viewer.definitions()]
    return page(
        request,
        "tasks.html",
        base_context(
            request,
            who,
            title="Tasks",
            query=query,
            tasks=items,
            total=total,
            handlers=handlers,
            states=list(TaskState),
            statuses=list(CompletionStatus),
            page_sizes=PAGE_SIZES,
            sortable=SORTABLE,
            ids=",".join(t.id for t in items),
        ),
    )


async def _task_context(who: SignedIn, task_id: str) -> dict[str, Any]:
    viewer = who.viewer
    task = await viewer.get(task_id)
    children = await viewer.children(task)
    parent = None
    if task.parent_id:
        try:
            parent = await viewer.get(task.parent_id)
        except NotFound:
            parent = None
    return {"task": task, "children": children, "parent": parent, "statuses": CompletionStatus}


@router.get("/tasks/{task_id}")
async def task(request: Request, task_id: str) -> Response:
    who = await signed_in(request)
    if who is None:
        return to_login(request)
    try:
        context = await _task_context(who, task_id)
    except NotFound:
        return page(
            request,
            "missing.html",
            base_context(request, who, title="No such task", task_id=task_id),
            status_code=404,
        )
    return page(
        request,
        "task.html",
        base_context(request, who, title=context["task"].unique_name, **context),
    )


@router.get("/tasks/{task_id}/as/{dialect}")
async def task_as(request: Request, task_id: str, dialect: str) -> Response:
    """The task as one of the API's dialects shows it (v2024, v2, jira)."""
    who = await signed_in(request)
    if who is None:
        return to_login(request)
    state = app_state(request)
    try:
        found = await who.viewer.get(task_id)
    except NotFound:
        return page(
            request,
            "missing.html",
            base_context(request, who, title="No such task", task_id=task_id),
            status_code=404,
        )
    jira_url = f"{state.settings.public_url or ''}/rest/api/3/task/{task_id}"
    views: dict[str, tuple[dict[str, Any], str]] = {
        "v2024": (task_status(found), f"/v2024/task-status/{task_id}"),
        "v2": (crud_task(found), f"/v2/task/view/{task_id}"),
        "jira": (jira_task(found, jira_url, datetime.now(UTC)), f"/rest/api/3/task/{task_id}"),
    }
    if dialect not in views:
        return RedirectResponse(f"/ui/tasks/{task_id}", status_code=303)
    document, api_path = views[dialect]
    return page(
        request,
        "dialect.html",
        base_context(
            request,
            who,
            title=f"{found.unique_name} ({dialect})",
            task=found,
            dialect=dialect,
            document=document,
            api_path=api_path,
        ),
    )


@router.get("/handlers")
async def handlers(request: Request) -> Response:
    who = await signed_in(request)
    if who is None:
        return to_login(request)
    definitions = await who.viewer.definitions()
    return page(
        request,
        "handlers.html",
        base_context(request, who, title="Handlers", definitions=definitions),
    )


async def submit_form(
    request: Request,
    who: SignedIn,
    name: str,
    entered: dict[str, str] | None = None,
    errors: dict[str, str] | None = None,
    other_errors: list[str] | None = None,
    status_code: int = 200,
) -> Response:
    definitions = {d.name: d for d in await who.viewer.definitions()}
    definition = definitions.get(name)
    if definition is None:
        return page(
            request,
            "missing.html",
            base_context(request, who, title="No such handler", task_id=None, handler=name),
            404,
        )
    return page(
        request,
        "submit.html",
        base_context(
            request,
            who,
            title=f"Submit {name}",
            definition=definition,
            fields=forms.fields_of(definition.schema),
            entered=entered or {},
            submitted=entered is not None,
            field_errors=errors or {},
            other_errors=other_errors or [],
        ),
        status_code=status_code,
    )


@router.get("/submit")
async def submit(request: Request) -> Response:
    who = await signed_in(request)
    if who is None:
        return to_login(request)
    return await submit_form(request, who, request.query_params.get("handler", ""))


@router.get("/workers")
async def workers(request: Request) -> Response:
    who = await signed_in(request)
    if who is None:
        return to_login(request)
    found = await who.viewer.workers(own_worker(request))
    return page(
        request,
        "workers.html",
        base_context(request, who, title="Workers", workers=found, now=datetime.now(UTC)),
    )


@router.get("/login")
async def login(request: Request) -> Response:
    return page(
        request,
        "login.html",
        base_context(
            request,
            await signed_in(request),
            title="Sign in",
            next=request.query_params.get("next", "/ui"),
            failed="",
        ),
    )


def error_text(exc: Exception) -> str | None:
    """What a domain error says to a person, or None for an unexpected one."""
    error = as_api_error(exc)
    return None if error is None else "; ".join(error.causes)
