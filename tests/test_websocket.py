"""The WebSocket transport over real loopback sockets: subscriptions, resume, slow clients, bad input.

The foundation runs in-process with only the HTTP/WebSocket component, and events are published
straight onto its bus, so each test controls exactly which events exist; the clients are real
websockets clients (and, for the first test, separate processes).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import re
import socket
import subprocess
import sys
from fnmatch import fnmatchcase
from pathlib import Path

import pytest
import yaml
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidStatus

from core.broadcast.http_ws import HttpWsServer
from core.contracts.channels import CHANNELS
from core.config import Settings
from core.foundation import Foundation

REPO = Path(__file__).resolve().parent.parent
MIXED_CHANNELS = ["game.tick", "game.phase", "player.update", "player.trade", "sidebet.placed", "connection.status"]


@contextlib.asynccontextmanager
async def running(tmp_path: Path, **settings):
    """A started foundation whose only component is the HTTP/WebSocket server; its heartbeat is slow
    (10 s), so a test's clients see the events it publishes and the heartbeats it sends itself."""
    values = {"data_dir": tmp_path / "data", "http_port": 0, "heartbeat_s": 10, **settings}
    foundation = Foundation(Settings(_env_file=None, **values))
    server = HttpWsServer(foundation)
    foundation.add_component(server)
    await foundation.start()
    try:
        yield foundation, server
    finally:
        await foundation.stop()


def matches(channel: str, patterns: list[str]) -> bool:
    return any(fnmatchcase(channel, pattern) for pattern in patterns)


def ws_url(server: HttpWsServer) -> str:
    return f"ws://127.0.0.1:{server.port}/ws"


def publish_mixed(foundation: Foundation, count: int, size: int = 0) -> list[dict]:
    """`count` events cycling through several channels; returns them as a subscriber sees them."""
    padding = "x" * size
    published = []
    for index in range(count):
        channel = MIXED_CHANNELS[index % len(MIXED_CHANNELS)]
        envelope = foundation.bus.publish(channel, {"index": index, "pad": padding}, source="socketio")
        published.append(envelope.as_dict())
    return published


async def drop(client: ClientConnection) -> None:
    """End a connection the way a killed subscriber does: no closing handshake."""
    client.transport.abort()
    await client.wait_closed()


async def command(client: ClientConnection, request: dict) -> dict:
    """Send one command and return its reply (events that arrive meanwhile are skipped)."""
    await client.send(json.dumps(request))
    while True:
        message = json.loads(await asyncio.wait_for(client.recv(), timeout=10))
        if "seq" not in message or "v" not in message:
            return message


async def receive_until(client: ClientConnection, last_seq: int) -> list[dict]:
    """Every event (and gap) received until one with `seq >= last_seq`."""
    received = []
    while True:
        message = json.loads(await asyncio.wait_for(client.recv(), timeout=20))
        received.append(message)
        if message.get("seq", 0) >= last_seq and "v" in message:
            return received


SUBSCRIBER_SCRIPT = """
import asyncio, json, sys
from websockets.asyncio.client import connect

async def main(url, expected, patterns):
    async with connect(url) as ws:
        await ws.send(json.dumps({"action": "subscribe", "channels": patterns}))
        print(json.dumps(json.loads(await ws.recv())), flush=True)
        for _ in range(expected):
            print(await ws.recv(), flush=True)

asyncio.run(main(sys.argv[1], int(sys.argv[2]), sys.argv[3:]))
"""


async def test_subscribers_in_other_processes_get_exactly_their_channels(tmp_path):
    async with running(tmp_path) as (foundation, server):
        wanted = {"games": ["game.*"], "players": ["player.update", "connection.*"]}
        channels = [MIXED_CHANNELS[index % len(MIXED_CHANNELS)] for index in range(240)]
        expected_counts = {
            name: sum(1 for channel in channels if matches(channel, patterns)) for name, patterns in wanted.items()
        }
        processes = {
            name: await asyncio.create_subprocess_exec(
                sys.executable, "-c", SUBSCRIBER_SCRIPT, ws_url(server), str(expected_counts[name]), *patterns,
                stdout=subprocess.PIPE, cwd=REPO,
            )
            for name, patterns in wanted.items()
        }
        try:
            for process in processes.values():
                reply = json.loads(await asyncio.wait_for(process.stdout.readline(), timeout=20))
                assert reply["type"] == "subscribed"
            published = publish_mixed(foundation, 240)
            for name, process in processes.items():
                output, _ = await asyncio.wait_for(process.communicate(), timeout=20)
                received = [json.loads(line) for line in output.decode().splitlines()]
                expected = [event for event in published if matches(event["type"], wanted[name])]
                assert received == expected, name
        finally:
            for process in processes.values():
                if process.returncode is None:
                    process.kill()
                    await process.wait()


async def test_resume_with_from_seq_while_events_keep_coming_has_no_gap_and_no_duplicate(tmp_path):
    async with running(tmp_path) as (foundation, server):
        total = 3000

        async def publish_steadily() -> None:
            for _ in range(total // 20):
                publish_mixed(foundation, 20)
                await asyncio.sleep(0.001)

        client = await connect(ws_url(server))
        reply = await command(client, {"action": "subscribe", "channels": ["*"]})
        start_seq = reply["seq"]
        publisher = asyncio.create_task(publish_steadily())
        first_part = [json.loads(await client.recv()) for _ in range(500)]
        await drop(client)
        async with connect(ws_url(server)) as client:
            resume_at = first_part[-1]["seq"] + 1
            reply = await command(client, {"action": "subscribe", "channels": ["*"], "from_seq": resume_at})
            assert reply["type"] == "subscribed"
            await publisher
            second_part = await receive_until(client, foundation.bus.last_seq)
        seqs = [event["seq"] for event in first_part + second_part]
        assert seqs == list(range(start_seq + 1, foundation.bus.last_seq + 1))


async def test_resume_older_than_the_ring_gets_an_explicit_gap_first(tmp_path):
    async with running(tmp_path, ring_size=1000) as (foundation, server):
        publish_mixed(foundation, 1500)
        first_held = foundation.bus.ring.first_seq
        async with connect(ws_url(server)) as client:
            await command(client, {"action": "subscribe", "channels": ["*"], "from_seq": 1})
            received = await receive_until(client, foundation.bus.last_seq)
        assert received[0] == {"type": "gap", "from_seq": 1, "to_seq": first_held - 1}
        assert [event["seq"] for event in received[1:]] == list(range(first_held, foundation.bus.last_seq + 1))


async def test_resume_past_a_ring_bounded_by_memory_gets_the_gap_then_every_held_event_intact(tmp_path):
    async with running(tmp_path, ring_max_mb=0.5) as (foundation, server):
        published = publish_mixed(foundation, 2000, size=2000)
        await asyncio.sleep(0)  # the ring's packer compresses the sealed blocks meanwhile
        first_held = foundation.bus.ring.first_seq
        async with connect(ws_url(server), max_size=None) as client:
            await command(client, {"action": "subscribe", "channels": ["*"], "from_seq": 1})
            received = await receive_until(client, foundation.bus.last_seq)
        assert first_held > published[0]["seq"]  # 4 MB of events do not fit in half a megabyte
        assert received[0] == {"type": "gap", "from_seq": 1, "to_seq": first_held - 1}
        assert received[1:] == [event for event in published if event["seq"] >= first_held]


async def test_live_events_of_every_frame_size_reach_every_client_whole(tmp_path):
    """Each live event's frame is built once and shared by the clients: events whose length takes the
    short, the 16-bit and the 64-bit length field of a WebSocket frame all arrive intact, in order,
    at every client, and replies to one client in between take their place among them."""
    sizes = (0, 200, 70_000, 5_000, 10)
    async with running(tmp_path) as (foundation, server):
        clients = [await connect(ws_url(server), max_size=None) for _ in range(3)]
        try:
            for client in clients:
                await command(client, {"action": "subscribe", "channels": ["*"]})
            published = []
            for size in sizes:
                published += publish_mixed(foundation, 2, size=size)
                await clients[1].send(json.dumps({"action": "ping", "id": size}))
                await asyncio.sleep(0.05)  # the reply goes out before the next events are published
            published += publish_mixed(foundation, 2)
            received = [await receive_until(client, published[-1]["seq"]) for client in clients]
            for messages in received:
                assert [event for event in messages if "v" in event] == published
            pongs = [message for message in received[1] if message.get("type") == "pong"]
            assert [pong["id"] for pong in pongs] == list(sizes)
            assert all(received[1].index(pong) == 3 * position + 2 for position, pong in enumerate(pongs))
        finally:
            for client in clients:
                await client.close()


async def test_a_second_subscribe_replays_only_the_new_channels(tmp_path):
    async with running(tmp_path) as (foundation, server):
        async with connect(ws_url(server)) as client:
            await command(client, {"action": "subscribe", "channels": ["game.*"]})
            published = publish_mixed(foundation, 60)
            games = await receive_until(client, max(e["seq"] for e in published if e["type"].startswith("game.")))
            reply = await command(
                client, {"action": "subscribe", "channels": ["player.update"], "from_seq": published[0]["seq"]}
            )
            assert reply["channels"] == ["game.*", "player.update"]
            replayed = await receive_until(client, max(e["seq"] for e in published if e["type"] == "player.update"))
        assert games == [e for e in published if e["type"].startswith("game.")]
        assert replayed == [e for e in published if e["type"] == "player.update"]


async def test_unsubscribe_stops_those_channels(tmp_path):
    async with running(tmp_path) as (foundation, server):
        async with connect(ws_url(server)) as client:
            await command(client, {"action": "subscribe", "channels": ["game.*", "player.*"]})
            reply = await command(client, {"action": "unsubscribe", "channels": ["game.*"]})
            assert reply == {"type": "unsubscribed", "channels": ["player.*"]}
            published = publish_mixed(foundation, 30)
            received = await receive_until(client, max(e["seq"] for e in published if e["type"].startswith("player.")))
        assert {event["type"] for event in received} == {"player.update", "player.trade"}


async def test_patterns_beyond_the_limit_are_refused_whole_and_unsubscribe_makes_room(tmp_path):
    async with running(tmp_path, max_patterns=5) as (foundation, server):
        async with connect(ws_url(server)) as client:
            await command(client, {"action": "subscribe", "channels": ["game.*", "nothing.1", "nothing.2"]})
            again = await command(client, {"action": "subscribe", "channels": ["game.*", "nothing.3"]})
            assert again["channels"] == ["game.*", "nothing.1", "nothing.2", "nothing.3"]
            refused = await command(client, {"action": "subscribe", "channels": ["player.*", "n.5", "n.6"], "id": 9})
            assert refused["type"] == "error" and refused["id"] == 9 and refused["data"]["code"] == "too_many_patterns"
            assert "VECTRA_MAX_PATTERNS" in refused["data"]["message"]
            published = publish_mixed(foundation, 30)
            received = await receive_until(client, max(e["seq"] for e in published if e["type"].startswith("game.")))
            assert received == [e for e in published if e["type"].startswith("game.")], "nothing of it was added"
            await command(client, {"action": "unsubscribe", "channels": ["nothing.1", "nothing.2", "nothing.3"]})
            await asyncio.sleep(1.1)  # a new second, for the limit of patterns added per second
            widened = await command(client, {"action": "subscribe", "channels": ["player.*", "n.5", "n.6"]})
            assert widened["channels"] == ["game.*", "player.*", "n.5", "n.6"]
            published = publish_mixed(foundation, 30)
            received = await receive_until(client, max(e["seq"] for e in published if e["type"].startswith("player.")))
        assert received == [e for e in published if e["type"].startswith(("game.", "player."))]


async def test_a_client_cannot_add_patterns_faster_than_it_may_hold_them(tmp_path):
    """Unsubscribing makes room, but not for more than the limit of new patterns within one second:
    each new pattern costs the daemon work, the same for every client."""
    async with running(tmp_path, max_patterns=5) as (foundation, server):
        async with connect(ws_url(server)) as client:
            refused = None
            for attempt in range(10):  # each round is far quicker than a second; one falls within one
                for batch in ([f"a{attempt}.{n}" for n in range(5)], [f"b{attempt}"]):
                    reply = await command(client, {"action": "subscribe", "channels": batch})
                    if reply["type"] == "error":
                        refused = reply
                        break
                    await command(client, {"action": "unsubscribe", "channels": batch})
                if refused:
                    break
            assert refused is not None and refused["data"]["code"] == "too_many_patterns"
            assert "within one second" in refused["data"]["message"]
            await asyncio.sleep(1.1)  # a new second
            accepted = await command(client, {"action": "subscribe", "channels": ["game.*", "c.1", "c.2", "c.3", "c.4"]})
            assert accepted["type"] == "subscribed"


async def test_heartbeat_reaches_only_clients_subscribed_to_sys(tmp_path):
    async with running(tmp_path) as (foundation, server):
        async with connect(ws_url(server)) as sys_client, connect(ws_url(server)) as game_client:
            await command(sys_client, {"action": "subscribe", "channels": ["sys.*"]})
            await command(game_client, {"action": "subscribe", "channels": ["game.*"]})
            foundation.bus.control({"type": "sys.heartbeat", "last_seq": foundation.bus.last_seq})
            tick = foundation.bus.publish("game.tick", {}, source="socketio")
            heartbeat = json.loads(await asyncio.wait_for(sys_client.recv(), timeout=10))
            first_for_game = json.loads(await asyncio.wait_for(game_client.recv(), timeout=10))
        assert heartbeat == {"type": "sys.heartbeat", "last_seq": tick.seq - 1}
        assert first_for_game["seq"] == tick.seq


async def _slow_client(url: str) -> ClientConnection:
    """A client whose socket takes almost nothing before the server's writes back up."""
    raw = socket.socket()
    raw.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    raw.setblocking(False)
    host, port = url.split("/")[2].split(":")
    await asyncio.get_running_loop().sock_connect(raw, (host, int(port)))
    return await connect(url, sock=raw, max_queue=1)


async def test_200_clients_one_never_reading_the_others_get_everything_and_it_resumes(tmp_path):
    """The publisher goes at the pace of the 199 readers (which share this process's CPU with
    the server); the client that never reads must neither slow that pace nor lose anything."""
    event_count, event_size, batch = 120, 5000, 4
    async with running(tmp_path, ws_buffer_bytes=64 * 1024) as (foundation, server):
        url = ws_url(server)
        clients = [await connect(url) for _ in range(199)]
        slow = await _slow_client(url)
        try:
            for client in [*clients, slow]:
                await client.send(json.dumps({"action": "subscribe", "channels": ["*"]}))
            for client in [*clients, slow]:
                assert json.loads(await client.recv())["type"] == "subscribed"
            first_seq = foundation.bus.last_seq + 1
            last_seq = first_seq + event_count - 1
            received: list[list[dict]] = [[] for _ in clients]

            async def read_all(client: ClientConnection, into: list[dict]) -> None:
                while not into or into[-1]["seq"] < last_seq:
                    into.append(json.loads(await asyncio.wait_for(client.recv(), timeout=20)))

            async def read_until_closed(client: ClientConnection, into: list[dict]) -> ConnectionClosed:
                try:
                    while True:
                        into.append(json.loads(await asyncio.wait_for(client.recv(), timeout=20)))
                except ConnectionClosed as closed:
                    return closed

            readers = asyncio.gather(*(read_all(client, into) for client, into in zip(clients, received)))
            got_before_close: list[dict] = []
            slow_reader = None
            for published in range(batch, event_count + 1, batch):
                publish_mixed(foundation, batch, event_size)
                while min(len(into) for into in received) < published:
                    await asyncio.sleep(0.002)
                if server.closed_slow and slow_reader is None:  # cut off: now it reads what it was sent
                    slow_reader = asyncio.create_task(read_until_closed(slow, got_before_close))
            await readers
            for into in received:
                assert [event["seq"] for event in into] == list(range(first_seq, last_seq + 1))
            assert slow_reader is not None, "the client that never reads must be cut off"
            assert server.closed_slow == 1
            closed = await slow_reader
            assert closed.rcvd is not None and closed.rcvd.code == 1008
            assert "from_seq" in closed.rcvd.reason
            resume_at = got_before_close[-1]["seq"] + 1 if got_before_close else first_seq
            async with connect(url) as again:
                await command(again, {"action": "subscribe", "channels": ["*"], "from_seq": resume_at})
                rest = await receive_until(again, last_seq)
            seqs = [event["seq"] for event in got_before_close + rest]
            assert seqs == list(range(first_seq, last_seq + 1))
        finally:
            await asyncio.gather(*(client.close() for client in [*clients, slow]), return_exceptions=True)


BAD_INPUT = [
    ("not json", "bad_json"),
    ("[1, 2]", "bad_request"),
    ('{"channels": ["game.*"]}', "bad_request"),
    ('{"action": 5}', "bad_request"),
    ('{"action": "launch_rocket"}', "unknown_action"),
    ('{"action": "subscribe", "channels": []}', "bad_request"),
    ('{"action": "subscribe", "channels": "game.*", "from_seq": "ten"}', "bad_request"),
    ('{"action": "subscribe", "channels": [7]}', "bad_request"),
    ('{"action": "unsubscribe"}', "bad_request"),
    (b"\x00\x01binary", "binary_not_supported"),
    ('{"action": "ping", "pad": "' + "x" * 70_000 + '"}', "too_large"),
]


async def test_every_kind_of_bad_input_gets_its_error_and_the_connection_carries_on(tmp_path):
    async with running(tmp_path) as (foundation, server):
        async with connect(ws_url(server)) as client:
            await command(client, {"action": "subscribe", "channels": ["game.*"]})
            for message, code in BAD_INPUT:
                await client.send(message)
                reply = json.loads(await asyncio.wait_for(client.recv(), timeout=10))
                assert reply["type"] == "error" and reply["data"]["code"] == code, message[:60]
                assert reply["data"]["message"]
            tick = foundation.bus.publish("game.tick", {}, source="socketio")
            assert json.loads(await client.recv())["seq"] == tick.seq
            assert (await command(client, {"action": "ping", "id": "p1"}))["type"] == "pong"


async def test_replies_echo_the_command_id(tmp_path):
    async with running(tmp_path) as (foundation, server):
        async with connect(ws_url(server)) as client:
            assert (await command(client, {"action": "ping", "id": 41}))["id"] == 41
            assert (await command(client, {"action": "snapshot", "id": "s"}))["type"] == "snapshot"
            assert (await command(client, {"action": "nope", "id": "n"}))["id"] == "n"


async def test_a_flood_closes_the_connection_with_a_reason(tmp_path):
    async with running(tmp_path, ws_max_messages_per_s=20) as (foundation, server):
        async with connect(ws_url(server)) as client:
            with pytest.raises(ConnectionClosed) as closed:
                for _ in range(200):
                    await client.send('{"action": "ping"}')
                while True:
                    await asyncio.wait_for(client.recv(), timeout=10)
            assert closed.value.rcvd.code == 1008 and "flood" in closed.value.rcvd.reason
        async with connect(ws_url(server)) as other:
            assert (await command(other, {"action": "ping"}))["type"] == "pong"


async def test_a_message_beyond_the_hard_limit_closes_with_1009(tmp_path):
    async with running(tmp_path, ws_max_message_bytes=1024) as (foundation, server):
        async with connect(ws_url(server), max_size=None) as client:
            with pytest.raises(ConnectionClosed) as closed:
                await client.send("x" * 1024 * 20)
                await asyncio.wait_for(client.recv(), timeout=10)
            assert closed.value.rcvd.code == 1009


async def test_cross_origin_browser_is_refused_and_same_origin_works(tmp_path):
    async with running(tmp_path) as (foundation, server):
        with pytest.raises(InvalidStatus) as refused:
            await connect(ws_url(server), origin="http://evil.example")
        assert refused.value.response.status_code == 403
        for origin in (f"http://127.0.0.1:{server.port}", f"http://localhost:{server.port}", "http://localhost:3000"):
            async with connect(ws_url(server), origin=origin) as client:
                assert (await command(client, {"action": "ping"}))["type"] == "pong"


async def test_allow_list_admits_a_named_origin(tmp_path):
    async with running(tmp_path, http_allowed_origins="https://dash.example") as (foundation, server):
        async with connect(ws_url(server), origin="https://dash.example") as client:
            assert (await command(client, {"action": "ping"}))["type"] == "pong"


async def test_control_commands_need_the_token_reading_does_not(tmp_path):
    async with running(tmp_path, auth_token="s3cret") as (foundation, server):
        async with connect(ws_url(server)) as client:
            refused = await command(client, {"action": "reconnect"})
            assert refused["type"] == "error" and refused["data"]["code"] == "unauthorized"
            assert "needs VECTRA_AUTH_TOKEN" in refused["data"]["message"]
            wrong = await command(client, {"action": "reconnect", "token": "guess"})
            assert wrong["data"]["code"] == "unauthorized"
            assert "is not the daemon's VECTRA_AUTH_TOKEN" in wrong["data"]["message"], "a wrong token is told apart"
            assert "guess" not in wrong["data"]["message"]
            assert (await command(client, {"action": "reconnect", "token": "s3cret"}))["type"] == "reconnecting"
            assert (await command(client, {"action": "subscribe", "channels": ["*"]}))["type"] == "subscribed"
            assert (await command(client, {"action": "health"}))["type"] == "health"
        bearer = {"Authorization": "Bearer s3cret"}
        async with connect(ws_url(server), additional_headers=bearer) as client:
            assert (await command(client, {"action": "reconnect"}))["type"] == "reconnecting"


def test_asyncapi_describes_both_transports_and_every_channel():
    spec = yaml.safe_load((REPO / "docs" / "asyncapi.yaml").read_text())
    assert spec["asyncapi"].startswith("3.")
    assert {server["protocol"] for server in spec["servers"].values()} >= {"ws", "zmq"}
    addresses = {channel["address"] for channel in spec["channels"].values()}
    assert set(CHANNELS) <= addresses
    documented_events = {
        channel["address"] for channel in spec["channels"].values() if channel.get("x-vectra-kind") == "event"
    }
    assert documented_events == set(CHANNELS)
    for reference in _references(spec):
        target = spec
        for key in reference.removeprefix("#/").split("/"):
            assert key in target, f"{reference} does not resolve"
            target = target[key]


def _references(node) -> list[str]:
    if isinstance(node, dict):
        own = [node["$ref"]] if "$ref" in node else []
        return own + [ref for value in node.values() for ref in _references(value)]
    if isinstance(node, list):
        return [ref for value in node for ref in _references(value)]
    return []


def documented_exchanges() -> list[tuple[str, dict, list[dict]]]:
    """(section, request, replies) for every request example under `## Commands and replies`."""
    doc = (REPO / "docs" / "PROTOCOL.md").read_text()
    body = doc.split("\n## Commands and replies", 1)[1].split("\n## ", 1)[0]
    parts = re.split(r"^### (.+)$", body, flags=re.M)
    exchanges = []
    for title, section in zip(parts[1::2], parts[2::2]):
        for block in re.findall(r"```json\n(.*?)\n```", section, flags=re.S):
            message = json.loads(block)
            if "action" in message:
                exchanges.append((title, message, []))
            else:
                exchanges[-1][2].append(message)
    return exchanges


def test_the_commands_doc_has_examples():
    titles = {title for title, _, _ in documented_exchanges()}
    assert {"`subscribe`", "`unsubscribe`", "`ping`", "`snapshot`", "`health`", "`reconnect`", "Errors"} <= titles


async def test_every_documented_command_gets_the_documented_replies(tmp_path):
    async with running(tmp_path, ring_size=1000, auth_token="s3cret") as (foundation, server):
        for tick in range(1500):
            foundation.bus.publish("game.tick", {"tickCount": tick}, source="socketio")
        for title, request, documented in documented_exchanges():
            client = await connect(ws_url(server))
            await client.send(json.dumps(request))
            received: list[dict] = []
            while len(received) < len(documented):
                message = json.loads(await asyncio.wait_for(client.recv(), timeout=10))
                if "v" in message and "v" not in documented[len(received)]:
                    continue
                received.append(message)
            await drop(client)
            for got, expected in zip(received, documented):
                where = f"{title}: {request}"
                assert got["type"] == expected["type"], where
                assert set(got) == set(expected), where
                if got["type"] == "error":
                    assert got["data"]["code"] == expected["data"]["code"], where
