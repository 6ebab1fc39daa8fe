"""The console's port onto a foundation running in this process (`vectra` with no arguments)."""

from __future__ import annotations

import time
from typing import Any

from core.assembly import build_foundation
from core.broadcast.requests import Requests
from core.config import Settings
from core.contracts.envelope import Envelope, now_ms
from core.contracts.requests import RequestError
from core.foundation import Foundation
from core.runtime import freeze_startup_heap
from vectra_tui.digest import EventDigest
from vectra_tui.health_view import console_snapshot
from vectra_tui.view import ConsoleSnapshot


class EmbeddedFoundation:
    def __init__(self, settings: Settings, foundation: Foundation | None = None) -> None:
        self.foundation = foundation if foundation is not None else build_foundation(settings)
        self.digest = EventDigest(time.monotonic)
        self._requests = Requests(self.foundation)
        self._running = False

    async def start(self) -> None:
        self.foundation.bus.subscribe(self)
        self._running = True  # even a start that fails half-way must be stopped (what did start)
        await self.foundation.start()
        freeze_startup_heap()

    async def stop(self) -> None:
        """Idempotent: the quit key and the app's shutdown both call it."""
        if not self._running:
            return
        self._running = False
        self.foundation.bus.unsubscribe(self)
        await self.foundation.stop()

    def deliver(self, envelope: Envelope) -> None:
        self.digest.deliver(envelope)

    def snapshot(self) -> ConsoleSnapshot:
        return console_snapshot(
            self.foundation.health(),
            self.digest,
            mode="embedded",
            taken_at_ms=now_ms(),
            recorder_available="record" in self.foundation.commands,
        )

    async def command(self, action: str, **params: Any) -> dict[str, Any]:
        try:
            request = self._requests.validate({"action": action, **params})
        except RequestError as exc:
            return exc.reply()
        return await self._requests.handle(request, authorized=True)
