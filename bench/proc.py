"""What a benchmark reads about another process from /proc, from outside it (no help from the process)."""

from __future__ import annotations

import os
from pathlib import Path


def cpu_seconds(pid: int) -> float:
    """User plus system CPU time the process and its running children (e.g. the recorder's Parquet
    worker) have used so far."""
    return sum(cpu_times(pid))


def cpu_times(pid: int) -> tuple[float, float]:
    """User and system CPU time, apart, the process and its running children have used so far: the
    system part is the kernel working for it (socket sends and receives, epoll, page faults)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0, 0.0  # a child that ended in between
    tick = os.sysconf("SC_CLK_TCK")
    user, system = int(fields[11]) / tick, int(fields[12]) / tick
    for child in children(pid):
        child_user, child_system = cpu_times(child)
        user, system = user + child_user, system + child_system
    return user, system


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
