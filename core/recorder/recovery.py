"""Turning what a crash (or a disk error) left behind into closed Parquet files.

A leftover log is the complete record of its segment (the log leads the Parquet file), so recovery
rebuilds the segment's file from the log alone and deletes the unfinished `*.parquet.partial`.
Events already in a closed file (a crash between closing a file and deleting its log) are skipped by
`seq`, so nothing is recorded twice.
"""

from __future__ import annotations

import logging
from pathlib import Path

from core.recorder.history import overlapping, recorded_seqs
from core.contracts.recordings import SegmentPaths, closed_files, partial_files, stem_for, wal_segments
from core.recorder.segment import ParquetSink, fsync_dir
from core.recorder.wal import read_wal

log = logging.getLogger(__name__)


def _seq_range(wal: Path) -> tuple[int, int] | None:
    seqs = [envelope.seq for envelope in read_wal(wal)]
    return (min(seqs), max(seqs)) if seqs else None


def _already_recorded(root: Path, first: int, last: int) -> set[int]:
    found: set[int] = set()
    for path in overlapping(closed_files(root), first, last):
        found |= recorded_seqs(path, first, last)
    return found


def _rebuild(root: Path, wal: Path, known: set[int]) -> Path | None:
    sink: ParquetSink | None = None
    written: set[int] = set()
    try:
        for envelope in read_wal(wal):
            if envelope.seq in known or envelope.seq in written:
                continue
            if sink is None:
                sink = ParquetSink(SegmentPaths(stem_for(envelope.seq, envelope.timestamp), root))
            written.add(envelope.seq)
            if sink.add(envelope):
                sink.write_rows()
    except Exception:
        if sink is not None:
            sink.abandon()
        raise
    return sink.close() if sink is not None else None


def recover(root: Path) -> int:
    """Recover every leftover log under `root`; return the highest `seq` found in them (0: none)."""
    highest = 0
    for wal in wal_segments(root):
        bounds = _seq_range(wal)
        if bounds is not None:
            highest = max(highest, bounds[1])
            rebuilt = _rebuild(root, wal, _already_recorded(root, *bounds))
            log.warning("recovered %s into %s", wal.name, rebuilt or "nothing new (already recorded)")
        wal.unlink()
        fsync_dir(wal.parent)
    for partial in partial_files(root):
        log.warning("deleting unfinished %s (its events come from the log)", partial.name)
        partial.unlink()
    return highest
