"""OAuth2 client credentials, JWT validation, scopes, ownership and rate limits over real HTTP."""

from __future__ import annotations

import asyncio
import base64
import time
from pathlib import Path
from typing import Any

import httpx
import jwt
import pytest

from taskstatus.api.auth import KEY_SETTING
from taskstatus.store import make_store
from tests.api.conftest import Server, run_server, settings_for
from tests.api.test_v2024 import PATCH, check_error

TOKEN = "/oauth/token"


def stored_key(database: str) -> str:
    """The JWT signing key the server's first start stored in the database."""

    async def read() -> str:
        store = make_store(database)
        await store.open()
        try:
            return await store.setting(KEY_SETTING, lambda: pytest.fail("the key should exist"))
        finally:
            await store.close()

    return asyncio.run(read())


def claims(**overrides: Any) -> dict[str, Any]:
    """JWT claims the server would accept, with `overrides` applied."""
    now = int(time.time())
    base = {
        "iss": "taskstatus",
        "aud": "taskstatus",
        "sub": "x",
        "owner": "x",
        "scope": "tasks:read",
        "iat": now,
        "exp": now + 60,
    }
    return {**base, **overrides}


def test_token_from_form_fields(server: Server) -> None:
    """What the SailPoint SDK posts: a form with grant_type, client_id and client_secret."""
    r = httpx.post(
        server.url + TOKEN,
        data={
            "grant_type": "client_credentials",
            "client_id": server.client_id,
            "client_secret": server.client_secret,
        },
    )
    assert r.status_code == 200
    body = r.json()
    assert body["token_type"] == "bearer"
    assert body["expires_in"] == 3600
    assert set(body["scope"].split()) == {"tasks:read", "tasks:write", "tasks:admin"}
    assert r.headers["Cache-Control"] == "no-store"
    decoded = jwt.decode(
        body["access_token"],
        stored_key(server.database),
        algorithms=["HS256"],
        audience="taskstatus",
    )
    assert decoded["sub"] == server.client_id
    assert decoded["exp"] - decoded["iat"] == 3600


def test_token_with_basic_client_auth_and_json(server: Server) -> None:
    """The token endpoint takes HTTP Basic client authentication and JSON bodies, granting the
    scopes asked."""
    basic = base64.b64encode(f"{server.client_id}:{server.client_secret}".encode()).decode()
    r = httpx.post(
        server.url + TOKEN,
        data={"grant_type": "client_credentials", "scope": "tasks:read"},
        headers={"Authorization": f"Basic {basic}"},
    )
    assert r.status_code == 200
    assert r.json()["scope"] == "tasks:read"
    r = httpx.post(
        server.url + TOKEN,
        json={
            "grant_type": "client_credentials",
            "client_id": server.client_id,
            "client_secret": server.client_secret,
        },
    )
    assert r.status_code == 200


@pytest.mark.parametrize(
    ("data", "status", "error"),
    [
        ({"grant_type": "password"}, 400, "unsupported_grant_type"),
        ({}, 400, "unsupported_grant_type"),
        ({"grant_type": "client_credentials"}, 400, "invalid_request"),
        (
            {"grant_type": "client_credentials", "client_id": "nobody", "client_secret": "x"},
            401,
            "invalid_client",
        ),
        ({"grant_type": "client_credentials", "client_secret": "wrong"}, 401, "invalid_client"),
        ({"grant_type": "client_credentials", "scope": "tasks:delete"}, 400, "invalid_scope"),
    ],
)
def test_token_errors(server: Server, data: dict[str, str], status: int, error: str) -> None:
    """Bad token requests answer RFC 6749's error codes, and 400s also the ErrorResponseDto
    fields."""
    if data.get("client_secret") == "wrong" or data.get("scope"):
        data = {"client_id": server.client_id, "client_secret": server.client_secret, **data}
    r = httpx.post(server.url + TOKEN, data=data)
    assert r.status_code == status
    body = r.json()
    assert body["error"] == error
    assert body["error_description"]
    if status == 400:
        assert len(body["trackingId"]) == 32  # and the ErrorResponseDto fields
        assert body["detailCode"].startswith("400")


def test_no_token_bad_signature_expired_token_are_401(server: Server) -> None:
    """The seed's 401 body: {"error": "JWT validation failed: ..."}."""
    key = stored_key(server.database)
    cases = {
        None: "JWT validation failed: no bearer token",
        "Bearer": "JWT validation failed: ",
        "Token abc": "JWT validation failed: the Authorization header is not 'Bearer <token>'",
        "Bearer not.a.jwt": "JWT validation failed: invalid token",
        "Bearer "
        + jwt.encode(
            claims(sub=server.client_id),
            "another key, another server, the same length or more",
            algorithm="HS256",
        ): "JWT validation failed: signature verification failed",
        "Bearer "
        + jwt.encode(
            claims(sub=server.client_id, exp=int(time.time()) - 5), key, algorithm="HS256"
        ): "JWT validation failed: JWT is expired",
        "Bearer "
        + jwt.encode(
            claims(sub=server.client_id, aud="elsewhere"), key, algorithm="HS256"
        ): "JWT validation failed: invalid token",
        "Bearer "
        + jwt.encode(
            {k: v for k, v in claims(sub=server.client_id).items() if k != "scope"},
            key,
            algorithm="HS256",
        ): "JWT validation failed: missing claim scope",
        "Bearer "
        + jwt.encode(
            claims(sub=server.client_id), key, algorithm="HS512"
        ): "JWT validation failed: invalid token",
    }
    for header, message in cases.items():
        headers = {"Authorization": header} if header else {}
        r = httpx.get(server.url + "/v2024/task-status", headers=headers)
        assert r.status_code == 401, (header, r.text)
        assert r.json()["error"].startswith(message), (header, r.json())
        assert set(r.json()) == {"error"}


def test_a_token_without_the_scope_is_403(server: Server) -> None:
    """A token without the scope an operation needs is a 403 naming the scope it has."""
    reader = server.new_client("reader", "tasks:read")
    writer = server.new_client("writer", "tasks:write")
    with server.connect() as conn:
        task = conn.submit("Sleep", {"seconds": 0.01})
    ops = [{"op": "replace", "path": "/progress", "value": "x"}]
    with server.client(server.token(*reader)) as http:
        assert http.get("/v2024/task-status").status_code == 200
        check_error(
            http.patch(f"/v2024/task-status/{task.id}", json=ops, headers=PATCH),
            403,
            "needs the tasks:write scope; the token has tasks:read",
        )
    with server.client(server.token(*writer)) as http:
        check_error(http.get("/v2024/task-status"), 403, "needs the tasks:read scope")
    # a token narrowed to read cannot write, even for the admin client
    narrowed = server.token(scope="tasks:read")
    with server.client(narrowed) as http:
        check_error(http.patch(f"/v2024/task-status/{task.id}", json=ops, headers=PATCH), 403)


def test_clients_see_and_change_only_their_owners_tasks(idle_server: Server) -> None:
    """Client B cannot read, list or patch client A's task (404, as if it did not exist);
    the admin sees both."""
    a = idle_server.new_client("team-a", "tasks:read", "tasks:write")
    b = idle_server.new_client("team-b", "tasks:read", "tasks:write")
    with idle_server.connect() as conn:
        conn.submit("Sleep", {})  # launched by "admin"
    from taskstatus.connection import connect

    with connect(idle_server.database, launcher="team-a") as conn:
        mine = conn.submit("Sleep", {})
    ops = [{"op": "replace", "path": "/completionStatus", "value": "TERMINATED"}]
    with idle_server.client(idle_server.token(*b)) as http:
        check_error(http.get(f"/v2024/task-status/{mine.id}"), 404)
        check_error(http.patch(f"/v2024/task-status/{mine.id}", json=ops, headers=PATCH), 404)
        assert http.get("/v2024/task-status/pending-tasks").json() == []
        r = http.get(
            "/v2024/task-status", params={"filters": f'id eq "{mine.id}"', "count": "true"}
        )
        assert (r.json(), r.headers["X-Total-Count"]) == ([], "0")
    with idle_server.client(idle_server.token(*a)) as http:
        assert [t["id"] for t in http.get("/v2024/task-status/pending-tasks").json()] == [mine.id]
        assert (
            http.patch(f"/v2024/task-status/{mine.id}", json=ops, headers=PATCH).status_code == 200
        )
    with idle_server.client() as http:
        assert len(http.get("/v2024/task-status/pending-tasks").json()) == 1
        assert len(http.get("/v2024/task-status").json()) == 1


def test_a_revoked_client_is_refused(server: Server) -> None:
    """After `taskstatus clients revoke` the client gets no token and its old token is refused."""
    from taskstatus.cli import main

    client_id, secret = server.new_client("leaving", "tasks:read")
    token = server.token(client_id, secret)
    with pytest.raises(SystemExit) as done:
        main(["clients", "revoke", client_id, "--database", server.database])
    assert done.value.code == 0
    r = httpx.post(
        server.url + TOKEN,
        data={"grant_type": "client_credentials", "client_id": client_id, "client_secret": secret},
    )
    assert r.status_code == 401
    # tokens issued before stop working once the node's client cache (10 s) refreshes
    deadline = time.monotonic() + 15
    while (
        httpx.get(
            server.url + "/v2024/task-status", headers={"Authorization": f"Bearer {token}"}
        ).status_code
        == 200
    ):
        assert time.monotonic() < deadline
        time.sleep(0.5)
    r = httpx.get(server.url + "/v2024/task-status", headers={"Authorization": f"Bearer {token}"})
    assert r.json() == {"error": "JWT validation failed: the client was revoked"}


def test_rate_limit(store_url: str, tmp_path: Path) -> None:
    """Past the per-client rate limit requests are 429 with Retry-After; another client is not
    limited."""
    for srv in run_server(settings_for(store_url, tmp_path, rate_limit=1, rate_burst=3)):
        other = srv.new_client("other", "tasks:read")
        with srv.client() as http:
            codes = [http.get("/v2024/task-status").status_code for _ in range(4)]
            assert codes == [200, 200, 200, 429]
            r = http.get("/v2024/task-status")
            assert r.status_code == 429
            assert r.json() == {"message": " Rate Limit Exceeded "}
            assert int(r.headers["Retry-After"]) >= 1
        with srv.client(srv.token(*other)) as http:  # the limit is per client
            assert http.get("/v2024/task-status").status_code == 200
        time.sleep(1.1)
        with srv.client() as http:
            assert http.get("/v2024/task-status").status_code == 200


def test_token_endpoint_is_rate_limited_per_address(store_url: str, tmp_path: Path) -> None:
    """Token requests are limited per source address: past the limit, 429 instead of 401."""
    for srv in run_server(settings_for(store_url, tmp_path, token_rate_limit=1)):
        codes = [
            httpx.post(
                srv.url + TOKEN,
                data={"grant_type": "client_credentials", "client_id": "x", "client_secret": "y"},
            ).status_code
            for _ in range(6)
        ]
        assert codes[:4] == [401] * 4
        assert 429 in codes[4:]
