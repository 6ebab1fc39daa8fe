"""How much the console costs, and how fast it answers a key.

For each feed rate (the real rate, and 1,000 events/s), synthetic events are published on a bare
foundation's bus (no sockets, so only the pipeline and the console compete for the CPU):
1. without the console: process CPU time / wall time = the baseline;
2. with the console running in a real terminal (a private tmux server, 160x48): the same figure,
   measured inside that process; the difference is the console's own work;
   meanwhile `space` is pressed repeatedly, and the time until `capture-pane` shows the log's
   PAUSED marker appear (or disappear) is the key-to-screen delay.
Targets (issue 6): the console's own work under 15 % of one core at the real rate; key to screen under
100 ms. Run: `.venv/bin/python bench/bench_tui.py` (about 1 minute; needs tmux).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import os
import shlex
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from core.bus import EventBus  # noqa: E402
from core.config import load_settings  # noqa: E402
from core.foundation import Foundation  # noqa: E402

REAL_RATE = 40  # the live feed: ~4 ticks/s, each with its raw frame, plus trades, side bets, player updates
HIGH_RATE = 1000
WARMUP_S = 3.0
MEASURE_S = 10.0
KEY_PRESSES = 12
SIZE = (160, 48)
TICK_PAYLOAD = {
    "active": True,
    "rugged": False,
    "price": 1.0,
    "tickCount": 0,
    "cooldownTimer": 0,
    "allowPreRoundBuys": False,
    "tradeCount": 120,
    "connectedPlayers": 300,
    "partialPrices": {"startTick": 0, "endTick": 0, "values": {str(i): 1.0 + i / 100 for i in range(200)}},
    "leaderboard": [{"id": f"p{i}", "username": f"player{i}", "pnl": i * 0.01} for i in range(40)],
}


class Publisher:
    """Publishes the live feed's mix at a steady rate: game ticks at the game's own 4 per second
    (each as its raw frame plus `game.tick`), and the rest as trades (raw frame plus `player.trade`)."""

    TICKS_PER_S = 4

    def __init__(self, bus: EventBus, rate: float) -> None:
        self.bus = bus
        self.rate = rate
        self.count = 0
        self.ticks = 0

    def _publish(self, channel: str, data: dict, game: str) -> None:
        self.bus.publish(channel, data, source="socketio", game_id=game, received_ms=int(time.time() * 1000))
        self.count += 1

    def _tick(self) -> None:
        tick = self.ticks
        game = f"20261125-bench{tick // 800:08d}"
        price = 1.0 + (tick % 800) / 100 * (1 + 0.3 * math.sin(tick / 15))
        self._publish("raw.gameStateUpdate", {"payload": {**TICK_PAYLOAD, "price": price, "tickCount": tick}, "trace": None}, game)
        self._publish("game.tick", {"tickCount": tick % 800, "price": price, "active": True, "rugged": False, "phase": "ACTIVE", "cooldownTimer": 0, "allowPreRoundBuys": False, "tradeCount": 120, "connectedPlayers": 300, "backfilled": False}, game)
        self.ticks += 1

    def _trade(self) -> None:
        game = f"20261125-bench{self.ticks // 800:08d}"
        trade = {"id": f"t{self.count}", "playerId": "p1", "username": "degen", "type": "buy", "price": 1.5, "amount": 0.1, "qty": 0.06, "tickIndex": self.ticks, "leverage": None, "coin": "SOL"}
        self._publish("raw.standard/newTrade", trade, game)
        self._publish("player.trade", trade, game)

    async def run(self) -> None:
        started = time.perf_counter()
        while True:
            elapsed = time.perf_counter() - started
            for _ in range(int(elapsed * self.TICKS_PER_S) - self.ticks):
                self._tick()
            for _ in range((int(elapsed * self.rate) - self.count) // 2):
                self._trade()
            await asyncio.sleep(0.01)


def bare_foundation(data_dir: Path) -> Foundation:
    return Foundation(load_settings({"data_dir": data_dir}))


async def measured(seconds: float) -> float:
    """CPU share of one core over the next `seconds`."""
    cpu, wall = time.process_time(), time.perf_counter()
    await asyncio.sleep(seconds)
    return (time.process_time() - cpu) / (time.perf_counter() - wall)


async def baseline(rate: float) -> float:
    with tempfile.TemporaryDirectory() as data_dir:
        foundation = bare_foundation(Path(data_dir))
        await foundation.start()
        publisher = asyncio.create_task(Publisher(foundation.bus, rate).run())
        await asyncio.sleep(WARMUP_S)
        share = await measured(MEASURE_S)
        publisher.cancel()
        await foundation.stop()
        return share


async def console_child(rate: float, ready: Path, out: Path) -> None:
    """Runs inside the terminal: the real console, fed synthetic events, measuring its own process."""
    from vectra_tui.app import VectraConsole
    from vectra_tui.embedded import EmbeddedFoundation

    with tempfile.TemporaryDirectory() as data_dir:
        foundation = bare_foundation(Path(data_dir))
        app = VectraConsole(EmbeddedFoundation(foundation.settings, foundation))

        async def drive() -> None:
            while not app.is_running or app.latest is None:
                await asyncio.sleep(0.05)
            publisher = Publisher(foundation.bus, rate)
            task = asyncio.create_task(publisher.run())
            await asyncio.sleep(WARMUP_S)
            ready.write_text("measuring")
            share = await measured(MEASURE_S)
            out.write_text(json.dumps({"cpu": share, "published": publisher.count}))
            task.cancel()
            await app.action_quit()

        await asyncio.gather(app.run_async(), drive())


def tmux(socket: str, *args: str) -> str:
    return subprocess.run(["tmux", "-L", socket, *args], capture_output=True, text=True, timeout=10).stdout


def is_paused(socket: str) -> bool:
    return "PAUSED" in tmux(socket, "capture-pane", "-p")


def key_delays(socket: str, out: Path) -> list[float]:
    """Press space repeatedly; each time, how long until the screen shows the log's state flipped."""
    delays = []
    for _ in range(KEY_PRESSES):
        if out.exists():
            break
        expected = not is_paused(socket)
        pressed = time.perf_counter()
        tmux(socket, "send-keys", "Space")
        while time.perf_counter() - pressed < 2.0:
            if is_paused(socket) == expected:
                delays.append((time.perf_counter() - pressed) * 1000)
                break
        time.sleep(0.3)
    return delays


def console_in_terminal(rate: float) -> tuple[float, list[float]]:
    with tempfile.TemporaryDirectory() as work:
        ready, out = Path(work) / "ready", Path(work) / "out"
        socket = f"vectra-bench-{os.getpid()}"
        command = (
            f"cd {shlex.quote(str(REPO))} && TERM=xterm-256color {shlex.quote(sys.executable)} {shlex.quote(__file__)} "
            f"--child --rate {rate} --ready {shlex.quote(str(ready))} --out {shlex.quote(str(out))}; sleep 30"
        )
        subprocess.run(["tmux", "-L", socket, "-f", "/dev/null", "new-session", "-d", "-x", str(SIZE[0]), "-y", str(SIZE[1]), command], check=True)
        try:
            deadline = time.monotonic() + 60
            while not ready.exists() and time.monotonic() < deadline:
                time.sleep(0.1)
            if not ready.exists():
                raise SystemExit(f"the console did not start in tmux:\n{tmux(socket, 'capture-pane', '-p')}")
            delays = key_delays(socket, out)
            while not out.exists() and time.monotonic() < deadline + MEASURE_S:
                time.sleep(0.1)
            return json.loads(out.read_text())["cpu"], delays
        finally:
            subprocess.run(["tmux", "-L", socket, "kill-server"], capture_output=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--rate", type=float, default=HIGH_RATE, help=argparse.SUPPRESS)
    parser.add_argument("--ready", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--out", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        asyncio.run(console_child(args.rate, args.ready, args.out))
        return
    from vectra_tui.app import REFRESH_HZ

    print(f"console at {SIZE[0]}x{SIZE[1]} in tmux, refresh {REFRESH_HZ} Hz, {MEASURE_S:.0f} s per figure, {os.cpu_count()} cores")
    for rate in (REAL_RATE, HIGH_RATE):
        core_only = asyncio.run(baseline(rate))
        with_console, delays = console_in_terminal(rate)
        own = with_console - core_only
        print(f"\nfeed at {rate:,.0f} events/s")
        print(f"  pipeline alone            {core_only * 100:6.1f} % of one core")
        print(f"  pipeline + console        {with_console * 100:6.1f} % of one core")
        print(f"  console's own work        {own * 100:6.1f} % of one core   (target < 15 % at the real rate)")
        if delays:
            print(
                f"  key -> screen (space)     median {statistics.median(delays):5.0f} ms, max {max(delays):5.0f} ms "
                f"over {len(delays)} presses (target < 100 ms; includes tmux capture-pane polling)"
            )
        else:
            print("  key -> screen             no key press reached the screen within 2 s")


if __name__ == "__main__":
    main()
