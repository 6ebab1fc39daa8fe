"""The two places Vectra relies on a library's internals, checked against the installed version.

`core/sources/socketio_tap.py` overrides python-socketio's `AsyncClient._handle_eio_message` and
`_engineio_client_class`, python-engineio's `AsyncClient._trigger_event`, runs python-engineio's
`AsyncClient._read_loop_websocket` with its own `asyncio.wait_for`, and writes an order's
packet on python-engineio's WebSocket (`eio.ws`); `core/chrome/pychrome_tab.py` reaches into
pychrome's `Tab` (`_started`, `_ws`, `_recv_th`, `_recv_loop`, ...). Nothing in a library's changelog promises these, so an upgrade that moves them
must fail here, loudly and by version, not as a silent feed or a browser source that never notices a
dead tab.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib.metadata
import inspect
import threading
from pathlib import Path

import engineio
import pychrome
import pytest
import socketio
from aiohttp import web

from core.chrome.devtools import list_pages
from core.chrome.manager import ChromeManager, terminate_group
from core.chrome.pychrome_tab import PRIVATE_ATTRIBUTES, PRIVATE_METHODS, QuietTab
from core.sources.socketio_tap import ENGINEIO_HOOK, HOOK, LIBRARY_READ_LOOP, READ_LOOP, FrameTap, InlineEngineIO
from tests.conftest import free_port
from tests.test_chrome import chrome_settings, no_browser_outlives_the_test  # noqa: F401 - autouse fixture

CHROMIUM = Path("/usr/bin/chromium")


def version(distribution: str) -> str:
    return f"{distribution} {importlib.metadata.version(distribution)}"


# --- python-socketio -------------------------------------------------------------------------------


def test_python_socketio_still_has_the_engineio_message_hook():
    where = f"{version('python-socketio')}: core/sources/socketio_tap.py overrides AsyncClient.{HOOK}"
    hook = getattr(socketio.AsyncClient, HOOK, None)
    assert hook is not None, f"{where}, which this version no longer has"
    assert inspect.iscoroutinefunction(hook), f"{where}, which is no longer a coroutine"
    assert list(inspect.signature(hook).parameters) == ["self", "data"], (
        f"{where}, whose parameters changed to {inspect.signature(hook)}"
    )
    assert FrameTap._handle_eio_message is not hook, f"{where}, but FrameTap no longer overrides it"


def test_python_engineio_still_runs_message_handlers_through_the_hook_frame_tap_replaces():
    where = f"{version('python-engineio')}: core/sources/socketio_tap.py overrides AsyncClient.{ENGINEIO_HOOK}"
    hook = getattr(engineio.AsyncClient, ENGINEIO_HOOK, None)
    assert hook is not None and inspect.iscoroutinefunction(hook), f"{where}, which this version no longer has"
    assert str(inspect.signature(hook)) == "(self, event, *args, **kwargs)", f"{where}, now {inspect.signature(hook)}"
    client = FrameTap(lambda data: None, logger=False, engineio_logger=False)
    assert isinstance(client.eio, InlineEngineIO), (
        f"{version('python-socketio')}: AsyncClient no longer builds its Engine.IO client from _engineio_client_class"
    )


def test_python_engineio_still_reads_its_websocket_through_asyncio_wait_for():
    where = f"{version('python-engineio')}: core/sources/socketio_tap.py runs AsyncClient.{READ_LOOP} with its own wait_for"
    read_loop = getattr(engineio.AsyncClient, READ_LOOP, None)
    assert read_loop is not None and inspect.iscoroutinefunction(read_loop), f"{where}, which this version no longer has"
    assert list(inspect.signature(read_loop).parameters) == ["self"], f"{where}, now {inspect.signature(read_loop)}"
    assert read_loop.__closure__ is None, f"{where}, which now closes over names a new namespace would not carry"
    names = set(read_loop.__code__.co_names)
    assert {"asyncio", "wait_for", "ws", "receive", "TimeoutError"} <= names, (
        f"{where}, which no longer reads `asyncio.wait_for(self.ws.receive(), ...)`: it uses {sorted(names)}"
    )
    connect = engineio.AsyncClient._connect_websocket
    assert READ_LOOP in connect.__code__.co_names, f"{where}, which _connect_websocket no longer starts"
    assert LIBRARY_READ_LOOP is read_loop and InlineEngineIO._read_loop_websocket is not read_loop, (
        f"{where}, but InlineEngineIO no longer runs it"
    )


@contextlib.asynccontextmanager
async def socketio_server(on_connect):
    server = socketio.AsyncServer(async_mode="aiohttp")
    app = web.Application()
    server.attach(app)
    server.on("connect", on_connect)
    runner = web.AppRunner(app)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    try:
        yield server, f"http://127.0.0.1:{port}"
    finally:
        await runner.cleanup()


async def test_frame_tap_gets_event_packets_undecoded_and_python_socketio_keeps_the_handshake():
    async def greet(sid, environ, auth=None):
        asyncio.get_running_loop().call_later(0.05, lambda: asyncio.ensure_future(
            server.emit("hello", {"price": 1.5}, to=sid)))
        asyncio.get_running_loop().call_later(0.1, lambda: asyncio.ensure_future(
            server.emit("bye", to=sid)))

    frames: list[str | bytes] = []
    async with socketio_server(greet) as (server, url):
        client = FrameTap(frames.append, logger=False, engineio_logger=False)
        got_by_library: list[str] = []
        client.on("hello", lambda data: got_by_library.append("hello"))
        await client.connect(url, transports=["websocket"], wait_timeout=5)
        try:
            assert client.connected, f"{version('python-socketio')}: the handshake no longer completes through FrameTap"
            async with asyncio.timeout(10):
                while len(frames) < 2:
                    await asyncio.sleep(0.02)
        finally:
            await client.disconnect()
    assert frames[:2] == ['2["hello",{"price":1.5}]', '2["bye"]'], (
        f"{version('python-socketio')}: {HOOK} no longer receives the Socket.IO packet text: {frames!r}"
    )
    assert got_by_library == [], "event packets must reach Vectra's decoder only"


async def test_frame_tap_writes_a_packet_at_once_with_its_own_ack_id_and_gets_the_ack_back():
    received: list[tuple[str, dict]] = []

    async def on_connect(sid, environ, auth=None):
        pass

    frames: list[str | bytes] = []
    async with socketio_server(on_connect) as (server, url):
        @server.on("buyOrder")
        async def buy(sid, payload):
            received.append(("buyOrder", payload))
            return {"success": True}

        client = FrameTap(frames.append, logger=False, engineio_logger=False)
        await client.connect(url, transports=["websocket"], wait_timeout=5)
        try:
            await client.send_now('2900000001["buyOrder",{"amount":0.002}]')
            async with asyncio.timeout(10):
                while not frames:
                    await asyncio.sleep(0.02)
        finally:
            await client.disconnect()
        with pytest.raises(ConnectionError):
            await client.send_now('2900000002["buyOrder",{"amount":0.002}]')
    where = f"{version('python-engineio')}: core/sources/socketio_tap.py writes on AsyncClient.ws"
    assert received == [("buyOrder", {"amount": 0.002})], f"{where}, and the server did not get the packet"
    assert frames == ['3900000001[{"success":true}]'], f"{where}, and the ack did not come back: {frames!r}"


@contextlib.asynccontextmanager
async def engineio_server(talk, ping_interval_ms: int = 25000, ping_timeout_ms: int = 20000):
    """A bare Engine.IO v4 WebSocket server (aiohttp, which starts no task per message): the handshake,
    then `talk(ws)`, then silence until the client goes away."""
    async def handler(request):
        ws = web.WebSocketResponse()
        await ws.prepare(request)
        await ws.send_str('0{"sid":"s1","upgrades":[],"pingInterval":%d,"pingTimeout":%d,"maxPayload":1000000}'
                          % (ping_interval_ms, ping_timeout_ms))
        assert (await ws.receive()).data.startswith("40")
        await ws.send_str('40{"sid":"n1"}')
        await talk(ws)
        await ws.receive()
        return ws

    app = web.Application()
    app.router.add_get("/socket.io/", handler)
    runner = web.AppRunner(app)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        await runner.cleanup()


async def test_frame_tap_reads_a_stream_of_frames_without_a_task_per_frame():
    count = 200
    started = asyncio.Event()

    async def pour(ws):
        await started.wait()
        for n in range(count):
            await ws.send_str(f'42["tick",{n}]')

    frames: list[str | bytes] = []
    tasks_created: list[str] = []
    loop = asyncio.get_running_loop()
    previous_factory = loop.get_task_factory()

    def counting_factory(loop, coro, **kwargs):  # noqa: ANN001 - asyncio's task factory signature
        tasks_created.append(getattr(coro, "__qualname__", repr(coro)))
        return asyncio.Task(coro, loop=loop, **kwargs)

    async with engineio_server(pour) as url:
        client = FrameTap(frames.append, logger=False, engineio_logger=False)
        await client.connect(url, transports=["websocket"], wait_timeout=5)
        loop.set_task_factory(counting_factory)  # from here on, every task is the client's
        try:
            started.set()
            async with asyncio.timeout(20):
                while len(frames) < count:
                    await asyncio.sleep(0.02)
        finally:
            loop.set_task_factory(previous_factory)
            await client.disconnect()
    assert frames == [f'2["tick",{n}]' for n in range(count)]
    assert len(tasks_created) < count // 10, (
        f"{version('python-engineio')}: the read loop now starts a task per frame again: {tasks_created[:5]}"
    )


async def test_frame_tap_keeps_a_server_that_talks_and_aborts_when_it_stops_communicating():
    """python-engineio's silence timeout keeps its meaning: no packet for ping interval + ping timeout
    (0.2 + 0.2 s here, as the server announces them) ends the connection; frames that keep coming for
    three times that long keep it."""
    talking = 12

    async def talk_then_go_silent(ws):
        for n in range(talking):
            await ws.send_str(f'42["tick",{n}]')
            await asyncio.sleep(0.1)

    frames: list[str | bytes] = []
    ended = asyncio.Event()
    async with engineio_server(talk_then_go_silent, ping_interval_ms=200, ping_timeout_ms=200) as url:
        client = FrameTap(frames.append, logger=False, engineio_logger=False)
        client.on("disconnect", lambda reason=None: ended.set())
        try:
            await client.connect(url, transports=["websocket"], wait_timeout=5)
            async with asyncio.timeout(15):
                await ended.wait()
        finally:
            await client.disconnect()
    assert frames == [f'2["tick",{n}]' for n in range(talking)], (
        f"{version('python-engineio')}: the read timeout ended a connection that was talking: {frames!r}"
    )
    assert not client.connected, f"{version('python-engineio')}: a silent server no longer ends the connection"


# --- pychrome --------------------------------------------------------------------------------------


def test_pychrome_tab_still_has_the_internals_quiet_tab_uses():
    tab = pychrome.Tab(id="x", webSocketDebuggerUrl="ws://127.0.0.1:9/devtools/page/x")
    where = f"{version('pychrome')}: core/chrome/pychrome_tab.py relies on pychrome.Tab."
    missing = [name for name in PRIVATE_ATTRIBUTES if not hasattr(tab, name)]
    assert not missing, where + f"{missing}, which this version no longer has"
    assert isinstance(tab._recv_th, threading.Thread) and isinstance(tab._handle_event_th, threading.Thread), (
        where + "_recv_th/_handle_event_th, which are no longer threads"
    )
    assert isinstance(tab._stopped, threading.Event), where + "_stopped, which is no longer a threading.Event"
    assert tab._started is False and tab._websocket_url.startswith("ws://"), where + "_started/_websocket_url"
    for name in PRIVATE_METHODS:
        method = getattr(pychrome.Tab, name, None)
        assert callable(method) and list(inspect.signature(method).parameters) == ["self"], (
            where + f"{name}(), which this version no longer has in that shape"
        )


@pytest.mark.chromium
@pytest.mark.timeout(60)
@pytest.mark.skipif(not CHROMIUM.exists(), reason="needs the Debian chromium package (/usr/bin/chromium)")
async def test_quiet_tab_talks_to_a_real_browser_and_sees_it_die_without_a_traceback(tmp_path):
    settings = chrome_settings(tmp_path)
    manager = ChromeManager(settings)
    crashes: list[threading.ExceptHookArgs] = []
    previous_hook, threading.excepthook = threading.excepthook, crashes.append
    try:
        assert await manager.ensure() == "running"
        page = next(p for p in await list_pages(settings.cdp_port, 5) if p.get("webSocketDebuggerUrl"))
        tab = QuietTab(**page)
        await asyncio.to_thread(tab.start)
        try:
            reply = await asyncio.to_thread(
                tab.call_method, "Runtime.evaluate", expression="6 * 7", returnByValue=True, _timeout=5
            )
            assert reply["result"]["value"] == 42, f"{version('pychrome')}: QuietTab.start no longer opens a working session"
            assert tab.receiving
            await asyncio.to_thread(terminate_group, manager.pid, 1)
            async with asyncio.timeout(15):
                while tab.receiving:
                    await asyncio.sleep(0.05)
        finally:
            await asyncio.to_thread(tab.stop)
    finally:
        threading.excepthook = previous_hook
        await manager.stop()
    assert not crashes, f"{version('pychrome')}: the receive thread died with {crashes[0].exc_type.__name__}"
