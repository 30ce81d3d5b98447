"""Live task events over HTTP, for every dialect: Server-Sent Events and the long-poll wait.

A stream of one task opens with a `snapshot` event (the whole task, in the dialect's shape,
and no `id:`, so it leaves the client's Last-Event-ID alone), replays the task's event log
after the client's cursor (`Last-Event-ID`, else `?after=`, else from the start), then sends
events as they are committed, until the task's terminal event. `id:` is the event's seq,
`event:` its kind, `data:` what changed, in the dialect's field names. Idle streams get a
comment line after `event_heartbeat` seconds without events (the hub's one ticker says when).
api/sse.py's EventStream writes the stream: each event is encoded once however many streams
send it, events that come together go out as one chunk, and a client that went away (or a
server that is shutting down) ends the stream and frees what it held. A live stream that has
caught up has its new events written by the event hub as soon as it reads them (`push`): a
thousand streams of one task cost a thousand writes per event, and no task is woken for them.

Each client may hold `max_streams_per_client` streams at once (429 past that); the same
visibility rules as a GET apply before the stream starts (404 for another client's task).
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import AsyncGenerator, Callable
from datetime import datetime
from typing import Annotated, Any

import orjson
from fastapi import Header, Query
from starlette.requests import Request

from taskstatus.api.deps import ApiState
from taskstatus.api.errors import ApiError
from taskstatus.api.sse import HEARTBEAT, EventStream, frame
from taskstatus.caller import Caller
from taskstatus.events import EVENT_KINDS, TERMINAL_EVENT, TaskEvent
from taskstatus.model import Task, TaskState
from taskstatus.query import Condition, Expr, Op, TaskField, TaskQuery, all_of
from taskstatus.service import utcnow
from taskstatus.views import CRUD_STATUS, JIRA_STATUS, crud_task, iso, jira_task, task_status

__all__ = [
    "ALL_STREAM_RESPONSES",
    "CRUD",
    "JIRA",
    "MAX_WAIT",
    "STREAM_RESPONSES",
    "V2024",
    "After",
    "Dialect",
    "LastEventId",
    "Wait",
    "cursor_of",
    "task_stream",
    "wait_seconds",
    "wait_until_terminal",
]

MAX_WAIT = 60.0  # seconds a ?wait= may hold a request
TIME_FIELDS = ("launched", "completed", "runAt", "deleted", "modified")

Wait = Annotated[
    float | None,
    Query(
        ge=0,
        le=MAX_WAIT,
        description="Long poll: answer as soon as the task is terminal, or with its current "
        f"state after this many seconds (at most {MAX_WAIT:g})",
    ),
]
MAX_SEQ = 2**31 - 1  # the largest seq the stores' integer column holds
After = Annotated[
    int | None,
    Query(
        ge=0,
        le=MAX_SEQ,
        description="Replay the events after this seq (the Last-Event-ID header wins)",
    ),
]
LastEventId = Annotated[
    str | None,
    Header(alias="Last-Event-ID", description="Resume after this event id (an SSE reconnect)"),
]


def _stream_responses(description: str, id_pattern: str, id_is: str) -> dict[int | str, Any]:
    """The 200 of a stream: one event's shape (OpenAPI 3.2's itemSchema, which tools read
    from `schema` in 3.1)."""
    event = {
        "type": "object",
        "required": ["data"],
        "properties": {
            "id": {"type": "string", "pattern": id_pattern, "description": id_is},
            "event": {"type": "string", "enum": ["snapshot", *EVENT_KINDS]},
            "data": {"type": "string", "contentMediaType": "application/json"},
            "retry": {"type": "integer", "minimum": 0},
        },
    }
    return {200: {"description": description, "content": {"text/event-stream": {"schema": event}}}}


STREAM_HEADERS = {"Cache-Control": "no-store", "X-Accel-Buffering": "no"}  # and no proxy buffering
STREAM_RESPONSES = _stream_responses(
    "A text/event-stream: a `snapshot` event (the whole task), then the task's events (`id:` "
    "seq, `event:` kind, `data:` JSON) until its terminal event",
    "^[0-9]+$",
    "The event's seq",
)
ALL_STREAM_RESPONSES = _stream_responses(
    "A text/event-stream of the events of every task the caller may see, as they are committed "
    "(`id:` task id and seq, `event:` kind, `data:` JSON); it does not end",
    "^[^:]+:[0-9]+$",
    "The task's id and the event's seq, for information: a reconnect does not resume it",
)


def _time(value: Any) -> datetime | None:
    return None if value is None else datetime.fromisoformat(value)


class Dialect:
    """How one dialect shows a task and its events."""

    def __init__(
        self,
        name: str,
        snapshot: Callable[[Task, str], dict[str, Any]],
        event: Callable[[TaskEvent], dict[str, Any]],
    ) -> None:
        self.name = name
        self.snapshot = snapshot
        self.event = event


def _v2024_event(event: TaskEvent) -> dict[str, Any]:
    data: dict[str, Any] = {"id": event.task_id}
    for key, value in event.data.items():
        if key == "state":
            continue
        data[key] = iso(_time(value)) if key in TIME_FIELDS else value
    if event.kind == "message":
        data = {
            "id": event.task_id,
            "type": event.data["type"],
            "localizedText": {"locale": event.data["locale"], "message": event.data["text"]},
            "key": event.data["key"],
            "parameters": event.data.get("parameters"),
        }
    data["modified"] = iso(event.at)
    return data


def _state(event: TaskEvent) -> TaskState | None:
    state = event.data.get("state")
    if state is None:
        return {
            "launched": TaskState.RUNNING,
            "retried": TaskState.QUEUED,
            "released": TaskState.QUEUED,
        }.get(event.kind)
    return TaskState(state)


def _crud_event(event: TaskEvent) -> dict[str, Any]:
    data: dict[str, Any] = {"task_id": event.task_id, "updated_at": iso(event.at)}
    state = _state(event)
    if state is not None:
        data["status"] = CRUD_STATUS[state]
    d = event.data
    if "percentComplete" in d:  # a progress event, or the end's `completed`, which has it
        data.update(progress=d["progress"], percent_complete=d["percentComplete"])
    if event.kind == "attributes":
        data["response"] = d["attributes"]
    elif event.kind == "message":
        data.update(type=d["type"], key=d["key"], message=d["text"])
    elif event.kind in ("launched", "retried", "released", "lease_lost"):
        data["attempt"] = d["attempt"]
    elif event.kind == "deleted":
        data["deleted_at"] = iso(_time(d["deleted"]))
    return data


def _millis(value: Any) -> int | None:
    when = _time(value)
    return None if when is None else int(when.timestamp() * 1000)


def _jira_event(event: TaskEvent) -> dict[str, Any]:
    data: dict[str, Any] = {"id": event.task_id, "lastUpdate": int(event.at.timestamp() * 1000)}
    state = _state(event)
    if state is not None:
        data["status"] = JIRA_STATUS[state]
    d = event.data
    if "percentComplete" in d:  # a progress event, or the end's `completed`, which has it
        data["progress"] = d["percentComplete"]
        if d["progress"]:
            data["message"] = d["progress"]
    if event.kind == "attributes":
        data["result"] = d["attributes"]
    elif event.kind == "message":
        data["message"] = d["text"]
    elif event.kind == "launched":
        data["started"] = _millis(d["launched"])
    elif event.kind == "completed":
        data["finished"] = _millis(d["completed"])
    return data


V2024 = Dialect("v2024", lambda task, url: task_status(task), _v2024_event)
CRUD = Dialect("v2", lambda task, url: crud_task(task), _crud_event)
JIRA = Dialect("jira", lambda task, url: jira_task(task, url, utcnow()), _jira_event)


def cursor_of(request: Request) -> int:
    """Where a stream resumes: after the Last-Event-ID header, else after ?after=, else 0."""
    for name, value in (
        ("Last-Event-ID", request.headers.get("last-event-id")),
        ("after", request.query_params.get("after")),
    ):
        if value is None or value == "":
            continue
        try:
            cursor = int(value)
        except ValueError:
            raise ApiError(
                400, [f"{name} must be an event id (an integer), not {value!r}"]
            ) from None
        if cursor < 0:
            raise ApiError(400, [f"{name} must not be negative"])
        if cursor > MAX_SEQ:  # seq is a 32-bit integer in the stores: no event comes after
            raise ApiError(400, [f"{name} must be at most {MAX_SEQ}"])
        return cursor
    return 0


def wait_seconds(request: Request) -> float | None:
    """?wait=SECONDS (0 to MAX_WAIT), or None when not asked."""
    value = request.query_params.get("wait")
    if value is None or value == "":
        return None
    try:
        seconds = float(value)
    except ValueError:
        raise ApiError(400, [f"wait must be a number of seconds, not {value!r}"]) from None
    if not 0 <= seconds <= MAX_WAIT:  # also refuses nan
        raise ApiError(400, [f"wait must be between 0 and {MAX_WAIT:g} seconds"])
    return seconds


async def wait_until_terminal(
    state: ApiState, caller: Caller, task: Task, seconds: float | None
) -> Task:
    """`task`, or, with `seconds`, the task once it is terminal or when the time is up."""
    if seconds is None or task.terminal:
        return task
    return await state.service.wait_for(caller, task.id, seconds)


_ENCODED: OrderedDict[tuple[str, int, int, str], bytes] = OrderedDict()
_ENCODED_MAX = 4096


def _sse(event: TaskEvent, dialect: Dialect) -> bytes:
    """The event as SSE bytes, encoded once however many streams send it (a thousand
    followers of one task share the work)."""
    key = (event.task_id, event.seq, event.version, dialect.name)
    found = _ENCODED.get(key)
    if found is None:
        found = frame(orjson.dumps(dialect.event(event)).decode(), event.kind, str(event.seq))
        _ENCODED[key] = found
        if len(_ENCODED) > _ENCODED_MAX:
            _ENCODED.popitem(last=False)
    return found


def _chunk(batch: list[TaskEvent], dialect: Dialect) -> bytes:
    """The events as one chunk (a replay, or a follower that was behind, has several)."""
    if len(batch) == 1:
        return _sse(batch[0], dialect)
    return b"".join(_sse(event, dialect) for event in batch)


async def task_stream(
    request: Request,
    state: ApiState,
    caller: Caller,
    task_id: str,
    dialect: Dialect,
    self_url: str = "",
) -> EventStream:
    """The SSE response of one task's events (checks made before it starts: 404, 429)."""
    after = cursor_of(request)
    task = await state.service.get(caller, task_id)
    streams = state.streams
    streams.check(caller.client_id)
    hub = state.service.events
    heartbeat = state.settings.event_heartbeat

    def push(batch: list[TaskEvent]) -> bool:
        return response.push(_chunk(batch, dialect))

    async def events() -> AsyncGenerator[bytes, None]:
        with streams.hold(caller.client_id):
            yield frame(orjson.dumps(dialect.snapshot(task, self_url)).decode(), "snapshot")
            caught_up = False
            async for batch in hub.stream(task_id, after, heartbeat, push):
                if batch:
                    yield _chunk(batch, dialect)
                elif caught_up:
                    yield HEARTBEAT  # quiet for `heartbeat` seconds
                if batch and batch[-1].kind == TERMINAL_EVENT:
                    return
                if not batch and not caught_up:
                    caught_up = True
                    if task.terminal:  # finished, and every event after the cursor sent
                        return

    response = EventStream(events(), headers=STREAM_HEADERS)
    return response


SEEN_TASKS = 10_000  # tasks an all-tasks stream remembers (whether they match, its cursor)


async def all_tasks_stream(
    request: Request,
    state: ApiState,
    caller: Caller,
    where: Expr | None,
    dialect: Dialect,
) -> EventStream:
    """The SSE response of the events of every task the caller may see that matches `where`
    (decided when the stream first hears of the task). Live only: it starts with what is
    committed after it opens, and `id:` is "task_id:seq" for information (a reconnect does
    not resume it; follow one task's stream for that)."""
    streams = state.streams
    streams.check(caller.client_id)
    hub = state.service.events
    heartbeat = state.settings.event_heartbeat

    async def matching(ids: list[str]) -> set[str]:
        query = TaskQuery(
            where=all_of(Condition(TaskField.ID, Op.IN, tuple(ids)), where), limit=len(ids)
        )
        return {t.id for t in (await state.service.query(caller, query)).items}

    async def events() -> AsyncGenerator[bytes, None]:
        seen: OrderedDict[str, int | None] = OrderedDict()  # task -> cursor (None: no match)
        with streams.hold(caller.client_id), hub.follow(None, heartbeat) as follower:
            while True:
                follower.wake.clear()
                news, follower.news = follower.news, {}
                if not news:
                    if follower.beat:
                        follower.beat = False
                        yield HEARTBEAT
                    await follower.wake.wait()
                    continue
                unknown = [task_id for task_id in news if task_id not in seen]
                if unknown:
                    found = await matching(unknown)
                    for task_id in unknown:
                        seen[task_id] = news[task_id] - 1 if task_id in found else None
                    while len(seen) > SEEN_TASKS:
                        seen.popitem(last=False)
                chunks: list[bytes] = []
                for task_id in news:
                    cursor = seen.get(task_id)
                    if cursor is None:
                        continue
                    batch = await hub.read(task_id, cursor)
                    chunks.extend(
                        frame(
                            orjson.dumps(dialect.event(event)).decode(),
                            event.kind,
                            f"{task_id}:{event.seq}",
                        )
                        for event in batch
                    )
                    if batch:
                        seen[task_id] = batch[-1].seq
                if chunks:
                    follower.quiet()
                    yield b"".join(chunks)

    return EventStream(events(), headers=STREAM_HEADERS)
