"""ZeroMQ transport and the Python client, with real sockets, the simulator and daemon subprocesses.

The daemons run with `--stdout`, so what they published is known exactly; every check compares what a
subscriber in another process printed with that record.
"""

from __future__ import annotations

import ast
import asyncio
import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
from fnmatch import fnmatchcase
from pathlib import Path
from typing import Callable

import orjson
import pytest
import zmq
import zmq.asyncio

from core.broadcast.zmq_transport import ZmqTransport
from tests.protocol_models import EnvelopeModel
from core.client import Status, request, subscribe
from core.config import load_settings
from core.foundation import Foundation
from tests.conftest import free_port
from tests.processes import REPO, VECTRA, DaemonProcess, SimProcess

pytestmark = pytest.mark.timeout(90)

HEARTBEAT_S = "0.2"


class TailProcess:
    """`vectra tail` in a subprocess: what a user (or a bot) in another process would receive."""

    def __init__(self, env: dict[str, str], *patterns: str, from_seq: int | None = None, code: str | None = None,
                 cwd: Path = REPO):
        args = [sys.executable, "-c", code] if code else [*VECTRA, "tail", *patterns]
        if from_seq is not None:
            args += ["--from-seq", str(from_seq)]
        self.proc = subprocess.Popen(
            args, cwd=cwd, env={**os.environ, **env}, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
        )
        self.lines: list[str] = []
        self.stderr: list[str] = []
        self._changed = threading.Condition()
        threading.Thread(target=self._read, args=(self.proc.stdout, self.lines), daemon=True).start()
        threading.Thread(target=self._read, args=(self.proc.stderr, self.stderr), daemon=True).start()

    def _read(self, stream, into: list[str]) -> None:
        for line in stream:
            with self._changed:
                into.append(line)
                self._changed.notify_all()

    @property
    def events(self) -> list[dict]:
        """Every complete line (a killed process may leave the last one cut)."""
        return [json.loads(line) for line in list(self.lines) if line.endswith("\n")]

    def wait_for(self, predicate: Callable[[list[str]], bool], timeout: float = 30) -> None:
        deadline = time.monotonic() + timeout
        with self._changed:
            while not predicate(self.lines):
                remaining = deadline - time.monotonic()
                if remaining <= 0 or self.proc.poll() is not None:
                    raise AssertionError(f"subscriber got {len(self.lines)} lines; stderr: {''.join(self.stderr[-10:])}")
                self._changed.wait(min(remaining, 0.5))

    def wait_count(self, count: int, timeout: float = 30) -> None:
        self.wait_for(lambda lines: len(lines) >= count, timeout)

    def wait_seq(self, reached: Callable[[int], bool], timeout: float = 30) -> None:
        """Until the last event printed has a seq that satisfies `reached`."""
        self.wait_for(lambda lines: bool(lines) and reached(json.loads(lines[-1])["seq"]), timeout)

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=10)


def daemon_env(data_dir: Path, sim: SimProcess) -> dict[str, str]:
    return {
        "VECTRA_SOURCE": "socketio",  # beats a stray `.env` in the working directory
        "VECTRA_DATA_DIR": str(data_dir),
        "VECTRA_HTTP_PORT": str(free_port()),
        "VECTRA_ZMQ_PUB": f"tcp://127.0.0.1:{free_port()}",
        "VECTRA_ZMQ_ROUTER": f"tcp://127.0.0.1:{free_port()}",
        "VECTRA_CDP_PORT": str(free_port()),
        "VECTRA_FEED_URL": sim.url,
        "VECTRA_HEARTBEAT_S": HEARTBEAT_S,
    }


def wait_until_serving(daemon: DaemonProcess, env: dict[str, str], timeout: float = 30) -> None:
    """The ROUTER answers `ping` once the daemon's components are up."""
    deadline = time.monotonic() + timeout
    while True:
        assert daemon.proc.poll() is None, "".join(daemon.stderr[-10:])
        try:
            request({"action": "ping"}, timeout=0.5, router=env["VECTRA_ZMQ_ROUTER"])
            return
        except TimeoutError:
            assert time.monotonic() < deadline, "daemon never answered ping"


def published(daemons: list[DaemonProcess], patterns: tuple[str, ...], first: int, last: int) -> list[dict]:
    """What the daemons published on matching channels with first <= seq <= last, in order."""
    return [
        event
        for daemon in daemons
        for event in daemon.events
        if first <= event["seq"] <= last and any(fnmatchcase(event["type"], p) for p in patterns)
    ]


def seqs(events: list[dict]) -> list[int]:
    return [event["seq"] for event in events]


@pytest.fixture(scope="module")
def sim():
    with SimProcess(speed=20, seed=5, max_ticks=30) as process:
        yield process


@pytest.fixture
def started():
    """Every process a test starts is killed when it ends, whatever happened."""
    processes: list = []
    yield processes.append
    for process in reversed(processes):
        process.kill()


@pytest.fixture(scope="module")
def live(sim, tmp_path_factory):
    """One daemon for the tests that only watch it (each leaves it running as it found it)."""
    env = daemon_env(tmp_path_factory.mktemp("live"), sim)
    daemon = DaemonProcess(env).start()
    try:
        wait_until_serving(daemon, env)
        yield daemon, env
    finally:
        daemon.kill()


# --- subscribers in other processes -------------------------------------------------------------


def test_subscribers_in_other_processes_receive_exactly_their_channels(live, started):
    daemon, env = live
    ticks = TailProcess(env, "game.tick")
    trades_and_sys = TailProcess(env, "player.*", "sys.*")
    started(ticks)
    started(trades_and_sys)
    ticks.wait_count(30)
    trades_and_sys.wait_count(10)
    for tail, patterns in ((ticks, ("game.tick",)), (trades_and_sys, ("player.*", "sys.*"))):
        tail.kill()
        got = tail.events
        daemon.wait_for(lambda events: events[-1]["seq"] >= got[-1]["seq"])
        assert got == published([daemon], patterns, got[0]["seq"], got[-1]["seq"])


def test_a_subscriber_killed_mid_stream_resumes_from_its_last_seq(live, started):
    daemon, env = live
    first = TailProcess(env, "game.*", "player.trade")
    started(first)
    first.wait_count(40)
    first.kill()
    before = first.events
    daemon.wait_for(lambda events: events[-1]["seq"] > before[-1]["seq"] + 200)  # missed while away
    second = TailProcess(env, "game.*", "player.trade", from_seq=before[-1]["seq"] + 1)
    started(second)
    target = daemon.events[-1]["seq"]
    second.wait_seq(lambda seq: seq > target)
    second.kill()
    together = before + second.events
    daemon.wait_for(lambda events: events[-1]["seq"] >= together[-1]["seq"])
    assert together == published([daemon], ("game.*", "player.trade"), together[0]["seq"], together[-1]["seq"])


def test_a_subscriber_carries_on_across_restarts_of_the_foundation(sim, tmp_path, started):
    env = daemon_env(tmp_path / "data", sim)
    tail = TailProcess(env, "*")
    started(tail)
    daemons = []
    for stop in ("terminate", "kill", None):
        daemon = DaemonProcess(env).start()
        started(daemon)
        daemons.append(daemon)
        daemon.wait_for(lambda events: len(events) > 80)
        tail.wait_seq(lambda seq, d=daemon: seq > d.events[80]["seq"])
        if stop == "terminate":
            daemon.terminate()
        elif stop == "kill":
            daemon.proc.send_signal(signal.SIGKILL)
            daemon.proc.wait(timeout=10)
    tail.kill()
    got = tail.events
    assert seqs(got) == sorted(set(seqs(got))), "in order, none twice"
    starts = [e for e in got if e["type"] == "sys.start"]
    assert len(starts) == 2, "both restarts were seen"
    clean, after_kill = starts
    assert clean["data"]["skipped"] is None and clean["data"]["previous_last_seq"] == daemons[0].events[-1]["seq"]
    skipped = after_kill["data"]["skipped"]
    assert skipped is not None and skipped["to"] < after_kill["seq"]
    reported = [json.loads(line) for line in tail.stderr if '"client.gap"' in line]
    accounted = set(seqs(got)) | set(range(skipped["from"], skipped["to"] + 1))
    for gap in reported:  # what SIGKILL took before it left the process is reported, never silent
        accounted |= set(range(gap["data"]["from_seq"], gap["data"]["to_seq"] + 1))
    assert accounted >= set(range(got[0]["seq"], got[-1]["seq"] + 1))
    first_run_end = daemons[0].events[-1]["seq"]
    assert published(daemons[:1], ("*",), got[0]["seq"], first_run_end) == [e for e in got if e["seq"] <= first_run_end]


def test_the_readme_example_runs_as_printed(live, started):
    daemon, env = live
    readme = (REPO / "README.md").read_text()
    example = re.search(r"```python\n(.*?from core\.client import subscribe.*?)```", readme, re.S).group(1)
    process = TailProcess(env, code=example)
    started(process)
    process.wait_count(10)
    process.kill()
    seq, channel, _ = process.lines[0].split(" ", 2)
    assert int(seq) > 0 and (channel.startswith("game.") or channel == "player.trade")


def test_the_plain_pyzmq_example_of_the_protocol_runs_as_printed(live):
    """The SUB and DEALER program of docs/PROTOCOL.md, with no project code, against a real daemon."""
    daemon, env = live
    protocol = (REPO / "docs" / "PROTOCOL.md").read_text()
    example = next(block for block in re.findall(r"```python\n(.*?)```", protocol, re.S) if "zmq.DEALER" in block)
    assert "from core" not in example and "import core" not in example
    ran = subprocess.run([sys.executable, "-c", example], cwd=REPO, env={**os.environ, **env}, capture_output=True,
                         text=True, timeout=60)
    assert ran.returncode == 0, ran.stderr
    lines = ran.stdout.splitlines()
    live_seqs = [int(line.split(" ", 2)[1]) for line in lines[:3]]
    assert all(line.startswith("game.") for line in lines[:3]) and live_seqs == sorted(live_seqs)
    pong = ast.literal_eval(lines[3])  # printed as a dict
    assert pong["type"] == "pong" and pong["id"] == 1 and pong["seq"] >= live_seqs[-1]
    replayed = [line.split(" ") for line in lines[4:]]
    assert replayed[-1] == ["None", "replay.end"]
    events = [(int(seq), channel) for seq, channel in replayed[:-1]]
    assert set(live_seqs) <= {seq for seq, _ in events}, "the replay holds what the SUB saw"
    daemon.wait_for(lambda printed: printed[-1]["seq"] >= events[-1][0])
    expected = published([daemon], ("game.*",), live_seqs[-1] - 20, events[-1][0])
    assert events == [(event["seq"], event["type"]) for event in expected]


async def test_a_dead_foundation_is_reported_and_its_return_noticed(live):
    daemon, env = live
    settings = load_settings({"zmq_pub": env["VECTRA_ZMQ_PUB"], "zmq_router": env["VECTRA_ZMQ_ROUTER"]})
    seen: list = []
    events = subscribe("game.tick", settings=settings, dead_after_s=1.0).__aiter__()
    try:
        async with asyncio.timeout(30):
            async for item in events:
                seen.append(item)
                if len(seen) == 20:
                    daemon.proc.send_signal(signal.SIGSTOP)
                if isinstance(item, Status) and item.data["state"] == "down":
                    daemon.proc.send_signal(signal.SIGCONT)
                if isinstance(item, Status) and item.data["state"] == "up":
                    break
    finally:
        daemon.proc.send_signal(signal.SIGCONT)
        await events.aclose()
    down = [item for item in seen if isinstance(item, Status)][0]
    assert down.type == "client.status" and down.data["state"] == "down" and down.data["silent_s"] >= 1.0
    assert down.data["url"] == env["VECTRA_ZMQ_PUB"], "the report says where the client listened"
    assert down.data["last_seq"] >= seen[19].seq


# --- the ROUTER, in process ---------------------------------------------------------------------


async def start_foundation(data_dir: Path, **overrides) -> Foundation:
    """A foundation without a feed, with the real ZeroMQ transport: the test publishes itself."""
    settings = load_settings(
        {
            "data_dir": data_dir,
            "zmq_pub": f"tcp://127.0.0.1:{free_port()}",
            "zmq_router": f"tcp://127.0.0.1:{free_port()}",
            "ring_size": 1000,
            "heartbeat_s": 0.2,
            **overrides,
        }
    )
    foundation = Foundation(settings)
    foundation.add_component(ZmqTransport(foundation))
    await foundation.start()
    return foundation


@pytest.fixture
async def foundation(tmp_path):
    foundation = await start_foundation(tmp_path / "data")
    yield foundation
    await foundation.stop()


@pytest.fixture
async def dealer(foundation):
    context = zmq.asyncio.Context()
    sock = context.socket(zmq.DEALER)
    sock.setsockopt(zmq.LINGER, 0)
    sock.connect(foundation.settings.zmq_router)
    yield sock
    sock.close()
    context.term()


async def replies_until_end(sock) -> list[dict]:
    replies = []
    while not replies or replies[-1].get("type") not in ("replay.end", "error"):
        replies.append(orjson.loads(await asyncio.wait_for(sock.recv(), timeout=10)))
    return replies


async def test_replay_older_than_the_ring_starts_with_an_explicit_gap(foundation, dealer):
    for n in range(1500):  # sys.start is 1; the ring of 1000 keeps 502..1501
        foundation.bus.publish("game.tick" if n % 3 else "player.trade", {"n": n}, source="socketio")
    await dealer.send(orjson.dumps({"action": "replay", "from_seq": 1, "channels": ["player.*"]}))
    replies = await replies_until_end(dealer)
    assert replies[0] == {"type": "gap", "from_seq": 1, "to_seq": 501}
    assert replies[-1] == {"type": "replay.end", "last_seq": 1501}
    events = replies[1:-1]
    assert {event["type"] for event in events} == {"player.trade"}
    expected = [e.seq for e in foundation.bus.ring.since(502) if e.type == "player.trade"]
    assert seqs(events) == expected


@pytest.mark.parametrize(
    "payload, code",
    [
        (b"not json", "bad_json"),
        (b"[1, 2]", "bad_request"),
        (b'{"from_seq": 1}', "bad_request"),
        (b'{"action": "replay", "from_seq": "ten"}', "bad_request"),
        (b'{"action": "replay", "from_seq": -1}', "bad_request"),
        (b'{"action": "replay", "from_seq": 1, "channels": []}', "bad_request"),
        (b'{"action": "launch_rockets"}', "unknown_action"),
        (b'{"action": "ping", "pad": "' + b"x" * 70_000 + b'"}', "too_large"),
    ],
    ids=["not-json", "not-an-object", "no-action", "from-seq-string", "from-seq-negative", "no-channels",
         "unknown-action", "oversized"],
)
async def test_a_bad_request_gets_an_error_reply_and_the_router_carries_on(foundation, dealer, payload, code):
    await dealer.send(payload)
    reply = orjson.loads(await asyncio.wait_for(dealer.recv(), timeout=10))
    assert reply["type"] == "error" and reply["data"]["code"] == code and reply["data"]["message"]
    await dealer.send(b'{"action": "ping"}')
    pong = orjson.loads(await asyncio.wait_for(dealer.recv(), timeout=10))
    assert pong["type"] == "pong" and pong["seq"] == foundation.bus.last_seq


async def test_a_reader_that_leaves_mid_replay_is_dropped_and_the_router_carries_on(tmp_path):
    foundation = await start_foundation(tmp_path / "data", ring_size=5000, zmq_router_hwm=10)
    context = zmq.asyncio.Context()
    leaver, stayer = context.socket(zmq.DEALER), context.socket(zmq.DEALER)
    try:
        for _ in range(3000):  # ~12 MB: far more than 10 queued replies and the socket buffers hold
            foundation.bus.publish("game.tick", {"padding": "x" * 4000}, source="socketio")
        leaver.connect(foundation.settings.zmq_router)
        await leaver.send(b'{"action": "replay", "from_seq": 1}')
        await asyncio.wait_for(leaver.recv(), timeout=10)
        leaver.close(linger=0)
        stayer.connect(foundation.settings.zmq_router)
        while True:  # the ROUTER notices the departure when it next tries to send to it
            await stayer.send(b'{"action": "health"}')
            health = orjson.loads(await asyncio.wait_for(stayer.recv(), timeout=10))["data"]["zmq"]
            if health["replies_abandoned"] == 1:
                break
            await asyncio.sleep(0.1)
        assert health["replays"] == 1 and health["replayed_events"] < 3000
    finally:
        for sock in (leaver, stayer):
            sock.close(linger=0)
        context.term()
        await foundation.stop()


async def test_replies_carry_the_request_id(foundation, dealer):
    await dealer.send(b'{"action": "ping", "id": "p-1"}')
    assert orjson.loads(await asyncio.wait_for(dealer.recv(), timeout=10))["id"] == "p-1"
    for _ in range(1500):  # the ring of 1000 moves past seq 1: a replay from 1 starts with a gap
        foundation.bus.publish("game.tick", {}, source="socketio")
    foundation.bus.publish("player.trade", {}, source="socketio")
    await dealer.send(b'{"action": "replay", "from_seq": 1, "channels": ["player.*"], "id": 7}')
    replies = await replies_until_end(dealer)
    assert [(reply["type"], reply.get("id")) for reply in replies] == [
        ("gap", 7), ("player.trade", None), ("replay.end", 7)
    ]


async def test_health_counts_zmq_subscribers_next_to_other_transports(foundation, dealer):
    events = subscribe(settings=foundation.settings, from_seq=1).__aiter__()
    try:
        first = await asyncio.wait_for(events.__anext__(), timeout=10)
        assert first.type == "sys.start"
        while True:  # the subscriber's connection is accepted asynchronously
            await dealer.send(b'{"action": "health"}')
            health = orjson.loads(await asyncio.wait_for(dealer.recv(), timeout=10))["data"]
            if health["subscribers"]["zmq"] == 1:
                break
            await asyncio.sleep(0.05)
        assert "ws" in health["subscribers"] and "" in health["zmq"]["topics"]
    finally:
        await events.aclose()


async def test_a_filtered_subscriber_that_falls_behind_loses_nothing(tmp_path):
    """Events ZeroMQ drops for a subscriber that could not read come back by replay, including
    those at the very end of the burst, which only the heartbeat reveals."""
    foundation = await start_foundation(tmp_path / "data", ring_size=20_000, zmq_pub_hwm=100)
    subscription = subscribe("game.*", settings=foundation.settings, queue_limit=100)
    received: asyncio.Queue = asyncio.Queue()

    async def consume() -> None:
        async for item in subscription:
            await received.put(item)

    consumer = asyncio.create_task(consume())
    padding = "x" * 2000
    try:
        while received.empty():  # subscribed once an event gets through
            foundation.bus.publish("game.tick", {"padding": padding}, source="socketio")
            await asyncio.sleep(0.1)
        first = (await received.get()).seq
        # ~20 MB published without yielding to the loop, so the subscriber cannot read meanwhile:
        # more than the high-water marks and the socket buffers hold.
        for n in range(10_000):
            foundation.bus.publish("game.tick" if n % 3 else "player.trade", {"n": n, "padding": padding}, source="socketio")
        expected = [e.seq for e in foundation.bus.ring.since(first + 1) if e.type == "game.tick"]
        got = []
        while not got or got[-1] < expected[-1]:
            item = await asyncio.wait_for(received.get(), timeout=10)
            assert item.seq is not None, item
            got.append(item.seq)
        assert got == expected
        assert subscription.replays > 0, "the burst must have overflowed the queues"
    finally:
        consumer.cancel()
        await asyncio.gather(consumer, return_exceptions=True)
        await foundation.stop()


async def test_a_subscriber_with_more_patterns_than_the_router_takes_still_resumes(tmp_path):
    """The client filters locally, so a replay it asks for never fails on `VECTRA_MAX_PATTERNS`:
    refused with its patterns, it replays every channel and keeps what the caller wants."""
    foundation = await start_foundation(tmp_path / "data", max_patterns=4)
    patterns = ("player.trade", "game.end", "a.*", "b.*", "c.*", "d.*")
    for n in range(300):
        foundation.bus.publish(("game.tick", "player.trade", "game.end")[n % 3], {"n": n}, source="socketio")
    expected = [e.seq for e in foundation.bus.ring.since(1) if e.type in ("player.trade", "game.end")]
    subscription = subscribe(*patterns, settings=foundation.settings, from_seq=1)
    events = subscription.__aiter__()
    try:
        got = []
        while len(got) < len(expected):
            item = await asyncio.wait_for(events.__anext__(), timeout=10)
            assert item.seq is not None, item
            got.append(item.seq)
        assert got == expected
        assert subscription.replays >= 1
    finally:
        await events.aclose()
        await foundation.stop()


# --- docs/PROTOCOL.md says what the ROUTER does -------------------------------------------------


def zmq_doc_exchanges() -> list[tuple[dict, list[dict]]]:
    """(request, documented replies) pairs of the `### ZeroMQ` section."""
    doc = (REPO / "docs" / "PROTOCOL.md").read_text()
    section = doc.split("\n### ZeroMQ\n", 1)[1].split("\n## ", 1)[0]
    pairs = re.findall(r"Request:\n```json\n(.*?)\n```\nRepl[^\n]*:\n((?:```json\n.*?\n```\n?)+)", section, re.S)
    return [
        (json.loads(request_text), [json.loads(block) for block in re.findall(r"```json\n(.*?)\n```", replies)])
        for request_text, replies in pairs
    ]


def collapse(types: list[str]) -> list[str]:
    return [kind for index, kind in enumerate(types) if index == 0 or types[index - 1] != kind]


async def test_the_documented_router_exchanges_are_what_the_router_does(foundation, dealer):
    exchanges = zmq_doc_exchanges()
    assert {request["action"] for request, _ in exchanges} >= {"replay", "snapshot", "ping", "health"}
    for n in range(1500):  # the ring of 1000 then holds 502..1501, as in the documented replay
        foundation.bus.publish("game.tick", {"n": n}, source="socketio")
    for request_body, documented in exchanges:
        await dealer.send(orjson.dumps(request_body))
        if request_body["action"] == "replay" and "from_seq" in request_body and isinstance(request_body["from_seq"], int):
            real = await replies_until_end(dealer)
        else:
            real = [orjson.loads(await asyncio.wait_for(dealer.recv(), timeout=10))]
        assert collapse([r["type"] for r in real]) == [d["type"] for d in documented], request_body
        for doc_reply in documented:
            real_reply = next(r for r in real if r["type"] == doc_reply["type"])
            assert set(doc_reply) == set(real_reply), doc_reply["type"]
            if "v" in doc_reply:  # an envelope: its data is the channel's, checked by test_protocol_doc
                EnvelopeModel.model_validate(doc_reply)
            elif isinstance(doc_reply.get("data"), dict):
                assert set(doc_reply["data"]) <= set(real_reply["data"]), doc_reply["type"]
        if request_body["action"] == "replay" and len(real) > 1:
            assert real[0] == documented[0] and real[-1] == documented[-1]


async def test_the_documented_heartbeat_is_what_the_pub_socket_sends(foundation):
    doc = (REPO / "docs" / "PROTOCOL.md").read_text()
    section = doc.split("\n### ZeroMQ\n", 1)[1]
    documented = next(json.loads(b) for b in re.findall(r"```json\n(.*?)\n```", section, re.S) if "sys.heartbeat" in b)
    context = zmq.asyncio.Context()
    sock = context.socket(zmq.SUB)
    sock.connect(foundation.settings.zmq_pub)
    sock.subscribe(b"sys.heartbeat")
    try:
        channel, body = await asyncio.wait_for(sock.recv_multipart(), timeout=10)
    finally:
        sock.close(linger=0)
        context.term()
    heartbeat = orjson.loads(body)
    assert channel == b"sys.heartbeat" and set(heartbeat) == set(documented) and "seq" not in heartbeat
    assert heartbeat["last_seq"] == foundation.bus.last_seq
