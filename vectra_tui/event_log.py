"""The event log's model: which events it shows, under a channel filter, paused or not.

At each refresh it takes the events it has not seen yet from the snapshot (by `seq`); it never gets
one message per event. Changing the filter re-reads what the snapshot still holds, so the new view
is filled at once instead of starting empty.
"""

from __future__ import annotations

from collections import deque
from typing import Any, Iterable

import orjson

from core.contracts.patterns import ChannelFilter, valid_patterns
from vectra_tui.drawing import clip, clock
from vectra_tui.view import LoggedEvent

SHOWN_LINES = 500
SUMMARY_CHARS = 160


def _short(value: Any) -> str:
    return f"{value:.6g}" if isinstance(value, float) else str(value)


def _pick(data: dict[str, Any], *keys: str) -> str:
    return " ".join(f"{key}={_short(data[key])}" for key in keys if data.get(key) is not None)


def summary(event: LoggedEvent) -> str:
    """The few fields that identify an event at a glance; the rest of `data` as compact JSON."""
    data = event.data
    kind = event.type
    if kind == "game.tick":
        return _pick(data, "tickCount", "price", "phase")
    if kind == "player.trade":
        return _pick(data, "username", "type", "amount", "price")
    if kind == "connection.status":
        return _pick(data, "source", "state", "url", "reason")
    if kind == "error":
        return _pick(data, "code", "message")
    if kind in ("game.start", "game.end", "game.phase", "game.gap"):
        return orjson.dumps(data).decode()
    payload = data.get("payload", data) if kind.startswith("raw.") else data
    return orjson.dumps(payload, default=str).decode()[:SUMMARY_CHARS]


WIDE_ENOUGH_FOR_GAME_ID = 100


def compact_line(event: LoggedEvent, width: int) -> str:
    game = f" {event.gameId[-8:]}" if event.gameId and width >= WIDE_ENOUGH_FOR_GAME_ID else ""
    return clip(f"{clock(event.timestamp)} {event.seq:>7} {event.type:<20}{game} {summary(event)}", width)


class EventLog:
    def __init__(self, pattern: str = "*") -> None:
        self.pattern = pattern
        self._wanted = ChannelFilter([pattern])
        self.paused = False
        self.lines: deque[LoggedEvent] = deque(maxlen=SHOWN_LINES)
        self._last_seq = 0
        self.version = 0  # bumps whenever what is shown changes, so the widget redraws only then

    def take(self, events: Iterable[LoggedEvent]) -> None:
        if not self.paused:
            self._append(events)

    def _append(self, events: Iterable[LoggedEvent]) -> None:
        changed = False
        for event in events:
            if event.seq <= self._last_seq:
                continue
            self._last_seq = event.seq
            if self._wanted(event.type):
                self.lines.append(event)
                changed = True
        if changed:
            self.version += 1

    def set_filter(self, text: str, held: Iterable[LoggedEvent]) -> None:
        """Show only channels matching `text` (globs, space or comma separated; empty means all).

        Raises ValueError with a readable message for a pattern that is not acceptable."""
        patterns = valid_patterns(text.replace(",", " ").split() or ["*"])
        if patterns is None:
            raise ValueError(f"not a channel pattern: {text!r} (try game.* or raw.* error)")
        self.pattern = " ".join(patterns)
        self._wanted = ChannelFilter(patterns)
        self.lines.clear()
        self._last_seq = 0
        self._append(held)
        self.version += 1

    def toggle_pause(self) -> bool:
        self.paused = not self.paused
        self.version += 1
        return self.paused
