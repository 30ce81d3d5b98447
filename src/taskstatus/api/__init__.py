"""The HTTP API: ``create_app()`` builds the ASGI application."""

from taskstatus.api.app import create_app

__all__ = ["create_app"]
