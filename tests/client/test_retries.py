"""The remote client on the wire: Retry-After honoured on 429 with bounded, jittered retries,
and RateLimited once they run out, against a real server with a low rate limit."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import httpx
import pytest

import taskstatus
from taskstatus.client import AsyncRemoteConnection
from taskstatus.errors import RateLimited
from tests.client.server import Server, serve

pytestmark = pytest.mark.anyio


@pytest.fixture(scope="module")
def limited(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """A server allowing each client 2 requests a second, in bursts of 2."""
    workdir = tmp_path_factory.mktemp("limited")
    with serve(
        f"sqlite:///{workdir}/t.db", workdir, "--rate-limit", "2", "--rate-burst", "2"
    ) as server:
        yield server


def _count_statuses(conn: AsyncRemoteConnection) -> list[int]:
    statuses: list[int] = []

    async def hook(response: httpx.Response) -> None:
        statuses.append(response.status_code)

    conn.transport.http.event_hooks["response"].append(hook)
    return statuses


async def test_burst_completes_by_honouring_retry_after(limited: Server) -> None:
    """Eight submits at once against 2 requests/s: the server answers 429 with Retry-After,
    the client waits and retries, and every submit lands exactly once."""
    async with AsyncRemoteConnection(
        limited.url, client_id=limited.client_id, client_secret=limited.client_secret, retries=10
    ) as ts:
        statuses = _count_statuses(ts)
        tasks = await asyncio.gather(
            *(ts.submit("Sleep", {"seconds": 0}, idempotency_key=f"burst-{i}") for i in range(8))
        )
        assert len({t.id for t in tasks}) == 8
        assert 429 in statuses  # the limit was hit, and waited out
        assert statuses.count(201) == 8
        assert await ts.count('uniqueName eq "Sleep"') >= 8


async def test_rate_limited_after_the_retries_run_out(limited: Server) -> None:
    """With one retry allowed, a burst of ten reads ends in RateLimited for some of them,
    carrying the server's Retry-After."""
    async with AsyncRemoteConnection(
        limited.url, client_id=limited.client_id, client_secret=limited.client_secret, retries=1
    ) as ts:
        results = await asyncio.gather(*(ts.count() for _ in range(10)), return_exceptions=True)
        refused = [r for r in results if isinstance(r, RateLimited)]
        assert refused, results
        assert all(r.retry_after and r.retry_after >= 1 for r in refused)
        assert all(r.status == 429 for r in refused)
        assert all(isinstance(r, int | RateLimited) for r in results)


def test_sync_client_honours_retry_after_too(limited: Server) -> None:
    """The sync client, built on the same implementation, completes a sequential burst that
    exceeds the limit."""
    with taskstatus.connect(limited.url, **limited.credentials) as ts:
        assert [ts.count() >= 0 for _ in range(6)] == [True] * 6
