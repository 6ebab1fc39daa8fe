"""Origin -> edge -> subscriber latency at 1,000 events/s (issue 12: an edge adds under 5 ms at p99).

    .venv/bin/python bench/bench_nats_edge.py [--rate 500] [--seconds 10]

Each frame becomes two events (`raw.gameStateUpdate`, ~5 KB, and `game.tick`), so the default 500
frames/s is 1,000 events/s, as in bench/bench_nats.py.

Every part is its own process, all on this host: nats-server with JetStream (its own store and port),
the paced load (bench/feed_server.py: ~4.9 KB `gameStateUpdate` frames, each stamped with its send
time), the origin daemon with its bridge to that server, an edge daemon (`VECTRA_SOURCE=nats`) reading
it, recording off on both. This process holds one ZeroMQ SUB on the origin and one on the edge, both
on `raw.gameStateUpdate`, and stamps each message on arrival. Per frame:

  feed -> origin sub   the frame's send stamp to its arrival at the origin's subscriber
  feed -> edge sub     the same to its arrival at the edge's subscriber (origin, bridge, NATS, edge)
  origin -> edge       what the edge path adds: edge arrival minus origin arrival, same `seq`

A warm-up pour comes first and is not counted. Figures on a shared, loaded machine vary between runs.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import orjson
import zmq

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from bench.bench_cost import Processes, get_json, wait_until  # noqa: E402
from bench.bench_ws import percentile  # noqa: E402
from tests.conftest import free_port  # noqa: E402
from tests.nats_servers import NatsServer  # noqa: E402

CHANNEL = b"raw.gameStateUpdate"
WARM_UP = 300


class Arrivals:
    """One SUB per daemon on one thread: each message stamped as it arrives, parsed afterwards."""

    def __init__(self, endpoints: dict[str, str]) -> None:
        self.context = zmq.Context.instance()
        self.sockets = {}
        for name, endpoint in endpoints.items():
            sock = self.context.socket(zmq.SUB)
            sock.setsockopt(zmq.RCVHWM, 0)
            sock.setsockopt(zmq.SUBSCRIBE, CHANNEL)
            sock.connect(endpoint)
            self.sockets[sock] = name
        self.raw: dict[str, list[tuple[int, bytes]]] = {name: [] for name in endpoints}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        poller = zmq.Poller()
        for sock in self.sockets:
            poller.register(sock, zmq.POLLIN)
        while not self._stop.is_set():
            for sock, _ in poller.poll(100):
                while True:
                    try:
                        _, body = sock.recv_multipart(zmq.NOBLOCK)
                    except zmq.Again:
                        break
                    self.raw[self.sockets[sock]].append((time.time_ns(), body))

    def by_index(self, name: str) -> dict[int, tuple[int, int, int]]:
        """Frame index -> (arrival ns, send ns, seq)."""
        found = {}
        for arrived, body in list(self.raw[name]):
            envelope = orjson.loads(body)
            index, sent = envelope["data"]["payload"]["benchSent"].split(":")
            found[int(index)] = (arrived, int(sent), envelope["seq"])
        return found

    def clear(self) -> None:
        for kept in self.raw.values():
            kept.clear()

    def close(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)
        for sock in self.sockets:
            sock.close(linger=0)


def daemon_env(data: Path, **settings: str) -> tuple[dict[str, str], int, str]:
    http_port, pub = free_port(), f"tcp://127.0.0.1:{free_port()}"
    env = {**os.environ, "VECTRA_DATA_DIR": str(data), "VECTRA_HTTP_PORT": str(http_port), "VECTRA_ZMQ_PUB": pub,
           "VECTRA_ZMQ_ROUTER": f"tcp://127.0.0.1:{free_port()}", "VECTRA_RECORD": "false",
           "VECTRA_STALE_AFTER_S": "60", **settings}
    return env, http_port, pub


def healthy(port: int) -> bool:
    try:
        return get_json(f"http://127.0.0.1:{port}/health", 2)["connection"]["state"] == "connected"
    except OSError:
        return False


def summary(values_ms: list[float]) -> str:
    ordered = sorted(values_ms)
    return (f"p50 {percentile(ordered, 0.50):7.2f}  p99 {percentile(ordered, 0.99):7.2f}  "
            f"max {ordered[-1]:7.2f} ms  (n={len(ordered)})")


def run(rate: int, seconds: float) -> None:
    processes = Processes()
    with tempfile.TemporaryDirectory(prefix="vectra-bench-edge-") as folder:
        root = Path(folder)
        server = NatsServer(root / "nats").start()
        arrivals = None
        try:
            feed_port = free_port()
            processes.start([sys.executable, str(REPO / "bench" / "feed_server.py"), str(feed_port), "--paced"])
            wait_until(lambda: _answers(f"http://127.0.0.1:{feed_port}/clients"), 30, "the feed server")
            origin_env, origin_http, origin_pub = daemon_env(
                root / "origin", VECTRA_FEED_URL=f"http://127.0.0.1:{feed_port}", VECTRA_NATS_URL=server.url)
            processes.start([sys.executable, "-m", "vectra_cli", "--daemon"], env=origin_env, stderr=subprocess.DEVNULL)
            wait_until(lambda: healthy(origin_http), 30, "the origin")
            edge_env, edge_http, edge_pub = daemon_env(root / "edge", VECTRA_SOURCE="nats", VECTRA_FEED_URL=server.url)
            processes.start([sys.executable, "-m", "vectra_cli", "--daemon"], env=edge_env, stderr=subprocess.DEVNULL)
            wait_until(lambda: healthy(edge_http), 30, "the edge")
            arrivals = Arrivals({"origin": origin_pub, "edge": edge_pub})
            time.sleep(1)  # the SUB sockets' subscriptions reach both PUBs
            for count, counted in ((WARM_UP, False), (int(rate * seconds), True)):
                arrivals.clear()
                poured = get_json(f"http://127.0.0.1:{feed_port}/pour?rate={rate}&count={count}", timeout=seconds + 60)
                wait_until(lambda: len(arrivals.raw["edge"]) >= count and len(arrivals.raw["origin"]) >= count,
                           30, "every frame at both subscribers")
            origin, edge = arrivals.by_index("origin"), arrivals.by_index("edge")
            same_seq = all(origin[i][2] == edge[i][2] for i in edge)
            seq_span = max(seq for _, _, seq in edge.values()) - min(seq for _, _, seq in edge.values())
            print(f"origin -> NATS -> edge at {rate} frames/s for {seconds:g} s: {seq_span / poured['seconds']:.0f} "
                  f"events/s (poured {poured['sent'] / poured['seconds']:.0f} frames/s of ~4.9 KB; recording off)")
            print(f"  frames at the origin's subscriber {len(origin)}, at the edge's {len(edge)}; same seq: {same_seq}; "
                  f"load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores")
            print(f"  feed -> origin sub  {summary([(a - s) / 1e6 for a, s, _ in origin.values()])}")
            print(f"  feed -> edge sub    {summary([(a - s) / 1e6 for a, s, _ in edge.values()])}")
            print(f"  origin -> edge      {summary([(edge[i][0] - origin[i][0]) / 1e6 for i in edge if i in origin])}")
        finally:
            if arrivals is not None:
                arrivals.close()
            processes.stop()
            server.stop()


def _answers(url: str) -> bool:
    try:
        get_json(url, 2)
        return True
    except OSError:
        return False


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rate", type=int, default=500, help="frames per second (default 500: 1,000 events/s)")
    parser.add_argument("--seconds", type=float, default=10, help="length of the measured pour (default 10)")
    args = parser.parse_args()
    run(args.rate, args.seconds)


if __name__ == "__main__":
    main()
