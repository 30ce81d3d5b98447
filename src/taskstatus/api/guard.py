"""The first look at every request (`RequestGuard`): NUL characters in the path or query
string, bodies over max_body_bytes (413) or later than body_timeout (408), each refused in the
dialect of the path before the app reads anything."""

from __future__ import annotations

import asyncio
import logging

import orjson
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from taskstatus.api.errors import GENERIC, error_headers, scope_tracking_id, shaped_body
from taskstatus.limits import BODY_TIMEOUT, limit

__all__ = ["BodyTimeout", "BodyTooLarge", "RequestGuard", "refuse"]

log = logging.getLogger("taskstatus.api")


class RequestGuard:
    """Pure ASGI middleware, the first look at every request:

    - a path or query string with a NUL character is refused (400): no text can hold one;
    - a body over `max_body` is refused (413) before it is read whole: at once when
      Content-Length says so, else while it streams in;
    - a body that has not arrived `body_timeout` seconds after the headers is given up on (408).

    Each in the dialect of the path, with ``Connection: close`` when the body was not read.
    Requests without a body pass with no wrappers (the hot path)."""

    def __init__(self, app: ASGIApp, max_body: int, body_timeout: float = BODY_TIMEOUT) -> None:
        self.app = app
        self.max_body = max_body
        self.body_timeout = body_timeout

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        if "\x00" in scope["path"] or b"%00" in scope["query_string"]:
            where = "path" if "\x00" in scope["path"] else "query string"
            await refuse(scope, send, 400, f"the {where} contains a NUL character (%00)")
            return
        has_body = False
        for name, value in scope.get("headers", ()):
            if name == b"content-length":
                if value.isdigit() and int(value) > self.max_body:
                    await refuse(scope, send, 413, self._too_large())
                    return
                has_body = value != b"0"
            elif name == b"transfer-encoding":
                has_body = True
        if not has_body:
            await self.app(scope, receive, send)
            return

        started = False
        received = 0
        deadline = asyncio.get_running_loop().time() + self.body_timeout
        more_body = True

        async def send_wrapper(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        async def limited_receive() -> Message:
            nonlocal received, more_body
            if not more_body:  # the body is in: what follows is a disconnect, not a timeout
                return await receive()
            try:
                async with asyncio.timeout_at(deadline):
                    message = await receive()
            except TimeoutError:
                raise BodyTimeout(self.body_timeout) from None
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_body:
                    raise BodyTooLarge(self._too_large())
                more_body = message.get("more_body", False)
            return message

        try:
            await self.app(scope, limited_receive, send_wrapper)
        except StarletteHTTPException as exc:  # raised outside the app's exception handlers
            if started or not isinstance(exc, BodyTooLarge | BodyTimeout):
                raise
            await refuse(scope, send, exc.status_code, str(exc.detail))

    def _too_large(self) -> str:
        return f"the body is over {self.max_body} bytes ({limit('max-body-bytes', self.max_body)})"


class BodyTooLarge(StarletteHTTPException):
    """The request body passed max_body_bytes while it was read (413)."""

    def __init__(self, cause: str) -> None:
        super().__init__(413, cause)


class BodyTimeout(StarletteHTTPException):
    """The request body did not arrive in time (408)."""

    def __init__(self, seconds: float) -> None:
        super().__init__(
            408, f"the body did not arrive within {seconds:g} s ({limit('body-timeout', seconds)})"
        )


async def refuse(scope: Scope, send: Send, status: int, cause: str) -> None:
    """Answer the request in `scope` with an error in its dialect, from outside the app."""
    tid = scope_tracking_id(scope)
    path = str(scope.get("path", ""))
    log.info("%s %s -> %d trackingId=%s: %s", scope.get("method"), path, status, tid, cause)
    body = orjson.dumps(shaped_body(path, status, tid, GENERIC.get(status, ""), [cause]))
    headers = error_headers(status, tid, {"Content-Type": "application/json"})
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                *((k.lower().encode(), v.encode()) for k, v in headers.items()),
                (b"content-length", str(len(body)).encode()),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})
