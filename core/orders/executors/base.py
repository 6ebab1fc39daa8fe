"""The one interface every executor (`page`, `click`, `direct`) implements.

An executor only puts a frame on the wire. It never waits for the ack and never retries: the desk
follows acks (`raw.ack`) and the player's own trades on the bus, whatever the executor, so a
frame is sent at most once and every executor is judged by the same evidence.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol


@dataclass(frozen=True, slots=True)
class OrderFrame:
    """One order as it goes out: `text` is the Engine.IO text frame exactly as a browser's WebSocket
    carries it (`42<ackId>["buyOrder",{trace},{payload}]`); `packet` is the Socket.IO packet inside."""

    event: str
    args: list[Any]
    ack_id: int
    trace_id: str | None
    text: str

    @property
    def packet(self) -> str:
        return self.text[1:]


@dataclass(frozen=True, slots=True)
class Sent:
    """What went out: `ack_id` is None when the executor cannot choose one (`click`: the page does)."""

    executor: str
    frame: str
    ack_id: int | None
    sent_at_ms: int


class ExecutorError(Exception):
    """The frame could not be put on the wire (nothing was sent)."""


class Executor(Protocol):
    name: str

    def available(self) -> str | None:
        """None when it can place orders now, else why not (for the operator)."""

    async def send(self, frame: OrderFrame) -> Sent:
        """Put one frame on the wire, once; raise `ExecutorError` when it could not be sent."""
