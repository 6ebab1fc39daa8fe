"""What a feed is made of, as every layer sees it: the decoded event, the draft the normalizer makes
of it, the interface every source implements and the sink it reports to.

A source only moves frames: it connects, reconnects and tells how that is going. Decoding,
deduplication, normalization and sequencing happen once, in the core, whatever the source
(the cryptofeed lesson: one feed handler per source behind one interface).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from typing import Any, Protocol

from core.contracts.health import Section


@dataclass(slots=True)
class FeedEvent:
    """One Socket.IO event, unwrapped: name, payload (the last argument) and the trace, if any."""

    name: str
    payload: Any
    trace: dict[str, Any] | None = None
    extra_args: list[Any] = field(default_factory=list)
    ack_id: int | None = None
    namespace: str = "/"
    payload_json: str | None = None  # the payload's JSON text as received, when the packet held it plainly


@dataclass(slots=True)
class Draft:
    """An event before the bus gives it a sequence number and a timestamp."""

    type: str
    gameId: str | None
    data: dict[str, Any]
    data_json: bytes | None = None  # `data` already as JSON (a `raw.*` event around the received payload)


class FeedSink(Protocol):
    def frame(self, source: str, message: str | bytes, received_ms: int) -> None:
        """One Engine.IO message payload (a Socket.IO packet as text, or a binary attachment)."""

    def sent(self, source: str, message: str | bytes, sent_ms: int) -> None:
        """One Engine.IO message payload the page itself sent (the browser source sees both ways)."""

    def event(self, source: str, event: FeedEvent, received_ms: int) -> None:
        """An already decoded event (replayed recordings)."""

    def forget_games(self) -> None:
        """Forget which games were seen (a replay starting over)."""

    def status(self, source: str, state: str, *, url: str | None, attempt: int = 0, reason: str | None = None) -> None:
        """A change of the connection state; also resets the source's packet decoder."""


class FeedSource(ABC):
    name: str
    url: str | None = None

    def __init__(self, sink: FeedSink) -> None:
        self.sink = sink

    def report(self, state: str, attempt: int = 0, reason: str | None = None) -> None:
        """Tell the core this source's connection state (it goes out on `connection.status`)."""
        self.sink.status(self.name, state, url=self.url, attempt=attempt, reason=reason)

    def health(self) -> Section | None:
        """This source's own section of `/health`, beside its connection (None: nothing more to say)."""
        return None

    @abstractmethod
    async def run(self) -> None:
        """Hold the connection until cancelled, reconnecting as needed."""

    @abstractmethod
    def reconnect_now(self) -> None:
        """Drop the current connection and connect again at once (operator's request)."""
