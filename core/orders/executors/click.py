"""Orders placed by pressing the page's own buttons, as a person would (`click` executor).

The amount is built the way a person builds it: clear, then the +1 / +0.1 / +0.01 / +0.001 buttons;
the amount field is read back before BUY or SIDEBET is pressed, and a field that does not show the
order's amount stops the order there. A sell presses its percentage button (10, 25, 50 or 100),
then SELL. Everything happens in one `Runtime.evaluate`, so no other click lands in between, and it
is never repeated. Selectors are settings (VECTRA_CLICK_*), since the page's markup is not ours.

The page builds the frame itself, with its own ack id and trace: the executor cannot choose them
(`Sent.ack_id` is None) and reads the frame back from the page's `sent.<event>` on the bus. A frame
not seen within VECTRA_CDP_CALL_TIMEOUT_S (or an evaluate whose answer was lost) still returns `Sent`,
with an empty `frame`: the button may have been pressed, so the order is never pressed again.
"""

from __future__ import annotations

import asyncio
import json
import logging
from typing import Any

from core.config import Settings
from core.contracts.envelope import Envelope, now_ms
from core.contracts.fields import as_float
from core.orders.executors.base import ExecutorError, OrderFrame, Sent
from core.orders.executors.game_tab import GameTab, TabExecutor, TabWatch, act_once

log = logging.getLogger(__name__)

AMOUNT_STEPS = ((1_000_000_000, "1"), (100_000_000, "0.1"), (10_000_000, "0.01"), (1_000_000, "0.001"))
SELL_PERCENTS = (10, 25, 50, 100)
LAMPORTS = 1_000_000_000

# Presses `presses` in order, checks the amount field, then presses `order`; nothing is pressed when an
# element is missing or the order button is disabled.
PRESS = """((plan) => {
  const find = (selector) => document.querySelector(selector);
  for (const selector of [...plan.presses, plan.order, ...(plan.input ? [plan.input] : [])]) {
    if (!find(selector)) return { problem: "nothing on the page matches " + selector };
  }
  if (find(plan.order).disabled) return { problem: plan.order + " is disabled" };
  for (const selector of plan.presses) find(selector).click();
  if (plan.input) {
    const shown = find(plan.input).value;
    if (Math.round(parseFloat(shown) * 1e9) !== plan.lamports) {
      return { problem: "the amount field shows " + JSON.stringify(shown) + " after the amount buttons, not " + plan.amount };
    }
  }
  find(plan.order).click();
  return { actedAt: Date.now() };
})"""

MISSING = """((selectors) => {
  const missing = selectors.find((selector) => !document.querySelector(selector));
  return missing === undefined ? null : "nothing on the game page matches " + missing + " (VECTRA_CLICK_*)";
})"""


class ClickExecutor(TabExecutor):
    """The `click` executor; a component (it keeps `available()` current) and a bus subscriber (it
    reads back the frames the page sends)."""

    name = "click"

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.watch = TabWatch(GameTab(settings), self._check)
        self._pressing = asyncio.Lock()  # the amount field is shared: one order at a time
        self._waiting: dict[str, asyncio.Future[Envelope]] = {}

    # --- what to press ---------------------------------------------------------------------------

    def plan(self, frame: OrderFrame) -> dict[str, Any]:
        """The presses that make the page send `frame`'s order; `ExecutorError` when the buttons cannot."""
        payload = frame.args[-1] if frame.args and isinstance(frame.args[-1], dict) else {}
        s = self.settings
        if frame.event == "sellOrder":
            percent = payload.get("percentage")
            if percent not in SELL_PERCENTS:
                raise ExecutorError(f"the page sells only {', '.join(map(str, SELL_PERCENTS))} %, not {percent!r}")
            return {"presses": [s.click_sell_percent.format(percent=percent)], "order": s.click_sell, "input": None}
        buttons = {"buyOrder": s.click_buy, "requestSidebet": s.click_sidebet}
        if frame.event not in buttons:
            raise ExecutorError(f"the page has no known button for {frame.event}")
        if frame.event == "requestSidebet" and payload.get("xPayout", 5) != 5:
            raise ExecutorError("the page's SIDEBET pays 5x only")
        amount = payload.get("amount")
        sol = as_float(amount)
        lamports = round(sol * LAMPORTS) if sol is not None else 0
        if lamports <= 0 or lamports % AMOUNT_STEPS[-1][0]:
            raise ExecutorError(f"the amount buttons build multiples of 0.001 SOL, not {amount!r}")
        presses = [s.click_amount_clear]
        for step, label in AMOUNT_STEPS:
            presses += [s.click_amount_add.format(step=label)] * (lamports // step)
            lamports %= step
        return {"presses": presses, "order": buttons[frame.event], "input": s.click_amount_input,
                "lamports": round(amount * LAMPORTS), "amount": amount}

    def _selectors(self) -> list[str]:
        s = self.settings
        adds = [s.click_amount_add.format(step=label) for _, label in AMOUNT_STEPS]
        percents = [s.click_sell_percent.format(percent=percent) for percent in SELL_PERCENTS]
        return [s.click_amount_input, s.click_amount_clear, *adds, *percents, s.click_buy, s.click_sell, s.click_sidebet]

    async def _check(self) -> str | None:
        return await self.watch.tab.evaluate(f"{MISSING}({json.dumps(self._selectors())})")

    # --- pressing --------------------------------------------------------------------------------

    async def send(self, frame: OrderFrame) -> Sent:
        plan = self.plan(frame)
        async with self._pressing:
            seen = asyncio.get_running_loop().create_future()
            self._waiting[frame.event] = seen
            try:
                return await self._press(frame, plan, seen)
            finally:
                self._waiting.pop(frame.event, None)

    async def _press(self, frame: OrderFrame, plan: dict[str, Any], seen: asyncio.Future[Envelope]) -> Sent:
        acted = await act_once(self.watch.tab, f"{PRESS}({json.dumps(plan)})", f"pressing {plan['order']}")
        if acted is None:
            return Sent(executor=self.name, frame="", ack_id=None, sent_at_ms=now_ms())
        try:
            async with asyncio.timeout(self.settings.cdp_call_timeout_s):
                envelope = await seen
        except TimeoutError:
            log.warning("%s: pressed, but the page's frame was not seen in time", frame.event)
            return Sent(executor=self.name, frame="", ack_id=None, sent_at_ms=acted)
        return Sent(executor=self.name, frame=envelope.data.get("frame") or "", ack_id=None, sent_at_ms=acted)

    def deliver(self, envelope: Envelope) -> None:
        """The page's own frames (`sent.<event>`): the one an order's press produced completes it."""
        if not envelope.type.startswith("sent."):
            return
        waiting = self._waiting.get(envelope.type.removeprefix("sent."))
        if waiting is not None and not waiting.done():
            waiting.set_result(envelope)
