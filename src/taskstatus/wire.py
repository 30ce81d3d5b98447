"""The client dialect's wire format (``/taskstatus/v1``), both directions, in one place. No I/O.

The seeds' dialects show a task through a narrower lens (v2024 has no lifecycle state, no
arguments, no attempts), so the remote client speaks its own dialect, in which a task is every
field of `Task` and comes back as the very same `Task` a database connection returns. Errors
are the ErrorResponseDto of every other dialect plus ``errorType`` and ``errorDetail``, from
which the client raises the exception type a database connection raises for the same thing.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import fields
from datetime import datetime
from typing import Any

from taskstatus.errors import (
    BadRequest,
    ConflictError,
    Forbidden,
    HasSubtasks,
    InvalidArguments,
    InvalidFilter,
    NotFound,
    RateLimited,
    ServerError,
    StoreUnavailable,
    TaskStatusError,
    Unauthorized,
    UnknownHandler,
)
from taskstatus.model import (
    CompletionStatus,
    IllegalTransition,
    InvalidTaskChange,
    Message,
    MessageType,
    ReturnDetail,
    Target,
    TargetType,
    Task,
    TaskDefinition,
    TaskDefinitionSummary,
    TaskState,
    TaskType,
)

__all__ = [
    "PREFIX",
    "definition_from_json",
    "definition_to_json",
    "error_detail",
    "error_from_response",
    "target_from_json",
    "target_to_json",
    "task_from_json",
    "task_to_json",
]

PREFIX = "/taskstatus/v1"
_TIMES = ("created", "modified", "launched", "completed", "run_at", "lease_expires", "deleted_at")


def _time(value: datetime | None) -> str | None:
    return None if value is None else value.isoformat()


def _parse_time(value: Any) -> datetime | None:
    return None if value is None else datetime.fromisoformat(str(value))


def summary_to_json(s: TaskDefinitionSummary) -> dict[str, Any]:
    return {
        "id": s.id,
        "unique_name": s.unique_name,
        "description": s.description,
        "parent_name": s.parent_name,
        "executor": s.executor,
        "arguments": dict(s.arguments),
    }


def summary_from_json(data: Mapping[str, Any]) -> TaskDefinitionSummary:
    return TaskDefinitionSummary(
        id=data["id"],
        unique_name=data["unique_name"],
        description=data.get("description") or "",
        parent_name=data.get("parent_name") or "",
        executor=data.get("executor") or "",
        arguments=data.get("arguments") or {},
    )


def target_to_json(t: Target | None) -> dict[str, Any] | None:
    if t is None:
        return None
    return {"id": t.id, "type": t.type.value if t.type else None, "name": t.name}


def target_from_json(data: Mapping[str, Any] | None) -> Target | None:
    if data is None:
        return None
    kind = data.get("type")
    return Target(data.get("id"), TargetType(kind) if kind else None, data.get("name"))


def task_to_json(task: Task) -> dict[str, Any]:
    """Every field of `task`, times as ISO 8601 with their zone and full precision."""
    body: dict[str, Any] = {f.name: getattr(task, f.name) for f in fields(task)}
    for name in _TIMES:
        body[name] = _time(body[name])
    body["definition"] = summary_to_json(task.definition)
    body["target"] = target_to_json(task.target)
    body["type"] = task.type.value
    body["state"] = task.state.value
    body["completion_status"] = task.completion_status.value if task.completion_status else None
    body["messages"] = [
        {
            "type": m.type.value,
            "text": m.text,
            "key": m.key,
            "parameters": None if m.parameters is None else list(m.parameters),
            "locale": m.locale,
        }
        for m in task.messages
    ]
    body["returns"] = [{"name": r.name, "attribute_name": r.attribute_name} for r in task.returns]
    body["attributes"] = dict(task.attributes)
    body["arguments"] = dict(task.arguments)
    return body


def task_from_json(data: Mapping[str, Any]) -> Task:
    """The `Task` that `task_to_json` was given."""
    status = data.get("completion_status")
    return Task(
        id=data["id"],
        handler=data["handler"],
        definition=summary_from_json(data["definition"]),
        type=TaskType(data["type"]),
        unique_name=data["unique_name"],
        description=data.get("description") or "",
        launcher=data["launcher"],
        created=datetime.fromisoformat(data["created"]),
        modified=datetime.fromisoformat(data["modified"]),
        state=TaskState(data["state"]),
        parent_name=data.get("parent_name"),
        target=target_from_json(data.get("target")),
        launched=_parse_time(data.get("launched")),
        completed=_parse_time(data.get("completed")),
        completion_status=CompletionStatus(status) if status else None,
        messages=tuple(
            Message(
                type=MessageType(m["type"]),
                text=m["text"],
                key=m.get("key") or "",
                parameters=None if m.get("parameters") is None else tuple(m["parameters"]),
                locale=m.get("locale") or "en-US",
            )
            for m in data.get("messages") or ()
        ),
        returns=tuple(
            ReturnDetail(r["name"], r["attribute_name"]) for r in data.get("returns") or ()
        ),
        attributes=data.get("attributes") or {},
        progress=data.get("progress"),
        percent_complete=data.get("percent_complete") or 0,
        arguments=data.get("arguments") or {},
        parent_id=data.get("parent_id"),
        priority=data.get("priority") or 0,
        run_at=_parse_time(data.get("run_at")),
        attempts=data.get("attempts") or 0,
        max_attempts=data.get("max_attempts") or 1,
        timeout=data.get("timeout"),
        lease_owner=data.get("lease_owner"),
        lease_expires=_parse_time(data.get("lease_expires")),
        idempotency_key=data.get("idempotency_key"),
        deleted_at=_parse_time(data.get("deleted_at")),
        version=data.get("version") or 1,
    )


def definition_to_json(d: TaskDefinition) -> dict[str, Any]:
    return {
        "summary": summary_to_json(d.summary),
        "schema": dict(d.schema),
        "max_attempts": d.max_attempts,
        "timeout": d.timeout,
    }


def definition_from_json(data: Mapping[str, Any]) -> TaskDefinition:
    return TaskDefinition(
        summary=summary_from_json(data["summary"]),
        schema=data.get("schema") or {},
        max_attempts=data.get("max_attempts"),
        timeout=data.get("timeout"),
    )


# --- errors -------------------------------------------------------------------------------


def error_detail(exc: BaseException) -> dict[str, Any]:
    """What the client needs to raise `exc` again: ``errorType`` and ``errorDetail``."""
    detail: dict[str, Any]
    if isinstance(exc, NotFound):
        kind, detail = "NotFound", {"task_id": exc.task_id}
    elif isinstance(exc, HasSubtasks):
        kind = "HasSubtasks"
        detail = {
            "task_id": exc.task_id,
            "subtasks": [task_to_json(t) for t in exc.subtasks if isinstance(t, Task)],
        }
    elif isinstance(exc, UnknownHandler):
        kind, detail = "UnknownHandler", {"name": exc.name, "known": exc.known}
    elif isinstance(exc, InvalidArguments):
        kind, detail = "InvalidArguments", {"handler": exc.handler, "errors": exc.errors}
    elif isinstance(exc, IllegalTransition):
        kind = "IllegalTransition"
        detail = {
            "current": exc.current.value,
            "target": exc.target.value,
            "task_id": exc.task_id,
            "reason": str(exc),
        }
    elif isinstance(exc, InvalidTaskChange):
        message = str(exc).removeprefix(f"{exc.path}: ")
        kind, detail = "InvalidTaskChange", {"path": exc.path, "message": message}
    elif isinstance(exc, InvalidFilter):
        kind, detail = "InvalidFilter", {}
    elif isinstance(exc, ConflictError):
        kind, detail = "ConflictError", {}
    elif isinstance(exc, StoreUnavailable):
        kind, detail = "StoreUnavailable", {}
    else:
        return {}
    return {"errorType": kind, "errorDetail": detail}


def _texts(items: Any) -> list[str]:
    if not isinstance(items, list):
        return []
    return [str(i.get("text")) for i in items if isinstance(i, dict) and i.get("text")]


def _typed(
    kind: str, detail: Mapping[str, Any], text: str, retry_after: float | None
) -> Exception | None:
    """The exception a database connection raises for `kind`, rebuilt from `detail`."""
    try:
        if kind == "NotFound":
            return NotFound(detail["task_id"])
        if kind == "HasSubtasks":
            subtasks = [task_from_json(t) for t in detail.get("subtasks") or ()]
            return HasSubtasks(detail["task_id"], subtasks)
        if kind == "UnknownHandler":
            return UnknownHandler(detail["name"], detail.get("known") or ())
        if kind == "InvalidArguments":
            return InvalidArguments(detail["handler"], detail.get("errors") or ())
        if kind == "IllegalTransition":
            return IllegalTransition(
                TaskState(detail["current"]),
                TaskState(detail["target"]),
                detail.get("task_id"),
                detail.get("reason"),
            )
        if kind == "InvalidTaskChange":
            return InvalidTaskChange(detail["path"], detail["message"])
        if kind == "InvalidFilter":
            return InvalidFilter(text)
        if kind == "ConflictError":
            return ConflictError(text)
        if kind == "StoreUnavailable":
            return _store_unavailable(text, retry_after)
    except (KeyError, TypeError, ValueError):
        return None
    return None


def error_from_response(
    status: int, body: Any, headers: Mapping[str, str], *, retry_after: float | None = None
) -> Exception:
    """The exception for an error response of any of the server's dialects."""
    body = body if isinstance(body, dict) else {}
    tracking_id = body.get("trackingId") or headers.get("x-tracking-id")
    causes = _texts(body.get("causes"))
    messages = _texts(body.get("messages"))
    text = (
        "; ".join(causes)
        or "; ".join(messages)
        or str(body.get("error_description") or body.get("error") or body.get("message") or "")
        or f"HTTP {status}"
    ).strip()
    detail = body.get("errorDetail")
    exc: Exception | None = None
    if isinstance(body.get("errorType"), str):
        exc = _typed(
            body["errorType"], detail if isinstance(detail, dict) else {}, text, retry_after
        )
    if exc is None:
        exc = _by_status(status, text, body, retry_after)
    if tracking_id:
        exc.add_note(f"trackingId: {tracking_id}")
    exc.tracking_id = tracking_id  # type: ignore[attr-defined]
    exc.status = status  # type: ignore[attr-defined]
    return exc


def _by_status(
    status: int, text: str, body: Mapping[str, Any], retry_after: float | None
) -> TaskStatusError:
    if status == 401:
        return Unauthorized(text)
    if status == 403:
        return Forbidden(text)
    if status == 404:
        return _not_found(text)
    if status == 429:
        wait = f"; the server asks to wait {retry_after:g} s" if retry_after else ""
        return RateLimited(f"rate limited{wait}", retry_after)
    if status == 503:
        return _store_unavailable(text, retry_after)
    if status == 409:
        return ConflictError(text)
    if status >= 500:
        return ServerError(f"server error {status}: {text}")
    return BadRequest(f"HTTP {status}: {text}")


def _store_unavailable(text: str, retry_after: float | None = None) -> StoreUnavailable:
    """The server's own words, whatever the constructor would make of them."""
    exc = StoreUnavailable(text)
    exc.args = (text,)
    if retry_after is not None:
        exc.retry_after = retry_after  # type: ignore[attr-defined,assignment,unused-ignore]
    return exc


def _not_found(text: str) -> NotFound:
    exc = NotFound("")
    exc.args = (text,)
    return exc
