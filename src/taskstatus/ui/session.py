"""The dashboard's session: a signed cookie holding an access token and a CSRF token.

Signing in at /ui/login checks the client's id and secret as the token endpoint does (with
the same limit on failures) and issues the client an access token, kept in a cookie signed
with itsdangerous (HttpOnly, SameSite=Lax, Secure when the request came over https) that
expires with the token. Every request checks the token as the API checks a bearer token, so a
revoked client is signed out within seconds, and every action must carry the session's CSRF
token (a form field or the X-CSRF-Token header that htmx sends).
"""

from __future__ import annotations

import hmac
import secrets
import time
from dataclasses import dataclass
from typing import Any

from itsdangerous import BadSignature, URLSafeTimedSerializer
from starlette.requests import Request
from starlette.responses import Response

from taskstatus.api.deps import ApiState
from taskstatus.api.errors import ApiError, Unauthorized
from taskstatus.caller import Caller

__all__ = ["COOKIE", "CSRF_FIELD", "CSRF_HEADER", "Session", "check_csrf", "read", "sign_in"]

COOKIE = "taskstatus_ui"
CSRF_FIELD = "csrf_token"
CSRF_HEADER = "x-csrf-token"
_SALT = "taskstatus.ui.session"


@dataclass(frozen=True, slots=True)
class Session:
    """A signed-in caller: who it is, and the token its forms must send back."""

    caller: Caller
    csrf: str


def _serializer(state: ApiState) -> URLSafeTimedSerializer:
    return URLSafeTimedSerializer(state.auth.derived_key(_SALT), salt=_SALT)


def _payload(request: Request, state: ApiState) -> dict[str, Any] | None:
    raw = request.cookies.get(COOKIE)
    if not raw:
        return None
    try:
        data = _serializer(state).loads(raw, max_age=int(state.settings.token_ttl))
    except BadSignature:  # also an expired one (SignatureExpired is a BadSignature)
        return None
    return data if isinstance(data, dict) else None


async def read(request: Request, state: ApiState) -> Session | None:
    """The session of `request`, or None (no cookie, a bad or expired one, a revoked client)."""
    data = _payload(request, state)
    if data is None:
        return None
    try:
        caller = await state.auth.bearer(str(data.get("t", "")))
    except Unauthorized:
        return None
    state.limiter.check(caller.client_id)
    return Session(caller, str(data.get("x", "")))


def sign_in(response: Response, request: Request, state: ApiState, token: str) -> None:
    """Set the session cookie holding `token` (and a fresh CSRF token) on `response`."""
    ttl = int(state.settings.token_ttl)
    value = _serializer(state).dumps({"t": token, "x": secrets.token_urlsafe(32)})
    response.set_cookie(
        COOKIE,
        value,
        max_age=ttl,
        expires=int(time.time()) + ttl,
        path="/ui",
        httponly=True,
        samesite="lax",
        secure=request.url.scheme == "https",
    )


def sign_out(response: Response) -> None:
    response.delete_cookie(COOKIE, path="/ui")


def check_csrf(session: Session, sent: str | None) -> None:
    """403 unless `sent` is the session's CSRF token."""
    if not sent or not session.csrf or not hmac.compare_digest(sent, session.csrf):
        raise ApiError(403, ["the form's CSRF token is missing or wrong: reload the page"])
