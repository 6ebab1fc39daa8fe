"""The recorder as the core sees it: a subscriber that never drops, a switch, and a status.

`deliver()` runs on the event loop for every envelope, before the transports, so it only appends it
to the live log (one write into the page cache: what subscribers are about to see survives a kill,
`live_log.py`) and to a deque; the writer thread does the rest. What an earlier run could not keep is
declared once on `recording.gap`. Recording state is the recorder's own, so feed reconnects cannot
touch it.
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
from core.supervisor import ChangeGate
from core.recorder.live_log import LiveLog
from core.contracts.recordings import recordings_dir
from core.recorder.writer import CLOSE, Item, RecordingWriter

log = logging.getLogger(__name__)

STATUS_CHANNEL = "recording.status"
GAP_CHANNEL = "recording.gap"
LOST_REASON = "in no log when an earlier run ended (killed, or its disk refused the writes)"
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
        self._previous_last_seq = foundation.seqstore.resume.previous_last_seq
        self._writer = RecordingWriter(
            self.root, settings, self._queue, self._writer_changed, live_before=self._previous_last_seq + 1
        )
        self._live = LiveLog(self.root, settings.record_retry_s, self._writer.retire)
        self._losses_declared = False
        self.history = RecordingHistory(self.root, self._writer.in_flight)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._watch_task: asyncio.Task | None = None
        self._shown = ChangeGate()  # `recording.status` goes out once per change
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
            for envelope in self.bus.ring.since(0):  # what this run published before (`sys.start`)
                self.deliver(envelope)
        self._loop.call_soon(self._announce)

    def _announce(self) -> None:
        """`sys.start` is the first event of every run: the recorder speaks only after it."""
        if not self.bus.started:
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
        self._live.write(envelope)
        queue.append(envelope.compact())  # held for a second or more: its JSON only, no object graph
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
        self._publish(final, always=True)
        self.on = False
        self._live.close()
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
        self._declare_losses()
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
        self._publish(self.status())

    def _declare_losses(self) -> None:
        """Once per run, after the first recovery: earlier events that are in no recording.

        Holes the live log named are one kind; the other is the tail: the logs the previous run left
        end with its newest recorded event, and unless that is the status that switched recording off,
        every later `seq` it published (`sys.start.previous_last_seq`) went with it.
        """
        recovered = self._writer.recovered
        if recovered is None or self._losses_declared:
            return
        self._losses_declared = True
        lost = list(recovered.holes)
        newest, last = recovered.newest, self._previous_last_seq
        switched_off = newest is not None and newest.type == STATUS_CHANNEL and newest.data.get("on") is False
        if newest is not None and newest.seq < last and not switched_off:
            lost.append((newest.seq + 1, last))
        for first, final in lost:
            log.error("events %d..%d of an earlier run are in no recording", first, final)
            self.bus.publish(GAP_CHANNEL, {"from": first, "to": final, "reason": LOST_REASON}, source=self.source)

    def _publish(self, status: dict[str, Any], *, always: bool = False) -> None:
        changed = self._shown.changed((status["on"], status["state"], status["path"], status["reason"]))
        if changed or always:
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
