"""The ASGI application: ``create_app(settings)``.

Its lifespan opens the store (applying migrations), publishes this process's handler
definitions, loads the shared signing key, creates the admin client on the first start of an
empty database, and runs in-process workers when ``concurrency`` > 0. Run it with
``taskstatus serve``, or under any ASGI server: ``uvicorn --factory taskstatus.api:create_app``
(settings then come from TASKSTATUS_* environment variables).
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import sys
from collections.abc import AsyncIterator
from importlib.metadata import version
from pathlib import Path

from fastapi import FastAPI

from taskstatus import ui
from taskstatus.api import docs, errors, health, jira, native, oauth, openapi, v2, v2024
from taskstatus.api import schedules as schedule_routes
from taskstatus.api.auth import Auth
from taskstatus.api.deps import ApiState
from taskstatus.api.fastlane import FastLane
from taskstatus.api.guard import RequestGuard
from taskstatus.api.ratelimit import FailureLimiter, RateLimiter, StreamLimits
from taskstatus.handlers import REGISTRY, Registry
from taskstatus.service import TaskService, utcnow
from taskstatus.settings import Settings
from taskstatus.worker import Worker, WorkerOptions

log = logging.getLogger("taskstatus.api")

# The task-status resource under every prefix its SDKs call: sailpoint 1.4.2 has the five
# operations under each of these; sailpoint 2.x calls /task-status/v1 (docs/api.md).
TASK_STATUS_PREFIXES = ("/v2024", "/v2025", "/v2026", "/beta")


def announce_admin(client_id: str, secret: str, saved_to: Path) -> None:
    """Say that the first start created the admin client. The secret is printed only to an
    interactive terminal: piped or logged output (a service's journal) never holds it."""
    lines = [
        "First start: created the admin API client (all scopes).",
        f"  client_id:     {client_id}",
    ]
    if sys.stdout.isatty():
        lines.append(f"  client_secret: {secret}")
        lines.append(f"  saved to {saved_to.resolve()} (mode 0600); the secret is not shown again.")
    else:
        lines.append(
            f"  the secret is saved in {saved_to.resolve()} (mode 0600) only: output that is "
            "not a terminal never shows it."
        )
    print("\n".join(lines), flush=True)


def create_app(
    settings: Settings | None = None,
    *,
    registry: Registry = REGISTRY,
    service: TaskService | None = None,
    fast_lane: bool = True,
) -> FastAPI:
    """The app over `service` (default: one on ``settings.database``), opened and closed by
    the app's lifespan. Without `fast_lane` the GET of one task takes the framework path
    only (tests compare the two)."""
    settings = settings or Settings()

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        svc = service or TaskService.from_url(
            settings.database,
            registry,
            limits=settings.limits(),
            max_subtask_depth=settings.max_subtask_depth,
            max_subtasks=settings.max_subtasks,
        )
        await svc.open()
        await svc.publish_definitions()
        auth = await Auth.create(svc.clients, settings.jwt_secret, token_ttl=settings.token_ttl)
        issued = await svc.clients.bootstrap_admin(settings.credentials_file, utcnow())
        if issued is not None:
            announce_admin(issued.client.id, issued.secret, settings.credentials_file)
        app.state.api = ApiState(
            settings=settings,
            service=svc,
            auth=auth,
            limiter=RateLimiter(settings.rate_limit, settings.rate_burst),
            token_limiter=RateLimiter(
                settings.token_rate_limit, max(1, int(settings.token_rate_limit * 4))
            ),
            auth_failures=FailureLimiter(settings.auth_failure_rate, settings.auth_failure_burst),
            streams=StreamLimits(settings.max_streams_per_client),
        )
        worker, running = None, None
        if settings.concurrency > 0 and len(registry):
            worker = Worker.of(
                svc,
                WorkerOptions(
                    concurrency=settings.concurrency,
                    lease_seconds=settings.lease_seconds,
                    poll_interval=settings.poll_interval,
                    grace_period=settings.grace_period,
                    recover_grace=settings.recover_grace,
                ),
            )
            running = asyncio.create_task(worker.run(), name="in-process worker")
            app.state.ui_worker = (worker.id, settings.concurrency)  # the dashboard shows it
        # What startup made lives as long as the process: keep the cyclic garbage collector
        # from scanning it again and again under load.
        gc.freeze()
        try:
            yield
        finally:
            if worker is not None and running is not None:
                worker.stop()
                await asyncio.gather(running, return_exceptions=True)
            await svc.close()

    app = FastAPI(
        title="taskstatus",
        version=version("taskstatus"),
        description="Long-running background tasks: the task-status (v2024), task CRUD (v2) "
        "and Jira-style async task dialects over one task store.",
        lifespan=lifespan,
        telemetry={
            "tracing": settings.telemetry,
            "metrics": settings.telemetry,
            "logs": settings.telemetry,
        },
        openapi_url="/openapi.json",
        docs_url=None,  # served by api/docs.py, from local files
        redoc_url=None,
    )
    errors.install(app)
    openapi.install(app)
    routers = [
        *(v2024.router(prefix) for prefix in TASK_STATUS_PREFIXES),
        v2024.router("", "/task-status/v1", pending=False),
        schedule_routes.router(),
        v2.router,
        jira.router,
        native.router,
        oauth.router,
        health.router,
    ]
    # Routes go straight onto the app's router: include_router() would put each behind an
    # _IncludedRouter that is matched and resolved again on every request (about 12% of a
    # GET of one task). The routers' prefixes, tags and dependencies are already in them.
    for router in routers:
        app.router.routes.extend(router.routes)
    if fast_lane:  # innermost of the middleware, its lanes derived from the routes above
        app.add_middleware(FastLane, routes=app.router.routes)
    # Added last, so outermost: the first to see a request, the FastLane's too.
    app.add_middleware(
        RequestGuard, max_body=settings.max_body_bytes, body_timeout=settings.body_timeout
    )
    app.add_middleware(errors.ContainErrors)  # outermost of ours: see its docstring
    docs.install(app)
    ui.install(app)
    return app
