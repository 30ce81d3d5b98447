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
    "make_store",
]

DEFAULT_URL = "sqlite:///./taskstatus.db"


def make_store(url: str = DEFAULT_URL) -> Store:
    """A store for `url` (not yet opened): ``sqlite:///file.db`` or ``postgresql://...``."""
    if url.startswith("sqlite:///") or "://" not in url:
        from taskstatus.store.sqlite import SQLiteStore

        return SQLiteStore(url)
    if url.startswith(("postgresql://", "postgres://")):
        from taskstatus.store.postgres import PostgresStore

        return PostgresStore(url)
    raise ValueError(
        f"unsupported database URL {mask(url)!r}: use sqlite:///path.db or postgresql://..."
    )
