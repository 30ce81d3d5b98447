"""The dashboard's templates (package data under ui/templates) and the filters they use."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import orjson
from jinja2 import Environment, PackageLoader, StrictUndefined, select_autoescape
from starlette.requests import Request
from starlette.responses import HTMLResponse

from taskstatus.model import Task, TaskState

__all__ = ["ENV", "STATE_LABELS", "fragment", "page"]

STATE_LABELS = {
    TaskState.QUEUED: "queued",
    TaskState.RUNNING: "running",
    TaskState.CANCEL_REQUESTED: "cancelling",
    TaskState.SUCCEEDED: "succeeded",
    TaskState.FAILED: "failed",
    TaskState.CANCELLED: "cancelled",
    TaskState.DEAD: "dead",
}


def _when(value: datetime | None) -> str:
    if value is None:
        return "—"
    return value.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S")


def _ago(value: datetime | None, now: datetime | None = None) -> str:
    """'3 min ago', 'in 12 s'."""
    if value is None:
        return "—"
    seconds = ((now or datetime.now(UTC)) - value).total_seconds()
    future, seconds = seconds < 0, abs(seconds)
    if seconds < 60:
        text = f"{seconds:.0f} s"
    elif seconds < 3600:
        text = f"{seconds / 60:.0f} min"
    elif seconds < 86400:
        text = f"{seconds / 3600:.1f} h"
    else:
        text = f"{seconds / 86400:.1f} d"
    return f"in {text}" if future else f"{text} ago"


def _duration(task: Task) -> str:
    if task.launched is None:
        return "—"
    end = task.completed or datetime.now(UTC)
    seconds = max(0.0, (end - task.launched).total_seconds())
    if seconds < 60:
        return f"{seconds:.1f} s"
    if seconds < 3600:
        return f"{int(seconds // 60)} min {int(seconds % 60)} s"
    return f"{seconds / 3600:.1f} h"


def _json(value: Any) -> str:
    return orjson.dumps(value, option=orjson.OPT_INDENT_2, default=str).decode()


ENV = Environment(
    loader=PackageLoader("taskstatus.ui", "templates"),
    autoescape=select_autoescape(default=True, default_for_string=True),
    undefined=StrictUndefined,
    trim_blocks=True,
    lstrip_blocks=True,
    enable_async=False,
)
ENV.filters.update(when=_when, ago=_ago, duration=_duration, json=_json)
ENV.globals.update(state_label=STATE_LABELS)


def fragment(name: str, **context: Any) -> str:
    return ENV.get_template(name).render(**context)


def page(
    request: Request, name: str, context: dict[str, Any], status_code: int = 200
) -> HTMLResponse:
    """A full page; `context` needs `session` (or None) for the header."""
    html = ENV.get_template(name).render(request=request, path=request.url.path, **context)
    return HTMLResponse(
        html,
        status_code=status_code,
        headers={"Cache-Control": "no-store", "X-Frame-Options": "DENY"},
    )
