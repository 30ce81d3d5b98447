"""Every setting, from flags or ``TASKSTATUS_*`` environment variables, with defaults that run
locally with no setup. The CLI passes its flags as overrides; `create_app()` reads the
environment when another ASGI server runs the app.
"""

from __future__ import annotations

import os

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

__all__ = ["DEFAULT_DATABASE", "Settings", "default_database"]

DEFAULT_DATABASE = "sqlite:///./taskstatus.db"


def default_database() -> str:
    return os.environ.get("TASKSTATUS_DATABASE") or DEFAULT_DATABASE


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="TASKSTATUS_", extra="ignore")

    database: str = Field(DEFAULT_DATABASE, description="sqlite:///file.db or postgresql://...")
    imports: list[str] = Field(
        default_factory=list, description="Modules to import for their @handler definitions"
    )

    # workers
    concurrency: int = Field(10, ge=0, description="Tasks run at once per process (0: none)")
    lease_seconds: float = Field(30.0, gt=0, description="How long a claim lasts unrenewed")
    poll_interval: float = Field(1.0, gt=0, description="Idle poll, a safety net for wake-ups")
    grace_period: float = Field(30.0, ge=0, description="Seconds running tasks get on shutdown")
