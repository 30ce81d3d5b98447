"""Schedules and limits over HTTP: /v2024/task-schedules and /v2024/task-limits.

The task-status routes' conventions: OAuth2 bearer tokens (reading needs the read scope,
changing needs admin: a schedule's tasks run as ``schedule:<name>``, which only admins see),
the ErrorResponseDto error shape, and limit/offset/count (X-Total-Count)/sorters/filters on
the list. Parsing and rendering only: the rules are taskstatus.scheduling's.
"""

from __future__ import annotations

import json
import re
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Query, Request
from pydantic import BaseModel, ConfigDict, Field
from starlette.responses import Response

from taskstatus.api.deps import Reader, State, read_json_patch, requires
from taskstatus.api.errors import ApiError
from taskstatus.api.responses import CasedResponse, json_response
from taskstatus.api.schemas import ERRORS, ErrorResponseDto, JsonPatchOperation
from taskstatus.caller import ADMIN, Caller
from taskstatus.limits import MAX_OFFSET, MAX_PAGE_SIZE, check_json
from taskstatus.limits_policy import HandlerLimits
from taskstatus.schedules import Schedule, schedule_document
from taskstatus.scheduling import LimitService, ScheduleService
from taskstatus.service import utcnow

__all__ = ["router"]

Admin = Annotated[Caller, Depends(requires(ADMIN))]
CONFLICT: dict[int | str, dict[str, Any]] = {
    409: {"model": ErrorResponseDto, "description": "Conflict"}
}
# filters: `field eq "value"` (or true/false), joined by `and`
_FILTER = re.compile(r'\s*(\w+)\s+eq\s+("(?:[^"\\]|\\.)*"|true|false)\s*', re.IGNORECASE)
FILTERABLE = {"name", "handler", "paused", "missed", "overlap", "timezone"}
SORTABLE = {"name", "handler", "nextFire", "lastFire", "created", "modified"}


class ScheduleIn(BaseModel):
    """A new schedule: `cron` (5 fields, or 6 with seconds first) in `timezone`, or `every`
    seconds."""

    model_config = ConfigDict(extra="forbid")
    name: str = Field(description="Unique name; its tasks' launcher is schedule:<name>")
    handler: str = Field(description="The handler each firing runs")
    arguments: dict[str, Any] = Field(default_factory=dict)
    cron: str | None = Field(None, examples=["0 2 * * *"])
    every: float | None = Field(None, description="Interval in seconds")
    timezone: str = Field("UTC", description="IANA time zone of the cron expression")
    missed: Literal["skip", "all"] = "skip"
    overlap: Literal["allow", "skip"] = "allow"
    paused: bool = False


class ScheduleOut(BaseModel):
    name: str
    handler: str
    arguments: dict[str, Any]
    cron: str | None
    every: float | None
    timezone: str
    missed: Literal["skip", "all"]
    overlap: Literal["allow", "skip"]
    paused: bool
    nextFire: str | None = Field(description="ISO-8601; null while paused")
    nextFires: list[str] = Field(description="The next firing times")
    lastFire: str | None
    lastTaskId: str | None
    launcher: str
    created: str
    modified: str
    version: int


class LimitsIn(BaseModel):
    """A handler's limits on every node; null: no such limit."""

    model_config = ConfigDict(extra="forbid")
    concurrency: int | None = Field(None, description="Most tasks running at once")
    rate: float | None = Field(None, description="Most starts per second")
    burst: float | None = Field(None, description="Starts allowed at once (default: rate, >= 1)")
    limitKey: str | None = Field(None, description="The argument whose values each get limits")


class LimitsOut(LimitsIn):
    model_config = ConfigDict(extra="forbid")
    handler: str


def _doc(s: Schedule) -> dict[str, Any]:
    return schedule_document(s, utcnow())


def _limits(limits: HandlerLimits) -> dict[str, Any]:
    return {
        "handler": limits.handler,
        "concurrency": limits.concurrency,
        "rate": limits.rate,
        "burst": limits.burst,
        "limitKey": limits.limit_key,
    }


def _filtered(docs: list[dict[str, Any]], filters: str | None) -> list[dict[str, Any]]:
    if not filters:
        return docs
    wanted: dict[str, Any] = {}
    for part in re.split(r"\s+and\s+", filters.strip(), flags=re.IGNORECASE):
        m = _FILTER.fullmatch(part)
        if m is None or m.group(1) not in FILTERABLE:
            raise ApiError(
                400,
                [
                    f'filters: {part!r} is not `field eq "value"` with a field of '
                    f"{', '.join(sorted(FILTERABLE))}"
                ],
            )
        wanted[m.group(1)] = json.loads(m.group(2).lower() if m.group(2)[0] != '"' else m.group(2))
    return [d for d in docs if all(d[k] == v for k, v in wanted.items())]


def _sorted(docs: list[dict[str, Any]], sorters: str | None) -> list[dict[str, Any]]:
    for key in reversed([k.strip() for k in (sorters or "name").split(",")]):
        field = key.lstrip("-")
        if field not in SORTABLE:
            raise ApiError(400, [f"sorters: {field!r} is not one of {', '.join(sorted(SORTABLE))}"])
        present = [d for d in docs if d[field] is not None]
        absent = [d for d in docs if d[field] is None]
        present.sort(key=lambda d: d[field], reverse=key.startswith("-"))
        docs = present + absent
    return docs


def router(prefix: str = "/v2024") -> APIRouter:
    r = APIRouter(prefix=prefix, tags=["Task Schedules and Limits"], responses=ERRORS)

    @r.get(
        "/task-schedules",
        summary="List schedules",
        response_model=list[ScheduleOut],
        operation_id="list_task_schedules",
    )
    async def list_schedules(
        state: State,
        caller: Reader,
        limit: Annotated[int, Query(ge=0, le=MAX_PAGE_SIZE)] = MAX_PAGE_SIZE,
        offset: Annotated[int, Query(ge=0, le=MAX_OFFSET)] = 0,
        count: bool = False,
        filters: Annotated[
            str | None, Query(description='e.g. handler eq "sync" and paused eq false')
        ] = None,
        sorters: Annotated[str | None, Query(description="e.g. -nextFire,name")] = None,
    ) -> Response:
        """Schedules with their next firing times, by name unless `sorters` says otherwise."""
        docs = [_doc(s) for s in await ScheduleService(state.service, caller).list()]
        docs = _sorted(_filtered(docs, filters), sorters)
        headers = {"X-Total-Count": str(len(docs))} if count else {}
        return json_response(200, docs[offset : offset + limit], headers)

    @r.post(
        "/task-schedules",
        summary="Create a schedule",
        status_code=201,
        response_model=ScheduleOut,
        operation_id="create_task_schedule",
        responses=CONFLICT,
    )
    async def create_schedule(body: ScheduleIn, state: State, caller: Admin) -> Response:
        """A bad cron expression, an unknown time zone or handler, or arguments the handler
        refuses are a 400 that says which; a name in use is a 409."""
        check_json(body.arguments, "arguments")
        s = await ScheduleService(state.service, caller).add(
            body.name,
            body.handler,
            body.arguments,
            cron=body.cron,
            every=body.every,
            timezone=body.timezone,
            missed=body.missed,
            overlap=body.overlap,
            paused=body.paused,
        )
        return json_response(201, _doc(s))

    @r.get(
        "/task-schedules/{name}",
        summary="Get a schedule",
        response_model=ScheduleOut,
        operation_id="get_task_schedule",
    )
    async def get_schedule(name: str, state: State, caller: Reader) -> Response:
        return json_response(200, _doc(await ScheduleService(state.service, caller).get(name)))

    @r.patch(
        "/task-schedules/{name}",
        summary="Update a schedule by JSON Patch",
        response_model=ScheduleOut,
        operation_id="update_task_schedule",
        responses=CONFLICT,
        openapi_extra={
            "requestBody": {
                "required": True,
                "content": {
                    "application/json-patch+json": {
                        "schema": {
                            "type": "array",
                            "items": JsonPatchOperation.model_json_schema(by_alias=True),
                        },
                        "example": [{"op": "replace", "path": "/paused", "value": True}],
                    }
                },
            }
        },
    )
    async def update_schedule(name: str, request: Request, state: State, caller: Admin) -> Response:
        """Apply a JSON Patch to handler, arguments, cron, every, timezone, missed, overlap
        or paused; a change of when it fires (or a resume) counts from now."""
        from taskstatus.schedules import patched

        operations = await read_json_patch(request)
        s = await ScheduleService(state.service, caller).update(
            name, lambda s: patched(s, operations)
        )
        return json_response(200, _doc(s))

    @r.delete(
        "/task-schedules/{name}",
        summary="Delete a schedule",
        status_code=204,
        response_class=Response,
        operation_id="delete_task_schedule",
    )
    async def delete_schedule(name: str, state: State, caller: Admin) -> Response:
        """The schedule and its firing records go; the tasks it fired stay."""
        await ScheduleService(state.service, caller).delete(name)
        return CasedResponse(status_code=204)

    @r.get(
        "/task-limits",
        summary="List the handlers' limits",
        response_model=list[LimitsOut],
        operation_id="list_task_limits",
    )
    async def list_limits(state: State, caller: Reader) -> Response:
        limits = await LimitService(state.service, caller).list()
        return json_response(200, [_limits(x) for x in limits])

    @r.get(
        "/task-limits/{handler}",
        summary="Get a handler's limits",
        response_model=LimitsOut,
        operation_id="get_task_limits",
    )
    async def get_limits(handler: str, state: State, caller: Reader) -> Response:
        """A known handler's limits (nulls: none); an unknown handler is a 400."""
        return json_response(200, _limits(await LimitService(state.service, caller).get(handler)))

    @r.put(
        "/task-limits/{handler}",
        summary="Set a handler's limits",
        response_model=LimitsOut,
        operation_id="set_task_limits",
    )
    async def set_limits(handler: str, body: LimitsIn, state: State, caller: Admin) -> Response:
        """Replace the handler's limits on every node from the next claim on (all null:
        remove them)."""
        limits = await LimitService(state.service, caller).set(
            handler,
            concurrency=body.concurrency,
            rate=body.rate,
            burst=body.burst,
            limit_key=body.limitKey,
        )
        return json_response(200, _limits(limits))

    return r
