"""Tasks as each dialect shows them: pure translations of `Task`, no I/O and no rules.

- `task_status`: the v2024 TaskStatus (seed 002), also what the CLI prints with --json.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from taskstatus.model import Message, Task, TaskDefinitionSummary

__all__ = ["iso", "task_status"]


def iso(value: datetime | None) -> str | None:
    """2020-07-11T21:23:15.000Z: UTC, milliseconds, as the seeds' examples write times."""
    if value is None:
        return None
    return value.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


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
