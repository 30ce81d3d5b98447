"""Hostile input over real HTTP, on both backends: each class of input the issue lists gets a
4xx in its dialect's error shape, changes nothing stored, and leaves the connection usable
(or the response says Connection: close). Raw sockets, so that nothing is cleaned up first."""

from __future__ import annotations

import base64
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from taskstatus import limits
from taskstatus.api.jira import JiraErrors
from taskstatus.api.schemas import ErrorResponseDto
from tests.api.conftest import Server, run_server, settings_for
from tests.api.hostile import RawConnection, RawResponse, request, snapshot, wait_closed
from tests.conftest import BACKENDS

pytestmark = pytest.mark.timeout(120)

PATCH = "application/json-patch+json"
BIG = 2**64


@pytest.fixture(scope="module", params=BACKENDS)
def srv(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Server]:
    """One server per backend for the module, without workers (nothing changes by itself),
    with short header and body deadlines, and a task to aim at."""
    tmp = tmp_path_factory.mktemp("hostile")
    if request.param == "sqlite":
        url = f"sqlite:///{tmp}/tasks.db"
    else:
        url = request.getfixturevalue("postgres").url(
            request.getfixturevalue("postgres").create_database()
        )
    settings = settings_for(
        url,
        tmp,
        concurrency=0,
        header_timeout=1.0,
        body_timeout=1.0,
        auth_failure_burst=10_000,  # bad credentials are sent on purpose here
        keep_alive=3,  # a connection left half-sent is closed within seconds
    )
    for server in run_server(settings):
        with server.client() as http:
            created = http.post(
                "/v2/task/create", json={"handler": "Sleep", "request": {"seconds": 1}}
            )
            assert created.status_code == 201, created.text
        yield server


def task_id(server: Server) -> str:
    """The id of the first task the v2 index lists."""
    with server.client() as http:
        return str(http.post("/v2/task/index", json={}).json()[0]["task_id"])


def auth(server: Server) -> dict[str, str]:
    """The Authorization header of the admin's bearer token."""
    return {"Authorization": f"Bearer {server.token()}"}


def check_shape(path: str, r: RawResponse) -> Any:
    """The body is the error shape of the dialect `path` belongs to."""
    assert r.headers["content-type"] == "application/json", r.headers
    body = r.json()
    if path.startswith("/rest/api/"):
        JiraErrors.model_validate(body)
        assert body["errorMessages"]
    elif path.startswith("/oauth/token"):
        assert isinstance(body["error"], str) and body["error_description"]
    elif r.status != 401:
        ErrorResponseDto.model_validate(body)
    return body


def text_of(body: Any) -> str:
    """The error text of an error body in any dialect's shape."""
    if "errorMessages" in body:
        return " ".join(body["errorMessages"])
    parts = [body.get("error_description", "")] + [c["text"] for c in body.get("causes") or []]
    return " ".join(parts)


def refused(
    server: Server,
    raw: bytes,
    status: int,
    *fragments: str,
    path: str | None = None,
) -> RawResponse:
    """Send `raw` on a fresh connection: the answer is `status` in the dialect's shape with
    `fragments` in its message, nothing stored changed, and the connection is usable after
    it unless the response said Connection: close (then the server closed it)."""
    before = snapshot(server)
    target = path or raw.split(b" ", 2)[1].decode("latin-1")
    with RawConnection(server) as conn:
        conn.send(raw)
        r = conn.response()
        assert r.status == status, (r.status, r.body)
        body = check_shape(target, r)
        for fragment in fragments:
            assert fragment in text_of(body), body
        if r.closes:
            assert conn.closed_by_server()
        else:
            assert conn.still_usable(), "the connection broke after the error"
    assert snapshot(server) == before
    return r


def get(path: str, headers: dict[str, str]) -> bytes:
    """The raw response to a GET of `path` with `headers`."""
    return request("GET", path, headers)


def send_json(method: str, path: str, headers: dict[str, str], raw_json: bytes | str) -> bytes:
    """The raw response to `method` on `path` with a JSON body given as raw bytes or text."""
    body = raw_json.encode() if isinstance(raw_json, str) else raw_json
    return request(method, path, {**headers, "Content-Type": "application/json"}, body)


# --- filters and sorters ----------------------------------------------------------------------

FILTER_LIMITS = [
    ("(" * 17 + 'id eq "a"' + ")" * 17, "filter-depth"),
    ("not " * 17 + 'id eq "a"', "filter-depth"),
    (" and ".join(['id eq "a"'] * 65), "filter-terms"),
    (" or ".join(['id eq "a"'] * 65), "filter-terms"),
    ("id in (" + ",".join(['"a"'] * 257) + ")", "filter-values"),
    ('id eq "' + "a" * limits.MAX_FILTER_LENGTH + '"', "filter-length"),
    ("(" * 2100 + 'id eq "a"' + ")" * 2100, "filter-length"),
]


@pytest.mark.parametrize(("text", "name"), FILTER_LIMITS)
def test_filter_past_a_limit_is_a_400_naming_it(srv: Server, text: str, name: str) -> None:
    """A filter nested, chained or listed past a limit: 400 naming the limit."""
    from urllib.parse import quote

    path = "/v2024/task-status?filters=" + quote(text)
    refused(srv, get(path, auth(srv)), 400, f"limit: {name} =")


def test_sorters_past_the_limit_are_a_400_naming_it(srv: Server) -> None:
    """Nine sorters (or thousands) are refused with the sorters limit in the message."""
    for count in (limits.MAX_SORTERS + 1, 1000):
        path = "/v2024/task-status?sorters=" + ",".join(["created"] * count)
        refused(srv, get(path, auth(srv)), 400, "limit: sorters = 8")


def test_filters_at_the_limits_still_run(srv: Server) -> None:
    """The deepest, longest filters the limits allow run on the database (200)."""
    from urllib.parse import quote

    cases = [
        "(" * 8 + "not " * 7 + 'id eq "a"' + ")" * 8,
        " or ".join(['not (id eq "a" and percentComplete gt -1)'] * 32),
        "id in (" + ",".join(['"a"'] * 256) + ")",
    ]
    with RawConnection(srv) as conn:
        for text in cases:
            conn.send(get("/v2024/task-status?filters=" + quote(text), auth(srv)))
            r = conn.response()
            assert r.status == 200, r.body


# --- date-times ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "value",
    ["9999-12-31T23:59:59-23:59", "0001-01-01T00:00:00+23:59", "9999-12-31T23:59:59.9999Z"],
)
def test_datetimes_at_the_calendar_edges(srv: Server, value: str) -> None:
    """Date-times that overflow in UTC (or at its very end): 400 in every dialect."""
    from urllib.parse import quote

    tid, h = task_id(srv), auth(srv)
    if not value.endswith("Z"):
        refused(srv, get("/v2024/task-status?filters=" + quote(f"created gt {value}"), h), 400)
        patch = [
            {"op": "replace", "path": "/completionStatus", "value": "SUCCESS"},
            {"op": "replace", "path": "/completed", "value": value},
        ]
        raw = request(
            "PATCH",
            f"/v2024/task-status/{tid}",
            {**h, "Content-Type": PATCH},
            json.dumps(patch).encode(),
        )
        refused(srv, raw, 400)
    body = json.dumps({"filter": {"created_at": value}})
    refused(srv, send_json("POST", "/v2/task/index", h, body), 400, "created_at")


# --- integers -----------------------------------------------------------------------------------


def test_integers_beyond_64_bits(srv: Server) -> None:
    """Integers past 64 bits in paging, filters and JSON bodies: 400, nothing stored."""
    tid, h = task_id(srv), auth(srv)
    for path in (
        f"/v2024/task-status?offset={BIG}",
        f"/v2024/task-status?limit={BIG}",
        f"/v2024/task-status/pending-tasks?offset={BIG}",
        f"/v2024/task-status?offset={limits.MAX_OFFSET + 1}",
        f"/v2024/task-status?filters=percentComplete%20gt%20{BIG}",
        f"/v2024/task-status?filters=priority%20in%20(1,{-BIG})",
    ):
        refused(srv, get(path, h), 400)
    for body in (
        {"page": BIG},
        {"page": 2**62},
        {"per-page": BIG},
        {"filter": {"request": {"n": BIG}}},
    ):
        refused(srv, send_json("POST", "/v2/task/index", h, json.dumps(body)), 400)
    refused(
        srv,
        send_json(
            "POST", "/v2/task/create", h, json.dumps({"handler": "Sleep", "request": {"n": BIG}})
        ),
        400,
        "64-bit",
    )
    refused(
        srv,
        send_json("PUT", f"/v2/task/update/{tid}", h, json.dumps({"response": {"n": -BIG}})),
        400,
        "64-bit",
    )
    for patch in (
        [{"op": "replace", "path": "/percentComplete", "value": BIG}],
        [{"op": "add", "path": "/attributes/n", "value": BIG}],
    ):
        raw = request(
            "PATCH",
            f"/v2024/task-status/{tid}",
            {**h, "Content-Type": PATCH},
            json.dumps(patch).encode(),
        )
        refused(srv, raw, 400)


# --- text no backend can store ------------------------------------------------------------------


def test_nul_in_paths_and_query_strings(srv: Server) -> None:
    """%00 in a path or a query string: 400 in the path's dialect, before any lookup."""
    h = auth(srv)
    for path in (
        "/v2024/task-status/a%00b",
        "/beta/task-status/a%00b",
        "/v2/task/view/a%00b",
        "/rest/api/2/task/a%00b",
        "/v2024/task-status?filters=id%20eq%20%22a%00%22",
        "/v2024/task-status?sorters=created%00",
    ):
        refused(srv, get(path, h), 400, "NUL")


@pytest.mark.parametrize("bad", ["\\u0000", "\\ud800", "\\udfff x"])
def test_nul_and_lone_surrogates_in_json_bodies(srv: Server, bad: str) -> None:
    """NUL or a lone surrogate anywhere in a JSON body (values or keys): 400, nothing stored."""
    tid, h = task_id(srv), auth(srv)
    bodies = [
        ("POST", "/v2/task/create", f'{{"handler": "Sleep", "entity_id": "a{bad}"}}'),
        ("POST", "/v2/task/create", f'{{"handler": "Sleep", "request": {{"k{bad}": 1}}}}'),
        ("POST", "/v2/task/create", f'{{"handler": "Sl{bad}eep"}}'),
        ("POST", "/taskstatus/v1/tasks", f'{{"handler": "Sl{bad}eep"}}'),  # schemathesis found
        ("PUT", f"/v2/task/update/{tid}", f'{{"response": {{"a": ["{bad}"]}}}}'),
        ("POST", "/v2/task/index", f'{{"filter": {{"task_id": "{bad}"}}}}'),
    ]
    for method, path, body in bodies:
        refused(srv, send_json(method, path, h, body), 400)
    patch = f'[{{"op": "replace", "path": "/progress", "value": "x{bad}"}}]'
    raw = request(
        "PATCH", f"/v2024/task-status/{tid}", {**h, "Content-Type": PATCH}, patch.encode()
    )
    refused(srv, raw, 400)


@pytest.mark.parametrize("bad", ["a\x00b", "\ud800"])
def test_bad_text_in_credentials(srv: Server, bad: str) -> None:
    """NUL or a lone surrogate in a client id or secret, by form, JSON or HTTP Basic, on the
    token endpoint and the Jira routes: a 4xx with OAuth's error field or Jira's shape."""
    encoded = bad.encode("utf-8", "surrogatepass")
    basic = "Basic " + base64.b64encode(encoded + b":" + encoded).decode()
    form = b"grant_type=client_credentials&client_id=" + encoded.replace(b"\x00", b"%00")
    form += b"&client_secret=x"
    form_type = {"Content-Type": "application/x-www-form-urlencoded"}
    nul = "\x00" in bad
    # a form is decoded leniently (bad UTF-8 becomes U+FFFD): such a client id is unknown
    r = refused(srv, request("POST", "/oauth/token", form_type, form), 400 if nul else 401)
    assert r.json()["error"] == ("invalid_request" if nul else "invalid_client")
    escaped = json.dumps(bad)  # \u0000 or \ud800 escapes
    body = f'{{"grant_type": "client_credentials", "client_id": {escaped}, "client_secret": "x"}}'
    r = refused(srv, send_json("POST", "/oauth/token", {}, body), 400)
    assert r.json()["error"] == "invalid_request"
    # Basic credentials that are not UTF-8 are no credentials: a 400 (none given); with a
    # NUL they are nobody's: a 401
    grant = b"grant_type=client_credentials"
    headers = {**form_type, "Authorization": basic}
    r = refused(srv, request("POST", "/oauth/token", headers, grant), 401 if nul else 400)
    assert r.json()["error"] == ("invalid_client" if nul else "invalid_request")
    refused(srv, get("/rest/api/2/task/x", {"Authorization": basic}), 401)


def test_nul_in_a_header_is_a_400_that_closes(srv: Server) -> None:
    """A NUL byte in a header never reaches the app: a 400 ErrorResponseDto, then close."""
    raw = request("GET", "/v2024/task-status", auth(srv), raw_headers=b"X-Evil: a\x00b\r\n")
    r = refused(srv, raw, 400, "malformed")
    assert r.closes


# --- the error shape of each path ---------------------------------------------------------------


def test_jira_paths_answer_in_jira_shape(srv: Server) -> None:
    """Under /rest/api/: no route, the wrong method or version, a 413, all in Jira's shape."""
    h = auth(srv)
    refused(srv, get("/rest/api/2/nothing", h), 404)
    refused(srv, get("/rest/api/2/task", h), 404)
    refused(srv, request("DELETE", "/rest/api/2/task/x", h), 405)
    refused(srv, request("POST", "/rest/api/3/task/x", h, b""), 405)
    refused(srv, get("/rest/api/9/task/x", h), 400)
    big = b"x" * (srv.settings.max_body_bytes + 1)
    r = refused(srv, request("POST", "/rest/api/2/task/x/cancel", h, big), 413, "max-body-bytes")
    assert r.closes


def test_token_errors_always_carry_the_oauth_error_field(srv: Server) -> None:
    """Every error of /oauth/token, whatever the method or content type, has `error`."""
    grant = b"grant_type=client_credentials"
    cases = [
        (request("GET", "/oauth/token"), 405),
        (request("PUT", "/oauth/token", {}, grant), 405),
        (request("POST", "/oauth/token", {"Content-Type": "text/plain"}, b"\xff\xfe"), 400),
        (request("POST", "/oauth/token", {"Content-Type": "application/json"}, b"[1, 2]"), 400),
        (request("POST", "/oauth/token", {"Content-Type": "application/json"}, b"{"), 400),
        (request("POST", "/oauth/token", {"Content-Type": "multipart/form-data"}, b"--"), 400),
        (request("POST", "/oauth/token", {}, b"x" * (srv.settings.max_body_bytes + 1)), 413),
    ]
    for raw, status in cases:
        r = refused(srv, raw, status)
        assert r.json()["error"] in ("invalid_request", "unsupported_grant_type")


def test_token_rate_limit_answers_with_the_oauth_error_field(
    store_url: str, tmp_path: Path
) -> None:
    """The token endpoint's own 429 carries Retry-After and OAuth's error field."""
    for server in run_server(settings_for(store_url, tmp_path, token_rate_limit=0.01)):
        server.token()  # the one request the bucket holds
        raw = request(
            "POST", "/oauth/token", {"Content-Type": "application/x-www-form-urlencoded"}, b""
        )
        r = refused(server, raw, 429)
        assert r.json()["error"] == "temporarily_unavailable"
        assert int(r.headers["retry-after"]) >= 1


# --- sizes and slow clients ---------------------------------------------------------------------


def test_oversized_headers_are_a_431(srv: Server) -> None:
    """A header block past max_header_bytes: 431 naming the limit, then the server closes."""
    big = b"X-Big: " + b"a" * limits.MAX_HEADER_BYTES + b"\r\n"
    with RawConnection(srv) as conn:
        conn.send(request("GET", "/health", raw_headers=big))
        r = conn.response()
        assert r.status == 431
        assert "limit: max-header-bytes = 16384" in text_of(check_shape("/health", r))
        assert r.closes


def test_oversized_bodies_are_a_413_by_length_or_while_streamed(srv: Server) -> None:
    """A body past max_body_bytes: 413 whether Content-Length says so or it is chunked."""
    h = {**auth(srv), "Content-Type": "application/json"}
    size = srv.settings.max_body_bytes + 1
    refused(srv, request("POST", "/v2/task/create", h, b" " * size), 413, "max-body-bytes")
    chunk = b" " * 65536
    chunks = b"".join(b"%x\r\n%s\r\n" % (len(chunk), chunk) for _ in range(size // 65536 + 1))
    raw = request("POST", "/v2/task/index", {**h, "Transfer-Encoding": "chunked"}) + chunks
    refused(srv, raw + b"0\r\n\r\n", 413, "max-body-bytes")


@pytest.mark.parametrize("length", ["-1", "1e3", "10, 20", "0x10"])
def test_malformed_content_length_is_a_400(srv: Server, length: str) -> None:
    """A negative, non-numeric or doubled Content-Length: 400 and the connection closes."""
    raw = request("POST", "/v2/task/create", {**auth(srv), "Content-Length": length}, b"{}")
    assert refused(srv, raw, 400, "malformed").closes


def test_a_body_shorter_than_its_content_length_times_out(srv: Server) -> None:
    """Content-Length promises more than is sent: 408 within body_timeout, then close."""
    h = {**auth(srv), "Content-Type": "application/json", "Content-Length": "100"}
    r = refused(srv, request("POST", "/v2/task/create", h, b'{"handler": '), 408, "body-timeout")
    assert r.closes
    # a route that reads no body answers at once; the server then closes the connection
    # (the promised bytes never come) within the keep-alive timeout
    jira = request("POST", "/rest/api/2/task/x/cancel", {**auth(srv), "Content-Length": "10"}, b"{")
    with RawConnection(srv) as conn:
        conn.send(jira)
        assert conn.response().status == 404
        wait_closed(conn, within=30)


def test_slow_headers_get_a_408_and_idle_connections_are_closed(srv: Server) -> None:
    """Headers that never finish: 408 after header_timeout; a silent connection is closed."""
    with RawConnection(srv) as conn:
        conn.send(b"GET /health HTTP/1.1\r\nHost: x\r\n")  # no blank line: never finishes
        r = conn.response()
        assert r.status == 408
        assert "limit: header-timeout = 1" in text_of(check_shape("/health", r))
        assert conn.closed_by_server()
    with RawConnection(srv) as conn:
        assert wait_closed(conn, within=30) >= 0
    with RawConnection(srv) as conn:  # after a response, the next request has the same deadline
        assert conn.still_usable()
        conn.send(b"GET /health HTTP/1.1\r\n")
        assert conn.response().status == 408


def test_a_500_leaves_the_connection_usable_or_says_close(store_url: str, tmp_path: Path) -> None:
    """An unexpected fault (a table gone behind the server's back) is a 5xx in the path's
    dialect, after which the connection serves the next request, or the answer said
    Connection: close and the server closed it: never a silent reset."""
    for server in run_server(settings_for(store_url, tmp_path, concurrency=0)):
        token = auth(server)
        server.sql("ALTER TABLE tasks RENAME TO tasks_gone")
        for path in ("/v2/task/view/" + "0" * 32, "/rest/api/2/task/" + "0" * 32):
            with RawConnection(server) as raw:
                raw.send(get(path, token))
                r = raw.response()
                assert r.status >= 500, r.body
                check_shape(path, r)
                if r.closes:
                    assert raw.closed_by_server()
                else:
                    assert raw.still_usable(), "a 5xx without Connection: close broke it"
