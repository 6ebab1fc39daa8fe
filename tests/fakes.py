"""A stand-in foundation with fixed, deterministic data, for tests and screenshots.

It describes itself the way a daemon does: a `HealthReport` (the real contract, so a screenshot can
only show what a daemon can report) and a stream of envelopes fed to the console's real digest on a
scripted clock (so rates, the latency trace, the game and its last results come from events, as in
the console). It behaves like the real thing where the console can tell: `record` flips recording,
`reconnect` bumps the reconnect count, unknown verbs get an error reply. Every command it receives is
kept in `commands`, and `stopped` tells whether the console shut it down.
"""

from __future__ import annotations

import math
from typing import Any

from core.contracts.envelope import Envelope
from core.contracts.health import (
    ChromeHealth,
    Connection,
    HealthReport,
    Latency,
    Pipeline,
    RecordingHealth,
    SourceConnection,
    Subscribers,
    WebSocketHealth,
    ZmqHealth,
)
from vectra_tui.digest import EventDigest
from vectra_tui.health_view import console_snapshot
from vectra_tui.view import ConsoleSnapshot

FROZEN_NOW_MS = 1_764_000_000_000  # 2025-11-24 16:00:00 UTC
FEED_URL = "https://backend.rugs.fun?frontend-version=1.0"
GAME_ID = "20251124-5f1c0e2a9b7d4c36"
LAST_SEQ = 1060
RECORDING_PATH = "/data/recordings/2025-11-24/vectra-160000.parquet"
# Games that ended before the current one, oldest first: (id, final tick, peak, final price).
ENDED = (("20251124-9f", 480, 14.9, 0.003), ("20251124-a0", 37, 1.21, 0.001), ("20251124-a1", 212, 5.83, 0.002))
ACTIVE_TICKS = 140  # the current game's ticks so far, four a second
CURRENT_PRICE = 3.41


def fake_report() -> HealthReport:
    link = SourceConnection(
        state="connected", url=FEED_URL, attempt=1, reason=None, connected_since=FROZEN_NOW_MS - 600_000, reconnects=2
    )
    return HealthReport(
        status="ok",
        source="socketio",
        connection=Connection(
            state="connected",
            url=FEED_URL,
            connected_since=link.connected_since,
            reconnects=2,
            last_event_ts=FROZEN_NOW_MS - 180,
            last_event_age_ms=180,
            last_frame_ts=FROZEN_NOW_MS - 180,
            last_frame_age_ms=180,
            sources={"socketio": link},
        ),
        latency_ms=Latency(feed_rtt=None, pipeline=Pipeline(p50=0.21, p99=1.35)),
        events_total=123_456,
        events_per_s=33.2,
        events_by_family={"sys": 1, "connection": 5, "game": 20_000, "player": 45_000, "raw": 58_400, "error": 50},
        seq=LAST_SEQ,
        subscribers=Subscribers(ws=3, zmq=2),
        recording=RecordingHealth(
            on=False, state="stopped", path="/data/recordings", rows=0, bytes=0, wal_bytes=0, since=None, reason=None,
            buffered=0,
        ),
        chrome=ChromeHealth(
            state="running",
            pid=4242,
            profile="/home/op/.gamebot/chrome_profiles/rugs_bot",
            cdp_port=9222,
            tab_url="https://rugs.fun/",
            authenticated_as="operator",
            reason=None,
            launches=1,
        ),
        uptime_s=3725.0,
        zmq=ZmqHealth(
            pub="tcp://127.0.0.1:5556", router="tcp://127.0.0.1:5557", subscribers=2, topics=["", "game."],
            pub_hwm=10_000, router_hwm=1_000, requests=14, replays=1, replayed_events=212, replies_abandoned=0,
        ),
        websocket=WebSocketHealth(clients=3, closed_slow=1, closed_flood=0),
    )


class ScriptedClock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def _price(tick: int) -> float:
    if tick == ACTIVE_TICKS - 1:
        return CURRENT_PRICE
    return round(1.0 + 0.6 * math.sin(tick / 9) + tick / 60, 3)


def _second(second: int, last: bool) -> list[tuple[str, str | None, dict[str, Any]]]:
    """(channel, game, data) of one second of feed (the last one spans two): trades, then four ticks of
    the current game, each normalized event after the raw frame it came from."""
    items: list[tuple[str, str | None, dict[str, Any]]] = []
    if second == 0:
        for game, final_tick, peak, final in ENDED:
            items.append(("game.end", game, {"finalTick": final_tick, "finalPrice": final, "peakPrice": peak}))
    trades = 25 if last else round(9 + 5 * math.sin(second / 3))
    for index in range(trades):
        buyer = ("degen42", "whale", "moonboi")[index % 3]
        items.append(("raw.standard/newTrade", GAME_ID, {"payload": {"username": buyer}, "trace": None}))
        items.append(("player.trade", GAME_ID, {"username": buyer, "type": "buy", "amount": 0.05, "price": 3.38}))
    if second % 11 == 5:
        items.append(("error", None, {"code": "bad_frame", "message": "not a Socket.IO packet", "raw": "xx"}))
    for tick in range(second * 4, second * 4 + 4):
        items.append(("raw.gameStateUpdate", GAME_ID, {"payload": {"tickCount": tick}, "trace": None}))
        items.append(("game.tick", GAME_ID, {"tickCount": tick, "price": _price(tick), "phase": "ACTIVE"}))
    return items


def feed_digest(report: HealthReport) -> EventDigest:
    """The console's digest after watching this game for its 35 seconds, one rate sample a second."""
    clock = ScriptedClock()
    digest = EventDigest(clock)
    seconds = ACTIVE_TICKS // 4
    script = [_second(second, second == seconds - 1) for second in range(seconds)]
    seq = LAST_SEQ - sum(len(items) for items in script)
    pipeline = report.latency_ms.pipeline
    for second, items in enumerate(script):
        for channel, game, data in items:
            seq += 1
            timestamp = FROZEN_NOW_MS - (seconds - second) * 1000 + len(data)
            digest.deliver(Envelope(seq=seq, type=channel, timestamp=timestamp, gameId=game, source="socketio", data=data))
        last = second == seconds - 1
        clock.now += 2.0 if last else 1.0
        p99 = pipeline.p99 if last else round(1.2 + 0.4 * math.sin(second / 2.5), 2)
        digest.latency_view(None, pipeline.p50, p99)
        digest.rates_view(report.events_per_s, report.events_total)
    return digest


class FakeFoundation:
    def __init__(self, report: HealthReport | None = None) -> None:
        self.report = report if report is not None else fake_report()
        self.digest = feed_digest(self.report)
        self.unreachable: str | None = None  # what a remote port says when it cannot reach the daemon
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
        return console_snapshot(
            self.report, self.digest, mode="fake", taken_at_ms=FROZEN_NOW_MS, unreachable=self.unreachable
        )

    def publish(self, *events: Envelope) -> None:
        """Make new events appear in the next snapshot (oldest first)."""
        for envelope in events:
            self.digest.deliver(envelope)

    def update(self, **changes: Any) -> None:
        """Change parts of the report, as the daemon's next report would."""
        self.report = self.report.model_copy(update=changes)

    async def command(self, action: str, **params: Any) -> dict[str, Any]:
        self.commands.append({"action": action, **params})
        if action == "record":
            on = bool(params.get("on"))
            recording = self.report.recording.model_copy(
                update={"on": on, "state": "recording" if on else "stopped", "path": RECORDING_PATH,
                        "since": FROZEN_NOW_MS if on else self.report.recording.since}
            )
            self.update(recording=recording)
            return {"type": "recording.status", "data": recording.model_dump()}
        if action == "reconnect":
            connection = self.report.connection
            self.update(connection=connection.model_copy(update={"reconnects": connection.reconnects + 1}))
            return {"type": "reconnecting", "sources": list(connection.sources)}
        if action == "chrome":
            return {"type": "chrome", "data": {"op": params.get("op"), "state": "relaunching"}}
        return {"type": "error", "data": {"code": "unknown_action", "message": f"unknown action {action!r}"}}
