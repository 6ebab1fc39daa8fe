"""The live log: every recorded event handed to the kernel while it is being published.

The writer thread's log (`wal.py`) trails the live stream by up to one poll (50 ms) and, in a burst,
by a whole batch; a process killed in that window took with it events that subscribers already had,
since the transports send during `publish()`. So `Recorder.deliver()`, which the bus calls before any
transport, also appends the envelope's JSON (serialized once, shared with the transports) to a file
opened `O_APPEND`: one `writev()` per event, into the page cache, which survives SIGKILL. There is no
fsync here: the thread's log stays the copy fsynced every `record_flush_s`, for a power cut.

One syscall per event, not one per loop iteration (`call_soon`): a batch would be written after the
transports had sent the burst, so a kill in between would lose exactly the events this log is for.
The price (`bench/bench_recorder.py`, `deliver()` on versus off; 2-core VM under load): ~12 µs per
event, and the p99 cost of publishing a frame rose by ~0.07 ms, because `writev()` copies into the
page cache and releases the GIL, so the writer thread may run in between. A shared memory map of the
file (no syscall, GIL kept) measured ~8 µs per 5 KB line here (first-touch page faults) and needs each
4 MB file allocated and written through beforehand (~15 ms, on the loop or handed over by the thread):
not worth its complexity.

A file is closed ("retired") after `ROTATE_BYTES` or `MAX_AGE_S`, whichever comes first, and when
recording stops; the writer thread deletes it once its own log or a closed Parquet file holds every
event in it (within a poll), well before the kernel writes dirty pages back (30 s by default), so this
second copy costs memory bandwidth rather than disk. A write that
fails (disk full, a file in the way) retires the file, is logged once, and is tried again after
`retry_s` with a new file, whose name carries the first event missed. Meanwhile the events are where
they were before this log existed (memory, then the thread's log); if a kill takes some of them, the
next run finds the range in that name (or after the newest event of the logs) and declares what no
file holds on `recording.gap`.
"""

from __future__ import annotations

import asyncio
import logging
import os
from pathlib import Path
from typing import Callable

from core.contracts.envelope import Envelope
from core.contracts.recordings import live_log_path, stem_for

log = logging.getLogger(__name__)

ROTATE_BYTES = 4 * 1024 * 1024
MAX_AGE_S = 5.0
NEWLINE = b"\n"
FLAGS = os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_CLOEXEC

Retire = Callable[[Path, int], None]  # a finished file and the highest `seq` it may hold


class LiveLog:
    def __init__(self, root: Path, retry_s: float, retire: Retire) -> None:
        self.root = root
        self.retry_s = retry_s
        self._retire = retire
        self._fd: int | None = None
        self._path: Path | None = None
        self._bytes = 0
        self._last_seq = 0
        self._paused = False
        self._missed_from: int | None = None  # the first event not written since the last failure
        self.error: str | None = None

    def write(self, envelope: Envelope) -> None:
        fd = self._fd
        if fd is None:
            if self._paused:
                return
            fd = self._open(envelope)
            if fd is None:
                return
        data = envelope.to_json()
        self._last_seq = envelope.seq
        try:
            written = os.writev(fd, (data, NEWLINE))
        except OSError as exc:
            self._fail(exc, envelope.seq)
            return
        if written != len(data) + 1:
            self._fail(OSError(f"wrote {written} of {len(data) + 1} bytes"), envelope.seq)
            return
        self._bytes += written
        if self._bytes >= ROTATE_BYTES:
            self.close()

    def close(self) -> None:
        """Retire the current file (recording stops, or the file is full or old enough)."""
        self._missed_from = None  # what was missed before recording stopped is the writer's to keep
        fd, path = self._fd, self._path
        if fd is None:
            return
        self._fd = self._path = None
        self._bytes = 0
        try:
            os.close(fd)
        finally:
            self._retire(path, self._last_seq)

    def _discard(self) -> None:
        fd, path = self._fd, self._path
        self._fd = self._path = None
        os.close(fd)
        path.unlink(missing_ok=True)

    def _open(self, first: Envelope) -> int | None:
        path = live_log_path(self.root, stem_for(first.seq, first.timestamp), self._missed_from)
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            self._fd = os.open(path, FLAGS, 0o644)
        except OSError as exc:
            self._fail(exc, first.seq)
            return None
        self._path = path
        self._missed_from = None
        asyncio.get_running_loop().call_later(MAX_AGE_S, self._expire, path)
        if self.error is not None:
            log.warning("live log works again (was: %s)", self.error)
            self.error = None
        return self._fd

    def _expire(self, path: Path) -> None:
        if self._path == path:
            self.close()

    def _fail(self, exc: OSError, seq: int) -> None:
        reason = f"{type(exc).__name__}: {exc}"
        if reason != self.error:
            log.error("live log failed: %s; events wait in memory for the writer thread (retrying every %.0f s)",
                      reason, self.retry_s)
        self.error = reason
        missed_from = self._missed_from
        try:
            if self._fd is not None and self._bytes == 0:
                self._discard()  # nothing in it (a torn line at most): retrying must not pile up files
            else:
                self.close()
        except OSError:
            pass
        self._missed_from = missed_from if missed_from is not None else seq
        self._paused = True
        asyncio.get_running_loop().call_later(self.retry_s, self._resume)

    def _resume(self) -> None:
        self._paused = False
