"""Jira's long-running task resource (seed 004): /rest/api/{2,3}/task/{taskId}[/cancel].

Translation only: `views.jira_task` shows the task; cancel is the lifecycle's `cancel`. Jira
clients authenticate with HTTP Basic, here an API client's id and secret, or a Bearer token.
Every error, from authentication on, is in Jira's shape ``{"errorMessages": [...],
"errors": {}}`` (the tracking id is in the X-Tracking-Id header and the server log).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Coroutine
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Request
from fastapi.exceptions import RequestValidationError
from fastapi.routing import APIRoute
from pydantic import BaseModel, Field
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.responses import Response

from taskstatus.api.deps import State, requires
from taskstatus.api.errors import (
    ApiError,
    RateLimited,
    Unauthorized,
    as_api_error,
    error_headers,
    json_response,
    printable,
    shaped_body,
    tracking_id,
)
from taskstatus.api.streams import (
    JIRA,
    STREAM_RESPONSES,
    After,
    LastEventId,
    Wait,
    task_stream,
    wait_until_terminal,
)
from taskstatus.caller import READ, WRITE, Caller
from taskstatus.service import utcnow
from taskstatus.settings import Settings
from taskstatus.views import jira_task

log = logging.getLogger("taskstatus.api")


class JiraErrors(BaseModel):
    errorMessages: list[str]
    errors: dict[str, str] = Field(default_factory=dict)


class JiraTask(BaseModel):
    """Jira's TaskProgressBean."""

    self: str
    id: str
    description: str
    status: Literal[
        "ENQUEUED", "RUNNING", "COMPLETE", "FAILED", "CANCEL_REQUESTED", "CANCELLED", "DEAD"
    ]
    message: str | None = None
    result: Any = Field(None, description="The task's result, once it has finished")
    submittedBy: int = Field(description="A numeric id of the launcher (stable per name)")
    submittedByName: str = Field(description="The launcher's name")
    progress: int = Field(description="Percentage complete")
    elapsedRuntime: int = Field(description="Milliseconds")
    submitted: int = Field(description="Epoch milliseconds")
    started: int | None = None
    finished: int | None = None
    lastUpdate: int


def _jira_error(request: Request, exc: Exception) -> Response:
    tid = tracking_id(request)
    headers = {"X-Tracking-Id": tid}
    if isinstance(exc, Unauthorized):
        status, messages = 401, [exc.body["error"]]
        headers["WWW-Authenticate"] = 'Basic realm="taskstatus"'
    elif isinstance(exc, RateLimited):
        status, messages = 429, ["Rate limit exceeded"]
        headers["Retry-After"] = str(exc.retry_after)
    elif isinstance(exc, RequestValidationError):
        status, messages = 400, [str(e.get("msg")) for e in exc.errors()]
    elif isinstance(exc, StarletteHTTPException):  # e.g. a body too large or too slow
        status, messages = exc.status_code, [str(exc.detail)]
        headers.update(exc.headers or {})
    else:
        error = as_api_error(exc)
        if error is None:
            log.exception("%s %s -> 500 trackingId=%s", request.method, request.url.path, tid)
            status, messages = 500, ["An internal error occurred."]
        else:
            status, messages = error.status, error.causes or [error.message]
            headers.update(error.headers)
    if status < 500:
        log.info(
            "%s %s -> %d trackingId=%s: %s",
            request.method,
            request.url.path,
            status,
            tid,
            "; ".join(messages),
        )
    body = shaped_body(request.url.path, status, tid, "", messages)
    return json_response(status, body, error_headers(status, tid, headers))


class JiraRoute(APIRoute):
    """Routes whose errors, dependencies' included, come in Jira's shape."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()

        async def jira_handler(request: Request) -> Response:
            try:
                return await handler(request)
            except Exception as exc:
                return _jira_error(request, exc)

        return jira_handler


router = APIRouter(
    prefix="/rest/api/{version}/task",
    tags=["Jira async task"],
    route_class=JiraRoute,
    responses={
        400: {"model": JiraErrors},
        401: {"model": JiraErrors},
        403: {"model": JiraErrors},
        404: {"model": JiraErrors},
        429: {"model": JiraErrors},
    },
)
Version = Literal["2", "3"]
JiraReader = Annotated[Caller, Depends(requires(READ, allow_basic=True))]
JiraWriter = Annotated[Caller, Depends(requires(WRITE, allow_basic=True))]


@router.get("/{taskId}", summary="Get task", response_model=JiraTask)
async def get_task(
    version: Version,
    taskId: str,
    request: Request,
    state: State,
    caller: JiraReader,
    wait: Wait = None,
) -> Response:
    """The task's progress; 404 for unknown tasks and for tasks past the retention window.
    With ?wait=, as soon as it has ended or when the time is up."""
    task = await state.service.get(caller, taskId)
    task = await wait_until_terminal(state, caller, task, wait)
    url = self_link(request, state.settings, f"/rest/api/{version}/task/{task.id}")
    return json_response(200, jira_task(task, url, utcnow()))


def host_allowed(host: str, allowed: str) -> bool:
    """Whether the Host header `host` (a port optional) is in the comma-separated list."""
    entries = {e.strip().lower() for e in allowed.split(",") if e.strip()}
    if "*" in entries:
        return True
    host = host.strip().lower()
    name = host.split("]")[0] + "]" if host.startswith("[") else host.split(":")[0]
    return host in entries or name in entries


def self_link(request: Request, settings: Settings, path: str) -> str:
    """A link to `path` on this server: under the configured public URL, else at the Host the
    request named if that Host is allowed; any other Host is refused (400), so that no client
    can make the server hand out links to a host of its choosing."""
    if settings.public_url:
        return settings.public_url.rstrip("/") + path
    host = request.headers.get("host", "")
    if not host_allowed(host, settings.allowed_hosts):
        raise ApiError(
            400,
            [
                f"Host {printable(host)!r} is not one this server answers to (allowed: "
                f"{settings.allowed_hosts}); set --public-url or --allowed-hosts"
            ],
        )
    return f"{request.url.scheme}://{host}{path}"


@router.get(
    "/{taskId}/events",
    summary="Follow a task's events (Server-Sent Events)",
    response_class=Response,
    responses=STREAM_RESPONSES,
)
async def get_task_events(
    version: Version,
    taskId: str,
    request: Request,
    state: State,
    caller: JiraReader,
    after: After = None,
    last_event_id: LastEventId = None,
) -> Response:
    """The task's events as text/event-stream, `data:` in Jira's field names: a `snapshot`
    (the whole task), the log after the cursor, then live events until `completed`."""
    url = self_link(request, state.settings, f"/rest/api/{version}/task/{taskId}")
    return await task_stream(request, state, caller, taskId, JIRA, url)


@router.post(
    "/{taskId}/cancel",
    summary="Cancel task",
    status_code=202,
    response_class=Response,  # no body: Jira answers 202 Accepted with none
    responses={202: {"description": "Cancellation requested"}},
)
async def cancel_task(version: Version, taskId: str, state: State, caller: JiraWriter) -> Response:
    """Cancel a queued task, or ask a running one to stop (202). A finished task: 400."""
    await state.service.cancel(caller, taskId)
    return Response(status_code=202)
