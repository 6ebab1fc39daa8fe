"""Turning what a crash (or a disk error) left behind into closed Parquet files.

A leftover log is the complete record of its segment (the log leads the Parquet file), so recovery
rebuilds the segment's file from the log alone and deletes the unfinished `*.parquet.partial`.
Events already in a closed file (a crash between closing a file and deleting its log) are skipped by
`seq`, so nothing is recorded twice. Live logs (`live_log.py`) left by an earlier run are recovered the
same way, in `seq` order with the others: each adds only what no log before it held.

What the logs hold tells the next run whether an earlier one lost events: a run killed while
recording leaves logs whose newest event is not the `recording.status` that switched recording off,
and a live log begun after the live log had failed names the first event it missed (`missed_before`):
what of that range no log held is a hole.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

from core.contracts.envelope import Envelope
from core.recorder.history import overlapping, recorded_seqs
from core.contracts.recordings import (
    SegmentPaths, closed_files, first_seq_of, live_logs, missed_before, partial_files, stem_for, wal_segments,
)
from core.recorder.parquet_worker import ParquetFile
from core.recorder.segment import OpenRows, ParquetSink, fsync_dir
from core.recorder.wal import read_wal

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Recovered:
    newest: Envelope | None = None  # the event with the highest `seq` any leftover log held
    holes: tuple[tuple[int, int], ...] = ()  # ranges of `seq` the live log missed that no log held

    @property
    def highest(self) -> int:
        return self.newest.seq if self.newest is not None else 0


def _bounds(wal: Path) -> tuple[int, Envelope] | None:
    """The lowest `seq` of a log and its newest event."""
    lowest, newest = None, None
    for envelope in read_wal(wal):
        lowest = envelope.seq if lowest is None else min(lowest, envelope.seq)
        if newest is None or envelope.seq > newest.seq:
            newest = envelope
    return (lowest, newest) if newest is not None else None


def _already_recorded(root: Path, first: int, last: int) -> set[int]:
    found: set[int] = set()
    for path in overlapping(closed_files(root), first, last):
        found |= recorded_seqs(path, first, last)
    return found


def _rebuild(root: Path, wal: Path, known: set[int], open_rows: OpenRows) -> Path | None:
    sink: ParquetSink | None = None
    written: set[int] = set()
    try:
        for envelope in read_wal(wal):
            if envelope.seq in known or envelope.seq in written:
                continue
            if sink is None:
                sink = ParquetSink(SegmentPaths(stem_for(envelope.seq, envelope.timestamp), root), open_rows)
            written.add(envelope.seq)
            if sink.add(envelope):
                sink.write_rows()
    except Exception:
        if sink is not None:
            sink.abandon()
        raise
    return sink.close() if sink is not None else None


def _leftovers(root: Path, live_before: int | None) -> list[Path]:
    """The logs to recover: the thread's, and live logs that start before `live_before` (None: all),
    since the live log of the running process must stay where it is."""
    live = [path for path in live_logs(root) if live_before is None or (first_seq_of(path) or 0) < live_before]
    return sorted(wal_segments(root) + live, key=lambda path: first_seq_of(path) or 0)


def _holes(root: Path, live_log: Path) -> list[tuple[int, int]]:
    """What the live log missed before this file began and no file holds (the logs before it are
    recovered by now: they start earlier)."""
    first, until = missed_before(live_log), first_seq_of(live_log)
    if first is None or until is None or until <= first:
        return []
    recorded = _already_recorded(root, first, until - 1)
    holes: list[tuple[int, int]] = []
    for seq in range(first, until):
        if seq in recorded:
            continue
        if holes and holes[-1][1] == seq - 1:
            holes[-1] = (holes[-1][0], seq)
        else:
            holes.append((seq, seq))
    return holes


def recover(root: Path, live_before: int | None = None, open_rows: OpenRows = ParquetFile) -> Recovered:
    """Recover every leftover log under `root` into closed files; say what the newest event was and
    what the live log had missed that no log held. `open_rows`: where the files are built (the
    recorder's worker process, so a long log does not hold the interpreter for the event loop)."""
    newest: Envelope | None = None
    holes: list[tuple[int, int]] = []
    for wal in _leftovers(root, live_before):
        holes += _holes(root, wal)
        bounds = _bounds(wal)
        if bounds is not None:
            lowest, last = bounds
            if newest is None or last.seq > newest.seq:
                newest = last
            rebuilt = _rebuild(root, wal, _already_recorded(root, lowest, last.seq), open_rows)
            log.warning("recovered %s into %s", wal.name, rebuilt or "nothing new (already recorded)")
        wal.unlink()
        fsync_dir(wal.parent)
    for partial in partial_files(root):
        log.warning("deleting unfinished %s (its events come from the log)", partial.name)
        partial.unlink()
    return Recovered(newest, tuple(holes))
