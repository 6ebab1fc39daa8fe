"""Cost per event (issue 13): what `vectra --daemon` spends per feed frame, its latency under fan-out,
its memory, and the same load through a bare baseline in the same run.

    .venv/bin/python bench/bench_cost.py [--quick] [--profile] [--rates 1000,2000,4000] [--seconds 5]

Every part is its own process: the load (bench/feed_server.py, a bare Socket.IO server pouring
pre-encoded 4.9 KB `gameStateUpdate` frames at a fixed rate, each stamped with its send time), the
daemon (its own data dir and free ports), and each subscriber (WebSocket or ZeroMQ, subscribed to
`raw.gameStateUpdate`, reading the stamp with a regex instead of parsing 5 KB). Per run it prints:
  delivered  the share of frames the worst subscriber received;
  p50/p99    feed send -> subscriber receive, over all subscribers (same host, same clock);
  µs/frame   the daemon's CPU (utime+stime from /proc/<pid>/stat) over the pour and its drain, per frame;
  of it kernel  the stime part: the kernel's work for the daemon (each socket send to a subscriber in
             another process, the receives, epoll), which no change inside the process removes;
  RSS        the daemon's VmRSS (/proc/<pid>/status) at the end of the run.
The baseline is the least a republisher can do: python-socketio's client with orjson, each frame
encoded once and sent to the WebSocket clients with `websockets.broadcast` and to one ZeroMQ PUB; its
1 WS row is the floor under Vectra's CPU per frame with one subscriber (the same PUB, no ZeroMQ reader,
as Vectra's own).
"lossless rate" is the highest rate of the ladder every subscriber received completely; the ratio
is Vectra's (10 WS + 1 ZMQ, recorder on) over the baseline's. A last run fills the resume ring
(`ring_size` events) and reports the memory that holds. `--profile` runs the daemon under cProfile
for the first Vectra run that `--match` selects (e.g. `--rates 1000 --match "1 WS .*rec off"`) and prints
the top of its hot path.
No figure here is asserted anywhere: the machine's load moves them; the load average is printed.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import pstats
import re
import signal
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path

import orjson

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from bench.bench_ws import percentile  # noqa: E402
from bench.proc import cpu_seconds, cpu_times, resident_mb  # noqa: E402
from tests.conftest import free_port  # noqa: E402

CHANNEL = "raw.gameStateUpdate"
STAMP = re.compile(rb'"benchSent":"(\d+):(\d+)"')
DRAIN_IDLE_S = 5.0  # a run ends when every subscriber has everything, or nobody made progress this long
IDLE_CPU_S = 0.025  # CPU seconds per half second below which the daemon counts as idle
RING_FILL_EVENTS = 100_000  # the default ring_size: two events (raw + tick) per frame


# --- the subscriber process ------------------------------------------------------------------------


async def subscriber_main(kind: str, url: str, progress: Path) -> None:
    """Count stamped frames and their latencies; progress to a file, the result on stdout at stdin's end."""
    seen: set[int] = set()
    latencies: list[float] = []
    done = asyncio.Event()
    loop = asyncio.get_running_loop()
    threading.Thread(target=lambda: (sys.stdin.read(), loop.call_soon_threadsafe(done.set)), daemon=True).start()

    def handle(message: bytes) -> None:
        received = time.time_ns()
        stamp = STAMP.search(message)
        if stamp is not None:
            seen.add(int(stamp.group(1)))
            latencies.append((received - int(stamp.group(2))) / 1e6)

    async def websocket() -> None:
        from websockets.asyncio.client import connect

        async with connect(url, compression=None, max_size=None) as client:
            await client.send(json.dumps({"action": "subscribe", "channels": [CHANNEL]}))
            progress.write_text("0")
            while True:
                message = await client.recv(decode=False)
                handle(message)

    async def zeromq() -> None:
        import zmq
        import zmq.asyncio

        sub = zmq.asyncio.Context().socket(zmq.SUB)
        sub.setsockopt(zmq.RCVHWM, 0)
        sub.connect(url)
        sub.subscribe(CHANNEL.encode())
        progress.write_text("0")
        while True:
            _, body = await sub.recv_multipart()
            handle(body)

    async def report() -> None:
        while True:
            await asyncio.sleep(0.2)
            progress.write_text(str(len(seen)))

    tasks = [asyncio.create_task(websocket() if kind == "ws" else zeromq()), asyncio.create_task(report())]
    waiting = asyncio.create_task(done.wait())
    finished, _ = await asyncio.wait([*tasks, waiting], return_when=asyncio.FIRST_COMPLETED)
    error = next((repr(t.exception()) for t in finished if t is not waiting and t.exception()), None)
    print(json.dumps({"received": len(seen), "latencies": latencies, "error": error}), flush=True)
    os._exit(0)


# --- the baseline process --------------------------------------------------------------------------


class OrjsonModule:
    """What python-socketio expects of a `json` module, backed by orjson."""

    loads = staticmethod(orjson.loads)

    @staticmethod
    def dumps(value, **_) -> str:
        return orjson.dumps(value).decode()


async def baseline_main(feed_url: str, ws_port: int, zmq_url: str) -> None:
    """python-socketio client -> one encode -> websockets.broadcast to every client + one ZeroMQ PUB."""
    import socketio
    import websockets
    import zmq

    from bench.bench_ws import bare_clients

    server, clients = await bare_clients(ws_port)
    pub = zmq.Context().socket(zmq.PUB)
    pub.setsockopt(zmq.SNDHWM, 10_000)
    pub.bind(zmq_url)
    topic = CHANNEL.encode()
    client = socketio.AsyncClient(json=OrjsonModule, reconnection=False)

    @client.on("gameStateUpdate")
    async def on_tick(payload) -> None:
        message = orjson.dumps({"type": CHANNEL, "data": {"payload": payload}})
        websockets.broadcast(clients, message.decode())
        pub.send_multipart([topic, message])

    await client.connect(feed_url, transports=["websocket"])
    print("ready", flush=True)
    await client.wait()
    server.close()


# --- the measuring process -------------------------------------------------------------------------


@dataclass
class Run:
    target: str  # "vectra" or "baseline"
    rate: int
    count: int
    websockets: int
    zeromq: bool
    recorder: bool = False
    ring_size: int | None = None
    name: str | None = None

    @property
    def label(self) -> str:
        if self.name is not None:
            return f"{self.name:<33}"
        fan = f"{self.websockets} WS" + (" + 1 ZMQ" if self.zeromq else "")
        if self.target == "baseline":
            return f"baseline  {fan:<13}"
        return f"vectra    {fan:<13} rec {'on ' if self.recorder else 'off'}"


def get_json(url: str, timeout: float = 120) -> dict:
    with urllib.request.urlopen(url, timeout=timeout) as reply:
        return orjson.loads(reply.read())


def wait_until(check, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if check():
                return
        except OSError:
            pass
        time.sleep(0.1)
    raise TimeoutError(f"gave up waiting for {what}")


def settle(pid: int, timeout: float = 20) -> None:
    """Wait until the daemon is idle (its start-up, e.g. the recorder's worker importing pyarrow, is not
    the feed's cost): under 5 % of a core over half a second."""
    deadline = time.monotonic() + timeout
    before = cpu_seconds(pid)
    while time.monotonic() < deadline:
        time.sleep(0.5)
        now = cpu_seconds(pid)
        if now - before < IDLE_CPU_S:
            return
        before = now


class Processes:
    """Every process a run starts, stopped (by its own pid) whatever happens."""

    def __init__(self) -> None:
        self.started: list[subprocess.Popen] = []

    def start(self, args: list[str], **kwargs) -> subprocess.Popen:
        process = subprocess.Popen(args, cwd=REPO, **kwargs)
        self.started.append(process)
        return process

    def stop(self) -> None:
        for process in reversed(self.started):
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
        for process in reversed(self.started):
            try:
                process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


def start_target(run: Run, processes: Processes, feed_port: int, data: Path, profile: Path | None) -> tuple[subprocess.Popen, str, str]:
    http_port, zmq_url = free_port(), f"tcp://127.0.0.1:{free_port()}"
    feed_url = f"http://127.0.0.1:{feed_port}"
    if run.target == "baseline":
        process = processes.start([sys.executable, __file__, "--baseline", feed_url, str(http_port), zmq_url],
                                  stdout=subprocess.PIPE, text=True)
        if process.stdout.readline().strip() != "ready":
            raise RuntimeError("the baseline did not start")
    else:
        env = {**os.environ, "VECTRA_DATA_DIR": str(data), "VECTRA_FEED_URL": feed_url,
               "VECTRA_HTTP_PORT": str(http_port), "VECTRA_ZMQ_PUB": zmq_url,
               "VECTRA_ZMQ_ROUTER": f"tcp://127.0.0.1:{free_port()}", "VECTRA_RECORD": str(run.recorder).lower(),
               "VECTRA_STALE_AFTER_S": "60"}
        if run.ring_size is not None:
            env["VECTRA_RING_SIZE"] = str(run.ring_size)
        prefix = [sys.executable, "-m", "cProfile", "-o", str(profile)] if profile else [sys.executable]
        process = processes.start([*prefix, "-m", "vectra_cli", "--daemon"], env=env, stderr=subprocess.DEVNULL)
        wait_until(lambda: get_json(f"http://127.0.0.1:{http_port}/health", 2) is not None, 30, "the daemon")
    wait_until(lambda: get_json(f"{feed_url}/clients", 2)["clients"] == 1, 30, "the feed connection")
    return process, f"ws://127.0.0.1:{http_port}/ws", zmq_url


def measure(run: Run, profile: Path | None = None) -> dict:
    processes = Processes()
    with tempfile.TemporaryDirectory() as tmp:
        tmp_path = Path(tmp)
        try:
            feed_port = free_port()
            processes.start([sys.executable, str(REPO / "bench" / "feed_server.py"), str(feed_port), "--paced"])
            wait_until(lambda: get_json(f"http://127.0.0.1:{feed_port}/clients", 2) is not None, 20, "the feed server")
            target, ws_url, zmq_url = start_target(run, processes, feed_port, tmp_path / "data", profile)
            subscribers = [("ws", ws_url)] * run.websockets + ([("zmq", zmq_url)] if run.zeromq else [])
            progress = [tmp_path / f"sub{index}" for index in range(len(subscribers))]
            readers = [
                processes.start([sys.executable, __file__, "--subscriber", kind, url, str(path)],
                                stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
                for (kind, url), path in zip(subscribers, progress)
            ]
            wait_until(lambda: all(path.exists() for path in progress), 30, "the subscribers")
            time.sleep(0.5)  # ZeroMQ subscriptions reach the publisher asynchronously
            settle(target.pid)
            cpu_before = cpu_times(target.pid)
            poured = get_json(f"http://127.0.0.1:{feed_port}/pour?rate={run.rate}&count={run.count}")
            counts, last_change = None, time.monotonic()
            while time.monotonic() - last_change < DRAIN_IDLE_S:
                now = [int(path.read_text() or 0) for path in progress]
                if min(now) >= run.count:
                    break
                if now != counts:
                    counts, last_change = now, time.monotonic()
                time.sleep(0.1)
            user, system = (after - before for after, before in zip(cpu_times(target.pid), cpu_before))
            rss = resident_mb(target.pid)
            results = []
            for reader in readers:
                reader.stdin.close()
                results.append(json.loads(reader.stdout.readline()))
        finally:
            processes.stop()
        latencies = [value for result in results for value in result["latencies"]]
        return {
            "run": run,
            "delivered": min(result["received"] for result in results) / run.count,
            "p50": percentile(latencies, 0.50),
            "p99": percentile(latencies, 0.99),
            "us_per_frame": (user + system) / run.count * 1e6,
            "sys_us_per_frame": system / run.count * 1e6,
            "rss_mb": rss,
            "achieved": poured["sent"] / poured["seconds"],
            "errors": [result["error"] for result in results if result["error"]],
        }


def fmt(value: float | None, digits: int = 1) -> str:
    return "-" if value is None else f"{value:,.{digits}f}"


def print_row(result: dict) -> None:
    run = result["run"]
    errors = f"  ({len(result['errors'])} subscriber(s) failed: {result['errors'][0]})" if result["errors"] else ""
    print(f"| {run.label} | {run.rate:>5,} | {result['achieved']:>6,.0f} | {result['delivered'] * 100:6.2f} % "
          f"| {fmt(result['p50'], 2):>7} | {fmt(result['p99'], 2):>8} | {fmt(result['us_per_frame'], 0):>6} "
          f"| {fmt(result['sys_us_per_frame'], 0):>12} "
          f"| {fmt(result['rss_mb'], 0):>5} |{errors}", flush=True)


def lossless_rate(results: list[dict]) -> int:
    """The highest rate of the ladder up to which every rate was delivered completely."""
    best = 0
    for result in sorted(results, key=lambda r: r["run"].rate):
        if result["delivered"] < 1.0 or result["errors"]:
            break
        best = result["run"].rate
    return best


def print_profile(path: Path, top: int = 30) -> None:
    stats = pstats.Stats(str(path))
    stats.sort_stats("tottime").print_stats(top)
    stats.sort_stats("cumulative").print_stats(top)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="2 s per run, 1,000 and 2,000 frames/s only")
    parser.add_argument("--profile", nargs="?", const="", default=None, metavar="FILE",
                        help="one run under cProfile, then its hot path (the raw profile kept in FILE if given)")
    parser.add_argument("--rates", default=None, help="comma-separated frames/s (default 1000,2000,4000)")
    parser.add_argument("--seconds", type=float, default=None, help="length of each pour (default 5, quick 2)")
    parser.add_argument("--match", default="", help="only the runs whose label matches this regex, e.g. '1 WS .*rec off'")
    parser.add_argument("--subscriber", nargs=3, help=argparse.SUPPRESS)
    parser.add_argument("--baseline", nargs=3, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.subscriber:
        kind, url, path = args.subscriber
        asyncio.run(subscriber_main(kind, url, Path(path)))
        return
    if args.baseline:
        feed_url, port, zmq_url = args.baseline
        asyncio.run(baseline_main(feed_url, int(port), zmq_url))
        return

    rates = [int(r) for r in (args.rates or ("1000,2000" if args.quick else "1000,2000,4000")).split(",")]
    seconds = args.seconds or (2.0 if args.quick else 5.0)
    runs = [
        run
        for rate in rates
        for run in (
            Run("vectra", rate, int(rate * seconds), 1, False, recorder=False),
            Run("vectra", rate, int(rate * seconds), 1, False, recorder=True),
            Run("baseline", rate, int(rate * seconds), 1, False),
            Run("vectra", rate, int(rate * seconds), 10, True, recorder=False),
            Run("vectra", rate, int(rate * seconds), 10, True, recorder=True),
            Run("baseline", rate, int(rate * seconds), 10, True),
        )
        if re.search(args.match, run.label)
    ]
    if args.profile is not None:
        with tempfile.TemporaryDirectory() as tmp:
            profile = Path(args.profile or Path(tmp) / "daemon.prof")
            print_row(measure(next(run for run in runs if run.target == "vectra"), profile))
            print_profile(profile)
        return

    print(f"load average before: {os.getloadavg()[0]:.2f} {os.getloadavg()[1]:.2f} {os.getloadavg()[2]:.2f} "
          f"({os.cpu_count()} cores); {seconds:g} s per run")
    print("| run                               | rate  | sent/s | delivered | p50 ms  | p99 ms   | µs/fr  | of it kernel | RSS MB|")
    print("|---|---|---|---|---|---|---|---|---|")
    results: list[dict] = []
    for run in runs:
        result = measure(run)
        results.append(result)
        print_row(result)
    fill = Run("vectra", 4000, RING_FILL_EVENTS // 2 + 1000, 1, False, name="vectra ring full, 1 WS, rec off")
    if re.search(args.match, fill.label):
        print_row(measure(fill))
    vectra = [r for r in results if r["run"].target == "vectra" and r["run"].websockets == 10 and r["run"].recorder]
    baseline = [r for r in results if r["run"].target == "baseline" and r["run"].websockets == 10]
    ours, theirs = lossless_rate(vectra), lossless_rate(baseline)
    ratio = f"{ours / theirs:.2f}" if theirs else "-"
    print(f"lossless rate (10 WS + 1 ZMQ): vectra with the recorder {ours:,}/s, baseline {theirs:,}/s: ratio {ratio}")
    print(f"load average after: {os.getloadavg()[0]:.2f} {os.getloadavg()[1]:.2f} {os.getloadavg()[2]:.2f}")


if __name__ == "__main__":
    main()
