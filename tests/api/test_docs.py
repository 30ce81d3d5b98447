"""The interactive docs work without internet: every file they load comes from the server."""

from __future__ import annotations

import re

import httpx

from tests.api.conftest import Server


def test_docs_load_only_local_files(idle_server: Server) -> None:
    """/docs and /redoc reference no other host, and every script, style and icon they name
    is served here; / leads to the dashboard, whose sign-in page links /docs."""
    with httpx.Client(base_url=idle_server.url) as http:
        root = http.get("/")
        assert root.status_code in (302, 307) and root.headers["location"] == "/ui"
        assert 'href="/docs"' in http.get("/ui/login").text
        for page in ("/docs", "/redoc"):
            html = http.get(page)
            assert html.status_code == 200, page
            urls = re.findall(r"""(?:src|href|url)\s*[=:]\s*['"]([^'"]+)['"]""", html.text)
            assert urls, page
            assert not [u for u in urls if "://" in u or u.startswith("//")], urls
            for url in urls:
                if url.startswith("/docs/static/"):
                    asset = http.get(url)
                    assert asset.status_code == 200 and len(asset.content) > 1000, url
        assert "/openapi.json" in http.get("/docs").text
        assert http.get("/docs/oauth2-redirect").status_code == 200
