"""/v2024/task-schedules and /v2024/task-limits: the task-status routes' auth, error shape and
collection parameters; bad cron expressions, time zones and handlers are a 400 naming which."""

from __future__ import annotations

import httpx
import pytest

from taskstatus.credentials import ADMIN, READ
from tests.api.conftest import Server
from tests.api.test_v2024 import check_error

BASE = "/v2024/task-schedules"
NIGHTLY = {"name": "nightly", "handler": "Sleep", "arguments": {"seconds": 1}, "cron": "0 2 * * *"}


def test_create_get_list_patch_delete(server: Server) -> None:
    """The whole life of a schedule over HTTP, with its next firings shown."""
    with server.client() as http:
        r = http.post(BASE, json={**NIGHTLY, "timezone": "Europe/Paris", "overlap": "skip"})
        assert r.status_code == 201, r.text
        doc = r.json()
        assert doc["launcher"] == "schedule:nightly" and doc["version"] == 1
        assert len(doc["nextFires"]) == 5 and doc["nextFire"] == doc["nextFires"][0]
        assert doc["nextFire"].endswith(":00Z")
        assert http.get(f"{BASE}/nightly").json() == doc | {"nextFires": doc["nextFires"]}
        r = http.post(BASE, json={**NIGHTLY, "name": "often", "cron": None, "every": 30})
        assert r.status_code == 201, r.text
        r = http.get(BASE, params={"count": "true", "sorters": "-name", "limit": 1})
        assert [d["name"] for d in r.json()] == ["often"] and r.headers["X-Total-Count"] == "2"
        r = http.get(BASE, params={"filters": 'handler eq "Sleep" and paused eq false'})
        assert len(r.json()) == 2
        patch = [{"op": "replace", "path": "/paused", "value": True}]
        r = http.patch(
            f"{BASE}/often",
            content=str(patch).replace("'", '"').replace("True", "true"),
            headers={"Content-Type": "application/json-patch+json"},
        )
        assert r.status_code == 200, r.text
        assert r.json()["paused"] and r.json()["nextFire"] is None and r.json()["nextFires"] == []
        assert http.delete(f"{BASE}/often").status_code == 204
        check_error(http.get(f"{BASE}/often"), 404, "no schedule named often")
        check_error(http.post(BASE, json=NIGHTLY), 409, "nightly")


@pytest.mark.parametrize(
    ("change", "says"),
    [
        ({"cron": "0 2 * * * * *"}, "cron: '0 2 * * * * *' has 7 fields"),
        ({"cron": "99 * * * *"}, "cron: '99 * * * *' is not a valid cron expression"),
        ({"timezone": "Mars/Olympus"}, "timezone: unknown time zone 'Mars/Olympus'"),
        ({"handler": "Nope"}, "Nope"),
        ({"arguments": {"secnds": 1}}, "secnds"),
        ({"every": 10}, "either cron or every"),
        ({"name": "no spaces"}, "is not a schedule name"),
        ({"missed": "sometimes"}, "missed"),
    ],
)
def test_bad_schedules_are_a_400_saying_which(
    server: Server, change: dict[str, object], says: str
) -> None:
    """Each bad field of a new schedule is a 400 whose cause names it; nothing is created."""
    with server.client() as http:
        check_error(http.post(BASE, json={**NIGHTLY, **change}), 400, says)
        assert http.get(BASE).json() == []


def test_bad_patches_are_refused(server: Server) -> None:
    """A patch must be JSON Patch, on an editable field, leaving a valid schedule."""
    with server.client() as http:
        assert http.post(BASE, json=NIGHTLY).status_code == 201
        url, media = f"{BASE}/nightly", {"Content-Type": "application/json-patch+json"}
        bad_tz = '[{"op": "replace", "path": "/timezone", "value": "Nowhere"}]'
        check_error(http.patch(url, content=bad_tz, headers=media), 400, "timezone")
        name = '[{"op": "replace", "path": "/name", "value": "x"}]'
        check_error(http.patch(url, content=name, headers=media), 400, "/name")
        check_error(http.patch(url, content="{", headers=media), 400, "not valid JSON")
        r = http.patch(url, content="[]", headers={"Content-Type": "text/plain"})
        check_error(r, 415)
        assert http.get(url).json()["version"] == 1


def test_scopes(server: Server) -> None:
    """Reading needs the read scope; creating, changing and deleting need admin."""
    reader = server.token(*server.new_client("reader", READ))
    with server.client(reader) as http:
        assert http.get(BASE).status_code == 200
        check_error(http.post(BASE, json=NIGHTLY), 403, ADMIN)
        r = http.put("/v2024/task-limits/Sleep", json={"concurrency": 1})
        check_error(r, 403, ADMIN)
    with httpx.Client(base_url=server.url) as anonymous:
        assert anonymous.get(BASE).status_code == 401


def test_limits_over_http(server: Server) -> None:
    """Limits are set, read and removed over HTTP; bad ones and unknown handlers are 400s."""
    with server.client() as http:
        r = http.put(
            "/v2024/task-limits/Sleep", json={"concurrency": 2, "rate": 20, "limitKey": "seconds"}
        )
        assert r.status_code == 200, r.text
        want = {"handler": "Sleep", "concurrency": 2, "rate": 20.0, "burst": None}
        assert r.json() == want | {"limitKey": "seconds"}
        assert http.get("/v2024/task-limits").json() == [r.json()]
        assert http.get("/v2024/task-limits/Sleep").json() == r.json()
        check_error(
            http.put("/v2024/task-limits/Sleep", json={"concurrency": 0}), 400, "concurrency"
        )
        check_error(http.put("/v2024/task-limits/Nope", json={"concurrency": 1}), 400, "Nope")
        check_error(http.get("/v2024/task-limits/Nope"), 400, "Nope")
        assert http.put("/v2024/task-limits/Sleep", json={}).status_code == 200
        assert http.get("/v2024/task-limits").json() == []
