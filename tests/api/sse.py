"""A small Server-Sent Events reader for the tests, over httpx (no client library hides what
the server sends: each event's id, kind and data as they arrive, comments included)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import httpx


@dataclass
class Event:
    id: str | None
    event: str
    data: Any


def events(response: httpx.Response, comments: list[str] | None = None) -> Iterator[Event]:
    """The events of an open text/event-stream response, parsed as the SSE spec says."""
    fields: dict[str, list[str]] = {}
    for line in response.iter_lines():
        if line == "":
            if "data" in fields:
                ids = fields.get("id")
                yield Event(
                    ids[-1] if ids else None,
                    fields.get("event", ["message"])[-1],
                    json.loads("\n".join(fields["data"])),
                )
            fields = {}
            continue
        if line.startswith(":"):
            if comments is not None:
                comments.append(line)
            continue
        name, _, value = line.partition(":")
        fields.setdefault(name, []).append(value.removeprefix(" "))


def read(response: httpx.Response, count: int | None = None) -> list[Event]:
    """`count` events (or all until the stream ends)."""
    out = []
    for event in events(response):
        out.append(event)
        if count is not None and len(out) == count:
            break
    return out
