"""The NATS JetStream bridge: every event the bus publishes, in `seq` order, into stream `VECTRA`.

`deliver()` only appends to a bounded queue (once it is full, an event is left out and read back
later), so the bridge never slows the bus or another subscriber. One task publishes with a window of
acks in flight; `acked` is the highest `seq` JetStream acknowledged with every one before it. When NATS
is down or slow the bridge falls behind and later reads what it missed from the ring and, beyond the
ring, the recordings (`Requests.replay`, what a client's `replay` reads), so a backlog costs no memory
and nothing is lost. At every (re)connect it reads the stream's last `Vectra-Seq` and continues after
it: a daemon restart loses nothing either.

Order in the stream is the server's to keep, not luck: each message carries
`Nats-Expected-Last-Sequence`, the stream sequence its predecessor will have, so a message whose
predecessor was lost (a connection cut between them, a leader change) is refused rather than stored
out of order. Any refusal or missing ack ends the connection's turn; the next turn starts again after
the stream's real last message. `Nats-Msg-Id` = `seq` makes a message that arrived twice (a republish
after a lost ack) a duplicate the server drops.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from typing import AsyncIterator

import nats
from nats.aio.client import Client as NatsConnection
from nats.js import JetStreamContext
from nats.js.api import StorageType, StreamConfig
from nats.js.errors import NotFoundError

from core.broadcast.requests import Requests, Transport
from core.config import nats_connect_options
from core.contracts.envelope import Envelope
from core.contracts.health import NatsHealth
from core.contracts.nats import (
    MSG_ID_HEADER, SEQ_HEADER, STREAM, SUBJECTS, seq_of, servers_in, subject_for, without_credentials,
)
from core.contracts.patterns import ChannelFilter
from core.foundation import Foundation
from core.supervisor import Policy, Supervisor, Transition

log = logging.getLogger(__name__)

WINDOW = 512  # publishes awaiting their ack at once
ACK_TIMEOUT_S = 5.0
QUEUE_EVENTS = 4096  # live events held for the publisher (~20 MB of 5 KB ticks at most); past this it reads them back
EXPECTED_LAST_SEQUENCE = "Nats-Expected-Last-Sequence"
DUPLICATE_WINDOW_S = 120.0
EVERY_CHANNEL = ChannelFilter(["*"])


class NatsBridge(Transport):
    name = "nats"

    def __init__(self, foundation: Foundation, requests: Requests | None = None) -> None:
        super().__init__(foundation, requests)
        self.servers = servers_in(self.settings.nats_url)
        self.acked: int | None = None  # highest seq JetStream holds with everything before it
        self._queue: deque[Envelope] = deque()
        self._publishing = False  # connected: the queue takes new events (away, they are read back later)
        self._wake = asyncio.Event()
        self._state = "connecting"
        self._last_error: str | None = None
        self._connection: NatsConnection | None = None
        self._stream_last = 0  # the stream sequence of the last message this turn expects stored
        self._supervisor = Supervisor(self, self._changed, Policy.from_settings(self.settings))
        self._task: asyncio.Task | None = None

    # --- the bus side: must cost almost nothing --------------------------------------------------

    def deliver(self, envelope: Envelope) -> None:
        if self._publishing and len(self._queue) < QUEUE_EVENTS:
            self._queue.append(envelope)  # a full queue skips it: the publisher finds the hole and reads it back
        self._wake.set()

    # --- the component ---------------------------------------------------------------------------

    async def start(self) -> None:
        self.foundation.bus.subscribe(self)
        self._task = asyncio.create_task(self._supervisor.run(), name="nats-bridge")

    async def stop(self) -> None:
        self.foundation.bus.unsubscribe(self)
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
        await self.close()

    def health(self) -> NatsHealth:
        backlog = self.backlog()
        return NatsHealth(
            state=self._state, url=",".join(without_credentials(url) for url in self.servers), stream=STREAM,
            acked_seq=self.acked, backlog=backlog, degraded=backlog > self.settings.nats_backlog_degraded,
            last_error=self._last_error,
        )

    def backlog(self) -> int:
        """Events on the bus JetStream has not acknowledged: seq numbers, less the block this run
        reserved and never used (a restart's skip) when the acked position is still before it."""
        last = self.foundation.bus.last_seq
        acked = self.acked if self.acked is not None else self._run_start() - 1
        skipped = self.foundation.seqstore.resume.skipped
        unused = skipped[1] - max(acked, skipped[0] - 1) if skipped and acked < skipped[1] else 0
        return max(0, last - acked - unused)

    def _run_start(self) -> int:
        resume = self.foundation.seqstore.resume
        return (resume.skipped[1] if resume.skipped else resume.previous_last_seq) + 1

    def _changed(self, transition: Transition) -> None:
        self._state = transition.state
        if transition.reason:
            self._last_error = transition.reason
            log.warning("NATS bridge %s: %s", transition.state, transition.reason)

    # --- the supervised link ---------------------------------------------------------------------

    async def open(self) -> None:
        """Connect (as the edge does: the servers in order, each tried at once, then the supervisor's
        backoff), create or update the stream, and find where it ends (`acked`)."""
        self._connection = await nats.connect(
            **nats_connect_options(self.settings, self.settings.nats_url), disconnected_cb=self._lost,
            error_cb=self._error,
        )
        js = self._connection.jetstream(timeout=ACK_TIMEOUT_S)
        await self._ensure_stream(js)
        info = await js.stream_info(STREAM)
        self._stream_last = info.state.last_seq
        stored = await self._last_vectra_seq(js, info.state.last_seq)
        if stored is not None:
            if stored > self.foundation.bus.last_seq:
                self._last_error = (
                    f"stream {STREAM} already holds seq {stored}, past this daemon's {self.foundation.bus.last_seq}: "
                    "another daemon's stream, or a data folder started afresh"
                )
                log.warning("NATS bridge: %s", self._last_error)
            self.acked = stored
        elif self.acked is None:
            self.acked = self._run_start() - 1  # an empty stream gets this run's events

    async def _lost(self) -> None:
        self._supervisor.drop("connection to NATS lost")

    async def _error(self, exc: Exception) -> None:
        self._last_error = str(exc) or type(exc).__name__

    async def _ensure_stream(self, js: JetStreamContext) -> None:
        config = StreamConfig(
            name=STREAM, subjects=[SUBJECTS], storage=StorageType.FILE,
            max_age=self.settings.nats_max_age_h * 3600 or None,
            max_bytes=self.settings.nats_max_mb * 1024 * 1024 or -1,
            num_replicas=self.settings.nats_replicas, duplicate_window=DUPLICATE_WINDOW_S,
        )
        try:
            await js.stream_info(STREAM)
        except NotFoundError:
            await js.add_stream(config)
        else:
            await js.update_stream(config)

    @staticmethod
    async def _last_vectra_seq(js: JetStreamContext, last: int) -> int | None:
        """The `Vectra-Seq` of the stream's last message; None for an empty stream (aged out too)."""
        if last == 0:
            return None
        try:
            message = await js.get_msg(STREAM, seq=last)
        except NotFoundError:
            return None
        return seq_of(message.headers, message.subject, last)  # another's message: ForeignMessage ends the turn

    async def hold(self) -> str:
        """Publish until a publish fails; the window's acks are settled in order by a second task."""
        window: asyncio.Queue[tuple[int, asyncio.Future]] = asyncio.Queue(WINDOW)
        tasks = [asyncio.create_task(self._publish(window)), asyncio.create_task(self._settle(window))]
        try:
            done, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
            for task in done:
                task.result()  # raises what ended the turn
            return "stopped"
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)

    async def _publish(self, window: asyncio.Queue[tuple[int, asyncio.Future]]) -> None:
        js = self._connection.jetstream(timeout=ACK_TIMEOUT_S)
        async for envelope in self._unpublished():
            headers = {
                MSG_ID_HEADER: str(envelope.seq), SEQ_HEADER: str(envelope.seq),
                EXPECTED_LAST_SEQUENCE: str(self._stream_last),
            }
            future = await js.publish_async(subject_for(envelope.type), envelope.to_json(), headers=headers)
            self._stream_last += 1
            await window.put((envelope.seq, future))

    async def _settle(self, window: asyncio.Queue[tuple[int, asyncio.Future]]) -> None:
        while True:
            seq, future = await window.get()
            async with asyncio.timeout(ACK_TIMEOUT_S):
                await future  # a refusal raises: the turn ends and the next starts after the stream's end
            self.acked = seq
            if self._last_error and self._state == "connected":
                self._last_error = None

    async def _unpublished(self) -> AsyncIterator[Envelope]:
        """Every event after `acked`, in order, then each new one as it comes: from the queue while
        its head is the next event, else (a hole: the queue was full, or the bridge was away) read
        back from the ring and recordings, which also covers the jump to a new run's first number.
        Within a run numbers are consecutive, so the head tells exactly whether anything is missing."""
        position, stalled = self.acked, False
        self._publishing = True
        while True:
            queue = self._queue
            if queue and queue[0].seq <= position:
                queue.popleft()
            elif queue and queue[0].seq == position + 1:
                position += 1
                yield queue.popleft()
            elif (queue or position < self.foundation.bus.last_seq) and not stalled:
                before = position
                async for item in self.requests.replay(position + 1, EVERY_CHANNEL):
                    if isinstance(item, Envelope) and item.seq > position:
                        position = item.seq
                        yield item
                stalled = position == before  # nothing could be read back: no second try before news
            elif queue:
                position, stalled = queue[0].seq - 1, False  # held nowhere (recording off): a loss, go on
            else:
                stalled = False
                self._wake.clear()
                await self._wake.wait()

    async def close(self) -> None:
        self._publishing = False  # while away the bridge holds nothing: it reads everything back later
        self._queue.clear()
        connection, self._connection = self._connection, None
        if connection is not None:
            try:
                await connection.close()
            except Exception:  # closing a broken connection: nothing left to save
                log.debug("closing the NATS connection failed", exc_info=True)

