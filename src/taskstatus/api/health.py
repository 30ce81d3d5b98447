"""Probes for orchestrators: /health (the process answers), /ready (the database answers)."""

from __future__ import annotations

import logging

from fastapi import APIRouter
from starlette.responses import Response

from taskstatus.api.deps import State
from taskstatus.api.errors import ApiError, json_response
from taskstatus.errors import StoreUnavailable

log = logging.getLogger("taskstatus.api")
router = APIRouter(tags=["Health"])


@router.get("/health", summary="Liveness")
async def health() -> Response:
    return json_response(200, {"status": "ok"})


@router.get("/ready", summary="Readiness: the database is reachable")
async def ready(state: State) -> Response:
    try:
        await state.service.ping()
    except StoreUnavailable as e:
        log.warning("not ready: %s", e)
        raise ApiError(503, [str(e)], headers={"Retry-After": str(e.retry_after)}) from None
    except Exception as e:
        log.warning("not ready: %s", e)
        raise ApiError(503, [f"the database is not reachable: {type(e).__name__}"]) from None
    return json_response(200, {"status": "ready"})
