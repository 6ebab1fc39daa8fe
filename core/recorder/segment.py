"""One segment of a recording: a write-ahead log and the Parquet file it becomes.

Rows reach Parquet in row groups of `ROW_GROUP_ROWS` (one row at a time is two orders of magnitude
slower), into `*.parquet.partial`; only a closed, fsynced file gets its final name, so a reader never
sees an unfinished one. The log is deleted only after that, so every moment has one complete copy.
"""

from __future__ import annotations

import os
from pathlib import Path

import pyarrow.parquet as pq

from core.contracts.envelope import Envelope
from core.contracts.recordings import SegmentPaths, stem_for
from core.recorder.schema import SCHEMA, to_table
from core.recorder.wal import WalWriter

ROW_GROUP_ROWS = 1000
# Parquet would try dictionary encoding and min/max statistics on the multi-kilobyte `data` text too:
# wasted work (every value differs) that more than doubles the encoding time.
DICTIONARY_COLUMNS = ["type", "source", "phase", "tradeType", "gameId", "playerId", "username"]
STATISTICS_COLUMNS = [name for name in SCHEMA.names if name != "data"]
HOUR_MS = 3_600_000


class ParquetSink:
    """Parquet rows in batches, to the partial file; `close()` publishes the file under its name."""

    def __init__(self, paths: SegmentPaths) -> None:
        self.paths = paths
        paths.partial.parent.mkdir(parents=True, exist_ok=True)
        self._file = open(paths.partial, "wb")
        try:
            self._writer = pq.ParquetWriter(
                self._file,
                SCHEMA,
                compression="zstd",
                use_dictionary=DICTIONARY_COLUMNS,
                write_statistics=STATISTICS_COLUMNS,
            )
        except Exception:
            self._file.close()
            raise
        self._rows: list[Envelope] = []
        self.bytes = 0

    def add(self, envelope: Envelope) -> bool:
        """Buffer one row; True when a full row group is waiting for `write_rows()`."""
        self._rows.append(envelope)
        return len(self._rows) >= ROW_GROUP_ROWS

    def write_rows(self) -> None:
        if self._rows:
            self._writer.write_table(to_table(self._rows), row_group_size=len(self._rows))
            self._rows = []
            self.bytes = self._file.tell()

    def close(self) -> Path:
        self.write_rows()
        self._writer.close()
        self._file.flush()
        os.fsync(self._file.fileno())
        self.bytes = self._file.tell()
        self._file.close()
        os.replace(self.paths.partial, self.paths.final)
        fsync_dir(self.paths.final.parent)
        return self.paths.final

    def abandon(self) -> None:
        """Let go after an error; the partial file stays for recovery to delete."""
        for release in (self._writer.close, self._file.close):
            try:
                release()
            except Exception:
                pass


class Segment:
    def __init__(self, root: Path, first: Envelope) -> None:
        self.paths = SegmentPaths(stem_for(first.seq, first.timestamp), root)
        self.hour = first.timestamp // HOUR_MS
        self.wal = WalWriter(self.paths.wal)
        try:
            self.parquet = ParquetSink(self.paths)
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
