"""What every connection offers on top of `query`: the pending list and lazy paging. No I/O.

A mixin for the database connection and the remote client alike, so that "pending" and "every
page" mean the same thing over both.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

from taskstatus.model import Task

__all__ = ["PENDING", "Listing"]

PENDING = "completionStatus isnull"  # what v2024 calls pending: no completion status yet


class Listing:
    """`pending` and `iterate`, from the subclass's `query`."""

    async def query(
        self,
        filters: str | None = None,
        sorters: str | None = None,
        *,
        limit: int | None = 250,
        offset: int = 0,
    ) -> list[Task]:
        raise NotImplementedError

    async def pending(self, *, limit: int | None = 250, offset: int = 0) -> list[Task]:
        """Tasks without a completion status (queued, running, cancelling), oldest first."""
        return await self.query(PENDING, "created", limit=limit, offset=offset)

    async def iterate(
        self, filters: str | None = None, sorters: str | None = None, *, page_size: int = 250
    ) -> AsyncIterator[Task]:
        """Every task matching `filters`, fetched a page (`page_size`) at a time as the loop
        needs them (offset/limit; sorted by `sorters`, else oldest first)."""
        if page_size < 1:
            raise ValueError("page_size must be at least 1")
        offset = 0
        while True:
            page = await self.query(filters, sorters or "created", limit=page_size, offset=offset)
            for task in page:
                yield task
            if len(page) < page_size:
                return
            offset += len(page)
