"""The recorder as the core sees it: a subscriber that never drops, a switch, and a status.

`deliver()` runs on the event loop for every envelope, so it only appends to a deque; the writer
thread does the rest. Recording state is the recorder's own, so feed reconnects cannot touch it.
An "on" period is bracketed by its two `recording.status` events, both of which are recorded.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from typing import Any

from core.contracts.envelope import Envelope, now_ms
from core.contracts.health import RecordingHealth
from core.contracts.requests import Record, RecordStatus
from core.foundation import Foundation
from core.recorder.history import RecordingHistory
from core.contracts.recordings import recordings_dir
from core.recorder.writer import CLOSE, Item, RecordingWriter

log = logging.getLogger(__name__)

STATUS_CHANNEL = "recording.status"
WATCH_S = 0.5
STOP_WAIT_S = 3.5


class Recorder:
    name = "recorder"

    def __init__(self, foundation: Foundation) -> None:
        settings = foundation.settings
        self.bus = foundation.bus
        self.source = foundation.primary_source
        self.root = recordings_dir(settings.data_dir)
        self.soft_limit = settings.record_buffer_events
        self.hard_limit = settings.record_buffer_cap
        self.on = False
        self.since: int | None = None
        self._start_on = settings.record
        self._queue: deque[Item] = deque()
        self._writer = RecordingWriter(self.root, settings, self._queue, self._writer_changed)
        self.history = RecordingHistory(self.root, self._writer.in_flight)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._watch_task: asyncio.Task | None = None
        self._published: tuple | None = None
        self._announced = False
        self._reported_error: str | None = None
        self._behind_flagged = False
        self._dropped: list[int] = []  # [count, first seq, last seq] of events lost to a full buffer
        self._base_rows = 0
        self._base_bytes = 0
        foundation.add_command("record", self._record_command)
        foundation.add_command("record_status", self._status_command)

    # --- life cycle ------------------------------------------------------------------------------

    async def start(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._writer.start()
        if self._start_on:
            self._turn_on()
            self._queue.extend(self.bus.ring.since(0))  # what this run published before (`sys.start`)
        self._loop.call_soon(self._announce)

    def _announce(self) -> None:
        """`sys.start` is the first event of every run: the recorder speaks only after it."""
        if "sys.start" not in self.bus.last_by_type:
            self._loop.call_later(0.01, self._announce)
            return
        self._announced = True
        self.refresh()
        self._watch_task = asyncio.create_task(self._watch(), name="recorder-watch")

    async def stop(self) -> None:
        if self._watch_task is not None:
            self._watch_task.cancel()
        if self.on:
            self.switch(False)  # the closing status of the period is recorded too
        self._announced = False  # the recorder says nothing more in this run
        if self._writer.is_alive():
            self._writer.stop()
            await asyncio.to_thread(self._writer.join, STOP_WAIT_S)

    # --- the live path ---------------------------------------------------------------------------

    def deliver(self, envelope: Envelope) -> None:
        if not self.on:
            return
        queue = self._queue
        if len(queue) >= self.hard_limit:
            self._drop(envelope)
            return
        queue.append(envelope)
        if len(queue) > self.soft_limit and not self._behind_flagged:
            self._behind_flagged = True
            self._loop.call_soon(self.refresh)

    def _drop(self, envelope: Envelope) -> None:
        if not self._dropped:
            self._dropped = [0, envelope.seq, envelope.seq]
            self._loop.call_soon(self.refresh)
        self._dropped[0] += 1
        self._dropped[2] = envelope.seq

    # --- the switch ------------------------------------------------------------------------------

    def switch(self, on: bool) -> dict[str, Any]:
        """Turn recording on or off; the announcing status event belongs to the recorded period."""
        if on == self.on:
            return self.status()
        if on:
            self._turn_on()
            self.refresh()
            return self.status()
        final = self.status(on=False)
        self._publish(final)
        self.on = False
        self._queue.append(CLOSE)
        self._writer.wake.set()
        return final

    def _turn_on(self) -> None:
        self.on = True
        self.since = now_ms()
        self._base_rows, self._base_bytes = self._writer.rows_total, self._writer.bytes_total
        self._dropped = []

    async def _record_command(self, request: Record) -> dict[str, Any]:
        return {"type": STATUS_CHANNEL, "data": self.switch(request.on)}

    async def _status_command(self, request: RecordStatus) -> dict[str, Any]:
        return {"type": STATUS_CHANNEL, "data": self.status()}

    # --- status ----------------------------------------------------------------------------------

    def status(self, *, on: bool | None = None) -> dict[str, Any]:
        on = self.on if on is None else on
        writer = self._writer
        backlog = writer.backlog
        reasons = []
        if writer.error is not None:
            reasons.append(writer.error)
        if self._dropped:
            count, first, last = self._dropped
            reasons.append(
                f"buffer full ({self.hard_limit} events): {count} events, seq {first}..{last}, not recorded"
            )
        if backlog > self.soft_limit:
            reasons.append(f"writer behind: more than {self.soft_limit} events buffered")
        if not on:
            state = "stopped"
        elif writer.error is not None or len(self._queue) >= self.hard_limit:
            state = "failed"
        elif backlog > self.soft_limit:
            state = "behind"
        else:
            state = "recording"
        path = writer.current_path
        return {
            "on": on,
            "state": state,
            "path": str(path if path is not None else self.root),
            "rows": writer.rows_total - self._base_rows,
            "bytes": writer.bytes_total - self._base_bytes,
            "wal_bytes": writer.wal_bytes,
            "since": self.since,
            "reason": "; ".join(reasons) or None,
            "buffered": backlog,
        }

    def health(self) -> RecordingHealth:
        return RecordingHealth(**self.status())

    def refresh(self) -> None:
        """Publish the status if anything an operator cares about changed (and a new error once)."""
        if not self._announced:
            return
        if len(self._queue) <= self.soft_limit:
            self._behind_flagged = False
        error = self._writer.error
        if error is not None and error != self._reported_error and self.on:
            self.bus.publish(
                "error",
                {"code": "record_failed", "message": f"recording failed: {error}", "raw": None},
                source=self.source,
            )
        self._reported_error = error
        status = self.status()
        key = (status["on"], status["state"], status["path"], status["reason"])
        if key != self._published:
            self._publish(status)

    def _publish(self, status: dict[str, Any]) -> None:
        self._published = (status["on"], status["state"], status["path"], status["reason"])
        self.bus.publish(STATUS_CHANNEL, status, source=self.source)

    def _writer_changed(self) -> None:
        """Called on the writer thread."""
        loop = self._loop
        if loop is not None and not loop.is_closed():
            try:
                loop.call_soon_threadsafe(self.refresh)
            except RuntimeError:
                pass

    async def _watch(self) -> None:
        while True:
            await asyncio.sleep(WATCH_S)
            self.refresh()
