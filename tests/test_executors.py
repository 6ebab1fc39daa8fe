"""The `page` and `click` executors in a real headless Chromium, on the simulator's page logged in as
alice: each order moves the simulator's books to the lamport, goes out exactly once, and is seen on
the page's `sent.*` frames; the `page` executor's ack comes back on `raw.ack` with the ack id it chose.

The foundation is the real one with the CDP source (`VECTRA_SOURCE=cdp`), which launches the managed
Chromium; the executor runs beside it as the assembly would run it.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import re
import time
from typing import Any, AsyncIterator

import pytest
from websockets.asyncio.client import connect

from core.chrome.devtools import game_page, list_pages
from core.chrome.pychrome_tab import QuietTab
from core.config import Settings
from core.contracts.orders import parse_order
from core.orders.executors.base import ExecutorError, OrderFrame, Sent
from core.orders.executors.click import ClickExecutor
from core.orders.executors.page import PageExecutor
from core.orders.shapes import build_frame
from tests.test_cdp import CHROMIUM, NODE_CLIENT, Collector, running, stack_settings, wait_until
from tests.conftest import free_port
from tests.test_chrome import no_browser_outlives_the_test  # noqa: F401 - autouse fixture
from tests.test_orders import ask, life_of, ws_url
from tests.test_sim_orders import active_game
from tests.test_simulator import admin

SOL = "So11111111111111111111111111111111111111112"
FIRST_ACK_ID = 900_000_000
ORDER_FRAME = r'42(\d+)\["{event}",\{{"__trace":true,"traceparent":"00-[0-9a-f]{{32}}-[0-9a-f]{{16}}-01"\}},{payload}\]'
IN_CHROMIUM = (
    pytest.mark.chromium,
    pytest.mark.timeout(120),
    pytest.mark.skipif(not CHROMIUM.exists(), reason="needs the Debian chromium package (/usr/bin/chromium)"),
    pytest.mark.skipif(not NODE_CLIENT.exists(), reason="needs the page's npm packages: run `npm ci` at the repo root"),
)


def in_chromium(test):
    for mark in IN_CHROMIUM:
        test = mark(test)
    return test


def order_frame(ack_id: int, kind: str, **fields: Any) -> OrderFrame:
    """The desk's frame of an order (the captured shape, `42<ack>["buyOrder",{trace},{payload}]`)."""
    return build_frame(parse_order({"kind": kind, "order_id": f"test-{ack_id}", **fields}), ack_id)


BUY = {"kind": "buy", "amount_sol": 0.002}
SELL_HALF = {"kind": "sell", "percent": 50}
SIDEBET = {"kind": "sidebet", "amount_sol": 0.001}
PAYLOADS = {"buyOrder": {"amount": 0.002}, "sellOrder": {"percentage": 50},
            "requestSidebet": {"amount": 0.001, "coinAddress": SOL, "xPayout": 5}}


@contextlib.asynccontextmanager
async def trading(tmp_path, executor_class, **extra: Any) -> AsyncIterator[tuple[Any, Collector, Any]]:
    """The simulator in a long game, the foundation reading alice's page, and a running executor."""
    async with active_game(speed=1, min_ticks=400) as sim:
        settings = stack_settings(tmp_path, sim, game_url=sim.url + "/?player=alice", cdp_silence_reload_s=30.0, **extra)
        async with running(settings) as (foundation, collector):
            executor = executor_class(settings)
            if executor_class is ClickExecutor:
                foundation.bus.subscribe(executor)  # it reads its frames back from `sent.*`
            await executor.start()
            try:
                deadline = time.monotonic() + 40
                while (problem := executor.available()) is not None:
                    assert time.monotonic() < deadline, f"the {executor.name} executor is not ready: {problem}"
                    await asyncio.sleep(0.1)
                # The page's frames (`sent.*`, acks) reach the bus through the CDP source: trade once
                # it follows the page, as an operator would wait for the feed to show connected.
                while foundation.connections.get("cdp", {}).get("state") != "connected":
                    assert time.monotonic() < deadline, f"the CDP source never connected: {foundation.connections}"
                    await asyncio.sleep(0.1)
                yield sim, collector, executor
            finally:
                await executor.stop()


async def books(sim) -> dict[str, int]:
    status, reply = await admin(sim, "GET", "/admin/players/alice")
    assert status == 200, reply
    return reply["lamports"]


async def books_after(sim, condition, what: str) -> dict[str, int]:
    deadline = time.monotonic() + 15
    while not condition(latest := await books(sim)):
        assert time.monotonic() < deadline, f"the books never showed {what}: {latest}"
        await asyncio.sleep(0.1)
    return latest


async def alices_trade(collector: Collector, kind: str) -> dict[str, Any]:
    """Alice's one trade of this kind on `player.trade` (the server's answer to her order)."""

    def trades() -> list[dict[str, Any]]:
        return [e["data"] for e in collector.of_type("player.trade")
                if e["data"]["username"] == "alice" and e["data"]["type"] == kind]

    await wait_until(lambda: trades(), 10, f"alice's {kind} on player.trade")
    assert len(trades()) == 1, trades()
    return trades()[0]


async def received_orders(sim) -> dict[str, int]:
    """How many order frames of alice the simulator received, per event."""
    counts: dict[str, int] = {}
    status, log = await admin(sim, "GET", "/admin/emitted")
    assert status == 200, log
    for entry in log:
        if entry["event"].startswith("received/") and entry["player"] == "alice":
            counts[entry["event"]] = counts.get(entry["event"], 0) + 1
    return counts


async def buy_sell_sidebet(sim, collector: Collector, executor) -> list[tuple[OrderFrame, Sent]]:
    """buy 0.002, sell 50 %, sidebet 0.001 through `executor`; the books checked to the lamport after each."""
    start = await books(sim)
    sends = []

    frames = [order_frame(FIRST_ACK_ID + n, **order) for n, order in enumerate((BUY, SELL_HALF, SIDEBET))]
    sends.append(await executor.send(frames[0]))
    bought = await books_after(sim, lambda b: b["positionQty"] > 0, "a position")
    buy = await alices_trade(collector, "buy")
    assert bought["cash"] == start["cash"] - 2_000_000
    assert bought["totalInvested"] == start["totalInvested"] + 2_000_000
    assert bought["positionQty"] == round(buy["qty"] * 1e9) == int(2_000_000 / buy["price"])

    sends.append(await executor.send(frames[1]))
    sold = bought["positionQty"] * 50 // 100
    half = await books_after(sim, lambda b: b["positionQty"] == bought["positionQty"] - sold, "half the position sold")
    sell = await alices_trade(collector, "sell")
    assert round(sell["qty"] * 1e9) == sold
    assert half["cash"] - bought["cash"] == round(sell["amount"] * 1e9) == int(sold * sell["price"])

    sends.append(await executor.send(frames[2]))
    bet = await books_after(sim, lambda b: b["sidebet"] == 1_000_000, "a sidebet")
    assert bet["cash"] == half["cash"] - 1_000_000 and bet["positionQty"] == half["positionQty"]

    assert await received_orders(sim) == {"received/buyOrder": 1, "received/sellOrder": 1, "received/requestSidebet": 1}
    return list(zip(frames, sends))


async def test_page_executor_without_a_browser_says_why_and_sends_nothing(tmp_path):
    executor = PageExecutor(Settings(data_dir=tmp_path, cdp_port=free_port(), cdp_call_timeout_s=1.0))
    assert executor.available() == "not watching the game page (yet)"
    await executor.watch.refresh()
    assert executor.available().startswith("no browser answers on CDP port")
    with pytest.raises(ExecutorError, match="no browser answers"):
        await executor.send(order_frame(FIRST_ACK_ID, **BUY))
    await executor.stop()


@in_chromium
async def test_page_executor_writes_on_the_pages_socket_once_and_the_ack_comes_back(tmp_path):
    async with trading(tmp_path, PageExecutor) as (sim, collector, executor):
        sends = await buy_sell_sidebet(sim, collector, executor)
        for ack_id in (FIRST_ACK_ID, FIRST_ACK_ID + 1, FIRST_ACK_ID + 2):
            await wait_until(lambda: any(e["data"]["ackId"] == ack_id for e in collector.of_type("raw.ack")), 10,
                             f"the ack of {ack_id}")
        acks = {e["data"]["ackId"]: e["data"]["args"] for e in collector.of_type("raw.ack")}
        assert acks[FIRST_ACK_ID] == [{"success": True}] and acks[FIRST_ACK_ID + 1] == [{"success": True}]
        assert acks[FIRST_ACK_ID + 2][0]["success"] is True and acks[FIRST_ACK_ID + 2][0]["message"] == "Side bet placed"
        for frame, sent in sends:
            assert (sent.executor, sent.frame, sent.ack_id) == ("page", frame.text, frame.ack_id)
            on_channel = [e["data"] for e in collector.of_type(f"sent.{frame.event}")]
            assert [data["frame"] for data in on_channel] == [frame.text]  # the page's WebSocket carried it, once
            assert on_channel[0]["ackId"] == frame.ack_id and on_channel[0]["payload"] == PAYLOADS[frame.event]

        # the page itself is untouched: it ignored Vectra's acks and still trades with its own buttons
        tab = executor.watch.tab
        assert await tab.evaluate("document.querySelector('#last-ack').textContent") == "-"
        await tab.evaluate("document.querySelector('[data-amount-add=\"0.001\"]').click();"
                           "document.querySelector('[data-order=\"buy\"]').click()")
        await wait_until(lambda: len(collector.of_type("sent.buyOrder")) == 2, 10, "the page's own buy")
        own = collector.of_type("sent.buyOrder")[1]["data"]
        assert own["ackId"] < FIRST_ACK_ID
        await wait_until(lambda: any(e["data"]["ackId"] == own["ackId"] for e in collector.of_type("raw.ack")), 10,
                         "the page's own ack")
        deadline = time.monotonic() + 10
        while (shown := await tab.evaluate("document.querySelector('#last-ack').textContent")) == "-":
            assert time.monotonic() < deadline, "the page never showed its own ack"
            await asyncio.sleep(0.1)
        assert shown == 'buyOrder {"success":true}'
        assert (await received_orders(sim))["received/buyOrder"] == 2


@in_chromium
async def test_click_executor_presses_the_pages_buttons_and_reads_the_frame_back(tmp_path):
    async with trading(tmp_path, ClickExecutor) as (sim, collector, executor):
        sends = await buy_sell_sidebet(sim, collector, executor)
        for frame, sent in sends:
            event, payload = frame.event, re.escape(json.dumps(PAYLOADS[frame.event], separators=(",", ":")))
            assert sent.executor == "click" and sent.ack_id is None
            match = re.fullmatch(ORDER_FRAME.format(event=event, payload=payload), sent.frame)
            assert match, sent.frame
            ack_id = int(match.group(1))
            assert ack_id < FIRST_ACK_ID  # the page's own
            await wait_until(lambda: any(e["data"]["ackId"] == ack_id for e in collector.of_type("raw.ack")), 10,
                             f"the ack of the page's {event}")
            assert [e["data"]["frame"] for e in collector.of_type(f"sent.{event}")] == [sent.frame]
        assert 'requestSidebet {"success":true' in await executor.watch.tab.evaluate(
            "document.querySelector('#last-ack').textContent")


@in_chromium
async def test_page_executor_whose_call_gets_no_answer_says_so_and_never_sends_twice(tmp_path, caplog):
    async with trading(tmp_path, PageExecutor, cdp_call_timeout_s=1.5) as (sim, collector, executor):
        target = game_page(await list_pages(executor.settings.cdp_port, 5), executor.settings.game_url)
        other = QuietTab(**target)
        await asyncio.to_thread(other.start)
        try:
            # the page's main thread is busy for 6 s: the executor's evaluate waits behind it
            busy = asyncio.create_task(asyncio.to_thread(
                other.call_method, "Runtime.evaluate", _timeout=20,
                expression="const end = Date.now() + 6000; while (Date.now() < end) {}"))
            await asyncio.sleep(0.5)
            frame = order_frame(FIRST_ACK_ID, **BUY)
            sent = await executor.send(frame)
            assert (sent.frame, sent.ack_id) == (frame.text, FIRST_ACK_ID)
            assert "it may have reached the page, so it is not repeated" in caplog.text
            await busy
        finally:
            await asyncio.to_thread(other.stop)
        # the call ran once the page was free: the frame went out once, and was answered
        await books_after(sim, lambda b: b["positionQty"] > 0, "the buy")
        await wait_until(lambda: any(e["data"]["ackId"] == FIRST_ACK_ID for e in collector.of_type("raw.ack")), 10,
                         "the ack")
        assert await received_orders(sim) == {"received/buyOrder": 1}
        assert [e["data"]["frame"] for e in collector.of_type("sent.buyOrder")] == [frame.text]


@pytest.mark.parametrize(("order", "why"), [
    ({"kind": "sell", "percent": 33}, "the page sells only 10, 25, 50, 100 %, not 33"),
    ({"kind": "buy", "amount_sol": 0.0015}, "multiples of 0.001 SOL, not 0.0015"),
    ({"kind": "sidebet", "amount_sol": 0.001, "x_payout": 10}, "5x only"),
    ({"kind": "short_open", "amount_sol": 0.01}, "no known button for shortOpen"),
])
async def test_click_executor_refuses_what_the_buttons_cannot_build_before_pressing_anything(tmp_path, order, why):
    executor = ClickExecutor(Settings(data_dir=tmp_path, cdp_port=free_port()))
    with pytest.raises(ExecutorError, match=re.escape(why)):
        await executor.send(order_frame(FIRST_ACK_ID, **order))


def test_click_executor_builds_an_amount_from_the_fewest_presses(tmp_path):
    plan = ClickExecutor(Settings(data_dir=tmp_path)).plan(order_frame(FIRST_ACK_ID, kind="buy", amount_sol=2.132))
    add = '[data-amount-add="{}"]'.format
    assert plan["presses"] == ['[data-amount="clear"]', add("1"), add("1"), add("0.1"), add("0.01"), add("0.01"),
                               add("0.01"), add("0.001"), add("0.001")]
    assert (plan["order"], plan["lamports"]) == ('[data-order="buy"]', 2_132_000_000)


@in_chromium
@pytest.mark.parametrize("executor", ["page", "click"])
async def test_a_bot_orders_through_the_desk_and_the_browser_and_the_books_follow(tmp_path, executor):
    """The assembled daemon (desk, CDP source, the chosen executor from the registry) and a bot on the
    WebSocket: buy, sell 50 %, sidebet, each filled, each frame on the wire once."""
    async with active_game(speed=1, min_ticks=400) as sim:
        settings = stack_settings(tmp_path, sim, game_url=sim.url + "/?player=alice", cdp_silence_reload_s=30.0,
                                  orders="live", auth_token="s3cret", order_executor=executor,
                                  orders_unverified=True, order_max_tick_age_s=5.0)
        async with running(settings) as (foundation, collector):
            desk = next(component for component in foundation.components if component.name == "orders")
            assert desk.executor is not None and desk.executor.name == executor
            await wait_until(lambda: desk.executor.available() is None, 40, f"the {executor} executor to be ready")
            ticks = collector.count("game.tick")  # the desk refuses orders on a silent feed: let it flow first
            await wait_until(lambda: collector.count("game.tick") >= ticks + 3 and collector.count("player.identity"), 20,
                             "the feed flowing through the page, alice known")
            orders = [{"action": "order", "kind": "buy", "amount_sol": 0.002, "order_id": "b1"},
                      {"action": "order", "kind": "sell", "percent": 50, "order_id": "s1"},
                      {"action": "order", "kind": "sidebet", "amount_sol": 0.001, "order_id": "sb1"}]
            async with connect(ws_url(foundation)) as bot:
                for order in orders:
                    reply = await ask(bot, {**order, "token": "s3cret"})
                    assert reply["data"]["state"] in ("sent", "acked", "filled"), reply
                    await wait_until(lambda: life_of(foundation, order["order_id"])[-1:] == ["order.filled"], 15,
                                     f"{order['order_id']} filled")
            lives = {order["order_id"]: life_of(foundation, order["order_id"]) for order in orders}
            state = foundation.bus.last_by_type["player.state"].data
        assert await received_orders(sim) == {"received/buyOrder": 1, "received/sellOrder": 1, "received/requestSidebet": 1}
        lamports = await books(sim)
        for figure in ("cash", "positionQty", "totalInvested"):
            assert round(state[figure] * 1e9) == lamports[figure], figure
        assert all(life == ["order.request", "order.sent", "order.ack", "order.filled"] for life in lives.values()), lives
        frames = [e["data"] for e in collector.of_type("order.sent")]
        for sent, event in zip(frames, ("buyOrder", "sellOrder", "requestSidebet")):  # what went out, as the page sent it
            assert [e["data"]["frame"] for e in collector.of_type(f"sent.{event}")] == [sent["frame"]]
            assert (sent["ackId"] >= FIRST_ACK_ID) is (executor == "page")
