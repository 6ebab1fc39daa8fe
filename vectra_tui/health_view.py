"""Turning a `HealthReport` plus the event digest into a `ConsoleSnapshot`.

The embedded foundation, a remote daemon and the test fake all describe themselves with the same
typed report, so every console port builds its snapshot here, and the panels can only show what a
daemon can report. No report yet (a daemon not reached so far) shows as "down", nothing else known.
"""

from __future__ import annotations

from typing import Any

from core.contracts.fields import as_float
from core.contracts.health import HealthReport, OrdersHealth, RecordingHealth
from vectra_tui.desk_digest import DeskTracker
from vectra_tui.digest import EventDigest
from vectra_tui.view import (
    ChromeView,
    ConnectionView,
    ConsoleSnapshot,
    PlayerView,
    RecordingView,
    SourceLink,
    SubscribersView,
)


def _whole_seconds(value: float | None) -> int | None:
    return None if value is None else int(value)


def _coarse_age(ms: int | None) -> int | None:
    """Ages to the precision the panel shows (under a second, or whole seconds), so the
    Connection panel repaints once a second on a busy feed rather than at every refresh."""
    if ms is None:
        return None
    return 0 if ms < 1000 else ms // 1000 * 1000


def connection_view(report: HealthReport | None, unreachable: str | None = None) -> ConnectionView:
    if report is None:
        return ConnectionView(status="down", state=None, url=None, unreachable=unreachable)
    connection = report.connection
    return ConnectionView(
        status=report.status,
        state=connection.state,
        url=connection.url,
        sources=tuple(
            SourceLink(name=name, **link.model_dump(include={"state", "url", "reason", "attempt", "reconnects"}))
            for name, link in connection.sources.items()
        ),
        reconnects=connection.reconnects,
        uptime_s=_whole_seconds(report.uptime_s),
        feed_age_ms=_coarse_age(connection.last_frame_age_ms),
        unreachable=unreachable,
    )


def recording_view(recording: RecordingHealth, available: bool) -> RecordingView:
    return RecordingView(
        available=available,
        on=recording.on,
        state=recording.state,
        path=recording.path,
        rows=recording.rows,
        bytes=recording.bytes + recording.wal_bytes,
        reason=recording.reason,
    )


def chrome_view(report: HealthReport) -> ChromeView | None:
    chrome = report.chrome
    if chrome is None:
        return None
    shown = chrome.model_dump(include={"state", "pid", "profile", "cdp_port", "tab_url", "reason"})
    return ChromeView(**shown, user=chrome.authenticated_as)


def subscribers_view(report: HealthReport) -> SubscribersView:
    websocket = report.websocket
    return SubscribersView(
        ws=report.subscribers.ws,
        zmq=report.subscribers.zmq,
        closed_slow=websocket.closed_slow if websocket is not None else None,
        closed_flood=websocket.closed_flood if websocket is not None else None,
    )


def player_view(orders: OrdersHealth | None, desk: DeskTracker) -> PlayerView:
    """The desk's switches from the report, the orders and the player's figures from the events."""
    if orders is None:
        return PlayerView()
    state = desk.player
    return PlayerView(
        available=True,
        **orders.model_dump(include={"mode", "halted", "executor", "executor_problem"}),
        username=state.get("username") if isinstance(state.get("username"), str) else None,
        cash=as_float(state.get("cash")),
        position_qty=as_float(state.get("positionQty")),
        avg_cost=as_float(state.get("avgCost")),
        cumulative_pnl=as_float(state.get("cumulativePnL")),
        pnl_percent=as_float(state.get("pnlPercent")),
        sidebet=_stake(state.get("sidebet")) if state else None,
        short=_stake(state.get("shortPosition")) if state else None,
        in_flight=tuple(desk.in_flight.values()),
        recent=tuple(desk.recent),
    )


def _stake(position: Any) -> float:
    """The SOL at stake in a sidebet or a short (its shape is the server's: the first amount it names)."""
    if not isinstance(position, dict):
        return 0.0
    return next((amount for key in ("betAmount", "amount") if (amount := as_float(position.get(key))) is not None), 0.0)


def console_snapshot(
    report: HealthReport | None,
    digest: EventDigest,
    *,
    mode: str,
    taken_at_ms: int,
    unreachable: str | None = None,
    recorder_available: bool = True,
) -> ConsoleSnapshot:
    latency = report.latency_ms if report is not None else None
    return ConsoleSnapshot(
        mode=mode,
        taken_at_ms=taken_at_ms,
        connection=connection_view(report, unreachable),
        latency=digest.latency_view(
            latency.feed_rtt if latency else None,
            latency.pipeline.p50 if latency else None,
            latency.pipeline.p99 if latency else None,
        ),
        rates=digest.rates_view(report.events_per_s, report.events_total) if report else digest.rates_view(),
        game=digest.game_view(),
        chrome=chrome_view(report) if report else None,
        recording=recording_view(report.recording, recorder_available) if report else RecordingView(),
        subscribers=subscribers_view(report) if report else SubscribersView(),
        player=player_view(report.orders if report else None, digest.desk),
        events=digest.events(),
    )
