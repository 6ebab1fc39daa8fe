"""The one place Vectra reaches into python-socketio's internals: the Engine.IO message hook, and
the Engine.IO WebSocket an order is written on.

python-socketio decodes every packet itself and drops a malformed one with a log line; a feed
handler must report it instead, so event and ack packets are taken from the Engine.IO layer before
python-socketio sees them (`AsyncClient._handle_eio_message`, a private coroutine). Only the
connection handshake (connect, disconnect, connect error) stays with python-socketio.

python-engineio runs every message handler in a task of its own (`_trigger_event(..., run_async=True)`),
a task created, scheduled and finished per feed frame; event and ack packets are handed over inside
its read loop instead (they never wait for anything), the handshake packets still in their task
(a disconnect handler waits for the read loop to end, so it must not run inside it).

An order's packet goes straight onto the Engine.IO client's WebSocket (`eio.ws`, aiohttp's): the
client's own `send` only queues it for a writer task, which runs after whatever the caller does
next, and that left an order's frame about a millisecond late.
tests/test_library_adapters.py fails, naming the installed version, when any of these hooks changes.
"""

from __future__ import annotations

from typing import Callable

import engineio
import socketio

from core.framing import EIO_MESSAGE

EVENT_PACKET_TYPES = "2356"  # event, ack, binary event, binary ack
HOOK = "_handle_eio_message"
WEBSOCKET = "ws"  # python-engineio's AsyncClient keeps its aiohttp WebSocket here
ENGINEIO_HOOK = "_trigger_event"


def is_event_packet(data: str | bytes) -> bool:
    """Event or ack packets (or a binary attachment of one): what the feed is made of."""
    return isinstance(data, (bytes, bytearray)) or bool(data and data[0] in EVENT_PACKET_TYPES)


class InlineEngineIO(engineio.AsyncClient):
    """An Engine.IO client that hands event and ack packets to its message handler in the read loop."""

    async def _trigger_event(self, event, *args, **kwargs):  # noqa: ANN001 - python-engineio's signature
        if event == "message" and args and is_event_packet(args[0]) and event in self.handlers:
            return await self.handlers[event](args[0])
        return await super()._trigger_event(event, *args, **kwargs)


class FrameTap(socketio.AsyncClient):
    """A client whose event and ack packets go to `on_message`, undecoded, instead of python-socketio's."""

    def __init__(self, on_message: Callable[[str | bytes], None], **kwargs) -> None:
        # No SIGINT handling of its own: python-socketio would replace the daemon's handler and
        # turn Ctrl-C into a cancelled main task instead of a clean shutdown.
        super().__init__(reconnection=False, handle_sigint=False, **kwargs)
        self._on_message = on_message

    def _engineio_client_class(self):
        return InlineEngineIO

    async def _handle_eio_message(self, data):  # noqa: ANN001 - python-socketio's signature
        if is_event_packet(data):
            self._on_message(data)
            return
        await super()._handle_eio_message(data)

    async def send_now(self, packet: str) -> None:
        """One Socket.IO packet text (`2<ackId>[...]`), handed to the socket before this returns;
        `ConnectionError` (nothing sent) when the WebSocket is not up."""
        eio = self.eio
        ws = getattr(eio, WEBSOCKET, None)
        if eio.state != "connected" or eio.current_transport != "websocket" or ws is None or ws.closed:
            raise ConnectionError("the Engine.IO WebSocket is not open")
        await ws.send_str(EIO_MESSAGE + packet)
