"""The web dashboard at /ui: see and steer every task, live.

Server-rendered pages (Jinja2 templates under templates/, htmx and its SSE extension vendored
under static/, no CDN, no build step) over the same service and visibility rules as the API
(gateway.py), signed in with an API client's credentials (session.py), kept current by
Server-Sent Events of rendered HTML from the event log (live.py). `install(app)` adds it to
the ASGI app; none of its routes is in the OpenAPI document.
"""

from __future__ import annotations

from importlib.resources import files

from fastapi import FastAPI
from starlette.staticfiles import StaticFiles

__all__ = ["install"]

STATIC = "/ui/static"


def install(app: FastAPI) -> None:
    from taskstatus.ui import actions, live, pages

    app.mount(STATIC, StaticFiles(directory=str(files("taskstatus.ui") / "static")), name="ui")
    for router in (live.router, pages.router, actions.router):
        app.router.routes.extend(router.routes)
