"""Orders on the page's own, logged-in Socket.IO connection, through DevTools (`page` executor).

Login happens in the browser (Privy), so only the page's socket can place real orders, and the page
does not expose it. A script added before every page load (`Page.addScriptToEvaluateOnNewDocument`)
therefore replaces `window.WebSocket` with a subclass that only remembers the socket whose URL
contains VECTRA_CDP_SOCKET_MATCH: the page's client builds and uses its socket exactly as before.
Vectra then writes the desk's frame (`42<ackId>[...]`, the captured shape) on that socket with one
`Runtime.evaluate`; its ack ids start far above the page's own (900000000), so the page's client
ignores the ack and the desk reads it from the CDP source's `raw.ack`.

A page loaded before Vectra's script was added has no handle: once it has finished loading it is
reloaded, once (the CDP source rides out a reload like any reconnect). A page loaded after it always
has one, so the reload cannot repeat.

A frame is never written twice: one evaluate per order, never retried. When that call's answer is
lost (timeout), the frame may or may not be on the wire, so `send` still returns `Sent` (and logs
it): the desk then follows the order like any unacknowledged one, until its ack or the next
`playerUpdate` settles it. Only a refusal before anything ran raises `ExecutorError`.
"""

from __future__ import annotations

import json
import logging

from core.config import Settings
from core.contracts.envelope import now_ms
from core.orders.executors.base import OrderFrame, Sent
from core.orders.executors.game_tab import GameTab, TabExecutor, TabWatch, act_once

log = logging.getLogger(__name__)

HANDLE = "__vectraOrders"

# Runs before the page's own scripts. `ready`: the socket carries Socket.IO packets (it sent the
# Engine.IO upgrade `5`, or connected on it directly: `40`); before that it is only a probe.
HANDLE_SCRIPT = """(() => {
  const match = %(match)s;
  const Native = window.WebSocket;
  if (!Native || Object.prototype.hasOwnProperty.call(window, %(handle)s)) return;
  const handle = { socket: null, ready: false };
  class WebSocket extends Native {
    constructor(url, protocols) {
      super(url, protocols);
      if (String(url).includes(match)) {
        handle.socket = this;
        handle.ready = false;
        this.addEventListener("message", (event) => {
          if (handle.socket === this && typeof event.data === "string" && event.data.startsWith("40")) handle.ready = true;
        });
      }
    }
    send(data) {
      if (handle.socket === this && data === "5") handle.ready = true;
      return super.send(data);
    }
  }
  Object.defineProperty(window, %(handle)s, { value: handle });
  window.WebSocket = WebSocket;
})();"""

# Why the page's socket cannot take a frame now, or null.
PROBLEM = """(() => {
  const handle = window[%(handle)s];
  if (!handle) return "the game page has not loaded with Vectra's socket handle yet";
  if (!handle.socket) return "the game page has not opened its game socket yet (VECTRA_CDP_SOCKET_MATCH=" + %(match)s + ")";
  if (handle.socket.readyState !== 1) return "the page's game socket is not open (readyState " + handle.socket.readyState + ")";
  if (!handle.ready) return "the page's game socket is still upgrading from long-polling";
  return null;
})()"""

STATE = """({
  problem: %(problem)s,
  handle: Object.prototype.hasOwnProperty.call(window, %(handle)s),
  loaded: document.readyState === "complete",
  begun: performance.timeOrigin,
})"""

SEND = """((text) => {
  const problem = %(problem)s;
  if (problem !== null) return { problem };
  window[%(handle)s].socket.send(text);
  return { actedAt: Date.now() };
})"""


class PageExecutor(TabExecutor):
    """The `page` executor; a component too (it keeps `available()` current while it runs)."""

    name = "page"

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        names = {"handle": json.dumps(HANDLE), "match": json.dumps(settings.cdp_socket_match)}
        self._script = HANDLE_SCRIPT % names
        self._problem_script = PROBLEM % names
        self._state_script = STATE % {**names, "problem": self._problem_script}
        self._script_since_ms = 0
        self._send_function = SEND % {**names, "problem": self._problem_script}
        self.watch = TabWatch(GameTab(settings, self._prepare), self._check)

    async def _prepare(self, tab: GameTab) -> None:
        await tab.call("Page.enable")  # without it Chromium does not run the script in new documents
        await tab.call("Page.addScriptToEvaluateOnNewDocument", source=self._script)
        self._script_since_ms = now_ms()  # documents begun after this have the handle

    async def _check(self) -> str | None:
        tab = self.watch.tab
        page = await tab.evaluate(self._state_script)
        if not isinstance(page, dict):
            return f"unexpected answer from the page: {page!r}"
        if not page["handle"] and page["loaded"] and page["begun"] < self._script_since_ms:
            log.info("the game page was loaded before Vectra's socket handle: reloading it once")
            await tab.call("Page.reload")
            return "reloading the game page, so that Vectra's script holds its socket"
        return page["problem"]

    async def send(self, frame: OrderFrame) -> Sent:
        acted = await act_once(self.watch.tab, f"{self._send_function}({json.dumps(frame.text)})", f"order frame {frame.ack_id}")
        return Sent(executor=self.name, frame=frame.text, ack_id=frame.ack_id,
                    sent_at_ms=acted if acted is not None else now_ms())
