"""The write-ahead log: every recorded envelope as one JSON line, before it reaches Parquet.

A Parquet file is unreadable until its footer is written, so the log is what survives a crash. A
line handed to the kernel survives SIGKILL (it sits in the page cache); `sync()` makes it survive a
power cut too. A kill can tear only the last line, which the reader skips.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import BinaryIO, Iterator

import orjson

from core.contracts.envelope import Envelope

log = logging.getLogger(__name__)


class WalWriter:
    """Lines are collected and handed to the kernel in one write per batch (not one per line)."""

    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        self._file = open(path, "ab", buffering=0)
        self._lines: list[bytes] = []
        self.bytes = 0  # handed to the kernel so far

    def append(self, envelope: Envelope) -> None:
        self._lines.append(envelope.to_json())

    def flush(self) -> None:
        """Hand everything appended so far to the kernel (safe from SIGKILL from here on)."""
        if not self._lines:
            return
        self._lines.append(b"")
        view = memoryview(b"\n".join(self._lines))
        self._lines = []
        self.bytes += len(view)
        while view:
            view = view[self._file.write(view) :]

    def sync(self) -> None:
        self.flush()
        os.fsync(self._file.fileno())

    def close(self) -> None:
        self.flush()
        self._file.close()

    def abandon(self) -> None:
        """Let go of the file after an error, without raising a second one."""
        try:
            self._file.close()
        except OSError:
            pass


def read_wal(path: Path, from_seq: int = 0) -> Iterator[Envelope]:
    """The envelopes of a log with `seq` >= `from_seq`, in the order written; a torn or garbled line
    is skipped and logged.

    A log is written in `seq` order, so the first line wanted is found by bisection on the lines'
    `seq` rather than by reading every line before it: a range read costs what the range holds
    (a log can hold a whole segment, hours of events), not the whole log.
    """
    with open(path, "rb") as file:
        offset = _offset_before(file, from_seq) if from_seq > 0 else 0
        file.seek(offset)
        for line in file:
            if not line.endswith(b"\n"):
                log.info("%s: the line at byte %d is incomplete (torn by a crash, or being written); skipped",
                         path, offset)
                return
            try:
                envelope = Envelope.from_json(line)
            except (orjson.JSONDecodeError, KeyError, TypeError) as exc:
                log.warning("%s: the line at byte %d is not an envelope (%s); skipped", path, offset, exc)
            else:
                if envelope.seq >= from_seq:
                    yield envelope
            offset += len(line)


SCAN_BYTES = 64 * 1024  # the bisection stops this close; the rest is read line by line


def _offset_before(file: BinaryIO, wanted: int) -> int:
    """A line's start at most `SCAN_BYTES` (and a line) before the first line with `seq` >= `wanted`,
    with every line before it below `wanted`. A probe that meets a line it cannot read (torn, garbled,
    or written since the file was opened) only narrows the search from above: reading on from the
    result still meets every line wanted."""
    low, high = 0, os.fstat(file.fileno()).st_size
    while high - low > SCAN_BYTES:
        middle = (low + high) // 2
        file.seek(middle - 1)
        file.readline()  # to the first line that starts at or after `middle`
        start = file.tell()
        line = file.readline()
        seq = _seq_of(line) if start < high else None
        if seq is None or seq >= wanted:
            high = middle
        else:
            low = start + len(line)
    return low


def _seq_of(line: bytes) -> int | None:
    if not line.endswith(b"\n"):
        return None
    try:
        seq = orjson.loads(line).get("seq")
    except (orjson.JSONDecodeError, AttributeError):
        return None
    return seq if type(seq) is int else None
