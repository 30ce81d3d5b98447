"""serve: the HTTP API with in-process workers, on uvicorn."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer
import uvicorn

from taskstatus.cli import DATABASE_DEFAULT, Database, Imports, app, configure_logging, load_modules
from taskstatus.cli.workers import (
    Demo,
    GracePeriod,
    LeaseSeconds,
    PollInterval,
    RecoverGrace,
    exit_past_stuck_threads,
)
from taskstatus.settings import Settings

_D = {name: f.default for name, f in Settings.model_fields.items()}


def _opt(name: str, help: str, **kw: Any) -> Any:
    return typer.Option(envvar=f"TASKSTATUS_{name.upper()}", help=help, **kw)


@app.command()
def serve(
    database: Database = DATABASE_DEFAULT,
    imports: Imports = None,
    host: Annotated[str, _opt("host", "Address to listen on")] = _D["host"],
    port: Annotated[int, _opt("port", "Port to listen on", min=0, max=65535)] = _D["port"],
    concurrency: Annotated[
        int, _opt("concurrency", "In-process worker slots (0: serve the API only)", min=0)
    ] = _D["concurrency"],
    lease_seconds: LeaseSeconds = _D["lease_seconds"],
    grace_period: GracePeriod = _D["grace_period"],
    recover_grace: RecoverGrace = None,
    poll_interval: PollInterval = _D["poll_interval"],
    retention_days: Annotated[
        float, _opt("retention_days", "Older tasks are not returned", min=0.0001)
    ] = _D["retention_days"],
    rate_limit: Annotated[
        float, _opt("rate_limit", "Requests/s per client (0: no limit)", min=0)
    ] = _D["rate_limit"],
    rate_burst: Annotated[int, _opt("rate_burst", "Burst per client", min=1)] = _D["rate_burst"],
    require_experimental_header: Annotated[
        bool,
        _opt("require_experimental_header", "Refuse v2024 calls without X-SailPoint-Experimental"),
    ] = _D["require_experimental_header"],
    token_ttl: Annotated[float, _opt("token_ttl", "Access token lifetime (s)", min=1)] = _D[
        "token_ttl"
    ],
    credentials_file: Annotated[
        Path, _opt("credentials_file", "Where the first start writes the admin credentials")
    ] = _D["credentials_file"],
    public_url: Annotated[
        str | None, _opt("public_url", "The URL clients reach this server at (for links)")
    ] = None,
    allowed_hosts: Annotated[
        str, _opt("allowed_hosts", "Host headers links may be built from (comma-separated, *)")
    ] = _D["allowed_hosts"],
    max_streams_per_client: Annotated[
        int, _opt("max_streams_per_client", "Event streams one API client may hold", min=1)
    ] = _D["max_streams_per_client"],
    event_heartbeat: Annotated[
        float, _opt("event_heartbeat", "Seconds between comments on idle event streams", min=1)
    ] = _D["event_heartbeat"],
    token_rate_limit: Annotated[
        float, _opt("token_rate_limit", "Token requests/s per address (0: no limit)", min=0)
    ] = _D["token_rate_limit"],
    max_body_bytes: Annotated[
        int, _opt("max_body_bytes", "Larger request bodies are refused (413)", min=1)
    ] = _D["max_body_bytes"],
    keep_alive: Annotated[
        int, _opt("keep_alive", "Seconds an idle keep-alive connection stays open", min=1)
    ] = _D["keep_alive"],
    telemetry: Annotated[
        bool, _opt("telemetry", "FastAPI's OpenTelemetry spans, metrics and logs")
    ] = _D["telemetry"],
    connect_timeout: Annotated[
        float, _opt("connect_timeout", "Seconds to wait for a new PostgreSQL connection", min=0.1)
    ] = _D["connect_timeout"],
    pool_timeout: Annotated[
        float, _opt("pool_timeout", "Seconds a request waits for a database connection", min=0.1)
    ] = _D["pool_timeout"],
    statement_timeout: Annotated[
        float, _opt("statement_timeout", "Seconds one PostgreSQL statement may run", min=0.1)
    ] = _D["statement_timeout"],
    busy_timeout: Annotated[
        float, _opt("busy_timeout", "Seconds a SQLite write waits for the write lock", min=0)
    ] = _D["busy_timeout"],
    access_log: Annotated[bool, _opt("access_log", "Log every request")] = True,
    demo: Demo = False,
) -> None:
    """Serve the HTTP API (with in-process workers) until SIGTERM or SIGINT."""
    from taskstatus.api import create_app
    from taskstatus.api.server import uvicorn_config

    configure_logging()
    if demo:
        import taskstatus.demo  # noqa: F401 - registers the demo handlers
    load_modules(imports)
    settings = Settings(
        database=database,
        host=host,
        port=port,
        concurrency=concurrency,
        lease_seconds=lease_seconds,
        grace_period=grace_period,
        recover_grace=recover_grace,
        poll_interval=poll_interval,
        retention_days=retention_days,
        rate_limit=rate_limit,
        rate_burst=rate_burst,
        require_experimental_header=require_experimental_header,
        token_ttl=token_ttl,
        credentials_file=credentials_file,
        public_url=public_url,
        allowed_hosts=allowed_hosts,
        token_rate_limit=token_rate_limit,
        max_body_bytes=max_body_bytes,
        keep_alive=keep_alive,
        telemetry=telemetry,
        connect_timeout=connect_timeout,
        pool_timeout=pool_timeout,
        statement_timeout=statement_timeout,
        busy_timeout=busy_timeout,
        max_streams_per_client=max_streams_per_client,
        event_heartbeat=event_heartbeat,
    )
    config = uvicorn_config(
        create_app(settings),
        settings,
        access_log=access_log,
        timeout_graceful_shutdown=int(grace_period) + 5,
    )
    uvicorn.Server(config).run()
    exit_past_stuck_threads()
