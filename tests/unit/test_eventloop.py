"""The loop taskstatus runs its own coroutines on: uvloop where it is installed (it is, in the
project's venv), asyncio's default loop where it is not."""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

import pytest
import uvloop

from taskstatus import cli, connect, eventloop


async def _loop_type() -> type[asyncio.AbstractEventLoop]:
    return type(asyncio.get_running_loop())


def test_cli_commands_run_on_uvloop() -> None:
    """Every command's coroutine (`taskstatus worker`'s among them) runs on uvloop."""
    assert cli.run(_loop_type()) is uvloop.Loop


def test_connect_runs_its_loop_thread_on_uvloop(tmp_path: Path) -> None:
    """connect()'s loop thread, on which the sync API's calls run, is a uvloop loop."""
    with connect(f"sqlite:///{tmp_path}/tasks.db") as conn:
        assert type(conn._loop.loop) is uvloop.Loop


def test_without_uvloop_the_loop_is_asyncios(monkeypatch: pytest.MonkeyPatch) -> None:
    """Where uvloop cannot be imported (Windows, PyPy), loops are asyncio's own."""
    monkeypatch.setitem(sys.modules, "uvloop", None)  # import uvloop raises ImportError
    loop = eventloop._factory()()
    try:
        assert not isinstance(loop, uvloop.Loop)
        assert isinstance(loop, asyncio.BaseEventLoop)
    finally:
        loop.close()
