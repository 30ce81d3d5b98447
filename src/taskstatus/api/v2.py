"""The task CRUD dialect (seed 003): /v2/task/{index,create,view,update,delete}.

Translation only. Statuses map onto the lifecycle as DESIGN.md says (pending = queued,
cancelling = cancel requested, failed = failed or dead); a status change in an update is the
lifecycle's own operation (cancelled = `model.cancel`; completed or failed = `model.clear`).
Errors are the ErrorResponseDto of every other endpoint.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Annotated, Any

from fastapi import APIRouter, Query, Request
from pydantic import BaseModel, ConfigDict, Field, model_validator
from starlette.responses import Response

from taskstatus.api.deps import Reader, State, Writer
from taskstatus.api.errors import ApiError, json_response
from taskstatus.api.schemas import ERRORS, ErrorResponseDto
from taskstatus.api.streams import (
    CRUD,
    STREAM_RESPONSES,
    After,
    LastEventId,
    Wait,
    task_stream,
    wait_until_terminal,
)
from taskstatus.errors import Forbidden, HasSubtasks
from taskstatus.limits import MAX_OFFSET, MAX_PAGE_SIZE, InputRejected, check_json, limit, to_utc
from taskstatus.model import CompletionStatus, Target, Task, TaskState, cancel, clear
from taskstatus.query import And, Condition, Expr, Op, SortKey, TaskField, TaskQuery, all_of
from taskstatus.service import KEEP, Keep, NotQueued, Submission
from taskstatus.views import CRUD_STATUS, crud_task

router = APIRouter(prefix="/v2/task", tags=["Task (v2)"], responses=ERRORS)

MAX_PER_PAGE = MAX_PAGE_SIZE
MILLISECOND = timedelta(milliseconds=1)
# The lifecycle states each v2 status stands for.
STATES: dict[str, tuple[TaskState, ...]] = {}
for _state, _name in CRUD_STATUS.items():
    STATES[_name] = (*STATES.get(_name, ()), _state)
# What a user may set `status` to, as a lifecycle operation.
SETTABLE = {"cancelled", "completed", "failed"}
FIELDS: dict[str, TaskField] = {
    "task_id": TaskField.ID,
    "handler": TaskField.HANDLER,
    "user_id": TaskField.LAUNCHER,
    "entity_id": TaskField.TARGET_ID,
    "status": TaskField.STATE,
    "request": TaskField.ARGUMENTS,
    "response": TaskField.ATTRIBUTES,
    "created_at": TaskField.CREATED,
    "updated_at": TaskField.MODIFIED,
}


class CrudTask(BaseModel):
    """A task as this dialect shows it."""

    task_id: str = Field(description="The unique identifier for the task.")
    handler: str = Field(description="The name of the handler assigned to the task.")
    user_id: str = Field(description="The user (launcher) associated with the task.")
    entity_id: str | None = Field(description="The entity (target) the task acts on.")
    status: str = Field(description="pending, running, cancelling, completed, failed, cancelled")
    request: dict[str, Any] = Field(description="The task's arguments.")
    response: dict[str, Any] | None = Field(description="The task's result (attributes).")
    created_at: str
    updated_at: str
    progress: str | None = None
    percent_complete: int = 0
    parent_id: str | None = None
    deleted_at: str | None = Field(None, description="Set on historized (deleted) tasks.")


class _Body(BaseModel):
    """A request body: every value in it must be storable (taskstatus.limits.check_json)."""

    @model_validator(mode="before")
    @classmethod
    def _storable(cls, data: Any) -> Any:
        return check_json(data, "body")


class CreateBody(_Body):
    model_config = ConfigDict(extra="forbid")

    handler: str = Field(description="A registered handler")
    request: dict[str, Any] = Field(default_factory=dict, description="Checked against its schema")
    user_id: str | None = Field(None, description="The launcher; only tasks:admin may name another")
    entity_id: str | None = Field(None, description="What the task acts on (its target id)")
    status: str | None = Field(None, description="If given, pending")


class UpdateBody(_Body):
    model_config = ConfigDict(extra="forbid")

    status: str | None = Field(None, description="cancelled, completed or failed")
    request: dict[str, Any] | None = Field(None, description="New arguments (queued tasks only)")
    entity_id: str | None = Field(None, description="New target id (queued tasks only)")
    response: dict[str, Any] | None = Field(None, description="Replace the result")


class IndexBody(_Body):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    filter: dict[str, Any] = Field(default_factory=dict, description="Exact match on task fields")
    per_page: int = Field(20, alias="per-page", description=f"1 to {MAX_PER_PAGE}")
    page: int = Field(1, description="From 1")
    sort: str = Field("-created_at", description="A field; a leading minus sorts descending")
    historized: bool = Field(False, description="Also return deleted (historized) tasks")


def _parse_time(name: str, value: Any) -> datetime:
    try:
        parsed = datetime.fromisoformat(str(value))
    except ValueError:
        parsed = None
    if parsed is None or parsed.tzinfo is None:
        raise ApiError(400, [f"filter.{name}: must be an ISO 8601 date-time with a time zone"])
    parsed = to_utc(parsed, f"filter.{name}")
    if parsed >= datetime.max.replace(tzinfo=parsed.tzinfo) - MILLISECOND:
        raise InputRejected(f"filter.{name}: {value} is at the end of the calendar")
    return parsed


def _condition(name: str, value: Any) -> Expr:
    field = FIELDS.get(name)
    if field is None:
        raise ApiError(400, [f"filter.{name}: unknown field (known: {', '.join(FIELDS)})"])
    if value is None:
        return Condition(field, Op.ISNULL)
    if name == "status":
        if value not in STATES:
            raise ApiError(400, [f"filter.status: {value!r} is not a status ({', '.join(STATES)})"])
        return Condition(field, Op.IN, STATES[value])
    if name in ("request", "response"):
        return Condition(field, Op.EQ, (value,))
    if name in ("created_at", "updated_at"):
        # Times are shown to the millisecond: a shown value matches its whole millisecond.
        start = _parse_time(name, value)
        start = start.replace(microsecond=start.microsecond // 1000 * 1000)
        return And(
            (Condition(field, Op.GE, (start,)), Condition(field, Op.LT, (start + MILLISECOND,)))
        )
    if not isinstance(value, str):
        raise ApiError(400, [f"filter.{name}: must be a string"])
    return Condition(field, Op.EQ, (value,))


def _sort(text: str) -> tuple[SortKey, ...]:
    name = text.removeprefix("-")
    field = FIELDS.get(name)
    if field is None or name in ("request", "response"):
        sortable = ", ".join(n for n in FIELDS if n not in ("request", "response"))
        raise ApiError(400, [f"sort: cannot sort by {name!r} (sortable: {sortable})"])
    return (SortKey(field, descending=text.startswith("-")),)


@router.post(
    "/index",
    summary="A filtered, sorted page of tasks",
    response_model=list[CrudTask],
)
async def index(body: IndexBody, state: State, caller: Reader) -> Response:
    """Exact match on any task field (several combine with and); pages from 1; the
    X-Pagination-* headers carry the page, the page count, the page size and the total."""
    if not 1 <= body.per_page <= MAX_PER_PAGE:
        raise ApiError(
            400,
            [
                f"per-page: must be from 1 to {MAX_PER_PAGE}, not {body.per_page} "
                f"({limit('page-size', MAX_PAGE_SIZE)})"
            ],
        )
    if body.page < 1:
        raise ApiError(400, [f"page: must be 1 or more, not {body.page}"])
    if (body.page - 1) * body.per_page > MAX_OFFSET:
        raise ApiError(
            400,
            [f"page: {body.page} starts past task {MAX_OFFSET} ({limit('offset', MAX_OFFSET)})"],
        )
    where = all_of(*(_condition(k, v) for k, v in body.filter.items()))
    page = await state.service.query(
        caller,
        TaskQuery(
            where=where,
            sort=_sort(body.sort),
            offset=(body.page - 1) * body.per_page,
            limit=body.per_page,
            count=True,
            include_deleted=body.historized,
        ),
    )
    total = page.total or 0
    headers = {
        "X-Pagination-Current-Page": str(body.page),
        "X-Pagination-Page-Count": str(-(-total // body.per_page)),
        "X-Pagination-Per-Page": str(body.per_page),
        "X-Pagination-Total-Count": str(total),
    }
    return json_response(200, [crud_task(t) for t in page.items], headers)


@router.post(
    "/create",
    summary="Submit a task",
    status_code=201,
    response_model=CrudTask,
)
async def create(body: CreateBody, state: State, caller: Writer) -> Response:
    """`handler` must name a registered handler and `request` pass its schema, else 400 and
    nothing is stored."""
    if body.status not in (None, "pending"):
        raise ApiError(400, [f"status: a new task is pending, not {body.status!r}"])
    target = Target(body.entity_id) if body.entity_id is not None else None
    options = Submission(launcher=body.user_id or None, target=target)
    try:
        task = await state.service.submit(caller, body.handler, body.request, options)
    except Forbidden as e:
        raise ApiError(403, [f"user_id: {e}"]) from None
    return json_response(201, crud_task(task))


@router.get("/view/{id}", summary="One task", response_model=CrudTask)
async def view(id: str, state: State, caller: Reader, wait: Wait = None) -> Response:
    """One task; with ?wait=, as soon as it has ended or when the time is up."""
    task = await state.service.get(caller, id)
    task = await wait_until_terminal(state, caller, task, wait)
    return json_response(200, crud_task(task))


@router.get(
    "/events/{id}",
    summary="Follow a task's events (Server-Sent Events)",
    response_class=Response,
    responses=STREAM_RESPONSES,
)
async def events(
    id: str,
    request: Request,
    state: State,
    caller: Reader,
    after: After = None,
    last_event_id: LastEventId = None,
) -> Response:
    """The task's events as text/event-stream, `data:` in v2 field names: a `snapshot` (the
    whole task), the log after the cursor, then live events until `completed`."""
    return await task_stream(request, state, caller, id, CRUD)


def _set_status(task: Task, status: str, now: datetime) -> Task:
    if status == CRUD_STATUS[task.state]:
        return task
    if status not in SETTABLE:
        raise ApiError(
            400, [f"status: {status!r} cannot be set; set one of {', '.join(sorted(SETTABLE))}"]
        )
    if status == "cancelled":
        return cancel(task, now)
    outcome = CompletionStatus.SUCCESS if status == "completed" else CompletionStatus.ERROR
    return clear(task, outcome, None, now)


@router.put("/update/{id}", summary="Change a task", response_model=CrudTask)
async def update(id: str, body: UpdateBody, state: State, caller: Writer) -> Response:
    """Fields a user may change; a status change goes through the lifecycle; an illegal change
    is refused (400) and nothing changes."""
    given = body.model_fields_set
    if not given:
        raise ApiError(
            400, ["the body changes nothing: set status, request, entity_id or response"]
        )
    target: Target | Keep | None = KEEP
    if "entity_id" in given:
        target = Target(body.entity_id) if body.entity_id is not None else None
    status = body.status
    try:
        task = await state.service.edit(
            caller,
            id,
            arguments=body.request or {} if "request" in given else KEEP,
            target=target,
            attributes=body.response or {} if "response" in given else KEEP,
            then=None if status is None else lambda t, now: _set_status(t, status, now),
        )
    except NotQueued as e:
        raise ApiError(
            400,
            [
                "request and entity_id change only while the task is pending; it is "
                f"{CRUD_STATUS[e.state]}"
            ],
        ) from None
    return json_response(200, crud_task(task))


@router.delete(
    "/delete/{id}",
    summary="Delete a task (kept as history)",
    responses={409: {"model": ErrorResponseDto, "description": "Subtasks exist; force=false"}},
)
async def delete(
    id: str,
    state: State,
    caller: Writer,
    force: Annotated[bool, Query(description="Also delete the subtasks")] = False,
) -> Response:
    """A running task is cancelled, then deleted. With subtasks and force=false nothing is
    deleted: 409, and `related` lists the subtasks that force=true would delete too."""
    try:
        deleted = await state.service.delete(caller, id, force=force)
    except HasSubtasks as e:
        subtasks = [t for t in e.subtasks if isinstance(t, Task)]
        raise ApiError(
            409,
            [f"the task has {len(subtasks)} subtasks: delete with force=true to delete them too"],
            extra={"related": [crud_task(t) for t in subtasks]},
        ) from None
    return json_response(200, {"deleted": deleted})
