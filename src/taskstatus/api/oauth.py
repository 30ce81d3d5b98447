"""POST /oauth/token: the OAuth2 client-credentials grant (RFC 6749 4.4).

Clients authenticate with ``client_id``/``client_secret`` form fields (what the SailPoint SDK
sends) or HTTP Basic. Errors carry RFC 6749's ``error``/``error_description``, which OAuth
clients read; a 400 also carries the ErrorResponseDto fields every other 400 has.
"""

from __future__ import annotations

import logging
from typing import Any

import orjson
from fastapi import APIRouter, Request
from starlette.responses import Response

from taskstatus.api.auth import basic_credentials
from taskstatus.api.deps import State, source_address
from taskstatus.api.errors import error_body, tracking_id
from taskstatus.api.responses import json_response
from taskstatus.api.schemas import (
    ErrorResponseDto,
    TokenResponse,
    TooManyRequests429,
    Unauthorized401,
)
from taskstatus.errors import StoreUnavailable
from taskstatus.limits import InputRejected, check_text

log = logging.getLogger("taskstatus.api")
router = APIRouter(tags=["OAuth2"])
NO_STORE = {"Cache-Control": "no-store", "Pragma": "no-cache"}


def _error(
    request: Request, status: int, error: str, description: str, retry_after: int | None = None
) -> Response:
    tid = tracking_id(request)
    log.log(
        logging.WARNING if status >= 500 else logging.INFO,
        "POST /oauth/token -> %d trackingId=%s: %s",
        status,
        tid,
        description,
    )
    body: dict[str, Any] = {"error": error, "error_description": description}
    if status == 400:
        body.update(error_body(400, tid, "The token request is invalid.", [description]))
    elif status == 503:
        body.update(error_body(503, tid, "The service cannot answer now.", [description]))
    headers = {**NO_STORE, "X-Tracking-Id": tid}
    if retry_after is not None:
        headers["Retry-After"] = str(retry_after)
    if status == 401:
        headers["WWW-Authenticate"] = 'Basic realm="taskstatus"'
    return json_response(status, body, headers)


async def _fields(request: Request) -> dict[str, str]:
    media = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if media == "application/json":
        data = orjson.loads(await request.body() or b"{}")
        if not isinstance(data, dict):
            raise ValueError("the JSON body must be an object")
        return {k: str(v) for k, v in data.items() if v is not None}
    form = await request.form()
    return {k: v for k, v in form.items() if isinstance(v, str)}


def _checked(fields: dict[str, str]) -> dict[str, str]:
    for key, value in fields.items():
        check_text(key, "field name")
        check_text(value, key)
    return fields


@router.post(
    "/oauth/token",
    summary="Get an access token (client credentials)",
    response_model=TokenResponse,
    responses={
        400: {
            "model": ErrorResponseDto,
            "description": "invalid_request, unsupported_grant_type, invalid_scope",
        },
        401: {"model": Unauthorized401, "description": "invalid_client"},
        429: {"model": TooManyRequests429},
    },
    openapi_extra={
        "requestBody": {
            "content": {
                "application/x-www-form-urlencoded": {
                    "schema": {
                        "type": "object",
                        "required": ["grant_type"],
                        "properties": {
                            "grant_type": {"type": "string", "enum": ["client_credentials"]},
                            "client_id": {"type": "string"},
                            "client_secret": {"type": "string"},
                            "scope": {"type": "string", "description": "space-separated"},
                        },
                    }
                }
            }
        }
    },
)
async def token(request: Request, state: State) -> Response:
    """Exchange client credentials for a signed JWT with an expiry and scopes."""
    state.token_limiter.check(f"ip:{request.client.host if request.client else '-'}")
    try:
        fields = _checked(await _fields(request))
    except InputRejected as e:
        return _error(request, 400, "invalid_request", str(e))
    except (ValueError, orjson.JSONDecodeError) as e:
        return _error(request, 400, "invalid_request", f"the body cannot be read: {e}")
    if fields.get("grant_type") != "client_credentials":
        return _error(
            request, 400, "unsupported_grant_type", "grant_type must be client_credentials"
        )
    client_id, secret = fields.get("client_id"), fields.get("client_secret")
    basic = basic_credentials(request.headers.get("authorization", ""))
    if basic is not None:
        client_id, secret = basic
    if not client_id or not secret:
        return _error(request, 400, "invalid_request", "client_id and client_secret are required")
    address = source_address(request)
    state.auth_failures.check(client_id, address)  # 429 past the failures allowed
    try:
        client = await state.auth.authenticate_client(client_id, secret)
    except StoreUnavailable as e:
        return _error(request, 503, "temporarily_unavailable", str(e), e.retry_after)
    if client is None:
        state.auth_failures.failed(client_id, address)
        return _error(request, 401, "invalid_client", "unknown client, wrong secret, or revoked")
    requested = fields["scope"].split() if fields.get("scope") else None
    try:
        issued = state.auth.issue(client, requested)
    except ValueError as e:
        return _error(request, 400, "invalid_scope", str(e))
    return json_response(200, issued, NO_STORE)
