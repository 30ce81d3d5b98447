"""taskstatus: long-running background tasks with durable, queryable status.

from taskstatus import connect, handler, TaskContext
"""

from taskstatus.connection import AsyncConnection, Connection, connect, connect_async
from taskstatus.errors import (
    ConflictError,
    InvalidArguments,
    NoDatabase,
    NotFound,
    StoreError,
    StoreUnavailable,
    TaskStatusError,
    UnknownHandler,
    WaitTimeout,
)
from taskstatus.handlers import Handler, handler
from taskstatus.model import (
    CompletionStatus,
    IllegalTransition,
    InvalidTaskChange,
    Message,
    MessageType,
    Target,
    TargetType,
    Task,
    TaskState,
    TaskType,
)
from taskstatus.worker.context import Retry, TaskCancelled, TaskContext

__all__ = [
    "AsyncConnection",
    "CompletionStatus",
    "ConflictError",
    "Connection",
    "Handler",
    "IllegalTransition",
    "InvalidArguments",
    "InvalidTaskChange",
    "Message",
    "MessageType",
    "NoDatabase",
    "NotFound",
    "Retry",
    "StoreError",
    "StoreUnavailable",
    "Target",
    "TargetType",
    "Task",
    "TaskCancelled",
    "TaskContext",
    "TaskState",
    "TaskStatusError",
    "TaskType",
    "UnknownHandler",
    "WaitTimeout",
    "connect",
    "connect_async",
    "handler",
]
