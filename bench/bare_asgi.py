"""The baseline of status_get_rps: a bare ASGI app that returns fixed bytes (those of a real
TaskStatus response, read from $BENCH_BODY), served by the same uvicorn/h11 stack."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

_BODY = Path(os.environ.get("BENCH_BODY", "/dev/null")).read_bytes()
_HEADERS = [(b"content-type", b"application/json"), (b"content-length", str(len(_BODY)).encode())]


async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    if scope["type"] != "http":
        return
    await send({"type": "http.response.start", "status": 200, "headers": _HEADERS})
    await send({"type": "http.response.body", "body": _BODY})
