"""One segment of a recording: a write-ahead log and the Parquet file it becomes.

Rows reach Parquet in row groups of `ROW_GROUP_ROWS` (one row at a time is two orders of magnitude
slower), into `*.parquet.partial`; only a closed, fsynced file gets its final name, so a reader never
sees an unfinished one. The log is deleted only after that, so every moment has one complete copy.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Callable

from core.contracts.envelope import Envelope
from core.contracts.recordings import SegmentPaths, stem_for
from core.recorder.parquet_worker import ParquetFile, RowFile
from core.recorder.wal import WalWriter

ROW_GROUP_ROWS = 1000
HOUR_MS = 3_600_000

OpenRows = Callable[[Path], RowFile]  # opens the partial file: here (`ParquetFile`) or in the worker


class ParquetSink:
    """Parquet rows in batches, to the partial file; `close()` publishes the file under its name.

    The rows are the envelopes' JSON lines; `open_rows` decides where they become columns (the
    recorder's worker process, `parquet_worker.py`; by default here)."""

    def __init__(self, paths: SegmentPaths, open_rows: OpenRows = ParquetFile) -> None:
        self.paths = paths
        paths.partial.parent.mkdir(parents=True, exist_ok=True)
        self._file = open_rows(paths.partial)
        self._rows: list[bytes] = []
        self.bytes = 0

    def add(self, envelope: Envelope) -> bool:
        """Buffer one row; True when a full row group is waiting for `write_rows()`."""
        self._rows.append(envelope.to_json())
        return len(self._rows) >= ROW_GROUP_ROWS

    def write_rows(self) -> None:
        if self._rows:
            rows, self._rows = self._rows, []
            self.bytes = self._file.write(rows)

    def close(self) -> Path:
        self.write_rows()
        self.bytes = self._file.finish()
        os.replace(self.paths.partial, self.paths.final)
        fsync_dir(self.paths.final.parent)
        return self.paths.final

    def abandon(self) -> None:
        """Let go after an error; the partial file stays for recovery to delete."""
        self._file.abandon()


class Segment:
    def __init__(self, root: Path, first: Envelope, open_rows: OpenRows = ParquetFile) -> None:
        self.paths = SegmentPaths(stem_for(first.seq, first.timestamp), root)
        self.hour = first.timestamp // HOUR_MS
        self.wal = WalWriter(self.paths.wal)
        try:
            self.parquet = ParquetSink(self.paths, open_rows)
        except Exception:
            self.wal.abandon()
            raise

    def add(self, envelope: Envelope) -> None:
        self.wal.append(envelope)
        if self.parquet.add(envelope):
            self.wal.flush()  # the log leads: Parquet never holds a row the log could lose
            self.parquet.write_rows()

    def close(self) -> Path:
        final = self.parquet.close()
        self.wal.close()
        self.paths.wal.unlink()
        fsync_dir(self.paths.wal.parent)
        return final

    def abandon(self) -> None:
        self.wal.abandon()
        self.parquet.abandon()


def fsync_dir(folder: Path) -> None:
    """Make a rename or unlink inside `folder` survive a power cut."""
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
