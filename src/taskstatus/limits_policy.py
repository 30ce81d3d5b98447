"""Limits on a handler across every node: how many of its tasks may run at once, and how many
may start per second (a token bucket), each optionally per value of one argument. No I/O:
the stores keep the limits, the running slots and the buckets, and apply `pick` at claim
time inside their claim transaction, so no node can pass a limit.
"""

from __future__ import annotations

import math
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import orjson

from taskstatus.limits import InputRejected, check_text

if TYPE_CHECKING:
    from taskstatus.model import Task

__all__ = [
    "Candidate",
    "HandlerLimits",
    "LimitWaits",
    "MixedPick",
    "Picked",
    "key_of",
    "pick",
    "pick_mixed",
]

MAX_CONCURRENCY = 1_000_000
MAX_RATE = 1_000_000.0


@dataclass(frozen=True, slots=True)
class HandlerLimits:
    """`concurrency`: most tasks running at once; `rate`: most starts per second, with bursts
    of up to `burst` starts (default: one second's worth, at least 1); `limit_key`: the
    argument whose values each get limits of their own. None: no such limit."""

    handler: str
    concurrency: int | None = None
    rate: float | None = None
    burst: float | None = None
    limit_key: str | None = None
    declared: bool = False  # the values a handler's code declares (not set at run time)

    def same(self, other: HandlerLimits) -> bool:
        """The same limits, wherever they came from."""
        return (self.concurrency, self.rate, self.burst, self.limit_key) == (
            other.concurrency,
            other.rate,
            other.burst,
            other.limit_key,
        )

    @property
    def empty(self) -> bool:
        return self.concurrency is None and self.rate is None

    @property
    def bucket_size(self) -> float:
        if self.rate is None:
            return math.inf
        return self.burst if self.burst is not None else max(1.0, self.rate)

    def checked(self) -> HandlerLimits:
        check_text(self.handler, "handler")
        c = self.concurrency
        if c is not None and (
            isinstance(c, bool) or not isinstance(c, int) or not 1 <= c <= MAX_CONCURRENCY
        ):
            raise InputRejected(f"concurrency: {c!r} is not a whole number from 1 to 1000000")
        for name, value in (("rate", self.rate), ("burst", self.burst)):
            if value is not None and (
                isinstance(value, bool)
                or not isinstance(value, int | float)
                or not math.isfinite(value)
                or not 0 < value <= MAX_RATE
            ):
                raise InputRejected(f"{name}: {value!r} is not a number above 0 and up to 1e6")
        if self.burst is not None and self.rate is None:
            raise InputRejected("burst: only with a rate")
        if self.burst is not None and self.burst < 1:
            raise InputRejected("burst: at least 1 (one start)")
        if self.limit_key is not None:
            check_text(self.limit_key, "limit_key")
            if not self.limit_key:
                raise InputRejected("limit_key: names an argument (not empty)")
        return self


def key_of(limits: HandlerLimits, arguments: Mapping[str, Any]) -> str:
    """The value a task's limits are counted under: its `limit_key` argument as text ('' when
    the limits are not split, or the task lacks the argument)."""
    if limits.limit_key is None:
        return ""
    value = arguments.get(limits.limit_key) if isinstance(arguments, Mapping) else None
    if value is None:
        return ""
    if isinstance(value, str):
        return value
    return orjson.dumps(value, option=orjson.OPT_SORT_KEYS).decode()


@dataclass(frozen=True, slots=True)
class Candidate:
    """A due task of a limited handler, in queue order."""

    id: str
    key: str
    progress: str | None
    handler: str = ""


@dataclass(frozen=True, slots=True)
class Picked:
    """What a claim takes (`chosen`, with the key of each), what it holds back and why
    (`held`: id -> the progress text), the buckets' new contents, and in how many seconds a
    token comes back for a held task (None: none is waiting for one)."""

    chosen: list[tuple[str, str]]
    held: dict[str, str]
    tokens: dict[str, float]
    retry_in: float | None
    waiting_for_slots: bool = False  # some were held by the concurrency limit


def refill(limits: HandlerLimits, tokens: float | None, elapsed: float) -> float:
    """A bucket's tokens after `elapsed` seconds (a new bucket starts full)."""
    size = limits.bucket_size
    if tokens is None or limits.rate is None:
        return size
    return min(size, tokens + max(0.0, elapsed) * limits.rate)


def waiting_concurrency(limits: HandlerLimits, key: str) -> str:
    where = f" for {limits.limit_key}={key}" if limits.limit_key else ""
    return f"waiting: limit of {limits.concurrency} running reached{where}"


def waiting_rate(limits: HandlerLimits, key: str) -> str:
    where = f" for {limits.limit_key}={key}" if limits.limit_key else ""
    return f"waiting: limit of {limits.rate:g} starts per second reached{where}"


def is_waiting_note(progress: str | None) -> bool:
    return progress is not None and progress.startswith("waiting: limit of ")


def pick(
    limits: HandlerLimits,
    candidates: Sequence[Candidate],
    running: Mapping[str, int],
    tokens: Mapping[str, float],
    free: int,
) -> Picked:
    """Take candidates in order while slots are free, passing over those whose key has
    `concurrency` running or no token left. `tokens` are the refilled buckets by key (a key
    not there has a full one)."""
    h = limits.handler
    mixed = pick_mixed(
        {h: limits},
        [Candidate(c.id, c.key, c.progress, h) for c in candidates],
        {(h, k): n for k, n in running.items()},
        {(h, k): v for k, v in tokens.items()},
        free,
    )
    return Picked(
        [(c.id, c.key) for c in mixed.chosen],
        mixed.held,
        {k: v for (_, k), v in mixed.tokens.items()},
        mixed.retry_in,
        bool(mixed.waiting_for_slots),
    )


@dataclass(frozen=True, slots=True)
class MixedPick:
    """`pick` over candidates of several handlers, some limited: counts and buckets are keyed
    by (handler, key); `waiting_for_slots` names the handlers whose concurrency held some."""

    chosen: list[Candidate]
    held: dict[str, str]
    tokens: dict[tuple[str, str], float]
    retry_in: float | None
    waiting_for_slots: set[str]


def pick_mixed(
    limits: Mapping[str, HandlerLimits],
    candidates: Sequence[Candidate],
    running: Mapping[tuple[str, str], int],
    tokens: Mapping[tuple[str, str], float],
    free: int,
) -> MixedPick:
    """Candidates of handlers without limits are taken as they come."""
    chosen: list[Candidate] = []
    held: dict[str, str] = {}
    now_running = dict(running)
    left = dict(tokens)
    retry: float | None = None
    slots: set[str] = set()
    for c in candidates:
        if len(chosen) >= free:
            break
        lim = limits.get(c.handler)
        if lim is None:
            chosen.append(c)
            continue
        at = (c.handler, c.key)
        if lim.concurrency is not None and now_running.get(at, 0) >= lim.concurrency:
            held[c.id] = waiting_concurrency(lim, c.key)
            slots.add(c.handler)
            continue
        if lim.rate is not None:
            have = left.get(at, lim.bucket_size)
            if have < 1.0:
                held[c.id] = waiting_rate(lim, c.key)
                wait = (1.0 - have) / lim.rate
                retry = wait if retry is None else min(retry, wait)
                continue
            left[at] = have - 1.0
        now_running[at] = now_running.get(at, 0) + 1
        chosen.append(c)
    return MixedPick(chosen, held, left, retry, slots)


class LimitWaits:
    """What a store remembers of its limited claims: whether the last one held tasks back
    (then the end of a limited task it started frees a slot someone waits for: it wakes
    the workers) and when a rate limit gives the next token."""

    def __init__(self) -> None:
        self.running: set[str] = set()
        self.holding = False
        self.retry_at: float | None = None

    def claimed(self, tasks: Sequence[Task], held: bool, retry_in: float | None) -> None:
        self.running.update(t.id for t in tasks)
        self.claimed_ids(held, retry_in)

    def claimed_ids(self, held: bool, retry_in: float | None) -> None:
        self.holding = held
        self.retry_at = None if retry_in is None else time.monotonic() + retry_in

    def started(self, task_ids: Sequence[str]) -> None:
        self.running.update(task_ids)

    def ended(self, task_ids: Sequence[str]) -> bool:
        """Whether any of the tasks was a limited one while tasks wait (wake the workers)."""
        if not self.running:
            return False
        hit = self.running.intersection(task_ids)
        self.running.difference_update(hit)
        return bool(hit) and self.holding

    def timeout(self, timeout: float) -> float:
        """A wait for work ends when a held task gets its token."""
        if self.retry_at is None:
            return timeout
        wait, self.retry_at = self.retry_at - time.monotonic(), None  # once: a claim follows
        return max(0.001, min(timeout, wait))
