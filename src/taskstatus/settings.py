"""Every setting, from flags or ``TASKSTATUS_*`` environment variables, with defaults that run
locally with no setup. The CLI passes its flags as overrides; `create_app()` reads the
environment when another ASGI server runs the app.
"""

from __future__ import annotations

import os
from pathlib import Path

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from taskstatus import limits
from taskstatus.store.base import StoreLimits

__all__ = [
    "CLAIM_AHEAD_MS",
    "CONCURRENCY",
    "DEFAULT_DATABASE",
    "GRACE_PERIOD",
    "LEASE_SECONDS",
    "POLL_INTERVAL",
    "Settings",
    "StoreSettings",
    "default_database",
]

DEFAULT_DATABASE = "sqlite:///./taskstatus.db"
# A worker's defaults: WorkerOptions, `taskstatus worker` and `serve`'s in-process workers.
CONCURRENCY = 10  # tasks run at once
LEASE_SECONDS = 30.0  # how long a claim lasts unrenewed
POLL_INTERVAL = 1.0  # idle poll, a safety net for wake-ups
CLAIM_AHEAD_MS = 20.0  # claim ahead what the slots are expected to start this soon (0: off)
GRACE_PERIOD = 30.0  # seconds running tasks get on shutdown


def default_database() -> str:
    return os.environ.get("TASKSTATUS_DATABASE") or DEFAULT_DATABASE


class StoreSettings(BaseSettings):
    """How long the store waits for the database (every command and `connect()` read these
    from the environment; see taskstatus.store.base.StoreLimits)."""

    model_config = SettingsConfigDict(env_prefix="TASKSTATUS_", extra="ignore")

    connect_timeout: float = Field(
        3.0, gt=0, le=3600, description="Seconds to wait for a new PostgreSQL connection"
    )
    pool_timeout: float = Field(
        3.0, gt=0, le=3600, description="Seconds an operation waits for a pooled connection"
    )
    statement_timeout: float = Field(
        30.0, gt=0, le=86400, description="Seconds one PostgreSQL statement may run"
    )
    busy_timeout: float = Field(
        5.0, ge=0, le=3600, description="Seconds a SQLite write waits for the write lock"
    )

    def limits(self) -> StoreLimits:
        return StoreLimits(
            connect_timeout=self.connect_timeout,
            pool_timeout=self.pool_timeout,
            statement_timeout=self.statement_timeout,
            busy_timeout=self.busy_timeout,
        )


class Settings(StoreSettings):
    model_config = SettingsConfigDict(env_prefix="TASKSTATUS_", extra="ignore")

    database: str = Field(DEFAULT_DATABASE, description="sqlite:///file.db or postgresql://...")
    imports: list[str] = Field(
        default_factory=list, description="Modules to import for their @handler definitions"
    )

    # workers
    concurrency: int = Field(
        CONCURRENCY, ge=0, description="Tasks run at once per process (0: none)"
    )
    lease_seconds: float = Field(
        LEASE_SECONDS, gt=0, description="How long a claim lasts unrenewed"
    )
    poll_interval: float = Field(
        POLL_INTERVAL, gt=0, description="Idle poll, a safety net for wake-ups"
    )
    grace_period: float = Field(
        GRACE_PERIOD, ge=0, description="Seconds running tasks get on shutdown"
    )
    recover_grace: float | None = Field(
        None,
        ge=0,
        description="Seconds a lease must stay expired, with the store reachable, before another "
        "node recovers its task (default: the lease): time for cut-off workers to renew",
    )

    # HTTP API
    host: str = Field("127.0.0.1", description="Address to listen on")
    port: int = Field(8000, ge=0, le=65535, description="Port to listen on")
    retention_days: float = Field(90.0, gt=0, description="Older tasks are not returned")
    rate_limit: float = Field(100.0, ge=0, description="Requests/s per client (0: no limit)")
    rate_burst: int = Field(200, ge=1, description="Requests a client may make at once")
    token_rate_limit: float = Field(5.0, ge=0, description="Token requests/s per address")
    require_experimental_header: bool = Field(
        False, description="Refuse v2024 requests without X-SailPoint-Experimental: true"
    )
    token_ttl: float = Field(3600.0, gt=0, description="Access token lifetime in seconds")
    jwt_secret: str | None = Field(
        None,
        min_length=32,
        description="HS256 key (32+ characters); by default one is created and shared through "
        "the database",
    )
    max_body_bytes: int = Field(
        limits.MAX_BODY_BYTES, ge=1, description="Larger request bodies are refused (413)"
    )
    max_header_bytes: int = Field(
        limits.MAX_HEADER_BYTES,
        ge=1024,
        description="Larger request lines and headers are refused (431)",
    )
    header_timeout: float = Field(
        limits.HEADER_TIMEOUT, gt=0, description="Seconds a client has to send a request's headers"
    )
    body_timeout: float = Field(
        limits.BODY_TIMEOUT, gt=0, description="Seconds a client has to send a request's body"
    )
    keep_alive: int = Field(
        75,
        gt=0,
        le=3600,
        description="Seconds an idle keep-alive connection stays open; longer than clients' "
        "and proxies' own idle timeouts (httpx 5 s, load balancers 60 s), so that the client, "
        "never the server, closes it and no request meets a connection closing under it",
    )
    max_streams_per_client: int = Field(
        100, ge=1, description="Event streams (SSE) one API client may hold open at once"
    )
    event_heartbeat: float = Field(
        15.0, gt=0, description="Seconds between comment lines on an idle event stream"
    )
    telemetry: bool = Field(
        False,
        description="FastAPI's OpenTelemetry spans, metrics and logs (needs configured "
        "providers); off, requests skip the per-request provider checks",
    )
    public_url: str | None = Field(
        None,
        description="The URL clients reach this server at (https://tasks.example.com); links "
        "the server builds (Jira's self) start with it",
    )
    allowed_hosts: str = Field(
        "localhost,127.0.0.1,[::1]",
        description="Without public_url: the Host header values links may be built from, "
        "comma-separated (a port is optional; * allows any); another Host gets a 400",
    )
    auth_failure_rate: float = Field(
        0.2, ge=0, description="Failed authentications/s allowed per client id and per address"
    )
    auth_failure_burst: int = Field(
        10, ge=1, description="Failed authentications allowed at once before 429s begin"
    )
    max_subtask_depth: int = Field(
        limits.MAX_SUBTASK_DEPTH, ge=0, description="Levels of parents above a task"
    )
    max_subtasks: int = Field(limits.MAX_SUBTASKS, ge=0, description="Subtasks of one task")
    credentials_file: Path = Field(
        Path("taskstatus-credentials.json"),
        description="Where the first start writes the admin client's credentials (mode 0600)",
    )
