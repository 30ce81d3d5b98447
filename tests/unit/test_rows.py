"""Task <-> row decoding (store/rows.py), with no database: the claim's decoder (issue 17)."""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime, timedelta
from typing import Any

from taskstatus.model import (
    CompletionStatus,
    Message,
    MessageType,
    ReturnDetail,
    Target,
    TargetType,
    Task,
    TaskState,
    TaskType,
)
from taskstatus.store.rows import (
    _RAW,
    TASK_COLUMNS,
    task_from_row,
    task_to_params,
    unknown_summary,
)
from tests.conftest import SUMMARY

_AT = datetime(2026, 12, 2, 14, 0, tzinfo=UTC)


def _every_field_set() -> Task:
    """A task whose every field differs from its default and from its neighbours'."""
    return Task(
        id="t1", handler="h", definition=SUMMARY, type=TaskType.QUARTZ,
        unique_name="u", description="d", launcher="l", created=_AT,
        modified=_AT + timedelta(seconds=1), state=TaskState.FAILED, parent_name="p",
        target=Target("tid", TargetType.IDENTITY, "tname"), launched=_AT + timedelta(seconds=2),
        completed=_AT + timedelta(seconds=3), completion_status=CompletionStatus.ERROR,
        messages=(
            Message(type=MessageType.INFO, key="k", text="t", locale="en", parameters=("a", 1)),
        ),
        returns=(ReturnDetail("n", "attr"),), attributes={"attr": 1}, progress="half",
        percent_complete=50, arguments={"x": 2}, parent_id="parent", priority=7,
        run_at=_AT + timedelta(seconds=4), attempts=2, max_attempts=5, timeout=9.5,
        lease_owner="w", lease_expires=_AT + timedelta(seconds=5), idempotency_key="idem",
        deleted_at=_AT + timedelta(seconds=6), version=11,
    )  # fmt: skip


def _row(task: Task, definition: Any, messages: Any) -> tuple[Any, ...]:
    """`task` as a row in the order of postgres.sql's ``columns`` block (JSON values parsed)."""
    p = task_to_params(task, _RAW)
    return (
        p["id"], p["handler"], definition, *(p[c] for c in (
            "type", "unique_name", "description", "parent_name", "launcher", "target_id",
            "target_type", "target_name", "created", "modified", "launched", "completed",
            "completion_status", "returns", "attributes", "progress", "percent_complete",
            "state", "arguments", "parent_id", "priority", "run_at", "attempts",
            "max_attempts", "timeout", "lease_owner", "lease_expires", "idempotency_key",
            "deleted_at", "version",
        )), messages,
    )  # fmt: skip


def test_task_columns_are_the_keys_of_a_tasks_params_in_order() -> None:
    """TASK_COLUMNS (PostgreSQL's COPY column list) names task_to_params' values in their
    order: the bulk COPY writes those values as they come."""
    assert tuple(task_to_params(_every_field_set(), _RAW)) == TASK_COLUMNS


def test_task_from_row_sets_every_field() -> None:
    """A row of a task with every field set decodes to that very task: each value lands in
    its own field (the decoder fills Task's slots in field order, not through __init__)."""
    task = _every_field_set()
    messages = [[m.type.value, m.key, m.text, m.locale, list(m.parameters or ())]
                for m in task.messages]  # fmt: skip
    definition = dataclasses.asdict(SUMMARY)
    decoded = task_from_row(_row(task, definition, messages), _RAW)
    for f in dataclasses.fields(Task):
        assert getattr(decoded, f.name) == getattr(task, f.name), f.name
    assert decoded == task and hash(decoded.id) == hash(task.id)


def test_claimed_row_decodes_with_the_bare_summary_once_per_handler() -> None:
    """A claimed row (``run_columns``: no definition, no messages) gets its handler's bare
    summary, one shared object per handler rather than one per row, and no messages."""
    task = dataclasses.replace(_every_field_set(), messages=(), returns=())
    first = task_from_row(_row(task, None, None), _RAW)
    second = task_from_row(_row(task, None, None), _RAW)
    assert first.definition == unknown_summary("h")
    assert first.definition is second.definition
    assert first.messages == () and first.returns == ()
    assert dataclasses.replace(first, definition=SUMMARY) == task
