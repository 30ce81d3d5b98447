"""Workers: the claim loop, leases and heartbeats, retries, timeouts, graceful shutdown."""

from taskstatus.worker.context import Retry, TaskCancelled, TaskContext
from taskstatus.worker.runner import Worker, WorkerOptions

__all__ = ["Retry", "TaskCancelled", "TaskContext", "Worker", "WorkerOptions"]
