"""The sequence counter that survives restarts, SIGKILL included, without an fsync per event.

The file holds two numbers. `last` is written on every publish through a shared memory map: a store
into the page cache, which outlives the process however it dies. It is written once the event is kept
(`published()`, after the recorder's live log has it and before any transport sends it), not when
the number is handed out: a kill in between leaves a number nobody saw and no recording holds, and
it must read as never used (`skipped`), not as a lost event. `reserved` is the upper end of a
block of numbers, written and fsynced once per block, which also survives a power cut. A new run
starts after `reserved`, so a number is never used twice; numbers between `last` and `reserved`
were never used and are announced as such on `sys.start`.

The file's blocks are allocated for real before it is mapped: a store into a sparse mapping on a full
disk kills the process with SIGBUS, with no message at all, while an allocation fails with ENOSPC,
which becomes one line for the operator (`ConfigError`: the data folder cannot be used).
"""

from __future__ import annotations

import mmap
import os
import struct
from dataclasses import dataclass
from pathlib import Path

from core.config import ConfigError

LAYOUT = struct.Struct("<QQ")  # last published, reserved up to
BLOCK = 10_000


@dataclass(frozen=True, slots=True)
class Resume:
    previous_last_seq: int
    skipped: tuple[int, int] | None


class SeqStore:
    def __init__(self, path: Path, block: int = BLOCK) -> None:
        self.path = path
        self.block = block
        try:
            self._map = _mapped(path)
        except OSError as exc:
            raise ConfigError(f"cannot use the sequence file {path}: {exc.strerror or exc}") from None
        last, reserved = LAYOUT.unpack_from(self._map)
        reserved = max(reserved, last)
        skipped = (last + 1, reserved) if reserved > last else None
        self.resume = Resume(previous_last_seq=last, skipped=skipped)
        self.last = reserved
        self._reserved = reserved

    def next(self) -> int:
        """The next number; the file counts it as used only after `published()`."""
        seq = self.last + 1
        if seq > self._reserved:
            self._reserve(seq + self.block - 1)
        self.last = seq
        return seq

    def published(self, seq: int) -> None:
        LAYOUT.pack_into(self._map, 0, seq, self._reserved)

    def adopt(self, seq: int) -> None:
        """An edge takes its numbers from the origin: `seq` (above `last`) is kept as published, with
        nothing reserved beyond it, so a restart, SIGKILL included, resumes right after it."""
        self.last = self._reserved = seq
        LAYOUT.pack_into(self._map, 0, seq, seq)

    def _reserve(self, upto: int) -> None:
        self._reserved = upto
        LAYOUT.pack_into(self._map, 0, self.last, upto)
        self._map.flush()

    def close(self) -> None:
        """A clean stop gives back the unused part of the block: the next run continues exactly."""
        if self._map.closed:
            return
        self._reserved = self.last
        LAYOUT.pack_into(self._map, 0, self.last, self.last)
        self._map.flush()
        self._map.close()


def _mapped(path: Path) -> mmap.mmap:
    """The file mapped, its blocks allocated and the allocation fsynced (a sparse file is not enough)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        os.posix_fallocate(fd, 0, LAYOUT.size)
        os.fsync(fd)
        return mmap.mmap(fd, LAYOUT.size)
    finally:
        os.close(fd)
