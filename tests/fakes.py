"""A stand-in foundation with fixed, deterministic data, for tests and screenshots.

It behaves like the real thing where the console can tell: `record` flips recording, `reconnect`
bumps the reconnect count, unknown verbs get an error reply. Every command it receives is kept in
`commands`, and `stopped` tells whether the console shut it down.
"""

from __future__ import annotations

import math
from dataclasses import replace
from typing import Any

from core.contracts.envelope import Envelope
from vectra_tui.view import (
    ChromeView,
    ConnectionView,
    ConsoleSnapshot,
    GameResult,
    GameView,
    LatencyView,
    RatesView,
    RecordingView,
    SourceLink,
    SubscribersView,
)

FROZEN_NOW_MS = 1_764_000_000_000  # 2025-11-24 16:00:00 UTC
FEED_URL = "https://backend.rugs.fun?frontend-version=1.0"
GAME_ID = "20251124-5f1c0e2a9b7d4c36"


def _price_path() -> tuple[float, ...]:
    return tuple(round(1.0 + 0.6 * math.sin(i / 9) + i / 60, 3) for i in range(140))


def _events() -> tuple[Envelope, ...]:
    kinds = [
        ("game.tick", {"tickCount": 139, "price": 3.41, "phase": "ACTIVE"}),
        ("player.trade", {"username": "degen42", "type": "buy", "amount": 0.05, "price": 3.38}),
        ("raw.gameStateUpdate", {"payload": {"tickCount": 139}, "trace": None}),
        ("connection.status", {"state": "connected", "source": "socketio", "url": FEED_URL}),
        ("error", {"code": "bad_frame", "message": "not a Socket.IO packet", "raw": "xx"}),
        ("sidebet.placed", {"username": "whale", "betAmount": 0.1}),
    ]
    events = []
    for seq in range(1, 61):
        channel, data = kinds[seq % len(kinds)]
        events.append(
            Envelope(
                seq=1000 + seq,
                type=channel,
                timestamp=FROZEN_NOW_MS - (60 - seq) * 250,
                gameId=GAME_ID if not channel.startswith("connection") else None,
                source="socketio",
                data=data,
            )
        )
    return tuple(events)


def _wave(base: float, amplitude: float, phase: float, count: int = 120) -> tuple[float, ...]:
    return tuple(round(base + amplitude * math.sin(phase + i / 7), 1) for i in range(count))


def fake_snapshot() -> ConsoleSnapshot:
    return ConsoleSnapshot(
        mode="fake",
        taken_at_ms=FROZEN_NOW_MS,
        connection=ConnectionView(
            status="ok",
            state="connected",
            url=FEED_URL,
            sources=(SourceLink(name="socketio", state="connected", url=FEED_URL, reconnects=2),),
            reconnects=2,
            uptime_s=3725.0,
            last_event_age_ms=180,
        ),
        latency=LatencyView(feed_rtt_ms=42.0, p50_ms=0.21, p99_ms=1.35, history=_wave(1.2, 0.4, 0.0)),
        rates=RatesView(
            per_s={"game": 4.0, "player": 12.5, "raw": 16.5, "errors": 0.2},
            history={
                "game": _wave(4, 0.5, 0.3),
                "player": _wave(12, 6, 1.1),
                "raw": _wave(16, 6, 2.0),
                "errors": _wave(0.3, 0.3, 0.5),
            },
            events_total=123_456,
            events_per_s=33.2,
        ),
        game=GameView(
            game_id=GAME_ID,
            phase="ACTIVE",
            tick=139,
            price=3.41,
            price_path=_price_path(),
            recent_results=(
                GameResult("20251124-a1", 212, 5.83, 0.02),
                GameResult("20251124-a0", 37, 1.21, 0.01),
                GameResult("20251124-9f", 480, 14.9, 0.03),
            ),
        ),
        chrome=ChromeView(
            state="running",
            pid=4242,
            profile="/home/op/.gamebot/chrome_profiles/rugs_bot",
            cdp_port=9222,
            tab_url="https://rugs.fun/",
            user="operator",
        ),
        recording=RecordingView(available=True, on=False, state="off", rows=0, bytes=0),
        subscribers=SubscribersView(ws=3, zmq=2, slow=("ws 127.0.0.1:51234",), cut_off=1),
        events=_events(),
    )


class FakeFoundation:
    def __init__(self, snapshot: ConsoleSnapshot | None = None) -> None:
        self.current = snapshot if snapshot is not None else fake_snapshot()
        self.commands: list[dict[str, Any]] = []
        self.started = False
        self.stopped = False
        self.snapshots_taken = 0

    async def start(self) -> None:
        self.started = True

    async def stop(self) -> None:
        self.stopped = True

    def snapshot(self) -> ConsoleSnapshot:
        self.snapshots_taken += 1
        return self.current

    def publish(self, *events: Envelope) -> None:
        """Make new events appear in the next snapshot (oldest first)."""
        self.current = replace(self.current, events=self.current.events + events)

    async def command(self, action: str, **params: Any) -> dict[str, Any]:
        self.commands.append({"action": action, **params})
        if action == "record":
            on = bool(params.get("on"))
            recording = replace(
                self.current.recording,
                on=on,
                state="recording" if on else "off",
                path="/data/recordings/2025-11-24/vectra-160000.parquet" if on else None,
            )
            self.current = replace(self.current, recording=recording)
            return {"type": "recording.status", "data": {"on": on}}
        if action == "reconnect":
            connection = replace(self.current.connection, reconnects=self.current.connection.reconnects + 1)
            self.current = replace(self.current, connection=connection)
            return {"type": "reconnecting", "sources": ["socketio"]}
        if action == "chrome":
            return {"type": "chrome", "data": {"op": params.get("op"), "state": "relaunching"}}
        return {"type": "error", "data": {"code": "unknown_action", "message": f"unknown action {action!r}"}}
