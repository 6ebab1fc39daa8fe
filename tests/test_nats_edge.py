"""An edge (`VECTRA_SOURCE=nats`): a Vectra whose feed is a remote Vectra's JetStream stream.

Real processes throughout: a real nats-server, edge daemons (`vectra --daemon`) on their own ports and
data folders, real ZeroMQ subscribers. The stream is filled either by a real origin daemon through its
bridge, or by the test itself in the contract's format (core/contracts/nats.py), which lets it hold
what an origin rarely shows on demand: a restart's skipped block, a hole the stream no longer holds.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import subprocess
import threading
import time

import orjson
import pytest
import zmq

import nats
from core.config import ConfigError, load_settings
from core.contracts.nats import MSG_ID_HEADER, SEQ_HEADER, STREAM, SUBJECTS, subject_for
from tests.conftest import free_port
from tests.nats_servers import nats_cluster, nats_server  # noqa: F401 - fixtures
from tests.processes import REPO, VECTRA, DaemonProcess, SimProcess, health


def envelope(seq: int, type_: str = "game.tick", data: dict | None = None) -> bytes:
    return orjson.dumps({"v": 1, "seq": seq, "type": type_, "timestamp": 1_770_000_000_000 + seq,
                         "gameId": "20260206-003482fbeaae4ad5", "source": "socketio", "data": data or {"n": seq}})


def sys_start(seq: int, previous: int, skipped: tuple[int, int] | None) -> bytes:
    return envelope(seq, "sys.start", {"previous_last_seq": previous, "version": "0.1.0", "sources": ["socketio"],
                                       "skipped": {"from": skipped[0], "to": skipped[1]} if skipped else None})


def fill(url: str, bodies: list[bytes], *, create: bool = False) -> None:
    """Publish origin envelopes to the stream as the bridge does (body, `Nats-Msg-Id`, `Vectra-Seq`)."""
    async def publish() -> None:
        connection = await nats.connect(url)
        stream = connection.jetstream()
        if create:
            await stream.add_stream(name=STREAM, subjects=[SUBJECTS])
        for body in bodies:
            parsed = orjson.loads(body)
            seq = str(parsed["seq"])
            await stream.publish(subject_for(parsed["type"]), body, headers={MSG_ID_HEADER: seq, SEQ_HEADER: seq})
        await connection.close()

    asyncio.run(publish())


def delete(url: str, positions: list[int]) -> None:
    async def remove() -> None:
        connection = await nats.connect(url)
        for position in positions:
            await connection.jetstream().delete_msg(STREAM, position)
        await connection.close()

    asyncio.run(remove())


class ZmqTap:
    """A raw ZeroMQ subscriber to everything: each event's bytes as the PUB socket sent them."""

    def __init__(self, endpoint: str) -> None:
        self.bodies: dict[int, bytes] = {}
        self.controls: list[dict] = []
        self._context = zmq.Context.instance()
        self._socket = self._context.socket(zmq.SUB)
        self._socket.setsockopt(zmq.SUBSCRIBE, b"")
        self._socket.setsockopt(zmq.RCVTIMEO, 200)
        self._socket.connect(endpoint)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._read, daemon=True)
        self._thread.start()

    def _read(self) -> None:
        while not self._stop.is_set():
            try:
                channel, body = self._socket.recv_multipart()
            except zmq.Again:
                continue
            message = orjson.loads(body)
            if isinstance(message.get("seq"), int):
                self.bodies[message["seq"]] = body
            else:
                self.controls.append(message)

    def wait_for(self, predicate, timeout: float = 30) -> None:
        deadline = time.monotonic() + timeout
        while not predicate(self):
            assert time.monotonic() < deadline, f"condition not met after {timeout}s: {sorted(self.bodies)[-5:]}"
            time.sleep(0.05)

    def close(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)
        self._socket.close(linger=0)


class ClientThread:
    """The project's Python client (`core.client`) on the edge, from seq 1 until `until_seq`: events as
    their `seq`, a `client.gap` as (type, from, to)."""

    def __init__(self, env: dict[str, str], until_seq: int) -> None:
        self.items: list = []
        self.thread = threading.Thread(target=self._read, args=(env, until_seq), daemon=True)
        self.thread.start()

    def _read(self, env: dict[str, str], until_seq: int) -> None:
        from core.client import subscribe_blocking

        for item in subscribe_blocking(from_seq=1, pub=env["VECTRA_ZMQ_PUB"], router=env["VECTRA_ZMQ_ROUTER"],
                                       dead_after_s=30):
            if item.seq is None:
                self.items.append((item.type, item.data.get("from_seq"), item.data.get("to_seq")))
                continue
            self.items.append(item.seq)
            if item.seq >= until_seq:
                return


def seqs(events: list[dict]) -> list[int]:
    return [event["seq"] for event in events]


def own_ports(data_dir) -> dict[str, str]:
    """A second daemon's environment on the same machine: its own data folder and ports."""
    return {"VECTRA_DATA_DIR": str(data_dir), "VECTRA_HTTP_PORT": str(free_port()), "VECTRA_CDP_PORT": str(free_port()),
            "VECTRA_ZMQ_PUB": f"tcp://127.0.0.1:{free_port()}", "VECTRA_ZMQ_ROUTER": f"tcp://127.0.0.1:{free_port()}"}


@contextlib.contextmanager
def dealer(env: dict[str, str]):
    """A DEALER on the daemon's ROUTER; replies wait at most 10 s."""
    sock = zmq.Context.instance().socket(zmq.DEALER)
    sock.setsockopt(zmq.RCVTIMEO, 10_000)
    sock.connect(env["VECTRA_ZMQ_ROUTER"])
    try:
        yield sock
    finally:
        sock.close(linger=0)


def request(env: dict[str, str], command: dict) -> dict:
    """One request to the ROUTER, its one reply."""
    with dealer(env) as sock:
        sock.send(orjson.dumps(command))
        return orjson.loads(sock.recv_multipart()[-1])


def replay(env: dict[str, str], from_seq: int) -> list[bytes]:
    """The ROUTER's answer to `replay` from `from_seq` as sent: gaps and events, up to `replay.end`."""
    with dealer(env) as sock:
        sock.send(orjson.dumps({"action": "replay", "from_seq": from_seq}))
        replies: list[bytes] = []
        while not replies or orjson.loads(replies[-1]).get("type") != "replay.end":
            replies.append(sock.recv_multipart()[-1])
        return replies


def health_when(daemon: DaemonProcess, env: dict[str, str], predicate, what: str, timeout: float = 30) -> dict:
    """The daemon's `/health` once `predicate` holds for it (before it serves, it does not); the daemon stays up."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            report = health(env)
            if predicate(report):
                return report
        except OSError:
            pass
        assert time.monotonic() < deadline and daemon.proc.poll() is None, what
        time.sleep(0.1)


def failed_link(edge: DaemonProcess, env: dict[str, str], timeout: float = 30) -> dict:
    """The edge's link to NATS (`/health` `connection.sources.nats`) once it failed; the edge stays up."""
    return health_when(edge, env, lambda report: report["connection"]["sources"]["nats"]["state"] == "failed",
                       "the edge never said why it cannot read", timeout)["connection"]["sources"]["nats"]


# --- fast: the settings refuse an edge that would feed itself -----------------------------------

def test_an_edge_whose_bridge_targets_the_servers_it_reads_refuses_to_start(tmp_path):
    port = free_port()
    env = {"VECTRA_SOURCE": "nats", "VECTRA_FEED_URL": f"nats://127.0.0.1:{port},nats://10.0.0.9:4222",
           "VECTRA_NATS_URL": f"nats://localhost:{port}", "VECTRA_DATA_DIR": str(tmp_path)}
    done = subprocess.run([*VECTRA, "--daemon"], cwd=REPO, env={**os.environ, **env},
                          capture_output=True, text=True, timeout=60)
    assert done.returncode != 0
    assert f"127.0.0.1:{port}" in done.stderr and "into itself" in done.stderr
    assert not (tmp_path / "seq.state").exists(), "refused before anything started"


def test_an_edge_runs_alone_and_another_spelling_of_its_own_server_is_still_itself(tmp_path):
    with pytest.raises(ConfigError, match="runs alone"):
        load_settings({"source": "nats,socketio", "data_dir": tmp_path})
    with pytest.raises(ConfigError, match="into itself"):
        load_settings({"source": "nats", "feed_url": "nats://u:p@LOCALHOST", "nats_url": "nats://127.0.0.1:4222",
                       "data_dir": tmp_path})
    other = load_settings({"source": "nats", "feed_url": "nats://10.0.0.5:4222", "nats_url": "nats://127.0.0.1:4222",
                           "data_dir": tmp_path})
    assert other.sources == ("nats",), "a bridge to another NATS is fine: the edge serves its own hosts"


def test_an_edge_whose_feed_is_not_nats_says_so_and_stays_up(daemon_for, vectra_env):
    class Feed:
        url = "https://backend.rugs.fun?frontend-version=1.0"  # the default: an edge with its feed forgotten

    link = failed_link(daemon_for(Feed, VECTRA_SOURCE="nats"), vectra_env)
    assert "is not a list of nats:// servers" in link["reason"] and Feed.url in link["reason"]


# --- an edge on a stream in the contract's format -----------------------------------------------

@pytest.mark.slow
def test_an_edge_republishes_the_stream_byte_for_byte_and_says_a_hole_but_not_a_restart(nats_server, daemon_for, vectra_env):
    first_run = [envelope(seq) for seq in range(1, 41)]
    restart = [sys_start(51, 40, (41, 50))]  # the origin restarted after a SIGKILL: 41..50 were never used
    fill(nats_server.url, first_run + restart + [envelope(seq) for seq in range(52, 61)], create=True)
    tap = None
    edge = daemon_for(nats_server, VECTRA_SOURCE="nats", VECTRA_RECORD="true")
    try:
        edge.wait_for(lambda events: any(event["seq"] == 60 for event in events))
        tap = ZmqTap(vectra_env["VECTRA_ZMQ_PUB"])
        tap.wait_for(lambda tap: tap.controls)  # a heartbeat: the subscription is in place
        client = ClientThread(vectra_env, until_seq=71)
        fill(nats_server.url, [envelope(seq) for seq in range(61, 66)])
        edge.wait_for(lambda events: events[-1]["seq"] == 65)
        tap.wait_for(lambda tap: 65 in tap.bodies)
        published = {orjson.loads(body)["seq"]: body for body in first_run + restart}
        assert seqs(edge.events) == [*range(1, 41), *range(51, 66)], "the origin's numbers, nothing of the edge's own"
        assert all(orjson.dumps(event) == published[event["seq"]] for event in edge.events if event["seq"] in published)
        assert tap.bodies[61] == envelope(61), "ZeroMQ carries the origin's bytes"
        assert {control["type"] for control in tap.controls} <= {"sys.heartbeat", "sys.edge"}
        assert health(vectra_env)["edge"]["holes"] == 0, "a restart's skipped block is no loss"
        assert health(vectra_env)["seq"] == 65

        # a hole: 66..70 never reach the stream (the origin's bridge lost them), 71 does
        fill(nats_server.url, [envelope(71)])
        edge.wait_for(lambda events: events[-1]["seq"] == 71)
        report = health(vectra_env)["edge"]
        assert (report["holes"], report["lost"], report["last_hole_from"], report["last_hole_to"]) == (1, 5, 66, 70)
        replayed = [reply["seq"] if "v" in reply else (reply["type"], reply.get("from_seq"), reply.get("to_seq"))
                    for reply in map(orjson.loads, replay(vectra_env, 60)[:-1])]
        assert replayed == [*range(60, 66), ("gap", 66, 70), 71], "the recordings up to the hole, the hole, the rest"
        client.thread.join(timeout=30)
        assert client.items == [*range(1, 41), *range(51, 66), ("client.gap", 66, 70), 71], \
            "the Python client on the edge: the origin's restart is no loss, the hole is one"

        # an operator's reconnect: the edge says so on `sys.edge`, not with numbers of the origin's, and
        # the new connection carries on after the last seq republished
        assert request(vectra_env, {"action": "reconnect"})["type"] == "reconnecting"
        tap.wait_for(lambda tap: any(c["type"] == "sys.edge" and c["event"] == "connection.status"
                                     and c["data"]["state"] == "connected" for c in tap.controls))
        fill(nats_server.url, [envelope(72)])
        edge.wait_for(lambda events: events[-1]["seq"] == 72)
        assert seqs(edge.events) == [*range(1, 41), *range(51, 66), 71, 72]
        assert health(vectra_env)["edge"]["duplicates"] == 0
        refused = request(vectra_env, {"action": "order", "kind": "buy", "amount_sol": 0.001})
        assert refused["data"]["code"] == "unknown_action", "orders go to the origin, not to an edge"
    finally:
        if tap is not None:
            tap.close()


@pytest.mark.slow
def test_a_killed_edge_resumes_after_its_last_seq_with_no_gap_and_no_duplicate(nats_server, daemon_for, vectra_env):
    fill(nats_server.url, [envelope(seq) for seq in range(1, 201)], create=True)
    first = daemon_for(nats_server, VECTRA_SOURCE="nats")
    first.wait_for(lambda events: events and events[-1]["seq"] == 200)
    first.kill()
    fill(nats_server.url, [envelope(seq) for seq in range(201, 301)])  # published while the edge is down
    delete(nats_server.url, list(range(1, 151)))  # and the stream ages out the oldest
    # the first server of the list is down: the next one serves; credentials never show
    cluster = f"nats://127.0.0.1:{free_port()},nats://edge:s3cret@127.0.0.1:{nats_server.port}"
    second = daemon_for(nats_server, VECTRA_SOURCE="nats", VECTRA_FEED_URL=cluster)
    second.wait_for(lambda events: events and events[-1]["seq"] == 300)
    assert seqs(second.events) == list(range(201, 301))
    report = health(vectra_env)
    assert report["edge"]["holes"] == 0
    assert f"nats://127.0.0.1:{nats_server.port}" in report["connection"]["url"] and "s3cret" not in json.dumps(report)


@pytest.mark.slow
def test_a_message_no_bridge_published_where_the_edge_looks_for_its_place_is_a_clear_reason(nats_server, daemon_for,
                                                                                             vectra_env):
    async def foreign() -> None:  # someone else's message first, without Vectra-Seq
        connection = await nats.connect(nats_server.url)
        await connection.jetstream().add_stream(name=STREAM, subjects=[SUBJECTS])
        await connection.jetstream().publish("vectra.game.tick", b"{}")
        await connection.close()

    asyncio.run(foreign())
    fill(nats_server.url, [envelope(seq) for seq in range(1, 6)])
    link = failed_link(daemon_for(nats_server, VECTRA_SOURCE="nats"), vectra_env)
    assert "no valid Vectra-Seq" in link["reason"] and "stream position 1" in link["reason"]
    assert health(vectra_env)["seq"] == 0, "nothing republished from a place it could not find"


# --- origin → bridge → nats-server → edge, all real ---------------------------------------------

@pytest.mark.slow
def test_an_edge_carries_the_origins_envelopes_and_a_killed_edge_resumes_with_no_gap(nats_server, daemon_for, vectra_env,
                                                                                       tmp_path):
    origin_env = {**own_ports(tmp_path / "origin"), "VECTRA_NATS_URL": nats_server.url}
    with SimProcess(speed=20, seed=7, max_ticks=40) as sim:
        origin = DaemonProcess({**origin_env, "VECTRA_FEED_URL": sim.url, "VECTRA_STALE_AFTER_S": "2"}).start()
        origin_tap = ZmqTap(origin_env["VECTRA_ZMQ_PUB"])
        edge_tap = ZmqTap(vectra_env["VECTRA_ZMQ_PUB"])
        try:
            def seen_on_both(tap: ZmqTap) -> int:  # a catch-up burst can beat a SUB's (re)connection
                return len(tap.bodies.keys() & origin_tap.bodies.keys())

            first = daemon_for(nats_server, VECTRA_SOURCE="nats", VECTRA_RECORD="true")
            edge_tap.wait_for(lambda tap: seen_on_both(tap) >= 50, timeout=60)
            first.kill()
            before_kill = seen_on_both(edge_tap)
            killed_at = health(origin_env)["seq"]
            origin.wait_for(lambda events: events[-1]["seq"] >= killed_at + 100, timeout=60)  # the edge is down
            second = daemon_for(nats_server, VECTRA_SOURCE="nats", VECTRA_RECORD="true")
            target = origin.events[-1]["seq"] + 50
            second.wait_for(lambda events: events and events[-1]["seq"] >= target, timeout=60)
            origin_tap.wait_for(lambda tap: max(tap.bodies, default=0) >= target)
            edge_tap.wait_for(lambda tap: seen_on_both(tap) >= before_kill + 50, timeout=60)

            live = [seq for seq in origin_tap.bodies if seq in edge_tap.bodies]
            assert all(edge_tap.bodies[seq] == origin_tap.bodies[seq] for seq in live), "byte for byte on ZeroMQ"
            assert seqs(second.events)[0] > seqs(first.events)[-1], "resumed after its own last seq"

            on_edge = replay(vectra_env, 1)
            on_origin = replay(origin_env, 1)
            events = [body for body in on_edge[:-1] if orjson.loads(body).get("type") != "gap"]
            assert len(events) == len(on_edge) - 1, "no gap on the edge across its kill and restart"
            assert [orjson.loads(body)["seq"] for body in events] == list(range(1, len(events) + 1)), "none twice"
            assert len(events) >= target
            # older events come back from the edge's recordings, which store fields, not bytes: compared parsed
            assert [orjson.loads(body) for body in events] == [orjson.loads(body) for body in on_origin[:len(events)]], \
                "the edge's history (its recordings, then its ring) holds the origin's envelopes"

            snapshot = request(vectra_env, {"action": "snapshot"})  # a late joiner on the edge knows the game
            assert snapshot["gameId"] is not None and snapshot["gameId"] == snapshot["last_tick"]["gameId"]
            assert snapshot["phase"] == snapshot["last_tick"]["data"]["phase"]
        finally:
            origin_tap.close()
            edge_tap.close()
            origin.kill()


# --- an edge on a cluster -------------------------------------------------------------------------

@pytest.mark.slow
def test_an_edge_on_a_three_node_cluster_goes_on_with_no_gap_when_its_node_dies(nats_cluster, daemon_for, vectra_env,
                                                                                 tmp_path):
    """Origin and edge both list the three nodes (3 replicas) and both start on the first: it is
    killed mid-stream; the edge reconnects to a survivor, finds its place again and misses nothing."""
    urls = ",".join(server.url for server in nats_cluster)
    origin_env = {**own_ports(tmp_path / "origin"), "VECTRA_NATS_URL": urls, "VECTRA_NATS_REPLICAS": "3",
                  "VECTRA_RECONNECT_INITIAL_S": "0.1", "VECTRA_RECONNECT_MAX_S": "0.5"}

    class Cluster:
        url = urls

    with SimProcess(speed=50, seed=7, max_ticks=40) as sim:
        origin = DaemonProcess({**origin_env, "VECTRA_FEED_URL": sim.url, "VECTRA_STALE_AFTER_S": "2"}).start()
        try:
            # the edge comes once the stream holds an event: on a cluster just formed, a stream made but with
            # no leader yet leaves an edge's first look unanswered for a whole JetStream timeout (5 s)
            health_when(origin, origin_env, lambda report: report["nats"]["acked_seq"] is not None,
                        "the origin's bridge never stored an event", timeout=60)
            edge = daemon_for(Cluster, VECTRA_SOURCE="nats")
            edge.wait_for(lambda events: len(events) >= 100, timeout=60)
            doomed = nats_cluster[0]
            doomed.kill()
            killed_at = edge.events[-1]["seq"]
            target = origin.wait_for(lambda events: events[-1]["seq"] >= killed_at + 300, timeout=60)[-1]["seq"]
            edge.wait_for(lambda events: events[-1]["seq"] >= target, timeout=60)
            sent = [event for event in origin.events if event["seq"] <= target]
            assert edge.events[:len(sent)] == sent, "every event of the origin, once, in order, unchanged"
            report = health(vectra_env)
            assert report["edge"]["holes"] == 0 and report["edge"]["duplicates"] == 0
            assert report["connection"]["sources"]["nats"]["reconnects"] >= 1, "the edge lost its node and went on"
        finally:
            origin.kill()
