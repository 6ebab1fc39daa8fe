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
from typing import Any, Awaitable, Callable, Protocol
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


class ForeignMessage(ValueError):
    """A message in stream `VECTRA` without a valid `Vectra-Seq`: no Vectra bridge published it."""


def seq_of(headers: dict[str, str] | None, subject: str, position: int) -> int:
    """A message's `seq`, from its `Vectra-Seq` header; raises `ForeignMessage` (saying where) without one."""
    value = (headers or {}).get(SEQ_HEADER)
    if value is None or not value.isdigit():
        raise ForeignMessage(
            f"{subject} at stream position {position} has no valid {SEQ_HEADER} header: "
            f"stream {STREAM} holds a message no Vectra bridge published"
        )
    return int(value)


def servers_in(urls: str) -> list[str]:
    """The server URLs of a comma-separated list (a cluster), in the order given."""
    return [url.strip() for url in urls.split(",") if url.strip()]


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


class JetStream(Protocol):
    """What `start_position` needs of a JetStream context (nats-py's `JetStreamContext` is one): the
    contracts name the two calls rather than import a client library."""

    async def stream_info(self, name: str) -> Any: ...

    async def get_msg(self, stream_name: str, seq: int) -> Any: ...


async def start_position(js: JetStream, wanted: int, *, missing: type[Exception]) -> int:
    """The position of stream `VECTRA` to read from for every event with `seq` >= `wanted`: the first
    such message's (`stream_position` on the stream's current bounds), or the stream's last + 1 when it
    holds none yet (read only what comes). The client's `from_seq` and the edge's resume both start here.

    `missing` is the exception `js.get_msg` raises for a position the stream does not hold (nats-py's
    `NotFoundError`): such a message is passed over. `stream_info`'s own errors (no stream) reach the
    caller, which knows what to say; a message without `Vectra-Seq` met on the way is `ForeignMessage`.
    """
    state = (await js.stream_info(STREAM)).state

    async def seq_at(position: int) -> int | None:
        try:
            message = await js.get_msg(STREAM, seq=position)
        except missing:
            return None
        return seq_of(message.headers, message.subject, position)

    found = await stream_position(state.first_seq, state.last_seq, seq_at, wanted)
    return found if found is not None else state.last_seq + 1
