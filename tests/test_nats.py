"""The NATS JetStream bridge and the client that reads it, end to end: real `nats-server`s (one, or a
cluster of three), real `vectra --daemon` processes fed by the simulator, the client library over NATS.

What the daemon printed on stdout (`--stdout`) is what it published; what a NATS client reads must be
exactly that, in `seq` order, once each, whatever happened to NATS, the daemon or the client meanwhile.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from pathlib import Path
from typing import Callable

import nats
import pytest

from core.client import ClientError, subscribe
from core.contracts.nats import STREAM, SUBJECTS, channel_of, subject_for
from tests.conftest import free_port
from tests.nats_servers import nats_cluster, nats_server  # noqa: F401 - fixtures
from tests.processes import DaemonProcess, SimProcess, health
from tests.test_zmq import daemon_env, started, wait_until_serving  # noqa: F401 - started: a fixture

READ_TIMEOUT_S = 60


def fast_sim(started, speed: float = 200) -> SimProcess:
    sim = SimProcess(speed=speed, seed=11, max_ticks=700).start()  # seed 11: a long first game, many ticks a second
    started(sim)
    return sim


def nats_daemon(data_dir: Path, sim: SimProcess, url: str, started, **settings: str) -> tuple[DaemonProcess, dict]:
    """A daemon bridging to `url` whose links retry every half second at most: back soon after NATS is."""
    env = {**daemon_env(data_dir, sim), "VECTRA_NATS_URL": url, "VECTRA_RECONNECT_INITIAL_S": "0.1",
           "VECTRA_RECONNECT_MAX_S": "0.5", **settings}
    daemon = DaemonProcess(env).start()
    started(daemon)
    wait_until_serving(daemon, env)
    return daemon, env


def wait_health(env: dict[str, str], predicate, timeout: float = 30) -> dict:
    deadline = time.monotonic() + timeout
    while True:
        report = health(env)
        if predicate(report):
            return report
        assert time.monotonic() < deadline, f"/health never got there: {report['status']}, {report['nats']}"
        time.sleep(0.1)


async def read(
    url: str, until: int | Callable[[], int], *patterns: str, from_seq: int | None = 1, into: list | None = None
) -> list:
    """Everything the NATS client yields until it accounted for the seq `until` (a number, or a
    function that tells it once known), nothing past it: events and gaps, and `client.status` in
    `into` if given (which then also receives the rest as it comes)."""
    subscription = subscribe(*patterns, transport="nats", url=url, from_seq=from_seq)
    last = until if callable(until) else lambda: until
    items: list = [] if into is None else into
    async with asyncio.timeout(READ_TIMEOUT_S), contextlib.aclosing(aiter(subscription)) as events:
        async for item in events:
            if item.seq is not None and item.seq > last():
                break
            if into is not None or item.type != "client.status":
                items.append(item)
            if subscription.last_seq >= last():
                break
    return items


def as_published(items: list) -> list[dict]:
    return [json.loads(item.to_json()) for item in items]


def assert_same_events(got: list[dict], expected: list[dict]) -> None:
    """Says where two long event lists part: pytest's own diff of thousands of events outlasts the
    test's timeout and hides the cause."""
    for index, (mine, theirs) in enumerate(zip(got, expected)):
        assert mine == theirs, f"event {index} differs: read seq {mine.get('seq')}, published seq {theirs.get('seq')}"
    assert len(got) == len(expected), (
        f"read {len(got)} events, published {len(expected)}: the first unmatched is "
        f"{(got[len(expected):] or expected[len(got):])[0].get('seq')}"
    )


def published(daemons: list[DaemonProcess], until_seq: int, first_seq: int = 1) -> list[dict]:
    return [event for daemon in daemons for event in daemon.events if first_seq <= event["seq"] <= until_seq]


def nth_seq(daemon: DaemonProcess, count: int) -> int:
    return daemon.wait_for(lambda events: len(events) >= count, timeout=60)[count - 1]["seq"]


# --- subjects ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("channel", ["game.tick", "raw.new trade", "raw.a*b>c", "raw..x.", "raw.100%", "raw.ünï"])
def test_every_channel_name_has_a_valid_subject_that_names_it_back(channel):
    subject = subject_for(channel)
    tokens = subject.split(".")
    assert all(tokens) and all(token.isascii() and token.isprintable() for token in tokens)
    assert not any(char in subject for char in " \t*>"), subject
    assert channel_of(subject) == channel


# --- one server -------------------------------------------------------------------------------------


@pytest.mark.slow
async def test_ten_thousand_events_reach_a_nats_subscriber_complete_and_in_order(nats_server, tmp_path, started):
    daemon, env = nats_daemon(tmp_path / "data", fast_sim(started), nats_server.url, started)
    last = nth_seq(daemon, 10_000)
    items = await read(nats_server.url, last)
    assert_same_events(as_published(items), published([daemon], last))
    report = wait_health(env, lambda report: (report["nats"]["acked_seq"] or 0) >= last)
    assert report["nats"]["state"] == "connected" and report["nats"]["last_error"] is None


@pytest.mark.slow
async def test_what_the_stream_no_longer_holds_is_a_client_gap(nats_server, tmp_path, started):
    daemon, env = nats_daemon(tmp_path / "data", fast_sim(started), nats_server.url, started)
    last = nth_seq(daemon, 300)
    wait_health(env, lambda report: (report["nats"]["acked_seq"] or 0) >= last)
    connection = await nats.connect(nats_server.url)
    try:
        # A fresh daemon's first run numbers its events from 1, so stream position n holds seq n.
        await connection.jetstream().purge_stream(STREAM, seq=201)  # as `max_age` would: the oldest are gone
    finally:
        await connection.close()
    items = await read(nats_server.url, last)
    assert items[0].type == "client.gap" and items[0].data == {"from_seq": 1, "to_seq": 200}
    assert_same_events(as_published(items[1:]), published([daemon], last, 201))


@pytest.mark.slow
async def test_nats_down_for_five_seconds_loses_nothing_and_health_shows_the_backlog(nats_server, tmp_path, started):
    """The daemon's bridge and a client reading live both ride out the outage. A quarter of the usual
    pace still puts thousands of events behind during the outage, with a quarter of them to read twice."""
    daemon, env = nats_daemon(
        tmp_path / "data", fast_sim(started, speed=50), nats_server.url, started, VECTRA_NATS_BACKLOG_DEGRADED="300"
    )
    healthy = await asyncio.to_thread(
        wait_health, env, lambda report: report["status"] == "ok" and report["nats"]["acked_seq"] is not None
    )
    final: list[int] = []
    live: list = []
    reading = asyncio.create_task(read(nats_server.url, lambda: final[0] if final else 10**12, into=live))
    await asyncio.to_thread(nth_seq, daemon, len(daemon.events) + 500)
    nats_server.stop()
    behind = await asyncio.to_thread(wait_health, env, lambda report: report["nats"]["backlog"] > 300)
    assert behind["status"] == "degraded" and behind["nats"]["degraded"]
    assert behind["nats"]["state"] != "connected" and behind["nats"]["last_error"]
    await asyncio.sleep(5)  # the outage itself
    nats_server.start()
    stopped_at = daemon.events[-1]["seq"]
    last = await asyncio.to_thread(nth_seq, daemon, len(daemon.events) + 500)
    recovered = await asyncio.to_thread(
        wait_health, env, lambda report: (report["nats"]["acked_seq"] or 0) >= last and not report["nats"]["degraded"]
    )
    assert recovered["nats"]["state"] == "connected" and recovered["status"] == "ok"
    assert healthy["nats"]["acked_seq"] < stopped_at
    final.append(last)
    await reading
    assert [item.data["state"] for item in live if item.type == "client.status"][:2] == ["down", "up"]
    assert {item.data["url"] for item in live if item.type == "client.status"} == {nats_server.url}
    # The live reader ran ahead of `last` while the test waited for the bridge to catch up.
    read_live = [item for item in live if item.type != "client.status" and (item.seq is None or item.seq <= last)]
    assert_same_events(as_published(read_live), published([daemon], last))
    assert_same_events(as_published(await read(nats_server.url, last)), published([daemon], last))
    assert await seq_at(nats_server.url, last) == last, "the stream holds each event once: position n is seq n"


@pytest.mark.slow
async def test_a_bridge_whose_first_server_is_dead_says_so_and_publishes_through_the_second(
    nats_server, tmp_path, started
):
    """Each connection tries the servers in the order listed, each at once, then fails for the
    supervisor to back off and `/health` to say why (nats-py alone would keep retrying inside one
    connect, the bridge stuck `connecting`); once the second server is up, it gets every event."""
    nats_server.stop()
    urls = f"nats://127.0.0.1:{free_port()},{nats_server.url}"
    daemon, env = nats_daemon(tmp_path / "data", fast_sim(started), urls, started)
    failing = wait_health(env, lambda report: report["nats"]["state"] == "failed")
    assert failing["nats"]["last_error"] and failing["nats"]["acked_seq"] is None
    nats_server.start()
    last = nth_seq(daemon, len(daemon.events) + 300)
    connected = wait_health(env, lambda report: (report["nats"]["acked_seq"] or 0) >= last)
    assert connected["nats"]["state"] == "connected"
    assert_same_events(as_published(await read(nats_server.url, last)), published([daemon], last))


@pytest.mark.slow
async def test_a_backlog_older_than_the_ring_is_read_from_the_recordings(nats_server, tmp_path, started):
    """NATS is away from the start while 3,000 events pass through a ring of 1,000; NATS then comes
    while the feed goes on: the first 2,000 can only come from the recordings, read a range at a
    time while the log of the segment being written grows."""
    nats_server.stop()
    daemon, env = nats_daemon(
        tmp_path / "data", fast_sim(started), nats_server.url, started, VECTRA_RING_SIZE="1000", VECTRA_RECORD="true"
    )
    nth_seq(daemon, 3000)
    waiting = health(env)
    assert waiting["nats"]["acked_seq"] is None and waiting["nats"]["backlog"] >= 3000
    nats_server.start()
    last = nth_seq(daemon, len(daemon.events) + 3000)
    wait_health(env, lambda report: (report["nats"]["acked_seq"] or 0) >= last, timeout=60)
    items = await read(nats_server.url, last)
    assert_same_events(as_published(items), published([daemon], last))


@pytest.mark.slow
async def test_a_message_no_bridge_published_is_a_clear_error_for_the_bridge_and_the_client(
    nats_server, tmp_path, started
):
    connection = await nats.connect(nats_server.url)
    try:
        js = connection.jetstream()
        await js.add_stream(name=STREAM, subjects=[SUBJECTS])
        await js.publish("vectra.game.tick", b"{}")  # someone else's message, without Vectra-Seq
    finally:
        await connection.close()
    daemon, env = nats_daemon(tmp_path / "data", fast_sim(started), nats_server.url, started)
    report = wait_health(env, lambda report: "Vectra-Seq" in (report["nats"]["last_error"] or ""))
    assert report["nats"]["acked_seq"] is None, "nothing is published after a message it cannot place"
    with pytest.raises(ClientError, match="no valid Vectra-Seq"):
        await read(nats_server.url, 10)


# --- restarts -------------------------------------------------------------------------------------


@pytest.mark.slow
async def test_the_client_resumes_from_seq_across_its_own_restart_and_a_daemon_restart(nats_server, tmp_path, started):
    """The daemon is killed (its last events may not have reached NATS yet; the recordings hold them)
    and started again: its `sys.start` skips the block the killed run reserved, which is no loss."""
    sim = fast_sim(started)
    first, env = nats_daemon(tmp_path / "data", sim, nats_server.url, started, VECTRA_RECORD="true")
    middle = nth_seq(first, 400)
    before = await read(nats_server.url, middle)  # the client reads, then stops (its own restart)
    assert_same_events(as_published(before), published([first], middle))
    nth_seq(first, 800)
    first.kill()
    second = DaemonProcess(env).start()
    started(second)
    start = second.wait_for(lambda events: len(events) >= 1)[0]
    assert start["type"] == "sys.start" and start["data"]["skipped"], "a SIGKILL leaves a reserved block unused"
    last = nth_seq(second, 300)
    after = await read(nats_server.url, last, from_seq=middle + 1)
    assert not [item for item in after if item.type == "client.gap"], "skipped numbers are no loss"
    # The killed daemon's stdout may lack its very last events (printed after they were recorded):
    # the stream must hold every number up to the `previous_last_seq` its successor announced.
    got = as_published(after)
    previous = start["data"]["previous_last_seq"]
    assert [event["seq"] for event in got] == [
        *range(middle + 1, previous + 1), *(event["seq"] for event in published([second], last))
    ]
    by_seq = {event["seq"]: event for event in got}
    assert all(by_seq[event["seq"]] == event for event in published([first, second], last, middle + 1))
    games = await read(nats_server.url, last, "game.*", "sys.start", from_seq=middle + 1)
    assert as_published(games) == [event for event in got if event["type"].startswith("game.") or event["type"] == "sys.start"]


# --- a cluster ------------------------------------------------------------------------------------


@pytest.mark.slow
async def test_a_node_of_a_three_replica_cluster_dies_and_a_client_on_a_survivor_sees_everything(
    nats_cluster, tmp_path, started
):
    urls = ",".join(server.url for server in nats_cluster)
    daemon, env = nats_daemon(tmp_path / "data", fast_sim(started), urls, started, VECTRA_NATS_REPLICAS="3")
    wait_health(env, lambda report: report["nats"]["acked_seq"] is not None and report["nats"]["backlog"] < 1000)
    leader = await stream_leader(nats_cluster[0].url)  # the node whose loss hurts most: a new leader is elected
    doomed = next(server for server in nats_cluster if server.name == leader)
    survivor = next(server for server in nats_cluster if server is not doomed)
    final: list[int] = []
    reading = asyncio.create_task(read(survivor.url, lambda: final[0] if final else 10**12))
    await asyncio.to_thread(nth_seq, daemon, len(daemon.events) + 1000)
    doomed.kill()
    last = await asyncio.to_thread(nth_seq, daemon, len(daemon.events) + 2000)
    final.append(last)
    assert_same_events(as_published(await reading), published([daemon], last))
    wait_health(env, lambda report: (report["nats"]["acked_seq"] or 0) >= last)
    assert await stream_leader(survivor.url) != leader


async def stream_leader(url: str) -> str:
    connection = await nats.connect(url)
    try:
        return (await connection.jetstream().stream_info(STREAM)).cluster.leader
    finally:
        await connection.close()


async def seq_at(url: str, position: int) -> int:
    connection = await nats.connect(url)
    try:
        return int((await connection.jetstream().get_msg(STREAM, seq=position)).headers["Vectra-Seq"])
    finally:
        await connection.close()
