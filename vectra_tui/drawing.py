"""Small text drawings: sparklines, a block chart, and compact numbers and ages.

Plain functions of their input, so a panel's text depends on nothing but the snapshot (and the
screenshot tests stay deterministic).
"""

from __future__ import annotations

import time
from typing import Sequence

BARS = " ▁▂▃▄▅▆▇█"


def sparkline(values: Sequence[float], width: int) -> str:
    """The last `width` values as one row of bars, scaled to their own maximum."""
    if width <= 0:
        return ""
    shown = list(values)[-width:]
    if not shown:
        return ""
    top = max(shown)
    if top <= 0:
        return BARS[1] * len(shown)
    return "".join(BARS[max(1, round(value / top * 8))] if value > 0 else BARS[1] for value in shown)


def block_chart(values: Sequence[float], width: int, height: int) -> list[str]:
    """`height` rows of bars drawing `values` stretched or squeezed to `width` columns, low to high."""
    if width <= 0 or height <= 0 or not values:
        return []
    columns = [values[min(len(values) - 1, int(i * len(values) / width))] for i in range(min(width, len(values)))]
    low, high = min(columns), max(columns)
    span = (high - low) or 1.0
    levels = [round((value - low) / span * (height * 8 - 1)) + 1 for value in columns]
    rows = []
    for row in range(height - 1, -1, -1):
        floor = row * 8
        rows.append("".join(BARS[max(0, min(8, level - floor))] for level in levels))
    return rows


def count(value: float | int | None) -> str:
    if value is None:
        return "—"
    for unit, size in (("G", 1e9), ("M", 1e6), ("k", 1e3)):
        if abs(value) >= size:
            return f"{value / size:.1f}{unit}"
    return f"{value:g}" if isinstance(value, float) else str(value)


def size(value: int | None) -> str:
    if value is None:
        return "—"
    for unit, factor in (("GB", 1 << 30), ("MB", 1 << 20), ("kB", 1 << 10)):
        if value >= factor:
            return f"{value / factor:.1f} {unit}"
    return f"{value} B"


def millis(value: float | None) -> str:
    if value is None:
        return "—"
    return f"{value:.0f} ms" if value >= 100 else f"{value:.2f} ms"


def duration(seconds: float | None) -> str:
    if seconds is None:
        return "—"
    seconds = int(seconds)
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    if hours:
        return f"{hours}h{minutes:02d}m"
    if minutes:
        return f"{minutes}m{secs:02d}s"
    return f"{secs}s"


def countdown(ms: int | None) -> str:
    return "—" if ms is None else f"{ms / 1000:.1f} s"


def age(ms: int | None) -> str:
    if ms is None:
        return "never"
    return "<1 s ago" if ms < 1000 else f"{duration(ms / 1000)} ago"


def price(value: float | None) -> str:
    return "—" if value is None else f"{value:.3f}x"


def clock(timestamp_ms: int) -> str:
    """HH:MM:SS.mmm in UTC (the feed's timestamps are UTC; a server console should not guess a zone)."""
    seconds, ms = divmod(timestamp_ms, 1000)
    return time.strftime("%H:%M:%S", time.gmtime(seconds)) + f".{ms:03d}"


def clip(text: str, width: int) -> str:
    return text if len(text) <= width else text[: max(0, width - 1)] + "…"
