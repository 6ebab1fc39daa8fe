"""ZeroMQ transport: a PUB side for the live stream, a ROUTER side for replay, snapshot and commands.

Live stream (`settings.zmq_pub`, an XPUB socket): every envelope as two frames `[channel, envelope
JSON]`, so ZeroMQ's own prefix filter works (`game.` selects every game channel). To a subscriber it is
a PUB; an XPUB because its subscription messages show which prefixes are wanted, and a socket monitor
(accepted minus disconnected connections) gives the number of subscribers, which a PUB cannot tell.

Slow subscribers: each subscriber has its own queue of `zmq_pub_hwm` messages; a subscriber further
behind than that loses messages, and only that subscriber. We deliberately do NOT set XPUB_NODROP: with
it, a single full queue makes every send fail with EAGAIN, so one stuck bot would make every other
subscriber lose the same messages. A loss is never silent for a `core.client` subscriber: `seq` numbers
are contiguous and the heartbeat carries `last_seq`, so the client sees the hole and replays it from the
ROUTER. What the server can observe and count is how often that happens (`replays`, `replayed`).

Heartbeat: the foundation's `sys.heartbeat` (a control message without `seq`) is forwarded like every
control message, on the same socket as the events and after them, so a subscriber that holds fewer
events than `last_seq` says knows it lost some.

ROUTER (`settings.zmq_router`): one JSON request per message (the last frame; frames before it, e.g. a
REQ socket's empty delimiter, are echoed back), parsed by `Requests.parse`. `replay` streams one
message per event then `replay.end`; everything else gets one reply from `Requests.handle`. Every reply
queue is bounded (`zmq_router_hwm`); a replay whose reader stays that far behind for `REPLAY_STALL_S` is
abandoned and the client asks again.

Fairness: each peer's requests are answered one after another, in the order sent, and each peer may
have `MAX_PENDING_REQUESTS` in progress (more: `busy`, to that peer only). A peer that stops reading
thus holds up only its own requests, with one of them waiting on its full queue at a time; every other
peer is answered as if it were alone.

The ROUTER is read by a callback on its file descriptor, which starts each request's task itself: a
task awaiting pyzmq's `recv_multipart()` woke one turn of the loop later, through pyzmq's future and
its re-arming: a bot's order reached the desk about 0.2 ms later (bench/bench_orders.py, `bot -> desk`).
The descriptor is ZeroMQ's, edge-triggered: the callback takes every queued message until `EVENTS`
says none is left, and after a reply is sent (a send may take the descriptor's signal) the socket is
looked at again.
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass, field
from typing import Any

import orjson
import zmq
from zmq.utils.monitor import recv_monitor_message

from core.broadcast.requests import Requests, Transport
from core.config import ConfigError
from core.contracts.envelope import Envelope
from core.contracts.health import ZmqHealth
from core.contracts.patterns import ChannelFilter
from core.contracts.requests import Replay, Request, RequestError, error_reply, internal_error, with_id
from core.foundation import Foundation

log = logging.getLogger(__name__)

MAX_REQUEST_BYTES = 64 * 1024
MAX_MESSAGE_BYTES = 1024 * 1024  # libzmq cuts a peer that sends more than this: abuse, not a mistake
MAX_PENDING_REQUESTS = 64  # per peer
REPLAY_STALL_S = 10.0
# While a peer's reply queue is full, the one request it has in progress checks again after this
# pause, doubled up to the longest: many stuck peers cost a few wake-ups a second each, not a busy loop.
FULL_QUEUE_RETRY_S = (0.005, 0.1)
REPLAY_YIELD_EVERY = 256  # events sent before a replay lets the loop serve live events again
LINGER_MS = 1000  # on stop, queued messages get this long to leave
FIRST_FRAME_FLAGS = int(zmq.NOBLOCK | zmq.SNDMORE)
LAST_FRAME_FLAGS = int(zmq.NOBLOCK)


class ZmqTransport(Transport):
    name = "zmq"

    def __init__(self, foundation: Foundation, requests: Requests | None = None) -> None:
        super().__init__(foundation, requests)
        self._context: zmq.Context | None = None
        self._pub: zmq.Socket | None = None
        self._monitor: zmq.Socket | None = None
        self._router: zmq.Socket | None = None
        self._reading = False  # requests are taken (from start to stop)
        self._looking = False  # a look at the ROUTER's queue is scheduled
        self._pending: set[asyncio.Task] = set()
        self._peers: dict[bytes, PeerTurn] = {}
        self.peers = 0
        self.topics: set[bytes] = set()
        self.replays = 0
        self.replayed = 0
        self.replies_abandoned = 0
        self.requests_served = 0

    # --- life cycle -----------------------------------------------------------------------------

    async def start(self) -> None:
        settings = self.settings  # off-loopback endpoints without a token never validate (config.py)
        self._context = zmq.Context()
        self._pub = self._context.socket(zmq.XPUB)
        self._pub.setsockopt(zmq.SNDHWM, settings.zmq_pub_hwm)
        self._pub.setsockopt(zmq.LINGER, LINGER_MS)
        self._monitor = self._pub.get_monitor_socket(zmq.EVENT_ACCEPTED | zmq.EVENT_DISCONNECTED)
        self._router = self._context.socket(zmq.ROUTER)
        self._router.setsockopt(zmq.SNDHWM, settings.zmq_router_hwm)
        self._router.setsockopt(zmq.RCVHWM, settings.zmq_router_hwm)
        self._router.setsockopt(zmq.ROUTER_MANDATORY, 1)
        self._router.setsockopt(zmq.MAXMSGSIZE, MAX_MESSAGE_BYTES)
        self._router.setsockopt(zmq.LINGER, 0)
        try:
            self._pub.bind(settings.zmq_pub)
            self._router.bind(settings.zmq_router)
        except zmq.ZMQError as exc:
            context = self._close_sockets()
            if context is not None:
                context.term()
            raise ConfigError(
                f"cannot bind ZeroMQ ({settings.zmq_pub}, {settings.zmq_router}): {exc}; is another vectra running? "
                "Choose free endpoints with VECTRA_ZMQ_PUB and VECTRA_ZMQ_ROUTER"
            ) from None
        self.foundation.bus.subscribe(self)
        self.foundation.bus.on_control(self._send_control)
        asyncio.get_running_loop().add_reader(self._router.FD, self._take_requests)
        self._reading = True
        self._look_again()  # requests that came before the reader: the descriptor signals only new ones
        log.info("ZeroMQ events on %s (SUB), requests on %s (DEALER/REQ)", settings.zmq_pub, settings.zmq_router)

    async def stop(self) -> None:
        self.foundation.bus.unsubscribe(self)
        self._reading = False
        if self._router is not None:
            asyncio.get_running_loop().remove_reader(self._router.FD)
        for task in self._pending:
            task.cancel()
        await asyncio.gather(*self._pending, return_exceptions=True)
        context = self._close_sockets()
        if context is not None:
            await asyncio.to_thread(context.term)  # waits up to LINGER_MS for queued messages

    def _close_sockets(self) -> zmq.Context | None:
        """Close every socket; the caller terminates the returned context (which may wait)."""
        if self._pub is not None:
            self._pub.disable_monitor()
        for sock in (self._monitor, self._router, self._pub):
            if sock is not None:
                sock.close()
        self._monitor = self._router = self._pub = None
        context, self._context = self._context, None
        return context

    # --- live stream ----------------------------------------------------------------------------

    def deliver(self, envelope: Envelope) -> None:
        self._publish(envelope.type.encode(), envelope.to_json())

    def _send_control(self, message: dict[str, Any]) -> None:
        if message["type"] == "sys.heartbeat":
            self._drain_subscriptions()
        self._publish(str(message["type"]).encode(), orjson.dumps(message))

    def _publish(self, channel: bytes, body: bytes) -> None:
        """Two plain sends with int flags: `send_multipart` costs about as much again per event."""
        if self._pub is not None:
            self._pub.send(channel, FIRST_FRAME_FLAGS)
            self._pub.send(body, LAST_FRAME_FLAGS)

    def _drain_subscriptions(self) -> None:
        """Subscribe/unsubscribe messages and connect/disconnect events wait in their sockets until
        read; reading them once per heartbeat keeps both queues small and `health()` current."""
        if self._pub is None or self._monitor is None:
            return
        while self._pub.poll(0, zmq.POLLIN):
            message = self._pub.recv()
            if message[:1] == b"\x01":
                self.topics.add(message[1:])
            elif message[:1] == b"\x00":
                self.topics.discard(message[1:])
        while self._monitor.poll(0, zmq.POLLIN):
            event = recv_monitor_message(self._monitor)["event"]
            self.peers += 1 if event == zmq.EVENT_ACCEPTED else -1

    # --- ROUTER ---------------------------------------------------------------------------------

    def _take_requests(self) -> None:
        """Every request queued on the ROUTER, each handed to its own task (or answered at once)."""
        self._looking = False
        while self._reading and self._router.get(zmq.EVENTS) & zmq.POLLIN:
            self._take(self._router.recv_multipart(zmq.NOBLOCK))

    def _look_again(self) -> None:
        """After a send: queued requests may no longer signal the descriptor (see the module docstring)."""
        if not self._looking:
            self._looking = True
            asyncio.get_running_loop().call_soon(self._take_requests)

    def _take(self, frames: list[bytes]) -> None:
        route, payload = frames[:-1], frames[-1]
        self.requests_served += 1
        try:
            request = self.requests.parse(payload, MAX_REQUEST_BYTES)
            if isinstance(request, Replay):
                self.requests.check_pattern_count(len(set(request.channels)), request, "in one replay")
        except RequestError as exc:
            self._reply_at_once(route, orjson.dumps(exc.reply()))
            return
        peer = self._peers.setdefault(route[0], PeerTurn())
        if peer.in_progress >= MAX_PENDING_REQUESTS:
            busy = error_reply("busy", f"{MAX_PENDING_REQUESTS} requests of yours in progress; retry")
            self._reply_at_once(route, orjson.dumps(with_id(request.id, busy)))
        else:
            peer.in_progress += 1
            task = asyncio.create_task(self._answer_in_turn(route, request, peer))
            self._pending.add(task)
            task.add_done_callback(self._pending.discard)

    async def _answer_in_turn(self, route: list[bytes], request: Request, peer: PeerTurn) -> None:
        try:
            async with peer.turn:
                await self._answer(route, request)
        finally:
            peer.in_progress -= 1
            if not peer.in_progress:
                del self._peers[route[0]]

    async def _answer(self, route: list[bytes], request: Request) -> None:
        try:
            try:
                if isinstance(request, Replay):
                    await self._replay(route, request)
                else:
                    await self._reply(route, orjson.dumps(await self.requests.handle(request)))
            except ReplyAbandoned:
                raise
            except Exception:
                log.exception("ZeroMQ request %r failed", request.action)
                await self._reply(route, orjson.dumps(internal_error(request)))
        except ReplyAbandoned:
            self.replies_abandoned += 1

    async def _replay(self, route: list[bytes], request: Replay) -> None:
        # Events published while the replay streams reach the client live; stopping at `upto`
        # keeps `replay.end.last_seq` exact.
        upto = self.foundation.bus.last_seq
        self.replays += 1
        sent = 0
        async for item in self.requests.replay(request.from_seq, ChannelFilter(request.channels)):
            sent += 1
            if isinstance(item, Envelope):
                if item.seq > upto:
                    break
                await self._reply(route, item.to_json())
                self.replayed += 1
            else:
                await self._reply(route, orjson.dumps(with_id(request.id, item)))
            if sent % REPLAY_YIELD_EVERY == 0:
                await asyncio.sleep(0)
        await self._reply(route, orjson.dumps(with_id(request.id, {"type": "replay.end", "last_seq": upto})))

    def _reply_at_once(self, route: list[bytes], body: bytes) -> None:
        """For the reading callback, which must never wait on one peer (and looks at the queue again
        itself): send now or drop the reply."""
        try:
            self._router.send_multipart([*route, body], zmq.NOBLOCK)
        except zmq.ZMQError:  # full queue (EAGAIN) or a peer already gone (EHOSTUNREACH)
            self.replies_abandoned += 1

    async def _reply(self, route: list[bytes], body: bytes) -> None:
        """Send without ever blocking the loop; wait politely while the peer's queue is full."""
        deadline = None
        pause, longest_pause = FULL_QUEUE_RETRY_S
        while True:
            if self._router is None:
                raise ReplyAbandoned("transport stopped")
            try:
                self._router.send_multipart([*route, body], zmq.NOBLOCK)
                return
            except zmq.Again:
                deadline = deadline or time.monotonic() + REPLAY_STALL_S
                if time.monotonic() > deadline:
                    raise ReplyAbandoned("peer stopped reading") from None
                await asyncio.sleep(pause)
                pause = min(2 * pause, longest_pause)
            except zmq.ZMQError as exc:
                if exc.errno == zmq.EHOSTUNREACH:
                    raise ReplyAbandoned("peer is gone") from None
                raise
            finally:
                self._look_again()

    # --- what the outside sees ------------------------------------------------------------------

    def health(self) -> ZmqHealth:
        self._drain_subscriptions()
        return ZmqHealth(
            pub=self.settings.zmq_pub,
            router=self.settings.zmq_router,
            subscribers=self.peers,
            topics=sorted(topic.decode(errors="replace") for topic in self.topics),
            pub_hwm=self.settings.zmq_pub_hwm,
            router_hwm=self.settings.zmq_router_hwm,
            requests=self.requests_served,
            replays=self.replays,
            replayed_events=self.replayed,
            replies_abandoned=self.replies_abandoned,
        )


@dataclass
class PeerTurn:
    """One ROUTER peer's requests: answered one at a time (`turn`), at most `MAX_PENDING_REQUESTS`
    waiting or running (`in_progress`); forgotten when it has none."""

    turn: asyncio.Lock = field(default_factory=asyncio.Lock)
    in_progress: int = 0


class ReplyAbandoned(Exception):
    """The peer of a ROUTER reply is gone or stopped reading; the request is dropped."""
