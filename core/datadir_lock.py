"""One foundation per data folder: the daemon, the console and `vectra replay` hold this lock while they run.

Two foundations on one `VECTRA_DATA_DIR` (different ports are enough to start both) would share the
sequence file, the games memory, the recordings and the order journal: both would hand out the same
`seq`, and both desks would take a retried `order_id` for a new one and send a real order twice.

The lock is an `flock` on `DATA_DIR/vectra.lock`, held for the life of the process: the kernel drops
it when the process ends, however it ends (SIGKILL included), so there is never a stale lock to clean
up. The descriptor is not inheritable (PEP 446), so neither the Parquet worker nor the browser the
daemon launches, which can outlive it, ever holds it. The file keeps the holder's pid and start time, for the refusal's message;
it is never deleted (a process could otherwise lock a file that no longer has a name).
Tools that only read the folder or talk to a daemon (`vectra attach`, `health`, `tail`, `record`,
`order`, `chrome`) do not take it.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import time
from pathlib import Path

from core.config import ConfigError

LOCK_NAME = "vectra.lock"


class DataDirInUse(ConfigError):
    """Another process runs a foundation on this data folder; this one must not touch it."""


# The lock's descriptors, open until the process ends: the kernel then drops the lock, whatever the end.
_held: dict[Path, int] = {}


def claim_data_dir(data_dir: Path) -> None:
    """Hold the data folder until this process ends, or raise `DataDirInUse` before anything else is done.

    It is never released earlier: a daemon whose shutdown overran its grace period still has tasks
    writing into the folder while `asyncio.run` winds them down."""
    if data_dir in _held:
        return
    try:
        data_dir.mkdir(parents=True, exist_ok=True)
        fd = os.open(data_dir / LOCK_NAME, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
    except OSError as exc:
        raise ConfigError(f"cannot use the data folder {data_dir}: {exc.strerror or exc}") from None
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        holder = _holder(fd)
        os.close(fd)
        raise DataDirInUse(_refusal(data_dir, holder)) from None
    _write_holder(fd)
    _held[data_dir] = fd


def _write_holder(fd: int) -> None:
    """Only for the message: on a full disk the lock is held all the same, without its holder's name."""
    started = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    with contextlib.suppress(OSError):
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()} {started}\n".encode(), 0)


def _holder(fd: int) -> str:
    """'pid N (started T)' as the holder wrote it; it may not have written it yet."""
    fields = os.pread(fd, 200, 0).decode(errors="replace").split()
    if len(fields) == 2 and fields[0].isdigit():
        return f"pid {fields[0]} (started {fields[1]})"
    return "another process"


def _refusal(data_dir: Path, holder: str) -> str:
    return (
        f"the data folder {data_dir} is in use by {holder}: stop that process first, or give this one "
        f"another VECTRA_DATA_DIR (to watch the running daemon instead: vectra attach)"
    )
