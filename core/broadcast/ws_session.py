"""One WebSocket client: its subscriptions, its bounded outgoing queue and its writer.

`offer()` runs inside `EventBus.publish` for every event and never waits. While the client keeps
up (nothing queued, less than `WRITE_AHEAD_BYTES` in the socket's write buffer) it hands the frame
straight to the non-blocking transport; the WebSocket frame around an event is built once and the
same bytes go to every client (`broadcast()` frames it again for each one: 14-19 against 6-9 µs per
client and event here); otherwise it appends to this client's queue, which a writer task sends at whatever pace the client
reads. When the queue holds more than `ws_buffer_bytes` the client is closed with 1008 and told to
resume with `from_seq`, instead of making the bus (and every other client) wait or silently
dropping events.

Replay after `subscribe` with `from_seq` is streamed by the writer, bounded above by the `seq`
current when the command arrived; live events after that `seq` queue behind it. Since both happen
without an `await` in between, no event is lost or sent twice at the switch from replay to live.
Should the writer itself fail, the client gets an `internal` error and a close (1011) that tells it to
resume with `from_seq`, and the log says why: a session never just goes quiet.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from dataclasses import dataclass
from functools import lru_cache
from typing import Any, Callable

import orjson
from websockets.asyncio.server import ServerConnection, broadcast
from websockets.exceptions import ConnectionClosed
from websockets.frames import CloseCode, Frame, Opcode
from websockets.protocol import State

from core.broadcast.requests import Requests
from core.contracts.envelope import Envelope
from core.contracts.patterns import ChannelFilter
from core.contracts.requests import RequestError, Subscribe, Unsubscribe, error_reply, internal_error, with_id

log = logging.getLogger(__name__)

# Bytes the transport may hold for a client beyond the kernel's socket buffer before events queue
# (and count towards `ws_buffer_bytes`) instead of being written at once.
WRITE_AHEAD_BYTES = 64 * 1024
REPLAY_YIELD_EVERY = 256  # replayed events between two chances for the rest of the loop to run

@dataclass
class ReplayJob:
    """Events `from_seq`..`up_to` matching `wanted`, sent in order before what is queued after it."""

    from_seq: int
    up_to: int
    wanted: Callable[[str], bool]


class WsSession:
    def __init__(
        self,
        connection: ServerConnection,
        requests: Requests,
        *,
        buffer_bytes: int,
        max_message_bytes: int,
        max_messages_per_s: int,
        authorized: bool,
        on_closed_slow: Callable[[], None],
    ) -> None:
        self.connection = connection
        self.requests = requests
        self.filter = ChannelFilter()
        self.authorized = authorized
        self._buffer_limit = buffer_bytes
        self._max_message_bytes = max_message_bytes
        self._max_messages_per_s = max_messages_per_s
        self._on_closed_slow = on_closed_slow
        self._queue: deque[bytes | ReplayJob] = deque()
        self._queued_bytes = 0
        self._wake = asyncio.Event()
        self._closing = False
        self._replaying = False
        self._close_task: asyncio.Task | None = None
        self._window_start = time.monotonic()
        self._window_count = 0
        self._window_patterns = 0  # patterns added this second: each new one is compiled and tried

    # --- outgoing -------------------------------------------------------------------------------

    def offer(self, envelope: Envelope) -> None:
        """Called by the bus for every event: send or queue it if this client wants it; never waits."""
        if self.filter(envelope.type):
            self._enqueue(envelope.to_json())

    def offer_control(self, kind: str, message: bytes) -> None:
        if self.filter(kind):
            self._enqueue(message)

    def _reply(self, reply: dict[str, Any]) -> None:
        self._enqueue(orjson.dumps(reply))

    def _enqueue(self, item: bytes | ReplayJob) -> None:
        if self._closing:
            return
        if isinstance(item, bytes):
            if not self._queue and not self._replaying and self._room_to_write():
                self._send_now(item)
                return
            self._queued_bytes += len(item)
            if self._queued_bytes > self._buffer_limit:
                self._close_slow()
                return
        self._queue.append(item)
        self._wake.set()

    def _send_now(self, message: bytes) -> None:
        """The message's frame, shared by every client, written to this one's transport. websockets'
        connection writes each of its frames whole and at once, so a frame written beside it never
        lands inside one of its own; where the connection is not plainly open, or is midway through
        a message of its own, `broadcast()` decides as it always did (a closing client is skipped)."""
        connection = self.connection
        protocol = connection.protocol
        if (protocol.state is not State.OPEN or connection.send_in_progress is not None
                or protocol.expect_continuation_frame or protocol.extensions):
            broadcast((connection,), message, text=True)
            return
        connection.transport.write(_text_frame(message))

    def _room_to_write(self) -> bool:
        return self.connection.transport.get_write_buffer_size() < WRITE_AHEAD_BYTES

    def _close_slow(self) -> None:
        reason = f"too slow: more than {self._buffer_limit} bytes queued; resubscribe with from_seq"
        log.warning("closing slow WebSocket client %s (%s)", self.connection.remote_address, reason)
        self._closing = True
        self._queue.clear()
        self._queued_bytes = 0
        self._wake.set()
        self._on_closed_slow()
        self._close_task = asyncio.get_running_loop().create_task(
            self.connection.close(CloseCode.POLICY_VIOLATION, reason)
        )

    async def write(self) -> None:
        """Send queued messages until the connection closes."""
        try:
            await self._write()
        except ConnectionClosed:
            pass
        except Exception:
            log.exception("WebSocket writer for %s failed", self.connection.remote_address)
            await self._fail()

    async def _fail(self) -> None:
        """Say so and close: what was queued is lost to this connection, so the client must resume."""
        self._closing = True
        self._queue.clear()
        failed = error_reply("internal", "sending to this client failed inside the foundation (logged)")
        reason = "internal error; resubscribe with from_seq"
        try:
            await self.connection.send(orjson.dumps(failed), text=True)
            await self.connection.close(CloseCode.INTERNAL_ERROR, reason)
        except ConnectionClosed:
            pass

    async def _write(self) -> None:
        while not self._closing:
            if not self._queue:
                self._wake.clear()
                await self._wake.wait()
                continue
            item = self._queue.popleft()
            if isinstance(item, ReplayJob):
                self._replaying = True
                await self._send_replay(item)
                self._replaying = False
                continue
            self._queued_bytes -= len(item)
            if self._room_to_write():
                self._send_now(item)
            else:
                await self.connection.send(item, text=True)  # returns once the socket drains

    async def _send_replay(self, job: ReplayJob) -> None:
        sent = 0
        async for item in self.requests.replay(job.from_seq, job.wanted):
            sent += 1
            if self._closing:
                return
            if sent % REPLAY_YIELD_EVERY == 0:  # a fast reader never makes send() wait
                await asyncio.sleep(0)
            if isinstance(item, Envelope):
                if item.seq > job.up_to:
                    return
                await self.connection.send(item.to_json(), text=True)
            else:
                if item["from_seq"] > job.up_to:
                    return
                await self.connection.send(orjson.dumps(item), text=True)

    # --- incoming -------------------------------------------------------------------------------

    def flooding(self) -> bool:
        """Count one incoming message; True when this second's count is over the limit."""
        now = time.monotonic()
        if now - self._window_start >= 1.0:
            self._window_start = now
            self._window_count = 0
            self._window_patterns = 0
        self._window_count += 1
        return self._window_count > self._max_messages_per_s

    async def receive(self, message: str | bytes) -> None:
        """Answer one command: exactly one reply, queued in order with the events."""
        try:
            if isinstance(message, bytes):
                raise RequestError("binary_not_supported", "commands are JSON text frames, not binary")
            request = self.requests.parse(message, self._max_message_bytes)
        except RequestError as exc:
            self._reply(exc.reply())
            return
        try:
            if isinstance(request, Subscribe):
                self._subscribe(request)
            elif isinstance(request, Unsubscribe):
                self.filter.remove(request.channels)
                self._reply(with_id(request.id, {"type": "unsubscribed", "channels": self.filter.patterns}))
            else:
                self._reply(await self.requests.handle(request, authorized=self.authorized))
        except RequestError as exc:
            self._reply(exc.reply())
        except Exception:
            log.exception("command %r failed", request.action)
            self._reply(internal_error(request))

    def _subscribe(self, request: Subscribe) -> None:
        """Reply, queue the replay, widen the live filter: synchronous, so that no event can
        arrive between the `seq` the replay stops at and the first live event. A request over a
        pattern limit changes nothing; one within them costs what it adds, not what is already held,
        and a client cannot add (and remove) patterns faster than it may hold them."""
        new = self.filter.new(request.channels)
        self.requests.check_pattern_count(len(self.filter) + len(new), request, "held by this connection")
        self.requests.check_pattern_count(self._window_patterns + len(new), request, "added within one second")
        self._window_patterns += len(new)
        already = self.filter.copy() if request.from_seq is not None else None
        self.filter.add(new)
        current = self.requests.foundation.bus.last_seq
        reply = {"type": "subscribed", "channels": self.filter.patterns, "seq": current}
        self._reply(with_id(request.id, reply))
        if already is not None:
            added = ChannelFilter(new)
            self._enqueue(ReplayJob(request.from_seq, current, lambda channel: added(channel) and not already(channel)))


@lru_cache(maxsize=1)
def _text_frame(message: bytes) -> bytes:
    """The unmasked, uncompressed text frame a server sends (the server offers no extension). The bus
    hands every client the same bytes object, whose hash Python keeps, so each client after the first
    finds the frame here by identity."""
    return Frame(Opcode.TEXT, message).serialize(mask=False)
