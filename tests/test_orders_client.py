"""Bots and operators use orders: the Python client (`core.client.Vectra`) and the `vectra order`,
`vectra orders` and `vectra player` commands, against a real daemon on the simulator, over real ZeroMQ.

The simulator starts in the middle of a long game (a seed whose first game runs for hundreds of
ticks, anchored a few ticks into it), so every order meets an open game and the outcome of each test
never depends on where a random rug falls.
"""

from __future__ import annotations

import asyncio
import json
import re
import signal
import subprocess
import sys
import time
import urllib.request
from typing import Any

import pytest
import socketio

from core.client import Refused, Vectra
from core.sim.world import COOLDOWN_MS, TICK_MS, World
from tests.conftest import free_port
from tests.processes import REPO, VECTRA, SimProcess
from tests.test_orders_restart import admin
from tests.test_tui_live import until
from vectra_tui.remote import RemoteFoundation

pytestmark = pytest.mark.timeout(180)

TOKEN = "s3cret-bot-token"
SPEED = 2
LONG_GAME_TICKS = 600  # at SPEED, a few minutes of an open game: longer than any test here
FIGURES = ("cash", "positionQty", "totalInvested")
LIVE = {"VECTRA_ORDERS": "live", "VECTRA_ORDER_EXECUTOR": "direct", "VECTRA_ORDERS_UNVERIFIED": "true",
        "VECTRA_FEED_AUTH": '{"player": "bot"}', "VECTRA_ORDER_MAX_TICK_AGE_S": "5"}


def long_game_seed() -> int:
    return next(seed for seed in range(1, 1000) if World(seed, 0).game(0).rug_tick >= LONG_GAME_TICKS)


@pytest.fixture
def sim():
    """A simulator a few ticks into a game that lasts for minutes."""
    anchor = int(time.time() * 1000) - (COOLDOWN_MS + 4 * TICK_MS) // SPEED
    process = SimProcess(speed=SPEED, seed=long_game_seed(), max_ticks=LONG_GAME_TICKS * 2, anchor_ms=anchor)
    yield process.start()
    process.kill()


def live_daemon(sim, daemon_for, monkeypatch, **env: str):  # noqa: ANN001 - the fixtures
    """A live daemon whose direct connection is logged in to the simulator as `bot`; the token comes
    from the environment, for the daemon and the client alike."""
    monkeypatch.setenv("VECTRA_AUTH_TOKEN", TOKEN)
    started = daemon_for(sim, **LIVE, **env)
    started.wait_for(lambda events: any(e["type"] == "game.tick" and e["data"]["phase"] == "ACTIVE" for e in events))
    return started


@pytest.fixture
def daemon(sim, daemon_for, monkeypatch):
    return live_daemon(sim, daemon_for, monkeypatch)


def get(url: str) -> Any:
    with urllib.request.urlopen(url, timeout=5) as reply:
        return json.loads(reply.read())


async def books(sim: SimProcess) -> dict[str, int]:
    """The simulator's own books for the player `bot`, in lamports."""
    return (await asyncio.to_thread(get, f"{sim.url}/admin/players/bot"))["lamports"]


async def wire_count(sim: SimProcess, event: str) -> int:
    """How many order frames of this event the simulator received, whatever Vectra says."""
    emitted = await asyncio.to_thread(get, f"{sim.url}/admin/emitted")
    return sum(1 for entry in emitted if entry["event"] == f"received/{event}")


class Channels:
    """What a bot sees on the stream, collected by a task as it arrives."""

    def __init__(self, vectra: Vectra, *patterns: str) -> None:
        self.events: list[Any] = []
        self._task = asyncio.create_task(self._collect(vectra.subscribe(*patterns)))

    async def _collect(self, subscription: Any) -> None:
        async for event in subscription:
            if event.seq is not None:
                self.events.append(event)

    def life(self, order_id: str) -> list[str]:
        return [e.type for e in self.events if e.type.startswith("order.") and e.data["order_id"] == order_id]

    async def until(self, order_id: str, channel: str, timeout: float = 20) -> None:
        deadline = time.monotonic() + timeout
        while channel not in self.life(order_id):
            assert time.monotonic() < deadline, f"{order_id}: no {channel} within {timeout} s: {self.life(order_id)}"
            await asyncio.sleep(0.02)

    async def close(self) -> None:
        self._task.cancel()
        await asyncio.gather(self._task, return_exceptions=True)


async def test_a_bot_buys_adds_sells_and_bets_and_its_player_state_matches_the_simulators_books(sim, daemon):
    async with Vectra() as vectra:
        channels = Channels(vectra, "order.*", "player.state")
        await asyncio.sleep(0.5)  # the subscription is live before the first order
        steps = [
            ("buy-1", vectra.buy(0.002, order_id="buy-1")),
            ("buy-2", vectra.buy(0.003, order_id="buy-2")),
            ("sell-half", vectra.sell(percent=50, order_id="sell-half")),
            ("sell-all", vectra.sell(percent=100, order_id="sell-all")),
            ("bet-1", vectra.sidebet(0.001, order_id="bet-1")),
        ]
        positions = []
        for order_id, placing in steps:
            record = await placing
            assert record.order_id == order_id and not record.dry_run
            assert record.state in ("sent", "acked", "filled"), record
            await channels.until(order_id, "order.filled")
            positions.append((await vectra.player())["positionQty"])
        for order_id, _ in steps:
            assert channels.life(order_id) == ["order.request", "order.sent", "order.ack", "order.filled"], order_id
        assert positions[0] > 0 and positions[1] > positions[0]
        assert positions[2] == pytest.approx(positions[1] / 2, rel=1e-6)
        assert positions[3] == positions[4] == 0
        assert any(e.type == "player.state" for e in channels.events)
        await channels.close()

        deadline = time.monotonic() + 10
        while True:  # the player's state follows the books within a frame or two
            held = await books(sim)
            state = await vectra.player()
            matches = {figure: round(state[figure] * 1e9) == held[figure] for figure in FIGURES}
            if all(matches.values()) or time.monotonic() > deadline:
                break
            await asyncio.sleep(0.1)
        assert all(matches.values()), (matches, state, held)
    assert await wire_count(sim, "buyOrder") == 2
    assert await wire_count(sim, "sellOrder") == 2
    assert await wire_count(sim, "requestSidebet") == 1


def settling_quickly(sim, daemon_for, monkeypatch):  # noqa: ANN001 - the fixtures
    """A live daemon that knows the player's account before the first order (so the order keeps its
    `playerBefore`) and gives up on a lost trade soon: the account is asked 6 s after the ack, for the
    last time 10 s after sending (what a test does between the ack and then has 6 s on a busy machine)."""
    started = live_daemon(sim, daemon_for, monkeypatch, VECTRA_ORDER_ACK_TIMEOUT_S="6",
                          VECTRA_ORDER_SETTLE_TIMEOUT_S="10")
    started.wait_for(lambda events: any(e["type"] == "player.state" for e in events))
    return started


def nothing_more_after_a_restart(sim, daemon_for, monkeypatch):  # noqa: ANN001 - the fixtures
    """The daemon started again on the same data, once it has the player's account (`player.update`)
    and a tick after it: the moment it would settle again whatever the journal left unsettled."""
    restarted = settling_quickly(sim, daemon_for, monkeypatch)
    account = restarted.wait_for(lambda events: any(e["type"] == "player.update" for e in events))
    events = restarted.wait_for(lambda events: any(e["type"] == "game.tick" for e in events[len(account):]))
    assert [e for e in events if e["type"].startswith("order.")] == [], "the outcome was journaled"


@pytest.mark.parametrize("sold_by_hand", [False, True], ids=["filled", "sold-by-hand"])
async def test_a_buy_acked_without_its_trade_is_settled_by_the_account_in_the_same_run(
    sim, daemon_for, monkeypatch, sold_by_hand
):
    """The simulator carries the buy out and acks it with success, but the buy's own trade frame is
    lost. The bot still learns the outcome, in the same run: the position grew, `order.filled`
    (`matchedBy: position`). If the player sold everything by hand before the account was asked, an
    unchanged account is no refusal (the server took the order): it stays `acked` and
    `order.unsettled` says why. Either way the outcome is journaled: the next run hands the same
    record to a retry and settles nothing again."""
    daemon = settling_quickly(sim, daemon_for, monkeypatch)
    await asyncio.to_thread(admin, sim, "/admin/acks", {"drop_trades": 1})
    async with Vectra(timeout=2, attempts=10) as vectra, socketio.AsyncSimpleClient() as page:
        await page.connect(sim.url, auth={"player": "bot"}, transports=["websocket"])
        channels = Channels(vectra, "order.*")
        await asyncio.sleep(0.5)  # the subscription is live before the order
        await vectra.buy(0.002, order_id="lost-trade")
        await channels.until("lost-trade", "order.ack")
        if sold_by_hand:
            assert await page.call("sellOrder", {"percentage": 100}, timeout=5) == {"success": True}
        outcome = "order.unsettled" if sold_by_hand else "order.filled"
        await channels.until("lost-trade", outcome)
        await channels.close()
        assert channels.life("lost-trade") == ["order.request", "order.sent", "order.ack", outcome]
        ack, settled = [e for e in channels.events if e.type in ("order.ack", outcome)]
        assert ack.data["success"] is True
        record = (await vectra.buy(0.002, order_id="lost-trade")).data
        if sold_by_hand:
            assert "positionQty unchanged" in settled.data["reason"], settled.data
            assert record["state"] == "acked" and record["whyUnknown"] == settled.data["reason"], record
        else:
            assert (settled.data["matchedBy"], settled.data["trade"], settled.data["price"]) == ("position", None, None)
            assert record["state"] == "filled", record
        assert daemon.terminate() == 0
        nothing_more_after_a_restart(sim, daemon_for, monkeypatch)
        assert (await vectra.buy(0.002, order_id="lost-trade")).data == record
    emitted = await asyncio.to_thread(get, f"{sim.url}/admin/emitted")
    assert [entry["event"] for entry in emitted if entry["event"].endswith("/buyOrder")] == [
        "received/buyOrder", "trade-dropped/buyOrder", "ack/buyOrder"], "sent once; the trade never reached Vectra"


async def test_two_buys_acked_without_their_trades_stay_unsettled_since_the_account_cannot_tell_them_apart(
    sim, daemon_for, monkeypatch
):
    """Both buys happened (the simulator's books hold both) and both trades were lost. The position
    grew, but by either order or both: neither is guessed filled. The first says another order on the
    same figure was sent while it waited; the second was sent while the first was unsettled, so the
    account before it is not known."""
    settling_quickly(sim, daemon_for, monkeypatch)
    await asyncio.to_thread(admin, sim, "/admin/acks", {"drop_trades": 2})
    async with Vectra() as vectra:
        channels = Channels(vectra, "order.*")
        await asyncio.sleep(0.5)  # the subscription is live before the first order
        await vectra.buy(0.002, order_id="lost-1")
        await channels.until("lost-1", "order.ack")
        await vectra.buy(0.003, order_id="lost-2")
        for order_id in ("lost-1", "lost-2"):
            await channels.until(order_id, "order.unsettled")
            assert channels.life(order_id) == ["order.request", "order.sent", "order.ack", "order.unsettled"]
        await channels.close()
    reasons = {e.data["order_id"]: e.data["reason"] for e in channels.events if e.type == "order.unsettled"}
    assert "another order on positionQty was sent" in reasons["lost-1"], reasons
    assert "not known" in reasons["lost-2"], reasons
    assert (await books(sim))["totalInvested"] == 5_000_000, "both buys happened"


async def test_the_same_order_id_is_one_frame_across_retries_a_new_connection_and_a_daemon_restart(
    sim, daemon, daemon_for
):
    async with Vectra(timeout=2, attempts=10) as vectra:
        first = await vectra.buy(0.002, order_id="once-only")
        assert first.state in ("sent", "acked", "filled")
        again = await vectra.buy(0.002, order_id="once-only")
        vectra.reconnect()  # a fresh ROUTER connection, as after a crash of the bot
        third = await vectra.buy(0.002, order_id="once-only")
        assert again.data["created_ms"] == third.data["created_ms"] == first.data["created_ms"]

        daemon.proc.send_signal(signal.SIGSTOP)  # a hung daemon: the request waits unanswered past its timeout
        sends = vectra.sends
        hung = asyncio.create_task(vectra.buy(0.002, order_id="once-only"))
        await asyncio.sleep(3)
        daemon.proc.send_signal(signal.SIGCONT)
        assert (await hung).data["created_ms"] == first.data["created_ms"]
        assert vectra.sends >= sends + 2  # timed out, and sent again on a fresh connection

        assert daemon.terminate() == 0
        restarted = asyncio.create_task(vectra.buy(0.002, order_id="once-only"))  # sent while nobody listens
        await asyncio.sleep(1)
        assert not restarted.done()
        daemon_for(sim, **LIVE)
        after_restart = await restarted
        assert after_restart.data["created_ms"] == first.data["created_ms"]
        assert after_restart.state in ("acked", "filled", "timeout")
    assert await wire_count(sim, "buyOrder") == 1


async def test_errors_surface_as_refused_and_a_malformed_order_never_leaves(sim, daemon):
    async with Vectra(token="not-the-token") as intruder:
        with pytest.raises(Refused) as refused:
            await intruder.buy(0.002)
        assert refused.value.code == "unauthorized"
        assert (await intruder.orders())["mode"] == "live"  # read-only: no token needed
    async with Vectra() as vectra:
        with pytest.raises(Refused) as refused:
            await vectra.sell(percent=150)
        assert refused.value.code == "bad_order" and "percent" in refused.value.message
        assert vectra.sends == 0
        halted = await vectra.halt("test")
        assert halted["halted"] is True
        record = await vectra.buy(0.002, order_id="while-halted")
        assert (record.state, record.code) == ("rejected", "halted")
        assert (await vectra.resume())["halted"] is False
    assert await wire_count(sim, "buyOrder") == 0


def test_the_readme_order_example_runs_as_printed(sim, daemon):
    readme = (REPO / "README.md").read_text()
    blocks = re.findall(r"```python\n(.*?)```", readme, re.S)
    example = next(block for block in blocks if "from core.client import Vectra" in block)
    ran = subprocess.run([sys.executable, "-c", example], cwd=REPO, capture_output=True, text=True, timeout=60,
                         env=daemon.env)
    assert ran.returncode == 0, ran.stderr
    state, order_id = ran.stdout.splitlines()[0].split()[:2]
    assert state in ("sent", "acked", "filled") and order_id.startswith("vx-")


# --- the command line --------------------------------------------------------------------------------


def vectra_cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([*VECTRA, *args], cwd=REPO, capture_output=True, text=True, timeout=60, env=env)


def test_the_order_commands_against_a_live_daemon(sim, daemon):
    placed = vectra_cli("order", "buy", "0.002", "--id", "cli-buy-1")
    assert placed.returncode == 0, placed.stderr
    assert "cli-buy-1" in placed.stdout and placed.stdout.split(":")[0] in ("sent", "acked", "filled")

    same = vectra_cli("order", "buy", "0.002", "--id", "cli-buy-1", "--json")
    assert same.returncode == 0
    record = json.loads(same.stdout)
    assert record["order_id"] == "cli-buy-1" and record["kind"] == "buy" and record["dryRun"] is False

    too_big = vectra_cli("order", "buy", "5", "--id", "cli-buy-big")
    assert too_big.returncode == 1
    assert "rejected" in too_big.stdout and "limit_order_sol" in too_big.stdout

    halted = vectra_cli("orders", "halt", "--reason", "end of day")
    assert halted.returncode == 0 and "HALTED" in halted.stdout
    refused = vectra_cli("order", "sidebet", "0.001", "--x-payout", "5", "--id", "cli-bet-halted")
    assert refused.returncode == 1 and "halted" in refused.stdout
    assert vectra_cli("orders", "resume").returncode == 0
    status = vectra_cli("orders", "status", "--json")
    assert status.returncode == 0
    desk = json.loads(status.stdout)
    assert desk["halted"] is False and desk["mode"] == "live"
    assert [r["order_id"] for r in desk["recent"]][:3] == ["cli-buy-1", "cli-buy-big", "cli-bet-halted"]

    player = vectra_cli("player", "--json")
    assert player.returncode == 0
    assert json.loads(player.stdout)["positionQty"] > 0
    assert "positionQty" in vectra_cli("player").stdout


def test_order_commands_exit_2_on_usage_errors_and_without_a_daemon_and_1_when_unauthorized(sim, daemon):
    malformed = vectra_cli("order", "sell", "0")
    assert malformed.returncode == 2 and "bad_order" in malformed.stderr and "percent" in malformed.stderr
    assert vectra_cli("order", "fly", "1").returncode == 2
    assert vectra_cli("orders", "resume", "--reason", "x").returncode == 2

    elsewhere = {**daemon.env, "VECTRA_ZMQ_ROUTER": f"tcp://127.0.0.1:{free_port()}"}
    unreachable = vectra_cli("orders", "status", "--timeout", "0.3", env=elsewhere)
    assert unreachable.returncode == 2 and "no daemon answered" in unreachable.stderr

    intruder = vectra_cli("orders", "halt", env={**daemon.env, "VECTRA_AUTH_TOKEN": "wrong"})
    assert intruder.returncode == 1 and "unauthorized" in intruder.stderr


# --- the console, attached ---------------------------------------------------------------------------


async def test_an_attached_console_shows_the_player_from_before_it_came_and_halts_the_desk(sim, daemon, vectra_env):
    async with Vectra() as vectra:
        await vectra.buy(0.002, order_id="before-attach")
        deadline = time.monotonic() + 20
        while not ((state := await vectra.player()) or {}).get("positionQty"):
            assert time.monotonic() < deadline, "the buy never showed in player.state"
            await asyncio.sleep(0.1)
    port = RemoteFoundation(f"ws://127.0.0.1:{vectra_env['VECTRA_HTTP_PORT']}/ws", token=TOKEN)
    await port.start()
    try:
        shown = await until(lambda s: s.player.available and s.player.position_qty is not None, port)
        assert (shown.player.mode, shown.player.halted, shown.player.executor) == ("live", False, "direct")
        assert shown.player.position_qty == state["positionQty"] and shown.player.cash == state["cash"]

        assert (await port.command("orders_halt", reason="console"))["data"]["halted"] is True
        await until(lambda s: s.player.halted, port)
        async with Vectra() as vectra:
            await vectra.buy(0.002, order_id="after-halt")
        shown = await until(lambda s: any(o.order_id == "after-halt" for o in s.player.recent), port)
        assert (shown.player.recent[0].state, shown.player.recent[0].code) == ("rejected", "halted")
    finally:
        await port.stop()
