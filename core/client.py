"""The client library: every matching event, in `seq` order, exactly once, over ZeroMQ; and orders.

    from core.client import subscribe
    async for event in subscribe("game.*", "player.trade"):
        print(event.seq, event.type, event.data)

`subscribe_blocking(...)` is the same as a plain iterator; `request({...})` sends one ROUTER request.
Endpoints come from the settings (`VECTRA_ZMQ_PUB`, `VECTRA_ZMQ_ROUTER`) unless given as arguments.
On another host, `subscribe(..., transport="nats", url="nats://host:4222")` reads the daemon's NATS
JetStream stream instead, with the same promises (core/nats_client.py).
A bot that also acts uses `Vectra` (see "Orders" below): the same reading, plus one line per order.

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
- `client.status` `{"state": "down", "last_seq": n, "silent_s": s, "url": where}` when nothing (not even a
  heartbeat) came for `dead_after_s` (default: 5 heartbeat intervals; the foundation is dead, hung or
  unreachable), and `{"state": "up", ...}` when it is back. The iterator keeps waiting; when the
  foundation returns, the missed range is replayed.
- A replay the foundation refuses (which the client's own requests never provoke) raises `ClientError`.
  More patterns than the foundation takes (`VECTRA_MAX_PATTERNS`) are no reason: the client then
  replays every channel and filters the replay itself.

`from_seq=N` starts with every matching event from N on (resume after a restart of the caller, using its
last seen seq + 1); without it the stream starts with the first event received live.

As with any async generator, cancelling a pending `__anext__()` (e.g. `asyncio.wait_for` around it)
ends the subscription; to wait with a timeout, consume it in a task that feeds a queue.

Orders
------
    async with Vectra() as vectra:              # token: VECTRA_AUTH_TOKEN / VECTRA_AUTH_TOKEN_FILE
        record = await vectra.buy(0.002)        # also sell(percent=25), sidebet(0.001, x_payout=5),
        if record.state == "rejected":          # short_open(0.001), short_close()
            print(record.code, record.message)
        async for event in vectra.subscribe("order.*", "player.state"):
            ...

Every order method takes an optional `order_id` (default: a fresh unique one) and returns the desk's
record of the order as an `OrderRecord` (`state`, `code`, ..., and the whole record in `.data`).
Delivery is safe to repeat, so the client repeats: when no reply comes within `timeout`, or the ROUTER
connection drops while it waits (a daemon restart), it sends the very same request again, with the
same `order_id`, up to `attempts` times. The desk answers a repeated id with the first record and
never sends the order twice, so a bot gets exactly one order however many copies went out. Only
then does it give up with `TimeoutError` (the order's fate is then asked with the same id later).

How refusals surface (one rule): an order the desk took and refused (its checks, the kill switch,
the server) is a normal outcome and comes back as a record with `state == "rejected"` and a `code`
(docs/PROTOCOL.md lists them); asking again with its id returns the same refusal. A request that is
not an order at all (`bad_order`, found here before anything is sent), or one the daemon will not
take (`unauthorized`: a missing or wrong token; `order_id_reused`: another order under an id already
used) raises `Refused` with that `code`.
`halt(reason)`, `resume()` and `orders()` return the desk's status (a dict), `player()` the last
`player.state` data (a dict, None before the first).
"""

from __future__ import annotations

import asyncio
import time
import uuid
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, AsyncIterator, Iterator, Literal

import orjson
import zmq
import zmq.asyncio
import zmq.utils.monitor

from core.contracts.patterns import ChannelFilter
from core.config import Settings, load_settings
from core.contracts.envelope import Envelope
from core.contracts.orders import BadOrder, parse_order

if TYPE_CHECKING:
    from core.nats_client import NatsSubscription

HEARTBEAT_CHANNEL = b"sys.heartbeat"
START_CHANNEL = b"sys.start"
DEFAULT_TIMEOUT_S = 5.0
DEAD_AFTER_HEARTBEATS = 5
QUEUE_LIMIT = 100_000  # live messages held while the caller is busy or a replay runs
SEQ_KEY = b'"seq":'
SEQ_SEARCH_BYTES = 24
BURST_BEFORE_YIELD = 64  # live messages taken without waiting before the loop gets a turn


class ClientError(Exception):
    """The foundation refused a request the client needs (the message is its error reply)."""


class Refused(ClientError):
    """An error reply to a request (`unauthorized`, `bad_order`, ...): `code` says which."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message


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
        self._replay_everything = False
        self.down = False
        self._context = zmq.asyncio.Context()
        self._sub: zmq.asyncio.Socket | None = None
        self._dealer: zmq.asyncio.Socket | None = None
        self._last_heard = time.monotonic()
        self._taken_at_once = 0

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
        """The next live message, None after a quiet while (the caller then looks at `dead_after_s`).

        One already queued is taken at once. Otherwise the receive itself is awaited: it completes
        in the turn after the socket wakes the loop, where a poll first (pyzmq chains a watcher, a
        poller and a future) took four turns, and the message that ends a burst (an order's ack,
        after its trade and player updates) waited for them each time. Every `BURST_BEFORE_YIELD`
        messages taken at once, the loop gets a turn: a stream that never pauses must not starve
        the caller's other tasks."""
        assert self._sub is not None
        if self._taken_at_once < BURST_BEFORE_YIELD:
            try:
                frames = await self._sub.recv_multipart(zmq.NOBLOCK)
            except zmq.Again:
                pass
            else:
                self._taken_at_once += 1
                return frames
        else:
            await asyncio.sleep(0)
        self._taken_at_once = 0
        return await self._receive_within(min(1.0, self.dead_after_s / 4) or 0.001)

    async def _receive_within(self, seconds: float) -> list[bytes] | None:
        """The next message, or None when none came within `seconds`. The timer cancels only the
        receive, which pyzmq then skips: a message that arrives as it fires is kept, never taken
        and dropped (as cancelling the task, `asyncio.timeout`, could do)."""
        assert self._sub is not None
        receiving = self._sub.recv_multipart()
        timer = asyncio.get_running_loop().call_later(seconds, receiving.cancel)
        try:
            return await receiving
        except asyncio.CancelledError:
            if asyncio.current_task().cancelling():
                raise  # the caller's cancellation, not the timer's
            return None
        finally:
            timer.cancel()

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
        await self._dealer.send(orjson.dumps({"action": "replay", "from_seq": self.last_seq + 1,
                                              "channels": self._replay_channels()}))
        pending_gap: tuple[int, int] | None = None
        while True:
            if not await self._dealer.poll(timeout=int(self.request_timeout_s * 1000)):
                self._open_dealer()
                return
            reply = orjson.loads((await self._dealer.recv_multipart())[-1])
            kind = reply.get("type")
            if "seq" in reply and isinstance(reply.get("seq"), int):
                if pending_gap is not None:
                    lost = real_loss(pending_gap, reply)
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
            elif reply.get("data", {}).get("code") == "too_many_patterns" and not self._replay_everything:
                self._replay_everything = True  # the same replay, unfiltered: the caller's filter applies here
                async for item in self._catch_up():
                    yield item
                return
            else:
                raise ClientError(f"replay refused by {self.router}: {reply}")

    def _replay_channels(self) -> list[str]:
        """The caller's patterns plus `sys.start`; everything once the foundation refused that many
        patterns (`VECTRA_MAX_PATTERNS`): events are filtered here anyway, so a long list of
        patterns costs only the extra traffic of a replay, never the subscription."""
        if self._replay_everything:
            return ["*"]
        return self.patterns if self.wanted("sys.start") else [*self.patterns, "sys.start"]

    def _status(self, state: str) -> Status:
        return Status(
            "client.status",
            {"state": state, "last_seq": self.last_seq, "silent_s": round(time.monotonic() - self._last_heard, 1),
             "url": self.pub},  # where it listens: a wrong VECTRA_ZMQ_PUB shows as `down` from the start
        )


def real_loss(gap: tuple[int, int], following: dict[str, Any]) -> tuple[int, int] | None:
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
    transport: Literal["zmq", "nats"] = "zmq",
    url: str | None = None,
) -> Subscription | NatsSubscription:
    """Every event on a channel matching one of `patterns` (shell globs; none means all).

    `queue_limit` live messages wait while the caller is busy; beyond that ZeroMQ drops them and
    the client replays them, so a small limit costs replays, never events.

    `transport="nats"` reads the daemon's JetStream stream instead (core/nats_client.py), from `url`
    (default `VECTRA_NATS_URL`; user and password from the settings), with the same promises."""
    if from_seq is not None and (isinstance(from_seq, bool) or not isinstance(from_seq, int) or from_seq < 0):
        raise ValueError("from_seq must be a non-negative integer")
    if transport == "nats":
        from core.nats_client import NatsSubscription  # nats-py is loaded only by those who read NATS

        settings = settings or load_settings()
        password = settings.nats_password
        return NatsSubscription(
            patterns, url=url or settings.nats_url, from_seq=from_seq, user=settings.nats_user,
            password=password.get_secret_value() if password else None,
        )
    if transport != "zmq":
        raise ValueError(f"transport must be 'zmq' or 'nats', not {transport!r}")
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


def _blocking(subscription: Subscription | NatsSubscription) -> Iterator[Envelope | Status]:
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


# --- orders -----------------------------------------------------------------------------------------

DEFAULT_ATTEMPTS = 3
DROPPED_OR_BACK = zmq.EVENT_DISCONNECTED | zmq.EVENT_HANDSHAKE_SUCCEEDED


def new_order_id() -> str:
    """A fresh order id, unique without coordination (32 hex digits fit the 64-character pattern)."""
    return "vx-" + uuid.uuid4().hex


@dataclass(frozen=True)
class OrderRecord:
    """The desk's record of one order as it stood when the reply left; `data` is the whole record
    (docs/PROTOCOL.md, `order`), the fields are its parts a bot branches on."""

    order_id: str
    kind: str
    state: str  # requested, sent, acked, filled, rejected, timeout
    dry_run: bool
    code: str | None
    message: str | None
    data: dict[str, Any]

    @classmethod
    def from_data(cls, data: dict[str, Any]) -> "OrderRecord":
        return cls(data["order_id"], data["kind"], data["state"], bool(data.get("dryRun")), data.get("code"),
                   data.get("message"), data)


def _data_of(reply: dict[str, Any], expected: str) -> Any:
    """The reply's `data`, or the error it is raised as."""
    if reply.get("type") == "error":
        error = reply.get("data") or {}
        raise Refused(str(error.get("code")), str(error.get("message")))
    if reply.get("type") != expected:
        raise ClientError(f"expected a {expected!r} reply, got {reply!r}")
    return reply.get("data")


class Vectra:
    """A bot's one handle on Vectra: orders, the desk's status, the player's state and the stream.
    See "Orders" in the module docstring for what it returns, raises and repeats."""

    def __init__(
        self,
        *,
        settings: Settings | None = None,
        token: str | None = None,
        pub: str | None = None,
        router: str | None = None,
        timeout: float = DEFAULT_TIMEOUT_S,
        attempts: int = DEFAULT_ATTEMPTS,
    ) -> None:
        if attempts < 1:
            raise ValueError("attempts must be at least 1")
        if settings is None and None in (pub, router, token):
            settings = load_settings()
        self.settings = settings
        self.pub, self.router = _endpoints(settings, pub, router)
        if token is None and settings is not None and settings.auth_token is not None:
            token = settings.auth_token.get_secret_value()
        self.token = token
        self.timeout = timeout
        self.attempts = attempts
        self.sends = 0  # copies of requests put on the wire: a repeat adds one
        self._context: zmq.asyncio.Context | None = None
        self._dealer: zmq.asyncio.Socket | None = None
        self._monitor: zmq.asyncio.Socket | None = None
        self._one_at_a_time = asyncio.Lock()

    async def __aenter__(self) -> "Vectra":
        self.open()
        return self

    async def __aexit__(self, *exc_info: Any) -> None:
        self.close()

    def open(self) -> None:
        self._context = zmq.asyncio.Context()
        self.reconnect()

    def close(self) -> None:
        self._close_sockets()
        if self._context is not None:
            self._context.term()
            self._context = None

    def reconnect(self) -> None:
        """Drop the ROUTER connection and open a fresh one (a fresh identity: replies still owed to
        the old one are never delivered here)."""
        assert self._context is not None, "use `async with Vectra(...)` (or call open()) first"
        self._close_sockets()
        self._dealer = self._context.socket(zmq.DEALER)
        self._dealer.setsockopt(zmq.LINGER, 0)
        self._monitor = self._dealer.get_monitor_socket(DROPPED_OR_BACK)
        self._dealer.connect(self.router)

    def _close_sockets(self) -> None:
        if self._dealer is not None:
            self._dealer.disable_monitor()
            self._dealer.close(linger=0)
        if self._monitor is not None:
            self._monitor.close(linger=0)
        self._dealer = self._monitor = None

    # --- reading ----------------------------------------------------------------------------------

    def subscribe(self, *patterns: str, **options: Any) -> Subscription:
        """`subscribe(...)` on this daemon's endpoints."""
        return subscribe(*patterns, pub=self.pub, router=self.router, settings=self.settings, **options)

    async def player(self) -> dict[str, Any] | None:
        return _data_of(await self.request({"action": "player"}), "player")

    async def orders(self) -> dict[str, Any]:
        return _data_of(await self.request({"action": "orders_status"}), "orders")

    # --- acting -----------------------------------------------------------------------------------

    async def buy(self, amount_sol: float, *, order_id: str | None = None) -> OrderRecord:
        return await self.order("buy", order_id, amount_sol=amount_sol)

    async def sell(self, percent: int, *, order_id: str | None = None) -> OrderRecord:
        return await self.order("sell", order_id, percent=percent)

    async def sidebet(self, amount_sol: float, x_payout: int = 5, *, order_id: str | None = None) -> OrderRecord:
        return await self.order("sidebet", order_id, amount_sol=amount_sol, x_payout=x_payout)

    async def short_open(self, amount_sol: float, *, order_id: str | None = None) -> OrderRecord:
        return await self.order("short_open", order_id, amount_sol=amount_sol)

    async def short_close(self, *, order_id: str | None = None) -> OrderRecord:
        return await self.order("short_close", order_id)

    async def order(self, kind: str, order_id: str | None = None, **fields: Any) -> OrderRecord:
        """Any order by kind; checked here first, so a malformed one never leaves."""
        fields = {"kind": kind, "order_id": order_id or new_order_id(), **fields}
        try:
            parse_order(fields)
        except BadOrder as exc:
            raise Refused("bad_order", str(exc)) from None
        return OrderRecord.from_data(_data_of(await self.request({"action": "order", **fields}), "order"))

    async def halt(self, reason: str | None = None) -> dict[str, Any]:
        request = {"action": "orders_halt"} if reason is None else {"action": "orders_halt", "reason": reason}
        return _data_of(await self.request(request), "orders")

    async def resume(self) -> dict[str, Any]:
        return _data_of(await self.request({"action": "orders_resume"}), "orders")

    # --- the exchange -----------------------------------------------------------------------------

    async def request(self, payload: dict[str, Any]) -> dict[str, Any]:
        """The reply to one request, repeated as it is (same `id`, same `order_id`) after a timeout
        or a dropped connection; for requests whose repeat does no harm, which all of the above are."""
        body = {**payload, "id": uuid.uuid4().hex}
        if self.token is not None:
            body.setdefault("token", self.token)
        message = orjson.dumps(body)
        async with self._one_at_a_time:
            for _ in range(self.attempts):
                reply = await self._exchange(message, body["id"])
                if reply is not None:
                    return reply
        raise TimeoutError(f"no reply from {self.router} to {payload.get('action')!r} after {self.attempts} attempts")

    async def _exchange(self, message: bytes, request_id: str) -> dict[str, Any] | None:
        """One copy on the wire and its reply; None when it must be sent again."""
        assert self._dealer is not None and self._monitor is not None, "use `async with Vectra(...)` first"
        dealer, monitor = self._dealer, self._monitor
        await dealer.send(message)
        self.sends += 1
        poller = zmq.asyncio.Poller()
        poller.register(dealer, zmq.POLLIN)
        poller.register(monitor, zmq.POLLIN)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.timeout
        dropped = False
        while (left := deadline - loop.time()) > 0:
            ready = dict(await poller.poll(int(left * 1000) + 1))
            if monitor in ready:
                event = zmq.utils.monitor.parse_monitor_message(await monitor.recv_multipart())["event"]
                if event == zmq.EVENT_DISCONNECTED:
                    dropped = True
                elif dropped:  # connected again: what was sent on the old connection may be lost
                    return None
            if dealer in ready:
                reply = orjson.loads((await dealer.recv_multipart())[-1])
                if reply.get("id") == request_id or ("id" not in reply and reply.get("type") == "error"):
                    return reply
        self.reconnect()
        return None
