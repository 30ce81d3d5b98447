"""The overview's throughput chart: tasks finished per minute over the last hour, by outcome,
as stacked bars of an inline SVG drawn on the server (no script, no chart library)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from taskstatus.model import CompletionStatus

__all__ = ["Bar", "Chart", "throughput_chart"]

WIDTH, HEIGHT, LEFT, BOTTOM, TOP = 720, 180, 40, 22, 8
ORDER = (
    CompletionStatus.SUCCESS,
    CompletionStatus.WARNING,
    CompletionStatus.ERROR,
    CompletionStatus.TEMPERROR,
    CompletionStatus.TERMINATED,
)


@dataclass(frozen=True, slots=True)
class Bar:
    x: float
    y: float
    width: float
    height: float
    status: str
    title: str


@dataclass(frozen=True, slots=True)
class Chart:
    width: int
    height: int
    bars: list[Bar]
    peak: int
    total: dict[str, int]
    ticks: list[tuple[float, str]]  # x, label (minutes ago)
    grid: list[tuple[float, str]]  # y, label (tasks per minute)
    left: int
    base: float


def _nice(peak: int) -> int:
    for step in (1, 2, 5, 10, 20, 25, 50, 100, 200, 250, 500, 1000, 2000, 5000, 10_000):
        if peak <= step * 4:
            return step * 4
    return peak


def throughput_chart(
    rows: Sequence[tuple[datetime, CompletionStatus, int]], now: datetime, minutes: int = 60
) -> Chart:
    first = now.replace(second=0, microsecond=0) - timedelta(minutes=minutes - 1)
    per_minute: list[dict[CompletionStatus, int]] = [{} for _ in range(minutes)]
    total = {s.value: 0 for s in ORDER}
    for minute, status, n in rows:
        index = int((minute - first).total_seconds() // 60)
        if 0 <= index < minutes:
            per_minute[index][status] = per_minute[index].get(status, 0) + n
            total[status.value] = total.get(status.value, 0) + n
    peak = max((sum(m.values()) for m in per_minute), default=0)
    scale_top = _nice(max(peak, 1))
    plot_w, plot_h = WIDTH - LEFT - 4, HEIGHT - BOTTOM - TOP
    slot = plot_w / minutes
    base = HEIGHT - BOTTOM
    bars = []
    for i, counts in enumerate(per_minute):
        y = float(base)
        when = (first + timedelta(minutes=i)).strftime("%H:%M")
        for status in ORDER:
            n = counts.get(status, 0)
            if not n:
                continue
            h = plot_h * n / scale_top
            y -= h
            bars.append(
                Bar(
                    LEFT + i * slot + 1,
                    y,
                    max(1.0, slot - 2),
                    h,
                    status.value,
                    f"{when} UTC: {n:,} {status.value}",
                )
            )
    ticks = [(LEFT + i * slot + slot / 2, f"-{minutes - 1 - i} min") for i in range(0, minutes, 10)]
    ticks.append((LEFT + (minutes - 1) * slot + slot / 2, "now"))
    grid = [(base - plot_h * k / 4, f"{scale_top * k // 4:,}") for k in range(5)]
    return Chart(WIDTH, HEIGHT, bars, peak, total, ticks, grid, LEFT, base)
