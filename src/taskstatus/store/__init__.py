"""Durable task stores: the Store protocol and a factory that picks the backend from a URL."""

from __future__ import annotations

from taskstatus.redact import mask
from taskstatus.store.base import (
    ApiClient,
    ConflictError,
    DeleteResult,
    Heartbeat,
    NotFound,
    Outcome,
    Page,
    Progress,
    Recovered,
    Store,
    StoreError,
    StoreLimits,
    StoreUnavailable,
)

__all__ = [
    "ApiClient",
    "ConflictError",
    "DeleteResult",
    "Heartbeat",
    "NotFound",
    "Outcome",
    "Page",
    "Progress",
    "Recovered",
    "Store",
    "StoreError",
    "StoreLimits",
    "StoreUnavailable",
    "make_store",
]


def make_store(url: str, *, limits: StoreLimits | None = None, must_exist: bool = False) -> Store:
    """A store for `url` (not yet opened): ``sqlite:///file.db`` or ``postgresql://...``.
    `limits` default to StoreLimits() (`TaskService.from_url`, what every interface opens a
    database with, passes the TASKSTATUS_*_TIMEOUT variables); with `must_exist`, opening a
    SQLite file that does not exist fails (naming it) instead of creating it."""
    if limits is None:
        limits = StoreLimits()
    if url.startswith("sqlite:///") or "://" not in url:
        from taskstatus.store.sqlite import SQLiteStore

        return SQLiteStore(url, limits=limits, must_exist=must_exist)
    if url.startswith(("postgresql://", "postgres://")):
        from taskstatus.store.postgres import PostgresStore

        return PostgresStore(url, limits=limits)
    raise ValueError(
        f"unsupported database URL {mask(url)!r}: use sqlite:///path.db or postgresql://..."
    )
