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

python-engineio also reads every WebSocket message through `asyncio.wait_for(ws.receive(), timeout)`
(the silence timeout: no packet for ping interval + ping timeout means the server stopped
communicating, and the client aborts). On Python 3.11 that creates a task, a timer and a waiter
future per read, so per feed frame. `InlineEngineIO` runs the library's own read loop (its code
object, unchanged) with a namespace in which `asyncio.wait_for` is the one Python 3.12 has: the read
runs in the read loop's task under an `asyncio.timeout`, the same deadline and the same
`TimeoutError`, without the task or the future.

An order's packet goes straight onto the Engine.IO client's WebSocket (`eio.ws`, aiohttp's): the
client's own `send` only queues it for a writer task, which runs after whatever the caller does
next, and that left an order's frame about a millisecond late.
tests/test_library_adapters.py fails, naming the installed version, when any of these hooks changes.
"""

from __future__ import annotations

import asyncio
import types
from typing import Awaitable, Callable, TypeVar

import engineio
import socketio

from core.framing import EIO_MESSAGE

EVENT_PACKET_TYPES = "2356"  # event, ack, binary event, binary ack
HOOK = "_handle_eio_message"
WEBSOCKET = "ws"  # python-engineio's AsyncClient keeps its aiohttp WebSocket here
ENGINEIO_HOOK = "_trigger_event"
READ_LOOP = "_read_loop_websocket"  # python-engineio's WebSocket read loop, run with `wait_for_in_place`

T = TypeVar("T")


def is_event_packet(data: str | bytes) -> bool:
    """Event or ack packets (or a binary attachment of one): what the feed is made of."""
    return isinstance(data, (bytes, bytearray)) or bool(data and data[0] in EVENT_PACKET_TYPES)


async def wait_for_in_place(awaitable: Awaitable[T], timeout: float | None) -> T:
    """`asyncio.wait_for` as Python 3.12 has it: the awaitable runs in the caller's task under a
    deadline (TimeoutError when it passes), where 3.11's runs it in a task of its own."""
    async with asyncio.timeout(timeout):
        return await awaitable


def with_wait_for_in_place(function: types.FunctionType) -> types.FunctionType:
    """The same function (its code object, unchanged) seeing `wait_for_in_place` as `asyncio.wait_for`."""
    in_place = types.SimpleNamespace(**{**vars(asyncio), "wait_for": wait_for_in_place})
    namespace = {**function.__globals__, "asyncio": in_place}
    return types.FunctionType(function.__code__, namespace, function.__name__, function.__defaults__, function.__closure__)


class InlineEngineIO(engineio.AsyncClient):
    """An Engine.IO client that hands event and ack packets to its message handler in the read loop,
    and reads its WebSocket without a task per message."""

    _read_loop_websocket = with_wait_for_in_place(engineio.AsyncClient._read_loop_websocket)

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
