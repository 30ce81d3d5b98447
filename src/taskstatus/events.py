"""Following task events live: one hub per store in a process, any number of followers.

The store tells the hub which tasks have new events (`Store.on_events`: LISTEN/NOTIFY on
PostgreSQL, SQLite's data_version across processes); the hub reads them once, in one query for
every task with news, keeps the last few of each followed task in memory and wakes that
task's followers. A follower only holds a cursor and an `asyncio.Event`: it reads what it has
not seen from the hub's tail (or from the store, when it is further behind, say replaying from
the start), so a slow follower costs the writers and the other followers nothing, and what it
missed while slow is read when it catches up. Nothing is pushed into a follower's buffer.

Per event, the hub does one thing per follower of the task: hand the new events to the
follower's `push`, when it has one (a live stream that has caught up and waits: it writes
them to its client there and then, and no task is woken), else set its `wake`. Heartbeats
cost no timer per follower either: one ticker wakes, with `beat` set, the followers that have
been quiet for their heartbeat (a thousand streams of one task are a thousand writes per
event and nothing more).
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import time
from collections import OrderedDict, deque
from collections.abc import AsyncGenerator, Callable, Iterator, Sequence
from dataclasses import dataclass, field

from taskstatus.store.base import EVENT_KINDS, TERMINAL_EVENT, Store, TaskEvent

__all__ = ["EVENT_KINDS", "TERMINAL_EVENT", "EventHub", "Follower", "TaskEvent", "coalesce"]

log = logging.getLogger(__name__)

TAIL = 256  # events kept per followed task
READ_LIMIT = 1000  # events read from the store per task and query
BEHIND = 64  # a live follower with more events than this to send is behind: coalesce
KNOWN_TOPICS = 4096  # tasks whose cursor the hub remembers without followers (for `everything`)
BEAT_TICKS = 4  # the ticker looks this many times per (shortest) heartbeat
MIN_TICK = 0.05  # seconds: the ticker's shortest period
IDLE_TICK = 1.0  # seconds: the ticker's period when no follower wants heartbeats


@dataclass(eq=False)
class Follower:
    """One stream's interest: a task (or every task: `task_id` None). `wake` is set when
    there may be news; for an everything-follower, `news` says which tasks (and the first
    new seq of each)."""

    task_id: str | None
    wake: asyncio.Event = field(default_factory=asyncio.Event)
    news: dict[str, int] = field(default_factory=dict)
    lost: bool = False  # an everything-follower: news may have been missed (a lost listener)
    heartbeat: float | None = None  # seconds of quiet after which the ticker wakes it
    quiet_since: float = 0.0  # time.monotonic() of its last news (or beat): `quiet()` resets it
    beat: bool = False  # woken by the ticker: `heartbeat` seconds without news
    after: int = 0  # `EventHub.stream`: the last seq the follower has had
    # `EventHub.stream`, while the follower waits, live: takes its new events (True) or not
    push: Callable[[list[TaskEvent]], bool] | None = None

    def quiet(self) -> None:
        """The follower has just had news: its heartbeat counts from now."""
        self.quiet_since = time.monotonic()
        self.beat = False


@dataclass(eq=False)
class _Topic:
    task_id: str
    cursor: int | None = None  # the last seq the hub has read; None: not known yet
    tail: deque[TaskEvent] = field(default_factory=lambda: deque(maxlen=TAIL))
    followers: set[Follower] = field(default_factory=set)

    def merge(self, events: Sequence[TaskEvent]) -> None:
        """Add events read from the store (in order) to the tail, keeping it contiguous."""
        for event in events:
            if self.cursor is not None and event.seq <= self.cursor:
                continue
            if self.cursor is None or event.seq != self.cursor + 1:
                self.tail.clear()  # not contiguous with what is kept: start over from here
            self.tail.append(event)
            self.cursor = event.seq


class EventHub:
    """The events of one store, for the followers of this process."""

    def __init__(self, store: Store) -> None:
        self._store = store
        self._topics: OrderedDict[str, _Topic] = OrderedDict()
        self._everything: set[Follower] = set()
        self._stop_signals: Callable[[], None] | None = None
        self._dirty: dict[str, int | None] = {}  # task -> first new seq (None: unknown)
        self._fetch_wake = asyncio.Event()
        self._fetcher: asyncio.Task[None] | None = None
        self._ticker: asyncio.Task[None] | None = None
        self._period = IDLE_TICK  # the ticker's current period

    @property
    def followers(self) -> int:
        return sum(len(t.followers) for t in self._topics.values()) + len(self._everything)

    # --- following ------------------------------------------------------------------------

    @contextlib.contextmanager
    def follow(self, task_id: str | None, heartbeat: float | None = None) -> Iterator[Follower]:
        """Follow one task's events (or every task's, with None) for the `with` block; with
        `heartbeat`, the follower is also woken, with `beat` set, after that many seconds
        without news (`Follower.quiet` says when it had some)."""
        follower = Follower(task_id, heartbeat=heartbeat)
        follower.quiet()
        if task_id is None:
            self._everything.add(follower)
        else:
            self._topic(task_id).followers.add(follower)
        self._signals(heartbeat)
        try:
            yield follower
        finally:
            if task_id is None:
                self._everything.discard(follower)
            else:
                topic = self._topics.get(task_id)
                if topic is not None:
                    topic.followers.discard(follower)
            self._release()

    async def read(self, task_id: str, after: int, limit: int = READ_LIMIT) -> list[TaskEvent]:
        """The task's events after `after`, in order: from the hub's tail when it has them,
        else from the store."""
        topic = self._topic(task_id)
        found = _from_tail(topic, after, limit)
        return found if found is not None else await self._from_store(topic, after, limit)

    async def _from_store(self, topic: _Topic, after: int, limit: int) -> list[TaskEvent]:
        events = await self._store.events({topic.task_id: after}, limit)
        topic.merge(events)
        return events

    async def stream(
        self,
        task_id: str,
        after: int,
        heartbeat: float,
        push: Callable[[list[TaskEvent]], bool] | None = None,
    ) -> AsyncGenerator[list[TaskEvent], None]:
        """The task's events after `after` as they come, in batches, until its terminal
        event; an empty batch once the replay has caught up, and after `heartbeat` seconds
        without any. A live follower more than BEHIND events behind (slow to read) gets
        their progress events coalesced into the last one; replays are never coalesced.

        With `push`, new events of a live follower that waits for them (caught up, the
        caller asking for the next batch) are handed to `push(events)` by the hub as soon as
        it reads them, in the hub's task: no task is woken for them. It returns True when it
        has taken them (they are then not yielded: each event goes to one of the two, once,
        in order), False when it cannot now (they are yielded as usual). A batch with the
        terminal event, or one that would be coalesced, is always yielded."""
        replaying = True
        with self.follow(task_id, heartbeat) as follower:
            follower.after = after  # the hub advances it for what `push` takes
            topic = self._topic(task_id)  # kept while followed: the same object throughout
            while True:
                follower.wake.clear()
                # what is in the tail is read without a coroutine: the common case, a
                # live follower woken for the event the hub has just read
                events = _from_tail(topic, follower.after, READ_LIMIT)
                if events is None:
                    events = await self._from_store(topic, follower.after, READ_LIMIT)
                if events:
                    follower.after = events[-1].seq
                    if not replaying and len(events) > BEHIND:
                        events = coalesce(events)
                    follower.quiet_since, follower.beat = time.monotonic(), False  # quiet()
                    yield events
                    if events[-1].kind == TERMINAL_EVENT:
                        return
                    continue
                if replaying:
                    replaying = False
                    yield []  # caught up: the caller may end a stream of a finished task
                    continue
                if follower.beat:
                    follower.beat = False
                    yield []
                    continue
                follower.push = push
                try:
                    await follower.wake.wait()
                finally:
                    follower.push = None

    async def wait(self, task_id: str, timeout: float) -> bool:
        """Return True at the next event of the task, False after `timeout` seconds."""
        with self.follow(task_id) as follower:
            try:
                async with asyncio.timeout(timeout):
                    await follower.wake.wait()
            except TimeoutError:
                return False
        return True

    # --- news from the store --------------------------------------------------------------

    def _topic(self, task_id: str) -> _Topic:
        topic = self._topics.get(task_id)
        if topic is None:
            topic = self._topics[task_id] = _Topic(task_id)
            self._trim()
        else:
            self._topics.move_to_end(task_id)
        return topic

    def _trim(self) -> None:
        """Forget the least recently used topics nobody follows, past KNOWN_TOPICS."""
        excess = len(self._topics) - KNOWN_TOPICS
        if excess <= 0:
            return
        idle = [k for k, t in self._topics.items() if not t.followers][:excess]
        for task_id in idle:
            del self._topics[task_id]

    def _signals(self, heartbeat: float | None) -> None:
        if self._stop_signals is None:
            self._stop_signals = self._store.on_events(self._on_news)
        if self._fetcher is None or self._fetcher.done():
            self._fetcher = asyncio.create_task(self._fetch(), name="taskstatus event hub")
        if (
            heartbeat is not None
            and self._ticker is not None
            and self._period > _period([heartbeat])
        ):
            self._ticker.cancel()  # a shorter heartbeat than it ticks for: start it again
            self._ticker = None
        if self._ticker is None or self._ticker.done():
            self._ticker = asyncio.create_task(self._tick(), name="taskstatus event heartbeats")

    def _release(self) -> None:
        """Nobody follows anything: stop listening and forget the topics."""
        if self._everything or any(t.followers for t in self._topics.values()):
            return
        if self._stop_signals is not None:
            self._stop_signals()
            self._stop_signals = None
        for task in (self._fetcher, self._ticker):
            if task is not None:
                task.cancel()
        self._fetcher = self._ticker = None
        self._topics.clear()
        self._dirty.clear()

    def _on_news(self, news: Sequence[tuple[str, int]] | None) -> None:
        if news is None:  # some may have been missed: read every followed task again
            for task_id, topic in self._topics.items():
                if topic.followers:
                    self._dirty.setdefault(task_id, None)
            for follower in self._everything:
                follower.lost = True
                follower.wake.set()
        else:
            for task_id, first in news:
                if task_id not in self._topics and not self._everything:
                    continue
                if task_id not in self._dirty:
                    self._dirty[task_id] = first
                elif (known := self._dirty[task_id]) is not None:
                    self._dirty[task_id] = min(known, first)
        if self._dirty:
            self._fetch_wake.set()

    async def _fetch(self) -> None:
        """Read the news of every dirty task in one query, then wake their followers."""
        while True:
            await self._fetch_wake.wait()
            self._fetch_wake.clear()
            dirty, self._dirty = self._dirty, {}
            cursors: dict[str, int] = {}
            for task_id, first in dirty.items():
                topic = self._topic(task_id)
                if topic.cursor is None:
                    if first is None:  # unknown where to start: the followers read the store
                        self._wake(topic, None)
                        continue
                    topic.cursor = first - 1
                cursors[task_id] = topic.cursor
            if not cursors:
                continue
            try:
                events = await self._store.events(cursors, READ_LIMIT)
            except Exception:
                log.exception("reading new events failed; the followers will read them")
                for task_id in cursors:
                    self._wake(self._topic(task_id), None)
                continue
            by_task: dict[str, list[TaskEvent]] = {}
            for event in events:
                by_task.setdefault(event.task_id, []).append(event)
            for task_id, found in by_task.items():
                topic = self._topic(task_id)
                first_new = found[0].seq
                topic.merge(found)
                if len(found) >= READ_LIMIT:
                    self._dirty.setdefault(task_id, None)
                    self._fetch_wake.set()
                self._wake(topic, first_new)

    def _followers(self) -> Iterator[Follower]:
        for topic in self._topics.values():
            yield from topic.followers
        yield from self._everything

    async def _tick(self) -> None:
        """The heartbeats of every follower, on one timer: each tick wakes, with `beat` set,
        those quiet for their heartbeat, which so comes after heartbeat to heartbeat *
        (1 + 1 / BEAT_TICKS) seconds of quiet."""
        while True:
            self._period = _period([f.heartbeat for f in self._followers() if f.heartbeat])
            await asyncio.sleep(self._period)
            now = time.monotonic()
            for follower in self._followers():
                if follower.heartbeat is not None and now - follower.quiet_since >= (
                    follower.heartbeat
                ):
                    follower.quiet_since = now
                    follower.beat = True
                    follower.wake.set()

    def _wake(self, topic: _Topic, first: int | None) -> None:
        """Tell the topic's followers of news (`first`: the first new seq; None: unknown,
        each reads the store): the events themselves to those that push them, else `wake`."""
        if first is None:
            for follower in topic.followers:
                follower.wake.set()
            return
        self._push(topic)
        for follower in self._everything:
            follower.news.setdefault(topic.task_id, first)
            follower.wake.set()

    @staticmethod
    def _push(topic: _Topic) -> None:
        now = time.monotonic()
        cursor, found = -1, None  # followers at one cursor (the common case) share one batch
        # a copy: a push runs a stream's send, which must not be able to change the set
        for follower in list(topic.followers):
            push = follower.push
            if push is not None:
                if follower.after != cursor:
                    cursor, found = follower.after, _from_tail(topic, follower.after, READ_LIMIT)
                if found == []:
                    continue  # nothing it has not had
                if found is not None and len(found) <= BEHIND and found[-1].kind != TERMINAL_EVENT:
                    try:
                        taken = push(found)
                    except Exception:  # the follower's own failure: it reads them itself
                        log.exception("pushing events to a follower failed")
                        taken = False
                    if taken:
                        follower.after = found[-1].seq
                        follower.quiet_since, follower.beat = now, False  # quiet()
                        continue
            follower.wake.set()


def _period(heartbeats: list[float]) -> float:
    """The ticker's period for followers with these heartbeats."""
    return max(MIN_TICK, min(heartbeats) / BEAT_TICKS) if heartbeats else IDLE_TICK


def _from_tail(topic: _Topic, after: int, limit: int) -> list[TaskEvent] | None:
    """The topic's events after `after` from its tail; None when the tail lacks them."""
    if topic.cursor is not None and after >= topic.cursor:
        return []
    tail = topic.tail
    if tail and tail[0].seq <= after + 1:  # contiguous: the index of seq is seq - first
        start = after + 1 - tail[0].seq
        return list(itertools.islice(tail, start, start + limit))
    return None


def coalesce(events: Sequence[TaskEvent]) -> list[TaskEvent]:
    """The events without the progress events that a later progress event supersedes."""
    last_progress = max((i for i, e in enumerate(events) if e.kind == "progress"), default=-1)
    return [e for i, e in enumerate(events) if e.kind != "progress" or i == last_progress]
