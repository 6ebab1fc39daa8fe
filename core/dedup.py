"""One stream out of two sources: each frame published once, whichever source delivers it first.

With `VECTRA_SOURCE=cdp,socketio` the same server broadcast reaches Vectra twice. Counting per key
and per source keeps the rule exact: a frame is new when its source has now seen that key more often
than any other source has. So the first copy wins, the other source's copy is dropped, a source that
goes down leaves the other one carrying every frame (no gap), and a frame the server itself sends
twice is still published twice, as it would be with one source.

Frames are never held back to wait for the slower path. So when the faster source comes back from an
outage while the other still lags by more than one frame interval (milliseconds at the real rate, but
possible at simulator speeds of 10x and more), its first frame overtakes the lagging copies: the
normalizer declares those ticks a `game.gap`, and their `raw.*` frames still go out, late.
"""

from __future__ import annotations

import hashlib
import time
from collections import OrderedDict
from typing import Any, Hashable

import orjson

from core.contracts.feed import FeedEvent

MAX_KEYS = 50_000


def frame_key(event: FeedEvent) -> Hashable:
    """What identifies a frame across sources: tick identity, trade id, else a hash of the payload."""
    payload = event.payload
    if isinstance(payload, dict):
        if event.name == "gameStateUpdate" and payload.get("gameId") is not None:
            return (
                event.name,
                payload.get("gameId"),
                payload.get("tickCount"),
                payload.get("active"),
                payload.get("rugged"),
                payload.get("cooldownTimer"),
                payload.get("allowPreRoundBuys"),
            )
        if event.name == "standard/newTrade" and payload.get("id") is not None:
            return (event.name, payload.get("id"))
    return (event.name, _digest([payload, event.extra_args]))


def _digest(value: Any) -> bytes:
    try:
        blob = orjson.dumps(value, option=orjson.OPT_SORT_KEYS | orjson.OPT_NON_STR_KEYS)
    except TypeError:
        blob = repr(value).encode()
    return hashlib.blake2b(blob, digest_size=16).digest()


class FrameDeduplicator:
    """Remembers recent frame keys (bounded by age and by count) with how often each source saw them."""

    def __init__(self, window_s: float, max_keys: int = MAX_KEYS) -> None:
        self.window_s = window_s
        self.max_keys = max_keys
        self.dropped = 0
        self._seen: OrderedDict[Hashable, tuple[float, dict[str, int]]] = OrderedDict()

    def admit(self, source: str, event: FeedEvent) -> bool:
        """True when this copy is new and must be published; False for another source's copy."""
        now = time.monotonic()
        self._expire(now)
        key = frame_key(event)
        entry = self._seen.get(key)
        if entry is None:
            self._seen[key] = (now, {source: 1})
            return True
        counts = entry[1]
        mine = counts.get(source, 0) + 1
        counts[source] = mine
        if mine > max((count for name, count in counts.items() if name != source), default=0):
            return True
        self.dropped += 1
        return False

    def _expire(self, now: float) -> None:
        while self._seen:
            key, (first_seen, _) = next(iter(self._seen.items()))
            if now - first_seen <= self.window_s and len(self._seen) <= self.max_keys:
                return
            del self._seen[key]
