"""The browser feed: the game page's own Socket.IO traffic, read through the Chrome DevTools Protocol.

The events that matter most to a bot (`playerUpdate`, `usernameStatus`, its own sidebets and order
acks) only reach a browser logged in with the bot's wallet, so this source listens to that browser's
WebSocket instead of opening its own connection.

pychrome is synchronous: its threads only stamp each DevTools event and hand it to the asyncio loop
(`call_soon_threadsafe`); every DevTools call runs in a worker thread with a timeout. A pychrome
`Tab` dies silently (its receive thread ends, its status stays "started") and cannot be restarted,
so each attachment builds a fresh `Tab` from `/json/list` and the liveness of that thread is watched
(`core.chrome.pychrome_tab`, the one place pychrome's internals are touched).

A socket the page opened before Vectra attached is never announced (`webSocketCreated` happened
before `Network.enable`); it shows up only through its frames. It is *adopted* (no page reload, so no
frame is lost on attach): the first unannounced socket of the game tab that carries Socket.IO packets
becomes the game socket, until an announced socket matching `VECTRA_CDP_SOCKET_MATCH` replaces it.
Before its WebSocket upgrade the page's client long-polls over HTTP (as the real site does on every
reconnect); those responses are read too (`Network.getResponseBody`), so no frame of that phase is lost.
What the page sends on its game socket (or posts while long-polling) goes to the core too
(`sent.<event>`), so orders a person places by hand are recorded like everything else.

When the feed goes wrong the source escalates, one step at a time, each on `connection.status`:
no frame for `VECTRA_CDP_SILENCE_RELOAD_S` → reload the page; renderer crashed → navigate again;
tab gone → attach to the game tab again (opening one if needed); browser gone → wait, with backoff,
for the Chrome manager to relaunch it.
"""

from __future__ import annotations

import asyncio
import base64
import logging
import threading
import time
from functools import partial
from typing import Any

import pychrome
import websocket

from core.chrome.devtools import DevToolsError, browser_version, close_page, game_page, list_pages, open_page
from core.chrome.manager import ChromeManager
from core.chrome.pychrome_tab import QuietTab
from core.config import Settings
from core.contracts.envelope import now_ms
from core.framing import EIO_MESSAGE, FrameError, decode_polling_payload, split_engineio
from core.contracts.feed import FeedSink, FeedSource
from core.supervisor import CONNECTED, DISCONNECTED, ChangeGate, Policy, Supervisor, Transition

log = logging.getLogger(__name__)

WATCHED_EVENTS = (
    "Network.webSocketCreated",
    "Network.webSocketFrameReceived",
    "Network.webSocketFrameSent",
    "Network.webSocketClosed",
    "Network.webSocketFrameError",
    "Inspector.targetCrashed",
    "Inspector.detached",
    "Page.frameNavigated",
    "Network.requestWillBeSent",
    "Network.loadingFinished",
    "Network.loadingFailed",
)
ENABLED_DOMAINS = ("Network.enable", "Page.enable", "Inspector.enable")
SOCKET_IO_PACKET_PREFIXES = ("40", "42", "43", "45", "46")  # connect, event, ack, binary event/ack
TEXT_OPCODE, BINARY_OPCODE = 1, 2
LIVENESS_CHECK_S = 0.25
POLLING_MARK = "transport=polling"
BLANK_PAGES = ("about:blank", "chrome://newtab/", "chrome://new-tab-page/")


class CdpUnavailable(Exception):
    """The browser or its game tab cannot be attached to right now."""


class TabGone(Exception):
    """The DevTools session of the game tab ended."""


class _Attachment:
    """One DevTools session on one tab; lives exactly as long as its pychrome `Tab`."""

    def __init__(self, target: dict[str, Any], loop: asyncio.AbstractEventLoop, call_timeout: float) -> None:
        self.url: str = target.get("url", "")
        self.events: asyncio.Queue[tuple[str, dict[str, Any], int]] = asyncio.Queue()
        self._tab = QuietTab(**target)
        self._tab.connect_timeout = call_timeout
        self._loop = loop
        self._timeout = call_timeout
        self._closed = threading.Event()

    def open(self) -> None:
        """Blocking: connect the DevTools socket and route every watched event to the loop."""
        for name in WATCHED_EVENTS:
            self._tab.set_listener(name, partial(self._forward, name))
        self._tab.start()

    def _forward(self, name: str, **params: Any) -> None:
        """Runs on pychrome's thread: stamp the arrival time and hand over; nothing else."""
        if self._closed.is_set():
            return
        try:
            self._loop.call_soon_threadsafe(self.events.put_nowait, (name, params, now_ms()))
        except RuntimeError:  # the loop is closed: the source is shutting down
            self._closed.set()

    @property
    def alive(self) -> bool:
        # pychrome's only sign of a lost DevTools socket is its receive thread ending.
        return not self._closed.is_set() and self._tab.receiving

    async def call(self, method: str, **params: Any) -> dict[str, Any]:
        """One DevTools call, off the loop, bounded by the call timeout."""
        if not self.alive:
            raise TabGone(f"{method}: the tab's DevTools session is gone")
        try:
            async with asyncio.timeout(self._timeout + 1):
                return await asyncio.to_thread(self._tab.call_method, method, _timeout=self._timeout, **params)
        except (pychrome.PyChromeException, websocket.WebSocketException, OSError, asyncio.TimeoutError) as exc:
            raise TabGone(f"{method} failed: {exc or type(exc).__name__}") from None

    def close(self) -> None:
        """Blocking: stop the pychrome threads; the tab itself stays open in the browser."""
        self._closed.set()
        try:
            self._tab.stop()
        except pychrome.PyChromeException:
            pass


class CdpSource(FeedSource):
    name = "cdp"

    def __init__(self, sink: FeedSink, settings: Settings, chrome: ChromeManager | None = None) -> None:
        super().__init__(sink)
        self.settings = settings
        self.chrome = chrome
        self.url: str | None = None
        self._game_socket: str | None = None
        self._other_sockets: set[str] = set()
        self._polls: set[str] = set()
        self._browser_id: str | None = None
        self._last_frame = time.monotonic()
        self._attachment: _Attachment | None = None
        self._shown = ChangeGate()
        # pychrome logs a traceback for every lost DevTools socket; the source reports it itself.
        logging.getLogger("pychrome").setLevel(logging.CRITICAL + 1)
        # A lost tab is attached to again at once (the next attempt opens a fresh one if needed); only
        # a failed attachment backs off. `connected` and the end of an attachment are told by the
        # source itself: attaching to a tab is not yet having the game socket.
        policy = Policy.from_settings(settings, pause_after_loss=False)
        self.supervisor = Supervisor(self, self._show, policy, retry_on=(CdpUnavailable, TabGone, DevToolsError))

    def reconnect_now(self) -> None:
        self.supervisor.wake()

    def _show(self, step: Transition) -> None:
        if step.state not in (CONNECTED, DISCONNECTED):
            self._status(step.state, step.attempt, step.reason)

    def _status(self, state: str, attempt: int = 0, reason: str | None = None) -> None:
        if self._shown.changed((state, reason)):
            self.report(state, attempt, reason)

    async def run(self) -> None:
        await self.supervisor.run()

    # --- the supervisor's Link: attach, follow, let go ------------------------------------------

    async def open(self) -> None:
        self._attachment = await self._attach()

    async def hold(self) -> str:
        assert self._attachment is not None, "hold without an attachment"
        return await self._follow(self._attachment)

    async def close(self) -> None:
        attachment, self._attachment = self._attachment, None
        if attachment is not None:
            await asyncio.to_thread(attachment.close)
        self._forget_sockets()

    async def _attach(self) -> _Attachment:
        port, timeout = self.settings.cdp_port, self.settings.cdp_call_timeout_s
        version = await browser_version(port, timeout)
        if version is None:
            gone = f"no browser answers on CDP port {port}"
            raise CdpUnavailable(gone + ("; the Chrome manager starts it" if self.chrome else ""))
        target, navigate = self._pick_tab(await list_pages(port, timeout))
        if target is None:
            target, navigate = await open_page(port, self.settings.game_url, timeout), False
        attachment = _Attachment(target, asyncio.get_running_loop(), timeout)
        try:
            async with asyncio.timeout(timeout):
                await asyncio.to_thread(attachment.open)
        except (pychrome.PyChromeException, websocket.WebSocketException, OSError, asyncio.TimeoutError) as exc:
            await asyncio.to_thread(attachment.close)
            raise CdpUnavailable(f"cannot open the DevTools session of tab {target['id']}: {exc}") from None
        try:
            for method in ENABLED_DOMAINS:
                await attachment.call(method)
            if navigate:
                await attachment.call("Page.navigate", url=self.settings.game_url)
        except TabGone:
            # a tab that cannot even be instrumented is wedged: close it, the next attempt opens a fresh one
            await asyncio.to_thread(attachment.close)
            await close_page(port, target["id"], timeout)
            raise
        self._browser_id = version["webSocketDebuggerUrl"]
        self._note_tab(attachment.url)
        self._forget_sockets()
        self._status("connecting", 0, f"attached to tab {attachment.url or target['id']}; waiting for the game socket")
        return attachment

    def _pick_tab(self, pages: list[dict[str, Any]]) -> tuple[dict[str, Any] | None, bool]:
        """The tab showing the game; else a blank tab to navigate; else none (a new one is opened)."""
        game = game_page(pages, self.settings.game_url)
        if game is not None:
            return game, False
        for page in pages:
            if page.get("webSocketDebuggerUrl") and page.get("url", "") in BLANK_PAGES:
                return page, True
        return None, False

    async def _follow(self, attachment: _Attachment) -> str:
        """Hand the game socket's frames to the core until the tab is gone; returns why."""
        self._last_frame = time.monotonic()
        while True:
            try:
                outcome = await self._step(attachment)
            except TabGone as exc:
                return str(exc)
            if outcome is not None:
                return outcome

    async def _step(self, attachment: _Attachment) -> str | None:
        """Run the watchdog, then handle the next DevTools event (waiting for one at most a moment)."""
        if not attachment.alive:
            return await self._why_gone()
        silence_s = self.settings.cdp_silence_reload_s
        if time.monotonic() - self._last_frame >= silence_s:  # checked on every step: other events may flow
            await self._recover(attachment, f"no frame for {silence_s:g} s: reloading the page", "Page.reload")
            return None
        try:
            name, params, received_ms = attachment.events.get_nowait()
        except asyncio.QueueEmpty:
            try:
                # asyncio.timeout, never wait_for: on Python 3.11 wait_for swallows a cancellation that
                # lands as the awaited event arrives, and this loop then outlives the shutdown.
                async with asyncio.timeout(LIVENESS_CHECK_S):
                    name, params, received_ms = await attachment.events.get()
            except asyncio.TimeoutError:
                return None
        return await self._handle(attachment, name, params, received_ms)

    async def _why_gone(self) -> str:
        """Tab or browser? A browser relaunched meanwhile has a new DevTools id, so it counts as gone."""
        version = await browser_version(self.settings.cdp_port, self.settings.cdp_call_timeout_s)
        if version is None or version["webSocketDebuggerUrl"] != self._browser_id:
            return "the browser is gone"
        return "the game tab is gone"

    async def _recover(self, attachment: _Attachment, reason: str, method: str) -> None:
        """Reload or re-navigate the page; the page's client then opens a fresh socket."""
        self._status("reconnecting", 0, reason)
        self._game_socket = None
        self._last_frame = time.monotonic()
        if method == "Page.reload":
            await attachment.call("Page.reload", ignoreCache=True)
        else:
            await attachment.call("Page.navigate", url=self.settings.game_url)

    async def _handle(self, attachment: _Attachment, name: str, params: dict[str, Any], received_ms: int) -> str | None:
        request_id = params.get("requestId")
        if name == "Network.webSocketFrameReceived":
            if self._is_game_socket(request_id, params):
                self._on_frame(params.get("response") or {}, received_ms)
        elif name == "Network.webSocketFrameSent":
            # the page's own packets identify its game socket too
            if self._is_game_socket(request_id, params):
                self._on_sent_frame(params.get("response") or {}, received_ms)
        elif name == "Network.requestWillBeSent":
            request = params.get("request") or {}
            url = request.get("url", "")
            if POLLING_MARK in url and self.settings.cdp_socket_match in url:
                if request.get("method") == "GET":
                    self._polls.add(request_id)
                elif request.get("method") == "POST" and isinstance(request.get("postData"), str):
                    self._on_sent_poll(request["postData"], received_ms)
        elif name == "Network.loadingFinished":
            if request_id in self._polls:
                self._polls.discard(request_id)
                await self._on_poll(attachment, request_id, received_ms)
        elif name == "Network.loadingFailed":
            self._polls.discard(request_id)
        elif name == "Network.webSocketCreated":
            self._on_created(request_id, params.get("url", ""))
        elif name == "Network.webSocketClosed":
            self._other_sockets.discard(request_id)
            if request_id == self._game_socket:
                self._game_socket = None
                self._status("reconnecting", 0, "the page's game socket closed; the page reconnects it")
        elif name == "Network.webSocketFrameError":
            if request_id == self._game_socket:
                self._status("reconnecting", 0, f"game socket error: {params.get('errorMessage')}")
        elif name == "Inspector.targetCrashed":
            await self._recover(attachment, "the renderer crashed: opening the game page again", "Page.navigate")
        elif name == "Inspector.detached":
            why = await self._why_gone()  # a dying browser detaches its tabs first
            return why if why == "the browser is gone" else f"the tab was detached ({params.get('reason')})"
        elif name == "Page.frameNavigated":
            frame = params.get("frame") or {}
            if not frame.get("parentId"):
                self._note_tab(frame.get("url"))
        return None

    # --- which socket is the game's -------------------------------------------------------------

    def _on_created(self, request_id: str | None, url: str) -> None:
        if request_id is None:
            return
        if self.settings.cdp_socket_match in url:
            self._game_socket = request_id
            self.url = url
            if self._shown.last is None or self._shown.last[0] != CONNECTED:  # not yet connected by long-polling
                self._status("connected", 0, None)
        else:
            self._other_sockets.add(request_id)

    def _is_game_socket(self, request_id: str | None, params: dict[str, Any]) -> bool:
        if request_id is None or request_id == self._game_socket:
            return request_id is not None
        if self._game_socket is not None or request_id in self._other_sockets:
            return False
        payload = (params.get("response") or {}).get("payloadData", "")
        if isinstance(payload, str) and payload.startswith(SOCKET_IO_PACKET_PREFIXES):
            self._game_socket = request_id
            self.url = None
            self._status("connected", 0, "adopted a game socket opened before Vectra attached")
            return True
        return False

    def _forget_sockets(self) -> None:
        self._game_socket = None
        self._other_sockets.clear()
        self._polls.clear()

    # --- frames ---------------------------------------------------------------------------------

    async def _on_poll(self, attachment: _Attachment, request_id: str, received_ms: int) -> None:
        """A long-polling response of the game's Engine.IO session (before the WebSocket upgrade).

        Its body is fetched before the next DevTools event is handled, so frames keep their order.
        """
        try:
            reply = await attachment.call("Network.getResponseBody", requestId=request_id)
        except TabGone as exc:
            if attachment.alive:
                log.warning("a long-polling response of the game socket was lost: %s", exc)
                return
            raise
        body = reply.get("body", "")
        if reply.get("base64Encoded"):
            body = base64.b64decode(body).decode("utf-8", "replace")
        if self._game_socket is None:
            self._status("connected", 0, "long-polling (before the page's WebSocket upgrade)")
        for packet in decode_polling_payload(body):
            if isinstance(packet, bytes):
                self._deliver(packet, received_ms)
            else:
                self._on_text(packet, received_ms)

    def _on_frame(self, response: dict[str, Any], received_ms: int) -> None:
        payload = response.get("payloadData", "")
        if response.get("opcode") == BINARY_OPCODE:
            self._deliver(base64.b64decode(payload), received_ms)
            return
        self._on_text(payload, received_ms)

    def _on_text(self, payload: str, received_ms: int) -> None:
        try:
            kind, body = split_engineio(payload)
        except FrameError:
            self._deliver(payload, received_ms)  # the core reports it as an `error` event, raw included
            return
        if kind == EIO_MESSAGE:
            self._deliver(body, received_ms)
        # open, close, ping/pong (probes included), upgrade and noop carry no game data

    def _on_sent_frame(self, response: dict[str, Any], sent_ms: int) -> None:
        payload = response.get("payloadData", "")
        if response.get("opcode") == BINARY_OPCODE:
            self.sink.sent(self.name, base64.b64decode(payload), sent_ms)
        else:
            self._on_sent_text(payload, sent_ms)

    def _on_sent_poll(self, body: str, sent_ms: int) -> None:
        """What the page sent by long-polling, before its WebSocket upgrade (one POST, several packets)."""
        for packet in decode_polling_payload(body):
            if isinstance(packet, bytes):
                self.sink.sent(self.name, packet, sent_ms)
            else:
                self._on_sent_text(packet, sent_ms)

    def _on_sent_text(self, payload: str, sent_ms: int) -> None:
        try:
            kind, body = split_engineio(payload)
        except FrameError:
            self.sink.sent(self.name, payload, sent_ms)  # reported by the core, raw included
            return
        if kind == EIO_MESSAGE:
            self.sink.sent(self.name, body, sent_ms)

    def _deliver(self, message: str | bytes, received_ms: int) -> None:
        self._last_frame = time.monotonic()
        self.sink.frame(self.name, message, received_ms)

    # --- helpers --------------------------------------------------------------------------------

    def _note_tab(self, url: str | None) -> None:
        if self.chrome is not None:
            self.chrome.note_tab(url)

