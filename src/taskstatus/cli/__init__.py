"""The ``taskstatus`` command. Bad input is a one-line error and a non-zero exit, never a traceback
(set TASKSTATUS_DEBUG=1 to see one)."""

from __future__ import annotations

import importlib
import logging
import os
import sqlite3
import sys
from collections.abc import Coroutine
from typing import Annotated, Any, NoReturn, TypeVar

import jsonschema
import psycopg
import typer
from rich.console import Console

from taskstatus import eventloop
from taskstatus.errors import TaskStatusError
from taskstatus.model import IllegalTransition, InvalidTaskChange
from taskstatus.query import QueryError
from taskstatus.redact import MaskingFilter, mask
from taskstatus.settings import DEFAULT_DATABASE

T = TypeVar("T")

app = typer.Typer(
    name="taskstatus",
    help="Long-running background tasks with durable, queryable status.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
    rich_markup_mode=None,
)
# Piped output is not cut to 80 columns: tables keep whole ids.
out = Console(width=None if sys.stdout.isatty() else 200)
err = Console(stderr=True)

Database = Annotated[
    str,
    typer.Option(
        "--database",
        "-d",
        envvar="TASKSTATUS_DATABASE",
        help="sqlite:///path.db or postgresql://user@host/db",
        show_default=True,
    ),
]
DATABASE_DEFAULT = DEFAULT_DATABASE
Imports = Annotated[
    list[str] | None,
    typer.Option(
        "--import",
        "-i",
        envvar="TASKSTATUS_IMPORTS",
        help="Module whose @handler definitions to load (repeatable)",
    ),
]


class CliError(Exception):
    """A problem to report in one line, with an exit status."""

    def __init__(self, message: str, code: int = 1) -> None:
        self.code = code
        super().__init__(message)


def run(coro: Coroutine[Any, Any, T]) -> T:
    return eventloop.run(coro)


def load_modules(names: list[str] | None) -> None:
    """Import the modules that define handlers (the working directory is on the path)."""
    if os.getcwd() not in sys.path:
        sys.path.insert(0, os.getcwd())
    for name in names or []:
        try:
            importlib.import_module(name)
        except ImportError as e:
            raise CliError(f"cannot import {name!r}: {e}") from None


def configure_logging(level: int = logging.INFO) -> None:
    logging.basicConfig(
        level=level,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    for handler in logging.getLogger().handlers:  # no password of a database URL in a log
        if not any(isinstance(f, MaskingFilter) for f in handler.filters):
            handler.addFilter(MaskingFilter())


def fail(message: str, code: int = 1) -> NoReturn:
    raise CliError(message, code)


# Errors that are the user's input or environment, reported in one line.
_EXPECTED = (
    TaskStatusError,
    QueryError,
    IllegalTransition,
    InvalidTaskChange,
    ValueError,
    OSError,
    sqlite3.Error,
    psycopg.Error,
    jsonschema.SchemaError,
)


def main(argv: list[str] | None = None) -> None:
    """Entry point of the ``taskstatus`` console script."""
    from taskstatus.cli import clients, remote, schedules, serve, tasks, workers  # noqa: F401

    try:
        app(args=argv)  # standalone: click reports usage errors (exit 2) and exits with codes
    except CliError as e:
        _one_line(f"error: {e}")
        sys.exit(e.code)
    except _EXPECTED as e:
        if os.environ.get("TASKSTATUS_DEBUG"):
            raise
        _one_line(f"error: {e}")
        sys.exit(1)
    except Exception as e:
        if os.environ.get("TASKSTATUS_DEBUG"):
            raise
        _one_line(f"error: unexpected {type(e).__name__}: {e} (TASKSTATUS_DEBUG=1 shows where)")
        sys.exit(1)


def _one_line(text: str) -> None:
    err.print(mask(" ".join(text.split())), highlight=False, markup=False, soft_wrap=True)
