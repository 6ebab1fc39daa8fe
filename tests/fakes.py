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

from pydantic import BaseModel

from core.contracts.envelope import Envelope
from core.contracts.health import (
    ChromeHealth,
    Connection,
    HealthReport,
    Latency,
    OrderLimits,
    OrdersHealth,
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
STEPS = (1.0,) * 33 + (2.0,)  # seconds between the console's rate samples while it watched this game
TICKS_PER_S = 4
ACTIVE_TICKS = int(sum(STEPS) * TICKS_PER_S)  # the current game's ticks so far
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


Item = tuple[str, "str | None", dict[str, Any]]  # (channel, game, data)


def _trade(index: int) -> list[Item]:
    buyer = ("degen42", "whale", "moonboi")[index % 3]
    if index % 7 == 6:
        raw = ("raw.standard/sideBetPlaced", GAME_ID, {"payload": {"username": buyer}, "trace": None})
        return [raw, ("sidebet.placed", GAME_ID, {"username": buyer, "betAmount": 0.1})]
    raw = ("raw.standard/newTrade", GAME_ID, {"payload": {"username": buyer}, "trace": None})
    return [raw, ("player.trade", GAME_ID, {"username": buyer, "type": "buy", "amount": 0.05, "price": 3.38})]


def _step(index: int, first_tick: int, seconds: float) -> list[Item]:
    """One sampling step of feed: trades between the current game's ticks, each normalized event after
    the raw frame it came from; the games that ended before it come first."""
    items: list[Item] = []
    if index == 0:
        for game, final_tick, peak, final in ENDED:
            items.append(("game.end", game, {"finalTick": final_tick, "finalPrice": final, "peakPrice": peak}))
    ticks = range(first_tick, first_tick + int(seconds * TICKS_PER_S))
    trades = round(seconds * 12.5) if index == len(STEPS) - 1 else round(9 + 5 * math.sin(index / 3))
    for position, tick in enumerate(ticks):
        for trade in range(position * trades // len(ticks), (position + 1) * trades // len(ticks)):
            items.extend(_trade(trade))
        if tick % 45 == 20:
            items.append(("error", None, {"code": "bad_json", "message": "packet body is not valid JSON", "raw": "2[\"x"}))
        items.append(("raw.gameStateUpdate", GAME_ID, {"payload": {"tickCount": tick}, "trace": None}))
        items.append(("game.tick", GAME_ID, {"tickCount": tick, "price": _price(tick), "phase": "ACTIVE"}))
    return items


def feed_digest(report: HealthReport, clock: ScriptedClock) -> EventDigest:
    """The console's digest after watching the current game from its start, sampling once a second;
    the last event is the game's latest tick, at `FROZEN_NOW_MS`, with `seq` `LAST_SEQ`."""
    digest = EventDigest(clock)
    steps, tick = [], 0
    for index, seconds in enumerate(STEPS):
        steps.append(_step(index, tick, seconds))
        tick += int(seconds * TICKS_PER_S)
    seq = LAST_SEQ - sum(len(items) for items in steps)
    start_ms = FROZEN_NOW_MS - int(sum(STEPS) * 1000)
    pipeline = report.latency_ms.pipeline
    for index, (seconds, items) in enumerate(zip(STEPS, steps)):
        for position, (channel, game, data) in enumerate(items, start=1):
            seq += 1
            timestamp = start_ms + int(seconds * 1000 * position / len(items))
            digest.deliver(Envelope(seq=seq, type=channel, timestamp=timestamp, gameId=game, source="socketio", data=data))
        start_ms += int(seconds * 1000)
        clock.now += seconds
        last = index == len(STEPS) - 1
        digest.latency_view(None, pipeline.p50, pipeline.p99 if last else round(1.2 + 0.4 * math.sin(index / 2.5), 2))
        digest.rates_view(report.events_per_s, report.events_total)
    return digest


def fake_orders() -> OrdersHealth:
    return OrdersHealth(
        mode="live", halted=False, executor="page", executor_problem=None, in_flight_count=1,
        limits=OrderLimits(max_sol=0.01, max_sol_per_game=0.05, max_per_minute=20, max_tick_age_s=2.0, max_in_flight=1),
    )


def desk_events() -> list[Item]:
    """A bot's last few orders after the feed: one filled, one refused, one still waiting for its ack."""
    def order(channel: str, order_id: str, kind: str, **data: Any) -> Item:
        return (channel, GAME_ID, {"order_id": order_id, "kind": kind, "dryRun": False, **data})

    return [
        order("order.request", "bot1-0001", "buy", order={"amount_sol": 0.002}, checks=[], executor="page"),
        order("order.sent", "bot1-0001", "buy", executor="page", ackId=900000000, sent=True),
        order("order.ack", "bot1-0001", "buy", ackId=900000000, ack=[{"success": True}], success=True, latency_ms=212.0),
        order("order.filled", "bot1-0001", "buy", matchedBy="trace", trade=None, price=3.38, tickIndex=130),
        ("player.state", GAME_ID, {"username": "bot1", "authenticated": True, "cash": 0.998, "positionQty": 0.000591,
                                   "avgCost": 3.38, "totalInvested": 0.002, "cumulativePnL": 0.000016,
                                   "pnlPercent": 0.8, "sidebet": None, "shortPosition": None}),
        order("order.rejected", "bot1-0002", "sidebet", code="limit_rate", message="20 orders in the last 60 s",
              by="vectra"),
        order("order.request", "bot1-0003", "sell", order={"percent": 50}, checks=[], executor="page"),
        order("order.sent", "bot1-0003", "sell", executor="page", ackId=900000001, sent=True),
    ]


class FakeFoundation:
    def __init__(self, report: HealthReport | None = None, *, trading: bool = False) -> None:
        """`trading`: a daemon with an order desk, whose bot has just placed a few orders."""
        self.report = report if report is not None else fake_report()
        self.clock = ScriptedClock()  # stands still unless a test moves it: screenshots stay the same
        self.digest = feed_digest(self.report, self.clock)
        if trading:
            self.update(orders=fake_orders())
            for seq, (channel, game, data) in enumerate(desk_events(), start=LAST_SEQ + 1):
                self.publish(Envelope(seq=seq, type=channel, timestamp=FROZEN_NOW_MS, gameId=game, source="socketio",
                                      data=data))
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

    def advance(self, seconds: float) -> None:
        """Let time pass for the console's once-a-second samples (rates, latency)."""
        self.clock.now += seconds

    def update(self, **changes: Any) -> None:
        """Change parts of the report, as the daemon's next report would. The result is validated
        against the model (`model_copy` alone would not), so no test can show what a daemon cannot send."""
        given = {key: value.model_dump() if isinstance(value, BaseModel) else value for key, value in changes.items()}
        self.report = HealthReport.model_validate({**self.report.model_dump(), **given})

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
        if action in ("orders_halt", "orders_resume") and self.report.orders is not None:
            self.update(orders=self.report.orders.model_copy(update={"halted": action == "orders_halt"}))
            return {"type": "orders", "data": self.report.orders.model_dump()}
        return {"type": "error", "data": {"code": "unknown_action", "message": f"unknown action {action!r}"}}
