"""The simulator plays the server's part in a player's orders, over real sockets.

A python-socketio client logged in as a player places orders like the real page; the acks, the order
of the frames around them and the player's books (to the lamport) must be what the real server does
(see ../shared/fixtures/rugs/order-cycle.json). The expected books are computed here independently
from the prices the trades report, not with the simulator's own code.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import re
import sys
import time
from types import SimpleNamespace

import aiohttp
import pytest
import socketio

from core.sim.world import World
from tests.conftest import real_feed_file
from tests.test_simulator import Client, active_anchor, admin, now_ms, simulator

SOL = "So11111111111111111111111111111111111111112"
TRACE_ID = "55110064298fdee6dc04d093c003b5c9"
TRACE = {"__trace": True, "traceparent": f"00-{TRACE_ID}-2870159c41eb0cab-01"}
OWN_FRAMES = ("standard/newTrade", "playerUpdate", "gameStatePlayerUpdate", "currentSidebet",
              "currentSidebetResult", "newSideBet", "usernameStatus")


def is_own(event: str, args: tuple) -> bool:
    if event == "standard/newTrade":
        return args[1]["playerId"].startswith("did:sim:")
    return event in OWN_FRAMES or event == "ack"


def seed_with(min_ticks: int) -> int:
    return next(s for s in range(1, 500) if World(s, 0).game(0).rug_tick >= min_ticks)


def lamports(value: float) -> int:
    return round(value * 1e9)


class Player(Client):
    """A client that records its acks among the events, so the order of frames and ack shows."""

    def own(self, since: int = 0) -> list[tuple[str, tuple]]:
        """Frames about simulated players (not the world's crowd, whose ids are did:privy) and acks."""
        return [(event, args) for _, event, args in self.events[since:] if is_own(event, args)]

    async def order(self, event: str, *args, timeout: float = 5.0):
        """Emit like the page does (with an ack id) and return (ack, the own frames since the emit)."""
        since = len(self.events)
        done = asyncio.get_running_loop().create_future()

        def on_ack(*reply):
            self.events.append((time.monotonic(), "ack", reply))
            if not done.done():
                done.set_result(reply[0] if reply else None)

        await self.emit(event, args if len(args) > 1 else args[0], callback=on_ack)
        ack = await asyncio.wait_for(done, timeout)
        return ack, self.own(since)

    def last(self, event: str) -> tuple:
        return next(args for _, name, args in reversed(self.events) if name == event)


@contextlib.asynccontextmanager
async def player(sim, name: str | None = "alice"):
    c = Player()
    await c.connect(sim.url, transports=["websocket"], auth={"player": name} if name else None)
    try:
        if name:
            await c.wait_for(lambda: any(e == "playerUpdate" for _, e, _ in c.events))
        yield c
    finally:
        if c.connected:
            await c.disconnect()


async def books(sim, name: str = "alice") -> dict:
    status, reply = await admin(sim, "GET", f"/admin/players/{name}")
    assert status == 200, reply
    return reply


def active_game(speed: float = 2, min_ticks: int = 300, max_ticks: int | None = None, **extra):
    """A simulator some ticks into a long game (or a game that rugs at `max_ticks`)."""
    return simulator(speed=speed, seed=seed_with(min_ticks), anchor_ms=active_anchor(speed, 100),
                     max_ticks=max_ticks, trades_per_s=0.5, **extra)


class Ledger:
    """The books as the test expects them, kept apart from the simulator's code."""

    def __init__(self, cash: int = 1_000_000_000):
        self.cash, self.qty, self.basis, self.invested, self.sidebet = cash, 0, 0, 0, 0

    def buy(self, amount: int, price: float) -> int:
        qty = int(amount / price)
        self.cash -= amount
        self.qty += qty
        self.basis += amount
        self.invested += amount
        return qty

    def sell(self, percent: int, price: float) -> tuple[int, int]:
        qty = self.qty if percent == 100 else self.qty * percent // 100
        proceeds = int(qty * price)
        basis = self.basis if qty == self.qty else self.basis * qty // self.qty
        self.qty -= qty
        self.basis -= basis
        self.cash += proceeds
        return qty, proceeds

    def check(self, update: dict) -> None:
        """A playerUpdate shows exactly these integers once multiplied by 1e9."""
        assert lamports(update["cash"]) == self.cash
        assert lamports(update["positionQty"]) == self.qty
        assert lamports(update["totalInvested"]) == self.invested
        assert lamports(update["avgCost"]) == (self.basis * 10**9 // self.qty if self.qty else 0)

    def check_admin(self, reply: dict) -> None:
        books = reply["lamports"]
        assert (books["cash"], books["positionQty"], books["costBasis"], books["totalInvested"], books["sidebet"]) == \
            (self.cash, self.qty, self.basis, self.invested, self.sidebet)
        assert books["avgCost"] == (self.basis * 10**9 // self.qty if self.qty else 0)
        self.check(reply["playerUpdate"])


def names(frames: list[tuple[str, tuple]]) -> list[str]:
    return [event for event, _ in frames]


def trade_of(frames) -> tuple[dict, dict]:
    trace, trade = next(args for event, args in frames if event == "standard/newTrade")
    return trace, trade


# --- a whole session of orders ----------------------------------------------------------------------
async def test_a_logged_in_player_buys_adds_sells_and_bets_to_the_lamport():
    async with active_game() as sim, player(sim) as alice, player(sim, None) as watcher:
        trace, status = alice.last("usernameStatus")
        update = alice.last("playerUpdate")
        assert trace["__trace"] is True
        assert status == {"id": "did:sim:alice", "username": "alice", "hasUsername": True}
        assert update[0]["cash"] == 1.0 and update[0]["authenticated"] is True and update[0]["positionQty"] == 0
        ledger = Ledger()

        # buy 0.002 with the trace element, as the real page sends it
        ack, frames = await alice.order("buyOrder", TRACE, {"amount": 0.002})
        assert ack == {"success": True}
        assert names(frames) == ["standard/newTrade", "playerUpdate", "gameStatePlayerUpdate", "ack"]
        trace, trade = trade_of(frames)
        assert trace["__trace"] is True
        assert trace["traceparent"].split("-")[1] == TRACE_ID and trace["traceparent"] != TRACE["traceparent"]
        assert (trade["playerId"], trade["username"], trade["type"], trade["amount"]) == \
            ("did:sim:alice", "alice", "buy", 0.002)
        qty = ledger.buy(2_000_000, trade["price"])
        assert lamports(trade["qty"]) == qty
        ledger.check(frames[1][1][0])
        entry = frames[2][1][0]["leaderboardEntry"]
        assert entry["id"] == "did:sim:alice" and lamports(entry["positionQty"]) == ledger.qty
        assert frames[2][1][0]["gameId"] == trade["gameId"]

        # add 0.003 without the trace element (the documented shape): a trace of its own
        ack, frames = await alice.order("buyOrder", {"amount": 0.003})
        assert ack == {"success": True}
        assert names(frames) == ["standard/newTrade", "playerUpdate", "gameStatePlayerUpdate", "ack"]
        trace, trade = trade_of(frames)
        assert re.fullmatch(r"00-[0-9a-f]{32}-[0-9a-f]{16}-01", trace["traceparent"])
        assert TRACE_ID not in trace["traceparent"]
        ledger.buy(3_000_000, trade["price"])
        ledger.check(frames[1][1][0])

        for percent in (50, 100):
            ack, frames = await alice.order("sellOrder", TRACE, {"percentage": percent})
            assert ack == {"success": True}
            assert names(frames) == ["standard/newTrade", "playerUpdate", "gameStatePlayerUpdate", "ack"]
            _, trade = trade_of(frames)
            sold, proceeds = ledger.sell(percent, trade["price"])
            assert trade["type"] == "sell" and lamports(trade["qty"]) == sold and lamports(trade["amount"]) == proceeds
            ledger.check(frames[1][1][0])
        assert ledger.qty == 0
        ledger.check_admin(await books(sim))

        ack, frames = await alice.order("requestSidebet", TRACE, {"amount": 0.001, "coinAddress": SOL, "xPayout": 5})
        assert ack["success"] is True and ack["message"] == "Side bet placed"
        assert names(frames) == ["playerUpdate", "currentSidebet", "newSideBet", "gameStatePlayerUpdate", "ack"]
        bet = ack["sidebet"]
        assert (bet["playerId"], bet["betAmount"], bet["xPayout"], bet["coinAddress"], bet["type"]) == \
            ("did:sim:alice", 0.001, 5, SOL, "placed")
        assert bet["endTick"] == bet["startTick"] + 40
        placed_trace, placed = frames[1][1]
        assert placed_trace["traceparent"].split("-")[1] == TRACE_ID and placed == bet | placed
        ledger.cash -= 1_000_000
        ledger.sidebet = 1_000_000
        update = frames[0][1][0]
        ledger.check(update)
        assert update["sideBet"]["startedAtTick"] == bet["startTick"] and update["sideBet"]["end"] == bet["endTick"]
        assert frames[3][1][0]["leaderboardEntry"]["sidebetActive"] is True
        ledger.check_admin(await books(sim))

        # everyone sees the trades; only alice sees her own account
        await watcher.wait_for(lambda: sum(1 for _, e, a in watcher.events
                                           if e == "standard/newTrade" and a[1]["playerId"] == "did:sim:alice") == 4)
        assert not [e for _, e, _ in watcher.events if e in ("playerUpdate", "gameStatePlayerUpdate", "currentSidebet")]
        assert [e for _, e, _ in watcher.events if e == "newSideBet"]


async def test_two_connections_of_one_player_share_the_books():
    async with active_game() as sim, player(sim) as first, player(sim) as second:
        ack, _ = await first.order("buyOrder", TRACE, {"amount": 0.01})
        assert ack == {"success": True}
        await second.wait_for(lambda: second.last("playerUpdate")[0]["cash"] == 0.99)
        reply = await books(sim)
        assert reply["connections"] == 2 and reply["lamports"]["cash"] == 990_000_000


# --- the rug ----------------------------------------------------------------------------------------
async def rug_with_position_and_sidebet():
    """Buy and bet a few ticks into a game that rugs at tick 30: the bet (ticks n..n+40) wins."""
    async with active_game(speed=5, min_ticks=40, max_ticks=30) as sim, player(sim) as alice:
        bought, _ = await alice.order("buyOrder", TRACE, {"amount": 0.01})
        bet, _ = await alice.order("requestSidebet", TRACE, {"amount": 0.001, "coinAddress": SOL, "xPayout": 5})
        assert bought["success"] and bet["success"], (bought, bet)
        await alice.wait_for(lambda: any(e == "gameStateUpdate" and a[0].get("rugged") for _, e, a in alice.events))
        after = await alice.order("buyOrder", TRACE, {"amount": 0.001})
        late_bet = await alice.order("requestSidebet", TRACE, {"amount": 0.001, "coinAddress": SOL, "xPayout": 5})
        return alice, await books(sim), after, late_bet


async def test_the_rug_settles_the_sidebet_and_force_sells_the_position():
    alice, reply, (after, _), (late_bet, _) = await rug_with_position_and_sidebet()
    events = [(e, a) for _, e, a in alice.events
              if (is_own(e, a) and e != "ack") or (e == "gameStateUpdate" and a[0].get("rugged"))]
    placed = next(n for n, (e, _) in enumerate(events) if e == "currentSidebet")
    tail = events[placed + 3:]  # after currentSidebet, newSideBet, gameStatePlayerUpdate of the bet
    assert names(tail[:6]) == ["currentSidebetResult", "playerUpdate", "standard/newTrade", "playerUpdate",
                               "gameStatePlayerUpdate", "gameStateUpdate"]
    rug = tail[5][1][0]
    _, result = tail[0][1]
    assert (result["type"], result["payout"], result["profit"], result["tickIndex"]) == ("payout", 0.005, 0.004, rug["tickCount"])
    _, sell = tail[2][1]
    buy = next(a[1] for e, a in events if e == "standard/newTrade" and a[1]["type"] == "buy")
    qty = int(10_000_000 / buy["price"])
    assert (sell["type"], lamports(sell["qty"]), sell["price"], sell["tickIndex"]) == \
        ("sell", qty, rug["price"], rug["tickCount"])
    cash = 1_000_000_000 - 10_000_000 - 1_000_000 + 5_000_000 + int(qty * rug["price"])
    final = tail[3][1][0]
    assert lamports(final["cash"]) == cash and final["positionQty"] == 0 and final["sideBet"] is None
    assert reply["lamports"]["cash"] == cash and reply["lamports"]["positionQty"] == 0
    entry = tail[4][1][0]["leaderboardEntry"]
    assert entry["positionQty"] == 0 and entry["avgCost"] == 0 and entry["sideBet"] is None
    assert entry["sidebetPnl"] == 0.004 and entry["totalInvested"] == 0.01
    assert after["success"] is False and after["reason"] == "game_not_running"
    assert late_bet["success"] is False and late_bet["reason"] == "game_not_running"


async def test_a_sidebet_whose_window_ends_before_the_rug_is_lost():
    async with active_game(speed=10, min_ticks=200) as sim, player(sim) as alice:
        ack, _ = await alice.order("requestSidebet", {"amount": 0.002, "coinAddress": SOL, "xPayout": 5})
        await alice.wait_for(lambda: any(e == "currentSidebetResult" for _, e, _ in alice.events), timeout=10)
        _, result = alice.last("currentSidebetResult")
        assert (result["type"], result["payout"], result["profit"]) == ("loss", 0, -0.002)
        assert result["tickIndex"] == ack["sidebet"]["endTick"] + 1
        await alice.wait_for(lambda: alice.last("playerUpdate")[0]["sideBet"] is None)
        assert (await books(sim))["lamports"]["cash"] == 998_000_000


# --- shorts (names of the simulator's own) ----------------------------------------------------------
async def test_a_short_gains_what_the_price_loses():
    async with active_game(speed=10) as sim, player(sim) as alice:
        ack, frames = await alice.order("shortOpen", TRACE, {"amount": 0.01})
        assert ack == {"success": True}
        _, opened = trade_of(frames)
        assert (opened["type"], opened["amount"], opened["qty"]) == ("short_open", 0.01, 0)
        assert frames[1][1][0]["shortPosition"]["entryPrice"] == opened["price"]
        await asyncio.sleep(0.2)
        ack, frames = await alice.order("shortClose", TRACE, {})
        assert ack == {"success": True}
        _, closed = trade_of(frames)
        value = min(max(int(10_000_000 * (2 - closed["price"] / opened["price"])), 0), 20_000_000)
        assert closed["type"] == "short_close" and lamports(closed["amount"]) == value
        assert frames[1][1][0]["shortPosition"] is None
        assert (await books(sim))["lamports"]["cash"] == 1_000_000_000 - 10_000_000 + value


# --- failure acks ----------------------------------------------------------------------------------
BAD_ORDERS = [
    ("buyOrder", (TRACE, {"amount": 2}), "insufficient_funds"),
    ("sellOrder", (TRACE, {"percentage": 100}), "no_position"),
    ("shortClose", (TRACE, {}), "no_short"),
    ("buyOrder", (TRACE, "0.1"), "malformed"),
    ("buyOrder", (TRACE, {"amt": 0.1}), "malformed"),
    ("buyOrder", (TRACE, {"amount": 0.1, "leverage": 2}), "malformed"),
    ("buyOrder", (TRACE, {"amount": 0.1}, {"amount": 0.1}), "malformed"),
    ("buyOrder", ({"__trace": True, "traceparent": "nope"}, {"amount": 0.1}), "malformed"),
    ("shortClose", (TRACE, {"amount": 1}), "malformed"),
    ("buyOrder", (TRACE, {"amount": 0}), "bad_amount"),
    ("buyOrder", (TRACE, {"amount": -1}), "bad_amount"),
    ("buyOrder", (TRACE, {"amount": "0.1"}), "bad_amount"),
    ("buyOrder", (TRACE, {"amount": True}), "bad_amount"),
    ("buyOrder", (TRACE, {"amount": 0.0001}), "bad_amount"),
    ("buyOrder", (TRACE, {"amount": 0.0010000001}), "bad_amount"),
    ("buyOrder", (TRACE, {"amount": 1e300}), "bad_amount"),
    ("sellOrder", (TRACE, {"percentage": 0}), "bad_percentage"),
    ("sellOrder", (TRACE, {"percentage": 101}), "bad_percentage"),
    ("sellOrder", (TRACE, {"percentage": 33.3}), "bad_percentage"),
    ("requestSidebet", (TRACE, {"amount": 0.001, "coinAddress": "0xPractice", "xPayout": 5}), "bad_sidebet"),
    ("requestSidebet", (TRACE, {"amount": 0.001, "coinAddress": SOL, "xPayout": 3}), "bad_sidebet"),
    ("requestSidebet", (TRACE, {"amount": 5, "coinAddress": SOL, "xPayout": 5}), "insufficient_funds"),
]


async def test_every_bad_order_gets_a_failure_ack_and_changes_nothing():
    async with active_game() as sim, player(sim) as alice:
        for event, args, reason in BAD_ORDERS:
            ack, frames = await alice.order(event, *args)
            assert ack["success"] is False and ack["reason"] == reason, (event, args, ack)
            assert isinstance(ack["message"], str) and ack["message"]
            assert names(frames) == ["ack"], (event, args)
        assert (await books(sim))["lamports"]["cash"] == 1_000_000_000
        # one at a time: a second sidebet or short while one runs
        for event, payload in (("requestSidebet", {"amount": 0.001, "coinAddress": SOL, "xPayout": 5}),
                               ("shortOpen", {"amount": 0.001})):
            first, _ = await alice.order(event, TRACE, payload)
            second, frames = await alice.order(event, TRACE, payload)
            assert first["success"] is True and second["success"] is False and names(frames) == ["ack"]
            assert second["reason"] == ("sidebet_active" if event == "requestSidebet" else "short_active")
        assert (await books(sim))["lamports"]["cash"] == 998_000_000


async def test_orders_in_the_cooldown_are_refused():
    async with simulator(speed=1, seed=3, anchor_ms=now_ms()) as sim, player(sim) as alice:
        for event, payload in (("buyOrder", {"amount": 0.001}),
                               ("requestSidebet", {"amount": 0.001, "coinAddress": SOL, "xPayout": 5})):
            ack, frames = await alice.order(event, TRACE, payload)
            assert ack["success"] is False and ack["reason"] == "game_not_running" and "cooldown" in ack["message"]
            assert names(frames) == ["ack"]


async def test_anonymous_connections_trade_as_guests_unless_login_is_required():
    async with active_game() as sim, player(sim, None) as anonymous:
        assert not anonymous.own()
        ack, frames = await anonymous.order("buyOrder", TRACE, {"amount": 0.001})
        assert ack == {"success": True}
        assert trade_of(frames)[1]["username"] == "guest-1" and frames[1][1][0]["authenticated"] is False
        reply = await books(sim, "guest-1")
        assert reply["guest"] is True and reply["lamports"]["cash"] == 999_000_000
    async with active_game(require_login=True) as sim, player(sim, None) as anonymous:
        ack, frames = await anonymous.order("buyOrder", TRACE, {"amount": 0.001})
        assert ack["success"] is False and ack["reason"] == "not_logged_in" and names(frames) == ["ack"]
        status, listed = await admin(sim, "GET", "/admin/players")
        assert status == 200 and listed == []


@pytest.mark.parametrize("auth", [{"player": ""}, {"player": "a b"}, {"player": 7}, {"name": "alice"},
                                  {"player": "guest-1"}])
async def test_bad_auth_is_refused_with_the_reason(auth):
    """The refusal's text shows in the raw CONNECT_ERROR packet (python-socketio's client hides it)."""
    async with simulator(speed=20) as sim, aiohttp.ClientSession() as session:
        url = sim.url.replace("http://", "ws://") + "/socket.io/?EIO=4&transport=websocket"
        async with session.ws_connect(url) as ws:
            assert (await ws.receive_str()).startswith("0{")
            await ws.send_str("40" + json.dumps(auth))
            refusal = await ws.receive_str()
        assert refusal.startswith("44") and "player" in json.loads(refusal[2:])["message"]
        with pytest.raises(socketio.exceptions.ConnectionError):
            await Client().connect(sim.url, transports=["websocket"], auth=auth)


async def test_starting_cash_is_an_option():
    async with active_game(starting_cash=2.5) as sim, player(sim, "bob") as bob:
        assert bob.last("playerUpdate")[0]["cash"] == 2.5
        status, reply = await admin(sim, "GET", "/admin/players/nobody")
        assert status == 404 and "nobody" in reply["error"]


async def test_the_command_line_takes_the_trading_options():
    speed = 2
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "vectra_cli", "sim", "--port", "0", "--speed", str(speed), "--seed", str(seed_with(300)),
        "--anchor-ms", str(active_anchor(speed, 100)), "--starting-cash", "2", "--require-login",
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        line = (await asyncio.wait_for(proc.stderr.readline(), 10)).decode()
        url = re.search(r"http://\S+", line).group(0)
        sim = SimpleNamespace(url=url)
        async with player(sim, "dana") as dana, player(sim, None) as anonymous:
            assert dana.last("playerUpdate")[0]["cash"] == 2.0
            refused, _ = await anonymous.order("buyOrder", TRACE, {"amount": 0.001})
            assert refused["reason"] == "not_logged_in"
    finally:
        proc.terminate()
        assert await asyncio.wait_for(proc.wait(), 10) == 0
    bad = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "vectra_cli", "sim", "--port", "0", "--starting-cash", "-1",
        stderr=asyncio.subprocess.PIPE,
    )
    _, err = await asyncio.wait_for(bad.communicate(), 10)
    assert bad.returncode == 2 and b"starting cash" in err


# --- ack faults ------------------------------------------------------------------------------------
async def test_a_dropped_ack_never_comes_but_the_order_executes():
    async with active_game() as sim, player(sim) as alice:
        status, reply = await admin(sim, "POST", "/admin/acks", {"drop": 1})
        assert status == 200 and reply == {"ok": True, "drop": 1, "delay_ms": 0, "drop_trades": 0}
        with pytest.raises(asyncio.TimeoutError):
            await alice.order("buyOrder", TRACE, {"amount": 0.01}, timeout=1.0)
        assert names(alice.own())[-3:] == ["standard/newTrade", "playerUpdate", "gameStatePlayerUpdate"]
        assert (await books(sim))["lamports"]["cash"] == 990_000_000
        ack, _ = await alice.order("buyOrder", TRACE, {"amount": 0.01})
        assert ack == {"success": True}
        _, log = await admin(sim, "GET", "/admin/emitted?since=0")
        orders = [e["event"] for e in log if e["event"].split("/")[0] in ("received", "ack", "ack-dropped")]
        assert orders == ["received/buyOrder", "ack-dropped/buyOrder", "received/buyOrder", "ack/buyOrder"]
        assert {e["player"] for e in log if e["event"].endswith("/buyOrder")} == {"alice"}


async def test_a_delayed_ack_comes_after_the_frames_and_the_delay():
    async with active_game() as sim, player(sim) as alice:
        await admin(sim, "POST", "/admin/acks", {"delay_ms": 400})
        ack, frames = await alice.order("buyOrder", TRACE, {"amount": 0.01})
        assert ack == {"success": True} and names(frames)[-1] == "ack"
        stamps = {event: t for t, event, _ in alice.events if event in ("ack", "gameStatePlayerUpdate")}
        assert stamps["ack"] - stamps["gameStatePlayerUpdate"] >= 0.35  # a lower bound: load cannot break it
        status, reply = await admin(sim, "POST", "/admin/acks", {"delay_ms": 0})
        assert status == 200 and reply["delay_ms"] == 0
        status, reply = await admin(sim, "GET", "/admin/acks")
        assert reply == {"drop": 0, "delay_ms": 0, "drop_trades": 0}


async def test_a_dropped_trade_reaches_no_one_but_the_order_stands_and_is_acked():
    """The fault a client must survive: a successful ack whose own trade it never saw. A refused order
    uses none up; the order after the dropped one trades in the open again."""
    async with active_game() as sim, player(sim) as alice, player(sim, "bob") as bob:
        status, reply = await admin(sim, "POST", "/admin/acks", {"drop_trades": 1})
        assert status == 200 and reply == {"ok": True, "drop": 0, "delay_ms": 0, "drop_trades": 1}
        refused, _ = await alice.order("buyOrder", TRACE, {"amount": 0.0001})
        assert refused["reason"] == "bad_amount"
        ack, frames = await alice.order("buyOrder", TRACE, {"amount": 0.01})
        assert ack == {"success": True}
        assert names(frames) == ["playerUpdate", "gameStatePlayerUpdate", "ack"]
        assert (await books(sim))["lamports"]["cash"] == 990_000_000
        assert alice.last("playerUpdate")[0]["positionQty"] > 0
        ack, frames = await alice.order("buyOrder", TRACE, {"amount": 0.02})
        assert ack == {"success": True} and names(frames)[0] == "standard/newTrade"
        await bob.wait_for(lambda: any(e == "standard/newTrade" and args[1]["amount"] == 0.02
                                       for _, e, args in bob.events))
        seen = [args[1]["amount"] for _, e, args in bob.events
                if e == "standard/newTrade" and args[1]["playerId"] == "did:sim:alice"]
        assert seen == [0.02], "bob sees the next trade and never the dropped one"
        _, log = await admin(sim, "GET", "/admin/emitted?since=0")
        orders = [e["event"] for e in log if e["event"].split("/")[0] in ("received", "ack", "trade-dropped")]
        assert orders == ["received/buyOrder", "ack/buyOrder", "received/buyOrder", "trade-dropped/buyOrder",
                          "ack/buyOrder", "received/buyOrder", "ack/buyOrder"]
        assert (await admin(sim, "GET", "/admin/acks"))[1]["drop_trades"] == 0


@pytest.mark.parametrize(("body", "message"), [
    (b"{nope", "not valid JSON"),
    ([1], "JSON object"),
    ({}, "JSON object"),
    ({"drop": -1}, "between"),
    ({"drop": 1.5}, "integer"),
    ({"delay_ms": "5"}, "number"),
    ({"delay": 5}, "unexpected"),
    ({"drop_trades": -1}, "between"),
])
async def test_bad_ack_fault_requests_get_a_clear_400(body, message):
    async with simulator(speed=20) as sim:
        raw = body if isinstance(body, bytes) else None
        status, reply = await admin(sim, "POST", "/admin/acks", None if raw else body, raw=raw)
        assert status == 400 and message in reply["error"]


# --- the captured wire text -------------------------------------------------------------------------
def order_cycle() -> list[dict]:
    return real_feed_file("order-cycle.json", "order captures")["sequences"]


def parse_frame(text: str) -> tuple[str, int | None, list]:
    """`42<id>[...]` / `43<id>[...]` -> (packet type, ack id, arguments)."""
    match = re.fullmatch(r"(4[23])(\d*)(\[.*\])", text, re.S)
    assert match, text
    return match.group(1), int(match.group(2)) if match.group(2) else None, json.loads(match.group(3))


async def raw_session(sim, frames_to_send: list[str]) -> list[list[str]]:
    """A bare Engine.IO WebSocket logged in as `nomad` sends captured text verbatim, one frame at a
    time; returns, per frame, the simulated players' frames and the ack that came back for it."""
    replies: list[list[str]] = []
    url = sim.url.replace("http://", "ws://") + "/socket.io/?EIO=4&transport=websocket"
    async with aiohttp.ClientSession() as session, session.ws_connect(url, max_msg_size=0) as ws:
        assert (await ws.receive_str()).startswith("0{")
        await ws.send_str("40" + json.dumps({"player": "nomad"}))
        assert (await ws.receive_str()).startswith("40{")
        for text in frames_to_send:
            await ws.send_str(text)
            ack_prefix = f"43{parse_frame(text)[1]}["
            received: list[str] = []
            while not (received and received[-1].startswith(ack_prefix)):
                message = await ws.receive(timeout=10)
                assert message.type == aiohttp.WSMsgType.TEXT, message
                if message.data == "2":
                    await ws.send_str("3")
                elif not message.data.startswith(('42["gameStateUpdate"', '42["usernameStatus"')) \
                        and '"playerId":"did:privy:' not in message.data:
                    received.append(message.data)
            replies.append(received)
    return replies


async def test_the_captured_order_frames_get_the_captured_replies():

    sequences = {s["name"]: s for s in order_cycle()}
    captured_buy = next(f["frame"] for f in sequences["buy_add_to_position"]["frames"] if f["direction"] == "sent")
    documented = [f["frame"] for f in sequences["buy_sell_order_documented"]["frames"] if f["direction"] == "sent"]
    async with active_game() as sim:
        replies = await raw_session(sim, [captured_buy, *documented])
    expected_ack = next(f["frame"] for f in sequences["buy_add_to_position"]["frames"] if f["frame"].startswith("43"))
    acks = [expected_ack, '43425[{"success":true}]', '43426[{"success":true}]']  # the first as captured
    kinds = []
    for received, ack in zip(replies, acks, strict=True):
        events = [parse_frame(r)[2][0] if r.startswith("42") else r for r in received]
        assert events[-4:] == ["standard/newTrade", "playerUpdate", "gameStatePlayerUpdate", ack]
        kinds.append(parse_frame(received[-4])[2][2]["type"])
    assert kinds == ["buy", "buy", "sell"]
    own_trace = parse_frame(replies[0][-4])[2][1]["traceparent"].split("-")[1]
    assert own_trace == parse_frame(captured_buy)[2][1]["traceparent"].split("-")[1]


def keys_of(frames: list[tuple[str, tuple]], event: str) -> list[list]:
    return [list(args) for name, args in frames if name == event]


async def test_the_frames_have_the_keys_of_the_captured_ones():

    captured: dict[str, list] = {}
    for sequence in order_cycle():
        for frame in sequence["frames"]:
            kind, _, args = parse_frame(frame["frame"])
            if frame["direction"] == "received" and kind == "42":
                captured.setdefault(args[0], []).append(args[1:])
            elif kind == "43" and args and isinstance(args[0], dict) and "sidebet" in args[0]:
                captured["sidebet ack"] = [args]
    alice, _, _, _ = await rug_with_position_and_sidebet()
    mine = [(e, a) for _, e, a in alice.events]
    acks = [a for e, a in mine if e == "ack" and a and "sidebet" in a[0]]

    def same_keys(ours: dict, theirs: dict, allowed_extra: set = frozenset()) -> None:
        assert [k for k in ours if k in theirs] == list(theirs), (list(ours), list(theirs))
        assert set(ours) - set(theirs) <= allowed_extra

    trade = next(a for e, a in mine if e == "standard/newTrade" and a[1]["playerId"] == "did:sim:alice")
    their_trade = captured["standard/newTrade"][0]
    assert set(trade[0]) == set(their_trade[0]) == {"__trace", "traceparent"}
    same_keys(trade[1], their_trade[1])

    update = next(a[0] for e, a in mine if e == "playerUpdate" and a[0]["sideBet"])
    for theirs in captured["playerUpdate"]:
        same_keys(update, theirs[0], {"recentCrateRewards"})  # elided in the captures, present in real frames
    same_keys(update["sideBet"], captured["playerUpdate"][0][0]["sideBet"])

    standings = [a[0] for e, a in mine if e == "gameStatePlayerUpdate"]
    with_bet = next(s for s in standings if s["leaderboardEntry"]["sideBet"])
    for theirs in captured["gameStatePlayerUpdate"]:
        same_keys(with_bet, {k: v for k, v in theirs[0].items() if k != "rugpool"})  # rugpool: presale only
        split = {"regularPnl", "shortPnl", "sidebetPnl"} - set(theirs[0]["leaderboardEntry"])  # not in presale
        same_keys(with_bet["leaderboardEntry"], theirs[0]["leaderboardEntry"], split)
    same_keys(with_bet["leaderboardEntry"]["sideBet"], captured["gameStatePlayerUpdate"][0][0]["leaderboardEntry"]["sideBet"])

    for event in ("currentSidebet", "currentSidebetResult"):
        ours = next(a for e, a in mine if e == event)
        theirs = captured[event][0]
        assert set(ours[0]) == set(theirs[0]) == {"__trace", "traceparent"}
        same_keys(ours[1], theirs[1])
    assert list(acks[0][0]) == list(captured["sidebet ack"][0][0])
    same_keys(acks[0][0]["sidebet"], captured["sidebet ack"][0][0]["sidebet"])


async def test_the_frames_match_the_schemas_of_the_recorded_feed(discovered_schemas):
    """The 20 recordings' schemas: a `playerUpdate` has 27 keys; `newSideBet` and trades these fields."""
    alice, _, _, _ = await rug_with_position_and_sidebet()
    mine = [(e, a) for _, e, a in alice.events]

    def fields_of(event: str) -> set[str]:
        return set(discovered_schemas[event]["properties"]["data"]["items"]["properties"]) - {"__trace", "traceparent"}

    assert all(len(a[0]) == 27 for e, a in mine if e == "playerUpdate")
    assert "<object with 27 keys>" in discovered_schemas["playerUpdate"]["properties"]["data"]["examples"]
    bet = next(a for e, a in mine if e == "newSideBet")
    assert set(bet[0]) == {"__trace", "traceparent"} and set(bet[1]) == fields_of("newSideBet")
    buy = next(a[1] for e, a in mine if e == "standard/newTrade" and a[1]["playerId"] == "did:sim:alice")
    assert set(buy) == fields_of("standard/newTrade")
