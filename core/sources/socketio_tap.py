"""The one place Vectra reaches into python-socketio's internals: the Engine.IO message hook.

python-socketio decodes every packet itself and drops a malformed one with a log line; a feed
handler must report it instead, so event and ack packets are taken from the Engine.IO layer before
python-socketio sees them (`AsyncClient._handle_eio_message`, a private coroutine). Only the
connection handshake (connect, disconnect, connect error) stays with python-socketio.
tests/test_library_adapters.py fails, naming the installed version, when that hook changes.
"""

from __future__ import annotations

from typing import Callable

import socketio

EVENT_PACKET_TYPES = "2356"  # event, ack, binary event, binary ack
HOOK = "_handle_eio_message"


class FrameTap(socketio.AsyncClient):
    """A client whose event and ack packets go to `on_message`, undecoded, instead of python-socketio's."""

    def __init__(self, on_message: Callable[[str | bytes], None], **kwargs) -> None:
        # No SIGINT handling of its own: python-socketio would replace the daemon's handler and
        # turn Ctrl-C into a cancelled main task instead of a clean shutdown.
        super().__init__(reconnection=False, handle_sigint=False, **kwargs)
        self._on_message = on_message

    async def _handle_eio_message(self, data):  # noqa: ANN001 - python-socketio's signature
        if isinstance(data, (bytes, bytearray)) or (data and data[0] in EVENT_PACKET_TYPES):
            self._on_message(data)
            return
        await super()._handle_eio_message(data)
