"""The client dialect (``/taskstatus/v1``): what ``connect("https://...")`` speaks.

Translation only, like every dialect: bodies become `Submission`s and service calls, tasks
go out whole (`wire.task_to_json`), and errors are the ErrorResponseDto with the
``errorType``/``errorDetail`` from which the client raises the same exception types a database
connection raises. Who may see and change which task is the service's rule, as everywhere.

- ``POST /tasks``: submit one (``Idempotency-Key``: the same key returns the same task);
- ``POST /tasks/batch``: submit many in one transaction, or none;
- ``GET /tasks``: ``filters``, ``sorters``, ``offset``, ``limit``, ``count`` (X-Total-Count);
- ``GET /tasks/{id}``: one task; ``wait=S`` (at most 60) answers once it has ended, or at S;
- ``POST /tasks/{id}/cancel``; ``POST /tasks/{id}/clear`` ``{"status", "completed"}``;
- ``DELETE /tasks/{id}?force=``: ``{"deleted": [ids]}``; 409 HasSubtasks without force;
- ``GET /definitions``: the handlers the nodes sharing the database registered.
"""

from __future__ import annotations

from collections.abc import Callable, Coroutine
from datetime import datetime, timedelta
from typing import Annotated, Any

from fastapi import APIRouter, Header, Query, Request
from fastapi.routing import APIRoute
from pydantic import BaseModel, ConfigDict, Field
from starlette.responses import Response

from taskstatus.api.deps import Reader, State, Writer
from taskstatus.api.errors import ApiError, as_api_error, json_response
from taskstatus.api.schemas import ERRORS
from taskstatus.errors import Forbidden
from taskstatus.fields import TASK_STATUS
from taskstatus.limits import MAX_CLIENT_PAGE_SIZE, MAX_DELAY_SECONDS, MAX_OFFSET
from taskstatus.model import CompletionStatus, Target, TargetType
from taskstatus.query import TaskQuery, parse_bound, parse_sorters
from taskstatus.service import Submission
from taskstatus.wire import PREFIX, definition_to_json, error_detail, task_to_json

MAX_LIMIT = MAX_CLIENT_PAGE_SIZE
MAX_WAIT = 60.0


class _TypedErrors(APIRoute):
    """Domain errors of this dialect's routes carry ``errorType``/``errorDetail``."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()

        async def typed(request: Request) -> Response:
            try:
                return await handler(request)
            except ApiError:
                raise
            except Exception as exc:
                error = as_api_error(exc)
                extra = error_detail(exc)
                if error is None or not extra:
                    raise
                raise ApiError(
                    error.status,
                    error.causes,
                    message=error.message,
                    headers=error.headers,
                    extra={**error.extra, **extra},
                ) from exc

        return typed


router = APIRouter(
    prefix=PREFIX, tags=["Client (taskstatus/v1)"], responses=ERRORS, route_class=_TypedErrors
)


class TargetBody(BaseModel):
    model_config = ConfigDict(extra="forbid")

    id: str | None = None
    type: TargetType | None = None
    name: str | None = None


class Options(BaseModel):
    model_config = ConfigDict(extra="forbid")

    handler: str = Field(description="A handler registered by a node sharing the database")
    target: TargetBody | None = None
    parent: str | None = Field(None, description="The parent task's id")
    run_at: datetime | None = Field(None, description="Start no sooner (with a time zone)")
    delay: float | None = Field(
        None, ge=0, le=MAX_DELAY_SECONDS, description="Or: start no sooner than in N seconds"
    )
    priority: int = Field(0, ge=-(2**31), le=2**31 - 1)
    max_attempts: int | None = Field(None, ge=1, le=1000)
    timeout: float | None = Field(None, gt=0)
    launcher: str | None = Field(None, description="Only tasks:admin may name another")


class SubmitBody(Options):
    arguments: dict[str, Any] = Field(default_factory=dict)


class SubmitManyBody(Options):
    arguments: list[dict[str, Any]] = Field(max_length=10_000)


class ClearBody(BaseModel):
    model_config = ConfigDict(extra="forbid")

    status: CompletionStatus
    completed: datetime | None = None


def _submission(body: Options, key: str | None) -> Submission:
    run_at: datetime | timedelta | None = body.run_at
    if run_at is None and body.delay:
        run_at = timedelta(seconds=body.delay)
    target = body.target
    return Submission(
        launcher=body.launcher or None,
        target=None if target is None else Target(target.id, target.type, target.name),
        parent=body.parent,
        idempotency_key=key,
        run_at=run_at,
        priority=body.priority,
        max_attempts=body.max_attempts,
        timeout=body.timeout,
    )


IdempotencyKey = Annotated[
    str | None,
    Header(max_length=200, description="Submitting the same key again returns the same task"),
]


@router.post("/tasks", status_code=201, summary="Submit a task")
async def submit(
    body: SubmitBody, state: State, caller: Writer, idempotency_key: IdempotencyKey = None
) -> Response:
    options = _submission(body, idempotency_key)
    try:
        task = await state.service.submit(caller, body.handler, body.arguments, options)
    except Forbidden as e:
        raise ApiError(403, [f"launcher: {e}"]) from None
    return json_response(201, task_to_json(task))


@router.post("/tasks/batch", status_code=201, summary="Submit many tasks, all or none")
async def submit_many(
    body: SubmitManyBody, state: State, caller: Writer, idempotency_key: IdempotencyKey = None
) -> Response:
    options = _submission(body, idempotency_key)
    try:
        tasks = await state.service.submit_many(caller, body.handler, body.arguments, options)
    except Forbidden as e:
        raise ApiError(403, [f"launcher: {e}"]) from None
    return json_response(201, [task_to_json(t) for t in tasks])


@router.get("/tasks", summary="Tasks matching a filter, one page")
async def query(
    state: State,
    caller: Reader,
    filters: str | None = None,
    sorters: str | None = None,
    offset: Annotated[int, Query(ge=0, le=MAX_OFFSET)] = 0,
    limit: Annotated[int, Query(ge=0, le=MAX_LIMIT)] = 250,
    count: bool = False,
) -> Response:
    """The filter and sorter syntax of the v2024 list, over every task the caller may see
    (pending and completed); with no sorters, the store's order (oldest first)."""
    page = await state.service.query(
        caller,
        TaskQuery(
            where=parse_bound(filters, TASK_STATUS),
            sort=parse_sorters(sorters, TASK_STATUS),
            offset=offset,
            limit=limit,
            count=count,
        ),
    )
    headers = {"X-Total-Count": str(page.total)} if page.total is not None else {}
    return json_response(200, [task_to_json(t) for t in page.items], headers)


@router.get("/tasks/{id}", summary="One task; with wait=S, once it has ended")
async def get(
    id: str,
    state: State,
    caller: Reader,
    wait: Annotated[float, Query(ge=0, le=MAX_WAIT)] = 0,
) -> Response:
    task = await state.service.get(caller, id)
    if wait > 0 and not task.terminal:
        task = await state.service.wait_for(caller, id, wait)
    return json_response(200, task_to_json(task))


@router.post("/tasks/{id}/cancel", summary="Cancel a task")
async def cancel(id: str, state: State, caller: Writer) -> Response:
    return json_response(200, task_to_json(await state.service.cancel(caller, id)))


@router.post("/tasks/{id}/clear", summary="End a pending task by hand")
async def clear(id: str, body: ClearBody, state: State, caller: Writer) -> Response:
    task = await state.service.clear(caller, id, body.status, body.completed)
    return json_response(200, task_to_json(task))


@router.delete("/tasks/{id}", summary="Delete a task (kept as history)")
async def delete(id: str, state: State, caller: Writer, force: bool = False) -> Response:
    deleted = await state.service.delete(caller, id, force=force)
    return json_response(200, {"deleted": deleted})


@router.get("/definitions", summary="The registered handlers")
async def definitions(state: State, caller: Reader) -> Response:
    found = await state.service.definitions()
    return json_response(200, [definition_to_json(d) for d in found])
