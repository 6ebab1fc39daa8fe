"""What the recorder costs: rows/s it sustains, latency it adds to the live path, bytes per hour.

    .venv/bin/python bench/bench_recorder.py

Uses the real Foundation, bus and Recorder (writer thread, log, Parquet) on a temporary folder, and
real-feed frames from the capture fixtures when present (`VECTRA_FIXTURES`). Targets: at least
20,000 rows/s, under 0.5 ms added to the live p99. Finishes in well under two minutes.
"""

from __future__ import annotations

import asyncio
import json
import os
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from core.config import Settings  # noqa: E402
from core.contracts.envelope import Envelope  # noqa: E402
from core.foundation import Foundation  # noqa: E402
from core.contracts.feed import FeedEvent  # noqa: E402
from core.normalizer import Normalizer  # noqa: E402
from core.assembly import install_recorder  # noqa: E402
from core.contracts.recordings import closed_files  # noqa: E402
from tests.conftest import fixtures_dir  # noqa: E402

THROUGHPUT_ROWS = 40_000
WARM_UP_ROWS = 5_000
LIVE_RATE_PER_S = 400
LIVE_BLOCKS, LIVE_BLOCK_S = 5, 1.5
HOUR_SAMPLE_S = 300
TICKS_PER_S, COOLDOWN_FRAMES_PER_S = 4, 10


def samples() -> tuple[dict, dict]:
    """An active tick (~5 KB) and a cooldown frame (~4 KB) of the real feed, or look-alikes."""
    path = fixtures_dir() / "key-samples.json"
    if path.is_file():
        captured = json.loads(path.read_text())
        return captured["05_active_midgame"]["data"], captured["01_cooldown_early_minimal"]["data"]
    board = [{"id": f"did:privy:{n:024d}", "username": f"player{n}", "pnl": 0.01 * n, "positionQty": n}
             for n in range(30)]
    active = {"gameId": "20260206-003482fbeaae4ad5", "active": True, "rugged": False, "price": 1.2,
              "tickCount": 100, "cooldownTimer": 0, "allowPreRoundBuys": False, "leaderboard": board}
    cooldown = {**active, "active": False, "tickCount": 0, "cooldownTimer": 9000, "leaderboard": board[:24]}
    return active, cooldown


def jitter(value, rng: random.Random):
    """The same shape with different numbers: identical frames would compress unrealistically well."""
    if isinstance(value, dict):
        return {key: jitter(item, rng) for key, item in value.items()}
    if isinstance(value, list):
        return [jitter(item, rng) for item in value]
    if isinstance(value, float):
        return value * (0.5 + rng.random())
    return value


def frame(template: dict, n: int, active: bool) -> dict:
    payload = jitter(template, random.Random(n))
    if active:
        payload["tickCount"] = n
    else:
        payload["cooldownTimer"] = max(100, 15000 - 100 * (n % 150))
    return payload


def envelopes_of(payload: dict, first_seq: int, timestamp: int) -> list[Envelope]:
    """The envelopes one frame becomes live: raw.gameStateUpdate plus the normalized ones."""
    drafts = Normalizer().normalize(FeedEvent("gameStateUpdate", payload), timestamp)
    return [Envelope(first_seq + i, d.type, timestamp, d.gameId, "socketio", d.data) for i, d in enumerate(drafts)]


def settings_in(folder: Path, **extra) -> Settings:
    return Settings(**{"data_dir": folder, "record": True, **extra})


async def wait_drained(recorder, rows: int, timeout: float = 90) -> None:
    deadline = time.monotonic() + timeout
    while recorder._writer.rows_total < rows or recorder._writer.backlog:
        if time.monotonic() > deadline:
            raise TimeoutError(f"writer wrote {recorder._writer.rows_total} of {rows} rows")
        await asyncio.sleep(0.01)


async def bench_throughput(active: dict) -> float:
    with tempfile.TemporaryDirectory() as folder:
        foundation = Foundation(settings_in(Path(folder), record_buffer_cap=THROUGHPUT_ROWS * 2))
        recorder = install_recorder(foundation)
        await foundation.start()
        now = int(time.time() * 1000)
        ticks = [Envelope(100 + n, "game.tick", now, "g", "socketio", frame(active, n, True))
                 for n in range(WARM_UP_ROWS + THROUGHPUT_ROWS)]
        for envelope in ticks:
            envelope.to_json()  # live, the transports have serialized it before the recorder sees it
        size = statistics.mean(len(envelope.to_json()) for envelope in ticks[:100])
        warm_up, measured = ticks[:WARM_UP_ROWS], ticks[WARM_UP_ROWS:]
        for envelope in warm_up:  # first allocations of Arrow buffers and files are not the steady state
            recorder.deliver(envelope)
        await wait_drained(recorder, 0)
        base = recorder._writer.rows_total
        started, cpu_started = time.perf_counter(), time.process_time()
        for envelope in measured:
            recorder.deliver(envelope)
        await wait_drained(recorder, base + len(measured))
        elapsed, cpu = time.perf_counter() - started, time.process_time() - cpu_started
        await foundation.stop()
    rate = THROUGHPUT_ROWS / elapsed
    print(f"throughput: {THROUGHPUT_ROWS} ticks of {size / 1024:.1f} KB in {elapsed:.2f} s = {rate:,.0f} rows/s "
          f"(target >= 20,000) {'OK' if rate >= 20_000 else 'BELOW TARGET'}; "
          f"{THROUGHPUT_ROWS / cpu:,.0f} rows per CPU-second of this process "
          f"(load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores)")
    return rate


def deliver_cost(recorder) -> float:
    envelope = Envelope(1, "game.tick", 0, None, "socketio", {})
    calls = 200_000
    started = time.perf_counter()
    for _ in range(calls):
        recorder.deliver(envelope)
    per_call = (time.perf_counter() - started) / calls
    recorder._queue.clear()
    return per_call


async def live_block(foundation: Foundation, frames: list[dict], seconds: float) -> tuple[list[float], list[float]]:
    """Publish real frames at a steady rate. Two latencies per frame, in ms: the cost of publishing
    it (normalizer + bus + subscribers), and due -> published, which also counts waiting for the
    GIL, the way a busy writer thread would slow the live path."""
    loop = asyncio.get_running_loop()
    interval = 1 / LIVE_RATE_PER_S
    start = loop.time() + 0.01
    costs, delays = [], []
    for n in range(int(LIVE_RATE_PER_S * seconds)):
        due = start + n * interval
        wait = due - loop.time()
        if wait > 0:
            await asyncio.sleep(wait)
        began = time.perf_counter()
        foundation.event("socketio", FeedEvent("gameStateUpdate", frames[n % len(frames)]), int(time.time() * 1000))
        costs.append((time.perf_counter() - began) * 1000)
        delays.append((loop.time() - due) * 1000)
    return costs, delays


def p99(values: list[float]) -> float:
    return sorted(values)[int(len(values) * 0.99)]


async def bench_live_path(active: dict, cooldown: dict) -> float:
    frames = [frame(active, n, True) for n in range(50)] + [frame(cooldown, n, False) for n in range(50)]
    costs: dict[bool, list[float]] = {False: [], True: []}
    delays: dict[bool, list[float]] = {False: [], True: []}
    with tempfile.TemporaryDirectory() as folder:
        foundation = Foundation(settings_in(Path(folder), record=False))
        recorder = install_recorder(foundation)

        class Transport:  # a stand-in for ZeroMQ/WebSocket: serializes every envelope once
            def deliver(self, envelope: Envelope) -> None:
                envelope.to_json()

        foundation.bus.subscribe(Transport())
        await foundation.start()
        deliver_off = deliver_cost(recorder)
        recorder.switch(True)
        deliver_on = deliver_cost(recorder)
        for block in range(LIVE_BLOCKS * 2):  # alternating, so the machine's load hits both alike
            on = block % 2 == 1
            recorder.switch(on)
            block_costs, block_delays = await live_block(foundation, frames, LIVE_BLOCK_S)
            costs[on] += block_costs
            delays[on] += block_delays
        rows = recorder._writer.rows_total
        await foundation.stop()
    added = p99(costs[True]) - p99(costs[False])
    print(f"deliver(): {deliver_off * 1e9:,.0f} ns/call off, {deliver_on * 1e9:,.0f} ns/call on")
    print(f"live path, {LIVE_RATE_PER_S} real frames/s, {LIVE_BLOCKS} blocks of {LIVE_BLOCK_S:g} s per mode "
          f"({rows} rows recorded):")
    for label, values in (("publish cost", costs), ("due -> published", delays)):
        print(f"  {label:<17} p50 off {statistics.median(values[False]):.3f} ms, on {statistics.median(values[True]):.3f} ms;"
              f"  p99 off {p99(values[False]):.3f} ms, on {p99(values[True]):.3f} ms")
    print(f"added p99 (publish cost): {added:.3f} ms (target < 0.5 ms) {'OK' if added < 0.5 else 'ABOVE TARGET'}; "
          f"due -> published: {p99(delays[True]) - p99(delays[False]):+.3f} ms (includes the machine's noise)")
    return added


async def bench_bytes_per_hour(active: dict, cooldown: dict) -> None:
    with tempfile.TemporaryDirectory() as folder:
        foundation = Foundation(settings_in(Path(folder)))
        recorder = install_recorder(foundation)
        await foundation.start()
        seq, events, log_bytes = 1_000, 0, 0
        clock = int(time.time() * 1000) // 3_600_000 * 3_600_000  # one hour-long segment
        frames_per_s = TICKS_PER_S + COOLDOWN_FRAMES_PER_S
        for second in range(HOUR_SAMPLE_S):
            for n in range(frames_per_s):
                is_tick = n < TICKS_PER_S
                payload = frame(active if is_tick else cooldown, second * frames_per_s + n, is_tick)
                stamp = clock + second * 1000 + n * 1000 // frames_per_s
                for envelope in envelopes_of(payload, seq, stamp):
                    recorder.deliver(envelope)
                    log_bytes += len(envelope.to_json()) + 1
                    seq += 1
                    events += 1
            if second % 20 == 0:
                await asyncio.sleep(0)
        await wait_drained(recorder, 0)
        recorder.switch(False)
        await foundation.stop()
        parquet_bytes = sum(path.stat().st_size for path in closed_files(Path(folder) / "recordings"))
    scale = 3600 / HOUR_SAMPLE_S
    print(f"bytes per hour at {TICKS_PER_S} ticks/s + {COOLDOWN_FRAMES_PER_S} cooldown frames/s "
          f"({events / HOUR_SAMPLE_S:.0f} events/s, raw + normalized): Parquet {parquet_bytes * scale / 1e6:,.1f} MB/h, "
          f"write-ahead log (transient, deleted when a file closes) {log_bytes * scale / 1e6:,.1f} MB/h; "
          f"{parquet_bytes * scale * 24 / 1e9:,.2f} GB/day")


async def main() -> None:
    active, cooldown = samples()
    started = time.perf_counter()
    await bench_throughput(active)
    await bench_live_path(active, cooldown)
    await bench_bytes_per_hour(active, cooldown)
    print(f"(bench took {time.perf_counter() - started:.0f} s)")


if __name__ == "__main__":
    asyncio.run(main())
