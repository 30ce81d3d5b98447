"""The event loop taskstatus's own processes and threads run on: uvloop where it is installed
(a runtime dependency except on Windows and PyPy), asyncio's default loop elsewhere.

`run` is for the CLI's commands (`taskstatus worker` among them), `new_event_loop` for loops
started by hand (`connect()`'s loop thread). uvicorn picks uvloop for `serve` on its own.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Coroutine
from typing import Any, TypeVar

__all__ = ["new_event_loop", "run"]

T = TypeVar("T")


def _factory() -> Callable[[], asyncio.AbstractEventLoop]:
    try:
        import uvloop
    except ImportError:
        return asyncio.new_event_loop
    return uvloop.new_event_loop


new_event_loop: Callable[[], asyncio.AbstractEventLoop] = _factory()


def run(coro: Coroutine[Any, Any, T]) -> T:
    """`asyncio.run(coro)` on a loop of `new_event_loop`."""
    with asyncio.Runner(loop_factory=new_event_loop) as runner:
        return runner.run(coro)
