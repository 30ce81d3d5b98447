"""SQLite keeps a task's `created` event in the task's row, not in the event log (migration
sqlite/0007): how the insert writes it and how a reader makes the event of it again, in one
place, since the reader rebuilds the usual case from what the writer leaves out."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import orjson

from taskstatus.model import Task, TaskState
from taskstatus.store.base import TaskEvent
from taskstatus.store.rows import Codec, task_to_params


def insert_params(task: Task, codec: Codec) -> dict[str, Any]:
    """The parameters of insert_task: the task's columns and its `created` event: '' for the
    usual one (version 1, queued, due and modified when created: `created_event` below makes
    it from the `created` column), else JSON [version, at, data] with the data the insert
    trigger wrote before (built of the columns' text: formatting the times again cost a task
    as much as the event row saved)."""
    params = task_to_params(task, codec)
    if (
        task.version == 1
        and task.state is TaskState.QUEUED
        and task.modified == task.created
        and task.run_at in (None, task.created)
    ):
        params["created_event"] = ""
    else:
        params["created_event"] = (
            f'[{task.version:d},"{params["modified"]}",'
            f'{{"state":"{params["state"]}","runAt":"{params["run_at"]}"}}]'
        )
    return params


def created_event(task_id: str, raw: str, created: str) -> TaskEvent:
    """A task's `created` event (seq 1) from its row's created_event `raw` and `created`
    column (the store's ISO text)."""
    if not raw:
        at = datetime.fromisoformat(created)
        return TaskEvent(task_id, 1, "created", 1, at, {"state": "queued", "runAt": created})
    version, at_text, data = orjson.loads(raw)
    return TaskEvent(task_id, 1, "created", version, datetime.fromisoformat(at_text), data)
