"""Compressed soak: the simulator sped up so that MINUTES of wall time hold an hour of games, recording
on, the Python client (ZeroMQ) and a resuming WebSocket attached; every minute the daemon's resident
memory, open file descriptors and CPU, its Parquet worker process included, are printed (read from
/proc from outside, bench/proc.py). Once the memory ring is full (`RING` events, the first minutes:
warm-up) they should stay flat. At the end the run gets the matrix's verdict (lost silently, false alarms) like any scenario, with the range of
memory and descriptors over the second half of the run.

    .venv/bin/python bench/chaos.py --soak 10      # or: .venv/bin/python bench/soak.py 10
"""

from __future__ import annotations

import asyncio
import shutil
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.chaos_harness import Stack, table  # noqa: E402
from bench.proc import cpu_seconds, open_fds, resident_mb  # noqa: E402

SIMULATED_S = 3600
RING = 20_000  # a ring that fills within the first minutes, so that warm-up ends early
REAL_LENGTHS = 100_000  # no forced rug in practice: games end at the 0.5 % per tick rug


async def soak(minutes: float) -> int:
    speed = SIMULATED_S / (minutes * 60)
    workdir = Path(tempfile.mkdtemp(prefix="chaos-soak-"))
    stack = Stack("soak", workdir, speed=speed, max_ticks=REAL_LENGTHS,
                  env={"VECTRA_RECORD_ROTATE_MB": "16", "VECTRA_RING_SIZE": str(RING)})
    print(f"soak: {minutes:g} min at speed {speed:g} (one hour of games), recording on", flush=True)
    print("minute  rss_MB  fds  cpu_%  seq  games_ended", flush=True)
    try:
        await stack.start()
        pid = stack.daemon.proc.pid
        began = time.monotonic()
        cpu_before = cpu_seconds(pid)
        samples = []
        for minute in range(1, int(minutes) + 1):
            await asyncio.sleep(max(0.0, began + 60 * minute - time.monotonic()))
            rss, fds, cpu = resident_mb(pid), open_fds(pid), cpu_seconds(pid)
            games = sum(1 for e in stack.watchers.events.values() if e["type"] == "game.end")
            samples.append((rss, fds))
            print(f"{minute:6d}  {rss:6.1f}  {fds:3d}  {100 * (cpu - cpu_before) / 60:5.1f}  "
                  f"{max(stack.watchers.events, default=0)}  {games}", flush=True)
            cpu_before = cpu
        row = await stack.verdict()
        if len(samples) >= 2:
            late = samples[len(samples) // 2:]
            rss = [sample[0] for sample in late]
            fds = [sample[1] for sample in late]
            row.notes.append(f"second half: rss {min(rss):.0f}-{max(rss):.0f} MB, fds {min(fds)}-{max(fds)}")
        print(table([row]), flush=True)
        return 0 if row.lost_silently == 0 and row.false_alarms == 0 else 1
    finally:
        await stack.watchers.stop()
        stack.cleanup()
        shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(asyncio.run(soak(float(sys.argv[1]) if len(sys.argv) > 1 else 10)))
