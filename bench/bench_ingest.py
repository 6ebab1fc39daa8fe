"""Ingest benchmark (issue 2): how fast the core decodes, normalizes and sequences frames, and what the
daemon costs at the real rate.

    .venv/bin/python bench/bench_ingest.py [--seconds 15]

Prints four figures:
  1. core only: 5 KB tick packets fed straight into Foundation.frame() (no network): ticks/s;
  2. end to end: the simulator at full speed over loopback Socket.IO into the direct source: ticks/s,
     beside what the simulator itself managed to emit (it builds every frame, so it is the limit);
  3. direct source: a bare Socket.IO server pouring pre-encoded ticks: ticks/s through the whole path;
  4. the daemon (a real `vectra --daemon` process) at the real rate (simulator speed 1): CPU % of one core.
Targets: >= 2,000 ticks/s; < 2 % of one core at the real rate.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

import orjson

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from core.config import load_settings  # noqa: E402
from core.assembly import build_foundation  # noqa: E402
from tests.conftest import free_port  # noqa: E402
from bench.feed_server import leaderboard, tick_packet  # noqa: E402
from bench.proc import cpu_seconds  # noqa: E402


def bench_core(count: int) -> tuple[float, int]:
    packets = [tick_packet(t, leaderboard()) for t in range(count)]
    with tempfile.TemporaryDirectory() as data:
        foundation = build_foundation(load_settings({"data_dir": data}))  # built, never started
        began = time.perf_counter()
        for packet in packets:
            foundation.frame("socketio", packet, 0)
        elapsed = time.perf_counter() - began
        foundation.seqstore.close()
    return count / elapsed, len(packets[count // 2])


async def bench_end_to_end(seconds: float) -> tuple[float, float]:
    """The simulator in its own process (so it does not share this loop), at a speed far beyond
    real time; returns (ticks/s Vectra published, frames/s the simulator emitted)."""
    sim_port = free_port()
    sim = subprocess.Popen([sys.executable, "-m", "vectra_cli", "sim", "--port", str(sim_port), "--speed", "1000",
                            "--max-ticks", "5000", "--trades-per-s", "0.2"], cwd=REPO, stderr=subprocess.PIPE)
    sim.stderr.readline()
    try:
        with tempfile.TemporaryDirectory() as data:
            settings = load_settings({"data_dir": data, "feed_url": f"http://127.0.0.1:{sim_port}", "stale_after_s": 30})
            foundation = build_foundation(settings)
            foundation.components.clear()
            ticks = {"n": 0}

            class Counter:
                def deliver(self, envelope) -> None:
                    if envelope.type == "game.tick":
                        ticks["n"] += 1

            foundation.bus.subscribe(Counter())
            await foundation.start()
            await asyncio.sleep(2)
            emitted_before = sim_frames(sim_port)
            start_count, began = ticks["n"], time.perf_counter()
            await asyncio.sleep(seconds)
            elapsed = time.perf_counter() - began
            rate = (ticks["n"] - start_count) / elapsed
            emitted = (sim_frames(sim_port) - emitted_before) / elapsed
            await foundation.stop()
    finally:
        sim.kill()
    return rate, emitted


def sim_frames(port: int) -> int:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/admin/state", timeout=5) as reply:
        return orjson.loads(reply.read())["frames_emitted"]


async def bench_firehose(count: int) -> float:
    """A bare Socket.IO server pouring pre-encoded 5 KB ticks as fast as it can (the simulator
    builds every frame and tops out near 1,000 frames/s): what the direct source and core ingest."""
    port = free_port()
    packets = "\n".join(tick_packet(t, leaderboard()) for t in range(count))
    feeder = subprocess.Popen([sys.executable, str(REPO / "bench" / "feed_server.py"), str(port)],
                              stdin=subprocess.PIPE, cwd=REPO)
    feeder.stdin.write(packets.encode())
    feeder.stdin.close()
    time.sleep(1.5)
    try:
        with tempfile.TemporaryDirectory() as data:
            settings = load_settings({"data_dir": data, "feed_url": f"http://127.0.0.1:{port}", "stale_after_s": 30})
            foundation = build_foundation(settings)
            foundation.components.clear()
            done = asyncio.Event()
            marks: list[float] = []

            class Counter:
                def deliver(self, envelope) -> None:
                    if envelope.type == "game.tick":
                        marks.append(time.perf_counter())
                        if len(marks) == count:
                            done.set()

            foundation.bus.subscribe(Counter())
            await foundation.start()
            await asyncio.wait_for(done.wait(), timeout=120)
            await foundation.stop()
    finally:
        feeder.kill()
    return (count - 1) / (marks[-1] - marks[0])


def bench_daemon_cpu(seconds: float) -> float:
    sim_port = free_port()
    sim = subprocess.Popen([sys.executable, "-m", "vectra_cli", "sim", "--port", str(sim_port), "--speed", "1"],
                           cwd=REPO, stderr=subprocess.PIPE)
    sim.stderr.readline()
    with tempfile.TemporaryDirectory() as data:
        env = {**os.environ, "VECTRA_DATA_DIR": data, "VECTRA_FEED_URL": f"http://127.0.0.1:{sim_port}",
               "VECTRA_HTTP_PORT": str(free_port()), "VECTRA_ZMQ_PUB": f"tcp://127.0.0.1:{free_port()}",
               "VECTRA_ZMQ_ROUTER": f"tcp://127.0.0.1:{free_port()}"}
        daemon = subprocess.Popen([sys.executable, "-m", "vectra_cli", "--daemon"], cwd=REPO, env=env,
                                  stderr=subprocess.DEVNULL)
        try:
            time.sleep(4)
            cpu_before, began = cpu_seconds(daemon.pid), time.monotonic()
            time.sleep(seconds)
            share = (cpu_seconds(daemon.pid) - cpu_before) / (time.monotonic() - began)
        finally:
            daemon.terminate()
            daemon.wait(timeout=10)
            sim.kill()
    return share * 100


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=15)
    args = parser.parse_args()
    rate, size = bench_core(20_000)
    print(f"core only        : {rate:10,.0f} ticks/s decoded+normalized+sequenced ({size / 1024:.1f} KB ticks)")
    received, emitted = asyncio.run(bench_end_to_end(args.seconds))
    print(f"end to end       : {received:10,.0f} ticks/s published from the simulator over loopback Socket.IO "
          f"(the simulator emitted {emitted:,.0f} frames/s)")
    print(f"direct source    : {asyncio.run(bench_firehose(20_000)):10,.0f} ticks/s over loopback Socket.IO "
          "from a bare server pouring pre-encoded ticks")
    print(f"daemon real rate : {bench_daemon_cpu(args.seconds):10.2f} % of one core (simulator at speed 1)")


if __name__ == "__main__":
    main()
