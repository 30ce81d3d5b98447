"""The store's edge: a driver error that means "the database is not available now" leaves a
store as `StoreUnavailable` (with the driver's error as its cause), whatever the operation.

Each backend says which errors those are (its `_unavailable` method); `guarded` wraps every
operation of the Store protocol of a backend class with that translation, so no operation
can forget it.
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Awaitable, Callable
from typing import Any, Protocol, TypeVar

from taskstatus.errors import StoreError, StoreUnavailable
from taskstatus.store.base import Store

__all__ = ["OPERATIONS", "guarded"]

# Every coroutine of the Store protocol: open, ping, create, ..., setting.
OPERATIONS = tuple(name for name, fn in vars(Store).items() if inspect.iscoroutinefunction(fn))


class _Classifies(Protocol):
    def _unavailable(self, exc: BaseException) -> str | None:
        """What became unavailable (for the message) if `exc` means the database cannot be
        used now; None for any other error, which passes unchanged."""


C = TypeVar("C", bound=type)


def _guard(fn: Callable[..., Awaitable[Any]]) -> Callable[..., Awaitable[Any]]:
    @functools.wraps(fn)
    async def guarded_operation(self: _Classifies, *args: Any, **kwargs: Any) -> Any:
        try:
            return await fn(self, *args, **kwargs)
        except StoreError:
            raise
        except Exception as exc:
            what = self._unavailable(exc)
            if what is None:
                raise
            raise StoreUnavailable.because(what, exc) from exc

    return guarded_operation


def guarded(cls: C) -> C:
    """Class decorator: every Store operation `cls` defines raises StoreUnavailable for the
    errors its `_unavailable` names."""
    for name in OPERATIONS:
        fn = cls.__dict__.get(name)
        if fn is not None:
            setattr(cls, name, _guard(fn))
    return cls
