"""ZeroMQ broadcast benchmark: latency from the simulator's emit to a subscriber, and sustained rate.

    .venv/bin/python bench/bench_zmq.py

1. Latency: the simulator and the daemon run as subprocesses (as in production); a SUB socket here
   stamps each `game.tick` on arrival and matches it, by (gameId, tickCount, cooldownTimer), with the
   emit time in the simulator's `/admin/emitted` log. Once at the real rate (speed 1) and once with
   the simulator sped up to about 1,000 events/s. Printed alongside: from the daemon's receive stamp
   (the envelope's `timestamp`) to the subscriber, the daemon's own receive -> publish figure from
   `health`, and a bare pyzmq PUB -> SUB at 1,000 5 KB messages/s measured right after.
2. Sustained rate: synthetic 5 KB envelopes go through the real path (`EventBus.publish`: seq, ring,
   serialization, XPUB) at rising rates to one SUB in another process; the highest rate it receives
   entirely (no `seq` missing) is the result. The same ramp runs against a bare pyzmq PUB -> SUB pair
   in the same run, which is the ceiling of this machine; the ratio is printed.

Runs in well under two minutes; figures on a shared, loaded machine vary from run to run.
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

import orjson
import zmq

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from bench.bench_ws import paced  # noqa: E402
from core.broadcast.zmq_transport import ZmqTransport  # noqa: E402
from core.client import request  # noqa: E402
from core.config import load_settings  # noqa: E402
from core.foundation import Foundation  # noqa: E402
from tests.conftest import free_port  # noqa: E402

PYTHON = sys.executable
RATES = (2_000, 3_000, 4_000, 6_000, 8_000, 12_000, 16_000, 24_000, 32_000, 48_000)
STEP_S = 1.5
PAYLOAD_BYTES = 5_000
LATENCY_WINDOW_S = 8.0
FAST_SPEED = 70  # simulator clock multiplier giving roughly 1,000 events/s out of the daemon

# The subscriber of the rate ramp: counts messages until the `end` channel, then prints one JSON line.
COUNTER = r"""
import sys, zmq, orjson
sock = zmq.Context().socket(zmq.SUB)
sock.setsockopt(zmq.RCVHWM, 10_000)
sock.connect(sys.argv[1])
sock.subscribe(b"")
print("ready", flush=True)
while True:
    count, seqs = 0, set()
    while True:
        channel, body = sock.recv_multipart()
        if channel == b"end":
            break
        if channel == b"sys.heartbeat":
            continue
        count += 1
        start = body.index(b'"seq":') + 6
        seqs.add(int(body[start:body.index(b",", start)]))
    print(orjson.dumps({"count": count, "distinct": len(seqs), "sent": orjson.loads(body)["sent"]}).decode(), flush=True)
"""


# The subscriber of the bare latency run: arrival minus the send stamp in frame 1, until `end`.
BARE_LATENCY = r"""
import sys, time, zmq, orjson
sock = zmq.Context().socket(zmq.SUB)
sock.connect(sys.argv[1])
sock.subscribe(b"")
print("ready", flush=True)
delays = []
while True:
    stamp, body = sock.recv_multipart()
    if stamp == b"end":
        break
    delays.append(time.time() * 1000 - float(stamp))
    orjson.loads(body)
print(orjson.dumps(sorted(delays)).decode(), flush=True)
"""


def percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(len(ordered) * share))]


# --- latency ------------------------------------------------------------------------------------


def start_process(args: list[str], env: dict[str, str] | None = None) -> subprocess.Popen:
    return subprocess.Popen(
        args, cwd=REPO, env={**os.environ, **(env or {})}, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )


def wait_for_http(url: str, timeout: float = 20) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            urllib.request.urlopen(url, timeout=1).read()
            return
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.1)


def receive_ticks(endpoint: str, seconds: float, arrivals: dict, beats: list[tuple[float, int]], hops: list[float]) -> None:
    """Stamp every game.tick on arrival; `hops` gets arrival minus the daemon's receive stamp, `beats`
    the heartbeats' (time, last_seq) for the event rate. Only these two channels are subscribed, so
    this subscriber stays light while the simulator and the daemon share the CPU with it."""
    sock = zmq.Context.instance().socket(zmq.SUB)
    sock.connect(endpoint)
    sock.subscribe(b"game.tick")
    sock.subscribe(b"sys.heartbeat")
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if not sock.poll(100):
            continue
        channel, body = sock.recv_multipart()
        now_ms = time.time() * 1000
        message = orjson.loads(body)
        if channel == b"sys.heartbeat":
            beats.append((time.monotonic(), message["last_seq"]))
            continue
        data = message["data"]
        arrivals.setdefault((message["gameId"], data.get("tickCount"), data.get("cooldownTimer")), now_ms)
        hops.append(now_ms - message["timestamp"])
    sock.close(linger=0)


def latency_run(speed: float) -> dict:
    sim_port = free_port()
    workdir = tempfile.mkdtemp(prefix="bench-zmq-")
    env = {
        "VECTRA_SOURCE": "socketio",
        "VECTRA_DATA_DIR": workdir,
        "VECTRA_FEED_URL": f"http://127.0.0.1:{sim_port}",
        "VECTRA_ZMQ_PUB": f"tcp://127.0.0.1:{free_port()}",
        "VECTRA_ZMQ_ROUTER": f"tcp://127.0.0.1:{free_port()}",
        "VECTRA_HTTP_PORT": str(free_port()),
        "VECTRA_CDP_PORT": str(free_port()),
        "VECTRA_LOG_LEVEL": "WARNING",
    }
    sim = start_process([PYTHON, "-m", "vectra_cli", "sim", "--port", str(sim_port), "--speed", str(speed), "--seed", "3"])
    daemon = None
    try:
        wait_for_http(f"http://127.0.0.1:{sim_port}/admin/state")
        daemon = start_process([PYTHON, "-m", "vectra_cli", "--daemon"], env)
        time.sleep(3.0)  # daemon connected and warm
        arrivals: dict = {}
        beats: list[tuple[float, int]] = []
        hops: list[float] = []
        receive_ticks(env["VECTRA_ZMQ_PUB"], LATENCY_WINDOW_S, arrivals, beats, hops)
        pipeline = request({"action": "health"}, router=env["VECTRA_ZMQ_ROUTER"])["data"]["latency_ms"]["pipeline"]
        with urllib.request.urlopen(f"http://127.0.0.1:{sim_port}/admin/emitted?since=0", timeout=5) as reply:
            emitted = json.loads(reply.read())
    finally:
        for process in (daemon, sim):
            if process is not None:
                process.terminate()
                process.wait(timeout=10)
    emit_ms = {}
    for entry in emitted:
        if entry["event"] == "gameStateUpdate":
            emit_ms.setdefault((entry["gameId"], entry["tickCount"], entry["cooldownTimer"]), entry["ts_ms"])
    latencies = [arrivals[key] - emit_ms[key] for key in arrivals if key in emit_ms]
    events_per_s = (beats[-1][1] - beats[0][1]) / (beats[-1][0] - beats[0][0]) if len(beats) > 1 else 0.0
    return {
        "speed": speed,
        "events_per_s": round(events_per_s),
        "samples": len(latencies),
        "p50_ms": round(percentile(latencies, 0.50), 2) if latencies else None,
        "p99_ms": round(percentile(latencies, 0.99), 2) if latencies else None,
        "hop_p50_ms": round(percentile(hops, 0.50), 1) if hops else None,
        "hop_p99_ms": round(percentile(hops, 0.99), 1) if hops else None,
        "pipeline": pipeline,
    }


def bare_latency(rate: int, seconds: float) -> dict:
    """A bare pyzmq PUB -> SUB (other process) at `rate` 5 KB messages/s: this machine's floor now."""
    endpoint = f"tcp://127.0.0.1:{free_port()}"
    sock = zmq.Context.instance().socket(zmq.PUB)
    sock.bind(endpoint)
    subscriber = subprocess.Popen([PYTHON, "-c", BARE_LATENCY, endpoint], stdout=subprocess.PIPE, text=True)
    try:
        assert subscriber.stdout.readline().strip() == "ready"
        time.sleep(0.5)
        body = orjson.dumps({"data": synthetic_tick(0)})
        start = time.perf_counter()
        for n in range(int(rate * seconds)):
            while time.perf_counter() - start < n / rate:
                time.sleep(0.0005)
            sock.send_multipart([b"%.3f" % (time.time() * 1000), body])
        sock.send_multipart([b"end", b""])
        delays = json.loads(subscriber.stdout.readline())
    finally:
        subscriber.kill()
        subscriber.wait()
        sock.close(linger=0)
    return {"p50_ms": round(percentile(delays, 0.5), 2), "p99_ms": round(percentile(delays, 0.99), 2)}


# --- sustained rate -----------------------------------------------------------------------------


def synthetic_tick(n: int) -> dict:
    """About 5 KB once serialized, shaped like a genesis tick (nested objects, numbers, strings)."""
    return {
        "tickCount": n,
        "price": 1.0 + n % 100 / 100,
        "phase": "ACTIVE",
        "leaderboard": [{"id": f"player-{i}", "username": f"user{i}", "pnl": i * 0.001, "position": i} for i in range(75)],
    }


class Counter:
    """The counting subscriber subprocess."""

    def __init__(self, endpoint: str) -> None:
        self.proc = subprocess.Popen([PYTHON, "-c", COUNTER, endpoint], stdout=subprocess.PIPE, text=True)
        assert self.proc.stdout.readline().strip() == "ready"

    def result(self) -> dict:
        return json.loads(self.proc.stdout.readline())

    def close(self) -> None:
        self.proc.kill()
        self.proc.wait()


async def ramp(label: str, endpoint: str, send, end) -> int:
    """Highest rate actually sent with every event received, over the steps of RATES; the ramp
    stops at the first loss or when the publisher no longer reaches 90% of the step's target."""
    counter = Counter(endpoint)
    best = 0
    try:
        await asyncio.sleep(0.5)  # subscription reaches the publisher
        for rate in RATES:
            sent, achieved = await paced(rate, STEP_S, send)
            await asyncio.sleep(0.3)
            end(sent)
            result = await asyncio.to_thread(counter.result)
            complete = result["distinct"] == sent
            print(f"  {label:<8} target {rate:>6}/s  sent {achieved:>8.0f}/s  received {result['distinct']:>6}/{sent}"
                  f"  {'complete' if complete else 'LOSS'}", flush=True)
            if complete:
                best = max(best, round(achieved))
            if not complete or achieved < 0.9 * rate:
                break
    finally:
        counter.close()
    return best


async def vectra_rate() -> int:
    settings = load_settings(
        {
            "data_dir": tempfile.mkdtemp(prefix="bench-zmq-"),
            "zmq_pub": f"tcp://127.0.0.1:{free_port()}",
            "zmq_router": f"tcp://127.0.0.1:{free_port()}",
            "log_level": "WARNING",
        }
    )
    foundation = Foundation(settings)
    foundation.add_component(ZmqTransport(foundation))
    await foundation.start()
    payloads = [synthetic_tick(n) for n in range(100)]
    size = len(foundation.bus.publish("game.tick", payloads[0], source="socketio").to_json())
    print(f"  vectra envelopes: {size} bytes each (EventBus.publish -> XPUB)")
    try:
        return await ramp(
            "vectra",
            settings.zmq_pub,
            lambda i: foundation.bus.publish("game.tick", payloads[i % 100], source="socketio"),
            lambda sent: foundation.bus.control({"type": "end", "sent": sent}),
        )
    finally:
        await foundation.stop()


async def bare_rate() -> int:
    endpoint = f"tcp://127.0.0.1:{free_port()}"
    sock = zmq.Context.instance().socket(zmq.PUB)
    sock.setsockopt(zmq.SNDHWM, 10_000)
    sock.bind(endpoint)
    bodies = [orjson.dumps({"v": 1, "seq": 0, "type": "game.tick", "data": synthetic_tick(n)}) for n in range(100)]

    def send(i: int) -> None:
        body = bodies[i % 100]
        sock.send_multipart([b"game.tick", b'{"v":1,"seq":%d' % (i + 1) + body[len(b'{"v":1,"seq":0'):]], flags=zmq.NOBLOCK)

    try:
        return await ramp("bare", endpoint, send, lambda sent: sock.send_multipart([b"end", orjson.dumps({"sent": sent})]))
    finally:
        sock.close(linger=0)


def main() -> None:
    started = time.monotonic()
    print("End-to-end latency, simulator emit -> daemon -> ZeroMQ subscriber (game.tick):", flush=True)
    for speed in (1, FAST_SPEED):
        result = latency_run(speed)
        print(f"  sim speed {result['speed']:>3}: {result['events_per_s']:>5} events/s, {result['samples']:>4} ticks"
              f"  p50 {result['p50_ms']} ms  p99 {result['p99_ms']} ms"
              f"  | daemon receive -> subscriber p50 {result['hop_p50_ms']} ms  p99 {result['hop_p99_ms']} ms"
              f" (ms stamps) | inside the daemon, receive -> publish p50 {result['pipeline']['p50']} ms"
              f"  p99 {result['pipeline']['p99']} ms", flush=True)
    floor = bare_latency(1_000, 4.0)
    print(f"  bare pyzmq PUB -> SUB at 1000 msgs/s (same machine, same moment): p50 {floor['p50_ms']} ms"
          f"  p99 {floor['p99_ms']} ms", flush=True)
    print(f"Sustained rate, ~{PAYLOAD_BYTES // 1000} KB events, 1 subscriber in another process, zero loss:", flush=True)
    vectra = asyncio.run(vectra_rate())
    bare = asyncio.run(bare_rate())
    ratio = f"{vectra / bare:.2f}" if bare else "n/a"
    print(f"RESULT vectra {vectra}/s  bare pyzmq {bare}/s  ratio {ratio}"
          f"  (ramp steps {', '.join(map(str, RATES))}; a step is complete when every seq arrives)")
    load = ", ".join(f"{value:.1f}" for value in os.getloadavg())
    print(f"bench took {time.monotonic() - started:.0f} s on {os.cpu_count()} cores, load average {load}")


if __name__ == "__main__":
    main()
