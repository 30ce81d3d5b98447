"""In-process wake-ups: a submit in this process wakes this process's idle workers at once.

Stores of the same database in one process (a `connect()` client and a worker, say) share one
`Wakeups` by key, so a task submitted through either starts without waiting for a poll. Waiters
may live on different event loops and threads; `notify` is thread-safe.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
import weakref
from typing import ClassVar


class Wakeups:
    _registry: ClassVar[weakref.WeakValueDictionary[str, _Hub]] = weakref.WeakValueDictionary()
    _registry_lock: ClassVar[threading.Lock] = threading.Lock()

    def __init__(self, hub: _Hub) -> None:
        self._hub = hub
        self._event: asyncio.Event | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

    @classmethod
    def for_key(cls, key: str) -> Wakeups:
        with cls._registry_lock:
            hub = cls._registry.get(key)
            if hub is None:
                hub = _Hub()
                cls._registry[key] = hub
        return cls(hub)

    def notify(self) -> None:
        """Wake every waiter on this key, in every loop of this process."""
        self._hub.notify()

    async def wait(self, timeout: float) -> bool:
        """Return at the next notify since the last wait returned (True), or after `timeout`
        (False)."""
        if self._event is None:
            self._loop = asyncio.get_running_loop()
            self._event = asyncio.Event()
            self._hub.add(self._loop, self._event)
        try:
            await asyncio.wait_for(self._event.wait(), timeout)
        except TimeoutError:
            return False
        finally:
            self._event.clear()
        return True

    def close(self) -> None:
        if self._event is not None:
            self._hub.remove(self._event)


class _Hub:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._waiters: dict[asyncio.Event, asyncio.AbstractEventLoop] = {}

    def add(self, loop: asyncio.AbstractEventLoop, event: asyncio.Event) -> None:
        with self._lock:
            self._waiters[event] = loop

    def remove(self, event: asyncio.Event) -> None:
        with self._lock:
            self._waiters.pop(event, None)

    def notify(self) -> None:
        with self._lock:
            waiters = list(self._waiters.items())
        for event, loop in waiters:
            if loop.is_closed():
                continue
            try:
                running = asyncio.get_running_loop()
            except RuntimeError:
                running = None
            if running is loop:
                event.set()
            else:
                with contextlib.suppress(RuntimeError):  # the loop closed meanwhile
                    loop.call_soon_threadsafe(event.set)
