"""The `page` and `click` executors' own DevTools session on the game tab of the managed browser.

The CDP source reads that tab through a session of its own; an executor opens a second one (Chrome
serves several clients per tab) so placing an order never waits behind the feed's event queue and
the source's reconnect logic stays untouched. pychrome is synchronous: every call runs in a worker
thread, bounded by VECTRA_CDP_CALL_TIMEOUT_S, so the loop never blocks on the browser.

A call can end three ways, and an executor must tell them apart, because an order must never go out
twice: it answered (`evaluate` returns), it was refused before anything ran (`TabUnavailable`,
`CallRefused`: nothing happened in the page), or its answer was lost (`CallLost`: it may have run).
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any, Awaitable, Callable

import pychrome
import websocket

from core.chrome.devtools import DevToolsError, browser_version, game_page, list_pages
from core.chrome.pychrome_tab import QuietTab
from core.config import Settings
from core.orders.executors.base import ExecutorError

log = logging.getLogger(__name__)


class TabUnavailable(Exception):
    """No browser, no game tab, or its DevTools session is gone: nothing was done in the page."""


class CallRefused(Exception):
    """DevTools or the page refused the call (an error reply, a script exception): it did not run."""


class CallLost(Exception):
    """The call's answer never came (timeout, session lost on the way): it may have run."""


class GameTab:
    """One DevTools session on the tab whose URL starts with VECTRA_GAME_URL, opened on demand."""

    def __init__(self, settings: Settings, on_attach: Callable[["GameTab"], Awaitable[None]] | None = None) -> None:
        self.settings = settings
        self._on_attach = on_attach
        self._tab: QuietTab | None = None
        self._attaching = asyncio.Lock()

    @property
    def attached(self) -> bool:
        return self._tab is not None and self._tab.receiving

    async def ensure(self) -> None:
        """Attach to the game tab unless attached already; `TabUnavailable` says why not."""
        if self.attached:
            return
        async with self._attaching:
            if self.attached:
                return
            await self.close()
            port, timeout = self.settings.cdp_port, self.settings.cdp_call_timeout_s
            if await browser_version(port, timeout) is None:
                raise TabUnavailable(f"no browser answers on CDP port {port}")
            try:
                target = game_page(await list_pages(port, timeout), self.settings.game_url)
            except DevToolsError as exc:
                raise TabUnavailable(str(exc)) from None
            if target is None:
                raise TabUnavailable(f"the browser shows no {self.settings.game_url} tab")
            tab = QuietTab(**target)
            tab.connect_timeout = timeout
            try:
                async with asyncio.timeout(timeout + 1):
                    await asyncio.to_thread(tab.start)
            except (pychrome.PyChromeException, websocket.WebSocketException, OSError, TimeoutError) as exc:
                await asyncio.to_thread(_stop, tab)
                raise TabUnavailable(f"cannot open a DevTools session on the game tab: {exc}") from None
            self._tab = tab
            if self._on_attach is not None:
                try:
                    await self._on_attach(self)
                except (CallRefused, CallLost, TabUnavailable) as exc:
                    await self.close()
                    raise TabUnavailable(f"preparing the game tab failed: {exc}") from None

    async def call(self, method: str, **params: Any) -> dict[str, Any]:
        tab = self._tab
        if tab is None or not tab.receiving:
            raise TabUnavailable("the game tab's DevTools session is gone")
        timeout = self.settings.cdp_call_timeout_s
        try:
            async with asyncio.timeout(timeout + 1):
                return await asyncio.to_thread(tab.call_method, method, _timeout=timeout, **params)
        except pychrome.CallMethodException as exc:
            raise CallRefused(f"{method}: {exc}") from None
        except (pychrome.PyChromeException, websocket.WebSocketException, OSError, TimeoutError) as exc:
            raise CallLost(f"{method}: no answer within {timeout:g} s ({type(exc).__name__})") from None

    async def evaluate(self, expression: str) -> Any:
        """The value of a script run in the page (JSON-able); a script that throws is `CallRefused`."""
        reply = await self.call("Runtime.evaluate", expression=expression, returnByValue=True)
        if "exceptionDetails" in reply:
            details = reply["exceptionDetails"]
            raise CallRefused(f"the page threw: {(details.get('exception') or {}).get('description') or details.get('text')}")
        return (reply.get("result") or {}).get("value")

    async def close(self) -> None:
        tab, self._tab = self._tab, None
        if tab is not None:
            await asyncio.to_thread(_stop, tab)


def _stop(tab: QuietTab) -> None:
    try:
        tab.stop()
    except pychrome.PyChromeException:
        pass


class TabWatch:
    """Keeps an executor's `available()` answer current without blocking it: a check of the page every
    `interval_s`, whose last answer is `problem` (None: it can place orders now)."""

    def __init__(self, tab: GameTab, check: Callable[[], Awaitable[str | None]], interval_s: float = 0.5) -> None:
        self.tab = tab
        self._check = check
        self._interval_s = interval_s
        self.problem: str | None = "not watching the game page (yet)"
        self._task: asyncio.Task | None = None

    async def refresh(self) -> str | None:
        try:
            await self.tab.ensure()
            self.problem = await self._check()
        except (TabUnavailable, CallRefused, CallLost) as exc:
            self.problem = str(exc)
        return self.problem

    async def _run(self) -> None:
        while True:
            await self.refresh()
            await asyncio.sleep(self._interval_s)

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="executor-watch")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
            self._task = None
        await self.tab.close()


async def act_once(tab: GameTab, script: str, what: str) -> int | None:
    """Run an order's one script in the page, never again: the page's clock (ms) when it acted, or None
    when the answer was lost (it may have acted). `ExecutorError` when it certainly did not act: no tab,
    a refused call, or the script's own `{problem}` answer."""
    try:
        await tab.ensure()
        reply: Any = await tab.evaluate(script)
    except (TabUnavailable, CallRefused) as exc:
        raise ExecutorError(str(exc)) from None
    except CallLost as exc:
        log.warning("%s: %s; it may have reached the page, so it is not repeated", what, exc)
        return None
    if not isinstance(reply, dict) or "actedAt" not in reply:
        raise ExecutorError(str(reply.get("problem") if isinstance(reply, dict) else f"unexpected answer {reply!r}"))
    return int(reply["actedAt"])


class TabExecutor:
    """What the `page` and `click` executors share: a component whose `available()` is its watch's answer."""

    watch: TabWatch

    def available(self) -> str | None:
        return self.watch.problem

    async def start(self) -> None:
        self.watch.start()

    async def stop(self) -> None:
        await self.watch.stop()

    def health(self) -> dict[str, Any] | None:
        return None
