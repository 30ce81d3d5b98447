"""What routes share: the app's state, and the dependency that authenticates, rate-limits and
checks the scope of a caller (documented in OpenAPI as OAuth2 client credentials), and gives
the route the `Caller` to hand the service, with the retention cutoff of now."""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Annotated, Any

from fastapi import Depends, Request, Security
from fastapi.openapi.models import OAuthFlowClientCredentials, OAuthFlows
from fastapi.security import OAuth2

from taskstatus.api.auth import Auth, basic_credentials
from taskstatus.api.errors import ApiError, Unauthorized
from taskstatus.api.ratelimit import FailureLimiter, RateLimiter, StreamLimits
from taskstatus.caller import ADMIN, READ, WRITE, Caller
from taskstatus.limits import check_json
from taskstatus.service import TaskService, utcnow
from taskstatus.settings import Settings

oauth2 = OAuth2(
    flows=OAuthFlows(
        clientCredentials=OAuthFlowClientCredentials(
            tokenUrl="/oauth/token",
            scopes={
                READ: "Read the tasks the caller may see",
                WRITE: "Patch, cancel and submit tasks",
                ADMIN: "Every task and every client",
            },
        )
    ),
    auto_error=False,
)


@dataclass
class ApiState:
    """Everything a request needs, built once by the app's lifespan."""

    settings: Settings
    service: TaskService
    auth: Auth
    limiter: RateLimiter
    token_limiter: RateLimiter
    auth_failures: FailureLimiter = field(default_factory=lambda: FailureLimiter(0.2, 10))
    streams: StreamLimits = field(default_factory=lambda: StreamLimits(100))

    @property
    def retention(self) -> timedelta:
        return timedelta(days=self.settings.retention_days)

    def cutoff(self) -> datetime:
        """Tasks created before this are past the retention window: not returned."""
        return utcnow() - self.retention


def app_state(request: Request) -> ApiState:
    state: ApiState = request.app.state.api
    return state


async def api_state(request: Request) -> ApiState:
    """The app's state, as a dependency. Async on purpose: FastAPI runs plain-def
    dependencies in a thread pool, a thread hop per request."""
    return app_state(request)


State = Annotated[ApiState, Depends(api_state)]


async def authorize(
    request: Request, scope: str, authorization: str | None, *, allow_basic: bool = False
) -> Caller:
    """The authenticated caller, rate-limited, holding `scope`, with the retention cutoff;
    else Unauthorized (401), RateLimited (429) or a 403."""
    state = app_state(request)
    if allow_basic and authorization and authorization[:6].lower() == "basic ":
        caller = await basic_login(request, authorization)
    else:
        caller = await state.auth.from_header(authorization, allow_basic=allow_basic)
    state.limiter.check(caller.client_id)
    if not caller.allows(scope):
        held = ", ".join(sorted(caller.scopes)) or "none"
        raise ApiError(403, [f"this operation needs the {scope} scope; the token has {held}"])
    return Caller(caller.client_id, caller.owner, caller.scopes, state.cutoff())


def source_address(request: Request) -> str:
    return request.client.host if request.client else "-"


async def basic_login(request: Request, authorization: str) -> Caller:
    """HTTP Basic: a secret is checked, so failures are limited (`FailureLimiter`)."""
    state = app_state(request)
    creds = basic_credentials(authorization)
    client_id, address = (creds[0] if creds else None), source_address(request)
    state.auth_failures.check(client_id, address)
    try:
        return await state.auth.from_header(authorization, allow_basic=True)
    except Unauthorized:
        state.auth_failures.failed(client_id, address)
        raise


def requires(scope: str, *, allow_basic: bool = False) -> Callable[..., Awaitable[Caller]]:
    """A dependency: `authorize` for `scope`, documented in OpenAPI as OAuth2."""

    # Security(...) as the default, not in Annotated: a closure variable cannot be resolved
    # from a postponed annotation.
    async def dependency(
        request: Request,
        authorization: str | None = Security(oauth2, scopes=[scope]),
    ) -> Caller:
        return await authorize(request, scope, authorization, allow_basic=allow_basic)

    return dependency


Reader = Annotated[Caller, Depends(requires(READ))]
Writer = Annotated[Caller, Depends(requires(WRITE))]


PATCH_TYPES = ("application/json-patch+json", "application/json")


async def read_json_patch(request: Request) -> Any:
    """A JSON Patch body: 415 for another media type, 400 for invalid JSON or a value past a
    limit. json, not orjson: orjson reads integers past 64 bits as floats, unnoticed."""
    media = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if media not in PATCH_TYPES:
        raise ApiError(
            415, [f"send the patch as application/json-patch+json, not {media or 'nothing'}"]
        )
    try:
        operations = json.loads(await request.body())
    except (ValueError, RecursionError) as e:
        raise ApiError(400, [f"the body is not valid JSON: {e}"]) from None
    check_json(operations, "body")
    return operations
