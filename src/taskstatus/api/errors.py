"""Errors as the seeds describe them, in one place.

Every 4xx/5xx is an ErrorResponseDto (``detailCode``, ``trackingId``, ``messages``, ``causes``)
except 401 (``{"error": "JWT validation failed: ..."}``) and 429 (``{"message": ...}`` with
``Retry-After``). An error's tracking id is in its body, in the ``X-Tracking-Id`` header and in
the server log line of that request. Unexpected exceptions are a 500 of the same shape; the
traceback goes to the server log (Starlette re-raises it there), never to the client.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Mapping, Sequence
from typing import Any

import orjson
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.responses import Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from taskstatus.errors import (
    ConflictError,
    HasSubtasks,
    InvalidArguments,
    NotFound,
    StoreUnavailable,
    UnknownHandler,
)
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
    409: "409 Conflict",
    413: "413 Payload Too Large",
    415: "415 Unsupported Media Type",
    429: "429 Too Many Requests",
    500: "500.0 Internal Fault",
    503: "503 Service Unavailable",
}
GENERIC = {
    400: "The request was syntactically correct but its content is semantically invalid.",
    403: "The server understood the request but refuses to authorize it.",
    404: "The requested resource was not found.",
    405: "The method is not allowed for the requested URL.",
    409: "The resource changed while the request was being handled.",
    413: "The request body is too large.",
    415: "The request body has an unsupported media type.",
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
    return _tracking_id(request.scope)


def _tracking_id(scope: Scope) -> str:
    state = scope.setdefault("state", {})
    tid = state.get("tracking_id")
    if tid is None:
        tid = state["tracking_id"] = uuid.uuid4().hex
    return str(tid)


def _text(text: str) -> dict[str, str]:
    return {"locale": "en-US", "localeOrigin": "DEFAULT", "text": text}


def error_body(status: int, tid: str, message: str, causes: Sequence[str]) -> dict[str, Any]:
    body: dict[str, Any] = {
        "detailCode": DETAIL_CODES.get(status, f"{status}"),
        "trackingId": tid,
        "messages": [_text(message)],
    }
    if causes:
        body["causes"] = [_text(c) for c in causes]
    return body


class CasedResponse(Response):
    """A response that keeps the case of its header names. HTTP says case does not matter, but
    the SailPoint SDK reads ``X-Total-Count`` from a case-sensitive mapping; Starlette would
    send ``x-total-count``."""

    def init_headers(self, headers: Mapping[str, str] | None = None) -> None:
        super().init_headers(None)
        for name, value in (headers or {}).items():
            self.raw_headers.append((name.encode("latin-1"), value.encode("latin-1")))


def json_response(status: int, body: Any, headers: Mapping[str, str] | None = None) -> Response:
    return CasedResponse(
        orjson.dumps(body), status_code=status, media_type="application/json", headers=headers
    )


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
    body = {**error_body(error.status, tid, error.message, error.causes), **error.extra}
    return json_response(error.status, body, {**error.headers, "X-Tracking-Id": tid})


def as_api_error(exc: Exception) -> ApiError | None:
    """The response a domain error deserves, or None for an unexpected one."""
    if isinstance(exc, ApiError):
        return exc
    if isinstance(exc, NotFound):
        return ApiError(404, [str(exc)])
    if isinstance(exc, QueryError | PatchError | InvalidTaskChange | IllegalTransition):
        return ApiError(400, [str(exc)])
    if isinstance(exc, InvalidArguments):
        return ApiError(400, [f"{exc.handler}: {e}" for e in exc.errors])
    if isinstance(exc, UnknownHandler):
        return ApiError(400, [str(exc)])
    if isinstance(exc, ConflictError | HasSubtasks):
        return ApiError(409, [str(exc)])
    if isinstance(exc, StoreUnavailable):
        return ApiError(503, [str(exc)], headers={"Retry-After": str(exc.retry_after)})
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

    for kind in (
        ApiError,
        NotFound,
        QueryError,
        PatchError,
        InvalidTaskChange,
        IllegalTransition,
        InvalidArguments,
        UnknownHandler,
        ConflictError,
        StoreUnavailable,
    ):
        app.add_exception_handler(kind, on_api_error)

    async def on_validation(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, RequestValidationError)
        return _respond(request, ApiError(400, _validation_causes(exc)))

    async def on_http(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, StarletteHTTPException)
        causes = (
            [str(exc.detail)] if exc.detail and exc.detail != GENERIC.get(exc.status_code) else []
        )
        return _respond(request, ApiError(exc.status_code, causes, headers=dict(exc.headers or {})))

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
        return json_response(
            429, {"message": " Rate Limit Exceeded "}, {"Retry-After": str(exc.retry_after)}
        )

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
        return json_response(500, error_body(500, tid, GENERIC[500], []), {"X-Tracking-Id": tid})

    app.add_exception_handler(Exception, on_unexpected)
    app.add_exception_handler(RequestValidationError, on_validation)
    app.add_exception_handler(StarletteHTTPException, on_http)
    app.add_exception_handler(Unauthorized, on_unauthorized)
    app.add_exception_handler(RateLimited, on_rate_limited)


class RequestGuard:
    """Pure ASGI middleware: request bodies over `max_body` are refused (413) before they are
    read whole: at once when Content-Length says so, else while they stream in. Requests
    without a body pass untouched (no wrappers on the hot path)."""

    def __init__(self, app: ASGIApp, max_body: int) -> None:
        self.app = app
        self.max_body = max_body

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        has_body = False
        for name, value in scope.get("headers", ()):
            if name == b"content-length":
                if value.isdigit() and int(value) > self.max_body:
                    await self._too_large(scope, send)
                    return
                has_body = value != b"0"
            elif name == b"transfer-encoding":
                has_body = True
        if not has_body:
            await self.app(scope, receive, send)
            return

        started = False
        received = 0

        async def send_wrapper(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        async def limited_receive() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_body:
                    raise _BodyTooLarge
            return message

        try:
            await self.app(scope, limited_receive, send_wrapper)
        except _BodyTooLarge:
            if not started:
                await self._too_large(scope, send)

    async def _too_large(self, scope: Scope, send: Send) -> None:
        tid = _tracking_id(scope)
        cause = f"the body is over {self.max_body} bytes"
        log.info(
            "%s %s -> 413 trackingId=%s: %s", scope.get("method"), scope.get("path"), tid, cause
        )
        body = orjson.dumps(error_body(413, tid, GENERIC[413], [cause]))
        await send(
            {
                "type": "http.response.start",
                "status": 413,
                "headers": [
                    (b"content-type", b"application/json"),
                    (b"content-length", str(len(body)).encode()),
                    (b"x-tracking-id", tid.encode()),
                ],
            }
        )
        await send({"type": "http.response.body", "body": body})


class _BodyTooLarge(Exception):
    pass


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
            tid = _tracking_id(scope)
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
