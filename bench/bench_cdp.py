"""The browser feed against the direct feed: frames per second, emit → publish latency, CPU.

    .venv/bin/python bench/bench_cdp.py            # about 90 s; needs /usr/bin/chromium and `npm ci`

For each source the real assembly (`build_foundation`) runs in this process against the simulator (a
separate process): at 10x the real rate for throughput and latency, and at the real rate for CPU.
Latency is the time from the simulator's emit (`/admin/emitted`, same host clock) to the envelope's
publication on the bus. CPU is read from /proc: this process for Vectra, and every process of the
Chromium group (browser, renderer, GPU, network) for the browser.
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from core.config import Settings  # noqa: E402
from core.contracts.envelope import Envelope  # noqa: E402
from core.assembly import build_foundation  # noqa: E402
from tests.conftest import free_port  # noqa: E402
from tests.processes import SimProcess  # noqa: E402

CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
WARMUP_S = 3.0


class Timestamps:
    """Publication time of every feed frame, keyed as the simulator's emit log keys them."""

    def __init__(self) -> None:
        self.published: dict[tuple, float] = {}

    def deliver(self, envelope: Envelope) -> None:
        if envelope.type in ("raw.gameStateUpdate", "raw.standard/newTrade"):
            payload = envelope.data["payload"]
            key = (
                envelope.type.removeprefix("raw."),
                payload.get("gameId"),
                payload.get("tickCount", payload.get("tickIndex")),
                payload.get("cooldownTimer"),
            )
            self.published.setdefault(key, time.time() * 1000)


def cpu_seconds(pids: list[int]) -> float:
    total = 0
    for pid in pids:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += int(fields[11]) + int(fields[12])  # utime + stime
    return total / CLOCK_TICKS


def process_group(leader: int | None) -> list[int]:
    if leader is None:
        return []
    members = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if os.getpgid(int(entry.name)) == leader:
                    members.append(int(entry.name))
            except OSError:
                continue
    return members


def emitted(sim: SimProcess) -> list[dict]:
    with urllib.request.urlopen(sim.url + "/admin/emitted", timeout=5) as reply:
        return json.loads(reply.read())


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(len(ordered) * fraction))]


async def measure(source: str, sim: SimProcess, seconds: float, workdir: Path) -> dict:
    settings = Settings(
        source=source,
        data_dir=workdir / f"data-{source}-{sim.port}",
        chrome_profile=workdir / f"profile-{source}-{sim.port}",
        cdp_port=free_port(),
        game_url=sim.url + "/",
        cdp_socket_match=f"127.0.0.1:{sim.port}/socket.io",
        chrome_headless=True,
        feed_url=sim.url,
        http_port=free_port(),
        zmq_pub=f"tcp://127.0.0.1:{free_port()}",
        zmq_router=f"tcp://127.0.0.1:{free_port()}",
    )
    foundation = build_foundation(settings)
    stamps = Timestamps()
    foundation.bus.subscribe(stamps)
    chrome = next((c for c in foundation.components if c.name == "chrome"), None)
    await foundation.start()
    try:
        deadline = time.monotonic() + 30
        while not stamps.published:
            if time.monotonic() > deadline:
                raise SystemExit(f"{source}: no frame within 30 s")
            await asyncio.sleep(0.1)
        await asyncio.sleep(WARMUP_S)
        browser = process_group(chrome.pid if chrome else None)
        start_ms, vectra_0, chrome_0, count_0 = time.time() * 1000, cpu_seconds([os.getpid()]), cpu_seconds(browser), len(stamps.published)
        await asyncio.sleep(seconds)
        end_ms, vectra_1, chrome_1, count_1 = time.time() * 1000, cpu_seconds([os.getpid()]), cpu_seconds(browser), len(stamps.published)
    finally:
        await foundation.stop()
    latencies = []
    for entry in emitted(sim):
        key = (entry["event"], entry["gameId"], entry["tickCount"], entry["cooldownTimer"])
        published = stamps.published.get(key)
        if published is not None and start_ms <= entry["ts_ms"] <= end_ms:
            latencies.append(published - entry["ts_ms"])
            stamps.published[key] = float("nan")  # a repeated key counts once
    latencies = [value for value in latencies if value == value]
    wall = (end_ms - start_ms) / 1000
    return {
        "frames_per_s": (count_1 - count_0) / wall,
        "p50_ms": percentile(latencies, 0.5) if latencies else float("nan"),
        "p99_ms": percentile(latencies, 0.99) if latencies else float("nan"),
        "vectra_cpu_pct": 100 * (vectra_1 - vectra_0) / wall,
        "chrome_cpu_pct": 100 * (chrome_1 - chrome_0) / wall if chrome else None,
        "frames": len(latencies),
    }


def show(label: str, figures: dict) -> None:
    chrome = f"{figures['chrome_cpu_pct']:6.1f}%" if figures["chrome_cpu_pct"] is not None else "     -"
    print(
        f"{label:<26} {figures['frames_per_s']:8.1f} {figures['p50_ms']:9.1f} {figures['p99_ms']:9.1f} "
        f"{figures['vectra_cpu_pct']:8.1f}% {chrome:>8}   ({figures['frames']} frames matched)",
        flush=True,
    )


async def main() -> None:
    fast = SimProcess(speed=10, seed=21).start()
    real = SimProcess(speed=1, seed=22).start()
    try:
        with tempfile.TemporaryDirectory(prefix="bench-cdp-") as folder:
            workdir = Path(folder)
            print(f"{'run':<26} {'frames/s':>8} {'p50 ms':>9} {'p99 ms':>9} {'Vectra':>9} {'Chromium':>8}")
            for source in ("socketio", "cdp"):
                show(f"{source} @10x rate", await measure(source, fast, 12, workdir))
            for source in ("socketio", "cdp"):
                show(f"{source} @real rate", await measure(source, real, 15, workdir))
    finally:
        fast.kill()
        real.kill()


if __name__ == "__main__":
    asyncio.run(main())
