"""The task-status dialect (seeds 000-002): /v2024/task-status and its newer-SDK prefixes.

Translation only: query parameters become a `TaskQuery`, tasks become TaskStatus documents
(`views.task_status`), a PATCH body becomes the service's `patch`. Lists:

- ``/task-status/pending-tasks``: tasks without a completionStatus, oldest first;
- ``/task-status``: completed tasks, newest first, unless ``filters`` itself says which
  completionStatus it wants (the newest SDK lists pending tasks with
  ``filters=completionStatus isnull``).
"""

from __future__ import annotations

from typing import Annotated, Any

import orjson
from fastapi import APIRouter, Depends, Header, Query, Request
from starlette.responses import Response

from taskstatus.api.deps import Reader, State, Writer, app_state, authorize, read_json_patch
from taskstatus.api.errors import ApiError
from taskstatus.api.fastlane import FastRoute
from taskstatus.api.responses import CasedResponse, json_response
from taskstatus.api.schemas import ERRORS, JsonPatchOperation, TaskStatus
from taskstatus.api.streams import (
    ALL_STREAM_RESPONSES,
    STREAM_RESPONSES,
    V2024,
    After,
    LastEventId,
    Wait,
    all_tasks_stream,
    task_stream,
    wait_seconds,
    wait_until_terminal,
)
from taskstatus.caller import READ, Caller
from taskstatus.fields import TASK_STATUS
from taskstatus.limits import MAX_OFFSET, MAX_PAGE_SIZE
from taskstatus.model import Task
from taskstatus.query import (
    And,
    Condition,
    Expr,
    Not,
    Op,
    Or,
    SortKey,
    TaskField,
    TaskQuery,
    all_of,
    parse_bound,
    parse_sorters,
)
from taskstatus.views import task_status

MAX_LIMIT = MAX_PAGE_SIZE
PENDING = Condition(TaskField.COMPLETION_STATUS, Op.ISNULL)
COMPLETED = Condition(TaskField.COMPLETION_STATUS, Op.PR)
OLDEST_FIRST = (SortKey(TaskField.CREATED),)
NEWEST_FIRST = (SortKey(TaskField.CREATED, descending=True),)

Offset = Annotated[int, Query(ge=0, le=MAX_OFFSET, description="Offset into the full result set")]
Limit = Annotated[int, Query(ge=0, le=MAX_LIMIT, description="Max number of results to return")]
Count = Annotated[
    bool, Query(description="If true, X-Total-Count carries the total ignoring limit and offset")
]
Filters = Annotated[
    str | None,
    Query(
        description='Standard collection filter, e.g. completionStatus in ("ERROR","WARNING"). '
        "id, sourceId, completionStatus, type: eq, in (and more: see docs/api.md)"
    ),
]
Sorters = Annotated[str | None, Query(description="e.g. -created")]


def check_experimental(request: Request) -> None:
    """The seeds mark these endpoints experimental; the header is required only if configured."""
    if (
        app_state(request).settings.require_experimental_header
        and request.headers.get("x-sailpoint-experimental", "").lower() != "true"
    ):
        raise ApiError(
            400, ["this endpoint is experimental: send the header X-SailPoint-Experimental: true"]
        )


async def experimental(
    request: Request,
    x_sailpoint_experimental: Annotated[
        str | None, Header(description="Send true; required only when the server says so")
    ] = "true",
) -> None:
    check_experimental(request)


_RENDERED: dict[str, tuple[Task, bytes]] = {}
_RENDERED_MAX = 4096


def _rendered(task: Task) -> bytes:
    """The task's TaskStatus JSON; rendered once per Task object (a store hands the same
    object out again while the task has not changed)."""
    seen = _RENDERED.get(task.id)
    if seen is not None and seen[0] is task:
        return seen[1]
    body = orjson.dumps(task_status(task))
    if len(_RENDERED) >= _RENDERED_MAX:
        _RENDERED.clear()
    _RENDERED[task.id] = (task, body)
    return body


async def _get_one(request: Request) -> Response:
    """GET one task on the fast path (api/fastlane.py): the checks the framework path's
    dependencies make, in their order, and its answer."""
    check_experimental(request)
    caller = await authorize(request, READ, request.headers.get("authorization"))
    state = app_state(request)
    seconds = wait_seconds(request) if request.query_params else None
    task = await state.service.get(caller, request.path_params["id"])
    task = await wait_until_terminal(state, caller, task, seconds)
    return CasedResponse(_rendered(task), media_type="application/json")


def _mentions(expr: Expr | None, field: TaskField) -> bool:
    if expr is None:
        return False
    if isinstance(expr, Condition):
        return expr.field is field
    if isinstance(expr, And | Or):
        return any(_mentions(e, field) for e in expr.items)
    if isinstance(expr, Not):
        return _mentions(expr.item, field)
    return False


async def _page(
    state: State,
    caller: Caller,
    where: Expr | None,
    sort: Any,
    offset: int,
    limit: int,
    count: bool,
) -> tuple[list[Task], dict[str, str]]:
    query = TaskQuery(where=where, sort=sort, offset=offset, limit=limit, count=count)
    page = await state.service.query(caller, query)
    headers = {"X-Total-Count": str(page.total)} if page.total is not None else {}
    return page.items, headers


def router(prefix: str, resource: str = "/task-status", *, pending: bool = True) -> APIRouter:
    """The task-status operations at `prefix` + `resource`: the five of the seeds under /v2024
    (also /v2025, /v2026, /beta, which sailpoint 1.4.2 calls), or, for sailpoint 2.x, list,
    get and patch at /task-status/v1 (pending=False: 2.x has no pending-tasks operation)."""
    name = (prefix + resource).strip("/").replace("/", "_").replace("-", "_")
    r = APIRouter(
        prefix=prefix + resource,
        tags=[f"Task Management ({prefix.strip('/') or resource.strip('/')})"],
        dependencies=[Depends(experimental)],
        responses=ERRORS,
    )

    if pending:

        @r.get(
            "/pending-tasks",
            summary="Retrieve pending task status list",
            response_model=list[TaskStatus],
            operation_id=f"get_pending_tasks_{name}",
        )
        async def get_pending_tasks(
            state: State,
            caller: Reader,
            offset: Offset = 0,
            limit: Limit = MAX_LIMIT,
            count: Count = False,
        ) -> Response:
            """Tasks without a completionStatus (queued, running, cancelling), oldest first."""
            tasks, headers = await _page(state, caller, PENDING, OLDEST_FIRST, offset, limit, count)
            return json_response(200, [task_status(t) for t in tasks], headers)

        @r.head(
            "/pending-tasks",
            summary="Retrieve pending task list headers",
            operation_id=f"get_pending_task_headers_{name}",
        )
        async def get_pending_task_headers(
            state: State,
            caller: Reader,
            offset: Offset = 0,
            limit: Limit = MAX_LIMIT,
            count: Count = False,
        ) -> Response:
            """The headers of the pending list (X-Total-Count with count=true), no body."""
            _, headers = await _page(state, caller, PENDING, OLDEST_FIRST, offset, limit, count)
            return CasedResponse(status_code=200, media_type="application/json", headers=headers)

    @r.get(
        "",
        summary="Retrieve task status list",
        response_model=list[TaskStatus],
        operation_id=f"get_task_status_list_{name}",
    )
    async def get_task_status_list(
        state: State,
        caller: Reader,
        limit: Limit = MAX_LIMIT,
        offset: Offset = 0,
        count: Count = False,
        filters: Filters = None,
        sorters: Sorters = None,
    ) -> Response:
        """Completed tasks, newest first, unless the filter names a completionStatus."""
        where = parse_bound(filters, TASK_STATUS)
        if not _mentions(where, TaskField.COMPLETION_STATUS):
            where = all_of(COMPLETED, where)
        sort = parse_sorters(sorters, TASK_STATUS) or NEWEST_FIRST
        tasks, headers = await _page(state, caller, where, sort, offset, limit, count)
        return json_response(200, [task_status(t) for t in tasks], headers)

    @r.get(
        "/events",
        summary="Follow the events of every task (Server-Sent Events)",
        operation_id=f"get_task_status_all_events_{name}",
        response_class=Response,
        responses=ALL_STREAM_RESPONSES,
    )
    async def get_all_task_events(
        request: Request, state: State, caller: Reader, filters: Filters = None
    ) -> Response:
        """The events of every task the caller may see, narrowed by `filters` (the list's
        grammar, matched when the stream first hears of a task), as they are committed."""
        return await all_tasks_stream(
            request, state, caller, parse_bound(filters, TASK_STATUS), V2024
        )

    @r.get(
        "/{id}/events",
        summary="Follow a task's events (Server-Sent Events)",
        operation_id=f"get_task_status_events_{name}",
        response_class=Response,
        responses=STREAM_RESPONSES,
    )
    async def get_task_status_events(
        id: str,
        request: Request,
        state: State,
        caller: Reader,
        after: After = None,
        last_event_id: LastEventId = None,
    ) -> Response:
        """The task's events as text/event-stream: a `snapshot` (the whole TaskStatus), the
        log after the cursor, then live events until the terminal one (`completed`)."""
        return await task_stream(request, state, caller, id, V2024)

    async def get_task_status(id: str, state: State, caller: Reader, wait: Wait = None) -> Response:
        """One task, or 404. With ?wait=, as soon as it has ended or when the time is up.
        (The framework path; FastLane serves the same with `_get_one`.)"""
        task = await state.service.get(caller, id)
        task = await wait_until_terminal(state, caller, task, wait)
        return CasedResponse(_rendered(task), media_type="application/json")

    r.routes.append(
        FastRoute(
            r.prefix + "/{id}",
            get_task_status,
            fast=_get_one,
            methods=["GET"],
            summary="Get task status by id",
            response_model=TaskStatus,
            operation_id=f"get_task_status_{name}",
            tags=r.tags,
            dependencies=r.dependencies,
            responses=r.responses,
        )
    )

    @r.patch(
        "/{id}",
        summary="Update task status by id",
        response_model=TaskStatus,
        operation_id=f"update_task_status_{name}",
        openapi_extra={
            "requestBody": {
                "required": True,
                "content": {
                    "application/json-patch+json": {
                        "schema": {
                            "type": "array",
                            "items": JsonPatchOperation.model_json_schema(by_alias=True),
                        },
                        "example": [
                            {"op": "replace", "path": "/completionStatus", "value": "TERMINATED"},
                            {
                                "op": "replace",
                                "path": "/completed",
                                "value": "2024-01-01T00:00:00Z",
                            },
                        ],
                    }
                },
            }
        },
    )
    async def update_task_status(
        id: str,
        request: Request,
        state: State,
        caller: Writer,
    ) -> Response:
        """Apply a JSON Patch atomically. Setting completionStatus (and completed) on a
        pending task clears it; its worker is told to stop."""
        operations = await read_json_patch(request)
        task = await state.service.patch(caller, id, operations)
        return json_response(200, task_status(task))

    return r
