"""One request model for every path in: the same mistakes get the same replies on the WebSocket and on
the ZeroMQ ROUTER (real clients against one real foundation running both transports), the console
refuses what the daemon would, and the HTTP side serves only the host names it should.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import socket
from pathlib import Path
from typing import get_args

import orjson
import pytest
import zmq
import zmq.asyncio
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed, InvalidStatus

from core.assembly import COMPONENTS, SOURCES, build_foundation
from core.broadcast.http_ws import HttpWsServer
from core.broadcast.zmq_transport import ZmqTransport
from core.config import SOURCES as SETTING_SOURCES, load_settings
from core.contracts.channels import SourceName
from core.contracts.recordings import PREFIX, WAL, WAL_DIR, recordings_dir
from core.foundation import Foundation
from core.recorder.history import RecordingHistory
from tests.conftest import free_port
from tests.test_websocket import documented_exchanges
from vectra_tui.remote import RemoteFoundation

pytestmark = pytest.mark.timeout(60)

BEYOND_SEQ = [2**63, 2**63 + 1, 2**64 - 1, 2**64]


@contextlib.asynccontextmanager
async def both_transports(tmp_path: Path, **overrides):
    """A started foundation without a feed, with the real WebSocket and ZeroMQ transports."""
    settings = load_settings(
        {
            "data_dir": tmp_path / "data",
            "http_port": 0,
            "zmq_pub": f"tcp://127.0.0.1:{free_port()}",
            "zmq_router": f"tcp://127.0.0.1:{free_port()}",
            "ring_size": 1000,
            "heartbeat_s": 10,
            **overrides,
        }
    )
    foundation = Foundation(settings)
    server = HttpWsServer(foundation)
    foundation.add_component(ZmqTransport(foundation))
    foundation.add_component(server)
    await foundation.start()
    context = zmq.asyncio.Context()
    dealer = context.socket(zmq.DEALER)
    dealer.setsockopt(zmq.LINGER, 0)
    dealer.connect(settings.zmq_router)
    try:
        async with connect(f"ws://127.0.0.1:{server.port}/ws") as client:
            yield foundation, server, client, dealer
    finally:
        dealer.close()
        context.term()
        await foundation.stop()


async def ws_ask(client, message: str) -> dict:
    await client.send(message)
    return json.loads(await asyncio.wait_for(client.recv(), timeout=10))


async def zmq_ask(dealer, message: str) -> dict:
    await dealer.send(message.encode())
    return orjson.loads(await asyncio.wait_for(dealer.recv(), timeout=10))


@pytest.mark.parametrize("from_seq", BEYOND_SEQ)
async def test_from_seq_beyond_a_64_bit_seq_is_a_bad_request_on_both_transports(tmp_path, from_seq):
    async with both_transports(tmp_path) as (foundation, server, client, dealer):
        subscribe = f'{{"action": "subscribe", "channels": ["*"], "from_seq": {from_seq}, "id": 3}}'
        replay = f'{{"action": "replay", "from_seq": {from_seq}, "id": 4}}'
        for reply in (await ws_ask(client, subscribe), await zmq_ask(dealer, replay)):
            assert reply["type"] == "error" and reply["data"]["code"] == "bad_request", reply
            assert "from_seq" in reply["data"]["message"] and str(2**63 - 1) in reply["data"]["message"]
        resume = f'{{"action": "subscribe", "channels": ["*"], "from_seq": {foundation.bus.last_seq + 1}}}'
        assert (await ws_ask(client, resume))["type"] == "subscribed"
        assert (await ws_ask(client, '{"action": "ping"}'))["type"] == "pong"
        assert (await zmq_ask(dealer, '{"action": "ping"}'))["type"] == "pong"


async def test_a_repeated_key_is_refused_and_runs_nothing_on_both_transports(tmp_path):
    async with both_transports(tmp_path) as (foundation, server, client, dealer):
        for ask, target in ((ws_ask, client), (zmq_ask, dealer)):
            reply = await ask(target, '{"action": "ping", "action": "reconnect", "id": 9}')
            assert reply["type"] == "error" and reply["data"]["code"] == "bad_request", reply
            assert "'action' appears twice" in reply["data"]["message"]
            nested = await ask(target, '{"action": "subscribe", "channels": ["*"], "x": {"a": 1, "a": 2}}')
            assert nested["data"]["code"] == "bad_request"
            # what comes next answers the next request: the reconnect never ran, not even late
            assert (await ask(target, '{"action": "ping"}'))["type"] == "pong"


async def test_an_unknown_action_lists_the_same_commands_on_both_transports(tmp_path):
    documented = next(replies[0] for _, request, replies in documented_exchanges() if request["action"] == "launch_rocket")
    async with both_transports(tmp_path) as (foundation, server, client, dealer):
        on_ws = await ws_ask(client, '{"action": "launch_rocket"}')
        on_zmq = await zmq_ask(dealer, '{"action": "launch_rocket"}')
    assert on_ws == on_zmq == documented
    assert on_ws["data"]["message"] == (
        "unknown action 'launch_rocket'; known: health, ping, reconnect, replay, snapshot, subscribe, unsubscribe"
    )


async def test_an_action_of_the_other_transport_says_where_it_is_answered(tmp_path):
    async with both_transports(tmp_path) as (foundation, server, client, dealer):
        replay_on_ws = await ws_ask(client, '{"action": "replay", "from_seq": 1, "id": "r"}')
        subscribe_on_zmq = await zmq_ask(dealer, '{"action": "subscribe", "channels": ["*"], "id": "s"}')
    assert replay_on_ws["data"]["code"] == "bad_request" and "ZeroMQ only" in replay_on_ws["data"]["message"]
    assert subscribe_on_zmq["data"]["code"] == "bad_request" and "WebSocket only" in subscribe_on_zmq["data"]["message"]
    assert (replay_on_ws["id"], subscribe_on_zmq["id"]) == ("r", "s")


async def test_a_failure_inside_the_websocket_writer_ends_in_an_error_reply_a_close_and_a_log_line(tmp_path, caplog):
    """A log segment that cannot be opened makes a replay from the recordings fail mid-stream."""
    root = recordings_dir(tmp_path / "recorded")
    (root / WAL_DIR / f"{PREFIX}20261125T231500Z-{1:012d}{WAL}").mkdir(parents=True)
    async with both_transports(tmp_path) as (foundation, server, client, dealer):
        foundation.history = RecordingHistory(root)
        for _ in range(1500):  # the ring of 1000 moves on: a resume from 1 reads the recordings
            foundation.bus.publish("game.tick", {}, source="socketio")
        with caplog.at_level(logging.ERROR, logger="core.broadcast.ws_session"):
            subscribed = await ws_ask(client, '{"action": "subscribe", "channels": ["*"], "from_seq": 1}')
            assert subscribed["type"] == "subscribed"
            failed = json.loads(await asyncio.wait_for(client.recv(), timeout=10))
            with pytest.raises(ConnectionClosed) as closed:
                await asyncio.wait_for(client.recv(), timeout=10)
    assert failed["type"] == "error" and failed["data"]["code"] == "internal"
    assert closed.value.rcvd.code == 1011 and "from_seq" in closed.value.rcvd.reason
    assert any("writer" in record.getMessage() and record.exc_info for record in caplog.records)


def http_status(port: int, host: str, path: str = "/") -> int:
    """The status line's code for a GET with exactly this `Host` header, as a rebinding page sends it."""
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(f"GET {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n".encode())
        head = b""
        while b"\r\n" not in head:
            chunk = sock.recv(4096)
            if not chunk:
                break
            head += chunk
    return int(head.split(b" ", 2)[1])


async def test_a_host_name_the_service_does_not_answer_to_is_refused(tmp_path):
    async with both_transports(tmp_path, http_allowed_origins="https://dash.example") as (foundation, server, _, __):
        port = server.port
        for path in ("/health", "/ws", "/"):
            assert await asyncio.to_thread(http_status, port, f"evil.example:{port}", path) == 421, path
        for host in (f"127.0.0.1:{port}", f"localhost:{port}", f"[::1]:{port}", "dash.example", "192.168.1.20:80"):
            assert await asyncio.to_thread(http_status, port, host) == 200, host
        with pytest.raises(InvalidStatus) as refused:
            async with connect(f"ws://127.0.0.1:{port}/ws", additional_headers={"Host": "evil.example"}):
                pass
        assert refused.value.response.status_code == 421


async def test_the_heartbeat_is_the_foundations_and_reaches_a_websocket_client_without_zeromq(tmp_path):
    settings = load_settings({"data_dir": tmp_path / "data", "http_port": 0, "heartbeat_s": 0.2})
    foundation = Foundation(settings)
    server = HttpWsServer(foundation)
    foundation.add_component(server)
    await foundation.start()
    try:
        async with connect(f"ws://127.0.0.1:{server.port}/ws") as client:
            assert (await ws_ask(client, '{"action": "subscribe", "channels": ["sys.*"]}'))["type"] == "subscribed"
            heartbeat = json.loads(await asyncio.wait_for(client.recv(), timeout=10))
    finally:
        await foundation.stop()
    assert heartbeat["type"] == "sys.heartbeat" and heartbeat["last_seq"] == foundation.bus.last_seq
    assert set(heartbeat) == {"type", "last_seq", "first_seq", "ts", "uptime_s"}


async def test_the_console_refuses_a_malformed_command_as_the_daemon_would():
    port = RemoteFoundation(f"ws://127.0.0.1:{free_port()}/ws")  # nothing listens: nothing is sent
    assert (await port.command("record", on="yes"))["data"]["code"] == "bad_request"
    assert (await port.command("chrome", op="explode"))["data"]["code"] == "bad_request"
    assert (await port.command("launch_rockets"))["data"]["code"] == "unknown_action"
    assert (await port.command("record", on=True))["data"]["code"] == "unreachable"


def test_every_source_name_has_one_builder_and_builds_that_source(tmp_path):
    assert set(SOURCES) == set(get_args(SourceName)) == set(SETTING_SOURCES)
    for name in SOURCES:
        settings = load_settings({"data_dir": tmp_path / name, "source": name, "replay_path": tmp_path})
        foundation = build_foundation(settings)
        assert [source.name for source in foundation.sources] == [name]
        built = [component.name for component in foundation.components]
        assert "nats" not in built, "no VECTRA_NATS_URL: no bridge"
        assert len(built) == len(COMPONENTS) - 1 + (1 if name == "cdp" else 0), built
        foundation.seqstore.close()


def test_a_nats_url_adds_the_bridge_and_only_then(tmp_path):
    settings = load_settings({"data_dir": tmp_path, "nats_url": f"nats://127.0.0.1:{free_port()}"})
    foundation = build_foundation(settings)
    assert [component.name for component in foundation.components].count("nats") == 1
    foundation.seqstore.close()
