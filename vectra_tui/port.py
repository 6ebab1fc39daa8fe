"""The one interface between the console and whatever it watches.

The app sees only this: a snapshot to draw, commands to send, and a life cycle. The foundation
running in-process, a daemon reached over its WebSocket, and the fake used by tests all implement
it, so the console cannot come to depend on the core's internals.
"""

from __future__ import annotations

from typing import Any, Protocol

from vectra_tui.view import ConsoleSnapshot


class FoundationPort(Protocol):
    async def start(self) -> None:
        """Begin watching (and, in-process, running) the foundation; returns promptly."""

    async def stop(self) -> None:
        """Shut down cleanly: in-process this stops the foundation and flushes the recorder."""

    def snapshot(self) -> ConsoleSnapshot:
        """Everything the panels show, now; cheap enough to call 10-15 times a second."""

    async def command(self, action: str, **params: Any) -> dict[str, Any]:
        """An operator verb (`record`, `reconnect`, `chrome`); the reply, or `{"type": "error", ...}`."""
