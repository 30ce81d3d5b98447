"""Which requests the fast lane takes is derived from the app's routes (api/fastlane.py)."""

from __future__ import annotations

from fastapi import APIRouter
from starlette.requests import Request
from starlette.responses import Response

from taskstatus.api import create_app
from taskstatus.api.fastlane import FastRoute, lanes_of


async def _fast(request: Request) -> Response:
    return Response()


async def _endpoint(id: str) -> Response:
    return Response()


def test_an_earlier_sibling_route_is_not_taken_for_a_task_id() -> None:
    """A literal GET route beside ``{id}``, added before it, stays the router's; a later one,
    which the router would never reach, and other methods are not excluded."""
    router = APIRouter()
    router.add_api_route("/x/pending", _endpoint, methods=["GET"])
    router.add_api_route("/x/stats", _endpoint, methods=["GET"])
    router.add_api_route("/x/posted", _endpoint, methods=["POST"])
    router.routes.append(FastRoute("/x/{id}", _endpoint, fast=_fast, methods=["GET"]))
    router.add_api_route("/x/later", _endpoint, methods=["GET"])
    [lane] = lanes_of(router.routes)
    assert lane.taken == {"/x/pending", "/x/stats"}
    match = lane.pattern.fullmatch("/x/abc")
    assert match is not None and match.groupdict() == {"id": "abc"}
    assert lane.pattern.fullmatch("/x/abc/events") is None


def test_the_apps_lane_serves_task_ids_under_every_prefix_only() -> None:
    """The app's one lane covers the GET of a task under each task-status prefix and leaves
    pending-tasks and events to their routes."""
    [lane] = lanes_of(create_app().router.routes)
    for prefix in ("/v2024", "/v2025", "/v2026", "/beta"):
        assert lane.pattern.fullmatch(f"{prefix}/task-status/{'a' * 32}") is not None
        assert {f"{prefix}/task-status/pending-tasks", f"{prefix}/task-status/events"} <= (
            lane.taken
        )
    assert lane.pattern.fullmatch(f"/task-status/v1/{'a' * 32}") is not None
    assert "/task-status/v1/events" in lane.taken
    assert lane.pattern.fullmatch("/v2/task/view/abc") is None
