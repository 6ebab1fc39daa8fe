"""A person trading on the simulator's page, in a real headless Chromium.

The browser is the project's managed one (core.chrome); the clicks are real mouse events sent through
DevTools (`Input.dispatchMouseEvent`) at the buttons' places on the page, and the frames the page sends
are read from DevTools' network events, so what is checked is what a person and the wire would see.
The simulator's own books (`GET /admin/players/<name>`) must move with every click.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import re
import time
from pathlib import Path

import pytest

from core.chrome.devtools import list_pages
from core.sources.cdp_source import QuietTab
from tests.test_chrome import NODE_CLIENT, chrome_settings, managed, no_browser_outlives_the_test  # noqa: F401
from tests.test_sim_orders import active_game
from tests.test_simulator import admin

CHROMIUM = Path("/usr/bin/chromium")
ORDER_FRAME = r'42\d+\["{event}",\{{"__trace":true,"traceparent":"00-[0-9a-f]{{32}}-[0-9a-f]{{16}}-01"\}},{payload}\]'

pytestmark = [
    pytest.mark.chromium,
    pytest.mark.timeout(90),
    pytest.mark.skipif(not CHROMIUM.exists(), reason="needs the Debian chromium package (/usr/bin/chromium)"),
    pytest.mark.skipif(not NODE_CLIENT.exists(), reason="needs the page's npm packages: run `npm ci` at the repo root"),
]


class Page:
    """One DevTools session on the page: read it, click it, and keep every WebSocket frame it sends."""

    def __init__(self, tab: QuietTab):
        self.tab = tab
        self.sent: list[str] = []

    async def call(self, method: str, **params):
        return await asyncio.to_thread(self.tab.call_method, method, _timeout=10, **params)

    async def evaluate(self, expression: str):
        reply = await self.call("Runtime.evaluate", expression=expression, returnByValue=True)
        return reply["result"].get("value")

    async def open(self, url: str) -> None:
        self.tab.set_listener("Network.webSocketFrameSent", lambda **event: self.sent.append(event["response"]["payloadData"]))
        await self.call("Network.enable")
        await self.call("Page.navigate", url=url)

    async def text(self, selector: str) -> str | None:
        return await self.evaluate(f"(e => e && e.textContent)(document.querySelector({json.dumps(selector)}))")

    async def click(self, selector: str) -> None:
        """Press and release the left button over the element's centre, as a mouse would."""
        box = await self.evaluate(
            f"(e => {{ e.scrollIntoView({{block: 'center'}}); const r = e.getBoundingClientRect();"
            f" return [r.x + r.width / 2, r.y + r.height / 2]; }})(document.querySelector({json.dumps(selector)}))"
        )
        assert box, f"nothing on the page matches {selector}"
        x, y = box
        for kind in ("mousePressed", "mouseReleased"):
            await self.call("Input.dispatchMouseEvent", type=kind, x=x, y=y, button="left", clickCount=1)

    async def press_until(self, selector: str, pressed: str, attempts: int = 3) -> None:
        """Click a toggle until the page shows it pressed, as a person would click again when a
        moving layout made the first click land elsewhere."""
        for _ in range(attempts):
            await self.click(selector)
            if await self.evaluate(f"document.querySelector({json.dumps(pressed)}).getAttribute('aria-pressed')") == "true":
                return
        raise AssertionError(f"{pressed} never showed pressed after {attempts} clicks on {selector}")

    async def order(self, selector: str, event: str, attempts: int = 3) -> None:
        """Click an order button until the page has sent that order's frame, as a person would click
        again when nothing happened. Clicking again only when no frame went out never orders twice."""
        def sent() -> int:
            return sum(1 for frame in self.sent if re.match(rf'42\d+\["{event}"', frame))
        before = sent()
        for _ in range(attempts):
            await self.click(selector)
            deadline = time.monotonic() + 2
            while time.monotonic() < deadline:
                if sent() > before:
                    return
                await asyncio.sleep(0.05)
        raise AssertionError(f"no {event} frame left the page after {attempts} clicks on {selector}: {self.sent[-5:]}")

    async def wait_text(self, selector: str, wanted, timeout: float = 20) -> str:
        deadline = time.monotonic() + timeout
        while True:
            value = await self.text(selector)
            if (wanted(value) if callable(wanted) else value == wanted):
                return value
            assert time.monotonic() < deadline, f"{selector} shows {value!r}"
            await asyncio.sleep(0.1)


@contextlib.asynccontextmanager
async def browser_page(tmp_path: Path, url: str):
    """The project's managed headless Chromium, showing `url`, with a DevTools session on it."""
    async with managed(chrome_settings(tmp_path)) as (manager, _, _):
        assert await manager.ensure() == "running"
        target = next(p for p in await list_pages(manager.settings.cdp_port, 5) if p["type"] == "page")
        tab = QuietTab(**target)
        await asyncio.to_thread(tab.start)
        try:
            page = Page(tab)
            await page.open(url)
            yield page
        finally:
            await asyncio.to_thread(tab.stop)


async def until(sim, condition, what: str, name: str = "carol", timeout: float = 10) -> dict:
    deadline = time.monotonic() + timeout
    while True:
        status, reply = await admin(sim, "GET", f"/admin/players/{name}")
        if status == 200 and condition(reply["lamports"]):
            return reply["lamports"]
        assert time.monotonic() < deadline, f"the books never showed {what}: {reply}"
        await asyncio.sleep(0.1)


async def test_a_person_clicking_buy_sell_and_sidebet_moves_the_books(tmp_path):
    async with active_game(speed=1, min_ticks=400) as sim, browser_page(tmp_path, sim.url + "/?player=carol") as page:
        await page.wait_text("#player-name", "carol")
        await page.wait_text("#player-cash", "1")

        # amount from the amount buttons: +0.01 +0.001 -> 0.011, X2 -> 0.022, 1/2 -> 0.011
        for selector in ('[data-amount-add="0.01"]', '[data-amount-add="0.001"]', "#amount-double", "#amount-half"):
            await page.click(selector)
        assert await page.evaluate("document.querySelector('#amount-input').value") == "0.011"
        await page.order('[data-order="buy"]', "buyOrder")
        await page.wait_text("#last-ack", 'buyOrder {"success":true}')
        bought = await until(sim, lambda b: b["positionQty"] > 0, "a position")
        assert bought["cash"] == 989_000_000 and bought["totalInvested"] == 11_000_000
        await page.wait_text("#player-cash", "0.989")

        await page.press_until('[data-sell-percent="50"]', '[data-sell-percent="50"]')
        await page.order('[data-order="sell"]', "sellOrder")
        half = await until(sim, lambda b: b["positionQty"] < bought["positionQty"], "a smaller position")
        assert half["positionQty"] == bought["positionQty"] - bought["positionQty"] * 50 // 100

        await page.click('[data-amount="clear"]')
        await page.click('[data-amount-add="0.001"]')
        await page.order('[data-order="sidebet"]', "requestSidebet")
        bet = await until(sim, lambda b: b["sidebet"] == 1_000_000, "a sidebet")
        await page.wait_text("#last-ack", lambda text: text.startswith("requestSidebet") and '"success":true' in text)

        await page.press_until('[data-sell-percent="100"]', '[data-sell-percent="100"]')
        await page.order('[data-order="sell"]', "sellOrder")
        await until(sim, lambda b: b["positionQty"] == 0, "no position")
        await page.wait_text("#player-position", "0")

        # a failure ack shows too: nothing left to sell
        await page.order('[data-order="sell"]', "sellOrder")
        await page.wait_text("#last-ack", lambda text: text and '"reason":"no_position"' in text)

    orders = [frame for frame in page.sent if re.match(r"42\d+\[", frame)]
    assert re.fullmatch(ORDER_FRAME.format(event="buyOrder", payload=r'\{"amount":0\.011\}'), orders[0]), orders
    assert re.fullmatch(ORDER_FRAME.format(event="sellOrder", payload=r'\{"percentage":50\}'), orders[1]), orders
    assert re.fullmatch(ORDER_FRAME.format(event="requestSidebet", payload=re.escape(
        '{"amount":0.001,"coinAddress":"So11111111111111111111111111111111111111112","xPayout":5}')), orders[2]), orders
    assert re.fullmatch(ORDER_FRAME.format(event="sellOrder", payload=r'\{"percentage":100\}'), orders[3]), orders
    assert len(orders) == 5 and bet["cash"] == half["cash"] - 1_000_000


async def test_the_anonymous_page_trades_as_a_guest(tmp_path):
    async with active_game(speed=1, min_ticks=400) as sim, browser_page(tmp_path, sim.url + "/") as page:
        await page.wait_text("#state", "connected")
        assert await page.text("#player-name") == "anonymous"
        await page.click('[data-amount-add="0.1"]')
        await page.order('[data-order="buy"]', "buyOrder")
        await page.wait_text("#last-ack", 'buyOrder {"success":true}')
        await until(sim, lambda b: b["totalInvested"] == 100_000_000, "the guest's buy", name="guest-1")
        await page.wait_text("#player-cash", "0.9")
