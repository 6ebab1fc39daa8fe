"""The subscriber library: every matching event, in `seq` order, exactly once, over ZeroMQ.

    from core.client import subscribe
    async for event in subscribe("game.*", "player.trade"):
        print(event.seq, event.type, event.data)

`subscribe_blocking(...)` is the same as a plain iterator; `request({...})` sends one ROUTER request.
Endpoints come from the settings (`VECTRA_ZMQ_PUB`, `VECTRA_ZMQ_ROUTER`) unless given as arguments.

How nothing is missed and nothing repeated
------------------------------------------
`seq` numbers are contiguous within a run of the foundation, but a subscriber filtered to `game.*`
normally sees holes (the numbers of other channels), so holes in what it *wants* prove nothing. The
client therefore subscribes to every channel at the ZeroMQ level and filters locally: in the full stream
any hole is a loss, found at once and exactly. (On loopback the extra traffic is cheap; a raw ZeroMQ
subscriber that wants less can use ZeroMQ prefix filters instead.) The client keeps `last_seq`, the
highest seq up to which every event is accounted for, and:

- drops an event with `seq <= last_seq` (a duplicate: replayed and then also received live);
- on an event with `seq > last_seq + 1`, asks the ROUTER to `replay` from `last_seq + 1` filtered to the
  caller's patterns (plus `sys.start`), yields those events, moves `last_seq` to the replay's end, and
  goes back to the live stream, whose queued copies of the replayed events are now duplicates;
- on `sys.heartbeat`, which leaves on the same socket after every event it counts, replays the same
  way when `last_seq` in the heartbeat is ahead: a loss at the end of a burst is found within one
  heartbeat even if the stream then goes quiet. Its own reconnects need no special case: whatever
  ZeroMQ lost while disconnected shows up as one of these two holes.
- A restart of the foundation starts a new run with `sys.start`: the numbers between the old run's
  `data.previous_last_seq` and the new `sys.start` (`data.skipped`) were never used, so they are not a
  loss. Only a `sys.start` that follows exactly the old run's last event plus the skipped numbers is
  taken as is; any other jump is checked with a replay. Events of the old run the client had not
  received yet are lost unless the foundation can still replay them (from its recordings); what
  cannot be replayed is reported, never skipped silently.

What the caller sees besides events (status objects with `seq = None`, so `event.seq`, `event.type` and
`event.data` work on everything yielded):

- `client.gap` `{"from_seq": a, "to_seq": b}`: events a..b are lost for good (older than the
  foundation still holds). Everything after it is complete again.
- `client.status` `{"state": "down", "last_seq": n, "silent_s": s}` when nothing (not even a
  heartbeat) came for `dead_after_s` (default: 5 heartbeat intervals; the foundation is dead, hung or
  unreachable), and `{"state": "up", ...}` when it is back. The iterator keeps waiting; when the
  foundation returns, the missed range is replayed.
- A replay the foundation refuses (which the client's own requests never provoke) raises `ClientError`.

`from_seq=N` starts with every matching event from N on (resume after a restart of the caller, using its
last seen seq + 1); without it the stream starts with the first event received live.

As with any async generator, cancelling a pending `__anext__()` (e.g. `asyncio.wait_for` around it)
ends the subscription; to wait with a timeout, consume it in a task that feeds a queue.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field
from typing import Any, AsyncIterator, Iterator

import orjson
import zmq
import zmq.asyncio

from core.contracts.patterns import ChannelFilter
from core.config import Settings, load_settings
from core.contracts.envelope import Envelope

HEARTBEAT_CHANNEL = b"sys.heartbeat"
START_CHANNEL = b"sys.start"
DEFAULT_TIMEOUT_S = 5.0
DEAD_AFTER_HEARTBEATS = 5
QUEUE_LIMIT = 100_000  # live messages held while the caller is busy or a replay runs
SEQ_KEY = b'"seq":'
SEQ_SEARCH_BYTES = 24


class ClientError(Exception):
    """The foundation refused a request the client needs (the message is its error reply)."""


@dataclass(frozen=True)
class Status:
    """Something the client itself reports: not an event of the stream, hence no `seq`."""

    type: str
    data: dict[str, Any] = field(default_factory=dict)
    seq: None = None

    def to_json(self) -> bytes:
        return orjson.dumps({"type": self.type, "seq": None, "data": self.data})


def _endpoints(settings: Settings | None, pub: str | None, router: str | None) -> tuple[str, str]:
    if pub is None or router is None:
        settings = settings or load_settings()
        pub = pub or settings.zmq_pub
        router = router or settings.zmq_router
    return pub, router


def request(
    payload: dict[str, Any],
    timeout: float = DEFAULT_TIMEOUT_S,
    *,
    router: str | None = None,
    settings: Settings | None = None,
) -> dict[str, Any]:
    """Send one request to the ROUTER and return its (first) reply; error replies are returned as
    they are (`{"type": "error", ...}`). Raises `TimeoutError` when nothing answers in time.
    A `replay` streams many replies: use `subscribe(from_seq=...)` for that."""
    router = router or (settings or load_settings()).zmq_router
    context = zmq.Context.instance()
    sock = context.socket(zmq.DEALER)
    sock.setsockopt(zmq.LINGER, 0)
    try:
        sock.connect(router)
        sock.send(orjson.dumps(payload))
        if not sock.poll(int(timeout * 1000), zmq.POLLIN):
            raise TimeoutError(f"no reply from {router} within {timeout:g} s")
        return orjson.loads(sock.recv_multipart()[-1])
    finally:
        sock.close()


def _seq_of(body: bytes) -> int | None:
    """The `seq` of a serialized envelope, None for a control message (which has none).

    The envelope's own `seq` comes second (`{"v":1,"seq":...`), so the head of the message is
    enough; anything else is parsed in full."""
    start = body.find(SEQ_KEY, 0, SEQ_SEARCH_BYTES)
    if start >= 0:
        start += len(SEQ_KEY)
        end = body.find(b",", start)
        if end > start and body[start:end].isdigit():
            return int(body[start:end])
    try:
        seq = orjson.loads(body).get("seq")
    except (orjson.JSONDecodeError, AttributeError):
        return None
    return seq if isinstance(seq, int) and not isinstance(seq, bool) else None


class Subscription:
    """An async iterator over the matching events; see the module docstring for the guarantees."""

    def __init__(
        self,
        patterns: tuple[str, ...],
        *,
        from_seq: int | None = None,
        pub: str | None = None,
        router: str | None = None,
        settings: Settings | None = None,
        dead_after_s: float | None = None,
        request_timeout_s: float = DEFAULT_TIMEOUT_S,
        queue_limit: int = QUEUE_LIMIT,
    ) -> None:
        if from_seq is not None and (isinstance(from_seq, bool) or not isinstance(from_seq, int) or from_seq < 0):
            raise ValueError("from_seq must be a non-negative integer")
        if dead_after_s is None:
            settings = settings or load_settings()
            dead_after_s = DEAD_AFTER_HEARTBEATS * settings.heartbeat_s
        self.pub, self.router = _endpoints(settings, pub, router)
        self.patterns = list(patterns) or ["*"]
        self.wanted = ChannelFilter(self.patterns)
        self.last_seq: int | None = None if from_seq is None else max(from_seq, 1) - 1
        self.dead_after_s = dead_after_s
        self.request_timeout_s = request_timeout_s
        self.queue_limit = queue_limit
        self.replays = 0
        self.down = False
        self._context = zmq.asyncio.Context()
        self._sub: zmq.asyncio.Socket | None = None
        self._dealer: zmq.asyncio.Socket | None = None
        self._last_heard = time.monotonic()

    def __aiter__(self) -> AsyncIterator[Envelope | Status]:
        return self._events()

    def close(self) -> None:
        for sock in (self._sub, self._dealer):
            if sock is not None:
                sock.close(linger=0)
        self._sub = self._dealer = None
        self._context.term()

    # --- sockets --------------------------------------------------------------------------------

    def _open(self) -> None:
        self._sub = self._context.socket(zmq.SUB)
        self._sub.setsockopt(zmq.RCVHWM, self.queue_limit)
        self._sub.setsockopt(zmq.SUBSCRIBE, b"")
        self._sub.connect(self.pub)
        self._open_dealer()

    def _open_dealer(self) -> None:
        """A fresh DEALER has a fresh identity, so replies to an abandoned request never arrive."""
        if self._dealer is not None:
            self._dealer.close(linger=0)
        self._dealer = self._context.socket(zmq.DEALER)
        self._dealer.setsockopt(zmq.LINGER, 0)
        self._dealer.connect(self.router)

    # --- the stream -----------------------------------------------------------------------------

    async def _events(self) -> AsyncIterator[Envelope | Status]:
        self._open()
        try:
            if self.last_seq is not None:
                async for item in self._catch_up():
                    yield item
            while True:
                frames = await self._next_live()
                if frames is None:
                    if not self.down and time.monotonic() - self._last_heard > self.dead_after_s:
                        self.down = True
                        yield self._status("down")
                    continue
                self._last_heard = time.monotonic()
                if self.down:
                    self.down = False
                    yield self._status("up")
                channel, body = frames[0], frames[-1]
                async for item in self._on_message(channel, body):
                    yield item
        finally:
            self.close()

    async def _next_live(self) -> list[bytes] | None:
        assert self._sub is not None
        if not await self._sub.poll(timeout=min(1000, int(self.dead_after_s * 250) or 1)):
            return None
        return await self._sub.recv_multipart()

    async def _on_message(self, channel: bytes, body: bytes) -> AsyncIterator[Envelope | Status]:
        if channel == HEARTBEAT_CHANNEL:
            announced = orjson.loads(body).get("last_seq")
            if not isinstance(announced, int):
                return
            if self.last_seq is None:
                self.last_seq = announced
            elif announced > self.last_seq:
                async for item in self._catch_up():
                    yield item
            return
        seq = _seq_of(body)
        if seq is None:
            return  # another control message: not an event, nothing to account for
        if self.last_seq is None:
            self.last_seq = seq - 1
        if seq <= self.last_seq:
            return
        if seq > self.last_seq + 1 and not self._explained_by_restart(channel, body, seq):
            async for item in self._catch_up():
                yield item
            return
        self.last_seq = seq
        if self.wanted(channel.decode()):
            yield Envelope.from_json(body)

    def _explained_by_restart(self, channel: bytes, body: bytes, seq: int) -> bool:
        """A new run's `sys.start`, we hold everything of the previous run, and every number in
        between was skipped (never used); anything else is checked against a replay."""
        if channel != START_CHANNEL or self.last_seq is None:
            return False
        data = orjson.loads(body)["data"]
        previous, skipped = data.get("previous_last_seq"), data.get("skipped")
        if not isinstance(previous, int) or previous > self.last_seq:
            return False
        last_unused = skipped["to"] if isinstance(skipped, dict) else previous
        return seq == last_unused + 1

    async def _catch_up(self) -> AsyncIterator[Envelope | Status]:
        """Replay everything after `last_seq`; on silence give up quietly (the next heartbeat or
        event finds the same hole and asks again)."""
        assert self._dealer is not None and self.last_seq is not None
        self.replays += 1
        channels = self.patterns if self.wanted("sys.start") else [*self.patterns, "sys.start"]
        await self._dealer.send(orjson.dumps({"action": "replay", "from_seq": self.last_seq + 1, "channels": channels}))
        pending_gap: tuple[int, int] | None = None
        while True:
            if not await self._dealer.poll(timeout=int(self.request_timeout_s * 1000)):
                self._open_dealer()
                return
            reply = orjson.loads((await self._dealer.recv_multipart())[-1])
            kind = reply.get("type")
            if "seq" in reply and isinstance(reply.get("seq"), int):
                if pending_gap is not None:
                    lost = _real_loss(pending_gap, reply)
                    if lost is not None:
                        yield Status("client.gap", {"from_seq": lost[0], "to_seq": lost[1]})
                    self.last_seq = max(self.last_seq, pending_gap[1])
                    pending_gap = None
                if reply["seq"] <= self.last_seq:
                    continue
                self.last_seq = reply["seq"]
                if self.wanted(kind):
                    yield Envelope.from_dict(reply)
            elif kind == "gap":
                pending_gap = (reply["from_seq"], reply["to_seq"])
            elif kind == "replay.end":
                if pending_gap is not None:
                    yield Status("client.gap", {"from_seq": pending_gap[0], "to_seq": pending_gap[1]})
                    self.last_seq = max(self.last_seq, pending_gap[1])
                self.last_seq = max(self.last_seq, reply["last_seq"])
                return
            elif reply.get("data", {}).get("code") == "busy":
                return  # the next heartbeat or event finds the same hole and asks again
            else:
                raise ClientError(f"replay refused by {self.router}: {reply}")

    def _status(self, state: str) -> Status:
        return Status(
            "client.status",
            {"state": state, "last_seq": self.last_seq, "silent_s": round(time.monotonic() - self._last_heard, 1)},
        )


def _real_loss(gap: tuple[int, int], following: dict[str, Any]) -> tuple[int, int] | None:
    """The part of a replay gap that held events: numbers a restart skipped never did."""
    first, last = gap
    if following.get("type") == "sys.start" and following["seq"] == last + 1:
        previous = following.get("data", {}).get("previous_last_seq")
        if isinstance(previous, int):
            last = min(last, previous)
    return (first, last) if first <= last else None


def subscribe(
    *patterns: str,
    from_seq: int | None = None,
    pub: str | None = None,
    router: str | None = None,
    settings: Settings | None = None,
    dead_after_s: float | None = None,
    queue_limit: int = QUEUE_LIMIT,
) -> Subscription:
    """Every event on a channel matching one of `patterns` (shell globs; none means all).

    `queue_limit` live messages wait while the caller is busy; beyond that ZeroMQ drops them and
    the client replays them, so a small limit costs replays, never events."""
    return Subscription(
        patterns,
        from_seq=from_seq,
        pub=pub,
        router=router,
        settings=settings,
        dead_after_s=dead_after_s,
        queue_limit=queue_limit,
    )


def subscribe_blocking(*patterns: str, **options: Any) -> Iterator[Envelope | Status]:
    """`subscribe` for code without an event loop: a plain iterator (runs its own loop). Bad
    arguments raise here, not at the first `next()`."""
    return _blocking(subscribe(*patterns, **options))


def _blocking(subscription: Subscription) -> Iterator[Envelope | Status]:
    loop = asyncio.new_event_loop()
    events = subscription.__aiter__()
    try:
        while True:
            try:
                yield loop.run_until_complete(events.__anext__())
            except StopAsyncIteration:
                return
    finally:
        loop.run_until_complete(events.aclose())
        loop.close()
