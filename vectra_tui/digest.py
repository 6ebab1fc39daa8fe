"""What the console derives from the event stream: the log, the current game, rates per family.

`EventDigest.deliver` runs once per event (on the bus in-process, or per WebSocket message when
attached), up to thousands of times a second, so it only appends to bounded deques and bumps a
counter. Everything else happens in `take_views()`, at the console's refresh rate.
"""

from __future__ import annotations

import time
from collections import deque
from typing import Callable

from core.contracts.channels import family_of
from vectra_tui.desk_digest import DESK_CHANNELS, DeskTracker
from vectra_tui.view import FAMILIES, GameResult, GameView, LatencyView, LoggedEvent, RatesView

LOG_BACKLOG = 1000  # a refresh at 10 Hz with 1,000 events/s sees ~100 new ones: ample margin
GAME_BACKLOG = 20_000
HISTORY_POINTS = 180  # one sample per second: three minutes of sparkline
PRICE_PATH_POINTS = 240  # more than any panel is wide
RECENT_GAMES = 5

# The Rates panel's rows (`FAMILIES`) by channel family: a sidebet is a player's doing.
_ROW_BY_FAMILY = {"game": "game", "player": "player", "sidebet": "player", "raw": "raw", "error": "errors"}


def rates_row(channel: str) -> str:
    return _ROW_BY_FAMILY.get(family_of(channel), "other")


class PerSecond:
    """Says when a once-a-second sample is due, however often it is asked."""

    def __init__(self, clock: Callable[[], float]) -> None:
        self.clock = clock
        self.last: float | None = None

    def due(self) -> float | None:
        """Seconds since the previous sample when one is due now (0.0 for the very first), else None."""
        now = self.clock()
        if self.last is None:
            self.last = now
            return 0.0
        elapsed = now - self.last
        if elapsed < 1.0:
            return None
        self.last = now
        return elapsed


class RateHistory:
    def __init__(self, clock: Callable[[], float]) -> None:
        self._tick = PerSecond(clock)
        self._previous: dict[str, int] = {}
        self._history = {family: deque(maxlen=HISTORY_POINTS) for family in FAMILIES}
        self._view = RatesView()

    def sample(self, counts: dict[str, int], events_per_s: float | None, events_total: int | None) -> RatesView:
        elapsed = self._tick.due()
        if elapsed is None:
            return self._view
        per_s = {}
        for family in FAMILIES:
            delta = counts.get(family, 0) - self._previous.get(family, counts.get(family, 0))
            per_s[family] = round(delta / elapsed, 1) if elapsed else 0.0
            if elapsed:
                self._history[family].append(per_s[family])
        self._previous = dict(counts)
        self._view = RatesView(
            per_s=per_s,
            history={family: tuple(points) for family, points in self._history.items()},
            events_total=events_total if events_total is not None else sum(counts.values()),
            events_per_s=events_per_s if events_per_s is not None else round(sum(per_s.values()), 1),
        )
        return self._view


class GameTracker:
    """The current game's price path and the last few results, from `game.*` events."""

    def __init__(self) -> None:
        self.game_id: str | None = None
        self.phase: str | None = None
        self.tick: int | None = None
        self.price: float | None = None
        self.cooldown_ms: int | None = None
        self._path: list[float] = []
        self._results: deque[GameResult] = deque(maxlen=RECENT_GAMES)
        self._view = GameView()
        self._changed = False

    def observe(self, event: LoggedEvent) -> None:
        data = event.data
        if event.gameId is not None and event.gameId != self.game_id:
            self.game_id, self._path, self.tick, self.price, self.cooldown_ms = event.gameId, [], None, None, None
        kind = event.type
        if kind == "game.tick":
            self.tick = data.get("tickCount", self.tick)
            self.phase = data.get("phase", self.phase)
            self.cooldown_ms = data.get("cooldownTimer")
            price = data.get("price")
            if isinstance(price, (int, float)):
                self.price = price
                self._path.append(float(price))
        elif kind == "game.phase":
            self.phase = data.get("to", self.phase)
        elif kind == "game.end":
            self._results.appendleft(
                GameResult(
                    game_id=event.gameId or "?",
                    final_tick=data.get("finalTick"),
                    peak_price=data.get("peakPrice"),
                    final_price=data.get("finalPrice"),
                )
            )
        self._changed = True

    def view(self) -> GameView:
        if self._changed:
            self._view = GameView(
                game_id=self.game_id,
                phase=self.phase,
                tick=self.tick,
                price=self.price,
                price_path=downsample(self._path, PRICE_PATH_POINTS),
                recent_results=tuple(self._results),
                cooldown_ms=self.cooldown_ms,
            )
            self._changed = False
        return self._view


def downsample(points: list[float], limit: int) -> tuple[float, ...]:
    """At most `limit` points, each bucket represented by its highest price (peaks are what matter)."""
    if len(points) <= limit:
        return tuple(points)
    size = len(points) / limit
    return tuple(max(points[int(i * size) : max(int(i * size) + 1, int((i + 1) * size))]) for i in range(limit))


class EventDigest:
    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self.recent: deque[LoggedEvent] = deque(maxlen=LOG_BACKLOG)
        self.counts: dict[str, int] = {}
        self._game_backlog: deque[LoggedEvent] = deque(maxlen=GAME_BACKLOG)
        self._family_cache: dict[str, str] = {}
        self.game = GameTracker()
        self.desk = DeskTracker()
        self.rates = RateHistory(clock)
        self._latency_tick = PerSecond(clock)
        self._latency: deque[float] = deque(maxlen=HISTORY_POINTS)
        self._latency_view = LatencyView()

    def deliver(self, envelope: LoggedEvent) -> None:
        self.recent.append(envelope)
        family = self._family_cache.get(envelope.type)
        if family is None:
            family = self._family_cache[envelope.type] = rates_row(envelope.type)
        self.counts[family] = self.counts.get(family, 0) + 1
        if family == "game":
            self._game_backlog.append(envelope)
        elif envelope.type in DESK_CHANNELS:  # rare: taken in at once, every one of them counts
            self.desk.observe(envelope)

    def game_view(self) -> GameView:
        backlog = self._game_backlog
        while backlog:
            self.game.observe(backlog.popleft())
        return self.game.view()

    def rates_view(self, events_per_s: float | None = None, events_total: int | None = None) -> RatesView:
        """Rates per family from the events seen; the totals from the report when there is one."""
        return self.rates.sample(self.counts, events_per_s, events_total)

    def latency_view(self, feed_rtt_ms: float | None, p50_ms: float | None, p99_ms: float | None) -> LatencyView:
        """Sampled once a second: the figures move on every event, but nobody reads them faster."""
        if self._latency_tick.due() is not None:
            if p99_ms is not None:
                self._latency.append(p99_ms)
            self._latency_view = LatencyView(feed_rtt_ms, p50_ms, p99_ms, tuple(self._latency))
        return self._latency_view

    def events(self) -> tuple[LoggedEvent, ...]:
        return tuple(self.recent)
