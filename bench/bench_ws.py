"""WebSocket broadcast benchmark: latency, highest loss-free rate, and the bare-websockets ceiling.

    .venv/bin/python bench/bench_ws.py [--quick]

This process runs the foundation (HTTP/WebSocket server, plus the ZeroMQ transport when present) and
publishes synthetic 5 KB events straight onto its bus; the subscribers run in a second process, so
they do not share this process's event loop. Each event carries its publish time (`t_ns`), and the
subscriber subtracts it from its receive time (same machine, same clock): the latency printed is
publish-to-subscriber, i.e. what the broadcast adds, without the feed.

Phases:
0. end to end, as in production: the simulator and `vectra --daemon` as subprocesses, a WebSocket
   subscriber here stamping each `game.tick` on arrival, matched by (gameId, tickCount,
   cooldownTimer) with its emit time in the simulator's `/admin/emitted` log; at the real rate
   (speed 1) and with the simulator sped up to about 1,000 events/s;
1. latency with 1 WebSocket (+1 ZeroMQ) subscriber at the real feed's rate (~20 events/s) and at
   1,000 events/s;
2. the highest rate from a ladder that 10 WebSocket (+1 ZeroMQ) subscribers sustain with zero loss
   (every event received, nobody cut off, p99 latency under 500 ms, i.e. no growing backlog);
3. the same ladder against a bare websockets server that calls `websockets.broadcast()` per event,
   as the ceiling of this machine, and the ratio of the two.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

import orjson

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

EVENT_BYTES = 5000
REAL_RATE = 20
LADDER = (250, 500, 1000, 2000, 3000, 4000, 6000, 8000, 10000)
SUSTAINED_P99_MS = 500.0
PHASE_TIMEOUT_S = 15.0
E2E_WINDOW_S = 6.0
FAST_SPEED = 90  # simulator clock multiplier giving roughly 1,000 events/s out of the daemon
# Subscribers read the few fields they need from the front of each event instead of parsing 5 KB
# of JSON, so that the subscriber process is not what the benchmark measures.
BENCH_FIELDS = re.compile(rb'"phase":"([^"]+)","i":(\d+),"t_ns":(\d+)')


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def event_data(phase: str, index: int) -> dict:
    return {"phase": phase, "i": index, "t_ns": time.time_ns(), "pad": "x" * (EVENT_BYTES - 120)}


def percentile(values: list[float], fraction: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(len(ordered) * fraction))]


# --- the subscriber process ------------------------------------------------------------------------


class PhaseTally:
    """One subscriber's view of one phase: how many events, which were missing, their latencies."""

    def __init__(self) -> None:
        self.indexes: set[int] = set()
        self.latencies_ms: list[float] = []

    def add(self, index: int, latency_ns: int) -> None:
        self.indexes.add(index)
        self.latencies_ms.append(latency_ns / 1e6)

    def report(self, name: str, expected: int) -> dict:
        return {
            "subscriber": name,
            "received": len(self.indexes),
            "missing": expected - len(self.indexes & set(range(expected))),
            "p50_ms": percentile(self.latencies_ms, 0.5),
            "p99_ms": percentile(self.latencies_ms, 0.99),
        }


async def subscriber_main(ws_url: str, clients: int, zmq_url: str | None) -> None:
    """Subscribe, then print one JSON line per subscriber and phase when the phase's end marker arrives."""
    from websockets.asyncio.client import connect

    tallies: dict[tuple[str, str], PhaseTally] = {}

    def handle(name: str, message: bytes) -> None:
        received_ns = time.time_ns()
        fields = BENCH_FIELDS.search(message, 0, 300)
        if fields is None:  # the end marker, or not a bench event
            data = orjson.loads(message).get("data", {})
            if data.get("end"):
                tally = tallies.pop((name, data["phase"]), PhaseTally())
                print(json.dumps({"phase": data["phase"], **tally.report(name, data["count"])}), flush=True)
            return
        phase, index, sent_ns = fields.group(1).decode(), int(fields.group(2)), int(fields.group(3))
        tallies.setdefault((name, phase), PhaseTally()).add(index, received_ns - sent_ns)

    async def websocket_client(index: int) -> None:
        name = f"ws{index}"
        async with connect(ws_url, compression=None, max_size=None) as client:
            await client.send(json.dumps({"action": "subscribe", "channels": ["bench.*"]}))
            try:
                while True:
                    handle(name, await client.recv(decode=False))
            except Exception as exc:  # a cut-off subscriber is a result, not a crash
                print(json.dumps({"phase": "*", "subscriber": name, "closed": repr(exc)}), flush=True)

    async def zmq_client() -> None:
        import zmq
        import zmq.asyncio

        context = zmq.asyncio.Context()
        sub = context.socket(zmq.SUB)
        sub.setsockopt(zmq.RCVHWM, 0)
        sub.connect(zmq_url)
        sub.subscribe(b"bench.")
        while True:
            _, body = await sub.recv_multipart()
            handle("zmq", body)

    tasks = [asyncio.create_task(websocket_client(index)) for index in range(clients)]
    if zmq_url:
        tasks.append(asyncio.create_task(zmq_client()))
    await asyncio.sleep(1.0)
    print(json.dumps({"ready": True}), flush=True)
    await asyncio.gather(*tasks)


# --- the publishing side ---------------------------------------------------------------------------


class Subscribers:
    """The subscriber process, and the per-phase reports it prints."""

    def __init__(self, ws_url: str, clients: int, zmq_url: str | None) -> None:
        args = [sys.executable, __file__, "--subscriber", ws_url, str(clients), zmq_url or "-"]
        self.process = subprocess.Popen(args, stdout=subprocess.PIPE, text=True, cwd=REPO)
        self.expected = clients + (1 if zmq_url else 0)
        self._lines: asyncio.Queue[dict] = asyncio.Queue()

    async def ready(self) -> None:
        loop = asyncio.get_running_loop()
        loop.run_in_executor(None, self._pump, loop)
        while "ready" not in await self._lines.get():
            pass

    def _pump(self, loop: asyncio.AbstractEventLoop) -> None:
        for line in self.process.stdout:
            loop.call_soon_threadsafe(self._lines.put_nowait, json.loads(line))

    async def phase_reports(self, phase: str) -> list[dict]:
        reports: list[dict] = []
        deadline = time.monotonic() + PHASE_TIMEOUT_S
        while len(reports) < self.expected:
            try:
                line = await asyncio.wait_for(self._lines.get(), timeout=max(0.01, deadline - time.monotonic()))
            except asyncio.TimeoutError:
                break
            if line.get("phase") in (phase, "*"):
                reports.append(line)
        return reports

    def stop(self) -> None:
        self.process.kill()
        self.process.wait()


async def paced(rate: int, seconds: float, publish_one) -> tuple[int, float]:
    """Call `publish_one(i)` `rate` times a second for `seconds`; returns (count, achieved rate)."""
    started = time.perf_counter()
    sent = 0
    total = int(rate * seconds)
    while sent < total:
        due = min(total, int(rate * (time.perf_counter() - started)) + 1)
        while sent < due:
            publish_one(sent)
            sent += 1
        await asyncio.sleep(0.001)
    elapsed = time.perf_counter() - started
    return sent, sent / elapsed


async def run_phase(subscribers: Subscribers, publish, phase: str, rate: int, seconds: float) -> dict:
    count, achieved = await paced(rate, seconds, lambda index: publish(event_data(phase, index)))
    publish({"phase": phase, "end": True, "count": count, "t_ns": time.time_ns()})
    reports = await subscribers.phase_reports(phase)
    complete = len(reports) == subscribers.expected and all("closed" not in r for r in reports)
    lossless = complete and all(r["missing"] == 0 for r in reports)
    p99s = [r["p99_ms"] for r in reports if r.get("p99_ms") is not None]
    p50s = [r["p50_ms"] for r in reports if r.get("p50_ms") is not None]
    return {
        "phase": phase,
        "target": rate,
        "achieved": round(achieved),
        "lossless": lossless,
        "p50_ms": max(p50s) if p50s else None,
        "p99_ms": max(p99s) if p99s else None,
        "reports": reports,
    }


def sustained(result: dict) -> bool:
    return (
        result["lossless"]
        and result["achieved"] >= 0.95 * result["target"]
        and result["p99_ms"] is not None
        and result["p99_ms"] < SUSTAINED_P99_MS
    )


async def ladder(subscribers: Subscribers, publish, label: str, seconds: float) -> int:
    best = 0
    for rate in LADDER:
        result = await run_phase(subscribers, publish, f"{label}-{rate}", rate, seconds)
        ok = sustained(result)
        print(
            f"  {label:8} {rate:>6}/s: achieved {result['achieved']:>6}/s, "
            f"{'no loss' if result['lossless'] else 'LOSS/CUT'}, p50 {fmt(result['p50_ms'])}, "
            f"p99 {fmt(result['p99_ms'])} -> {'sustained' if ok else 'not sustained'}",
            flush=True,
        )
        for report in result["reports"]:
            if report.get("closed") or report.get("missing"):
                print(f"    {report['subscriber']}: {report.get('closed') or str(report['missing']) + ' missing'}")
        if not ok:
            break
        best = rate
    return best


def fmt(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f} ms"


async def vectra_server(data_dir: Path):
    from core.broadcast.http_ws import HttpWsServer
    from core.config import Settings
    from core.foundation import Foundation

    settings = Settings(
        _env_file=None,
        data_dir=data_dir,
        http_port=0,
        zmq_pub=f"tcp://127.0.0.1:{free_port()}",
        zmq_router=f"tcp://127.0.0.1:{free_port()}",
    )
    foundation = Foundation(settings)
    server = HttpWsServer(foundation)
    foundation.add_component(server)
    zmq_url = None
    try:
        from core.broadcast.zmq_transport import ZmqTransport

        foundation.add_component(ZmqTransport(foundation))
        zmq_url = settings.zmq_pub
    except ImportError:
        print("(ZeroMQ transport not available: WebSocket subscribers only)")
    await foundation.start()
    return foundation, server, zmq_url


async def bare_clients(port: int = 0):
    """A websockets server that only keeps the set of its clients, for `websockets.broadcast()`."""
    import websockets
    from websockets.asyncio.server import serve

    clients: set = set()

    async def handler(connection) -> None:
        clients.add(connection)
        try:
            async for _ in connection:
                pass
        except websockets.ConnectionClosed:
            pass
        finally:
            clients.discard(connection)

    return await serve(handler, "127.0.0.1", port, compression=None), clients


async def bare_server():
    """The ceiling: websockets' own broadcast(), no queues, no filters, no sequencing."""
    import websockets

    server, clients = await bare_clients()
    port = server.sockets[0].getsockname()[1]

    def publish(data: dict) -> None:
        message = orjson.dumps({"v": 1, "seq": 0, "type": "bench.event", "data": data})
        websockets.broadcast(clients, message.decode())

    return server, port, publish


async def wait_for_http(url: str, timeout: float = 20.0) -> dict | None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            reply = await asyncio.to_thread(urllib.request.urlopen, url, None, 1)
            return json.loads(reply.read())
        except (OSError, ValueError):
            await asyncio.sleep(0.2)
    raise RuntimeError(f"{url} did not answer within {timeout:g} s")


async def end_to_end(speed: float, window_s: float) -> dict:
    """Simulator emit -> daemon -> WebSocket subscriber, both services as real subprocesses."""
    from websockets.asyncio.client import connect

    sim_port, http_port = free_port(), free_port()
    scratch = tempfile.mkdtemp(prefix="bench-ws-")
    env = {
        **os.environ,
        "VECTRA_SOURCE": "socketio",
        "VECTRA_DATA_DIR": scratch,
        "VECTRA_FEED_URL": f"http://127.0.0.1:{sim_port}",
        "VECTRA_HTTP_PORT": str(http_port),
        "VECTRA_ZMQ_PUB": f"tcp://127.0.0.1:{free_port()}",
        "VECTRA_ZMQ_ROUTER": f"tcp://127.0.0.1:{free_port()}",
        "VECTRA_CDP_PORT": str(free_port()),
        "VECTRA_LOG_LEVEL": "WARNING",
    }
    quiet = {"cwd": REPO, "stdout": subprocess.DEVNULL, "stderr": subprocess.DEVNULL}
    sim = subprocess.Popen([sys.executable, "-m", "vectra_cli", "sim", "--port", str(sim_port), "--speed", str(speed),
                            "--seed", "3"], **quiet)
    daemon = None
    arrivals: dict[tuple, float] = {}
    try:
        await wait_for_http(f"http://127.0.0.1:{sim_port}/admin/state")
        daemon = subprocess.Popen([sys.executable, "-m", "vectra_cli", "--daemon"], env=env, **quiet)
        health_url = f"http://127.0.0.1:{http_port}/health"
        await wait_for_http(health_url)
        await asyncio.sleep(1.0)  # connected and warm
        async with connect(f"ws://127.0.0.1:{http_port}/ws", compression=None, max_size=None) as client:
            await client.send(json.dumps({"action": "subscribe", "channels": ["game.tick"]}))
            deadline = time.monotonic() + window_s
            while time.monotonic() < deadline:
                try:
                    message = await asyncio.wait_for(client.recv(decode=False), timeout=0.5)
                except asyncio.TimeoutError:
                    continue
                arrived_ms = time.time() * 1000
                envelope = orjson.loads(message)
                if envelope.get("type") == "game.tick":
                    data = envelope["data"]
                    key = (envelope["gameId"], data.get("tickCount"), data.get("cooldownTimer"))
                    arrivals.setdefault(key, arrived_ms)
        rate = (await wait_for_http(health_url))["events_per_s"]
        emitted = await wait_for_http(f"http://127.0.0.1:{sim_port}/admin/emitted?since=0")
    finally:
        for process in (daemon, sim):
            if process is not None:
                process.terminate()
                process.wait(timeout=10)
    emit_ms: dict[tuple, float] = {}
    for entry in emitted:
        if entry["event"] == "gameStateUpdate":
            emit_ms.setdefault((entry["gameId"], entry["tickCount"], entry["cooldownTimer"]), entry["ts_ms"])
    latencies = [arrivals[key] - emit_ms[key] for key in arrivals if key in emit_ms]
    return {"speed": speed, "events_per_s": rate, "samples": len(latencies),
            "p50_ms": percentile(latencies, 0.5), "p99_ms": percentile(latencies, 0.99)}


async def main(quick: bool) -> None:
    seconds = 1.5 if quick else 3.0
    started = time.monotonic()
    print(f"bench_ws: {os.cpu_count()} CPUs, load {os.getloadavg()[0]:.1f}; events of {EVENT_BYTES} bytes")
    print("\nEnd to end, simulator emit -> vectra --daemon -> WebSocket subscriber (game.tick):")
    for speed in (1, FAST_SPEED):
        result = await end_to_end(speed, E2E_WINDOW_S / (2 if quick else 1))
        print(
            f"  speed {speed:>3} (~{result['events_per_s']:.0f} events/s out of the daemon): "
            f"p50 {fmt(result['p50_ms'])}, p99 {fmt(result['p99_ms'])} over {result['samples']} ticks"
        )
    with tempfile.TemporaryDirectory() as scratch:
        foundation, server, zmq_url = await vectra_server(Path(scratch))

        def publish(data: dict) -> None:
            foundation.bus.publish("bench.event", data, source="socketio")

        ws_url = f"ws://127.0.0.1:{server.port}/ws"
        print("\nLatency, publish to subscriber (1 WebSocket" + (" + 1 ZeroMQ" if zmq_url else "") + " subscriber):")
        one = Subscribers(ws_url, 1, zmq_url)
        await one.ready()
        for rate, length in ((REAL_RATE, 5.0 if not quick else 2.0), (1000, seconds + 2)):
            result = await run_phase(one, publish, f"latency-{rate}", rate, length)
            for report in result["reports"]:
                kind = "ZeroMQ" if report["subscriber"] == "zmq" else "WebSocket"
                print(
                    f"  {rate:>5}/s {kind:9}: p50 {fmt(report.get('p50_ms'))}, p99 {fmt(report.get('p99_ms'))}, "
                    f"missing {report.get('missing', '?')}"
                )
        one.stop()

        print("\nHighest sustained rate, 10 WebSocket" + (" + 1 ZeroMQ" if zmq_url else "") + " subscribers, zero loss:")
        ten = Subscribers(ws_url, 10, zmq_url)
        await ten.ready()
        vectra_best = await ladder(ten, publish, "vectra", seconds)
        ten.stop()
        await foundation.stop()

        bare, bare_port, bare_publish = await bare_server()
        bare_subscribers = Subscribers(f"ws://127.0.0.1:{bare_port}/", 10, None)
        await bare_subscribers.ready()
        bare_best = await ladder(bare_subscribers, bare_publish, "bare", seconds)
        bare_subscribers.stop()
        bare.close()
        await bare.wait_closed()

    print("\nSummary")
    print(f"  vectra sustained (10 WS{' + 1 ZMQ' if zmq_url else ''}): {vectra_best} events/s of {EVENT_BYTES} B")
    print(f"  bare websockets.broadcast ceiling (10 WS): {bare_best} events/s")
    ratio = vectra_best / bare_best if bare_best else float("nan")
    print(f"  ratio vectra / bare: {ratio:.2f}")
    print(f"  (ladder {LADDER}, {seconds:g} s per step; run took {time.monotonic() - started:.0f} s)")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="shorter steps (about half the time)")
    parser.add_argument("--subscriber", nargs=3, metavar=("WS_URL", "CLIENTS", "ZMQ_URL"), help=argparse.SUPPRESS)
    arguments = parser.parse_args()
    if arguments.subscriber:
        url, count, zmq = arguments.subscriber
        asyncio.run(subscriber_main(url, int(count), None if zmq == "-" else zmq))
    else:
        asyncio.run(main(arguments.quick))
