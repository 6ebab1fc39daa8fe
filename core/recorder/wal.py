"""The write-ahead log: every recorded envelope as one JSON line, before it reaches Parquet.

A Parquet file is unreadable until its footer is written, so the log is what survives a crash. A
line handed to the kernel survives SIGKILL (it sits in the page cache); `sync()` makes it survive a
power cut too. A kill can tear only the last line, which the reader skips.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Iterator

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


def read_wal(path: Path) -> Iterator[Envelope]:
    """The envelopes of a log in the order written; a torn or garbled line is skipped and logged."""
    with open(path, "rb") as file:
        for number, line in enumerate(file, 1):
            if not line.endswith(b"\n"):
                log.info("%s: line %d is incomplete (torn by a crash, or being written); skipped", path, number)
                return
            try:
                yield Envelope.from_json(line)
            except (orjson.JSONDecodeError, KeyError, TypeError) as exc:
                log.warning("%s: line %d is not an envelope (%s); skipped", path, number, exc)
