"""The two places Vectra relies on a library's internals, checked against the installed version.

`core/sources/socketio_tap.py` overrides python-socketio's `AsyncClient._handle_eio_message` and
`_engineio_client_class`, python-engineio's `AsyncClient._trigger_event`, and writes an order's
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
from core.sources.socketio_tap import ENGINEIO_HOOK, HOOK, FrameTap, InlineEngineIO
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
