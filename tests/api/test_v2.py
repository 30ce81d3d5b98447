"""The task CRUD (v2) dialect over real HTTP: every endpoint, its errors and paging edges."""

from __future__ import annotations

import time
from datetime import timedelta
from typing import Any

import httpx
import pytest

from taskstatus.model import TaskState
from tests.api.conftest import Server
from tests.api.test_v2024 import check_error


def create(http: httpx.Client, **body: Any) -> dict[str, Any]:
    """The v2 task created from `body`, checking the 201."""
    r = http.post("/v2/task/create", json=body)
    assert r.status_code == 201, r.text
    return dict(r.json())


def index(http: httpx.Client, **body: Any) -> httpx.Response:
    """The response to a v2 index with `body`."""
    return http.post("/v2/task/index", json=body)


def test_create_then_view(idle_server: Server) -> None:
    """A created task is pending, in v2 fields, launched by the caller's owner, and view returns
    the same."""
    with idle_server.client() as http:
        task = create(http, handler="Sleep", request={"seconds": 2}, entity_id="acct-7")
        assert task["status"] == "pending"
        assert task["handler"] == "Sleep"
        assert task["user_id"] == "admin"
        assert task["entity_id"] == "acct-7"
        assert task["request"] == {"seconds": 2.0}
        assert task["response"] is None
        assert len(task["task_id"]) == 32
        assert http.get(f"/v2/task/view/{task['task_id']}").json() == task
        check_error(http.get("/v2/task/view/" + "0" * 32), 404)


@pytest.mark.parametrize(
    ("body", "fragment"),
    [
        ({"handler": "Nope"}, "unknown handler 'Nope'"),
        ({"handler": "Sleep", "request": {"seconds": "long"}}, "Sleep: seconds:"),
        ({"handler": "Sleep", "request": {"seconds": -1}}, "Sleep: seconds:"),
        ({"request": {}}, "handler: Field required"),
        ({"handler": "Sleep", "task_id": "mine"}, "task_id: Extra inputs are not permitted"),
        ({"handler": "Sleep", "status": "completed"}, "status: a new task is pending"),
        ({"handler": "Sleep", "request": [1]}, "request: Input should be a valid dictionary"),
    ],
)
def test_create_refuses_bad_input_and_stores_nothing(
    idle_server: Server, body: dict[str, Any], fragment: str
) -> None:
    """A create with a bad handler, request or status is a 400 naming it, and nothing is stored."""
    with idle_server.client() as http:
        check_error(http.post("/v2/task/create", json=body), 400, fragment)
        assert index(http).json() == []


def test_create_for_another_user_needs_admin(idle_server: Server) -> None:
    """Only a tasks:admin client may create a task for another user_id (403 otherwise)."""
    writer = idle_server.new_client("svc", "tasks:read", "tasks:write")
    with idle_server.client(idle_server.token(*writer)) as http:
        check_error(
            http.post("/v2/task/create", json={"handler": "Sleep", "user_id": "boss"}),
            403,
            "only a client with tasks:admin",
        )
        assert create(http, handler="Sleep", user_id="svc")["user_id"] == "svc"
        assert create(http, handler="Sleep")["user_id"] == "svc"
    with idle_server.client() as http:
        assert create(http, handler="Sleep", user_id="boss")["user_id"] == "boss"


def test_index_filters_sorts_and_pages(idle_server: Server) -> None:
    """index matches filters exactly, sorts, pages from 1 and fills the X-Pagination-* headers."""
    with idle_server.client() as http:
        made = [
            create(http, handler="Sleep", request={"seconds": i}, entity_id=f"e{i % 2}")
            for i in range(7)
        ]
        http.put(f"/v2/task/update/{made[0]['task_id']}", json={"status": "cancelled"})

        r = index(http, filter={}, **{"per-page": 3}, page=2, sort="created_at")
        assert r.status_code == 200
        assert [t["task_id"] for t in r.json()] == [t["task_id"] for t in made[3:6]]
        assert (
            r.headers["X-Pagination-Current-Page"],
            r.headers["X-Pagination-Page-Count"],
            r.headers["X-Pagination-Per-Page"],
            r.headers["X-Pagination-Total-Count"],
        ) == (
            "2",
            "3",
            "3",
            "7",
        )
        assert (b"X-Pagination-Total-Count", b"7") in r.headers.raw  # exact case on the wire

        last = index(http, **{"per-page": 3}, page=3, sort="created_at")
        assert [t["task_id"] for t in last.json()] == [made[6]["task_id"]]
        beyond = index(http, **{"per-page": 3}, page=9)
        assert (beyond.json(), beyond.headers["X-Pagination-Total-Count"]) == ([], "7")

        newest = index(http, **{"per-page": 2}).json()  # default: -created_at
        assert [t["task_id"] for t in newest] == [made[6]["task_id"], made[5]["task_id"]]

        both = index(http, filter={"entity_id": "e1", "status": "pending"}, sort="-created_at")
        assert [t["task_id"] for t in both.json()] == [made[i]["task_id"] for i in (5, 3, 1)]
        cancelled = index(http, filter={"status": "cancelled"}).json()
        assert [t["task_id"] for t in cancelled] == [made[0]["task_id"]]
        by_request = index(http, filter={"request": {"seconds": 4.0}}).json()
        assert [t["task_id"] for t in by_request] == [made[4]["task_id"]]
        no_target = index(http, filter={"entity_id": None}).json()
        assert no_target == []
        by_time = index(
            http, filter={"created_at": made[2]["created_at"], "handler": "Sleep"}
        ).json()
        assert made[2]["task_id"] in [t["task_id"] for t in by_time]


@pytest.mark.parametrize(
    ("body", "fragment"),
    [
        ({"filter": {"colour": "red"}}, "filter.colour: unknown field"),
        ({"filter": {"status": "sleeping"}}, "filter.status: 'sleeping' is not a status"),
        ({"filter": {"created_at": "today"}}, "filter.created_at: must be an ISO 8601"),
        ({"filter": {"handler": 5}}, "filter.handler: must be a string"),
        ({"per-page": 0}, "per-page: must be from 1 to 250, not 0"),
        ({"per-page": 251}, "per-page: must be from 1 to 250, not 251"),
        ({"page": 0}, "page: must be 1 or more, not 0"),
        ({"page": "two"}, "page: Input should be a valid integer"),
        ({"sort": "colour"}, "sort: cannot sort by 'colour'"),
        ({"sort": "-request"}, "sort: cannot sort by 'request'"),
        ({"limit": 5}, "limit: Extra inputs are not permitted"),
    ],
)
def test_index_errors_name_the_field(
    idle_server: Server, body: dict[str, Any], fragment: str
) -> None:
    """A bad filter field, sort or page of index is a 400 naming it."""
    with idle_server.client() as http:
        check_error(index(http, **body), 400, fragment)


def test_update_status_goes_through_the_lifecycle(server: Server) -> None:
    """A status change is the lifecycle's step: a finished task cannot change, and pending cannot
    be set."""
    with server.connect() as conn:  # due in an hour: it stays queued
        queued = {"task_id": conn.submit("Sleep", {"seconds": 60}, run_at=timedelta(hours=1)).id}
    with server.client() as http:
        r = http.put(f"/v2/task/update/{queued['task_id']}", json={"status": "cancelled"})
        assert r.json()["status"] == "cancelled"
        # finished: no way back, and nothing changes
        check_error(
            http.put(f"/v2/task/update/{queued['task_id']}", json={"status": "completed"}),
            400,
            "cannot go from cancelled to succeeded",
        )
        check_error(
            http.put(f"/v2/task/update/{queued['task_id']}", json={"status": "pending"}),
            400,
            "'pending' cannot be set",
        )
        assert http.get(f"/v2/task/view/{queued['task_id']}").json()["status"] == "cancelled"

        running = create(http, handler="Sleep", request={"seconds": 60})
        deadline = time.monotonic() + 10
        while http.get(f"/v2/task/view/{running['task_id']}").json()["status"] != "running":
            assert time.monotonic() < deadline
            time.sleep(0.05)
        r = http.put(f"/v2/task/update/{running['task_id']}", json={"status": "cancelled"})
        assert r.json()["status"] == "cancelling"
        while http.get(f"/v2/task/view/{running['task_id']}").json()["status"] != "cancelled":
            assert time.monotonic() < deadline
            time.sleep(0.05)

        done = create(http, handler="Sleep", request={"seconds": 60})
        r = http.put(
            f"/v2/task/update/{done['task_id']}",
            json={"status": "completed", "response": {"by": "hand"}},
        )
        assert (r.json()["status"], r.json()["response"]) == ("completed", {"by": "hand"})


def test_update_fields(idle_server: Server) -> None:
    """request and entity_id change while the task is pending, are validated, and are refused
    afterwards."""
    with idle_server.client() as http:
        task = create(http, handler="Sleep", request={"seconds": 1})
        url = f"/v2/task/update/{task['task_id']}"
        r = http.put(url, json={"request": {"seconds": 3}, "entity_id": "e9"})
        assert (r.json()["request"], r.json()["entity_id"]) == ({"seconds": 3.0}, "e9")
        check_error(http.put(url, json={"request": {"seconds": "x"}}), 400, "Sleep: seconds:")
        check_error(
            http.put(url, json={"handler": "Other"}), 400, "handler: Extra inputs are not permitted"
        )
        check_error(http.put(url, json={}), 400, "the body changes nothing")
        check_error(http.put("/v2/task/update/" + "0" * 32, json={"status": "cancelled"}), 404)
        http.put(url, json={"status": "cancelled"})
        check_error(
            http.put(url, json={"request": {"seconds": 5}}),
            400,
            "request and entity_id change only while the task is pending; it is cancelled",
        )
        assert http.get(f"/v2/task/view/{task['task_id']}").json()["request"] == {"seconds": 3.0}


def test_delete_with_subtasks_needs_force(idle_server: Server) -> None:
    """Without force a task with subtasks is a 409 listing them and nothing is deleted; with force
    the tree is."""
    with idle_server.connect() as conn:
        parent = conn.submit("Sleep", {})
        kids = [conn.submit("Sleep", {}, parent=parent) for _ in range(2)]
        grandkid = conn.submit("Sleep", {}, parent=kids[0])
    with idle_server.client() as http:
        r = http.delete(f"/v2/task/delete/{parent.id}")
        body = check_error(r, 409, "the task has 2 subtasks")
        assert sorted(t["task_id"] for t in body["related"]) == sorted(k.id for k in kids)
        assert http.get(f"/v2/task/view/{parent.id}").status_code == 200  # nothing deleted

        r = http.delete(f"/v2/task/delete/{parent.id}", params={"force": "true"})
        assert r.status_code == 200
        assert set(r.json()["deleted"]) == {parent.id, grandkid.id, *(k.id for k in kids)}
        check_error(http.get(f"/v2/task/view/{parent.id}"), 404)
        check_error(http.delete(f"/v2/task/delete/{parent.id}"), 404)

        # deleted tasks stay as history: index returns them when asked
        assert index(http).json() == []
        history = index(http, historized=True).json()
        assert {t["task_id"] for t in history} == set(r.json()["deleted"])
        assert all(t["deleted_at"] and t["status"] == "cancelled" for t in history)


def test_delete_a_running_task_cancels_it_first(server: Server) -> None:
    """Deleting a running task stops it; it stays in the history as cancelled."""
    with server.connect() as conn:
        task = conn.submit("Sleep", {"seconds": 60})
        deadline = time.monotonic() + 10
        while conn.get(task.id).state is not TaskState.RUNNING:
            assert time.monotonic() < deadline
            time.sleep(0.05)
        with server.client() as http:
            assert http.delete(f"/v2/task/delete/{task.id}").json() == {"deleted": [task.id]}
            deadline = time.monotonic() + 10
            while (h := index(http, historized=True).json()) and h[0]["status"] != "cancelled":
                assert time.monotonic() < deadline
                time.sleep(0.05)


def test_v2_needs_the_right_scopes(idle_server: Server) -> None:
    """A read-only client may index but not create or delete (403); no token is a 401."""
    reader = idle_server.new_client("ro", "tasks:read")
    with idle_server.client(idle_server.token(*reader)) as http:
        assert index(http).status_code == 200
        check_error(http.post("/v2/task/create", json={"handler": "Sleep"}), 403)
        check_error(http.delete("/v2/task/delete/x"), 403)
    assert httpx.post(f"{idle_server.url}/v2/task/index", json={}).status_code == 401
