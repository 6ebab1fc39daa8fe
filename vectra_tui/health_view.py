"""Turning a `/health` report plus the event digest into a `ConsoleSnapshot`.

The embedded foundation and a remote daemon both describe themselves with the same health report,
so both console ports build their snapshot here. Sections owned by other components (recording,
chrome, subscribers) are read defensively: a missing or partial section shows as "not available",
never as a crash.
"""

from __future__ import annotations

from typing import Any

from vectra_tui.digest import EventDigest
from vectra_tui.view import (
    ChromeView,
    ConnectionView,
    ConsoleSnapshot,
    RecordingView,
    SourceLink,
    SubscribersView,
)


def _section(report: dict[str, Any], key: str) -> dict[str, Any]:
    value = report.get(key)
    return value if isinstance(value, dict) else {}


def _whole_seconds(value: float | None) -> int | None:
    return None if value is None else int(value)


def _coarse_age(ms: int | None) -> int | None:
    """Ages to the precision the panel shows (under a second, or whole seconds), so the
    Connection panel repaints once a second on a busy feed rather than at every refresh."""
    if ms is None:
        return None
    return 0 if ms < 1000 else ms // 1000 * 1000


def connection_view(report: dict[str, Any], unreachable: str | None = None) -> ConnectionView:
    connection = _section(report, "connection")
    sources = tuple(
        SourceLink(
            name=name,
            state=str(entry.get("state")),
            url=entry.get("url"),
            reason=entry.get("reason"),
            attempt=entry.get("attempt") or 0,
            reconnects=entry.get("reconnects") or 0,
        )
        for name, entry in _section(connection, "sources").items()
        if isinstance(entry, dict)
    )
    return ConnectionView(
        status=report.get("status") or "down",
        state=connection.get("state"),
        url=connection.get("url"),
        sources=sources,
        reconnects=connection.get("reconnects") or 0,
        uptime_s=_whole_seconds(report.get("uptime_s")),
        last_event_age_ms=_coarse_age(connection.get("last_event_age_ms")),
        unreachable=unreachable,
    )


def recording_view(report: dict[str, Any], available: bool) -> RecordingView:
    section = report.get("recording")
    if not isinstance(section, dict):
        return RecordingView()
    return RecordingView(
        available=available,
        on=bool(section.get("on")),
        state=section.get("state"),
        path=section.get("path"),
        rows=section.get("rows"),
        bytes=section.get("bytes"),
        reason=section.get("reason"),
    )


def chrome_view(report: dict[str, Any]) -> ChromeView | None:
    section = report.get("chrome")
    if section is None:
        return None
    if not isinstance(section, dict):
        return ChromeView(state=str(section))
    return ChromeView(
        state=section.get("state"),
        pid=section.get("pid"),
        profile=section.get("profile"),
        cdp_port=section.get("cdp_port"),
        tab_url=section.get("tab_url"),
        user=section.get("authenticated_as") or section.get("user"),
        reason=section.get("reason"),
    )


def subscribers_view(report: dict[str, Any]) -> SubscribersView:
    """Counts from `subscribers`, or from each transport's own section when `subscribers` holds only one."""
    section = _section(report, "subscribers")
    websocket = _section(report, "websocket")
    zmq = _section(report, "zmq")
    slow = section.get("slow") or ()
    if isinstance(slow, int):
        slow = (f"{slow} slow",)
    return SubscribersView(
        ws=section.get("ws", websocket.get("clients")),
        zmq=section.get("zmq", zmq.get("subscribers")),
        slow=tuple(str(item) for item in slow),
        cut_off=section.get("cut_off", websocket.get("closed_slow")),
    )


def console_snapshot(
    report: dict[str, Any],
    digest: EventDigest,
    *,
    mode: str,
    taken_at_ms: int,
    unreachable: str | None = None,
    recorder_available: bool = True,
) -> ConsoleSnapshot:
    latency = _section(report, "latency_ms")
    pipeline = _section(latency, "pipeline")
    return ConsoleSnapshot(
        mode=mode,
        taken_at_ms=taken_at_ms,
        connection=connection_view(report, unreachable),
        latency=digest.latency_view(latency.get("feed_rtt"), pipeline.get("p50"), pipeline.get("p99")),
        rates=digest.rates_view(report.get("events_per_s")),
        game=digest.game_view(),
        chrome=chrome_view(report),
        recording=recording_view(report, recorder_available),
        subscribers=subscribers_view(report),
        events=digest.events(),
    )
