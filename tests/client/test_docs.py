"""The examples of docs/client.md run as written against a real server."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

from tests.client.server import ROOT, Server, clean_env

DOC = ROOT / "docs" / "client.md"


def test_python_examples_of_the_client_page_run(server: Server, tmp_path: Path) -> None:
    """Each python block of docs/client.md runs without error, pointed at the test server,
    with its credentials only in ./taskstatus-credentials.json (what the quick start's server
    writes, and what the client reads for a server on this host)."""
    blocks = re.findall(r"```python\n(.*?)```", DOC.read_text(), re.S)
    runnable = [b for b in blocks if "127.0.0.1:8000" in b]
    assert len(runnable) >= 2
    (tmp_path / "taskstatus-credentials.json").write_text(json.dumps(server.credentials))
    for block in runnable:
        code = block.replace("http://127.0.0.1:8000", server.url)
        done = subprocess.run(
            [sys.executable, "-c", code],
            cwd=tmp_path,
            env=clean_env(TASKSTATUS_CONFIG_DIR=str(tmp_path / "config")),
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert done.returncode == 0, f"{code}\n{done.stdout}\n{done.stderr}"
