"""ui_ms.*: the dashboard's pages (/ui) with 1 million stored tasks on PostgreSQL (the list
suite's database: bench/pg_plans.py's realistic mix, a quarter past the retention window),
through one server process, signed in as an admin client (every task) and as a reader whose
owner launched 1 task in 200. Each page 30 times after 3 to warm up; p50 and p95 in ms of the
whole request, timed at the client on localhost (the server's time plus well under a ms of
HTTP): overview (counts by state and status, oldest queued, throughput, workers), the list
(all, pending, a filter, a search in arguments over the last day and over every task), a
task, handlers, workers. A page whose
warm-up took over a second is sampled 5 times."""

from __future__ import annotations

import asyncio
import subprocess
import time
import uuid

import httpx

from bench.common import PG_ADMIN, median, percentile, server, taskstatus
from bench.lists import SIZES
from bench.pg_plans import load, url_of

REQUESTS = 30
WARMUP = 3
SLOW_MS, SLOW_REQUESTS = 1000.0, 5
PAGES = {
    "overview": "/ui",
    "tasks": "/ui/tasks",
    "tasks_pending": "/ui/tasks?view=pending",
    "tasks_filter": '/ui/tasks?filters=completionStatus in ("ERROR","TEMPERROR")&sort=-created',
    "tasks_search": "/ui/tasks?q=12345",  # in the tasks of the last day (the default)
    "tasks_search_all": "/ui/tasks?q=12345&within=all",  # every task: a full scan
    "task": "/ui/tasks/{id}",
    "handlers": "/ui/handlers",
    "workers": "/ui/workers",
}


def _client(url: str, scope: str, owner: str | None) -> dict[str, str]:
    import json

    extra = ["--owner", owner] if owner else []
    proc = taskstatus(
        "clients", "create", f"bench-ui-{uuid.uuid4().hex[:8]}", "--scope", scope, *extra,
        "--json", "--database", url, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
    )  # fmt: skip
    out, err = proc.communicate(timeout=60)
    if proc.returncode != 0:
        raise RuntimeError(err.decode())
    return dict(json.loads(out))


def _pages(base: str, creds: dict[str, str], label: str) -> dict[str, float]:
    figures: dict[str, float] = {}
    with httpx.Client(base_url=base, timeout=60) as http:
        r = http.post("/ui/login", data=creds)
        assert r.status_code == 303, r.text
        listed = http.get("/ui/tasks")
        marker = 'data-task-id="'
        task_id = listed.text.split(marker, 1)[1][:32]
        for name, path in PAGES.items():
            samples: list[float] = []
            requests = REQUESTS
            for i in range(WARMUP + REQUESTS):
                if i - WARMUP >= requests:
                    break
                start = time.perf_counter()
                r = http.get(path.format(id=task_id))
                elapsed = (time.perf_counter() - start) * 1000
                assert r.status_code == 200, (path, r.status_code, r.text[:300])
                if i >= WARMUP:
                    samples.append(elapsed)
                elif elapsed > SLOW_MS:
                    requests = SLOW_REQUESTS  # a page this slow: fewer samples tell enough
            figures[f"ui_ms_p50.{label}.{name}"] = median(samples)
            figures[f"ui_ms_p95.{label}.{name}"] = percentile(samples, 95)
            print(
                f"  ui {label:6} {name:14} p50 {median(samples):7.1f} ms  "
                f"p95 {percentile(samples, 95):7.1f} ms",
                flush=True,
            )
    return figures


def run(size: str = "1m") -> dict[str, float]:
    database = f"taskstatus_bench_list_{size}"
    asyncio.run(load(PG_ADMIN, database, SIZES[size], reuse=True))
    url = url_of(PG_ADMIN, database)
    admin = _client(url, "tasks:admin", None)
    reader = _client(url, "tasks:read", "user-7")
    figures: dict[str, float] = {}
    with server(url) as (base, _token):
        figures.update(_pages(base, admin, "admin"))
        figures.update(_pages(base, reader, "reader"))
    return figures
