"""One task, three views: created through v2, watched and cancelled through Jira, read back
through v2024 as TERMINATED."""

from __future__ import annotations

import time

from atlassian import JiraCloud

from tests.api.conftest import Server


def test_one_task_three_dialects(server: Server) -> None:
    """One task created in v2 is followed in v2024, cancelled by a Jira client, and shown cancelled
    in every dialect."""
    jira = JiraCloud(
        server.url, username=server.client_id, password=server.client_secret, api_version=3
    )
    with server.client() as http:
        created = http.post(
            "/v2/task/create",
            json={
                "handler": "Cloud Account Aggregation",
                "request": {"accounts": 100_000, "page_size": 50, "page_delay": 0.05},
                "entity_id": "src-42",
            },
        )
        assert created.status_code == 201
        task_id = created.json()["task_id"]

        # watch it run through the Jira resource: progress climbs while it runs
        seen: list[int] = []
        deadline = time.monotonic() + 20
        while len(set(seen)) < 2:
            assert time.monotonic() < deadline, seen
            view = jira.get_task(task_id)
            if view["status"] == "RUNNING" and view["progress"] > 0:
                seen.append(view["progress"])
            time.sleep(0.3)
        assert seen == sorted(seen)

        jira.cancel_task(task_id)
        while jira.get_task(task_id)["status"] != "CANCELLED":
            assert time.monotonic() < deadline
            time.sleep(0.1)

        status = http.get(f"/v2024/task-status/{task_id}").json()
        assert status["completionStatus"] == "TERMINATED"
        assert status["target"]["id"] == "src-42"
        assert status["completed"] is not None
        assert 0 < status["percentComplete"] < 100
        v2 = http.get(f"/v2/task/view/{task_id}").json()
        assert v2["status"] == "cancelled"
        assert v2["entity_id"] == "src-42"
