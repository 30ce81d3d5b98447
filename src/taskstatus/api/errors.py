"""Errors as the seeds describe them, in one place: which domain error is which status
(`ANSWERS`, the one table), and the bodies and headers of every error response.

Every 4xx/5xx is an ErrorResponseDto (``detailCode``, ``trackingId``, ``messages``, ``causes``)
except 401 (``{"error": "JWT validation failed: ..."}``) and 429 (``{"message": ...}`` with
``Retry-After``). An error's tracking id is in its body, in the ``X-Tracking-Id`` header and in
the server log line of that request. Unexpected exceptions are a 500 of the same shape; the
traceback goes to the server log (Starlette re-raises it there), never to the client.

Paths have a dialect, whatever route (or none) they match: under ``/rest/api/`` every error is
Jira's ``{"errorMessages": [...], "errors": {}}``; on ``/oauth/token`` every error carries
RFC 6749's ``error`` and ``error_description`` (`shaped_body`). A response after which the
connection cannot be reused (a 500, a body refused before it was read) says
``Connection: close``.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import orjson
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.responses import Response
from starlette.routing import Match, Route
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from taskstatus.api.responses import json_response
from taskstatus.errors import (
    ConflictError,
    Forbidden,
    HasSubtasks,
    InvalidArguments,
    NotFound,
    StoreUnavailable,
    UnknownHandler,
)
from taskstatus.limits import InputRejected
from taskstatus.model import IllegalTransition, InvalidTaskChange
from taskstatus.patch import PatchError
from taskstatus.query import QueryError

log = logging.getLogger("taskstatus.api")

DETAIL_CODES = {
    400: "400.1 Bad Request Content",
    401: "401 Unauthorized",
    403: "403 Forbidden",
    404: "404 Not found",
    405: "405 Method Not Allowed",
    406: "406 Not Acceptable",
    408: "408 Request Timeout",
    409: "409 Conflict",
    413: "413 Payload Too Large",
    415: "415 Unsupported Media Type",
    429: "429 Too Many Requests",
    431: "431 Request Header Fields Too Large",
    500: "500.0 Internal Fault",
    503: "503 Service Unavailable",
}
GENERIC = {
    400: "The request was syntactically correct but its content is semantically invalid.",
    403: "The server understood the request but refuses to authorize it.",
    404: "The requested resource was not found.",
    405: "The method is not allowed for the requested URL.",
    408: "The request was not received in time.",
    409: "The resource changed while the request was being handled.",
    413: "The request body is too large.",
    415: "The request body has an unsupported media type.",
    429: "Too many requests; retry after the time in Retry-After.",
    431: "The request's headers are too large.",
    500: "An internal fault occurred.",
    503: "The service cannot answer now.",
}


class ApiError(Exception):
    """An error response: `status`, the generic message, and causes that say exactly what."""

    def __init__(
        self,
        status: int,
        causes: Sequence[str] = (),
        *,
        message: str | None = None,
        headers: dict[str, str] | None = None,
        extra: dict[str, Any] | None = None,
    ) -> None:
        self.status = status
        self.causes = list(causes)
        self.message = message or GENERIC.get(status, "The request failed.")
        self.headers = headers or {}
        self.extra = extra or {}  # more fields for the body, e.g. v2's related subtasks
        super().__init__("; ".join(self.causes) or self.message)


class Unauthorized(Exception):
    """401 with the seeds' body: {"error": "JWT validation failed: <reason>"}."""

    def __init__(self, reason: str, *, error: str | None = None) -> None:
        self.reason = reason
        self.body = {"error": error or f"JWT validation failed: {reason}"}
        super().__init__(reason)


class RateLimited(Exception):
    def __init__(self, retry_after: int) -> None:
        self.retry_after = retry_after
        super().__init__(f"rate limited; retry after {retry_after}s")


def tracking_id(request: Request) -> str:
    """The request's tracking id, made the first time an error needs it."""
    return scope_tracking_id(request.scope)


def scope_tracking_id(scope: Scope) -> str:
    state = scope.setdefault("state", {})
    tid = state.get("tracking_id")
    if tid is None:
        tid = state["tracking_id"] = uuid.uuid4().hex
    return str(tid)


def _text(text: str) -> dict[str, str]:
    return {"locale": "en-US", "localeOrigin": "DEFAULT", "text": printable(text)}


def printable(text: str) -> str:
    """`text` as JSON can carry it: a lone surrogate (from a hostile body) as its escape."""
    return text if text.isascii() else text.encode("utf-8", "backslashreplace").decode()


def error_body(status: int, tid: str, message: str, causes: Sequence[str]) -> dict[str, Any]:
    body: dict[str, Any] = {
        "detailCode": DETAIL_CODES.get(status, f"{status}"),
        "trackingId": tid,
        "messages": [_text(message)],
    }
    if causes:
        body["causes"] = [_text(c) for c in causes]
    return body


JIRA_PREFIX = "/rest/api/"
TOKEN_PATH = "/oauth/token"  # noqa: S105 - a path, not a password
# Statuses after which the connection is closed: the request (body) may not have been read.
CLOSE_AFTER = frozenset({408, 413, 431, 500})
CLOSE = {"Connection": "close"}


def oauth_error(status: int) -> str:
    """RFC 6749's `error` code for a token endpoint answer of `status`."""
    if status == 401:
        return "invalid_client"
    if status in (429, 503):
        return "temporarily_unavailable"
    return "server_error" if status >= 500 else "invalid_request"


def shaped_body(
    path: str,
    status: int,
    tid: str,
    message: str,
    causes: Sequence[str],
    extra: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """The body of an error in the dialect of `path` (see the module's docstring)."""
    if path.startswith(JIRA_PREFIX):
        return {"errorMessages": [printable(c) for c in causes] or [message], "errors": {}}
    body = {**error_body(status, tid, message, causes), **(extra or {})}
    if path == TOKEN_PATH:
        description = printable("; ".join(causes) or message)
        return {"error": oauth_error(status), "error_description": description, **body}
    return body


def error_headers(
    status: int, tid: str, headers: Mapping[str, str] | None = None
) -> dict[str, str]:
    """The headers of an error response: its own, the tracking id, Connection: close if due."""
    return {**(headers or {}), "X-Tracking-Id": tid, **(CLOSE if status in CLOSE_AFTER else {})}


def _respond(request: Request, error: ApiError) -> Response:
    tid = tracking_id(request)
    level = logging.ERROR if error.status >= 500 else logging.INFO
    log.log(
        level,
        "%s %s -> %d trackingId=%s: %s",
        request.method,
        request.url.path,
        error.status,
        tid,
        error,
    )
    body = shaped_body(
        request.url.path, error.status, tid, error.message, error.causes, error.extra
    )
    return json_response(error.status, body, error_headers(error.status, tid, error.headers))


def _message(exc: Exception) -> list[str]:
    return [str(exc)]


def _each_error(exc: Exception) -> list[str]:
    assert isinstance(exc, InvalidArguments)
    return [f"{exc.handler}: {e}" for e in exc.errors]


def _retry_after(exc: Exception) -> dict[str, str]:
    assert isinstance(exc, StoreUnavailable)
    return {"Retry-After": str(exc.retry_after)}


@dataclass(frozen=True, slots=True)
class Answer:
    """How a domain error is answered: its status, its causes, its headers."""

    status: int
    causes: Callable[[Exception], list[str]] = _message
    headers: Callable[[Exception], dict[str, str]] | None = None


# Every domain error an API route may raise, and its answer: the one list. `install` registers
# a handler for each, and `as_api_error` (also what the Jira and client dialects use) reads it,
# so an error added here is never a 500 by omission. Subclasses are answered as their nearest
# listed base (NotQueued as InputRejected, say).
ANSWERS: dict[type[Exception], Answer] = {
    NotFound: Answer(404),
    QueryError: Answer(400),
    PatchError: Answer(400),
    InvalidTaskChange: Answer(400),
    IllegalTransition: Answer(400),
    InputRejected: Answer(400),
    InvalidArguments: Answer(400, _each_error),
    UnknownHandler: Answer(400),
    Forbidden: Answer(403),
    ConflictError: Answer(409),
    HasSubtasks: Answer(409),
    StoreUnavailable: Answer(503, headers=_retry_after),
}


def as_api_error(exc: Exception) -> ApiError | None:
    """The response a domain error deserves (`ANSWERS`), or None for an unexpected one."""
    if isinstance(exc, ApiError):
        return exc
    for kind in type(exc).__mro__:
        answer = ANSWERS.get(kind)
        if answer is not None:
            headers = answer.headers(exc) if answer.headers is not None else None
            return ApiError(answer.status, answer.causes(exc), headers=headers)
    return None


def _validation_causes(exc: RequestValidationError) -> list[str]:
    causes = []
    for err in exc.errors():
        where = ".".join(str(p) for p in err.get("loc", ()) if p != "body") or "body"
        causes.append(f"{where}: {err.get('msg', 'invalid')}")
    return causes


def install(app: FastAPI) -> None:
    """Register the handlers that turn exceptions into the seeds' error bodies."""

    async def on_api_error(request: Request, exc: Exception) -> Response:
        error = as_api_error(exc)
        assert error is not None
        return _respond(request, error)

    kinds: list[type[Exception]] = [ApiError, *ANSWERS]
    for kind in kinds:
        app.add_exception_handler(kind, on_api_error)

    async def on_validation(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, RequestValidationError)
        return _respond(request, ApiError(400, _validation_causes(exc)))

    async def on_http(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, StarletteHTTPException)
        causes = (
            [str(exc.detail)] if exc.detail and exc.detail != GENERIC.get(exc.status_code) else []
        )
        headers = dict(exc.headers or {})
        if exc.status_code == 405:
            headers["Allow"] = allowed_methods(request)
        return _respond(request, ApiError(exc.status_code, causes, headers=headers))

    async def on_unauthorized(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, Unauthorized)
        log.info(
            "%s %s -> 401 trackingId=%s: %s",
            request.method,
            request.url.path,
            tracking_id(request),
            exc.reason,
        )
        return json_response(401, exc.body, {"WWW-Authenticate": "Bearer"})

    async def on_rate_limited(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, RateLimited)
        log.info(
            "%s %s -> 429 trackingId=%s", request.method, request.url.path, tracking_id(request)
        )
        path, headers = request.url.path, {"Retry-After": str(exc.retry_after)}
        if path.startswith(JIRA_PREFIX) or path == TOKEN_PATH:
            tid = tracking_id(request)
            body = shaped_body(path, 429, tid, GENERIC[429], [])
            return json_response(429, body, error_headers(429, tid, headers))
        return json_response(429, {"message": " Rate Limit Exceeded "}, headers)

    async def on_unexpected(request: Request, exc: Exception) -> Response:
        # Starlette's ServerErrorMiddleware calls this, then re-raises for the server's log.
        tid = tracking_id(request)
        log.error(
            "%s %s -> 500 trackingId=%s: %s: %s",
            request.method,
            request.url.path,
            tid,
            type(exc).__name__,
            exc,
        )
        body = shaped_body(request.url.path, 500, tid, GENERIC[500], [])
        return json_response(500, body, error_headers(500, tid))

    app.add_exception_handler(Exception, on_unexpected)
    app.add_exception_handler(RequestValidationError, on_validation)
    app.add_exception_handler(StarletteHTTPException, on_http)
    app.add_exception_handler(Unauthorized, on_unauthorized)
    app.add_exception_handler(RateLimited, on_rate_limited)


def allowed_methods(request: Request) -> str:
    """Every method some route takes at the request's path (Starlette names only the first
    route's, but a path can have several: GET and PATCH of a task)."""
    methods: set[str] = set()
    for route in request.app.router.routes:
        if isinstance(route, Route) and route.methods:
            match, _ = route.matches({**request.scope, "method": "GET"})
            if match is not Match.NONE:
                methods |= route.methods
    return ", ".join(sorted(methods))


class ContainErrors:
    """Pure ASGI middleware: an unexpected exception becomes the 500 ErrorResponseDto here,
    its traceback goes to the log, and it goes no further. Starlette's outermost middleware
    would re-raise it to the server after answering, and uvicorn then closes the
    connection: a keep-alive client's next request on it would fail with a reset."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = False

        async def send_wrapper(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, receive, send_wrapper)
        except Exception as exc:
            tid = scope_tracking_id(scope)
            log.error(
                "%s %s -> 500 trackingId=%s: %s: %s",
                scope.get("method"),
                scope.get("path"),
                tid,
                type(exc).__name__,
                exc,
                exc_info=exc,
            )
            if started:  # the answer is half sent: only closing the connection can tell
                raise
            body = orjson.dumps(error_body(500, tid, GENERIC[500], []))
            await send(
                {
                    "type": "http.response.start",
                    "status": 500,
                    "headers": [
                        (b"content-type", b"application/json"),
                        (b"content-length", str(len(body)).encode()),
                        (b"x-tracking-id", tid.encode()),
                    ],
                }
            )
            await send({"type": "http.response.body", "body": body})
