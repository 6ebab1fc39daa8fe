"""The client library over NATS JetStream: `subscribe(..., transport="nats", url=...)`.

The same promises as over ZeroMQ (core/client.py): every matching event in `seq` order, exactly once,
`from_seq` resume, `client.gap` for events a..b lost for good, `client.status` down/up. What differs
is where the events come from: stream `VECTRA`, which the daemon's bridge fills in `seq` order and
which outlives the daemon, the client and (replicated) a NATS server.

- `from_seq` maps to a stream position by bisection on the `Vectra-Seq` header (`start_position`,
  shared with the edge: about log2(n) message reads, no scan); the stream is then read from there by an
  ordered consumer.
- The client reads every channel and filters locally, as over ZeroMQ, so that in the full stream a
  hole in `seq` means something: numbers a restart skipped (`sys.start` says which) are not a loss;
  any other hole either lies in the stream itself (consecutive stream positions: the bridge found those
  events gone, or the stream aged them out before the client's `from_seq` got there): `client.gap`;
  or the consumer missed messages (positions not consecutive): the client reads again after the last
  position it holds, so nothing is skipped silently.
- The NATS connection reconnects by itself (to any server of the cluster it knows); the ordered
  consumer restarts after the last message it delivered.
"""

from __future__ import annotations

import asyncio
import time
from typing import AsyncIterator

import nats
from nats.aio.client import Client as NatsConnection
from nats.aio.msg import Msg
from nats.js import JetStreamContext
from nats.js.api import ConsumerConfig, DeliverPolicy
from nats.js.errors import NotFoundError

from core.client import ClientError, Status, real_loss
from core.contracts.envelope import Envelope
from core.contracts.nats import (
    STREAM, SUBJECTS, ForeignMessage, channel_of, seq_of, servers_in, start_position, without_credentials,
)
from core.contracts.patterns import ChannelFilter

IDLE_HEARTBEAT_S = 1.0  # the server's heartbeat on the consumer: a consumer lost with its server is noticed
POLL_S = 0.5


class NatsSubscription:
    """An async iterator over the matching events read from stream `VECTRA`."""

    def __init__(
        self, patterns: tuple[str, ...], *, url: str, from_seq: int | None = None, user: str | None = None,
        password: str | None = None,
    ) -> None:
        self.servers = servers_in(url)
        if not self.servers:
            raise ValueError("transport='nats' needs url= (or VECTRA_NATS_URL): the NATS server(s) to read from")
        self.patterns = list(patterns) or ["*"]
        self.wanted = ChannelFilter(self.patterns)
        self.from_seq = from_seq
        self.last_seq: int | None = None if from_seq is None else max(from_seq, 1) - 1
        self.user, self.password = user or None, password or None
        self.position: int | None = None  # the stream sequence of the last message taken
        self.rereads = 0
        self._connection: NatsConnection | None = None
        self._subscription = None
        self._fresh = True  # the first message after a (re)subscribe: a hole before it is the stream's
        self._changes: list[str] = []  # connection changes not yet reported
        self._silent_since = time.monotonic()

    def __aiter__(self) -> AsyncIterator[Envelope | Status]:
        return self._events()

    async def _events(self) -> AsyncIterator[Envelope | Status]:
        self._connection = await nats.connect(
            servers=self.servers, user=self.user, password=self.password, max_reconnect_attempts=-1,
            reconnect_time_wait=0.5, disconnected_cb=self._disconnected, reconnected_cb=self._reconnected,
        )
        try:
            js = self._connection.jetstream()
            await self._subscribe(js, await self._start_position(js))
            while True:
                while self._changes:
                    yield self._status(self._changes.pop(0))
                try:
                    message = await self._subscription.next_msg(timeout=POLL_S)
                except (TimeoutError, asyncio.TimeoutError, nats.errors.TimeoutError):
                    continue
                for item in await self._take(js, message):
                    yield item
        except ForeignMessage as exc:  # met while finding `from_seq` or reading on
            raise ClientError(str(exc)) from None
        finally:
            await self._connection.close()

    async def _start_position(self, js: JetStreamContext) -> int | None:
        """The stream position of the first event at or after `from_seq` (None without `from_seq`:
        only new events)."""
        if self.from_seq is None:
            return None
        try:
            return await start_position(js, max(self.from_seq, 1), missing=NotFoundError)
        except NotFoundError:
            raise self._no_stream() from None

    async def _subscribe(self, js: JetStreamContext, position: int | None) -> None:
        if self._subscription is not None:
            await self._subscription.unsubscribe()
        if position is None:
            policy, config = DeliverPolicy.NEW, ConsumerConfig()
        else:
            policy, config = DeliverPolicy.BY_START_SEQUENCE, ConsumerConfig(opt_start_seq=position)
        try:
            self._subscription = await js.subscribe(
                SUBJECTS, stream=STREAM, ordered_consumer=True, idle_heartbeat=IDLE_HEARTBEAT_S,
                deliver_policy=policy, config=config,
            )
        except NotFoundError:
            raise self._no_stream() from None
        self._fresh = True

    async def _take(self, js: JetStreamContext, message: Msg) -> list[Envelope | Status]:
        position = message.metadata.sequence.stream
        seq = seq_of(message.headers, message.subject, position)
        if self.position is not None and position <= self.position:
            return []  # delivered again
        if self.last_seq is None:
            self.last_seq = seq - 1
        found: list[Envelope | Status] = []
        if seq > self.last_seq + 1:
            lost = real_loss((self.last_seq + 1, seq - 1), Envelope.from_json(message.data).as_dict())
            if lost is not None and not self._fresh and self.position is not None and position != self.position + 1:
                self.rereads += 1  # the consumer skipped messages the stream may hold: read again
                await self._subscribe(js, self.position + 1)
                return []
            if lost is not None:
                found.append(Status("client.gap", {"from_seq": lost[0], "to_seq": lost[1]}))
        self._fresh = False
        self.position = position
        if seq <= self.last_seq:
            return found
        self.last_seq = seq
        if self.wanted(channel_of(message.subject)):
            found.append(Envelope.from_json(message.data))
        return found

    def _no_stream(self) -> ClientError:
        servers = ", ".join(without_credentials(server) for server in self.servers)
        return ClientError(f"no stream {STREAM} on {servers}: no Vectra daemon publishes there (VECTRA_NATS_URL)")

    async def _disconnected(self) -> None:
        self._silent_since = time.monotonic()
        self._changes.append("down")

    async def _reconnected(self) -> None:
        self._changes.append("up")

    def _status(self, state: str) -> Status:
        return Status(
            "client.status",
            {"state": state, "last_seq": self.last_seq, "silent_s": round(time.monotonic() - self._silent_since, 1),
             "url": ", ".join(without_credentials(server) for server in self.servers)},
        )

