"""Reading recorded events back by `seq`: the recordings as the memory ring's long tail.

File names carry each file's first `seq` and row groups carry min/max statistics, so a range read
opens only the files and row groups that can hold it. The write-ahead logs of the segment being
written (and of any not yet recovered) are read last, so nothing recorded is out of reach: the live
logs too, since after a SIGKILL the last events of the killed run may be in its live log alone until
recovery has rebuilt them into a file, and a log recovered (deleted) while being read sends the
reader back to the files, which now hold it. A log is read from where the range starts (a bisection on
its lines' `seq`) to where it ends, never whole: a catch-up that reads a few thousand events at a time
while the segment's log grows by the hour pays for those events only.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Callable, Iterator

import pyarrow as pa
import pyarrow.parquet as pq

from core.contracts.envelope import Envelope
from core.contracts.recordings import closed_files, first_seq_of, live_logs, wal_segments
from core.recorder.schema import envelopes_from_table
from core.recorder.wal import read_wal

log = logging.getLogger(__name__)


def overlapping(files: list[Path], first: int, last: int) -> list[Path]:
    """The files (sorted by first `seq`) that may hold a `seq` in [first, last].

    A file ends before the next one starts, so its first `seq` and its successor's bound it.
    """
    starts = [first_seq_of(path) or 0 for path in files]
    chosen = []
    for index, path in enumerate(files):
        following = starts[index + 1] if index + 1 < len(files) else None
        if starts[index] > last:
            break
        if following is not None and following <= first:
            continue
        chosen.append(path)
    return chosen


def _row_groups(parquet: pq.ParquetFile, first: int, last: int) -> list[int]:
    seq_column = parquet.schema_arrow.get_field_index("seq")
    wanted = []
    for index in range(parquet.metadata.num_row_groups):
        stats = parquet.metadata.row_group(index).column(seq_column).statistics
        if stats is None or not stats.has_min_max or (stats.max >= first and stats.min <= last):
            wanted.append(index)
    return wanted


def read_file_range(path: Path, first: int, last: int) -> Iterator[Envelope]:
    """The envelopes of one closed file with first <= seq <= last, in file order."""
    parquet = pq.ParquetFile(path)
    for index in _row_groups(parquet, first, last):
        for envelope in envelopes_from_table(parquet.read_row_group(index)):
            if first <= envelope.seq <= last:
                yield envelope


def recorded_seqs(path: Path, first: int, last: int) -> set[int]:
    """The `seq` values one closed file holds in [first, last], reading only that column."""
    parquet = pq.ParquetFile(path)
    groups = _row_groups(parquet, first, last)
    if not groups:
        return set()
    seqs = parquet.read_row_groups(groups, columns=["seq"]).column("seq").to_pylist()
    return {seq for seq in seqs if first <= seq <= last}


class RecordingHistory:
    """The `History` of `core/broadcast/requests.py`, served from the recordings folder.

    `in_flight` returns what the recorder accepted but may not have written yet: read first, then
    the logs, then the files, so an envelope moving along that path meanwhile is seen at least once.
    """

    def __init__(self, root: Path, in_flight: Callable[[], list[Envelope]] = list) -> None:
        self.root = root
        self.in_flight = in_flight

    def read_range(self, first_seq: int, last_seq: int) -> Iterator[Envelope]:
        waiting = self.in_flight()
        logs = sorted([*wal_segments(self.root), *live_logs(self.root)], key=lambda path: first_seq_of(path) or 0)
        cursor = first_seq
        for envelope in self._from_files(cursor, last_seq):
            cursor = envelope.seq + 1
            yield envelope
        for path in logs:
            if (first_seq_of(path) or 0) > last_seq:
                break
            try:
                for envelope in read_wal(path, cursor):  # from `cursor` on, found without reading what is before
                    if envelope.seq > last_seq:
                        break
                    if envelope.seq >= cursor:
                        cursor = envelope.seq + 1
                        yield envelope
            except FileNotFoundError:  # recovered into a closed file since the listing
                for envelope in self._from_files(cursor, last_seq):
                    cursor = envelope.seq + 1
                    yield envelope
        for envelope in waiting:
            if cursor <= envelope.seq <= last_seq:
                cursor = envelope.seq + 1
                yield envelope

    def _from_files(self, first_seq: int, last_seq: int) -> Iterator[Envelope]:
        """The closed files' events in [first_seq, last_seq], in `seq` order, none twice."""
        cursor = first_seq
        for path in overlapping(closed_files(self.root), first_seq, last_seq):
            try:
                for envelope in read_file_range(path, cursor, last_seq):
                    if envelope.seq >= cursor:
                        cursor = envelope.seq + 1
                        yield envelope
            except (OSError, pa.ArrowException) as exc:
                log.error("recording %s is unreadable: %s", path, exc)
