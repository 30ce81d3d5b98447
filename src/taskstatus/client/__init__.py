"""The remote client: what ``taskstatus.connect("https://...")`` returns, over httpx.

It imports nothing of the server (no FastAPI, Starlette, uvicorn, psycopg, nor taskstatus's
api, store, service or worker): an import-linter contract in pyproject.toml checks it.
"""

from taskstatus.client.credentials import (
    ClientCredentials,
    find_credentials,
    forget_login,
    save_login,
    saved_login,
)
from taskstatus.client.remote import AsyncRemoteConnection, TaskEvent, is_remote
from taskstatus.client.transport import RetryPolicy

__all__ = [
    "AsyncRemoteConnection",
    "ClientCredentials",
    "RetryPolicy",
    "TaskEvent",
    "find_credentials",
    "forget_login",
    "is_remote",
    "save_login",
    "saved_login",
]
