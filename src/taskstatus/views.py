"""Tasks as each dialect shows them: pure translations of `Task`, no I/O and no rules.

- `task_status`: the v2024 TaskStatus (seed 002), also what the CLI prints with --json;
- `crud_task`: the task CRUD v2 resource (seed 003);
- `jira_task`: Jira's long-running task progress resource (seed 004).
"""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime
from typing import Any

from taskstatus.model import Message, Task, TaskDefinitionSummary, TaskState

__all__ = ["CRUD_STATUS", "JIRA_STATUS", "crud_task", "iso", "jira_task", "task_status"]

# DESIGN.md's mapping of the lifecycle onto each dialect's status names.
CRUD_STATUS = {
    TaskState.QUEUED: "pending",
    TaskState.RUNNING: "running",
    TaskState.CANCEL_REQUESTED: "cancelling",
    TaskState.SUCCEEDED: "completed",
    TaskState.FAILED: "failed",
    TaskState.CANCELLED: "cancelled",
    TaskState.DEAD: "failed",
}
JIRA_STATUS = {
    TaskState.QUEUED: "ENQUEUED",
    TaskState.RUNNING: "RUNNING",
    TaskState.CANCEL_REQUESTED: "CANCEL_REQUESTED",
    TaskState.SUCCEEDED: "COMPLETE",
    TaskState.FAILED: "FAILED",
    TaskState.CANCELLED: "CANCELLED",
    TaskState.DEAD: "DEAD",
}


def iso(value: datetime | None) -> str | None:
    """2020-07-11T21:23:15.000Z: UTC, milliseconds, as the seeds' examples write times."""
    if value is None:
        return None
    if value.tzinfo is not UTC:  # stores hand back UTC; convert anything else
        value = value.astimezone(UTC)
    return value.replace(tzinfo=None).isoformat(timespec="milliseconds") + "Z"


def _message(m: Message) -> dict[str, Any]:
    return {
        "type": m.type.value,
        "localizedText": {"locale": m.locale, "message": m.text},
        "key": m.key,
        "parameters": None if m.parameters is None else list(m.parameters),
    }


def _definition(d: TaskDefinitionSummary) -> dict[str, Any]:
    return {
        "id": d.id,
        "uniqueName": d.unique_name,
        "description": d.description,
        "parentName": d.parent_name,
        "executor": d.executor,
        "arguments": dict(d.arguments),
    }


def task_status(task: Task) -> dict[str, Any]:
    """The v2024 TaskStatus of `task`: every field, required ones always with their type."""
    target = task.target
    return {
        "id": task.id,
        "type": task.type.value,
        "uniqueName": task.unique_name,
        "description": task.description,
        "parentName": task.parent_name,
        "launcher": task.launcher,
        "target": None
        if target is None
        else {
            "id": target.id,
            "type": target.type.value if target.type else None,
            "name": target.name,
        },
        "created": iso(task.created),
        "modified": iso(task.modified),
        "launched": iso(task.launched),
        "completed": iso(task.completed),
        "completionStatus": task.completion_status.value if task.completion_status else None,
        "messages": [_message(m) for m in task.messages],
        "returns": [{"name": r.name, "attributeName": r.attribute_name} for r in task.returns],
        "attributes": dict(task.attributes),
        "progress": task.progress,
        "percentComplete": task.percent_complete,
        "taskDefinitionSummary": _definition(task.definition),
    }


def crud_task(task: Task) -> dict[str, Any]:
    """The v2 CRUD task: the seed's fields, plus progress, parent and deletion time."""
    return {
        "task_id": task.id,
        "handler": task.handler,
        "user_id": task.launcher,
        "entity_id": task.target.id if task.target else None,
        "status": CRUD_STATUS[task.state],
        "request": dict(task.arguments),
        "response": dict(task.attributes) if task.attributes or task.terminal else None,
        "created_at": iso(task.created),
        "updated_at": iso(task.modified),
        "progress": task.progress,
        "percent_complete": task.percent_complete,
        "parent_id": task.parent_id,
        "deleted_at": iso(task.deleted_at),
    }


def _millis(value: datetime) -> int:
    return int(value.timestamp() * 1000)


def user_number(name: str) -> int:
    """A stable numeric id for a launcher name: Jira's submittedBy is a number (48 bits, so
    JavaScript clients read it exactly)."""
    return int(hashlib.sha256(name.encode()).hexdigest()[:12], 16)


def jira_task(task: Task, self_url: str, now: datetime) -> dict[str, Any]:
    """Jira's task progress: times in epoch milliseconds, progress a percentage, the result
    (the task's attributes) once it has finished."""
    body: dict[str, Any] = {
        "self": self_url,
        "id": task.id,
        "description": task.description or task.unique_name,
        "status": JIRA_STATUS[task.state],
        "submittedBy": user_number(task.launcher),
        "submittedByName": task.launcher,
        "progress": task.percent_complete,
        "elapsedRuntime": 0,
        "submitted": _millis(task.created),
        "lastUpdate": _millis(task.modified),
    }
    latest = task.messages[-1].text if task.messages else task.progress
    if latest:
        body["message"] = latest
    if task.launched is not None:
        body["started"] = _millis(task.launched)
        end = task.completed if task.completed is not None else now
        body["elapsedRuntime"] = max(0, _millis(end) - _millis(task.launched))
    if task.completed is not None:
        body["finished"] = _millis(task.completed)
    if task.terminal:
        body["result"] = dict(task.attributes)
    return body
