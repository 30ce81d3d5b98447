"""The one response class of the API (`CasedResponse`) and the JSON response every route and
error handler sends."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import orjson
from starlette.responses import Response

__all__ = ["CasedResponse", "json_response"]


class CasedResponse(Response):
    """A response that keeps the case of its header names. HTTP says case does not matter, but
    the SailPoint SDK reads ``X-Total-Count`` from a case-sensitive mapping; Starlette would
    send ``x-total-count``."""

    def init_headers(self, headers: Mapping[str, str] | None = None) -> None:
        super().init_headers(None)
        for name, value in (headers or {}).items():
            self.raw_headers.append((name.encode("latin-1"), value.encode("latin-1")))


def json_response(status: int, body: Any, headers: Mapping[str, str] | None = None) -> Response:
    return CasedResponse(
        orjson.dumps(body), status_code=status, media_type="application/json", headers=headers
    )
