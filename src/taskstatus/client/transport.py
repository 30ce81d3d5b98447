"""HTTP for the remote client: one httpx pool, the OAuth2 token, retries, typed errors.

- The token comes from ``POST /oauth/token`` (client credentials) once, and again shortly
  before it expires (at 90 % of its life, at most a minute early) or when the server refuses
  it once with a 401 (a restarted server, a rotated key).
- 429 and 503 are retried after the ``Retry-After`` the server sends, plus up to 20 % of
  jitter so that many clients do not come back at the same instant; without one, after an
  exponential backoff with full jitter. At most ``retries`` times, and never when the server
  asks to wait longer than ``max_retry_wait``: then the typed error is raised at once.
- A failed connection is retried for requests that are safe to repeat (reads, and submits,
  which always carry an idempotency key); others only when the request surely never left
  (connection refused or not made in time), since the server may have acted on it.
- Every error response becomes the exception `wire.error_from_response` gives, with the
  server's trackingId.
"""

from __future__ import annotations

import asyncio
import contextlib
import email.utils
import random
import time
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from importlib.metadata import PackageNotFoundError, version
from typing import Any

import httpx

from taskstatus.client.credentials import ClientCredentials
from taskstatus.errors import Unauthorized, Unreachable
from taskstatus.wire import error_from_response

__all__ = ["RetryPolicy", "Transport"]

# Failures where the request certainly did not reach the server.
_NOT_SENT = (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout)
_RETRY_STATUS = (429, 503)
_RETRY_SAFE_STATUS = (502, 504)  # a proxy in front of the server; only for safe requests


def _user_agent() -> str:
    try:
        return f"taskstatus-client/{version('taskstatus')}"
    except PackageNotFoundError:  # pragma: no cover - running from a source tree
        return "taskstatus-client"


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """How many times and how long the client retries (see the module doc)."""

    retries: int = 5
    max_retry_wait: float = 60.0
    backoff: float = 0.2
    max_backoff: float = 5.0

    def delay(self, attempt: int, retry_after: float | None) -> float:
        if retry_after is not None:
            return retry_after + random.uniform(0, 0.2 * max(retry_after, 0.5))  # noqa: S311
        return random.uniform(0, min(self.max_backoff, self.backoff * 2**attempt))  # noqa: S311


def retry_after(headers: Mapping[str, str]) -> float | None:
    """Seconds from a Retry-After header (delta-seconds or an HTTP date), or None."""
    value = headers.get("retry-after")
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - datetime.now(UTC)).total_seconds())


def _body(response: httpx.Response) -> Any:
    try:
        return response.json()
    except ValueError:
        return {"message": response.text[:500]}


class Transport:
    """One server: its pool, its token, and `request`/`stream` with the retry rules."""

    def __init__(
        self,
        base_url: str,
        credentials: ClientCredentials | None,
        *,
        timeout: float | httpx.Timeout | None = 30.0,
        policy: RetryPolicy | None = None,
        scope: str | None = None,
        max_connections: int = 20,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self.credentials = credentials
        self.policy = policy or RetryPolicy()
        self.scope = scope
        if timeout is None:
            self.timeout = httpx.Timeout(None)
        elif isinstance(timeout, httpx.Timeout):
            self.timeout = timeout
        else:
            self.timeout = httpx.Timeout(timeout, connect=min(timeout, 10.0))
        self.http = httpx.AsyncClient(
            base_url=self.base_url,
            timeout=self.timeout,
            limits=httpx.Limits(max_connections=max_connections, max_keepalive_connections=10),
            headers={"User-Agent": _user_agent(), "Accept": "application/json"},
            follow_redirects=False,
        )
        self._token: str | None = None
        self._renew_at = 0.0
        self._lock = asyncio.Lock()

    async def close(self) -> None:
        await self.http.aclose()

    # --- the token ------------------------------------------------------------------------

    async def token(self, *, renew: bool = False) -> str:
        """A valid access token: the cached one, or a new one when it is due."""
        if not renew and self._token is not None and time.monotonic() < self._renew_at:
            return self._token
        async with self._lock:  # concurrent requests wait for one fetch
            if not renew and self._token is not None and time.monotonic() < self._renew_at:
                return self._token
            self._token, lifetime = await self._fetch_token()
            self._renew_at = time.monotonic() + lifetime - min(60.0, 0.1 * lifetime)
            return self._token

    async def _fetch_token(self) -> tuple[str, float]:
        if self.credentials is None:
            raise Unauthorized(
                f"no credentials for {self.base_url}: pass client_id= and client_secret=, set "
                "TASKSTATUS_CLIENT_ID and TASKSTATUS_CLIENT_SECRET, point "
                "TASKSTATUS_CREDENTIALS_FILE at a credentials file, or run "
                f"`taskstatus login --url {self.base_url}`"
            )
        form = {
            "grant_type": "client_credentials",
            "client_id": self.credentials.client_id,
            "client_secret": self.credentials.client_secret,
        }
        if self.scope:
            form["scope"] = self.scope
        response = await self._send("POST", "/oauth/token", safe=True, data=form)
        body = response.json()
        return str(body["access_token"]), float(body.get("expires_in") or 300)

    # --- requests -------------------------------------------------------------------------

    async def request(
        self,
        method: str,
        path: str,
        *,
        safe: bool,
        params: Mapping[str, Any] | None = None,
        content: bytes | None = None,
        headers: Mapping[str, str] | None = None,
        timeout: float | None = None,
    ) -> httpx.Response:
        """An authenticated request; the 2xx response, or the typed error."""
        renewed = False
        while True:
            token = await self.token()
            try:
                return await self._send(
                    method,
                    path,
                    safe=safe,
                    params=params,
                    content=content,
                    headers={**(headers or {}), "Authorization": f"Bearer {token}"},
                    timeout=timeout,
                )
            except Unauthorized:
                if renewed:
                    raise
                renewed = True  # the server no longer takes our token: get one, once
                await self.token(renew=True)

    async def _send(
        self,
        method: str,
        path: str,
        *,
        safe: bool,
        timeout: float | None = None,
        **kwargs: Any,
    ) -> httpx.Response:
        attempt = 0
        extra: dict[str, Any] = {}
        if timeout is not None:
            extra["timeout"] = httpx.Timeout(timeout, connect=self.timeout.connect)
        while True:
            try:
                response = await self.http.request(method, path, **kwargs, **extra)
            except httpx.TransportError as e:
                if attempt >= self.policy.retries or not (safe or isinstance(e, _NOT_SENT)):
                    raise Unreachable(f"{method} {self.base_url}{path}: {_describe(e)}") from e
                await asyncio.sleep(self.policy.delay(attempt, None))
                attempt += 1
                continue
            if response.is_success:
                return response
            status = response.status_code
            wait = retry_after(response.headers)
            retryable = status in _RETRY_STATUS or (safe and status in _RETRY_SAFE_STATUS)
            if (
                retryable
                and attempt < self.policy.retries
                and (wait is None or wait <= self.policy.max_retry_wait)
            ):
                await asyncio.sleep(self.policy.delay(attempt, wait))
                attempt += 1
                continue
            raise error_from_response(status, _body(response), response.headers, retry_after=wait)

    @contextlib.asynccontextmanager
    async def stream(
        self,
        path: str,
        *,
        params: Mapping[str, Any] | None = None,
        headers: Mapping[str, str] | None = None,
        read_timeout: float | None = 90.0,
    ) -> AsyncIterator[httpx.Response]:
        """An authenticated streaming GET (connection failures are the caller's to retry);
        error statuses raise as `request` does, 429/503 after their Retry-After."""
        attempt, renewed = 0, False
        timeout = httpx.Timeout(self.timeout.connect, read=read_timeout)
        while True:
            token = await self.token()
            request = self.http.build_request(
                "GET",
                path,
                params=params,
                headers={
                    **(headers or {}),
                    "Authorization": f"Bearer {token}",
                    "Accept": "text/event-stream",
                },
                timeout=timeout,
            )
            response = await self.http.send(request, stream=True)
            if response.is_success:
                try:
                    yield response
                finally:
                    await response.aclose()
                return
            await response.aread()
            await response.aclose()
            status, wait = response.status_code, retry_after(response.headers)
            if status == 401 and not renewed:
                renewed = True
                await self.token(renew=True)
                continue
            if (
                status in _RETRY_STATUS
                and attempt < self.policy.retries
                and (wait is None or wait <= self.policy.max_retry_wait)
            ):
                await asyncio.sleep(self.policy.delay(attempt, wait))
                attempt += 1
                continue
            raise error_from_response(status, _body(response), response.headers, retry_after=wait)


def _describe(e: httpx.TransportError) -> str:
    text = str(e) or type(e).__name__
    return f"{type(e).__name__}: {text}" if text != type(e).__name__ else text
