"""The task fields that ``filters`` and ``sorters`` may name, in the v2024 (camelCase) dialect.

The seeds list ``id``, ``sourceId``, ``completionStatus`` and ``type`` with ``eq`` and ``in``,
and sorting by ``created``; the rest is taskstatus's own addition (docs/api.md lists it). The
CLI and the Python API use the same names.
"""

from __future__ import annotations

from taskstatus.model import CompletionStatus, TargetType, TaskState, TaskType
from taskstatus.query import Catalog, FieldSpec, Kind, Op, TaskField

__all__ = ["TASK_STATUS"]

_EQ_IN = frozenset({Op.EQ, Op.NE, Op.IN})
_TEXT = _EQ_IN | {Op.CO, Op.SW}
_ORDERED = frozenset({Op.EQ, Op.NE, Op.GT, Op.GE, Op.LT, Op.LE, Op.IN})
_NULL = frozenset({Op.ISNULL, Op.PR})

TASK_STATUS = Catalog(
    {
        "id": FieldSpec(TaskField.ID, Kind.STRING, _EQ_IN),
        "sourceId": FieldSpec(TaskField.TARGET_ID, Kind.STRING, _EQ_IN | _NULL),
        "completionStatus": FieldSpec(
            TaskField.COMPLETION_STATUS, Kind.ENUM, _EQ_IN | _NULL, enum=CompletionStatus
        ),
        "type": FieldSpec(TaskField.TYPE, Kind.ENUM, _EQ_IN, enum=TaskType),
        "created": FieldSpec(TaskField.CREATED, Kind.DATETIME, _ORDERED, sortable=True),
        # taskstatus additions
        "modified": FieldSpec(TaskField.MODIFIED, Kind.DATETIME, _ORDERED, sortable=True),
        "launched": FieldSpec(TaskField.LAUNCHED, Kind.DATETIME, _ORDERED | _NULL, sortable=True),
        "completed": FieldSpec(TaskField.COMPLETED, Kind.DATETIME, _ORDERED | _NULL, sortable=True),
        "uniqueName": FieldSpec(TaskField.UNIQUE_NAME, Kind.STRING, _TEXT, sortable=True),
        "description": FieldSpec(TaskField.DESCRIPTION, Kind.STRING, _TEXT),
        "launcher": FieldSpec(TaskField.LAUNCHER, Kind.STRING, _TEXT, sortable=True),
        "sourceName": FieldSpec(TaskField.TARGET_NAME, Kind.STRING, _TEXT | _NULL),
        "sourceType": FieldSpec(TaskField.TARGET_TYPE, Kind.ENUM, _EQ_IN | _NULL, enum=TargetType),
        "parentId": FieldSpec(TaskField.PARENT_ID, Kind.STRING, _EQ_IN | _NULL),
        "parentName": FieldSpec(TaskField.PARENT_NAME, Kind.STRING, _TEXT | _NULL),
        "definition": FieldSpec(TaskField.HANDLER, Kind.STRING, _TEXT),
        "state": FieldSpec(TaskField.STATE, Kind.ENUM, _EQ_IN, enum=TaskState),
        "percentComplete": FieldSpec(
            TaskField.PERCENT_COMPLETE, Kind.INTEGER, _ORDERED, sortable=True
        ),
        "priority": FieldSpec(TaskField.PRIORITY, Kind.INTEGER, _ORDERED, sortable=True),
        "attempts": FieldSpec(TaskField.ATTEMPTS, Kind.INTEGER, _ORDERED, sortable=True),
    }
)
