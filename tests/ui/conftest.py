"""A real `taskstatus serve` (demo handlers, in-process workers, SQLite) and Debian's Chromium
driven by Playwright.

Chromium cannot be downloaded by Playwright here (never `playwright install`): the session
installs Debian's package (`apt-get install chromium`) when /usr/bin/chromium is missing and
it runs as root; when it still cannot be had, the tests fail under CI=true and are skipped
elsewhere, saying why.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest
from playwright.sync_api import (
    Browser,
    BrowserContext,
    Page,
    Playwright,
    expect,
    sync_playwright,
)

from tests import pg

CHROMIUM = Path("/usr/bin/chromium")
TIMEOUT_MS = 60_000  # generous: a loaded 2-core machine
BIN = Path(sys.executable).parent

pytestmark = pytest.mark.slow
expect.set_options(timeout=TIMEOUT_MS)


def _install_chromium() -> str | None:
    """Install Debian's Chromium when missing; None when it is there, else why it is not."""
    if CHROMIUM.exists():
        return None
    if os.geteuid() != 0 or shutil.which("apt-get") is None:
        return f"{CHROMIUM} is missing (apt-get install chromium, as root)"
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    for command in (["apt-get", "update", "-qq"], ["apt-get", "install", "-y", "-qq", "chromium"]):
        done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=1200)
        if done.returncode != 0:
            return f"{' '.join(command)} failed: {done.stderr[-2000:]}"
    return None if CHROMIUM.exists() else f"apt-get installed chromium, but not at {CHROMIUM}"


@pytest.fixture(scope="package")
def playwright(database: str) -> Iterator[Playwright]:
    """Playwright's sync API, for this package's tests only: it runs an event loop in the
    main thread while it is open, which the asyncio tests of other packages cannot share
    (and which the PostgreSQL fixture's asyncio.run cannot: hence after the database)."""
    problem = _install_chromium()
    if problem is not None:
        if os.environ.get("CI") == "true":
            pytest.fail(f"the browser tests need Chromium: {problem}")
        pytest.skip(f"the browser tests need Chromium: {problem}")
    with sync_playwright() as p:
        yield p


@pytest.fixture(scope="package")
def browser(playwright: Playwright) -> Iterator[Browser]:
    found = playwright.chromium.launch(
        executable_path=str(CHROMIUM), args=["--no-sandbox", "--disable-dev-shm-usage"]
    )
    yield found
    found.close()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class Served:
    """A running `taskstatus serve` and its clients' credentials."""

    url: str
    database: str
    admin: dict[str, str]
    reader: dict[str, str]
    _token: str = field(default="", repr=False)

    def api(self) -> httpx.Client:
        """An HTTP client of the API, as the admin."""
        if not self._token:
            r = httpx.post(
                f"{self.url}/oauth/token", data={"grant_type": "client_credentials", **self.admin}
            )
            r.raise_for_status()
            self._token = r.json()["access_token"]
        return httpx.Client(
            base_url=self.url, headers={"Authorization": f"Bearer {self._token}"}, timeout=30
        )

    def submit(self, handler: str, arguments: dict[str, object], **options: object) -> str:
        with self.api() as http:
            r = http.post(
                "/taskstatus/v1/tasks", json={"handler": handler, "arguments": arguments, **options}
            )
            assert r.status_code == 201, r.text
            return str(r.json()["id"])


def _client(database: str, name: str, scope: str, owner: str) -> dict[str, str]:
    done = subprocess.run(
        [str(BIN / "taskstatus"), "clients", "create", name, "--scope", scope, "--owner", owner,
         "--json", "--database", database],
        capture_output=True, text=True, timeout=120, check=True,
    )  # fmt: skip
    return dict(json.loads(done.stdout))


@pytest.fixture(
    scope="package", params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)]
)
def database(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[str]:
    """An empty database of each backend for the server."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path_factory.mktemp('ui-db')}/tasks.db"
        return
    server: pg.PgServer = request.getfixturevalue("postgres")
    name = server.create_database()
    try:
        yield server.url(name)
    finally:
        server.drop_database(name)


@pytest.fixture(scope="package")
def served(database: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    """`taskstatus serve --demo` with 8 worker slots on `database`."""
    folder = tmp_path_factory.mktemp("ui-serve")
    port = _free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("TASKSTATUS_")}
    log = (folder / "serve.log").open("w")
    proc = subprocess.Popen(
        [str(BIN / "taskstatus"), "serve", "--demo", "--database", database, "--port", str(port),
         "--concurrency", "8", "--credentials-file", str(folder / "creds.json"),
         "--rate-limit", "0", "--event-heartbeat", "5"],
        stdout=log, stderr=subprocess.STDOUT, env=env, start_new_session=True,
    )  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 120
        while True:
            assert proc.poll() is None, (folder / "serve.log").read_text()[-3000:]
            try:
                if httpx.get(f"{url}/ready", timeout=2).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert time.monotonic() < deadline, "taskstatus serve did not come up"
            time.sleep(0.3)
        admin = json.loads((folder / "creds.json").read_text())
        reader = _client(database, "reader", "tasks:read", "admin")
        yield Served(url, database, admin, reader)
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(60)
        log.close()


def sign_in(page: Page, served: Served, creds: dict[str, str]) -> None:
    page.goto(f"{served.url}/ui/login")
    page.get_by_label("Client id").fill(creds["client_id"])
    page.get_by_label("Client secret").fill(creds["client_secret"])
    page.get_by_role("button", name="Sign in").click()
    page.wait_for_url(f"{served.url}/ui")


@pytest.fixture
def context(browser: Browser) -> Iterator[BrowserContext]:
    found = browser.new_context(viewport={"width": 1280, "height": 900})
    found.set_default_timeout(TIMEOUT_MS)
    yield found
    found.close()


@pytest.fixture
def admin_page(context: BrowserContext, served: Served) -> Page:
    """A browser page signed in as the admin client."""
    page = context.new_page()
    sign_in(page, served, served.admin)
    return page


@pytest.fixture
def browser_no_js(browser: Browser) -> Iterator[Page]:
    """A page of a context with JavaScript disabled."""
    found = browser.new_context(java_script_enabled=False)
    found.set_default_timeout(TIMEOUT_MS)
    yield found.new_page()
    found.close()
