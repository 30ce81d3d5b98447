"""LeanRoute: a route documented like any FastAPI route, served without FastAPI's dependency
solving and parameter validation (most of FastAPI's ~120 us per request on this machine, more
than the work of reading a task).

The endpoint's signature declares the operation for OpenAPI; `lean(request)` serves it, through
the `get_route_handler` hook FastAPI builds every route's ASGI app from (included routers too).
Errors raised by `lean` go through the app's exception handlers, so their bodies are the same.
Used only where the cost shows: GET of one task, the request clients poll.
"""

from __future__ import annotations

from collections.abc import Callable, Coroutine
from typing import Any

from fastapi.routing import APIRoute
from starlette.requests import Request
from starlette.responses import Response

LeanHandler = Callable[[Request], Coroutine[Any, Any, Response]]


class LeanRoute(APIRoute):
    def __init__(
        self, path: str, endpoint: Callable[..., Any], *, lean: LeanHandler, **kwargs: Any
    ):
        self.lean = lean
        super().__init__(path, endpoint, **kwargs)

    def get_route_handler(self) -> LeanHandler:
        return self.lean
