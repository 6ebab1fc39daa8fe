"""What the console shows, as plain immutable values.

The console never reads the core's objects: every implementation of the port turns whatever it has
(an in-process foundation, a remote daemon's replies, canned test data) into one `ConsoleSnapshot`.
Frozen dataclasses compare by value, so a panel redraws only when its own part really changed.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Protocol

FAMILIES = ("game", "player", "raw", "errors")


class LoggedEvent(Protocol):
    """The fields of an event the log shows (a `core.contracts.envelope.Envelope` has them)."""

    seq: int
    type: str
    timestamp: int
    gameId: str | None
    data: dict[str, Any]


@dataclass(frozen=True)
class SourceLink:
    name: str
    state: str
    url: str | None
    reason: str | None = None
    attempt: int = 0
    reconnects: int = 0


@dataclass(frozen=True)
class ConnectionView:
    status: str  # ok / degraded / down
    state: str | None
    url: str | None
    sources: tuple[SourceLink, ...] = ()
    reconnects: int = 0
    uptime_s: float | None = None
    feed_age_ms: int | None = None  # since the last event the feed caused
    # Set when the console cannot reach what it watches (the remote daemon); the panel says it plainly.
    unreachable: str | None = None


@dataclass(frozen=True)
class LatencyView:
    feed_rtt_ms: float | None = None
    p50_ms: float | None = None
    p99_ms: float | None = None
    history: tuple[float, ...] = ()


@dataclass(frozen=True)
class RatesView:
    per_s: dict[str, float] = field(default_factory=dict)
    history: dict[str, tuple[float, ...]] = field(default_factory=dict)
    events_total: int = 0
    events_per_s: float = 0.0


@dataclass(frozen=True)
class GameResult:
    game_id: str
    final_tick: int | None
    peak_price: float | None
    final_price: float | None


@dataclass(frozen=True)
class GameView:
    game_id: str | None = None
    phase: str | None = None
    tick: int | None = None
    price: float | None = None
    price_path: tuple[float, ...] = ()
    recent_results: tuple[GameResult, ...] = ()  # newest first
    cooldown_ms: int | None = None  # before the start: the last tick's `cooldownTimer`


@dataclass(frozen=True)
class ChromeView:
    state: str | None = None
    pid: int | None = None
    profile: str | None = None
    cdp_port: int | None = None
    tab_url: str | None = None
    user: str | None = None
    reason: str | None = None


@dataclass(frozen=True)
class RecordingView:
    available: bool = False
    on: bool = False
    state: str | None = None
    path: str | None = None
    rows: int | None = None
    bytes: int | None = None
    reason: str | None = None


@dataclass(frozen=True)
class SubscribersView:
    ws: int | None = None
    zmq: int | None = None
    closed_slow: int | None = None  # WebSocket clients cut off since start: too slow, or flooding
    closed_flood: int | None = None


@dataclass(frozen=True)
class OrderLine:
    """One order as the Player panel lists it: in flight, or settled with its outcome."""

    order_id: str
    kind: str
    state: str  # requested, sent, acked, timeout; filled, rejected, unsettled
    code: str | None = None
    message: str | None = None
    price: float | None = None
    dry_run: bool = False


@dataclass(frozen=True)
class PlayerView:
    """The order desk and the player's own state. `available` is False without a desk; the player's
    figures are None before the first `player.state`."""

    available: bool = False
    mode: str | None = None  # off, dry-run, live
    halted: bool = False
    executor: str | None = None
    executor_problem: str | None = None
    username: str | None = None
    cash: float | None = None
    position_qty: float | None = None
    avg_cost: float | None = None
    cumulative_pnl: float | None = None
    pnl_percent: float | None = None
    sidebet: float | None = None  # the amount at stake, 0 when none
    short: float | None = None
    in_flight: tuple[OrderLine, ...] = ()
    recent: tuple[OrderLine, ...] = ()  # settled orders, newest first


@dataclass(frozen=True)
class ConsoleSnapshot:
    mode: str  # "embedded", "attached to ws://..."
    taken_at_ms: int
    connection: ConnectionView
    latency: LatencyView
    rates: RatesView
    game: GameView
    chrome: ChromeView | None
    recording: RecordingView
    subscribers: SubscribersView
    player: PlayerView = PlayerView()
    # The most recent events, oldest first; the log takes those it has not shown yet (by `seq`).
    events: tuple[LoggedEvent, ...] = ()
