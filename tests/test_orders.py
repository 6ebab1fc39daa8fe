"""Orders through Vectra: the desk's checks, dry-run, idempotency, the kill switch and the direct
executor, with real foundations, the simulator, and real WebSocket and ZeroMQ clients.

Two set-ups. Where the game's state must be exact (limits, phase rules) the foundation runs without a
source and the test plays the feed itself, handing decoded events to the foundation's sink exactly as
a source would. Where the wire matters (dry-run sends nothing, live sends once) the foundation runs
with its real `socketio` source on the simulator, whose received Engine.IO messages the test logs.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import re
import subprocess
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import orjson
import pytest
import zmq
import zmq.asyncio
from websockets.asyncio.client import ClientConnection, connect

from core.broadcast.http_ws import HttpWsServer
from core.broadcast.zmq_transport import ZmqTransport
from core.config import Settings
from core.contracts.envelope import now_ms
from core.contracts.feed import FeedEvent
from core.contracts.orders import RejectCode
from core.foundation import Foundation
from core.assembly import install_orders
from core.orders.shapes import SHAPES
from core.runtime import build_foundation
from core.sim.options import SimOptions
from core.sim.server import Simulator
from tests.conftest import free_port
from tests.processes import REPO, VECTRA

pytestmark = pytest.mark.timeout(120)

GAME, NEXT_GAME = "20261202-00000000000000a1", "20261202-00000000000000a2"
PLAYER = "did:privy:bot1"
ORDER_EVENTS = tuple(f'"{shape.event}"' for shape in SHAPES.values())


# --- set-ups ----------------------------------------------------------------------------------------


def settings_for(tmp_path: Path, **values: Any) -> Settings:
    base = {
        "data_dir": tmp_path / "data",
        "http_port": 0,
        "zmq_pub": f"tcp://127.0.0.1:{free_port()}",
        "zmq_router": f"tcp://127.0.0.1:{free_port()}",
        "order_max_tick_age_s": 30.0,
    }
    return Settings(_env_file=None, **{**base, **values})


@contextlib.asynccontextmanager
async def desk_only(tmp_path: Path, **values: Any):
    """A started foundation with the desk, the WebSocket and the ZeroMQ transports, and no source:
    the test plays the feed."""
    settings = settings_for(tmp_path, **values)
    foundation = Foundation(settings)
    install_orders(foundation)
    foundation.add_component(ZmqTransport(foundation))
    foundation.add_component(HttpWsServer(foundation))
    await foundation.start()
    try:
        yield foundation
    finally:
        await foundation.stop()


@contextlib.asynccontextmanager
async def assembled(tmp_path: Path, **values: Any):
    """The foundation exactly as the daemon builds it (sources, recorder, transports, desk)."""
    foundation = build_foundation(settings_for(tmp_path, **values))
    await foundation.start()
    try:
        yield foundation
    finally:
        await foundation.stop()


class WireLog:
    """Every Engine.IO message the simulator receives from its clients, before it handles it, as the
    text frame on the wire (`4` + the Socket.IO packet)."""

    def __init__(self, sim: Simulator) -> None:
        self.messages: list[str] = []
        handlers = sim.sio.eio.handlers
        handle = handlers["message"]

        async def log_then_handle(eio_sid, data):  # noqa: ANN001 - python-engineio's signature
            self.messages.append("4" + data if isinstance(data, str) else repr(data))
            return await handle(eio_sid, data)

        handlers["message"] = log_then_handle

    def orders(self) -> list[str]:
        return [message for message in self.messages if any(event in message for event in ORDER_EVENTS)]


@contextlib.asynccontextmanager
async def simulator(**options: Any):
    sim = Simulator(SimOptions(port=0, **{"speed": 10, "seed": 11, "max_ticks": 60, **options}))
    wire = WireLog(sim)
    await sim.start()
    try:
        yield sim, wire
    finally:
        await sim.stop()


def _http(url: str, body: dict | None) -> tuple[int, Any]:
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(url, data=data, headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=5) as answer:
            return answer.status, json.loads(answer.read())
    except urllib.error.HTTPError as exc:
        return exc.code, None


async def http(url: str, body: dict | None = None) -> tuple[int, Any]:
    """GET (or POST `body`) in a worker thread: the simulator answers on this test's own loop."""
    return await asyncio.to_thread(_http, url, body)


async def takes_orders(sim: Simulator) -> bool:
    """Whether this simulator plays the server's part in orders (it lists its players)."""
    status, _ = await http(sim.url + "/admin/players")
    return status != 404


# --- playing the feed -------------------------------------------------------------------------------


def feed(foundation: Foundation, name: str, payload: Any, *, trace: dict | None = None, age_s: float = 0) -> None:
    foundation.event("socketio", FeedEvent(name, payload, trace), now_ms() - int(age_s * 1000))


def presale(foundation: Foundation, game: str = GAME, timer: int = 8000, **kwargs: Any) -> None:
    feed(foundation, "gameStateUpdate", {"gameId": game, "active": False, "rugged": False, "cooldownTimer": timer,
                                         "allowPreRoundBuys": True}, **kwargs)


def tick(foundation: Foundation, number: int, game: str = GAME, *, rugged: bool = False, **kwargs: Any) -> None:
    feed(foundation, "gameStateUpdate", {"gameId": game, "active": True, "rugged": rugged, "tickCount": number,
                                         "price": 1.0 + number / 100, "cooldownTimer": 0,
                                         "allowPreRoundBuys": False}, **kwargs)


def player_update(foundation: Foundation, **figures: Any) -> None:
    feed(foundation, "playerUpdate", {"id": PLAYER, "cash": 0.1, "authenticated": True, "positionQty": 0,
                                      "shortPosition": None, "sideBet": None, **figures})


def published(foundation: Foundation, prefix: str = "order.") -> list[dict]:
    return [envelope.as_dict() for envelope in foundation.bus.ring.since(1) if envelope.type.startswith(prefix)]


async def settle() -> None:
    """Let the desk draw its conclusions from what the bus just carried (it does so on the next turn)."""
    for _ in range(5):
        await asyncio.sleep(0)


# --- clients ----------------------------------------------------------------------------------------


def ws_url(foundation: Foundation) -> str:
    server = next(component for component in foundation.components if isinstance(component, HttpWsServer))
    return f"ws://127.0.0.1:{server.port}/ws"


async def ask(client: ClientConnection, request: dict) -> dict:
    """One command over the WebSocket; events arriving meanwhile are skipped."""
    await client.send(json.dumps(request))
    while True:
        message = json.loads(await asyncio.wait_for(client.recv(), timeout=10))
        if "v" not in message:
            return message


async def ask_zmq(foundation: Foundation, request: dict) -> dict:
    """One command over the ZeroMQ ROUTER, from a DEALER of its own."""
    sock = zmq.asyncio.Context.instance().socket(zmq.DEALER)
    sock.setsockopt(zmq.LINGER, 0)
    try:
        sock.connect(foundation.settings.zmq_router)
        await sock.send(orjson.dumps(request))
        return orjson.loads((await asyncio.wait_for(sock.recv_multipart(), timeout=10))[-1])
    finally:
        sock.close()


def buy(order_id: str, amount: float = 0.002, **extra: Any) -> dict:
    return {"action": "order", "kind": "buy", "amount_sol": amount, "order_id": order_id, **extra}


async def wait_for_phase(foundation: Foundation, phases: set[str], timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while foundation.normalizer.phase not in phases:
        assert time.monotonic() < deadline, f"phase {foundation.normalizer.phase}, waited for {phases}"
        await asyncio.sleep(0.01)


async def wait_until(condition, timeout: float = 15, what: str = "condition") -> None:  # noqa: ANN001
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"{what} not met within {timeout} s"
        await asyncio.sleep(0.02)


# --- off, the default ------------------------------------------------------------------------------


async def test_orders_are_off_by_default_refused_and_only_the_refusal_is_published(tmp_path):
    assert Settings(_env_file=None).orders == "off"
    async with simulator() as (sim, wire), assembled(tmp_path, feed_url=sim.url) as foundation:
        await wait_for_phase(foundation, {"PRESALE", "ACTIVE"})
        async with connect(ws_url(foundation)) as watcher, connect(ws_url(foundation)) as bot:
            assert (await ask(watcher, {"action": "subscribe", "channels": ["order.*"]}))["type"] == "subscribed"
            before = foundation.bus.last_seq
            reply = await ask(bot, buy("off-1"))
            assert reply["type"] == "order"
            assert reply["data"]["state"] == "rejected" and reply["data"]["code"] == RejectCode.ORDERS_OFF
            assert "restart the daemon with VECTRA_ORDERS=dry-run or live" in reply["data"]["message"]
            event = json.loads(await asyncio.wait_for(watcher.recv(), timeout=10))
            assert event["type"] == "order.rejected" and event["data"]["order_id"] == "off-1"
            assert event["data"]["code"] == "orders_off" and event["data"]["by"] == "vectra"
            ours = [e for e in published(foundation, "") if e["seq"] > before and not e["type"].startswith(("game.", "raw.", "player.trade"))]
            assert [e["type"] for e in ours] == ["order.rejected"]
        await asyncio.sleep(0.3)
        assert wire.orders() == []


# --- dry-run --------------------------------------------------------------------------------------


async def test_dry_run_publishes_the_whole_life_and_nothing_reaches_the_server(tmp_path):
    async with simulator() as (sim, wire), assembled(tmp_path, feed_url=sim.url, orders="dry-run") as foundation:
        await wait_for_phase(foundation, {"PRESALE", "ACTIVE"})
        async with connect(ws_url(foundation)) as bot:
            reply = await ask(bot, buy("dry-1"))
        record = reply["data"]
        assert reply["type"] == "order" and record["state"] == "filled" and record["dryRun"] is True
        life = [e for e in published(foundation) if e["data"]["order_id"] == "dry-1"]
        assert [e["type"] for e in life] == ["order.request", "order.sent", "order.filled"]
        assert all(e["data"]["dryRun"] is True for e in life)
        request, sent, filled = (e["data"] for e in life)
        assert record["seq_of_request"] == life[0]["seq"]
        assert request["checks"][-1] == "in_flight" and request["order"]["amount_sol"] == 0.002
        assert sent["sent"] is False and sent["shape"] == "captured"
        frame = sent["frame"]
        match = re.fullmatch(r'42(\d+)\["buyOrder",\{"__trace":true,"traceparent":"00-([0-9a-f]{32})-[0-9a-f]{16}-01"\},'
                             r'\{"amount":0\.002\}\]', frame)
        assert match, frame
        assert int(match[1]) == sent["ackId"] and match[2] == sent["traceId"]
        assert filled["matchedBy"] == "dry-run"
        # The wire log works (a packet the source does send shows up), and no order frame was among them.
        source = foundation.sources[0]
        await source.send_packet('2["vectraProbe",{}]')
        await wait_until(lambda: any("vectraProbe" in m for m in wire.messages), what="the probe reaching the simulator")
        assert wire.orders() == []


# --- limits and phase rules -------------------------------------------------------------------------


async def refused(client: ClientConnection, request: dict, code: RejectCode) -> dict:
    reply = await ask(client, request)
    assert reply["type"] == "order", reply
    assert (reply["data"]["state"], reply["data"].get("code")) == ("rejected", code.value), reply
    return reply


async def accepted(client: ClientConnection, request: dict) -> dict:
    reply = await ask(client, request)
    assert reply["type"] == "order" and reply["data"]["state"] == "filled", reply
    return reply


async def test_every_limit_and_phase_rule_refuses_with_its_code_and_sends_nothing(tmp_path):
    limits = {"orders": "dry-run", "order_max_sol": 0.01, "order_max_sol_per_game": 0.005,
              "order_max_per_minute": 5, "order_max_tick_age_s": 2.0}
    async with desk_only(tmp_path, **limits) as foundation, connect(ws_url(foundation)) as bot:
        # No tick yet, then an old one: the feed counts as stale.
        await refused(bot, buy("stale-1"), RejectCode.FEED_STALE)
        presale(foundation, age_s=5)
        await refused(bot, buy("stale-2"), RejectCode.FEED_STALE)

        presale(foundation, timer=7000)
        await refused(bot, buy("big-1", amount=0.02), RejectCode.LIMIT_ORDER_SOL)
        await refused(bot, {"action": "order", "kind": "sidebet", "amount_sol": 0.001, "order_id": "sb-presale"},
                      RejectCode.PHASE)
        await refused(bot, {"action": "order", "kind": "sell", "percent": 100, "order_id": "sell-unknown"},
                      RejectCode.NO_POSITION)
        await accepted(bot, buy("game-1"))
        await accepted(bot, buy("game-2"))
        await refused(bot, buy("game-3"), RejectCode.LIMIT_GAME_SOL)  # 0.004 staked + 0.002 > 0.005

        tick(foundation, 1)
        await accepted(bot, {"action": "order", "kind": "sidebet", "amount_sol": 0.0005, "order_id": "sb-active"})
        player_update(foundation, positionQty=0)
        await settle()
        await refused(bot, {"action": "order", "kind": "sell", "percent": 50, "order_id": "sell-none"},
                      RejectCode.NO_POSITION)
        player_update(foundation, positionQty=0.00138)
        await settle()
        await accepted(bot, {"action": "order", "kind": "sell", "percent": 50, "order_id": "sell-half"})
        await refused(bot, {"action": "order", "kind": "short_close", "order_id": "short-none"}, RejectCode.NO_POSITION)

        tick(foundation, 2, rugged=True)
        await refused(bot, buy("after-rug", amount=0.0005), RejectCode.PHASE)  # fits the game's budget exactly
        feed(foundation, "gameStateUpdate", {"gameId": NEXT_GAME, "cooldownTimer": 14000, "allowPreRoundBuys": False})
        await refused(bot, buy("cooldown"), RejectCode.PHASE)

        presale(foundation, NEXT_GAME)  # a new game: its own SOL budget, but the minute's count goes on
        await accepted(bot, buy("next-1"))  # the 5th accepted order in this minute
        await refused(bot, buy("next-2"), RejectCode.LIMIT_RATE)

        rejected = {e["data"]["order_id"]: e["data"]["code"] for e in published(foundation, "order.rejected")}
        assert set(rejected.values()) == {"feed_stale", "limit_order_sol", "phase", "no_position",
                                          "limit_game_sol", "limit_rate"}
        requested = {e["data"]["order_id"] for e in published(foundation, "order.request")}
        assert requested.isdisjoint(rejected), "a refused order must never get as far as order.request"
        assert all(e["data"]["sent"] is False for e in published(foundation, "order.sent"))


async def test_a_bad_request_is_a_bad_order_error_and_leaves_no_trace(tmp_path):
    async with desk_only(tmp_path, orders="dry-run") as foundation, connect(ws_url(foundation)) as bot:
        for bad in (
            {"action": "order", "kind": "buy", "amount": 0.002, "order_id": "typo-1"},
            {"action": "order", "kind": "buy", "amount_sol": -1, "order_id": "neg-1"},
            {"action": "order", "kind": "sell", "percent": 150, "order_id": "pct-1"},
            {"action": "order", "kind": "teleport", "order_id": "kind-1"},
            {"action": "order", "kind": "buy", "amount_sol": 0.002, "order_id": "has spaces"},
            {"action": "order", "kind": "buy", "amount_sol": 0.002},
        ):
            reply = await ask(bot, bad)
            assert reply["type"] == "error" and reply["data"]["code"] == "bad_order", (bad, reply)
            assert reply["data"]["message"]
        assert published(foundation) == []


async def test_only_one_order_per_kind_is_in_flight_and_a_missing_ack_times_out(tmp_path):
    """Live on the simulator with the direct executor. Today's simulator takes no orders, so no ack
    ever comes; one that takes them is told to drop the next acks."""
    async with simulator() as (sim, wire), assembled(
        tmp_path, feed_url=sim.url, orders="live", auth_token="s3cret", order_executor="direct",
        feed_auth='{"player": "bot1"}', order_ack_timeout_s=1.0, order_max_tick_age_s=5.0,
    ) as foundation:
        if await takes_orders(sim):
            status, answer = await http(sim.url + "/admin/acks", {"drop": 2})
            assert status == 200, answer
        await wait_for_phase(foundation, {"PRESALE", "ACTIVE"})
        async with connect(ws_url(foundation)) as bot:
            first = await ask(bot, buy("live-1", token="s3cret"))
            assert first["data"]["state"] == "sent" and first["data"]["dryRun"] is False, first
            await refused(bot, buy("live-2", token="s3cret"), RejectCode.IN_FLIGHT)
        await wait_until(lambda: any(e["type"] == "order.timeout" for e in published(foundation)), what="order.timeout")
        if await takes_orders(sim):  # the trade and the player's update came: the timeout settles as filled
            await wait_until(lambda: life_of(foundation, "live-1")[-1:] == ["order.filled"], what="live-1 settled")
            assert life_of(foundation, "live-1") == ["order.request", "order.sent", "order.timeout", "order.filled"]
        sent = [m for m in wire.orders() if "buyOrder" in m]
        assert sent == [first["data"]["frame"]], "exactly the one frame, as published on order.sent"
        assert [e["data"]["order_id"] for e in published(foundation, "order.sent")] == ["live-1"]


# --- idempotency and the kill switch, across connections and restarts -----------------------------


async def test_the_same_order_id_is_one_order_from_any_client_and_after_a_restart(tmp_path):
    async with desk_only(tmp_path, orders="dry-run") as foundation:
        presale(foundation)
        async with connect(ws_url(foundation)) as first, connect(ws_url(foundation)) as second:
            replies = [await ask(first, buy("same-1")), await ask(second, buy("same-1")),
                       await ask_zmq(foundation, buy("same-1"))]
            # A different order under the same id is refused: answering it with the first order's
            # record would tell the bot its new order was placed (the audit's brief asks for this).
            reused = await ask(second, buy("same-1", amount=0.009))
        assert reused["type"] == "error" and reused["data"]["code"] == "order_id_reused", reused
        assert all(reply == replies[0] for reply in replies), replies
        assert [e["data"]["order_id"] for e in published(foundation, "order.request")] == ["same-1"]
        assert [e["type"] for e in published(foundation)] == ["order.request", "order.sent", "order.filled"]
    async with desk_only(tmp_path, orders="dry-run") as restarted:
        presale(restarted)
        async with connect(ws_url(restarted)) as client:
            assert await ask(client, buy("same-1")) == replies[0]
        assert published(restarted) == []


async def test_halt_refuses_every_order_until_resumed_and_survives_a_restart(tmp_path):
    async with desk_only(tmp_path, orders="dry-run", auth_token="s3cret") as foundation:
        presale(foundation)
        async with connect(ws_url(foundation)) as bot:
            unauthorized = await ask(bot, {"action": "orders_halt"})
            assert unauthorized["data"]["code"] == "unauthorized"
            halted = await ask(bot, {"action": "orders_halt", "reason": "drawdown", "token": "s3cret"})
            assert halted["type"] == "orders" and halted["data"]["halted"] is True
            await refused(bot, buy("h-1", token="s3cret"), RejectCode.HALTED)
            status = await ask(bot, {"action": "orders_status"})  # read-only: no token needed
            assert status["data"]["halted"] is True and status["data"]["recent"][-1]["order_id"] == "h-1"
    # Each restart sees the presale a little later (the same frame again is a duplicate since the
    # game's state survives restarts, and a duplicate is no fresh tick).
    async with desk_only(tmp_path, orders="dry-run", auth_token="s3cret") as restarted:
        presale(restarted, timer=7000)
        async with connect(ws_url(restarted)) as bot:
            await refused(bot, buy("h-2", token="s3cret"), RejectCode.HALTED)
            resumed = await ask_zmq(restarted, {"action": "orders_resume", "token": "s3cret"})
            assert resumed["type"] == "orders" and resumed["data"]["halted"] is False
            await accepted(bot, buy("h-3", token="s3cret"))
    async with desk_only(tmp_path, orders="dry-run", auth_token="s3cret") as again:
        presale(again, timer=6000)
        async with connect(ws_url(again)) as bot:
            await accepted(bot, buy("h-4", token="s3cret"))


async def test_a_live_order_in_flight_at_a_restart_is_never_sent_again(tmp_path):
    live = {"orders": "live", "auth_token": "s3cret", "order_executor": "direct", "feed_auth": '{"player": "bot1"}',
            "order_ack_timeout_s": 60.0, "order_max_tick_age_s": 5.0}
    async with simulator() as (sim, wire):
        if await takes_orders(sim):
            status, answer = await http(sim.url + "/admin/acks", {"drop": 1})
            assert status == 200, answer
        async with assembled(tmp_path, feed_url=sim.url, **live) as foundation:
            await wait_for_phase(foundation, {"PRESALE", "ACTIVE"})
            async with connect(ws_url(foundation)) as bot:
                first = await ask(bot, buy("crash-1", token="s3cret"))
            assert first["data"]["state"] == "sent", first
        async with assembled(tmp_path, feed_url=sim.url, **live) as restarted:
            # The restart settles it from the player's account (tests/test_orders_restart.py): filled,
            # rejected, or a timeout that says why it stays unknown (this simulator's short games may
            # have ended meanwhile); the one event is its outcome, and a retry returns that record.
            await wait_until(lambda: published(restarted), what="the restart settles crash-1")
            outcome = [(e["type"], e["data"]["order_id"]) for e in published(restarted)]
            assert outcome in ([("order.filled", "crash-1")], [("order.rejected", "crash-1")],
                               [("order.timeout", "crash-1")]), outcome
            async with connect(ws_url(restarted)) as bot:
                again = await ask(bot, buy("crash-1", token="s3cret"))
            assert again["data"]["state"] == outcome[0][0].removeprefix("order."), again
            assert again["data"]["frame"] == first["data"]["frame"], again
        assert [m for m in wire.orders() if "buyOrder" in m] == [first["data"]["frame"]]


# --- live mode's conditions ---------------------------------------------------------------------------


def run_vectra(tmp_path: Path, env: dict[str, str]) -> subprocess.CompletedProcess:
    import os

    clean = {key: value for key, value in os.environ.items() if not key.startswith("VECTRA_")}
    return subprocess.run([*VECTRA, "--daemon"], cwd=REPO, capture_output=True, text=True, timeout=60,
                          env={**clean, "VECTRA_DATA_DIR": str(tmp_path / "data"), **env})


@pytest.mark.parametrize(
    "env, says",
    [
        ({"VECTRA_ORDERS": "live"}, "VECTRA_AUTH_TOKEN"),
        ({"VECTRA_ORDERS": "live", "VECTRA_AUTH_TOKEN": "s3cret", "VECTRA_SOURCE": "replay"}, "socketio source"),
        ({"VECTRA_ORDERS": "live", "VECTRA_AUTH_TOKEN": "s3cret", "VECTRA_ORDER_EXECUTOR": "page"}, "cdp source"),
    ],
)
def test_live_without_a_token_or_a_source_to_send_through_does_not_start(tmp_path, env, says):
    result = run_vectra(tmp_path, env)
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in result.stderr, result.stderr
    assert "VECTRA_ORDERS=live" in lines[0] and says in lines[0]


@pytest.mark.parametrize("token", ["", "   "])
def test_a_blank_token_is_no_token_and_live_does_not_start_with_it(tmp_path, token):
    """A blank VECTRA_AUTH_TOKEN once counted as "no token" for the commands (every control command,
    orders included, was open) while `live` took it as set and started."""
    result = run_vectra(tmp_path, {"VECTRA_ORDERS": "live", "VECTRA_AUTH_TOKEN": token})
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in result.stderr, result.stderr
    assert "VECTRA_AUTH_TOKEN" in lines[0] and "empty" in lines[0]


async def test_live_refuses_unverified_shapes_unless_allowed(tmp_path):
    live = {"orders": "live", "auth_token": "s3cret", "order_executor": "direct",
            "feed_url": f"http://127.0.0.1:{free_port()}"}  # nothing listens: the executor cannot send
    for allowed, code in ((False, RejectCode.UNVERIFIED_SHAPE), (True, RejectCode.NO_EXECUTOR)):
        async with assembled(tmp_path / str(allowed), orders_unverified=allowed, **live) as foundation:
            presale(foundation)
            async with connect(ws_url(foundation)) as bot:
                for kind, extra in (("sell", {"percent": 100}), ("sidebet", {"amount_sol": 0.001}),
                                    ("short_open", {"amount_sol": 0.001}), ("short_close", {})):
                    await refused(bot, {"action": "order", "kind": kind, "order_id": f"{kind}-{allowed}",
                                        "token": "s3cret", **extra}, code)
                # buy is captured: it gets past the shape check and stops at the executor either way
                await refused(bot, buy(f"buy-{allowed}", token="s3cret"), RejectCode.NO_EXECUTOR)


# --- player.state -------------------------------------------------------------------------------------


async def test_player_state_merges_player_update_and_the_leaderboard_entry(tmp_path):
    async with desk_only(tmp_path, orders="dry-run") as foundation, connect(ws_url(foundation)) as client:
        assert (await ask(client, {"action": "player"}))["data"] is None
        leaderboard = {"gameId": GAME, "leaderboardEntry": {"id": PLAYER, "username": "N0m4D", "positionQty": 0.002,
                                                            "avgCost": 1, "pnlPercent": 44.4, "totalInvested": 0.002,
                                                            "sideBet": None, "shortPosition": None}}
        feed(foundation, "gameStatePlayerUpdate", leaderboard)
        await settle()
        first = published(foundation, "player.state")[-1]["data"]
        assert first["gameId"] == GAME and first["leaderboardEntry"] == leaderboard["leaderboardEntry"]
        assert (first["username"], first["positionQty"], first["cash"]) == ("N0m4D", 0.002, None)
        player_update(foundation, positionQty=0.003384584, cash=0.09503525, avgCost=1.181828845, cumulativePnL=0.0008)
        await settle()
        merged = published(foundation, "player.state")[-1]["data"]
        assert (merged["positionQty"], merged["cash"], merged["username"], merged["authenticated"]) == (
            0.003384584, 0.09503525, "N0m4D", True)
        count = len(published(foundation, "player.state"))
        player_update(foundation, positionQty=0.003384584, cash=0.09503525, avgCost=1.181828845, cumulativePnL=0.0008)
        await settle()
        assert len(published(foundation, "player.state")) == count, "an unchanged playerUpdate publishes nothing"
        feed(foundation, "gameStatePlayerUpdate", leaderboard)  # lags behind playerUpdate: does not win
        await settle()
        assert published(foundation, "player.state")[-1]["data"]["positionQty"] == 0.003384584
        assert (await ask(client, {"action": "player"}))["data"]["positionQty"] == 0.003384584
        assert (await ask(client, {"action": "snapshot"}))["player"]["positionQty"] == 0.003384584


# --- the recording ------------------------------------------------------------------------------------


async def test_an_orders_life_is_in_the_recording(tmp_path):
    from tests.test_recorder import read_recordings

    async with simulator() as (sim, wire), assembled(tmp_path, feed_url=sim.url, orders="dry-run", record=True) as foundation:
        await wait_for_phase(foundation, {"PRESALE", "ACTIVE"})
        async with connect(ws_url(foundation)) as bot:
            await accepted(bot, buy("rec-1"))
            await refused(bot, buy("rec-2", amount=1.0), RejectCode.LIMIT_ORDER_SOL)
    table = read_recordings(foundation.settings.data_dir / "recordings").to_pylist()
    life = [(row["type"], json.loads(row["data"])) for row in table if row["type"].startswith("order.")]
    assert [(kind, data["order_id"]) for kind, data in life] == [
        ("order.request", "rec-1"), ("order.sent", "rec-1"), ("order.filled", "rec-1"), ("order.rejected", "rec-2")]
    assert life[1][1]["frame"].startswith("42900000000[\"buyOrder\"")


# --- the documented exchanges -------------------------------------------------------------------------


def documented_order_exchanges() -> list[tuple[dict, list[dict]]]:
    doc = (REPO / "docs" / "PROTOCOL.md").read_text()
    body = doc.split("\n## Orders", 1)[1].split("\n## ", 1)[0]
    exchanges: list[tuple[dict, list[dict]]] = []
    for block in re.findall(r"```json\n(.*?)\n```", body, flags=re.S):
        message = json.loads(block)
        if "action" in message:
            exchanges.append((message, []))
        else:
            exchanges[-1][1].append(message)
    return exchanges


async def test_every_documented_order_command_gets_the_documented_reply(tmp_path):
    exchanges = documented_order_exchanges()
    assert {request["action"] for request, _ in exchanges} >= {"order", "orders_halt", "player"}
    async with desk_only(tmp_path, orders="dry-run", auth_token="s3cret") as foundation:
        tick(foundation, 4)
        async with connect(ws_url(foundation)) as client:
            for request, (expected,) in exchanges:
                got = await ask(client, request)
                where = json.dumps(request)
                assert got["type"] == expected["type"] and set(got) == set(expected), where
                if expected["data"] is None:
                    assert got["data"] is None, where
                elif got["type"] == "error":
                    assert got["data"]["code"] == expected["data"]["code"], where
                else:
                    assert set(got["data"]) == set(expected["data"]), where
                    for key in ("state", "code", "kind"):
                        assert got["data"].get(key) == expected["data"].get(key), where


# --- live orders on a simulator that takes them ----------------------------------------------------


async def fresh_active_game(foundation: Foundation, timeout: float = 60) -> None:
    """Wait for the first ticks of a game, so a run of orders is done long before any rug."""
    deadline = time.monotonic() + timeout
    while True:
        last = foundation.bus.last_by_type.get("game.tick")
        if last is not None and last.data["phase"] == "ACTIVE" and (last.data["tickCount"] or 0) <= 2:
            return
        assert time.monotonic() < deadline, "no fresh ACTIVE game"
        await asyncio.sleep(0.005)


def life_of(foundation: Foundation, order_id: str) -> list[str]:
    return [e["type"] for e in published(foundation) if e["data"]["order_id"] == order_id]


async def test_live_orders_through_the_direct_executor_fill_and_match_the_simulators_books(tmp_path):
    async with simulator(speed=5, max_ticks=400) as (sim, wire):
        if not await takes_orders(sim):
            pytest.skip("this simulator takes no orders yet (GET /admin/players answers 404)")
        async with assembled(tmp_path, feed_url=sim.url, orders="live", auth_token="s3cret", order_executor="direct",
                             orders_unverified=True, feed_auth='{"player": "bot1"}',
                             order_max_tick_age_s=5.0) as foundation:
            await fresh_active_game(foundation)
            async with connect(ws_url(foundation)) as bot:
                orders = [buy("sim-buy-1", token="s3cret"),
                          {"action": "order", "kind": "sell", "percent": 50, "order_id": "sim-sell-1", "token": "s3cret"},
                          {"action": "order", "kind": "sidebet", "amount_sol": 0.001, "order_id": "sim-sb-1",
                           "token": "s3cret"}]
                for order in orders:
                    reply = await ask(bot, order)
                    assert reply["data"]["state"] in ("sent", "acked", "filled"), reply
                    await wait_until(lambda: life_of(foundation, order["order_id"])[-1:] == ["order.filled"],
                                     what=f"{order['order_id']} filled")  # the player's state came before the ack
                again = [await ask(bot, orders[0]) for _ in range(2)]
                assert all(r["data"]["state"] == "filled" for r in again)
            for order in orders:
                assert life_of(foundation, order["order_id"]) == ["order.request", "order.sent", "order.ack", "order.filled"]
            assert [e["data"]["matchedBy"] for e in published(foundation, "order.filled")] == ["trace", "trace", "sidebet"]
            assert [m.split("[", 1)[1].split(",", 1)[0] for m in wire.orders()] == [
                '"buyOrder"', '"sellOrder"', '"requestSidebet"']
            status, books = await http(sim.url + "/admin/players/bot1")
            assert status == 200, books
            state = foundation.bus.last_by_type["player.state"].data
            for figure in ("cash", "positionQty", "totalInvested"):
                assert round(state[figure] * 1e9) == books["lamports"][figure], figure


async def test_a_live_orders_moments_show_its_record_on_disk_before_the_server_saw_the_frame(tmp_path):
    """`timing` on order.sent / order.ack, on the host's one wall clock: the desk took the request, checked
    it, made its journal record durable and only then did the frame reach the server; the ack came after."""
    async with simulator(speed=5, max_ticks=400) as (sim, wire):
        if not await takes_orders(sim):
            pytest.skip("this simulator takes no orders yet (GET /admin/players answers 404)")
        async with assembled(tmp_path, feed_url=sim.url, orders="live", auth_token="s3cret", order_executor="direct",
                             feed_auth='{"player": "bot1"}', order_max_tick_age_s=5.0) as foundation:
            await fresh_active_game(foundation)
            async with connect(ws_url(foundation)) as bot:
                reply = await ask(bot, buy("moments-1", token="s3cret"))
                assert reply["data"]["state"] in ("sent", "acked", "filled"), reply
                await wait_until(lambda: "order.ack" in life_of(foundation, "moments-1"), what="the ack")
            journal = (foundation.settings.data_dir / "orders" / "journal.jsonl").read_bytes().splitlines()
        status, emitted = await http(sim.url + "/admin/emitted")
    assert status == 200, emitted
    sent = published(foundation, "order.sent")[0]["data"]["timing"]
    acked = published(foundation, "order.ack")[0]["data"]["timing"]
    assert list(sent) == ["received", "checked", "durable", "sent"], sent
    assert sent["received"] <= sent["checked"] <= sent["durable"] <= sent["sent"], sent
    assert acked == {**sent, "acked": acked["acked"]}, acked
    at_server = [e["ts_ms"] for e in emitted if e["event"] == "received/buyOrder" and e["player"] == "bot1"]
    assert len(at_server) == 1 and sent["durable"] < at_server[0] < acked["acked"], (sent, acked, at_server)
    first = orjson.loads(journal[0])
    assert (first["order_id"], first["state"], first["frame"]) == ("moments-1", "requested", wire.orders()[0]), first


# --- an order an earlier run left unsettled (the daemon end to end: tests/test_orders_restart.py) -----


SHORT = {"entryPrice": 1.2, "amount": 0.001}


@pytest.mark.parametrize(("kind", "then", "now", "phase", "outcome"), [
    ("buy", {"positionQty": 0.0}, {"positionQty": 0.0017}, "ACTIVE", "filled"),
    ("buy", {"positionQty": 0.0}, {"positionQty": 0.0}, "PRESALE", "rejected"),
    ("buy", {"positionQty": 0.004}, {"positionQty": 0.002}, "ACTIVE", "unknown"),  # moved the other way
    ("buy", {"positionQty": 0.0}, {"positionQty": 0.0}, "RUGGED", "unknown"),  # the rug force-sold everything
    ("sell", {"positionQty": 0.004}, {"positionQty": 0.002}, "ACTIVE", "filled"),
    ("sell", {"positionQty": 0.004}, {"positionQty": 0.004}, "ACTIVE", "rejected"),
    ("sidebet", {"sidebet": None}, {"sidebet": {"amount": 0.001}}, "ACTIVE", "filled"),
    ("sidebet", {"sidebet": None}, {"sidebet": None}, "ACTIVE", "rejected"),
    ("short_open", {"shortPosition": None}, {"shortPosition": SHORT}, "ACTIVE", "filled"),
    ("short_close", {"shortPosition": SHORT}, {"shortPosition": None}, "ACTIVE", "filled"),
    ("short_close", {"shortPosition": SHORT}, {"shortPosition": SHORT}, "ACTIVE", "rejected"),
])
def test_the_account_after_a_restart_settles_an_order_only_where_it_can_tell(kind, then, now, phase, outcome):
    from core.orders.after_restart import decide, player_before

    record = {"kind": kind, "gameId": GAME, "state": "timeout",
              "playerBefore": player_before({"playerId": PLAYER, "positionQty": 0.0, **then}, others_in_flight=False)}
    account = {"playerId": PLAYER, "positionQty": 0.0, "sidebet": None, "shortPosition": None, **now}
    assert decide(record, account, GAME, phase).outcome == outcome
    # the server acked it with success: an unchanged account cannot make it a refusal
    acked = decide({**record, "state": "acked"}, account, GAME, phase)
    assert acked.outcome == ("unknown" if outcome == "rejected" else outcome), acked
    assert decide(record, account, NEXT_GAME, "ACTIVE").outcome == "unknown"  # its game ended meanwhile
    assert decide(record, {**account, "playerId": "did:privy:other"}, GAME, phase).outcome == "unknown"
    assert decide({**record, "playerBefore": None}, account, GAME, phase).outcome == "unknown"
