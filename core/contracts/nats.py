"""How Vectra's stream looks on NATS JetStream: the names the bridge, the edge source and the client share.

One stream, `VECTRA`, holds every event under `vectra.<channel>`; each message is the envelope's JSON
exactly as the other transports send it. `seq` rides in two headers: `Nats-Msg-Id`, which JetStream
uses to drop a message it already holds (a republish after a reconnect), and `Vectra-Seq`, which a
reader uses to find a `seq` without parsing bodies. Both grow with the stream's own sequence, so a
`from_seq` maps to a stream position by bisection.
"""

from __future__ import annotations

import re
from functools import lru_cache
from typing import Awaitable, Callable
from urllib.parse import quote, unquote

STREAM = "VECTRA"
SUBJECT_PREFIX = "vectra."
SUBJECTS = SUBJECT_PREFIX + ">"
MSG_ID_HEADER = "Nats-Msg-Id"
SEQ_HEADER = "Vectra-Seq"


# A subject token is printable ASCII without whitespace, `*` or `>`; a channel name (a `raw.*` event is
# named by the feed) may hold anything, so every other character is percent-encoded, `%` included,
# and an empty token (`raw..x`) becomes a lone `%`, which encoding never produces. The message body
# keeps the real `type`: the mapping only names the subject.
_TOKEN_SAFE = "".join(chr(c) for c in range(0x21, 0x7F) if chr(c) not in "*>%.")
_EMPTY_TOKEN = "%"


@lru_cache(maxsize=4096)  # channel names are few: each is encoded once, not per event
def subject_for(channel: str) -> str:
    return SUBJECT_PREFIX + ".".join(quote(token, safe=_TOKEN_SAFE) or _EMPTY_TOKEN for token in channel.split("."))


@lru_cache(maxsize=4096)
def channel_of(subject: str) -> str:
    if not subject.startswith(SUBJECT_PREFIX):
        raise ValueError(f"{subject!r} is not a Vectra subject (they start with {SUBJECT_PREFIX!r})")
    tokens = subject[len(SUBJECT_PREFIX):].split(".")
    return ".".join("" if token == _EMPTY_TOKEN else unquote(token) for token in tokens)


def without_credentials(url: str) -> str:
    """A server URL fit for `/health`, logs and errors: `nats://user:password@host` loses its user part."""
    return re.sub(r"//[^/@]*@", "//", url)


async def stream_position(first: int, last: int, seq_at: Callable[[int], Awaitable[int | None]], wanted: int) -> int | None:
    """Where to start reading the stream for every event with `Vectra-Seq` >= `wanted`: a position
    before which every message is below `wanted` and from which none is, found by bisection between
    the stream's `first` and `last` sequences (about log2(n) lookups, no scan).

    `seq_at(position)` reads that message's `Vectra-Seq`, or None where the stream holds no message
    (deleted, or aged out meanwhile): the search looks at the next one. None: no message at or after
    `wanted` yet (read new messages from `last + 1` on).
    """
    low, high = first, last + 1
    while low < high:
        middle = (low + high) // 2
        probe, seq = middle, await seq_at(middle)
        while seq is None and probe + 1 < high:
            probe += 1
            seq = await seq_at(probe)
        if seq is None or seq >= wanted:
            high = middle  # every message from `middle` on is at or past `wanted` (or there is none)
        else:
            low = probe + 1
    return low if low <= last else None
