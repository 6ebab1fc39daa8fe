"""The recorder's writer thread: the only code that touches recording files.

The event loop only appends to a deque; this thread drains it every `POLL_S`, appends to the log,
hands row groups to the Parquet worker process (`parquet_worker.py`), rotates files and recovers from
errors. Nothing is taken off its hands before it
is safe: an envelope stays in `_pending` until it is in the log, and in `_unsynced` until the log is
fsynced (or its Parquet file is closed). Any error abandons the segment; the retry then runs the
same recovery as a restart after a crash and carries on with what is still pending.

The live logs the event loop writes (`live_log.py`) are retired to this thread, which deletes each once
its own log or a closed file holds every event in it (`_logged_upto`), never earlier.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from pathlib import Path
from typing import Callable

from core.config import Settings
from core.contracts.envelope import Envelope
from core.recorder.parquet_worker import ParquetWorker
from core.recorder.recovery import Recovered, recover
from core.recorder.segment import HOUR_MS, Segment

log = logging.getLogger(__name__)

POLL_S = 0.05
BATCH = 5000


class Marker:
    def __init__(self, name: str) -> None:
        self.name = name

    def __repr__(self) -> str:
        return f"<{self.name}>"


CLOSE = Marker("close")  # recording switched off: finish the current file
STOP = Marker("stop")  # the service stops: finish the current file and end the thread

Item = Envelope | Marker


def describe(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}"


class RecordingWriter(threading.Thread):
    def __init__(
        self,
        root: Path,
        settings: Settings,
        queue: deque[Item],
        changed: Callable[[], None],
        *,
        live_before: int | None = None,
    ) -> None:
        """`live_before`: live logs starting before this `seq` are an earlier run's (None: all are)."""
        super().__init__(name="recorder-writer", daemon=True)
        self.root = root
        self.live_before = live_before
        self.recovered: Recovered | None = None  # what the first recovery found (set once)
        self.queue = queue
        self.changed = changed
        self.flush_s = settings.record_flush_s
        self.rotate_bytes = int(settings.record_rotate_mb * 1024 * 1024)
        self.retry_s = settings.record_retry_s
        self.wake = threading.Event()
        self.segment: Segment | None = None
        self.error: str | None = None
        self.rows_total = 0
        self.bytes_closed = 0
        self.last_file: Path | None = None
        self._pending: deque[Item] = deque()
        self._unsynced: list[Envelope] = []
        self._needs_recovery = True
        self._recorded_upto = 0
        self._logged_upto = 0  # every event up to here is in this thread's log or a closed file
        self._retired: deque[tuple[Path, int]] = deque()
        self._failed_at = 0.0
        self._last_sync = time.monotonic()
        self._stopping = False
        self._parquet = ParquetWorker()  # builds and writes the Parquet files, off this interpreter

    # --- read from the loop (plain attribute reads; a moment stale at worst) -------------------

    @property
    def backlog(self) -> int:
        return len(self.queue) + len(self._pending) + len(self._unsynced)

    @property
    def current_path(self) -> Path | None:
        segment = self.segment
        return segment.paths.final if segment is not None else self.last_file

    @property
    def bytes_total(self) -> int:
        segment = self.segment
        return self.bytes_closed + (segment.parquet.bytes if segment is not None else 0)

    @property
    def wal_bytes(self) -> int:
        """The open file's write-ahead log: its rows are on disk long before Parquet writes them."""
        segment = self.segment
        return segment.wal.bytes if segment is not None else 0

    def in_flight(self) -> list[Envelope]:
        """Envelopes accepted but maybe not yet readable in the log, in `seq` order.

        Copied against the direction they move (queue, then pending, then unsynced), so one that
        moves meanwhile is seen at least once; `list()` of a deque copies without releasing the GIL.
        """
        items = [*list(self.queue), *list(self._pending), *list(self._unsynced)]
        unique = {item.seq: item for item in items if isinstance(item, Envelope)}
        return [unique[seq] for seq in sorted(unique)]

    def retire(self, path: Path, last_seq: int) -> None:
        """A live log the loop has finished with (called on the loop)."""
        self._retired.append((path, last_seq))

    def stop(self) -> None:
        self._stopping = True
        self.queue.append(STOP)
        self.wake.set()

    # --- the thread ------------------------------------------------------------------------------

    def run(self) -> None:
        try:
            self._run()
        finally:
            self._parquet.close()

    def _run(self) -> None:
        while True:
            self.wake.wait(POLL_S)
            self.wake.clear()
            if self.error is not None and not self._stopping and time.monotonic() - self._failed_at < self.retry_s:
                continue
            try:
                if self._needs_recovery:
                    self._recover()
                if self._write_pending():
                    return
                self._sync_if_due()
            except Exception as exc:
                self._fail(exc)
                if self._stopping:
                    log.error("recorder stopped with an error; %d events not recorded", self.backlog)
                    return

    def _recover(self) -> None:
        recovered = recover(self.root, self.live_before, self._parquet.open)
        self._recorded_upto = max(self._recorded_upto, recovered.highest)
        self._needs_recovery = False
        if self.recovered is None:
            self.recovered = recovered
            self.changed()
        if self.error is not None:
            log.warning("recording works again (was: %s)", self.error)
            self.error = None
            self.changed()

    def _write_pending(self) -> bool:
        """Write everything queued; True once the STOP marker is done."""
        while True:
            if not self._pending:
                self._take()
                if not self._pending:
                    return False
            pending = self._pending
            upto = self._logged_upto
            while pending:
                item = pending[0]
                if isinstance(item, Marker):
                    self._close_segment()
                    pending.popleft()
                    self._forget_live_logs(upto)
                    if item is STOP:
                        return True
                    continue
                if item.seq > self._recorded_upto:
                    self._add(item)
                    self._unsynced.append(item)
                upto = item.seq
                pending.popleft()
            if self.segment is not None:
                self.segment.wal.flush()
            self._forget_live_logs(upto)
            self._sync_if_due()  # also while the queue never runs dry

    def _forget_live_logs(self, logged_upto: int) -> None:
        """Delete the retired live logs whose every event is now in this thread's log or a closed file."""
        self._logged_upto = logged_upto
        retired = self._retired
        while retired and retired[0][1] <= logged_upto:
            retired.popleft()[0].unlink(missing_ok=True)

    def _take(self) -> None:
        queue, pending = self.queue, self._pending
        for _ in range(min(BATCH, len(queue))):
            pending.append(queue.popleft())

    def _add(self, envelope: Envelope) -> None:
        segment = self.segment
        if (
            segment is None
            or envelope.timestamp // HOUR_MS != segment.hour
            or segment.parquet.bytes >= self.rotate_bytes
        ):
            self._close_segment()
            segment = self.segment = Segment(self.root, envelope, self._parquet.open)
            self.changed()
        segment.add(envelope)
        self.rows_total += 1

    def _close_segment(self) -> None:
        segment = self.segment
        if segment is None:
            return
        self.last_file = segment.close()
        self.bytes_closed += segment.parquet.bytes
        self.segment = None
        self._unsynced.clear()
        self.changed()

    def _sync_if_due(self) -> None:
        now = time.monotonic()
        if now - self._last_sync < self.flush_s:
            return
        self._last_sync = now
        if self.segment is not None:
            self.segment.wal.sync()
        self._unsynced.clear()

    def _fail(self, exc: Exception) -> None:
        reason = describe(exc)
        if reason != self.error:
            log.error("recording failed: %s (retrying every %.0f s)", reason, self.retry_s)
        if self.segment is not None:
            self.segment.abandon()
            self.segment = None
        self._pending.extendleft(reversed(self._unsynced))
        self.rows_total -= len(self._unsynced)
        self._unsynced = []
        self._needs_recovery = True
        self._failed_at = time.monotonic()
        self.error = reason
        self.changed()
