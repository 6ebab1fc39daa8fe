"""The direct feed: python-socketio's asyncio client, with Vectra's own reconnect policy.

python-socketio does not reconnect after a server-initiated disconnect and knows nothing of a feed
that is connected but silent, so its reconnection is off and this loop owns the whole life cycle:
connect, watch for silence, reconnect forever with jittered backoff, and say so at every step.
Event packets are taken straight from the Engine.IO layer (see `_FrameTap`), undecoded.
Waits use `asyncio.timeout`, not `wait_for`: on Python 3.11 `wait_for` can swallow the
cancellation that shutdown sends, and the daemon would hang.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Callable

import socketio

from core.config import Settings
from core.contracts.envelope import now_ms
from core.contracts.feed import FeedSink, FeedSource
from core.supervisor import backoff_delay

log = logging.getLogger(__name__)

_EVENT_PACKET_TYPES = "2356"  # event, ack, binary event, binary ack
# The WebSocket accepts frames well above Vectra's own limit, so an oversized frame becomes an
# `error` event on a live connection instead of a dropped connection.
WS_LIMIT_FACTOR = 16


class _FrameTap(socketio.AsyncClient):
    """A client whose event and ack packets go to Vectra's decoder instead of python-socketio's.

    python-socketio would drop a malformed packet with a log line; the core must report it. Only
    the connection handshake (connect, disconnect, connect error) stays with python-socketio.
    """

    def __init__(self, on_message: Callable[[str | bytes], None], **kwargs) -> None:
        # No SIGINT handling of its own: python-socketio would replace the daemon's handler and
        # turn Ctrl-C into a cancelled main task instead of a clean shutdown.
        super().__init__(reconnection=False, handle_sigint=False, **kwargs)
        self._on_message = on_message

    async def _handle_eio_message(self, data):  # noqa: ANN001 - python-socketio's signature
        if isinstance(data, (bytes, bytearray)) or (data and data[0] in _EVENT_PACKET_TYPES):
            self._on_message(data)
            return
        await super()._handle_eio_message(data)


class SocketIOSource(FeedSource):
    name = "socketio"

    def __init__(self, sink: FeedSink, settings: Settings) -> None:
        super().__init__(sink)
        self.settings = settings
        self.url = settings.feed_url
        self._last_frame = time.monotonic()
        self._wake = asyncio.Event()
        self._reason: str | None = None
        self._connected: _FrameTap | None = None  # the client while its connection is up

    def send_problem(self) -> str | None:
        """Whether an order packet can go out now (the direct executor asks before sending)."""
        return None if self._connected is not None else "the socketio source is not connected"

    async def send_packet(self, packet: str) -> None:
        """Send one Socket.IO packet text as it is, e.g. `2900000001["buyOrder",...]`: the ack id is
        the caller's, so python-socketio never sees (or answers for) that ack. `eio.send` is
        python-engineio's public send of one message."""
        client = self._connected
        if client is None:
            raise ConnectionError("the socketio source is not connected")
        await client.eio.send(packet)

    def _on_message(self, data: str | bytes) -> None:
        self._last_frame = time.monotonic()
        self.sink.frame(self.name, data, now_ms())

    def reconnect_now(self) -> None:
        self._reason = "reconnect requested"
        self._wake.set()

    async def run(self) -> None:
        attempt = 0
        reason: str | None = None
        while True:
            attempt += 1
            self.report("connecting" if attempt == 1 and reason is None else "reconnecting", attempt, reason)
            client = self._new_client()
            try:
                async with asyncio.timeout(self.settings.connect_timeout_s + 1):
                    await client.connect(
                        self.url,
                        headers={"Origin": self.settings.feed_origin},
                        transports=["websocket"],
                        wait_timeout=self.settings.connect_timeout_s,
                        auth=self.settings.feed_auth_object,
                    )
            except asyncio.CancelledError:
                await self._close(client)
                raise
            except Exception as exc:  # every way a connect can fail ends in the same retry
                reason = _describe(exc)
                await self._close(client)
                self.report("failed", attempt, reason)
                await self._sleep(backoff_delay(attempt, self.settings.reconnect_initial_s, self.settings.reconnect_max_s))
                continue
            self.report("connected", attempt)
            self._connected = client
            try:
                reason = await self._hold(client)
            finally:
                self._connected = None
                await self._close(client)
            self.report("disconnected", attempt, reason)
            attempt = 0
            await self._sleep(0 if reason == "reconnect requested" else backoff_delay(1, self.settings.reconnect_initial_s, self.settings.reconnect_max_s))

    def _new_client(self) -> _FrameTap:
        client = _FrameTap(
            self._on_message,
            logger=False,
            engineio_logger=False,
            websocket_extra_options={"max_msg_size": self.settings.max_frame_bytes * WS_LIMIT_FACTOR},
        )
        dropped = self._wake

        @client.event
        async def disconnect(reason=None):  # noqa: ANN001 - python-socketio passes the reason
            self._reason = f"server disconnected ({reason})" if reason else "server disconnected"
            dropped.set()

        return client

    async def _hold(self, client: _FrameTap) -> str:
        """Wait until the connection drops, goes silent, or a reconnect is requested."""
        self._wake.clear()
        self._reason = None
        self._last_frame = time.monotonic()
        stale_after = self.settings.stale_after_s
        while True:
            silent_for = time.monotonic() - self._last_frame
            try:
                async with asyncio.timeout(max(0.05, stale_after - silent_for)):
                    await self._wake.wait()
            except TimeoutError:
                if time.monotonic() - self._last_frame >= stale_after:
                    return f"no frame for {stale_after:g} s"
                continue
            return self._reason or "connection lost"

    async def _close(self, client: _FrameTap) -> None:
        try:
            async with asyncio.timeout(2):
                await client.disconnect()
        except Exception:
            log.debug("disconnect of a dead client failed", exc_info=True)

    async def _sleep(self, seconds: float) -> None:
        """Back off, but wake at once for an operator's reconnect request."""
        self._wake.clear()
        try:
            async with asyncio.timeout(seconds):
                await self._wake.wait()
        except TimeoutError:
            pass


def _describe(exc: BaseException) -> str:
    """The exception chain, most specific first: python-socketio says only "Connection error" and
    keeps the real cause (DNS failure, refused, TLS) further down, and a narrow console panel
    shows only the start of the line."""
    messages = []
    current: BaseException | None = exc
    while current is not None and len(messages) < 5:
        text = (current.strerror if isinstance(current, OSError) and current.strerror else str(current)) or type(current).__name__
        if text not in messages:
            messages.append(text)
        current = current.__cause__ or current.__context__
    text = "; ".join(reversed(messages))
    return text if len(text) < 300 else text[:300] + "..."
