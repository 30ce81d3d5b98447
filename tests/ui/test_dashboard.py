"""The dashboard in a real browser: sign in, filter, live progress, actions, bulk actions,
the handler form, a read-only client, CSRF."""

from __future__ import annotations

import os
import re
import time
import uuid
from pathlib import Path

import httpx
import pytest
from playwright.sync_api import BrowserContext, Page, expect

from tests.ui.conftest import TIMEOUT_MS, Served, sign_in

pytestmark = pytest.mark.slow


def _launcher() -> str:
    return f"ui-{uuid.uuid4().hex[:8]}"


def test_sign_in_sets_a_safe_cookie_and_sign_out_ends_it(
    context: BrowserContext, served: Served
) -> None:
    """A wrong secret is refused on the form; the right one opens the overview with an
    HttpOnly, SameSite session cookie that expires; signing out leads back to the form."""
    page = context.new_page()
    page.goto(f"{served.url}/")  # / leads to the dashboard, which asks to sign in
    expect(page).to_have_url(re.compile(r"/ui/login"))
    page.get_by_label("Client id").fill(served.admin["client_id"])
    page.get_by_label("Client secret").fill("wrong")
    page.get_by_role("button", name="Sign in").click()
    expect(page.get_by_role("alert")).to_contain_text("Wrong client id or secret")
    sign_in(page, served, served.admin)
    expect(page.get_by_role("heading", name="Overview")).to_be_visible()
    (cookie,) = [c for c in context.cookies() if c["name"] == "taskstatus_ui"]
    assert cookie["httpOnly"] and cookie["sameSite"] == "Lax" and cookie["expires"] > 0
    page.get_by_role("button", name="Sign out").click()
    expect(page).to_have_url(re.compile(r"/ui/login"))
    page.goto(f"{served.url}/ui/tasks")
    expect(page).to_have_url(re.compile(r"/ui/login\?next="))


def test_filter_box_takes_the_api_grammar_and_shows_its_errors(
    admin_page: Page, served: Served
) -> None:
    """The filters box narrows the list as the API's filters do, and a bad filter shows the
    API's own error message inline."""
    who = _launcher()
    for _ in range(2):
        served.submit("Failing Task", {}, launcher=who)
    served.submit("Sleep", {"seconds": 0}, launcher=who)
    page = admin_page
    page.goto(f"{served.url}/ui/tasks?launcher={who}")
    rows = page.locator("tbody tr[data-task-id]")
    expect(rows).to_have_count(3)
    expect(page.locator('tbody tr[data-state="failed"]')).to_have_count(2, timeout=TIMEOUT_MS)
    page.get_by_label("Filter").fill('completionStatus eq "ERROR"')
    page.get_by_role("button", name="Apply").click()
    expect(rows).to_have_count(2)
    for state in rows.evaluate_all("rows => rows.map(r => r.dataset.state)"):
        assert state == "failed"
    bad = "completionStatus eq"
    with served.api() as http:
        api = http.get("/v2024/task-status", params={"filters": bad})
    assert api.status_code == 400
    message = api.json()["causes"][0]["text"]
    page.get_by_label("Filter").fill(bad)
    page.get_by_role("button", name="Apply").click()
    expect(page.locator("#filters-error")).to_have_text(message)


def test_rows_stream_sends_every_shown_row_as_it_connects(admin_page: Page, served: Served) -> None:
    """The list's live stream sends each shown row once when it connects: a task that ended
    between the page's render and the stream's start (no event left to hear) still reaches
    the page. This was a flaky browser test's cause: a row stayed "running" for good."""
    task_id = served.submit("Failing Task", {}, launcher=_launcher())
    with served.api() as http:
        r = http.get(f"/v2024/task-status/{task_id}", params={"wait": 30})
        assert r.json()["completionStatus"] == "ERROR"
    cookies = {c["name"]: c["value"] for c in admin_page.context.cookies()}
    deadline = time.monotonic() + 12  # the server's heartbeat is 5 s: lines keep coming
    with (
        httpx.Client(base_url=served.url, cookies=cookies, timeout=30) as http,
        http.stream("GET", "/ui/live/rows", params={"ids": task_id}) as stream,
    ):
        assert stream.status_code == 200
        lines = stream.iter_lines()
        for line in lines:
            if line == f"event: row-{task_id}":
                break
            assert time.monotonic() < deadline, "no row event after connecting"
        data = next(lines)
    assert data.startswith("data: ") and 'data-state="failed"' in data


def test_list_rows_change_state_live(admin_page: Page, served: Served) -> None:
    """A row of the list follows its task from running to succeeded without a reload, and
    keeps its tick across the live update."""
    who = _launcher()
    task_id = served.submit("Sleep", {"seconds": 4}, launcher=who)
    page = admin_page
    page.goto(f"{served.url}/ui/tasks?launcher={who}")
    row = page.locator(f'tr[data-task-id="{task_id}"]')
    expect(row).to_have_attribute("data-state", re.compile("queued|running"))
    row.get_by_role("checkbox").check()
    page.evaluate("window.notReloaded = true")
    expect(row).to_have_attribute("data-state", "succeeded")
    expect(row.locator(".badge.c-SUCCESS")).to_be_visible()
    expect(row.get_by_role("checkbox")).to_be_checked()
    assert page.evaluate("window.notReloaded") is True


def test_running_task_progress_moves_live_then_cancel_ends_it(
    admin_page: Page, served: Served
) -> None:
    """A running task's progress bar advances without a reload; Cancel ends it TERMINATED,
    shown live."""
    task_id = served.submit("Sleep", {"seconds": 120})
    page = admin_page
    page.goto(f"{served.url}/ui/tasks/{task_id}")
    bar = page.locator("#task-live [role=progressbar]")
    expect(page.locator("#task-live .badge.s-running")).to_be_visible()
    start = int(bar.get_attribute("aria-valuenow") or 0)
    page.wait_for_function(
        "start => Number(document.querySelector('#task-live [role=progressbar]')"
        ".getAttribute('aria-valuenow')) > start",
        arg=start,
        timeout=TIMEOUT_MS,
    )
    page.get_by_role("button", name=re.compile("^Cancel")).click()
    expect(page.locator(".flash.ok")).to_contain_text("Cancel requested")
    expect(page.locator("#task-live .badge.c-TERMINATED")).to_be_visible()
    expect(page.locator("#task-live .badge.s-cancelled")).to_be_visible()
    expect(page.get_by_role("button", name=re.compile("^Cancel"))).to_have_count(0)


def test_bulk_cancel_of_every_task_matching_the_filter(admin_page: Page, served: Served) -> None:
    """'Cancel all matching' asks to confirm with the count, then cancels exactly the
    filtered tasks; their rows turn cancelled live."""
    who = _launcher()
    ids = [served.submit("Sleep", {"seconds": 300}, launcher=who) for _ in range(3)]
    other = served.submit("Sleep", {"seconds": 300}, launcher=_launcher())
    page = admin_page
    page.goto(f"{served.url}/ui/tasks?launcher={who}")
    expect(page.locator("tbody tr[data-task-id]")).to_have_count(3)
    page.get_by_role("button", name="Cancel all matching…").click()
    expect(page.get_by_role("heading", name="Cancel 3 tasks?")).to_be_visible()
    page.get_by_role("button", name="Yes, cancel 3").click()
    expect(page.locator(".flash.ok")).to_contain_text("Cancelled 3 of 3 task(s).")
    for task_id in ids:
        row = page.locator(f'tr[data-task-id="{task_id}"]')
        expect(row).to_have_attribute("data-state", "cancelled", timeout=TIMEOUT_MS)
    with served.api() as http:
        assert http.get(f"/taskstatus/v1/tasks/{other}").json()["state"] != "cancelled"
        http.post(f"/taskstatus/v1/tasks/{other}/cancel")


def test_handler_form_shows_the_handlers_errors_then_submits(
    admin_page: Page, served: Served
) -> None:
    """The Submit form generated from the schema shows the handler's validation error at the
    field, and submits once the value is good."""
    page = admin_page
    page.goto(f"{served.url}/ui/handlers")
    page.get_by_role("link", name="Submit…").nth(
        page.get_by_role("heading", level=2).all_inner_texts().index("Sleep")
    ).click()
    expect(page.get_by_role("heading", name="Submit Sleep")).to_be_visible()
    page.get_by_label("Seconds").fill("-5")
    page.get_by_role("button", name="Submit").click()
    expect(page.locator("#err-seconds")).to_contain_text("greater than or equal to 0")
    expect(page.get_by_label("Seconds")).to_have_attribute("aria-invalid", "true")
    page.get_by_label("Seconds").fill("0.2")
    page.get_by_role("button", name="Submit").click()
    expect(page).to_have_url(re.compile(r"/ui/tasks/[0-9a-f]{32}\?notice=Submitted"))
    expect(page.locator("#task-live .badge.c-SUCCESS")).to_be_visible()


def test_read_only_client_sees_no_actions_and_is_refused(
    context: BrowserContext, served: Served
) -> None:
    """A client without tasks:write sees the task but no action button, and the server
    refuses the action anyway."""
    task_id = served.submit("Sleep", {"seconds": 300})
    page = context.new_page()
    sign_in(page, served, served.reader)
    page.goto(f"{served.url}/ui/tasks/{task_id}")
    expect(page.get_by_role("heading", name="Sleep")).to_be_visible()
    expect(page.get_by_text("Read only: this client has no tasks:write scope.")).to_be_visible()
    assert page.locator("main button").count() == 0
    page.goto(f"{served.url}/ui/tasks")
    assert page.locator("main button:not([type=submit][form])").all_inner_texts() == ["Apply"]
    csrf = page.locator('input[name="csrf_token"]').first.get_attribute("value")
    refused = page.request.post(
        f"{served.url}/ui/tasks/{task_id}/cancel", form={"csrf_token": csrf or ""}
    )
    assert refused.status == 403
    with served.api() as http:
        assert http.get(f"/taskstatus/v1/tasks/{task_id}").json()["state"] != "cancelled"
        http.post(f"/taskstatus/v1/tasks/{task_id}/cancel")


def test_action_without_the_csrf_token_is_refused(served: Served) -> None:
    """A signed-in POST without (or with a wrong) CSRF token changes nothing (403); with the
    session's token it acts."""
    task_id = served.submit("Sleep", {"seconds": 300})
    with httpx.Client(base_url=served.url) as http:
        assert http.post("/ui/login", data=served.admin).status_code == 303
        page = http.get(f"/ui/tasks/{task_id}").text
        token = re.search(r'name="csrf_token" value="([^"]+)"', page)
        assert token is not None
        assert http.post(f"/ui/tasks/{task_id}/cancel").status_code == 403
        bad = http.post(f"/ui/tasks/{task_id}/cancel", data={"csrf_token": "x" + token[1]})
        assert bad.status_code == 403
        with served.api() as api:
            assert api.get(f"/taskstatus/v1/tasks/{task_id}").json()["state"] != "cancelled"
        done = http.post(f"/ui/tasks/{task_id}/cancel", data={"csrf_token": token[1]})
        assert done.status_code == 303


def test_pages_read_without_javascript(browser_no_js: Page, served: Served) -> None:
    """With JavaScript off, signing in and every page still reads."""
    page = browser_no_js
    sign_in(page, served, served.admin)
    for path, heading in (("/ui/tasks", "Tasks"), ("/ui/handlers", "Handlers"),
                          ("/ui/workers", "Workers")):  # fmt: skip
        page.goto(served.url + path)
        expect(page.get_by_role("heading", name=heading, exact=True)).to_be_visible()


def test_screenshots(context: BrowserContext, served: Served, tmp_path: Path) -> None:
    """The overview, the list and a running task render, also on a phone (screenshots go to
    $TASKSTATUS_UI_SCREENSHOTS when set: docs/screenshots is made this way)."""
    wanted = os.environ.get("TASKSTATUS_UI_SCREENSHOTS")
    folder = Path(wanted if wanted and served.database.startswith("sqlite") else tmp_path)
    folder.mkdir(parents=True, exist_ok=True)
    who = "ops"
    for accounts in (4000, 6000):
        served.submit("Cloud Account Aggregation", {"accounts": accounts, "page_delay": 0.01},
                      launcher=who)  # fmt: skip
    for _ in range(2):
        served.submit("Failing Task", {}, launcher=who)
    served.submit("Fan Out", {"children": 3}, launcher=who)
    running = served.submit(
        "Cloud Account Aggregation", {"accounts": 100_000, "page_delay": 0.2, "page_size": 100},
        launcher=who,
    )  # fmt: skip
    page = context.new_page()
    sign_in(page, served, served.admin)
    page.goto(f"{served.url}/ui/tasks/{running}")
    page.wait_for_function(
        "Number(document.querySelector('#task-live [role=progressbar]')"
        ".getAttribute('aria-valuenow')) >= 2",
        timeout=TIMEOUT_MS,
    )
    page.screenshot(path=str(folder / "task.png"), full_page=True)
    page.goto(f"{served.url}/ui")
    page.screenshot(path=str(folder / "overview.png"), full_page=True)
    page.goto(f"{served.url}/ui/tasks?limit=25")
    page.screenshot(path=str(folder / "tasks.png"), full_page=True)
    page.set_viewport_size({"width": 390, "height": 844})  # a phone
    page.goto(f"{served.url}/ui/tasks/{running}")
    page.screenshot(path=str(folder / "phone-task.png"), full_page=False)
    for name in ("task", "overview", "tasks", "phone-task"):
        assert (folder / f"{name}.png").stat().st_size > 10_000
    with served.api() as http:
        http.post(f"/taskstatus/v1/tasks/{running}/cancel")
