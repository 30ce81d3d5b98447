"""Many SSE streams read as cheaply as Python allows, in a process of their own (used by
bench/events.py's `streams`): raw asyncio connections (uvloop when installed), a GET with the
bearer token, the chunked body decoded by hand, and only the `id:` lines kept. No HTTP client
library per stream: the readers must cost the machine little next to the server they load.

    python -m bench.sse_readers HOST PORT PATH COUNT   (the token on stdin, one line)

Prints `opened` once every stream has had its `snapshot` event, then, when every stream has
ended (the server ends it after the task's terminal event), one JSON line: each stream's
event ids in the order they came, and any errors.
"""

from __future__ import annotations

import asyncio
import json
import sys


class _Stream:
    """One response: its chunked body decoded, its lines split, its `id:` values kept."""

    def __init__(self) -> None:
        self.ids: list[int] = []
        self.snapshot = False
        self.ended = False
        self._raw = b""  # chunked transfer coding not decoded yet
        self._chunk_left = 0  # bytes of the current chunk still to come (+2 for its CRLF)
        self._text = b""  # decoded body not split into lines yet

    def feed(self, data: bytes) -> None:
        raw = self._raw + data
        body = []
        at = 0
        while at < len(raw):
            if self._chunk_left:
                part = raw[at : at + self._chunk_left]
                at += len(part)
                self._chunk_left -= len(part)
                body.append(part)
                continue
            end = raw.find(b"\r\n", at)
            if end < 0:
                break
            size = int(raw[at:end], 16)
            at = end + 2
            if size == 0:
                self.ended = True
                break
            self._chunk_left = size + 2  # the chunk and the CRLF after it
        self._raw = raw[at:]
        text = self._text + b"".join(body)
        *lines, self._text = text.split(b"\n")
        for line in lines:
            if line.startswith(b"id:"):
                self.ids.append(int(line[3:]))
            elif not self.snapshot and line.startswith(b"event: snapshot"):
                self.snapshot = True


async def _one(
    host: str, port: int, request: bytes, opened: list[int], all_open: asyncio.Event
) -> list[int]:
    reader, writer = await asyncio.open_connection(host, port)
    try:
        writer.write(request)
        head = await reader.readuntil(b"\r\n\r\n")
        status = head.split(b" ", 2)[1]
        if status != b"200":
            raise RuntimeError(f"HTTP {status.decode()}: {head[:200]!r}")
        if b"chunked" not in head.lower():
            raise RuntimeError(f"not a chunked response: {head[:200]!r}")
        stream = _Stream()
        counted = False
        while not stream.ended:
            data = await reader.read(65536)
            if not data:
                raise RuntimeError("the connection closed before the body ended")
            stream.feed(data)
            if stream.snapshot and not counted:
                counted = True
                opened[0] += 1
                if opened[0] == opened[1]:
                    all_open.set()
        return stream.ids
    finally:
        writer.close()


async def main(host: str, port: int, path: str, count: int, token: str) -> None:
    request = (
        f"GET {path} HTTP/1.1\r\nHost: {host}:{port}\r\nAuthorization: Bearer {token}\r\n"
        "Accept: text/event-stream\r\n\r\n"
    ).encode()
    opened = [0, count]  # streams that had their snapshot, of count
    all_open = asyncio.Event()

    async def announce() -> None:
        await all_open.wait()
        print("opened", flush=True)

    announcer = asyncio.create_task(announce())
    results = await asyncio.gather(
        *(_one(host, port, request, opened, all_open) for _ in range(count)),
        return_exceptions=True,
    )
    announcer.cancel()
    ids = [r for r in results if isinstance(r, list)]
    errors = [repr(r) for r in results if not isinstance(r, list)]
    print(json.dumps({"ids": ids, "errors": errors}), flush=True)


if __name__ == "__main__":
    host, port, path, count = sys.argv[1], int(sys.argv[2]), sys.argv[3], int(sys.argv[4])
    token = sys.stdin.readline().strip()
    try:
        import uvloop

        runner = uvloop.run
    except ImportError:
        runner = asyncio.run
    runner(main(host, port, path, count, token))
