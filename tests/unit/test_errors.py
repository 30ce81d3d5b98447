"""The one table of domain errors and their answers (taskstatus.api.errors.ANSWERS)."""

from __future__ import annotations

import dataclasses

from fastapi import FastAPI

from taskstatus.api import errors
from taskstatus.errors import Forbidden
from taskstatus.model import TaskState
from taskstatus.service import NotQueued
from tests.conftest import make_task


def test_every_listed_error_has_a_handler() -> None:
    """`install` registers a handler for each error of the table, so none is a 500."""
    app = FastAPI()
    errors.install(app)
    missing = [kind for kind in errors.ANSWERS if kind not in app.exception_handlers]
    assert missing == []


def test_a_subclass_is_answered_as_its_listed_base() -> None:
    """NotQueued, an InputRejected, is a 400 with its message; Forbidden is a 403."""
    task = dataclasses.replace(make_task(), state=TaskState.RUNNING)
    error = errors.as_api_error(NotQueued(task))
    assert error is not None and error.status == 400
    assert error.causes == [str(NotQueued(task))]
    forbidden = errors.as_api_error(Forbidden("no"))
    assert forbidden is not None and forbidden.status == 403 and forbidden.causes == ["no"]


def test_an_unlisted_error_is_unexpected() -> None:
    """An exception outside the table is not turned into a 4xx: the 500 handler answers it."""
    assert errors.as_api_error(RuntimeError("boom")) is None
