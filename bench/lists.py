"""list_p95_ms.*: GET /v2024/task-status?filters=completionStatus eq "SUCCESS"&sorters=-created
&limit=250, without and with count=true, against 10 thousand, 100 thousand and 1 million stored
tasks on PostgreSQL (generated in bulk by bench/pg_plans.py's generator: a realistic mix, a
quarter past the retention window), through one server process. 200 requests each, after 20
to warm up; p95 in ms."""

from __future__ import annotations

import asyncio
import time

import httpx

from bench.common import PG_ADMIN, median, percentile, server
from bench.pg_plans import load, url_of

SIZES = {"10k": 10_000, "100k": 100_000, "1m": 1_000_000}
REQUESTS = 200
WARMUP = 20
PARAMS = {"filters": 'completionStatus eq "SUCCESS"', "sorters": "-created", "limit": "250"}


def _latencies(base: str, token: str, count: bool) -> tuple[list[float], int]:
    params = {**PARAMS, "count": "true"} if count else PARAMS
    samples: list[float] = []
    with httpx.Client(base_url=base, headers={"Authorization": f"Bearer {token}"}) as http:
        for i in range(WARMUP + REQUESTS):
            start = time.perf_counter()
            r = http.get("/v2024/task-status", params=params)
            elapsed = (time.perf_counter() - start) * 1000
            r.raise_for_status()
            assert len(r.json()) == 250
            if i >= WARMUP:
                samples.append(elapsed)
    return samples, int(r.headers.get("X-Total-Count", -1))


def run(sizes: tuple[str, ...] = tuple(SIZES)) -> dict[str, float]:
    figures: dict[str, float] = {}
    for size in sizes:
        database = f"taskstatus_bench_list_{size}"
        asyncio.run(load(PG_ADMIN, database, SIZES[size], reuse=True))
        with server(url_of(PG_ADMIN, database)) as (base, token):
            plain, _ = _latencies(base, token, count=False)
            counted, total = _latencies(base, token, count=True)
        figures[f"list_p95_ms.{size}"] = percentile(plain, 95)
        figures[f"list_p95_ms.{size}.count"] = percentile(counted, 95)
        figures[f"list_p50_ms.{size}"] = median(plain)
        print(
            f"  list {size}: p95 {percentile(plain, 95):.1f} ms (p50 {median(plain):.1f}); "
            f"count=true p95 {percentile(counted, 95):.1f} ms, X-Total-Count {total:,}",
            flush=True,
        )
    return figures
