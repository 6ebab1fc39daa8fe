"""`sent.*`: what the page itself sends, published like what it receives.

A person buying on the simulator's page (real mouse events through DevTools) shows up as
`sent.buyOrder` (the frame exactly as the WebSocket carried it), then the server's answer: the
player's own `player.trade` and the `raw.ack` with the ack id the page chose.
"""

from __future__ import annotations

import asyncio
import re
import time

from core.chrome.devtools import game_page, list_pages
from core.chrome.pychrome_tab import QuietTab
from core.config import Settings
from core.contracts.envelope import now_ms
from core.foundation import Foundation
from core.sources.cdp_source import CdpSource
from tests.test_cdp import Collector, running, stack_settings, wait_until
from tests.test_executors import ORDER_FRAME, in_chromium
from tests.test_chrome import no_browser_outlives_the_test  # noqa: F401 - autouse fixture
from tests.test_sim_orders import active_game
from tests.test_sim_page import Page


@in_chromium
async def test_a_persons_buy_on_the_page_appears_as_sent_buyorder_then_player_trade_and_its_ack(tmp_path):
    async with active_game(speed=1, min_ticks=400) as sim:
        settings = stack_settings(tmp_path, sim, game_url=sim.url + "/?player=alice")
        async with running(settings) as (foundation, collector):
            await wait_until(lambda: any(e["data"]["state"] == "connected" for e in collector.of_type("connection.status")),
                             40, "the CDP source on alice's page")
            target = game_page(await list_pages(settings.cdp_port, 5), settings.game_url)
            tab = QuietTab(**target)
            await asyncio.to_thread(tab.start)
            try:
                page = Page(tab)
                await page.wait_text("#player-name", "alice")
                await page.wait_text("#player-cash", "1")
                await page.click('[data-amount-add="0.01"]')
                await page.click('[data-amount-add="0.001"]')
                assert await page.evaluate("document.querySelector('#amount-input').value") == "0.011"
                await buy_until_sent(page, collector)
                sent = collector.of_type("sent.buyOrder")[0]
                ack_id = sent["data"]["ackId"]
                await wait_until(lambda: any(e["data"]["ackId"] == ack_id for e in collector.of_type("raw.ack")), 10,
                                 "the ack of the page's buy")
            finally:
                await asyncio.to_thread(tab.stop)

    data = sent["data"]
    assert sent["source"] == "cdp" and data["payload"] == {"amount": 0.011}
    assert re.fullmatch(ORDER_FRAME.format(event="buyOrder", payload=r'\{"amount":0\.011\}'), data["frame"])
    assert data["frame"].startswith(f'42{ack_id}["buyOrder",')
    assert data["trace"]["traceparent"] in data["frame"]
    trade = next(e for e in collector.of_type("player.trade") if e["data"]["username"] == "alice")
    ack = next(e for e in collector.of_type("raw.ack") if e["data"]["ackId"] == ack_id)
    assert trade["data"]["type"] == "buy" and trade["data"]["amount"] == 0.011
    assert sent["seq"] < trade["seq"] < ack["seq"] and ack["data"]["args"] == [{"success": True}]
    # the server answered in the order's trace: the player's trade shares its trace id
    order_trace = data["trace"]["traceparent"].split("-")[1]
    raw_trade = next(e for e in collector.of_type("raw.standard/newTrade") if e["data"]["payload"]["username"] == "alice")
    assert raw_trade["data"]["trace"]["traceparent"].split("-")[1] == order_trace


async def buy_until_sent(page: Page, collector: Collector, attempts: int = 3) -> None:
    """Click BUY until Vectra publishes the page's `sent.buyOrder`, as a person clicks again when a
    layout that moved under the pointer swallowed the click; again only when no frame went out."""
    for _ in range(attempts):
        await page.click('[data-order="buy"]')
        deadline = time.monotonic() + 4
        while time.monotonic() < deadline:
            if collector.count("sent.buyOrder"):
                return
            await asyncio.sleep(0.05)
    raise AssertionError(f"no sent.buyOrder after {attempts} clicks on BUY")


def test_what_the_page_sends_besides_events_is_not_published_and_a_broken_frame_is_an_error(tmp_path):
    foundation = Foundation(Settings(data_dir=tmp_path))
    collector = Collector()
    foundation.bus.subscribe(collector)
    foundation.add_source(CdpSource(foundation, foundation.settings))  # registered, never run
    for packet in ("0", '3901[{"ok":true}]', "1"):  # connect, an ack of a server request, disconnect
        foundation.sent("cdp", packet, now_ms())
    assert collector.events == []
    foundation.sent("cdp", '2["buyOrder",{"amount":0.0', now_ms())
    foundation.sent("cdp", '27["ping",{"lastPing":12.5}]', now_ms())
    error, ping = collector.events
    assert error["type"] == "error" and error["data"]["code"] == "bad_json"
    assert error["data"]["message"].startswith("a frame the page sent:") and error["data"]["raw"] == '2["buyOrder",{"amount":0.0'
    assert ping["type"] == "sent.ping"
    assert ping["data"] == {"payload": {"lastPing": 12.5}, "trace": None, "ackId": 7, "frame": '427["ping",{"lastPing":12.5}]'}
    foundation.seqstore.close()
