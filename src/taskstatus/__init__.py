"""taskstatus: long-running background tasks with durable, queryable status.

from taskstatus import connect, handler, TaskContext
"""

from taskstatus.client import AsyncRemoteConnection, TaskEvent
from taskstatus.connection import AsyncConnection, Connection, connect, connect_async
from taskstatus.errors import (
    BadRequest,
    ConflictError,
    Forbidden,
    HasSubtasks,
    InvalidArguments,
    InvalidFilter,
    NoDatabase,
    NotFound,
    RateLimited,
    ServerError,
    StoreError,
    StoreUnavailable,
    TaskStatusError,
    Unauthorized,
    UnknownHandler,
    Unreachable,
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
    "AsyncRemoteConnection",
    "BadRequest",
    "CompletionStatus",
    "ConflictError",
    "Connection",
    "Forbidden",
    "Handler",
    "HasSubtasks",
    "IllegalTransition",
    "InvalidArguments",
    "InvalidFilter",
    "InvalidTaskChange",
    "Message",
    "MessageType",
    "NoDatabase",
    "NotFound",
    "RateLimited",
    "Retry",
    "ServerError",
    "StoreError",
    "StoreUnavailable",
    "Target",
    "TargetType",
    "Task",
    "TaskCancelled",
    "TaskContext",
    "TaskEvent",
    "TaskState",
    "TaskStatusError",
    "TaskType",
    "Unauthorized",
    "UnknownHandler",
    "Unreachable",
    "WaitTimeout",
    "connect",
    "connect_async",
    "handler",
]
