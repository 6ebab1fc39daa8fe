"""NATS JetStream bridge benchmark (issue 12): acked 5 KB events/s through the bridge, and the latency
from the feed to a NATS subscriber at 1,000 events/s.

    .venv/bin/python bench/bench_nats.py [--frames 20000] [--rate 4000] [--replicas 1|3]

Every part is its own process, as in bench_cost.py: the load (bench/feed_server.py pouring stamped
4.9 KB `gameStateUpdate` frames; each becomes two events, `raw.gameStateUpdate` of ~5 KB and
`game.tick`), a `nats-server` with JetStream (or a cluster of three), and `vectra --daemon` with the
bridge on (recorder off). This process is the subscriber.

1. Throughput: `--frames` frames poured at `--rate` frames/s, faster than the daemon ingests; `/health`
   is sampled until JetStream acknowledged the last event. Printed: the daemon's own publish rate,
   the bridge's acked rate over the same span (equal: the bridge keeps up), the largest backlog seen,
   the bridge alone (synthetic 5 KB ticks on an in-process bus, no feed: its own ceiling) and, as
   the machine's ceiling, a bare nats-py publisher (`publish_async`, the same window of acks)
   sending 5 KB messages to a stream of the same servers.
2. Latency: 500 frames/s (1,000 events/s) for 5 s; the client library (`subscribe(...,
   transport="nats")`) reads `raw.gameStateUpdate` and compares each frame's send stamp with its
   arrival: feed -> daemon -> JetStream -> subscriber, p50/p99 (same host, same clock). A ZeroMQ
   subscriber of the same daemon reads the same pour: the difference is what the bridge adds.
No figure is asserted anywhere; the load average is printed, as the machine's load moves them.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import nats
from nats.js.api import StreamConfig

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from bench.bench_cost import Processes, get_json, wait_until  # noqa: E402
from bench.bench_ws import percentile  # noqa: E402
from bench.bench_zmq import synthetic_tick  # noqa: E402
from core.broadcast.nats_bridge import WINDOW, NatsBridge  # noqa: E402
from core.client import subscribe  # noqa: E402
from core.config import load_settings  # noqa: E402
from core.contracts.nats import STREAM  # noqa: E402
from core.foundation import Foundation  # noqa: E402
from tests.conftest import free_port  # noqa: E402
from tests.nats_servers import NatsServer, cluster_of_three  # noqa: E402

STAMP = re.compile(rb'"benchSent":"(\d+):(\d+)"')
PAYLOAD_BYTES = 5_000
LATENCY_RATE, LATENCY_SECONDS = 500, 5  # frames/s: two events each


def start_daemon(processes: Processes, data: Path, feed_port: int, nats_url: str, replicas: int) -> dict[str, str]:
    http = f"http://127.0.0.1:{free_port()}"
    env = {**os.environ, "VECTRA_DATA_DIR": str(data), "VECTRA_FEED_URL": f"http://127.0.0.1:{feed_port}",
           "VECTRA_HTTP_PORT": http.rsplit(":", 1)[1], "VECTRA_ZMQ_PUB": f"tcp://127.0.0.1:{free_port()}",
           "VECTRA_ZMQ_ROUTER": f"tcp://127.0.0.1:{free_port()}", "VECTRA_RECORD": "false",
           "VECTRA_STALE_AFTER_S": "60", "VECTRA_NATS_URL": nats_url, "VECTRA_NATS_REPLICAS": str(replicas)}
    processes.start([sys.executable, "-m", "vectra_cli", "--daemon"], env=env, stderr=subprocess.DEVNULL)
    wait_until(lambda: (get_json(f"{http}/health", 2).get("nats") or {}).get("acked_seq") is not None, 60, "the bridge")
    wait_until(lambda: get_json(f"http://127.0.0.1:{feed_port}/clients", 2)["clients"] == 1, 30, "the feed connection")
    return {**env, "http": http}


def throughput(http: str, feed_port: int, frames: int, rate: int) -> dict:
    """Pour in a thread of the feed server's own; sample /health until the last event is acked."""
    before = get_json(f"{http}/health")
    began = time.monotonic()
    pour = subprocess.Popen([sys.executable, "-c", (
        "import sys, urllib.request; urllib.request.urlopen(sys.argv[1], timeout=600).read()"
    ), f"http://127.0.0.1:{feed_port}/pour?rate={rate}&count={frames}"])
    expected = before["seq"] + 2 * frames
    seq_done = acked_done = None
    peak_backlog = 0
    while acked_done is None and time.monotonic() - began < 300:
        nats_health = (report := get_json(f"{http}/health"))["nats"]
        peak_backlog = max(peak_backlog, nats_health["backlog"])
        if seq_done is None and report["seq"] >= expected:
            seq_done = time.monotonic()
        if nats_health["acked_seq"] >= expected:
            acked_done = time.monotonic()
        time.sleep(0.05)
    pour.wait()
    events = expected - before["seq"]
    return {
        "events": events,
        "daemon_per_s": events / ((seq_done or time.monotonic()) - began),
        "acked_per_s": events / ((acked_done or time.monotonic()) - began),
        "peak_backlog": peak_backlog,
        "complete": acked_done is not None,
    }


async def bridge_ceiling(nats_url: str, replicas: int, count: int) -> float:
    """The bridge alone, without the feed: synthetic 5 KB ticks published on the bus of an in-process
    foundation as fast as the loop lets them go (the bridge shares that loop, as in the daemon); events
    acked per second from the first publish to the last ack."""
    settings = load_settings({
        "data_dir": tempfile.mkdtemp(prefix="bench-nats-"), "zmq_pub": f"tcp://127.0.0.1:{free_port()}",
        "zmq_router": f"tcp://127.0.0.1:{free_port()}", "log_level": "WARNING", "nats_url": nats_url,
        "nats_replicas": replicas,
    })
    connection = await nats.connect(nats_url)
    await connection.jetstream().delete_stream(STREAM)
    await connection.close()
    foundation = Foundation(settings)
    bridge = NatsBridge(foundation)
    foundation.add_component(bridge)
    await foundation.start()
    try:
        while bridge.acked is None:
            await asyncio.sleep(0.05)
        payloads = [synthetic_tick(n) for n in range(100)]
        began = time.monotonic()
        for index in range(count):
            foundation.bus.publish("game.tick", payloads[index % 100], source="socketio")
            if index % 64 == 0:
                await asyncio.sleep(0)
        while bridge.acked < foundation.bus.last_seq:
            await asyncio.sleep(0.01)
        return count / (time.monotonic() - began)
    finally:
        await foundation.stop()


async def bare_publisher(url: str, replicas: int, count: int) -> float:
    """A bare nats-py publisher: 5 KB messages, the bridge's window of acks in flight; messages/s."""
    connection = await nats.connect(url)
    js = connection.jetstream()
    await js.add_stream(StreamConfig(name="BARE", subjects=["bare.>"], num_replicas=replicas))
    body = b"x" * PAYLOAD_BYTES
    window: list[asyncio.Future] = []
    began = time.monotonic()
    for index in range(count):
        window.append(await js.publish_async("bare.tick", body, headers={"Nats-Msg-Id": str(index)}))
        if len(window) >= WINDOW:
            await window.pop(0)
    await asyncio.gather(*window)
    elapsed = time.monotonic() - began
    await js.delete_stream("BARE")
    await connection.close()
    return count / elapsed


async def latency(daemon: dict[str, str], nats_url: str, feed_port: int) -> dict[str, dict]:
    """Feed send stamp -> arrival, for every poured frame, at a NATS subscriber and, for comparison in
    the same pour, at a ZeroMQ subscriber of the same daemon."""
    count = LATENCY_RATE * LATENCY_SECONDS
    subscriptions = {
        "nats": subscribe("raw.gameStateUpdate", transport="nats", url=nats_url.split(",")[-1]),
        "zmq": subscribe("raw.gameStateUpdate", pub=daemon["VECTRA_ZMQ_PUB"], router=daemon["VECTRA_ZMQ_ROUTER"],
                         dead_after_s=60),
    }
    delays: dict[str, list[float]] = {name: [] for name in subscriptions}

    async def receive(name: str) -> None:
        async for item in subscriptions[name]:
            stamp = STAMP.search(item.to_json()) if item.type == "raw.gameStateUpdate" else None
            if stamp:
                delays[name].append((time.time_ns() - int(stamp.group(2))) / 1e6)
                if len(delays[name]) >= count:
                    return

    readers = [asyncio.create_task(receive(name)) for name in subscriptions]
    await asyncio.sleep(1.0)  # the consumers are in place before the pour
    await asyncio.to_thread(get_json, f"http://127.0.0.1:{feed_port}/pour?rate={LATENCY_RATE}&count={count}")
    await asyncio.wait(readers, timeout=30)
    for reader in readers:
        reader.cancel()
    return {
        name: {"received": len(values), "count": count, "p50": percentile(values, 0.5), "p99": percentile(values, 0.99)}
        for name, values in delays.items()
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--frames", type=int, default=20_000, help="frames poured for the throughput run")
    parser.add_argument("--rate", type=int, default=4_000, help="frames/s of the throughput pour")
    parser.add_argument("--replicas", type=int, default=1, choices=(1, 3), help="3: a cluster of three servers")
    args = parser.parse_args()
    processes = Processes()
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        servers = cluster_of_three(root / "nats") if args.replicas == 3 else [NatsServer(root / "nats")]
        try:
            for server in servers:
                server.start()
            nats_url = ",".join(server.url for server in servers)
            feed_port = free_port()
            processes.start([sys.executable, str(REPO / "bench" / "feed_server.py"), str(feed_port), "--paced"])
            wait_until(lambda: get_json(f"http://127.0.0.1:{feed_port}/clients", 2) is not None, 20, "the feed server")
            daemon = start_daemon(processes, root / "data", feed_port, nats_url, args.replicas)
            result = throughput(daemon["http"], feed_port, args.frames, args.rate)
            delays = asyncio.run(latency(daemon, nats_url, feed_port))
            processes.stop()  # the daemon's bridge is done: the bridge alone gets a fresh stream
            ceiling = asyncio.run(bridge_ceiling(nats_url, args.replicas, args.frames))
            bare = asyncio.run(bare_publisher(nats_url.split(",")[0], args.replicas, args.frames))
        finally:
            processes.stop()
            for server in servers:
                server.kill()
    print(f"load average {os.getloadavg()[0]:.2f}, {os.cpu_count()} cores, {args.replicas} replica(s)")
    print(f"throughput: {result['events']} events ({args.frames} frames at {args.rate}/s asked), "
          f"daemon {result['daemon_per_s']:,.0f}/s, acked by JetStream {result['acked_per_s']:,.0f}/s, "
          f"peak backlog {result['peak_backlog']:,}{'' if result['complete'] else ', NOT all acked'}")
    print(f"the bridge alone (in-process bus, synthetic 5 KB ticks): {ceiling:,.0f} acked events/s")
    print(f"bare nats-py publisher, 5 KB with acks: {bare:,.0f} msgs/s")
    for name, delay in delays.items():
        print(f"latency feed -> {name} subscriber at {2 * LATENCY_RATE} events/s: p50 {delay['p50']:.2f} ms, "
              f"p99 {delay['p99']:.2f} ms ({delay['received']}/{delay['count']} frames)")
    print(f"the bridge adds: p50 {delays['nats']['p50'] - delays['zmq']['p50']:+.2f} ms, "
          f"p99 {delays['nats']['p99'] - delays['zmq']['p99']:+.2f} ms")


if __name__ == "__main__":
    main()
