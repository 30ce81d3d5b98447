"""What routes share: the app's state, and the dependency that authenticates, rate-limits and
checks the scope of a caller (documented in OpenAPI as OAuth2 client credentials)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Annotated

from fastapi import Depends, Request, Security
from fastapi.openapi.models import OAuthFlowClientCredentials, OAuthFlows
from fastapi.security import OAuth2

from taskstatus.api.auth import Auth, Principal
from taskstatus.api.errors import ApiError
from taskstatus.api.ratelimit import RateLimiter, StreamLimits
from taskstatus.credentials import ADMIN, READ, WRITE
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
) -> Principal:
    """The authenticated caller, rate-limited, holding `scope`; else Unauthorized (401),
    RateLimited (429) or a 403."""
    state = app_state(request)
    principal = await state.auth.from_header(authorization, allow_basic=allow_basic)
    state.limiter.check(principal.client_id)
    if not principal.allows(scope):
        held = ", ".join(sorted(principal.scopes)) or "none"
        raise ApiError(403, [f"this operation needs the {scope} scope; the token has {held}"])
    return principal


def caller(scope: str, *, allow_basic: bool = False) -> Callable[..., Awaitable[Principal]]:
    """A dependency: `authorize` for `scope`, documented in OpenAPI as OAuth2."""

    # Security(...) as the default, not in Annotated: a closure variable cannot be resolved
    # from a postponed annotation.
    async def dependency(
        request: Request,
        authorization: str | None = Security(oauth2, scopes=[scope]),
    ) -> Principal:
        return await authorize(request, scope, authorization, allow_basic=allow_basic)

    return dependency


Reader = Annotated[Principal, Depends(caller(READ))]
Writer = Annotated[Principal, Depends(caller(WRITE))]
