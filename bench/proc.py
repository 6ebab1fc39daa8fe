"""What a benchmark reads about another process from /proc, from outside it (no help from the process)."""

from __future__ import annotations

import os
from pathlib import Path


def cpu_seconds(pid: int) -> float:
    """User plus system CPU time the process and its running children (e.g. the recorder's Parquet
    worker) have used so far."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0  # a child that ended in between
    own = (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    return own + sum(cpu_seconds(child) for child in children(pid))


def children(pid: int) -> list[int]:
    found: list[int] = []
    for task in Path(f"/proc/{pid}/task").glob("*/children"):
        try:
            found += [int(child) for child in task.read_text().split()]
        except OSError:
            pass
    return found


def resident_mb(pid: int) -> float:
    """Its resident memory now (VmRSS), its running children's included."""
    own = float("nan")
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                own = int(line.split()[1]) / 1024
    except OSError:
        return 0.0
    return own + sum(resident_mb(child) for child in children(pid))


def open_fds(pid: int) -> int:
    """Its open file descriptors now, its running children's included."""
    try:
        own = len(os.listdir(f"/proc/{pid}/fd"))
    except OSError:
        return 0
    return own + sum(open_fds(child) for child in children(pid))
