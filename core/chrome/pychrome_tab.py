"""The one place Vectra reaches into pychrome's internals: how a `Tab` opens its socket and how its
end shows.

pychrome opens its DevTools socket with websocket-client's default UTF-8 validation, a pure Python
loop over every byte of every message (about 2 ms per 7 KB tick frame), which left the browser feed
seconds behind at a few hundred frames per second; `json.loads` rejects bad UTF-8 anyway, so it is
skipped here. pychrome also reads a socket closed by a dying browser as an empty message and lets
the `JSONDecodeError` kill its thread with a traceback; that thread ending is pychrome's only sign of
a lost session (its status stays "started"), so it is watched (`receiving`) and the traceback, only
noise, is dropped. The private names used here (`_started`, `_stopped`, `_ws`, `_websocket_url`,
`_recv_th`, `_handle_event_th`, `_recv_loop`) are checked by tests/test_library_adapters.py, which
fails naming the installed pychrome version when they change.
"""

from __future__ import annotations

import pychrome
import websocket

PRIVATE_ATTRIBUTES = ("_started", "_stopped", "_ws", "_websocket_url", "_recv_th", "_handle_event_th")
PRIVATE_METHODS = ("_recv_loop",)


class QuietTab(pychrome.Tab):
    """A pychrome `Tab` that keeps up with a fast feed and ends quietly when the browser goes away."""

    connect_timeout: float = 5.0

    def start(self) -> bool:
        if self._started:
            return False
        self._started = True
        self.status = self.status_started
        self._stopped.clear()
        self._ws = websocket.create_connection(
            self._websocket_url,
            enable_multithread=True,
            suppress_origin=True,
            skip_utf8_validation=True,
            timeout=self.connect_timeout,
        )
        self._recv_th.start()
        self._handle_event_th.start()
        return True

    @property
    def receiving(self) -> bool:
        """The DevTools session is still read (pychrome's receive thread has not ended)."""
        return self._recv_th.is_alive()

    def _recv_loop(self) -> None:
        try:
            super()._recv_loop()
        except ValueError:
            self._stopped.set()
