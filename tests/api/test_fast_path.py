"""The GET of one task answers the same on the fast path (api/fastlane.py, above the router)
as on the framework path (the route's FastAPI endpoint: dependencies, validation, routing):
two servers on one database, one without the fast lane, asked the same requests.

Known difference, not covered: an invalid ?wait= is a 400 on both, worded by the fast
handler on one and by FastAPI's validation on the other.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from taskstatus.caller import READ, WRITE
from tests.api.conftest import Server, run_server, settings_for

TRACKING_ID = re.compile(rb"[0-9a-f]{32}")
VARYING = {b"date"}  # written by uvicorn per second


@pytest.fixture
def servers(store_url: str, tmp_path: Path) -> Iterator[tuple[Server, Server]]:
    """A server with the fast lane and one without it, on one database, without workers."""
    settings = settings_for(store_url, tmp_path, concurrency=0)
    for fast in run_server(settings):
        for framework in run_server(settings, fast_lane=False):
            yield fast, framework


def answer(
    server: Server, path: str, headers: dict[str, str]
) -> tuple[int, list[tuple[bytes, bytes]], bytes]:
    """Status, raw headers (in order, as sent, less the date) and body of a GET; tracking ids
    (fresh per error) blanked."""
    r = httpx.get(server.url + path, headers=headers)
    blank = [
        (name, TRACKING_ID.sub(b"-", value))
        for name, value in r.headers.raw
        if name.lower() not in VARYING
    ]
    return r.status_code, blank, TRACKING_ID.sub(b"-", r.content)


def test_every_fast_answer_is_the_framework_answer(servers: tuple[Server, Server]) -> None:
    """Found, finished, waited-for, unknown, unauthenticated, badly authenticated and
    out-of-scope GETs of one task, under every prefix, answer byte for byte the same."""
    fast, framework = servers
    with fast.connect() as conn:
        queued = conn.submit("Sleep", {"seconds": 1})
        done = conn.submit("Sleep", {"seconds": 1})
        conn.cancel(done.id)
    admin = {"Authorization": f"Bearer {fast.token()}"}
    writer = {"Authorization": f"Bearer {fast.token(*fast.new_client('w', WRITE))}"}
    reader = {"Authorization": f"Bearer {fast.token(*fast.new_client('r', READ))}"}
    cases: list[tuple[str, dict[str, str]]] = []
    for prefix in ("/v2024/task-status", "/beta/task-status", "/task-status/v1"):
        cases += [
            (f"{prefix}/{queued.id}", admin),
            (f"{prefix}/{done.id}", admin),
            (f"{prefix}/{done.id}?wait=5", admin),
            (f"{prefix}/{queued.id}?wait=0", admin),
            (f"{prefix}/{queued.id}?wait=0.2&other=1", admin),
            (f"{prefix}/{queued.id}", reader),  # another owner's task: as if it did not exist
            (f"{prefix}/{'0' * 32}", admin),
            (f"{prefix}/{queued.id}", {}),
            (f"{prefix}/{queued.id}", {"Authorization": "Bearer nonsense"}),
            (f"{prefix}/{queued.id}", {"Authorization": "Basic eDp5"}),
            (f"{prefix}/{queued.id}", writer),
        ]
    for path, headers in cases:
        assert answer(fast, path, headers) == answer(framework, path, headers), path


def test_the_lane_leaves_the_other_routes_to_the_router(servers: tuple[Server, Server]) -> None:
    """Sibling GET routes of a task id (pending-tasks, events) are the router's, not taken
    for task ids: the same answers with and without the lane."""
    fast, framework = servers
    admin = {"Authorization": f"Bearer {fast.token()}"}
    for path in ("/v2024/task-status/pending-tasks", "/beta/task-status/pending-tasks"):
        got = answer(fast, path, admin)
        assert got[0] == 200
        assert got == answer(framework, path, admin)
