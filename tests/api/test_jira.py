"""The Jira-style async task resource, driven by a real Jira client library (atlassian-python-api
5.x, whose JiraCloud has get_task and cancel_task) and by raw HTTP for the error shapes."""

from __future__ import annotations

import time
from datetime import timedelta
from typing import Any

import httpx
import pytest
import requests
from atlassian import JiraCloud

from taskstatus.model import TaskState
from taskstatus.service import utcnow
from tests.api.conftest import Server


def jira(server: Server, version: int = 3, **auth: Any) -> JiraCloud:
    """A Jira client authenticated with HTTP Basic (an API client's id and secret)."""
    auth = auth or {"username": server.client_id, "password": server.client_secret}
    return JiraCloud(server.url, api_version=version, **auth)


def response_of(info: pytest.ExceptionInfo[requests.HTTPError]) -> requests.Response:
    """The HTTP response a Jira client's error carries."""
    response = info.value.response
    assert response is not None
    return response


def wait_state(server: Server, task_id: str, state: TaskState) -> None:
    """Wait (up to 15 s) until the task is in `state`."""
    with server.connect() as conn:
        deadline = time.monotonic() + 15
        while conn.get(task_id).state is not state:
            assert time.monotonic() < deadline, conn.get(task_id).state
            time.sleep(0.05)


@pytest.mark.parametrize("version", [2, 3])
def test_get_task_running_then_finished(server: Server, version: int) -> None:
    """A Jira client reads a task while it runs and once it has finished, its self link under the
    version asked."""
    with server.connect() as conn:
        task = conn.submit(
            "Cloud Account Aggregation", {"accounts": 400, "page_size": 50, "page_delay": 0.1}
        )
    wait_state(server, task.id, TaskState.RUNNING)
    client = jira(server, version)
    running = client.get_task(task.id)
    assert running["self"] == f"{server.url}/rest/api/{version}/task/{task.id}"
    assert running["id"] == task.id
    assert running["status"] == "RUNNING"
    assert running["description"] == "Aggregates the accounts of a source, page by page."
    assert isinstance(running["submittedBy"], int)
    assert running["submittedByName"] == "admin"
    assert 0 <= running["progress"] <= 100
    assert isinstance(running["elapsedRuntime"], int)
    for key in ("submitted", "started", "lastUpdate"):
        assert isinstance(running[key], int) and running[key] > 1_600_000_000_000  # epoch ms
    assert "finished" not in running and "result" not in running

    wait_state(server, task.id, TaskState.SUCCEEDED)
    done = client.get_task(task.id)
    assert done["status"] == "COMPLETE"
    assert done["progress"] == 100
    assert done["result"]["total"] == 400
    assert done["finished"] >= done["started"] >= done["submitted"]
    assert done["elapsedRuntime"] == done["finished"] - done["started"]
    assert done["elapsedRuntime"] >= 700  # eight pages of 0.1 s
    assert done["message"] == "Aggregation of Active Directory finished"


def test_cancel_task(server: Server) -> None:
    """Cancel is a 202 with no body: a queued task is cancelled, a running one asked to stop and
    then cancelled."""
    with server.connect() as conn:
        queued = conn.submit("Sleep", {"seconds": 5}, run_at=timedelta(hours=1))
        running = conn.submit("Sleep", {"seconds": 60})
    wait_state(server, running.id, TaskState.RUNNING)
    client = jira(server, 2)
    assert client.cancel_task(queued.id) is None  # 202, no body
    assert client.get_task(queued.id)["status"] == "CANCELLED"
    client.cancel_task(running.id)
    assert client.get_task(running.id)["status"] in ("CANCEL_REQUESTED", "CANCELLED")
    wait_state(server, running.id, TaskState.CANCELLED)
    assert client.get_task(running.id)["status"] == "CANCELLED"

    # a finished task cannot be cancelled: 400 in Jira's error shape, which the client reads
    with pytest.raises(requests.HTTPError) as info:
        client.cancel_task(queued.id)
    assert response_of(info).status_code == 400
    assert "has already finished (cancelled); it cannot be cancelled" in str(info.value)


def test_unknown_task_is_404_in_jira_shape(server: Server) -> None:
    """get and cancel of an unknown id are 404s in Jira's errorMessages shape."""
    with pytest.raises(requests.HTTPError) as info:
        jira(server).get_task("0" * 32)
    assert response_of(info).status_code == 404
    assert response_of(info).json() == {
        "errorMessages": ["no task with id " + "0" * 32],
        "errors": {},
    }
    with pytest.raises(requests.HTTPError) as info:
        jira(server).cancel_task("0" * 32)
    assert response_of(info).status_code == 404


def test_bearer_tokens_work_too(server: Server) -> None:
    """A Jira client with a bearer token (not Basic) reads a task."""
    with server.connect() as conn:
        task = conn.submit("Sleep", {"seconds": 0})
    client = JiraCloud(server.url, token=server.token(), api_version=3)
    assert client.get_task(task.id)["id"] == task.id


@pytest.mark.parametrize(
    ("headers", "status", "message"),
    [
        ({}, 401, "JWT validation failed: no bearer token"),
        ({"Authorization": "Basic bm9ib2R5Om5vdGhpbmc="}, 401, "invalid client credentials"),
        ({"Authorization": "Bearer nope"}, 401, "JWT validation failed: invalid token"),
    ],
)
def test_auth_errors_in_jira_shape(
    server: Server, headers: dict[str, str], status: int, message: str
) -> None:
    """Missing, bad or refused credentials are 401s in Jira's error shape."""
    r = httpx.get(f"{server.url}/rest/api/2/task/abc", headers=headers)
    assert r.status_code == status
    assert r.json()["errorMessages"][0].startswith(message)
    assert r.json()["errors"] == {}


def test_scope_and_version_errors(server: Server) -> None:
    """A read-only client's cancel is a 403 naming the scope, and an API version other than 2 or 3
    a 400."""
    reader = server.new_client("ro", "tasks:read")
    with server.connect() as conn:
        task = conn.submit("Sleep", {"seconds": 30})
    r = httpx.post(f"{server.url}/rest/api/2/task/{task.id}/cancel", auth=reader)
    assert r.status_code == 403
    assert r.json()["errorMessages"] == [
        "this operation needs the tasks:write scope; the token has tasks:read"
    ]
    r = httpx.get(f"{server.url}/rest/api/4/task/{task.id}", auth=reader)
    assert r.status_code == 400
    assert r.json()["errors"] == {}


def test_past_the_retention_window_is_404(server: Server) -> None:
    """A task older than the retention window is a 404 to a Jira client."""
    with server.connect() as conn:
        task = conn.submit("Sleep", {"seconds": 0})
        conn.wait(task.id, 10)
    server.sql("UPDATE tasks SET created = ? WHERE id = ?", utcnow() - timedelta(days=91), task.id)
    with pytest.raises(requests.HTTPError) as info:
        jira(server).get_task(task.id)
    assert response_of(info).status_code == 404


def test_rate_limit_in_jira_shape(store_url: str, tmp_path: Any) -> None:
    """Past the rate limit a Jira route answers 429 in Jira's shape, with Retry-After."""
    from tests.api.conftest import run_server, settings_for

    for srv in run_server(settings_for(store_url, tmp_path, rate_limit=1, rate_burst=1)):
        auth = (srv.client_id, srv.client_secret)
        httpx.get(f"{srv.url}/rest/api/2/task/x", auth=auth)
        r = httpx.get(f"{srv.url}/rest/api/2/task/x", auth=auth)
        assert r.status_code == 429
        assert r.json() == {"errorMessages": ["Rate limit exceeded"], "errors": {}}
        assert r.headers["Retry-After"] == "1"
