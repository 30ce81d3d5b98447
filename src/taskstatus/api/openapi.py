"""The OpenAPI document, made true to what the server answers (schemathesis checks it).

FastAPI documents a 422 on every operation that has parameters; taskstatus answers those
with a 400. This adds, to each operation, the statuses it can really return, each with the
error schema of its path's dialect (taskstatus.api.errors): 400 always; 401, 403 and 429 where
a caller authenticates; 404 where a path names something; 408 and 413 where there is a
request body, 415 where its media type is checked; 500 and 503 where the store is asked. The
Jira operations also accept HTTP Basic; /health and /ready get their bodies' schemas.
"""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi
from pydantic import BaseModel, Field

from taskstatus.api.errors import JIRA_PREFIX, TOKEN_PATH
from taskstatus.api.schemas import ErrorResponseDto, TooManyRequests429, Unauthorized401

__all__ = ["install"]

METHODS = ("get", "put", "post", "delete", "patch", "head", "options")
BASIC = "HTTPBasic"


class OAuthError(BaseModel):
    """An error of the token endpoint (RFC 6749 5.2); a 400 also has the ErrorResponseDto
    fields of every other 400."""

    error: str = Field(description="invalid_request, invalid_client, unsupported_grant_type, ...")
    error_description: str = Field(description="What exactly went wrong")


class JiraErrorCollection(BaseModel):
    """Jira's ErrorCollection: every error under /rest/api/."""

    errorMessages: list[str]
    errors: dict[str, str] = Field(default_factory=dict)


class Health(BaseModel):
    status: str = Field(description="ok")


class Ready(BaseModel):
    status: str = Field(description="ready")


class Deleted(BaseModel):
    deleted: list[str] = Field(description="The ids of the deleted tasks (subtasks included)")


DESCRIPTIONS = {
    400: "Bad Request: the request is invalid; the message says what, or names the limit",
    401: "Unauthorized: no credentials, or credentials that do not check out",
    403: "Forbidden: the token lacks the scope",
    404: "Not Found",
    408: "Request Timeout: the body did not arrive within body_timeout",
    409: "Conflict",
    413: "Payload Too Large: the body is over max_body_bytes",
    415: "Unsupported Media Type",
    429: "Too Many Requests; see Retry-After",
    500: "Internal Server Error",
    503: "Service Unavailable: the database cannot be reached",
}


def _ref(name: str) -> dict[str, Any]:
    return {"$ref": f"#/components/schemas/{name}"}


def _error_schema(path: str, status: int) -> str:
    if path.startswith(JIRA_PREFIX):
        return "JiraErrorCollection"
    if path == TOKEN_PATH:
        return "OAuthError"
    return {401: "Unauthorized401", 429: "TooManyRequests429"}.get(status, "ErrorResponseDto")


def _statuses(path: str, method: str, operation: dict[str, Any]) -> set[int]:
    statuses = {400, 500}
    if path not in ("/health",):
        statuses.add(503)
    if operation.get("security") or path == TOKEN_PATH:
        statuses |= {401, 429}
    if operation.get("security"):
        statuses.add(403)
    if "{" in path:
        statuses.add(404)
    if "requestBody" in operation or method in ("post", "put", "patch"):
        statuses |= {408, 413}
    if method == "patch":
        statuses.add(415)
    return statuses


def _document(app: FastAPI) -> dict[str, Any]:
    doc = get_openapi(
        title=app.title,
        version=app.version,
        description=app.description,
        routes=app.routes,
    )
    schemas = doc.setdefault("components", {}).setdefault("schemas", {})
    for model in (
        OAuthError,
        JiraErrorCollection,
        Health,
        Ready,
        Deleted,
        ErrorResponseDto,
        Unauthorized401,
        TooManyRequests429,
    ):
        schema = model.model_json_schema(ref_template="#/components/schemas/{model}")
        for name, sub in schema.pop("$defs", {}).items():
            schemas.setdefault(name, sub)
        schemas[model.__name__] = schema
    for unused in ("HTTPValidationError", "ValidationError"):
        schemas.pop(unused, None)
    doc["components"].setdefault("securitySchemes", {})[BASIC] = {
        "type": "http",
        "scheme": "basic",
        "description": "An API client's id and secret (the Jira operations)",
    }
    bodies = {"/health": "Health", "/ready": "Ready", "/v2/task/delete/{id}": "Deleted"}
    for path, item in doc.get("paths", {}).items():
        for method in METHODS:
            operation = item.get(method)
            if operation is None:
                continue
            responses = operation.setdefault("responses", {})
            responses.pop("422", None)
            if path in bodies:
                ok = responses.setdefault("200", {"description": "OK"})
                ok["content"] = {"application/json": {"schema": _ref(bodies[path])}}
            if path.startswith(JIRA_PREFIX) and operation.get("security"):
                operation["security"] = [*operation["security"], {BASIC: []}]
            for status in sorted(_statuses(path, method, operation)):
                response = responses.setdefault(str(status), {"description": DESCRIPTIONS[status]})
                if method != "head":
                    response["content"] = {
                        "application/json": {"schema": _ref(_error_schema(path, status))}
                    }
                if status == 429:
                    response.setdefault("headers", {})["Retry-After"] = {
                        "description": "Seconds until a request will be accepted",
                        "schema": {"type": "integer"},
                    }
    return doc


def install(app: FastAPI) -> None:
    """Serve the corrected document at app.openapi_url (built once, on first request)."""
    cached: dict[str, Any] = {}

    def openapi() -> dict[str, Any]:
        if not cached:
            cached.update(_document(app))
        return cached

    app.openapi = openapi  # type: ignore[method-assign]
