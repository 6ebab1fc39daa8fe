"""The one place where events get their sequence number and reach every subscriber.

Fan-out is a synchronous call per subscriber on the event loop, the keeper (the recorder) first:
each subscriber (ZeroMQ, a WebSocket client, the recorder) owns a bounded buffer and its own policy
when that buffer is full, so the bus itself never waits and never decides to drop.
"""

from __future__ import annotations

import logging
import time
from collections import deque
from typing import Any, Callable, Iterable

import orjson

from core.contracts.channels import family_of
from core.contracts.component import Subscriber
from core.contracts.envelope import Envelope, now_ms
from core.contracts.feed import Draft
from core.ring import Ring
from core.seqstore import SeqStore

log = logging.getLogger(__name__)

EDGE_CONTROL = "sys.edge"  # an edge's own event, as a control message (`EventBus.relay`)
LATENCY_WINDOW = 2048
RATE_WINDOW_S = 5


class Stats:
    """Counters the health endpoint and the console read; O(1) for every event.

    The event rate comes from per-second buckets over the last `RATE_WINDOW_S` seconds, not from a
    timestamp per event (which cost a deque append and a sweep of old entries on every event).
    """

    def __init__(self) -> None:
        self.started = time.monotonic()
        self.events_total = 0
        self.by_family: dict[str, int] = {}
        self.last_event_ms: int | None = None
        self.last_frame_ms: int | None = None  # of an event a feed frame caused; Vectra's own do not count
        self._latencies: deque[float] = deque(maxlen=LATENCY_WINDOW)
        self._buckets = [0] * (RATE_WINDOW_S + 1)  # events per whole second, indexed by second modulo size
        self._bucket_second = int(self.started)

    def count(self, envelope: Envelope, received_ms: int | None) -> None:
        self.events_total += 1
        family = family_of(envelope.type)
        self.by_family[family] = self.by_family.get(family, 0) + 1
        self.last_event_ms = envelope.timestamp
        second = int(time.monotonic())
        if second != self._bucket_second:
            self._advance(second)
        self._buckets[second % len(self._buckets)] += 1
        if received_ms is not None:
            self.last_frame_ms = received_ms
            self._latencies.append(time.time() * 1000 - received_ms)

    def _advance(self, second: int) -> None:
        """Empty the buckets of the seconds that passed without an event (at most the whole window)."""
        size = len(self._buckets)
        for passed in range(self._bucket_second + 1, min(second, self._bucket_second + size) + 1):
            self._buckets[passed % size] = 0
        self._bucket_second = second

    def events_per_s(self) -> float:
        """Events over the last `RATE_WINDOW_S` whole seconds plus the current one, per second."""
        now = time.monotonic()
        second = int(now)
        if second != self._bucket_second:
            self._advance(second)
        span = min(RATE_WINDOW_S + now - second, now - self.started) or 1.0
        return round(sum(self._buckets) / span, 2)

    def latency_ms(self) -> dict[str, float | None]:
        values = sorted(self._latencies)
        if not values:
            return {"p50": None, "p99": None}
        return {
            "p50": round(values[len(values) // 2], 3),
            "p99": round(values[min(len(values) - 1, int(len(values) * 0.99))], 3),
        }


class EventBus:
    def __init__(self, seqstore: SeqStore, ring: Ring) -> None:
        self.seqstore = seqstore
        self.ring = ring
        self.stats = Stats()
        self._keepers: list[Subscriber] = []
        self._subscribers: list[Subscriber] = []
        self._control_listeners: list[Callable[[dict[str, Any]], None]] = []
        self.last_by_type: dict[str, Envelope] = {}
        self.relaying = False  # an edge: the numbers are the origin's (see `relay`)
        self.started = False  # this run's `sys.start` went out

    @property
    def last_seq(self) -> int:
        return self.seqstore.last

    @property
    def next_seq(self) -> int:
        """The number the next `publish` gives its event (publishing is synchronous: nothing takes it
        in between), for a record that must name an event before it is published."""
        return self.seqstore.last + 1

    def subscribe(self, subscriber: Subscriber) -> None:
        self._subscribers.append(subscriber)

    def keep_with(self, keeper: Subscriber) -> None:
        """`keeper` makes events durable (the recorder): it gets each event before the sequence file
        counts it as published and before any subscriber can send it anywhere."""
        self._keepers.append(keeper)

    def unsubscribe(self, subscriber: Subscriber) -> None:
        if subscriber in self._subscribers:
            self._subscribers.remove(subscriber)

    def on_control(self, listener: Callable[[dict[str, Any]], None]) -> None:
        self._control_listeners.append(listener)

    def relay(self) -> None:
        """Make this bus an edge's: events come numbered from the origin (`republish`), and the edge's
        own (`sys.start`, `connection.status`, `recording.status`, `error`...) would take numbers that
        belong to the origin, so `publish` sends them as `sys.edge` control messages instead: never
        recorded, no `seq`, so a subscriber sees the origin's stream with nothing in between."""
        self.relaying = True

    def publish(
        self,
        type: str,
        data: dict[str, Any],
        *,
        source: str,
        game_id: str | None = None,
        received_ms: int | None = None,
        data_json: bytes | None = None,
    ) -> Envelope | None:
        """Number an event of this foundation's and send it everywhere; None on an edge (see `relay`)."""
        self.started = self.started or type == "sys.start"
        if self.relaying:
            self.control({"type": EDGE_CONTROL, "event": type, "ts": now_ms(), "source": source, "gameId": game_id,
                          "data": orjson.loads(data_json) if data_json is not None else data})
            return None
        envelope = Envelope(
            seq=self.seqstore.next(),
            type=type,
            timestamp=received_ms if received_ms is not None else now_ms(),
            gameId=game_id,
            source=source,
            data=data,
            data_json=data_json,
        )
        self._deliver(self._keepers, envelope)
        self.seqstore.published(envelope.seq)
        self._pass_on(envelope, received_ms)
        return envelope

    def republish(self, envelope: Envelope, received_ms: int) -> bool:
        """An edge passes an origin's envelope on unchanged, with the origin's `seq`: kept first, then
        the sequence file moves to that number, then everyone else gets it. False: not newer than the
        last one (a duplicate), dropped. `received_ms` is the edge's own clock (another host's may
        differ): what `/health` calls the feed's last frame."""
        if envelope.seq <= self.seqstore.last:
            return False
        self._deliver(self._keepers, envelope)
        self.seqstore.adopt(envelope.seq)
        self._pass_on(envelope, received_ms)
        return True

    def _pass_on(self, envelope: Envelope, received_ms: int | None) -> None:
        self.ring.append(envelope)
        self.last_by_type[envelope.type] = envelope
        self.stats.count(envelope, received_ms)
        self._deliver(self._subscribers, envelope)

    @staticmethod
    def _deliver(subscribers: list[Subscriber], envelope: Envelope) -> None:
        for subscriber in subscribers:
            try:
                subscriber.deliver(envelope)
            except Exception:
                log.exception("subscriber %r failed; it stays subscribed", subscriber)

    def publish_drafts(
        self, drafts: Iterable[Draft], *, source: str, received_ms: int
    ) -> list[Envelope]:
        return [
            self.publish(d.type, d.data, source=source, game_id=d.gameId, received_ms=received_ms, data_json=d.data_json)
            for d in drafts
        ]

    def control(self, message: dict[str, Any]) -> None:
        """Send a control message (no `seq`, never recorded), e.g. `sys.heartbeat`."""
        for listener in self._control_listeners:
            try:
                listener(message)
            except Exception:
                log.exception("control listener failed")
