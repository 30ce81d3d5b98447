"""Task <-> database row, for every backend. A `Codec` says how a dialect stores times and JSON.

The column order of `task_from_row` is the ``columns`` block of each dialect's SQL file.
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import orjson

from taskstatus.model import (
    CompletionStatus,
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
from taskstatus.store.base import ApiClient


@dataclass(frozen=True)
class Codec:
    """How one database stores times and JSON (text in SQLite, native types in PostgreSQL)."""

    time_in: Callable[[datetime], Any]
    time_out: Callable[[Any], datetime]
    json_in: Callable[[Any], Any]
    json_out: Callable[[Any], Any]

    def opt_time_in(self, value: datetime | None) -> Any:
        return None if value is None else self.time_in(value)

    def opt_time_out(self, value: Any) -> datetime | None:
        return None if value is None else self.time_out(value)

    def opt_json_in(self, value: Any) -> Any:
        return None if value is None else self.json_in(value)


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
        description=data["description"],
        parent_name=data["parent_name"],
        executor=data["executor"],
        arguments=data["arguments"],
    )


@functools.lru_cache(maxsize=1024)
def _summary_from_text(text: str) -> TaskDefinitionSummary:
    return summary_from_json(orjson.loads(text))


def summary_of(raw: Any, codec: Codec) -> TaskDefinitionSummary:
    """A definition summary as stored: every task of a handler carries the same one, so the
    text form (SQLite) is parsed once and cached."""
    if isinstance(raw, str):
        return _summary_from_text(raw)
    return summary_from_json(codec.json_out(raw))


# Enum members by value: a dict lookup, where calling the enum class costs several times more.
_TYPES = {m.value: m for m in TaskType}
_STATES = {m.value: m for m in TaskState}
_STATUSES = {m.value: m for m in CompletionStatus}
_MESSAGE_TYPES = {m.value: m for m in MessageType}
_TARGET_TYPES = {m.value: m for m in TargetType}


@functools.lru_cache(maxsize=1024)
def unknown_summary(handler: str) -> TaskDefinitionSummary:
    """What a task shows when no node has registered its handler's definition (yet); every
    claimed row has it (``run_columns``), so it is built once per handler (it is frozen)."""
    return TaskDefinitionSummary(
        id="", unique_name=handler, description="", parent_name=handler, executor="", arguments={}
    )


def returns_to_json(returns: Sequence[ReturnDetail]) -> list[dict[str, str]]:
    return [{"name": r.name, "attributeName": r.attribute_name} for r in returns]


def result_params(
    attributes: Mapping[str, Any] | None, returns: Sequence[ReturnDetail] | None, codec: Codec
) -> dict[str, Any]:
    """The attributes and returns a worker's report or outcome sets, as stored JSON; None
    keeps what is stored."""
    return {
        "attributes": None if attributes is None else codec.json_in(dict(attributes)),
        "returns": None if returns is None else codec.json_in(returns_to_json(returns)),
    }


def message_params(task_id: str, m: Message, codec: Codec) -> dict[str, Any]:
    return {
        "id": task_id,
        "type": m.type.value,
        "key": m.key,
        "text": m.text,
        "locale": m.locale,
        "parameters": None if m.parameters is None else codec.json_in(list(m.parameters)),
    }


# The stored columns of a task, in the order of the keys of `task_to_params` (tests/unit checks
# it): the statements' and PostgreSQL's COPY column list.
TASK_COLUMNS: tuple[str, ...] = (
    "id", "handler", "type", "unique_name", "description", "parent_name", "launcher",
    "target_id", "target_type", "target_name", "created", "modified", "launched", "completed",
    "completion_status", "returns", "attributes", "progress", "percent_complete", "state",
    "arguments", "parent_id", "priority", "run_at", "attempts", "max_attempts", "timeout",
    "lease_owner", "lease_expires", "idempotency_key", "deleted_at", "version",
)  # fmt: skip


def task_to_params(task: Task, codec: Codec) -> dict[str, Any]:
    """Every column of `task`, in the order of TASK_COLUMNS (messages are rows of their own:
    see `message_params`): the one place a task becomes a row (PostgreSQL's bulk COPY writes
    its values as they are)."""
    target = task.target
    return {
        "id": task.id,
        "handler": task.handler,
        "type": task.type.value,
        "unique_name": task.unique_name,
        "description": task.description,
        "parent_name": task.parent_name,
        "launcher": task.launcher,
        "target_id": target.id if target else None,
        "target_type": target.type.value if target and target.type else None,
        "target_name": target.name if target else None,
        "created": codec.time_in(task.created),
        "modified": codec.time_in(task.modified),
        "launched": codec.opt_time_in(task.launched),
        "completed": codec.opt_time_in(task.completed),
        "completion_status": task.completion_status.value if task.completion_status else None,
        "returns": codec.json_in(returns_to_json(task.returns)),
        "attributes": codec.json_in(dict(task.attributes)),
        "progress": task.progress,
        "percent_complete": task.percent_complete,
        "state": task.state.value,
        "arguments": codec.json_in(dict(task.arguments)),
        "parent_id": task.parent_id,
        "priority": task.priority,
        "run_at": codec.opt_time_in(task.run_at or task.created),
        "attempts": task.attempts,
        "max_attempts": task.max_attempts,
        "timeout": task.timeout,
        "lease_owner": task.lease_owner,
        "lease_expires": codec.opt_time_in(task.lease_expires),
        "idempotency_key": task.idempotency_key,
        "deleted_at": codec.opt_time_in(task.deleted_at),
        "version": task.version,
    }


# Task's fields in order, and a setter for each: `task_from_row` fills a new Task through its
# slots (a few times cheaper than the frozen dataclass's __init__, one object.__setattr__ per
# field: most of a claim's decoding, issue 17). It passes every field, so no default is missed.
_TASK_FIELDS: tuple[str, ...] = tuple(f.name for f in dataclasses.fields(Task))
_TASK_SETTERS: tuple[Callable[[Task, Any], None], ...] = tuple(
    getattr(Task, name).__set__ for name in _TASK_FIELDS
)


def _new_task(values: Sequence[Any]) -> Task:
    """A Task of `values`, one per field of Task in order (`_TASK_FIELDS`)."""
    task: Task = object.__new__(Task)
    for setter, value in zip(_TASK_SETTERS, values, strict=True):
        setter(task, value)
    return task


def task_from_row(row: Sequence[Any], codec: Codec) -> Task:
    """A Task from a row in the order of the ``columns`` block (or ``run_columns``: no
    definition summary, the handler's bare one then, and no messages)."""
    (
        id_, handler, definition, type_, unique_name, description, parent_name, launcher,
        target_id, target_type, target_name, created, modified, launched, completed,
        completion_status, returns, attributes, progress, percent_complete, state, arguments,
        parent_id, priority, run_at, attempts, max_attempts, timeout, lease_owner, lease_expires,
        idempotency_key, deleted_at, version, messages,
    ) = row  # fmt: skip
    target = None
    if target_id is not None or target_type is not None or target_name is not None:
        target = Target(target_id, _TARGET_TYPES[target_type] if target_type else None, target_name)
    time_out = codec.time_out
    messages = codec.json_out(messages) if messages is not None else ()
    returns = codec.json_out(returns)
    # in the order of Task's fields (_TASK_FIELDS; tests/unit checks it)
    return _new_task((
        id_,
        handler,
        summary_of(definition, codec) if definition is not None else unknown_summary(handler),
        _TYPES[type_],
        unique_name,
        description,
        launcher,
        time_out(created),
        time_out(modified),
        _STATES[state],
        parent_name,
        target,
        None if launched is None else time_out(launched),
        None if completed is None else time_out(completed),
        _STATUSES[completion_status] if completion_status else None,
        tuple(
            Message(
                type=_MESSAGE_TYPES[m[0]],
                key=m[1],
                text=m[2],
                locale=m[3],
                parameters=None if m[4] is None else tuple(m[4]),
            )
            for m in messages
        ) if messages else (),
        tuple(ReturnDetail(r["name"], r["attributeName"]) for r in returns) if returns else (),
        codec.json_out(attributes),
        progress,
        percent_complete,
        codec.json_out(arguments),
        parent_id,
        priority,
        None if run_at is None else time_out(run_at),
        attempts,
        max_attempts,
        timeout,
        lease_owner,
        None if lease_expires is None else time_out(lease_expires),
        idempotency_key,
        None if deleted_at is None else time_out(deleted_at),
        version,
    ))  # fmt: skip


def definition_params(d: TaskDefinition, codec: Codec, now: datetime) -> dict[str, Any]:
    return {
        "name": d.name,
        "summary": codec.json_in(summary_to_json(d.summary)),
        "schema": codec.json_in(dict(d.schema)),
        "max_attempts": d.max_attempts,
        "timeout": d.timeout,
        "updated": codec.time_in(now),
    }


def definition_from_row(row: Sequence[Any], codec: Codec) -> TaskDefinition:
    summary, schema, max_attempts, timeout = row
    return TaskDefinition(
        summary_from_json(codec.json_out(summary)), codec.json_out(schema), max_attempts, timeout
    )


def client_params(c: ApiClient, codec: Codec) -> dict[str, Any]:
    return {
        "id": c.id,
        "name": c.name,
        "secret_hash": c.secret_hash,
        "scopes": codec.json_in(list(c.scopes)),
        "owner": c.owner,
        "created": codec.time_in(c.created),
        "revoked": codec.opt_time_in(c.revoked),
    }


def client_from_row(row: Sequence[Any], codec: Codec) -> ApiClient:
    id_, name, secret_hash, scopes, owner, created, revoked = row
    return ApiClient(
        id=id_,
        name=name,
        secret_hash=secret_hash,
        scopes=tuple(codec.json_out(scopes)),
        owner=owner,
        created=codec.time_out(created),
        revoked=codec.opt_time_out(revoked),
    )


# The columns a user's change may touch, written by `update` only when they changed.
MUTABLE_COLUMNS: tuple[str, ...] = (
    "unique_name", "description", "parent_name", "target_id", "target_type", "target_name",
    "modified", "launched", "completed", "completion_status", "returns", "attributes",
    "progress", "percent_complete", "state", "arguments", "priority", "run_at", "attempts",
    "max_attempts", "timeout", "lease_owner", "lease_expires", "deleted_at",
)  # fmt: skip


def changed_columns(old: Task, new: Task, codec: Codec) -> dict[str, Any]:
    """The column values of `new` that differ from `old`; raises if `change` broke an invariant
    a store cannot honour (identity fields, or rewriting stored messages)."""
    if (new.id, new.handler, new.created, new.launcher, new.type) != (
        old.id, old.handler, old.created, old.launcher, old.type,
    ):  # fmt: skip
        raise ValueError("a change may not alter a task's identity fields")
    if new.messages[: len(old.messages)] != old.messages:
        raise ValueError("messages can only be appended")
    before, after = task_to_params(old, _RAW), task_to_params(new, _RAW)
    changed = [c for c in MUTABLE_COLUMNS if after[c] != before[c]]
    encoded = task_to_params(new, codec)
    return {c: encoded[c] for c in changed}


def _same(value: Any) -> Any:
    return value


# Compares domain values, whatever a dialect's wrappers (psycopg's Jsonb has no equality).
_RAW = Codec(time_in=_same, time_out=_same, json_in=_same, json_out=_same)
