"""Orders on Vectra's own Socket.IO connection (the `socketio` source).

For the simulator, which takes orders from a connection that names its player in the Socket.IO
`auth` (VECTRA_FEED_AUTH), or for a direct connection that is logged in. The source owns the
connection; this executor only hands it the packet text, with the ack id the desk chose.
"""

from __future__ import annotations

from typing import Protocol

from core.contracts.envelope import now_ms
from core.orders.executors.base import ExecutorError, OrderFrame, Sent


class PacketSender(Protocol):
    def send_problem(self) -> str | None:
        """None when a packet can be sent now, else why not."""

    async def send_packet(self, packet: str) -> None:
        """Send one Socket.IO packet text (`2<ackId>[...]`) as it is."""


class DirectExecutor:
    name = "direct"

    def __init__(self, source: PacketSender | None) -> None:
        self.source = source

    def available(self) -> str | None:
        if self.source is None:
            return "the socketio source is not running (VECTRA_SOURCE has no socketio)"
        return self.source.send_problem()

    async def send(self, frame: OrderFrame) -> Sent:
        problem = self.available()
        if problem is not None:
            raise ExecutorError(problem)
        assert self.source is not None
        try:
            await self.source.send_packet(frame.packet)
        except Exception as exc:  # whatever the transport says, the order did not go out
            raise ExecutorError(f"the socketio source could not send: {exc}") from exc
        return Sent(executor=self.name, frame=frame.text, ack_id=frame.ack_id, sent_at_ms=now_ms())
