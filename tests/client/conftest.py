"""A server process per test module and backend, shared by the module's tests."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests import pg
from tests.client.server import Server, serve

BACKENDS = ["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)]


@pytest.fixture(scope="module", params=BACKENDS)
def server(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Server]:
    """`taskstatus serve` with the demo handlers on a fresh database of each backend."""
    workdir = tmp_path_factory.mktemp("server")
    if request.param == "sqlite":
        with serve(f"sqlite:///{workdir}/tasks.db", workdir) as s:
            yield s
        return
    postgres: pg.PgServer = request.getfixturevalue("postgres")
    name = postgres.create_database()
    try:
        with serve(postgres.url(name), workdir) as s:
            yield s
    finally:
        postgres.drop_database(name)


@pytest.fixture(autouse=True)
def _no_saved_logins(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Tests never read or write the real user's saved logins or credentials."""
    monkeypatch.setenv("TASKSTATUS_CONFIG_DIR", str(tmp_path / "config"))
    for name in ("TASKSTATUS_CLIENT_ID", "TASKSTATUS_CLIENT_SECRET", "TASKSTATUS_CREDENTIALS_FILE"):
        monkeypatch.delenv(name, raising=False)
