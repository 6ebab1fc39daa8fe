"""Where recording files live and how they are named.

    recordings/
      2026-11-25/vectra-20261125T221500Z-000000001234.parquet           closed, immutable
      2026-11-25/.vectra-20261125T231500Z-000000051234.parquet.partial  being written (hidden)
      wal/vectra-20261125T231500Z-000000051234.wal                      the same segment's log
      wal/vectra-20261125T231612Z-000000051800.live                     the live log (from its first event)
      wal/vectra-20261125T231655Z-000000052400.after-000000052310.live  ... begun after it missed 52310..52399

A segment's Parquet file and its write-ahead log share one stem: UTC time of the first event, then
its `seq`, zero-padded, so names sort in time order and a reader can pick files by `seq` without
opening them. The unfinished file's name starts with a dot, which pyarrow datasets skip, and its
suffix keeps it out of `*.parquet` globs (DuckDB, Polars): pointing any reader at a day folder is safe.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

PREFIX = "vectra-"
PARQUET = ".parquet"
PARTIAL = ".parquet.partial"
WAL = ".wal"
LIVE = ".live"
AFTER = ".after-"
WAL_DIR = "wal"
SEQ_DIGITS = 12


def recordings_dir(data_dir: Path) -> Path:
    return data_dir / "recordings"


def stem_for(first_seq: int, timestamp_ms: int) -> str:
    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime(timestamp_ms / 1000))
    return f"{PREFIX}{stamp}-{first_seq:0{SEQ_DIGITS}d}"


def day_of(stem: str) -> str:
    """`vectra-20261125T221500Z-…` -> `2026-11-25`."""
    digits = stem[len(PREFIX) : len(PREFIX) + 8]
    return f"{digits[:4]}-{digits[4:6]}-{digits[6:8]}"


def first_seq_of(path: Path) -> int | None:
    """The first `seq` a recording file holds, from its name (None for a foreign file)."""
    name = path.name
    if not name.startswith(PREFIX):
        return None
    stem = name.split(".", 1)[0]
    tail = stem.rsplit("-", 1)[-1]
    return int(tail) if tail.isdigit() else None


@dataclass(frozen=True, slots=True)
class SegmentPaths:
    stem: str
    root: Path

    @property
    def wal(self) -> Path:
        return self.root / WAL_DIR / (self.stem + WAL)

    @property
    def partial(self) -> Path:
        return self.root / day_of(self.stem) / ("." + self.stem + PARTIAL)

    @property
    def final(self) -> Path:
        return self.root / day_of(self.stem) / (self.stem + PARQUET)


def live_log_path(root: Path, stem: str, missed_from: int | None = None) -> Path:
    """A live log's name. One begun after the live log failed names the first `seq` it missed: every
    event from there to its own first one was not in the live log, and may be in no log at all."""
    marker = f"{AFTER}{missed_from:0{SEQ_DIGITS}d}" if missed_from is not None else ""
    return root / WAL_DIR / f"{stem}{marker}{LIVE}"


def missed_before(path: Path) -> int | None:
    """The first `seq` the live log missed before this file began (None: it missed nothing)."""
    _, found, tail = path.name.partition(AFTER)
    digits = tail.split(".", 1)[0]
    return int(digits) if found and digits.isdigit() else None


def _sorted_by_seq(paths: list[Path]) -> list[Path]:
    known = [(first_seq_of(path), path) for path in paths]
    return [path for seq, path in sorted((seq, path) for seq, path in known if seq is not None)]


def closed_files(path: Path) -> list[Path]:
    """Closed recordings under a folder (any depth) or the file itself, in `seq` order."""
    if path.is_file():
        return [path]
    if not path.is_dir():
        return []
    return _sorted_by_seq(list(path.rglob(f"{PREFIX}*{PARQUET}")))


def wal_segments(root: Path) -> list[Path]:
    return _logs(root, WAL)


def live_logs(root: Path) -> list[Path]:
    return _logs(root, LIVE)


def _logs(root: Path, suffix: str) -> list[Path]:
    folder = root / WAL_DIR
    if not folder.is_dir():
        return []
    return _sorted_by_seq(list(folder.glob(f"{PREFIX}*{suffix}")))


def partial_files(root: Path) -> list[Path]:
    if not root.is_dir():
        return []
    return list(root.glob(f"*/.{PREFIX}*{PARTIAL}"))
