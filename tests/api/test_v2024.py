"""The v2024 task-status endpoints over real HTTP: every endpoint, status code and paging edge."""

from __future__ import annotations

import logging
import socket
import time
from datetime import timedelta
from typing import Any

import httpx
import pytest

from taskstatus.api.schemas import ErrorResponseDto, TaskStatus
from taskstatus.model import TaskState
from taskstatus.service import utcnow
from tests.api.conftest import Server

PATCH = {"Content-Type": "application/json-patch+json"}


def check_task(doc: dict[str, Any]) -> None:
    """Every field the seed marks required is there with its type; enums hold seed values."""
    TaskStatus.model_validate(doc, strict=False)
    assert isinstance(doc["percentComplete"], int) and not isinstance(doc["percentComplete"], bool)
    assert isinstance(doc["messages"], list) and isinstance(doc["returns"], list)
    assert isinstance(doc["attributes"], dict)
    assert isinstance(doc["launcher"], str) and isinstance(doc["description"], str)
    assert doc["type"] in ("QUARTZ", "QPOC", "QUEUED_TASK")
    assert doc["completionStatus"] in (
        None,
        "SUCCESS",
        "WARNING",
        "ERROR",
        "TERMINATED",
        "TEMPERROR",
    )
    for m in doc["messages"]:
        assert m["type"] in ("INFO", "WARN", "ERROR") and isinstance(m["key"], str)
    assert isinstance(doc["taskDefinitionSummary"]["parentName"], str)


def check_error(r: httpx.Response, status: int, *fragments: str) -> dict[str, Any]:
    """An ErrorResponseDto with the status, a trackingId (also in the header) and the causes."""
    assert r.status_code == status, r.text
    assert r.headers["content-type"] == "application/json"
    body = r.json()
    ErrorResponseDto.model_validate(body)
    assert len(body["trackingId"]) == 32
    assert r.headers["X-Tracking-Id"] == body["trackingId"]
    assert body["messages"][0]["locale"] == "en-US"
    causes = " ".join(c["text"] for c in body.get("causes", []))
    for fragment in fragments:
        assert fragment in causes, causes
    return dict(body)


def wait_until(predicate: Any, timeout: float = 15) -> None:
    """Wait (up to `timeout` seconds) until `predicate()` is true."""
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(0.02)


# --- reading ------------------------------------------------------------------------------


def test_get_task_status(server: Server) -> None:
    """GET of a finished task is its whole TaskStatus document: target, definition, result."""
    with server.connect() as conn:
        task = conn.submit(
            "Cloud Account Aggregation",
            {"accounts": 120, "page_delay": 0.01},
            target={"id": "src-1", "type": "APPLICATION", "name": "AD"},
        )
        conn.wait(task.id, 20)
    with server.client() as http:
        r = http.get(f"/v2024/task-status/{task.id}")
    assert r.status_code == 200
    assert r.headers["content-type"] == "application/json"
    doc = r.json()
    check_task(doc)
    assert doc["id"] == task.id
    assert doc["completionStatus"] in ("SUCCESS", "WARNING")
    assert doc["percentComplete"] == 100
    assert doc["target"] == {"id": "src-1", "type": "APPLICATION", "name": "AD"}
    assert doc["attributes"]["total"] == 120
    assert doc["returns"][0] == {"name": "Accounts scanned", "attributeName": "total"}
    assert doc["taskDefinitionSummary"]["uniqueName"] == "Cloud Account Aggregation"
    assert doc["taskDefinitionSummary"]["executor"] == "taskstatus.demo.aggregate_accounts"
    assert "accounts" in doc["taskDefinitionSummary"]["arguments"]
    assert doc["launched"] and doc["completed"] and doc["created"].endswith("Z")


def test_get_shows_every_change(idle_server: Server) -> None:
    """Repeated GETs of a task reflect each change (the rendered body is reused only while
    the task is the same)."""
    with idle_server.connect() as conn:
        task = conn.submit("Sleep", {})
    with idle_server.client() as http:
        url = f"/v2024/task-status/{task.id}"
        first = http.get(url).json()
        assert http.get(url).json() == first
        http.patch(url, headers=PATCH, json=[{"op": "replace", "path": "/progress", "value": "x"}])
        assert http.get(url).json()["progress"] == "x"
        with idle_server.connect() as conn:
            conn.cancel(task.id)
        assert http.get(url).json()["completionStatus"] == "TERMINATED"


def test_get_unknown_task_is_404(server: Server) -> None:
    """GET of an id no task has is a 404 ErrorResponseDto naming the id."""
    with server.client() as http:
        check_error(http.get("/v2024/task-status/" + "0" * 32), 404, "no task with id")


def test_pending_tasks_and_head(idle_server: Server) -> None:
    """pending-tasks lists the unfinished tasks oldest first with X-Total-Count, and HEAD gives the
    same headers."""
    with idle_server.connect() as conn:
        # one batch shares a created time: the id breaks the tie
        tasks = sorted(
            conn.submit_many("Sleep", [{"seconds": i} for i in range(5)]), key=lambda t: t.id
        )
        done = conn.submit("Sleep", {})
        conn.cancel(done.id)
    with idle_server.client() as http:
        r = http.get("/v2024/task-status/pending-tasks", params={"count": "true"})
        assert r.status_code == 200
        assert [t["id"] for t in r.json()] == [t.id for t in tasks]  # oldest first
        assert r.headers["X-Total-Count"] == "5"
        for doc in r.json():
            check_task(doc)
            assert doc["completionStatus"] is None

        page = http.get(
            "/v2024/task-status/pending-tasks", params={"offset": 1, "limit": 2, "count": True}
        )
        assert [t["id"] for t in page.json()] == [t.id for t in tasks[1:3]]
        assert page.headers["X-Total-Count"] == "5"
        assert "X-Total-Count" not in http.get("/v2024/task-status/pending-tasks").headers

        head = http.head("/v2024/task-status/pending-tasks", params={"count": "true"})
        assert head.status_code == 200
        assert head.content == b""
        assert head.headers["X-Total-Count"] == "5"


def test_header_name_is_exactly_x_total_count(idle_server: Server) -> None:
    """The SDK reads headers from a case-sensitive dict: the bytes on the wire matter."""
    with idle_server.client() as http:
        r = http.get("/v2024/task-status", params={"count": "true"})
    assert (b"X-Total-Count", b"0") in r.headers.raw


@pytest.mark.parametrize("path", ["/v2024/task-status/pending-tasks", "/v2024/task-status"])
def test_empty_lists_are_200_and_an_array(idle_server: Server, path: str) -> None:
    """Both lists answer an empty array, not a 404, when nothing matches."""
    with idle_server.client() as http:
        r = http.get(path, params={"count": "true"})
    assert (r.status_code, r.json(), r.headers["X-Total-Count"]) == (200, [], "0")


@pytest.mark.parametrize(
    ("params", "fragment"),
    [
        ({"limit": 251}, "limit: Input should be less than or equal to 250"),
        ({"limit": -1}, "limit: Input should be greater than or equal to 0"),
        ({"offset": -1}, "offset: Input should be greater than or equal to 0"),
        ({"limit": "ten"}, "limit: Input should be a valid integer"),
        ({"count": "maybe"}, "count: Input should be a valid boolean"),
    ],
)
@pytest.mark.parametrize("path", ["/v2024/task-status/pending-tasks", "/v2024/task-status"])
def test_bad_paging_is_400(
    idle_server: Server, path: str, params: dict[str, Any], fragment: str
) -> None:
    """An offset or limit out of range is a 400 naming it."""
    with idle_server.client() as http:
        check_error(http.get(path, params=params), 400, fragment)


def test_paging_edges(idle_server: Server) -> None:
    """An offset past the end and a limit of 0 give no tasks but the full count; limit=250 is
    allowed."""
    with idle_server.connect() as conn:
        for t in conn.submit_many("Sleep", [{}] * 3):
            conn.cancel(t.id)
    with idle_server.client() as http:
        beyond = http.get("/v2024/task-status", params={"offset": 10, "count": True})
        assert (beyond.json(), beyond.headers["X-Total-Count"]) == ([], "3")
        none = http.get("/v2024/task-status", params={"limit": 0, "count": True})
        assert (none.json(), none.headers["X-Total-Count"]) == ([], "3")
        assert len(http.get("/v2024/task-status", params={"limit": 250}).json()) == 3


def test_task_status_list_filters_and_sorters(idle_server: Server) -> None:
    """The completed-task list applies the filters and sorters of the seeds' grammar."""
    with idle_server.connect() as conn:
        a = conn.submit("Sleep", {}, target={"id": "src-a"})
        b = conn.submit("Sleep", {}, target={"id": "src-b"})
        c = conn.submit("Sleep", {}, target={"id": "src-a"})
        pending = conn.submit("Sleep", {}, target={"id": "src-a"})
        for t in (a, b, c):
            conn.cancel(t.id)
    with idle_server.client() as http:

        def ids(**params: Any) -> list[str]:
            r = http.get("/v2024/task-status", params=params)
            assert r.status_code == 200, r.text
            return [t["id"] for t in r.json()]

        assert ids() == [c.id, b.id, a.id]  # completed only, newest first
        assert ids(sorters="created") == [a.id, b.id, c.id]
        assert ids(filters='sourceId eq "src-a"', sorters="created") == [a.id, c.id]
        assert ids(filters=f'id in ("{a.id}", "{b.id}")', sorters="-created") == [b.id, a.id]
        assert ids(filters='completionStatus eq "TERMINATED"', sorters="created") == [
            a.id,
            b.id,
            c.id,
        ]
        assert ids(filters='completionStatus in ("SUCCESS", "ERROR")') == []
        assert ids(
            filters='type eq "QUEUED_TASK" and not sourceId eq "src-b"', sorters="created"
        ) == [a.id, c.id]
        # what the newest SDK sends for pending tasks
        assert ids(filters="completionStatus isnull") == [pending.id]
        r = http.get(
            "/v2024/task-status", params={"filters": "completionStatus isnull", "count": "true"}
        )
        assert r.headers["X-Total-Count"] == "1"


@pytest.mark.parametrize(
    ("params", "fragment"),
    [
        ({"filters": 'name eq "x"'}, "filters: unsupported field 'name'"),
        ({"filters": 'id gt "x"'}, "operator 'gt' is not supported on 'id'"),
        ({"filters": 'completionStatus eq "NOPE"'}, "'NOPE' is not a value of 'completionStatus'"),
        (
            {"filters": 'id eq "a" and (type eq "QUARTZ"'},
            "expected ')' but found the end at column 32",
        ),
        ({"filters": 'id eq "a'}, "unterminated string at column 7"),
        ({"sorters": "name"}, "sorters: cannot sort by 'name'"),
        ({"sorters": "created,"}, "a sorter is missing after ','"),
    ],
)
def test_bad_filters_and_sorters_are_400(
    idle_server: Server, params: dict[str, str], fragment: str
) -> None:
    """A filter or sorter the grammar refuses is a 400 saying where."""
    with idle_server.client() as http:
        check_error(http.get("/v2024/task-status", params=params), 400, fragment)


def test_tasks_past_retention_are_not_returned(idle_server: Server) -> None:
    """A task older than the retention window is a 404 and left out of the lists."""
    with idle_server.connect() as conn:
        old = conn.submit("Sleep", {})
        new = conn.submit("Sleep", {})
        for t in (old, new):
            conn.cancel(t.id)
    idle_server.sql(
        "UPDATE tasks SET created = ? WHERE id = ?", utcnow() - timedelta(days=91), old.id
    )
    with idle_server.client() as http:
        check_error(http.get(f"/v2024/task-status/{old.id}"), 404)
        assert [t["id"] for t in http.get("/v2024/task-status").json()] == [new.id]


# --- PATCH ---------------------------------------------------------------------------------------


def test_patch_clears_a_queued_task(idle_server: Server) -> None:
    """A PATCH setting completionStatus and completed on a queued task clears it, with the added
    message."""
    with idle_server.connect() as conn:
        task = conn.submit("Sleep", {})
    ops = [
        {"op": "test", "path": "/completionStatus", "value": None},
        {"op": "replace", "path": "/completionStatus", "value": "ERROR"},
        {"op": "replace", "path": "/completed", "value": "2024-05-01T10:00:00.000Z"},
        {
            "op": "add",
            "path": "/messages/-",
            "value": {
                "type": "WARN",
                "localizedText": {"locale": "en-US", "message": "cleared by hand"},
                "key": "manual",
                "parameters": None,
            },
        },
        {"op": "add", "path": "/attributes/reason", "value": "stuck"},
    ]
    with idle_server.client() as http:
        r = http.patch(f"/v2024/task-status/{task.id}", json=ops, headers=PATCH)
    assert r.status_code == 200, r.text
    doc = r.json()
    check_task(doc)
    assert doc["completionStatus"] == "ERROR"
    assert doc["completed"] == "2024-05-01T10:00:00.000Z"
    assert doc["messages"][-1]["localizedText"]["message"] == "cleared by hand"
    assert doc["attributes"] == {"reason": "stuck"}
    with idle_server.connect() as conn:
        assert conn.get(task.id).state is TaskState.FAILED


def test_patch_clears_a_running_task_and_stops_its_worker(server: Server) -> None:
    """Clearing a running task by PATCH stops its handler, and nothing the worker does later
    changes it."""
    with server.connect() as conn:
        task = conn.submit("Sleep", {"seconds": 60})
        wait_until(lambda: conn.get(task.id).state is TaskState.RUNNING)
        with server.client() as http:
            r = http.patch(
                f"/v2024/task-status/{task.id}",
                headers=PATCH,
                json=[{"op": "replace", "path": "/completionStatus", "value": "TERMINATED"}],
            )
        assert r.status_code == 200, r.text
        assert r.json()["completionStatus"] == "TERMINATED"
        assert r.json()["completed"] is not None
        # the worker's heartbeat sees the task is no longer its own and stops the handler;
        # nothing it does afterwards changes the cleared task
        time.sleep(2.5)
        after = conn.get(task.id)
    assert after.state is TaskState.CANCELLED
    assert after.lease_owner is None
    assert all(m.key != "taskstatus.cancelled" for m in after.messages)


def test_patch_progress_of_a_pending_task(idle_server: Server) -> None:
    """A PATCH of progress and percentComplete changes them and leaves the task pending."""
    with idle_server.connect() as conn:
        task = conn.submit("Sleep", {})
    with idle_server.client() as http:
        r = http.patch(
            f"/v2024/task-status/{task.id}",
            headers=PATCH,
            json=[
                {"op": "replace", "path": "/progress", "value": "half way"},
                {"op": "replace", "path": "/percentComplete", "value": 50},
            ],
        )
    assert (r.json()["progress"], r.json()["percentComplete"], r.json()["completionStatus"]) == (
        "half way",
        50,
        None,
    )


@pytest.mark.parametrize(
    ("ops", "status", "fragment"),
    [
        ([{"op": "replace", "path": "/id", "value": "x"}], 400, "/id: id cannot be changed"),
        (
            [{"op": "replace", "path": "/type", "value": "QUARTZ"}],
            400,
            "/type: type cannot be changed",
        ),
        ([{"op": "replace", "path": "/created", "value": "2020-01-01T00:00:00Z"}], 400, "/created"),
        ([{"op": "remove", "path": "/launcher"}], 400, "/launcher: launcher cannot be changed"),
        ([{"op": "replace", "path": "/target/id", "value": "x"}], 400, "/target/id"),
        (
            [{"op": "replace", "path": "/completionStatus", "value": "DONE"}],
            400,
            "/completionStatus: 'DONE' is not a completion status",
        ),
        (
            [{"op": "replace", "path": "/percentComplete", "value": 140}],
            400,
            "/percentComplete: must be an integer from 0 to 100",
        ),
        ([{"op": "replace", "path": "/percentComplete", "value": "50"}], 400, "/percentComplete"),
        (
            [{"op": "replace", "path": "/completed", "value": "2024-01-01T00:00:00Z"}],
            400,
            "/completed: set completionStatus (with completed) to clear a pending task",
        ),
        (
            [
                {"op": "replace", "path": "/completionStatus", "value": "SUCCESS"},
                {"op": "replace", "path": "/completed", "value": "yesterday"},
            ],
            400,
            "/completed: must be an ISO 8601 date-time",
        ),
        ([{"op": "remove", "path": "/messages/0"}], 400, "messages can only be appended"),
        (
            [{"op": "add", "path": "/messages/-", "value": {"type": "LOUD"}}],
            400,
            "a message type must be INFO, WARN or ERROR",
        ),
        (
            [{"op": "replace", "path": "/attributes", "value": [1]}],
            400,
            "/attributes: must be an object",
        ),
        (
            [
                {"op": "test", "path": "/progress", "value": "elsewhere"},
                {"op": "replace", "path": "/progress", "value": "changed"},
            ],
            400,
            "test failed",
        ),
        ([{"op": "replace", "path": "/nope/deeper", "value": 1}], 400, "nope cannot be changed"),
        ([{"op": "replace", "path": "/progress/x/y", "value": 1}], 400, ""),
        ([{"op": "jump", "path": "/progress"}], 400, "op must be one of"),
        ([{"op": "replace", "path": "/progress"}], 400, "replace needs a value"),
        ([{"path": "/progress", "value": 1}], 400, "op must be one of"),
        ([], 400, "the patch has no operations"),
        ({"op": "replace"}, 400, "the body must be a JSON array"),
    ],
)
def test_bad_patches_change_nothing(
    idle_server: Server, ops: Any, status: int, fragment: str
) -> None:
    """Each bad patch is a 400 naming the path (or the problem); the task stays as it was."""
    note = {"type": "INFO", "localizedText": {"locale": "en-US", "message": "first"}, "key": ""}
    with idle_server.connect() as conn, idle_server.client() as http:
        task = conn.submit("Sleep", {})
        r = http.patch(
            f"/v2024/task-status/{task.id}",
            headers=PATCH,
            json=[{"op": "add", "path": "/messages/-", "value": note}],
        )
        assert r.status_code == 200
        before = conn.get(task.id)
        r = http.patch(f"/v2024/task-status/{task.id}", json=ops, headers=PATCH)
        check_error(r, status, fragment)
        assert conn.get(task.id) == before


def test_patch_a_finished_task_status_is_refused(idle_server: Server) -> None:
    """Changing the completionStatus of a finished task is a 400, and the task stays as it was."""
    with idle_server.connect() as conn:
        task = conn.submit("Sleep", {})
        conn.cancel(task.id)
        before = conn.get(task.id)
        with idle_server.client() as http:
            r = http.patch(
                f"/v2024/task-status/{task.id}",
                headers=PATCH,
                json=[{"op": "replace", "path": "/completionStatus", "value": "SUCCESS"}],
            )
        check_error(r, 400, "/completionStatus: the task already ended as TERMINATED")
        assert conn.get(task.id) == before


def test_patch_media_type_and_json(idle_server: Server) -> None:
    """A PATCH must be JSON (json-patch+json or json): another media type is a 415, bad JSON a
    400."""
    with idle_server.connect() as conn:
        task = conn.submit("Sleep", {})
    with idle_server.client() as http:
        url = f"/v2024/task-status/{task.id}"
        check_error(
            http.patch(url, content=b"[]", headers={"Content-Type": "text/plain"}),
            415,
            "application/json-patch+json",
        )
        check_error(http.patch(url, content=b"[{", headers=PATCH), 400, "not valid JSON")
        ok = http.patch(
            url,
            json=[{"op": "replace", "path": "/progress", "value": "x"}],
            headers={"Content-Type": "application/json"},
        )
        assert ok.status_code == 200
        check_error(http.patch("/v2024/task-status/" + "f" * 32, json=[], headers=PATCH), 404)


def test_body_over_the_limit_is_refused_before_reading(store_url: str, tmp_path: Any) -> None:
    """A body over max_body_bytes is a 413, whether Content-Length says so or it streams in."""
    from tests.api.conftest import run_server, settings_for

    # No worker: the task's progress stays as submitted unless a refused PATCH changed it
    # (a worker's own "Slept 1 of 5 s" made this fail on a loaded machine).
    settings = settings_for(store_url, tmp_path, max_body_bytes=1000, concurrency=0)
    for srv in run_server(settings):
        with srv.connect() as conn:
            task = conn.submit("Sleep", {})
        big = [{"op": "replace", "path": "/progress", "value": "x" * 5000}]
        with srv.client() as http:
            check_error(
                http.patch(f"/v2024/task-status/{task.id}", json=big, headers=PATCH),
                413,
                "over 1000 bytes",
            )

            def chunks() -> Any:  # no Content-Length: counted while streamed
                yield b'[{"op": "replace", "path": "/progress", "value": "'
                for _ in range(10):
                    yield b"y" * 500
                yield b'"}]'

            r = http.patch(f"/v2024/task-status/{task.id}", content=chunks(), headers=PATCH)
            check_error(r, 413, "over 1000 bytes")
        with srv.connect() as conn:
            assert conn.get(task.id).progress is None


# --- headers, errors, docs ----------------------------------------------------------------------


def test_experimental_header_can_be_required(store_url: str, tmp_path: Any) -> None:
    """With require_experimental_header, v2024 calls without X-SailPoint-Experimental: true are a
    400."""
    from tests.api.conftest import run_server, settings_for

    for srv in run_server(settings_for(store_url, tmp_path, require_experimental_header=True)):
        with srv.client() as http:
            check_error(http.get("/v2024/task-status"), 400, "X-SailPoint-Experimental: true")
            check_error(
                http.get("/v2024/task-status", headers={"X-SailPoint-Experimental": "false"}), 400
            )
            ok = http.get("/v2024/task-status", headers={"X-SailPoint-Experimental": "true"})
            assert ok.status_code == 200


def test_the_header_is_optional_by_default(idle_server: Server) -> None:
    """By default v2024 calls need no X-SailPoint-Experimental header."""
    with idle_server.client() as http:
        assert http.get("/v2024/task-status").status_code == 200


def test_unexpected_errors_are_500_with_a_logged_tracking_id(
    idle_server: Server, caplog: pytest.LogCaptureFixture
) -> None:
    """An unexpected failure is a 500 ErrorResponseDto with no traceback, its tracking id in the
    log."""
    with idle_server.connect() as conn:
        task = conn.submit("Sleep", {})
    idle_server.sql("ALTER TABLE task_messages RENAME TO broken")
    with caplog.at_level(logging.ERROR, logger="taskstatus.api"), idle_server.client() as http:
        r = http.get(f"/v2024/task-status/{task.id}")
    body = check_error(r, 500)
    assert body["detailCode"] == "500.0 Internal Fault"
    assert "Traceback" not in r.text and "task_messages" not in r.text
    assert any(body["trackingId"] in rec.getMessage() for rec in caplog.records)


def test_a_500_keeps_the_connection_open(idle_server: Server) -> None:
    """After a 500 the server keeps the keep-alive connection: the next request on the same
    socket is answered (uvicorn closes it if the exception reaches it)."""
    with idle_server.connect() as conn:
        task = conn.submit("Sleep", {})
    idle_server.sql("ALTER TABLE task_messages RENAME TO broken")
    host, port = idle_server.url.removeprefix("http://").split(":")
    request = (
        f"GET /v2024/task-status/{task.id} HTTP/1.1\r\nHost: {host}\r\n"
        f"Authorization: Bearer {idle_server.token()}\r\n\r\n"
    ).encode()
    with socket.create_connection((host, int(port)), timeout=10) as sock:
        answers = []
        for _ in range(2):
            sock.sendall(request)
            answers.append(_read_response(sock))
    assert [a.split(b" ", 2)[1] for a in answers] == [b"500", b"500"]


def _read_response(sock: socket.socket) -> bytes:
    """One HTTP/1.1 response with a Content-Length, read off `sock`."""
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        assert chunk, "the server closed the connection"
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    length = next(
        int(line.split(b":", 1)[1])
        for line in head.split(b"\r\n")
        if line.lower().startswith(b"content-length:")
    )
    while len(body) < length:
        chunk = sock.recv(65536)
        assert chunk, "the server closed the connection"
        body += chunk
    return head


def test_unknown_route_and_method(idle_server: Server) -> None:
    """An unknown path is a 404 and an unsupported method on a task a 405, both as
    ErrorResponseDto."""
    with idle_server.client() as http:
        check_error(http.get("/v2024/nothing-here"), 404)
        check_error(http.delete("/v2024/task-status/" + "a" * 32), 405)


def test_tracking_id_is_in_the_log_line_of_a_400(
    idle_server: Server, caplog: pytest.LogCaptureFixture
) -> None:
    """The tracking id of a 400 is in the server's log line of that request."""
    with caplog.at_level(logging.INFO, logger="taskstatus.api"), idle_server.client() as http:
        body = check_error(http.get("/v2024/task-status", params={"filters": "x"}), 400)
    assert any(
        body["trackingId"] in rec.getMessage() and "400" in rec.getMessage()
        for rec in caplog.records
    )


def test_openapi_and_docs(idle_server: Server) -> None:
    """/openapi.json describes the seeds' operations and schemas, and /docs is served."""
    spec = httpx.get(f"{idle_server.url}/openapi.json").json()
    paths = spec["paths"]
    assert set(paths["/v2024/task-status/pending-tasks"]) >= {"get", "head"}
    assert set(paths["/v2024/task-status/{id}"]) >= {"get", "patch"}
    assert "/oauth/token" in paths
    assert "TaskStatus" in spec["components"]["schemas"]
    assert "ErrorResponseDto" in spec["components"]["schemas"]
    assert httpx.get(f"{idle_server.url}/docs").status_code == 200


def test_health_and_ready(idle_server: Server) -> None:
    """/health and /ready answer ok and ready while the database is up."""
    assert httpx.get(f"{idle_server.url}/health").json() == {"status": "ok"}
    assert httpx.get(f"{idle_server.url}/ready").json() == {"status": "ready"}
