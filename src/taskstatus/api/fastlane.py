"""The fast path of the GET of one task (what clients poll), explicit.

A route that wants it is a `FastRoute`: an ordinary FastAPI route (the framework path:
dependencies, validation, the router), with `fast`, a plain handler that makes the same
checks and gives the same answer. `FastLane`, a pure ASGI middleware above the router, sends
the requests those routes would get straight to `fast`, skipping the exception, exit-stack,
routing, request-wrapping and dependency layers (most of a request's cost on this machine).

Which requests those are is derived from the app's routes, not written by hand: the paths of
the fast routes, less any path an earlier GET route of the router takes (``pending-tasks``,
``events``: the router tries routes in order, so the lane does the same). `fast`'s expected
errors are answered by the app's registered exception handlers, and unexpected ones are
re-raised to Starlette's ServerErrorMiddleware, above, like any route's.
tests/api/test_fast_path.py checks that every answer is byte for byte the framework path's.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Coroutine, Sequence
from typing import Any

from fastapi.routing import APIRoute
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route
from starlette.types import ASGIApp, Receive, Scope, Send

__all__ = ["FastHandler", "FastLane", "FastRoute"]

FastHandler = Callable[[Request], Coroutine[Any, Any, Response]]


class FastRoute(APIRoute):
    """A route with a fast handler beside its endpoint: `fast(request)` must answer what the
    endpoint answers. Its path ends in its one parameter (``.../{id}``)."""

    def __init__(
        self, path: str, endpoint: Callable[..., Any], *, fast: FastHandler, **kwargs: Any
    ) -> None:
        self.fast = fast
        super().__init__(path, endpoint, **kwargs)


class _Lane:
    """The requests one fast handler takes: a GET of a path matching `pattern` that no
    earlier route takes (`taken`)."""

    def __init__(self, handler: FastHandler, pattern: re.Pattern[str], taken: set[str]) -> None:
        self.handler = handler
        self.pattern = pattern
        self.taken = taken


def lanes_of(routes: Sequence[BaseRoute]) -> list[_Lane]:
    """The lanes of the FastRoutes among `routes` (the app's, in the router's order)."""
    prefixes: dict[FastHandler, tuple[list[str], str]] = {}
    taken: dict[FastHandler, set[str]] = {}
    earlier: list[Route] = []
    for route in routes:
        if isinstance(route, FastRoute):
            prefix, brace, rest = route.path.rpartition("{")
            name = rest.removesuffix("}")
            if not brace or "{" in prefix or "/" in rest or not rest.endswith("}"):
                raise ValueError(f"a FastRoute's path ends in its one parameter: {route.path}")
            known, known_name = prefixes.setdefault(route.fast, ([], name))
            if known_name != name:
                raise ValueError(f"{route.path}: the lane's parameter is {known_name!r}")
            known.append(prefix)
            # literal paths of earlier GET routes that this one's pattern would swallow
            taken.setdefault(route.fast, set()).update(
                r.path
                for r in earlier
                if "{" not in r.path and route.path_regex.fullmatch(r.path) is not None
            )
        if isinstance(route, Route) and route.methods and "GET" in route.methods:
            earlier.append(route)
    lanes = []
    for handler, (known, name) in prefixes.items():
        alternatives = "|".join(re.escape(p) for p in known)
        pattern = re.compile(rf"(?:{alternatives})(?P<{name}>[^/]+)")
        lanes.append(_Lane(handler, pattern, taken[handler]))
    return lanes


class FastLane:
    """Serves the requests of the app's FastRoutes with their fast handlers."""

    def __init__(self, app: ASGIApp, routes: Sequence[BaseRoute]) -> None:
        self.app = app
        self.lanes = lanes_of(routes)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["method"] == "GET":
            path = scope["path"]
            for lane in self.lanes:
                match = lane.pattern.fullmatch(path)
                if match is not None and path not in lane.taken:
                    scope["path_params"] = match.groupdict()
                    await self._serve(lane.handler, scope, receive, send)
                    return
        await self.app(scope, receive, send)

    @staticmethod
    async def _serve(handler: FastHandler, scope: Scope, receive: Receive, send: Send) -> None:
        request = Request(scope, receive, send)
        try:
            response = await handler(request)
        except Exception as exc:
            answer = _handler_for(request, exc)
            if answer is None:
                raise
            response = await answer(request, exc)
        # the two messages a Response would send, without its machinery
        await send(
            {
                "type": "http.response.start",
                "status": response.status_code,
                "headers": response.raw_headers,
            }
        )
        await send({"type": "http.response.body", "body": response.body})


def _handler_for(request: Request, exc: Exception):  # type: ignore[no-untyped-def]
    """The app's handler for `exc`, by its class hierarchy, as ExceptionMiddleware finds it;
    None for the catch-all, which belongs to ServerErrorMiddleware (it logs the traceback)."""
    handlers = request.app.exception_handlers
    for kind in type(exc).__mro__:
        if kind is Exception:
            return None
        if kind in handlers:
            return handlers[kind]
    return None
