"""Tools for sending what a well-behaved client never would: raw HTTP/1.1 over a socket, a
response parser that keeps the connection open, and a snapshot of everything stored."""

from __future__ import annotations

import json
import socket
import sqlite3
import time
from contextlib import suppress
from dataclasses import dataclass
from typing import Any

import psycopg

from tests.api.conftest import Server

TABLES = ("tasks", "task_messages", "api_clients", "definitions")


def snapshot(server: Server) -> dict[str, list[tuple[Any, ...]]]:
    """Every row of the tables a request could change, in a stable order."""
    rows: dict[str, list[tuple[Any, ...]]] = {}
    if server.database.startswith("sqlite"):
        with sqlite3.connect(server.database.removeprefix("sqlite:///")) as db:
            for table in TABLES:
                rows[table] = sorted(db.execute(f"SELECT * FROM {table}").fetchall(), key=repr)
    else:
        with psycopg.connect(server.database) as db:
            for table in TABLES:
                fetched = db.execute(f"SELECT * FROM {table}").fetchall()
                rows[table] = sorted(fetched, key=repr)
    return rows


@dataclass
class RawResponse:
    status: int
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)

    @property
    def closes(self) -> bool:
        return self.headers.get("connection", "").lower() == "close"


class RawConnection:
    """One TCP connection to the server; send bytes, read whole responses."""

    def __init__(self, server: Server, timeout: float = 30.0) -> None:
        host, port = server.url.removeprefix("http://").split(":")
        self.sock = socket.create_connection((host, int(port)), timeout=timeout)
        self.buffer = b""

    def __enter__(self) -> RawConnection:
        return self

    def __exit__(self, *exc: object) -> None:
        self.sock.close()

    def send(self, data: bytes) -> None:
        """Send `data`; a server may answer (a 413) and close before it has read all of a
        body, so a send cut short is not an error: the answer stays readable, and urllib3
        reads it the same way."""
        with suppress(BrokenPipeError, ConnectionResetError):
            self.sock.sendall(data)

    def _more(self) -> bool:
        try:
            chunk = self.sock.recv(65536)
        except ConnectionResetError:
            return False
        self.buffer += chunk
        return bool(chunk)

    def response(self) -> RawResponse:
        while b"\r\n\r\n" not in self.buffer:
            assert self._more(), f"the connection closed before a response: {self.buffer!r}"
        head, _, self.buffer = self.buffer.partition(b"\r\n\r\n")
        status_line, *lines = head.decode("latin-1").split("\r\n")
        headers = {}
        for line in lines:
            name, _, value = line.partition(":")
            headers[name.strip().lower()] = value.strip()
        length = int(headers.get("content-length", "0"))
        while len(self.buffer) < length:
            assert self._more(), "the connection closed inside a response body"
        body, self.buffer = self.buffer[:length], self.buffer[length:]
        return RawResponse(int(status_line.split()[1]), headers, body)

    def closed_by_server(self) -> bool:
        """True once the server has closed the connection (EOF or reset)."""
        try:
            return self.sock.recv(1) == b""
        except (ConnectionResetError, BrokenPipeError):
            return True

    def still_usable(self) -> bool:
        """Whether another request on this connection gets its answer."""
        try:
            self.send(request("GET", "/health"))
            return self.response().status == 200
        except (AssertionError, OSError):
            return False


def request(
    method: str,
    target: str,
    headers: dict[str, str] | None = None,
    body: bytes | None = None,
    *,
    raw_headers: bytes = b"",
) -> bytes:
    """The bytes of an HTTP/1.1 request; Content-Length is added for a body unless given."""
    lines = [f"{method} {target} HTTP/1.1", "Host: 127.0.0.1"]
    given = {k.lower() for k in (headers or {})}
    for name, value in (headers or {}).items():
        lines.append(f"{name}: {value}")
    if body is not None and "content-length" not in given:
        lines.append(f"Content-Length: {len(body)}")
    head = "\r\n".join(lines).encode("latin-1") + b"\r\n" + raw_headers + b"\r\n"
    return head + (body or b"")


def wait_closed(conn: RawConnection, within: float) -> float:
    """Seconds until the server closed `conn`; fails past `within`."""
    start = time.monotonic()
    conn.sock.settimeout(within)
    try:
        while conn._more():
            pass
    except TimeoutError:
        raise AssertionError(f"the server kept the connection open past {within} s") from None
    return time.monotonic() - start
