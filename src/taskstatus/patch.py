"""A JSON Patch (RFC 6902) on a task's v2024 TaskStatus -> a validated change to the Task. No I/O.

The patch is applied, all operations or none (``test`` included), to the TaskStatus document of
the task; the fields it changed are then checked and mapped back onto the model:

- ``completionStatus`` (with ``completed``, or now) on a pending task clears it: the task
  becomes terminal through `model.clear`, and a worker still running it is told to stop;
- ``progress``, ``percentComplete`` (0-100), ``description``, ``attributes`` (also below it),
  ``returns`` may be set; ``messages`` may only be appended to;
- every other path (id, type, created, launcher, target, ...) is read-only: a patch that
  writes there is refused whole, naming the path.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

import jsonpatch
import jsonpointer

from taskstatus.limits import InputRejected, to_utc
from taskstatus.model import (
    CompletionStatus,
    IllegalTransition,
    InvalidTaskChange,
    Message,
    MessageType,
    ReturnDetail,
    Task,
    check_percent,
    clear,
)
from taskstatus.views import task_status

__all__ = ["WRITABLE", "PatchError", "apply_patch"]

WRITABLE = frozenset(
    {
        "completionStatus",
        "completed",
        "progress",
        "percentComplete",
        "description",
        "attributes",
        "returns",
        "messages",
    }
)
OPS = frozenset({"add", "remove", "replace", "move", "copy", "test"})


class PatchError(ValueError):
    """A patch that cannot be applied; `path` names the operation's path when there is one."""

    def __init__(self, message: str, path: str | None = None) -> None:
        self.path = path
        super().__init__(f"{path}: {message}" if path else message)


def _top(pointer: str) -> str:
    """The top-level field a JSON pointer starts at ('' for the whole document)."""
    try:
        parts = jsonpointer.JsonPointer(pointer).parts
    except jsonpointer.JsonPointerException as e:
        raise PatchError(f"not a JSON pointer: {e}", pointer) from None
    return parts[0] if parts else ""


def _check_operations(operations: Any) -> list[dict[str, Any]]:
    if not isinstance(operations, list):
        raise PatchError("the body must be a JSON array of patch operations")
    if not operations:
        raise PatchError("the patch has no operations")
    checked = []
    for i, op in enumerate(operations):
        where = f"operation {i}"
        if not isinstance(op, Mapping):
            raise PatchError(f"{where} is not an object")
        name, path = op.get("op"), op.get("path")
        if name not in OPS:
            raise PatchError(f"{where}: op must be one of {', '.join(sorted(OPS))}, not {name!r}")
        if not isinstance(path, str):
            raise PatchError(f"{where}: path must be a string")
        if name in ("add", "replace", "test") and "value" not in op:
            raise PatchError(f"{where}: {name} needs a value", path)
        if name in ("move", "copy") and not isinstance(op.get("from"), str):
            raise PatchError(f"{where}: {name} needs a 'from' pointer", path)
        if name != "test":
            field = _top(path)
            if field not in WRITABLE:
                raise PatchError(
                    f"{field or 'the whole document'} cannot be changed "
                    f"(writable: {', '.join(sorted(WRITABLE))})",
                    path,
                )
            if name == "move" and _top(op["from"]) not in WRITABLE:
                raise PatchError("cannot move a read-only field", op["from"])
        checked.append(dict(op))
    return checked


def _path_of(operations: Sequence[Mapping[str, Any]], field: str) -> str:
    """The path of the first operation that wrote `field`, for error messages."""
    for op in operations:
        if op["op"] != "test" and _top(op["path"]) == field:
            return str(op["path"])
    return f"/{field}"


def _message(value: Any, path: str) -> Message:
    if not isinstance(value, Mapping):
        raise PatchError("a message must be an object", path)
    try:
        kind = MessageType(str(value.get("type")))
    except ValueError:
        raise PatchError("a message type must be INFO, WARN or ERROR", path) from None
    text = value.get("localizedText")
    if not isinstance(text, Mapping) or not isinstance(text.get("message"), str):
        raise PatchError("a message needs localizedText.message (a string)", path)
    locale = text.get("locale", "en-US")
    key = value.get("key", "")
    parameters = value.get("parameters")
    if not isinstance(locale, str) or not isinstance(key, str):
        raise PatchError("a message's key and locale must be strings", path)
    if parameters is not None and (
        not isinstance(parameters, list)
        or not all(p is None or isinstance(p, dict | str) for p in parameters)
    ):
        raise PatchError("a message's parameters must be a list of objects or strings", path)
    return Message(
        type=kind,
        text=text["message"],
        key=key,
        parameters=None if parameters is None else tuple(parameters),
        locale=locale,
    )


def _returns(value: Any, path: str) -> tuple[ReturnDetail, ...]:
    if not isinstance(value, list):
        raise PatchError("returns must be a list", path)
    out = []
    for item in value:
        if not (
            isinstance(item, Mapping)
            and isinstance(item.get("name"), str)
            and isinstance(item.get("attributeName"), str)
        ):
            raise PatchError("each return needs a name and an attributeName (strings)", path)
        out.append(ReturnDetail(item["name"], item["attributeName"]))
    return tuple(out)


def _datetime(value: Any, path: str) -> datetime:
    if isinstance(value, str):
        try:
            parsed = datetime.fromisoformat(value)
        except ValueError:
            parsed = None
        if parsed is not None and parsed.tzinfo is not None:
            try:
                return to_utc(parsed, path)
            except InputRejected as e:
                raise PatchError(str(e).removeprefix(f"{path}: "), path) from None
    raise PatchError("must be an ISO 8601 date-time with a time zone", path)


def apply_patch(task: Task, operations: Any, now: datetime) -> Task:
    """The task after `operations`, or PatchError (nothing is changed: Task is immutable)."""
    ops = _check_operations(operations)
    before = task_status(task)
    try:
        after = jsonpatch.JsonPatch(ops).apply(before)
    except jsonpatch.JsonPatchTestFailed as e:
        raise PatchError(f"test failed: {e}") from None
    except (jsonpatch.JsonPatchException, jsonpointer.JsonPointerException) as e:
        raise PatchError(str(e)) from None
    if not isinstance(after, dict):
        raise PatchError("the patch must leave a TaskStatus object")

    changed = {f for f in WRITABLE if after.get(f, None) != before.get(f)}
    if not changed:
        return task
    fields: dict[str, Any] = {}
    for f in sorted(changed - {"completionStatus", "completed"}):
        path, value = _path_of(ops, f), after.get(f)
        if f == "progress":
            if value is not None and not isinstance(value, str):
                raise PatchError("must be a string or null", path)
            fields["progress"] = value
        elif f == "percentComplete":
            try:
                fields["percent_complete"] = check_percent(value)
            except InvalidTaskChange as e:
                raise PatchError("must be an integer from 0 to 100", path) from e
        elif f == "description":
            if not isinstance(value, str):
                raise PatchError("must be a string", path)
            fields["description"] = value
        elif f == "attributes":
            if not isinstance(value, dict):
                raise PatchError("must be an object", path)
            fields["attributes"] = value
        elif f == "returns":
            fields["returns"] = _returns(value, path)
        elif f == "messages":
            old = before["messages"]
            if not isinstance(value, list) or value[: len(old)] != old:
                raise PatchError("messages can only be appended (add to /messages/-)", path)
            added = tuple(_message(m, path) for m in value[len(old) :])
            fields["messages"] = (*task.messages, *added)
    result = dataclasses.replace(task, modified=now, **fields)
    if changed & {"completionStatus", "completed"}:
        result = _complete(result, before, after, ops, now)
    return result


def _complete(
    task: Task,
    before: Mapping[str, Any],
    after: Mapping[str, Any],
    ops: Sequence[Mapping[str, Any]],
    now: datetime,
) -> Task:
    status_path = _path_of(ops, "completionStatus")
    raw = after.get("completionStatus")
    if before["completionStatus"] is not None:
        raise PatchError(
            f"the task already ended as {before['completionStatus']}; "
            "a completion status cannot change",
            status_path if raw != before["completionStatus"] else _path_of(ops, "completed"),
        )
    if raw is None:
        raise PatchError(
            "set completionStatus (with completed) to clear a pending task",
            _path_of(ops, "completed"),
        )
    try:
        status = CompletionStatus(raw)
    except ValueError:
        allowed = ", ".join(s.value for s in CompletionStatus)
        raise PatchError(
            f"{raw!r} is not a completion status (one of: {allowed})", status_path
        ) from None
    completed = after.get("completed")
    when = None if completed is None else _datetime(completed, _path_of(ops, "completed"))
    try:
        return clear(task, status, when, now)
    except IllegalTransition as e:
        raise PatchError(str(e), status_path) from None
