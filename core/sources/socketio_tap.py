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
object, unchanged) with a namespace in which `asyncio.wait_for` is a `ReadDeadline`'s: the read runs
in the read loop's task, the same deadline raises the same `TimeoutError`, and one timer serves every
read of the connection.

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
READ_LOOP = "_read_loop_websocket"  # python-engineio's WebSocket read loop, run with a `ReadDeadline`
LIBRARY_READ_LOOP = getattr(engineio.AsyncClient, READ_LOOP)

T = TypeVar("T")


def is_event_packet(data: str | bytes) -> bool:
    """Event or ack packets (or a binary attachment of one): what the feed is made of."""
    return isinstance(data, (bytes, bytearray)) or bool(data and data[0] in EVENT_PACKET_TYPES)


class ReadDeadline:
    """python-engineio's silence timeout, `asyncio.wait_for(ws.receive(), timeout)`, with one timer
    per read loop instead of a task, a timer and a future per read.

    A read only notes its deadline; the timer, when it fires, looks at the read in progress: past its
    deadline, it cancels the reading task and the read raises `TimeoutError` (as `asyncio.timeout`
    does); not yet, it moves to that deadline; between reads, the next read starts it again. At 1,000
    frames/s that is one timer per ping interval + ping timeout instead of a thousand a second.
    """

    def __init__(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._task: asyncio.Task | None = None
        self._timer: asyncio.TimerHandle | None = None
        self._due: float | None = None  # the deadline of the read in progress; None between reads
        self._expired = False

    async def wait_for(self, awaitable: Awaitable[T], timeout: float) -> T:
        self._due = self._loop.time() + timeout
        if self._timer is None:
            self._task = asyncio.current_task()
            self._timer = self._loop.call_at(self._due, self._check)
        try:
            return await awaitable
        except asyncio.CancelledError:
            if not self._expired:
                raise
            self._expired = False
            if self._task.uncancel() > 0:
                raise  # cancelled from outside as well: that wins
            raise TimeoutError from None
        finally:
            self._due = None

    def _check(self) -> None:
        self._timer = None
        if self._due is None:
            return
        if self._loop.time() >= self._due:
            self._expired = True
            self._task.cancel()
        else:
            self._timer = self._loop.call_at(self._due, self._check)

    def close(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None


def with_wait_for(function: types.FunctionType, wait_for: Callable) -> types.FunctionType:
    """The same function (its code object, unchanged) seeing `wait_for` as `asyncio.wait_for`."""
    namespace = {**function.__globals__, "asyncio": types.SimpleNamespace(**{**vars(asyncio), "wait_for": wait_for})}
    return types.FunctionType(function.__code__, namespace, function.__name__, function.__defaults__, function.__closure__)


class InlineEngineIO(engineio.AsyncClient):
    """An Engine.IO client that hands event and ack packets to its message handler in the read loop,
    and reads its WebSocket without a task per message."""

    async def _read_loop_websocket(self) -> None:
        deadline = ReadDeadline()
        try:
            await with_wait_for(LIBRARY_READ_LOOP, deadline.wait_for)(self)
        finally:
            deadline.close()

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
