"""The direct feed: python-socketio's asyncio client, under Vectra's own reconnect policy.

python-socketio does not reconnect after a server-initiated disconnect and knows nothing of a feed
that is connected but silent, so its reconnection is off and the `Supervisor` owns the whole life
cycle: connect, watch for silence, reconnect forever with jittered backoff, and say so at every step.
Event packets are taken straight from the Engine.IO layer (see `socketio_tap`), undecoded.
"""

from __future__ import annotations

import asyncio
import logging

from core.config import Settings
from core.contracts.envelope import now_ms
from core.contracts.feed import FeedSink, FeedSource
from core.sources.socketio_tap import FrameTap
from core.supervisor import Policy, Supervisor, Transition

log = logging.getLogger(__name__)

# The WebSocket accepts frames well above Vectra's own limit, so an oversized frame becomes an
# `error` event on a live connection instead of a dropped connection.
WS_LIMIT_FACTOR = 16


class SocketIOSource(FeedSource):
    """A feed source, and the supervisor's `Link` for its one python-socketio client."""

    name = "socketio"

    def __init__(self, sink: FeedSink, settings: Settings) -> None:
        super().__init__(sink)
        self.settings = settings
        self.url = settings.feed_url
        self._client: FrameTap | None = None
        self._connected: FrameTap | None = None  # the client while its connection is up
        policy = Policy.from_settings(settings, stale_after_s=settings.stale_after_s)
        self.supervisor = Supervisor(self, self._show, policy, describe=_describe)

    def _show(self, step: Transition) -> None:
        self.report(step.state, step.attempt, step.reason)

    def _on_message(self, data: str | bytes) -> None:
        self.supervisor.heard()
        self.sink.frame(self.name, data, now_ms())

    def reconnect_now(self) -> None:
        self.supervisor.wake()

    async def run(self) -> None:
        await self.supervisor.run()

    def send_problem(self) -> str | None:
        """Why an order packet cannot go out now, or None (the direct executor asks before sending)."""
        return None if self._connected is not None else "the socketio source is not connected"

    async def send_packet(self, packet: str) -> None:
        """Send one Socket.IO packet text as it is, e.g. `2900000001["buyOrder",...]`, at once: the
        ack id is the caller's, so python-socketio never sees (or answers for) that ack."""
        client = self._connected
        if client is None:
            raise ConnectionError("the socketio source is not connected")
        await client.send_now(packet)

    # --- the supervisor's Link ------------------------------------------------------------------

    async def open(self) -> None:
        self._client = client = FrameTap(
            self._on_message,
            logger=False,
            engineio_logger=False,
            websocket_extra_options={"max_msg_size": self.settings.max_frame_bytes * WS_LIMIT_FACTOR},
        )

        @client.event
        async def disconnect(reason=None):  # noqa: ANN001 - python-socketio passes the reason
            self.supervisor.drop(f"server disconnected ({reason})" if reason else "server disconnected")

        async with asyncio.timeout(self.settings.connect_timeout_s + 1):
            await client.connect(
                self.url,
                headers={"Origin": self.settings.feed_origin},
                transports=["websocket"],
                wait_timeout=self.settings.connect_timeout_s,
                auth=self.settings.feed_auth_object,
            )
        self._connected = client

    async def hold(self) -> str:
        """python-socketio runs the connection on its own tasks: only its disconnect callback, the
        silence watchdog or an operator ends the hold, all through the supervisor."""
        return await asyncio.get_running_loop().create_future()

    async def close(self) -> None:
        client, self._client, self._connected = self._client, None, None
        if client is None:
            return
        try:
            async with asyncio.timeout(2):
                await client.disconnect()
        except Exception:
            log.debug("disconnect of a dead client failed", exc_info=True)


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
