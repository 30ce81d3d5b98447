"""schemathesis over the whole OpenAPI document, every operation, against a running server
(`taskstatus serve`, uvicorn, in its own process) on SQLite and on PostgreSQL: no response is
>= 500, and every response matches the document (status code, content type, headers, body).

Run through schemathesis's own command line, as CI would run it by hand. Checks left out:
positive_data_acceptance and negative_data_rejection judge the request schemas, which cannot
express the filter grammar or the handlers' argument schemas (a schema-valid filter string
is rarely a valid filter: a 400 is the right answer).
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.fuzz.conftest import ERRORS_5XX, SENT, Live

pytestmark = [pytest.mark.slow, pytest.mark.timeout(900)]
MAX_EXAMPLES = 40  # per operation and phase: about 1,500 requests, under 90 s per backend
CHECKS = ",".join(
    [
        "not_a_server_error",
        "status_code_conformance",
        "content_type_conformance",
        "response_headers_conformance",
        "response_schema_conformance",
        "missing_required_header",
        "unsupported_method",
        "allow_header_conformance",
        "ignored_auth",
    ]
)
SCHEMATHESIS = Path(sys.executable).with_name("schemathesis")


def test_every_operation_keeps_its_documented_contract(live: Live, tmp_path: Path) -> None:
    """Generated requests, valid and invalid, to every operation: no 5xx, and each answer is
    one the OpenAPI document allows."""
    report = tmp_path / "schemathesis.json"
    before, before_5xx = live.answered()
    run = subprocess.run(
        [
            *(str(SCHEMATHESIS), "run", f"{live.url}/openapi.json"),
            *("--header", f"Authorization: Bearer {live.token}"),
            *("--checks", CHECKS, "--max-examples", str(MAX_EXAMPLES), "--seed", "10"),
            # one worker: ast.parse in two threads at once trips a CPython 3.11 bug
            # ("AST constructor recursion depth mismatch", gh-106905) inside hypothesis
            *("--phases", "examples,fuzzing,stateful", "--workers", "1"),
            # The all-tasks event stream never ends, and schemathesis reads a response to its
            # end; tests/api/test_events.py checks it. A task's stream ends with its task (the
            # generated ids name none: 400 or 404), so those are fuzzed.
            *("--exclude-operation-id-regex", "^get_task_status_all_events_"),
            *("--report", "json", "--report-json-path", str(report), "--warnings", "off"),
            "--no-color",
        ],
        capture_output=True,
        text=True,
        cwd=tmp_path,  # its crash cache goes there, not into the repository
        timeout=600,
        check=False,
    )
    after, after_5xx = live.answered()
    key = f"schemathesis {live.backend}"
    SENT[key] += after - before
    ERRORS_5XX[key] += after_5xx - before_5xx
    summary = json.loads(report.read_text())
    operations = summary["operations"]
    assert operations["selected"] > 30, json.dumps(operations)
    errors = run.stdout[run.stdout.find("Runtime Error") - 2000 :][:6000]
    assert operations["tested"] + operations["skipped"] == operations["selected"], errors
    assert after_5xx == before_5xx, run.stdout[-6000:]
    assert run.returncode == 0, run.stdout[-8000:]
