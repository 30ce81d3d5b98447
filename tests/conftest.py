"""Fixtures shared by every suite: stores of each backend, a clock, handler registries."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path

import pytest
import uvicorn

from taskstatus import eventloop
from taskstatus.handlers import Registry
from taskstatus.model import Task, TaskDefinition, TaskDefinitionSummary, new_task
from taskstatus.store import Store, make_store
from tests import pg

BACKENDS = ["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)]


@pytest.fixture
def anyio_backend() -> tuple[str, dict[str, object]]:
    """Async tests run on the loop taskstatus's processes run on (uvloop where installed)."""
    return "asyncio", {"loop_factory": eventloop.new_event_loop}


@pytest.fixture(scope="session")
def postgres() -> Iterator[pg.PgServer]:
    """The PostgreSQL server of this session (skipped without one, failed when CI=true)."""
    yield from pg.server()


@pytest.fixture(params=BACKENDS)
def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A fresh, empty database of each backend."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path}/tasks.db"
        return
    server: pg.PgServer = request.getfixturevalue("postgres")
    name = server.create_database()
    try:
        yield server.url(name)
    finally:
        server.drop_database(name)


@pytest.fixture
async def store(store_url: str) -> AsyncIterator[Store]:
    s = make_store(store_url)
    await s.open()
    try:
        yield s
    finally:
        await s.close()


@pytest.fixture
def registry() -> Registry:
    """An empty registry, so that tests never see each other's handlers."""
    return Registry()


SUMMARY = TaskDefinitionSummary(
    id="0" * 32,
    unique_name="noop",
    description="does nothing",
    parent_name="noop",
    executor="tests.noop",
    arguments={},
)
DEFINITION = TaskDefinition(SUMMARY, {"type": "object"})


def now() -> datetime:
    return datetime.now(UTC)


def make_task(handler: str = "noop", **options: object) -> Task:
    """A queued task of the test definition (handler "noop" unless said otherwise)."""
    summary = (
        SUMMARY
        if handler == "noop"
        else TaskDefinitionSummary("1" * 32, handler, "", handler, f"tests.{handler}", {})
    )
    return new_task(
        handler=handler,
        definition=summary,
        arguments=options.pop("arguments", {}),  # type: ignore[arg-type]
        launcher=options.pop("launcher", "tester"),  # type: ignore[arg-type]
        now=options.pop("now", None) or now(),  # type: ignore[arg-type]
        **options,  # type: ignore[arg-type]
    )


class _ThreadServer(uvicorn.Server):
    def install_signal_handlers(self) -> None:  # the test process keeps its own
        pass


@contextmanager
def serving(config: uvicorn.Config) -> Iterator[int]:
    """A uvicorn server of `config` in a thread, started; yields its port, and stops it."""
    server = _ThreadServer(config)
    thread = threading.Thread(target=lambda: asyncio.run(server.serve()), daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started:
        assert thread.is_alive() and time.monotonic() < deadline, "the server did not start"
        time.sleep(0.01)
    try:
        yield int(server.servers[0].sockets[0].getsockname()[1])
    finally:
        server.should_exit = True
        thread.join(30)
