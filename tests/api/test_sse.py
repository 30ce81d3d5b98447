"""api/sse.py's EventStream on its own, driven as an ASGI server would drive it: what it does
when a client stops reading (its send waits), which real HTTP cannot show in a short test
without filling the socket buffers."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncGenerator
from typing import Any

import pytest

from taskstatus.api import sse
from taskstatus.api.sse import EventStream

pytestmark = pytest.mark.anyio


async def test_a_stream_whose_client_stopped_reading_ends(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A send that waits longer than SEND_TIMEOUT (the client stopped reading) ends the
    stream and closes its body, so what the body held is freed; the body is not ended
    properly (that send would wait too)."""
    monkeypatch.setattr(sse, "SEND_TIMEOUT", 0.2)
    closed = asyncio.Event()
    never = asyncio.Event()

    async def body() -> AsyncGenerator[bytes, None]:
        try:
            while True:
                yield b"data: x\r\n\r\n"
        finally:
            closed.set()

    sent: list[dict[str, Any]] = []

    async def send(message: Any) -> None:
        sent.append(message)
        if len(sent) > 2:  # the head and one chunk went out; then the client stops reading
            await never.wait()

    async def receive() -> Any:
        await never.wait()  # the client neither sends nor goes away

    stream = EventStream(body())
    await asyncio.wait_for(stream({"type": "http", "method": "GET"}, receive, send), 30)
    assert closed.is_set()
    assert [m.get("more_body") for m in sent] == [None, True, True]
