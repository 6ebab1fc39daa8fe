"""The Chrome manager with a real headless Chromium: launch, attach, profile locks, relaunch, the page."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Iterator

import pytest

from core.bus import EventBus
from core.ring import Ring
from core.chrome.devtools import browser_version, list_pages
from core.chrome.manager import ChromeError, ChromeManager, chrome_command, terminate_group
from core.chrome.profile import ProfileInUse
from core.config import Settings
from core.contracts.envelope import Envelope
from core.contracts.component import CommandError
from core.contracts.requests import Chrome
from core.foundation import Foundation
from core.seqstore import SeqStore
from core.chrome.pychrome_tab import QuietTab
from core.assembly import add_cdp_source
from tests.conftest import free_port
from tests.processes import REPO, SimProcess

CHROMIUM = Path("/usr/bin/chromium")
NODE_CLIENT = REPO / "node_modules" / "socket.io-client" / "dist" / "socket.io.min.js"

pytestmark = [
    pytest.mark.chromium,
    pytest.mark.timeout(60),
    pytest.mark.skipif(not CHROMIUM.exists(), reason="needs the Debian chromium package (/usr/bin/chromium)"),
]


def kill_browsers_under(folder: Path) -> None:
    """SIGKILL every process whose profile lies in `folder` (only this test's browsers live there)."""
    marker = f"--user-data-dir={folder}".encode()
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            if any(argument.startswith(marker) for argument in (entry / "cmdline").read_bytes().split(b"\0")):
                os.kill(int(entry.name), signal.SIGKILL)
        except OSError:
            continue


@pytest.fixture(autouse=True)
def no_browser_outlives_the_test(tmp_path):
    """Even a test stopped by its timeout (whose own `finally` never runs) leaves no browser behind."""
    yield
    kill_browsers_under(tmp_path)


def chrome_settings(tmp_path: Path, **extra: Any) -> Settings:
    values: dict[str, Any] = {
        "data_dir": tmp_path / "data",
        "chrome_profile": tmp_path / "profile",
        "cdp_port": free_port(),
        "chrome_headless": True,
        "game_url": "about:blank",
        "reconnect_initial_s": 0.1,
        "reconnect_max_s": 0.5,
        **extra,
    }
    return Settings(**values)


class Recorder:
    def __init__(self) -> None:
        self.statuses: list[dict[str, Any]] = []

    def deliver(self, envelope: Envelope) -> None:
        if envelope.type == "chrome.status":
            self.statuses.append(envelope.data)


@contextlib.contextmanager
def other_chromium(profile: Path, port: int) -> Iterator[subprocess.Popen]:
    """A browser Vectra did not start (an operator's), killed with its whole group afterwards."""
    command = [
        str(CHROMIUM), "--headless=new", "--disable-gpu", "--no-first-run", "--disable-background-networking",
        "--disable-component-update", "--disable-sync", f"--user-data-dir={profile}",
        f"--remote-debugging-port={port}", "about:blank",
    ]
    if os.geteuid() == 0:
        command.append("--no-sandbox")
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        yield process
    finally:
        terminate_group(process.pid, grace_s=1)
        process.wait(timeout=10)


async def until_answers(port: int, timeout: float = 20) -> None:
    deadline = time.monotonic() + timeout
    while await browser_version(port, 1) is None:
        assert time.monotonic() < deadline, f"no browser on port {port}"
        await asyncio.sleep(0.1)


@contextlib.asynccontextmanager
async def managed(settings: Settings):
    bus = EventBus(SeqStore(settings.data_dir / "seq.state"), Ring(1000, 1 << 30))
    recorder = Recorder()
    manager = ChromeManager(settings, bus)
    bus.subscribe(recorder)
    bus.subscribe(manager)
    try:
        yield manager, recorder, bus
    finally:
        pids = {status["pid"] for status in recorder.statuses if status["pid"]}
        await manager.stop()
        for pid in pids:
            terminate_group(pid, grace_s=1)


async def test_the_simulator_page_connects_through_polling_then_websocket(tmp_path):
    if not NODE_CLIENT.exists():
        pytest.skip("needs the page's npm packages: run `npm ci` at the repo root")
    sim = SimProcess(speed=20, seed=3, max_ticks=20).start()
    try:
        settings = chrome_settings(tmp_path, game_url=sim.url + "/")
        async with managed(settings) as (manager, recorder, bus):
            assert await manager.ensure() == "running"
            page = next(p for p in await list_pages(settings.cdp_port, 5) if p["url"].startswith(sim.url))
            tab = QuietTab(**page)
            await asyncio.to_thread(tab.start)
            try:
                deadline = time.monotonic() + 20
                while True:
                    result = await asyncio.to_thread(
                        tab.call_method, "Runtime.evaluate", expression="JSON.stringify(window.vectraSim)",
                        returnByValue=True, _timeout=5,
                    )
                    state = result["result"].get("value")
                    if state and '"transport":"websocket"' in state and '"events":0' not in state:
                        break
                    assert time.monotonic() < deadline, f"the page never got events over a WebSocket: {state}"
                    await asyncio.sleep(0.2)
            finally:
                await asyncio.to_thread(tab.stop)
    finally:
        sim.kill()
    assert '"connected":true' in state


async def test_launch_publishes_status_and_stop_kills_only_its_own_browser(tmp_path):
    settings = chrome_settings(tmp_path)
    async with managed(settings) as (manager, recorder, bus):
        assert await manager.ensure() == "running"
        pid = manager.pid
        assert (settings.data_dir / "chrome.pid").read_text().strip() == str(pid)
        assert f"--user-data-dir={settings.chrome_profile}" in Path(f"/proc/{pid}/cmdline").read_text().replace("\0", " ")
        assert manager.health().state == "running"
        await manager.stop()
        assert await browser_version(settings.cdp_port, 1) is None
    states = [status["state"] for status in recorder.statuses]
    assert states == ["launching", "running", "stopped"]
    assert recorder.statuses[1]["profile"] == str(settings.chrome_profile)
    assert recorder.statuses[1]["cdp_port"] == settings.cdp_port


async def test_attaches_to_a_running_browser_and_never_kills_it(tmp_path):
    settings = chrome_settings(tmp_path)
    with other_chromium(tmp_path / "operators-profile", settings.cdp_port) as operators:
        await until_answers(settings.cdp_port)
        async with managed(settings) as (manager, recorder, bus):
            assert await manager.ensure() == "attached"
            with pytest.raises(CommandError) as refused:
                await chrome_command(manager)(Chrome(action="chrome", op="relaunch"))
            assert refused.value.code == "not_owner"
            await manager.stop()
        assert operators.poll() is None, "a browser Vectra did not start must survive Vectra"
        assert await browser_version(settings.cdp_port, 1) is not None


async def test_a_profile_held_by_another_chromium_gives_one_clear_line(tmp_path):
    settings = chrome_settings(tmp_path)
    with other_chromium(settings.chrome_profile, free_port()):
        deadline = time.monotonic() + 20
        while not (settings.chrome_profile / "SingletonLock").is_symlink():
            assert time.monotonic() < deadline
            await asyncio.sleep(0.1)
        env = {**os.environ, "VECTRA_DATA_DIR": str(settings.data_dir), "VECTRA_CHROME_PROFILE": str(settings.chrome_profile),
               "VECTRA_CDP_PORT": str(settings.cdp_port), "VECTRA_CHROME_HEADLESS": "true"}
        started = time.monotonic()
        result = subprocess.run([sys.executable, "-m", "vectra_cli", "chrome", "launch"], cwd=REPO, env=env,
                                capture_output=True, text=True, timeout=30)
        async with managed(settings) as (manager, recorder, bus):
            with pytest.raises(ProfileInUse):
                await manager.ensure()
    assert result.returncode == 1
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and str(settings.chrome_profile) in lines[0] and "already in use" in lines[0], result.stderr
    assert time.monotonic() - started < 30


async def test_a_stale_lock_left_by_a_crash_is_cleared(tmp_path):
    settings = chrome_settings(tmp_path)
    settings.chrome_profile.mkdir(parents=True)
    dead = subprocess.Popen(["true"])
    dead.wait()
    (settings.chrome_profile / "SingletonLock").symlink_to(f"{socket.gethostname()}-{dead.pid}")
    async with managed(settings) as (manager, recorder, bus):
        assert await manager.ensure() == "running"
        assert os.readlink(settings.chrome_profile / "SingletonLock").endswith(f"-{manager.pid}")


async def running_with_new_pid(manager: ChromeManager, old_pids: set[int | None]) -> int:
    deadline = time.monotonic() + 20
    while manager.state != "running" or manager.pid in old_pids:
        assert time.monotonic() < deadline, manager.status()
        await asyncio.sleep(0.1)
    return manager.pid


async def test_a_killed_browser_is_relaunched_and_reported(tmp_path):
    settings = chrome_settings(tmp_path)
    async with managed(settings) as (manager, recorder, bus):
        await manager.start()
        first = await running_with_new_pid(manager, {None})
        terminate_group(first, grace_s=0)
        second = await running_with_new_pid(manager, {None, first})
        reply = await chrome_command(manager)(Chrome(action="chrome", op="relaunch"))
        assert reply["type"] == "chrome"
        await running_with_new_pid(manager, {None, first, second})
    states = [status["state"] for status in recorder.statuses]
    crashed = [status for status in recorder.statuses if status["state"] == "crashed"]
    assert states.count("running") >= 3 and crashed
    assert "exited" in crashed[0]["reason"] and crashed[-1]["reason"] == "relaunch requested"
    assert await browser_version(settings.cdp_port, 1) is None


def test_without_a_browser_on_path_the_error_says_what_to_set(tmp_path):
    settings = chrome_settings(tmp_path, chrome_binary="no-such-browser-binary")
    with pytest.raises(ChromeError, match="VECTRA_CHROME_BINARY"):
        asyncio.run(ChromeManager(settings).ensure())


async def test_username_status_on_the_browser_feed_marks_the_session_authenticated(tmp_path):
    foundation = Foundation(chrome_settings(tmp_path, source="cdp"))
    add_cdp_source(foundation)
    recorder = Recorder()
    foundation.bus.subscribe(recorder)
    trace = {"__trace": True, "traceparent": "00-c37856d5e5c8910e2f87852550c88ff0-4cd4a0f578f1091c-01"}
    foundation.frame("cdp", '2["usernameStatus",{"username":"rugs_bot","hasUsername":true},' + json.dumps(trace) + "]", 1)
    await asyncio.sleep(0)  # the manager publishes on the next loop turn
    assert recorder.statuses[-1]["authenticated_as"] == "rugs_bot"
    assert foundation.health().chrome.authenticated_as == "rugs_bot"


async def test_a_subscriber_after_the_manager_sees_the_identity_before_the_status_it_causes(tmp_path):
    """Every subscriber gets the stream in `seq` order: the `chrome.status` the manager publishes on
    learning who is logged in comes after the `player.identity`, also for subscribers after it."""
    settings = chrome_settings(tmp_path)
    bus = EventBus(SeqStore(settings.data_dir / "seq.state"), Ring(1000, 1 << 20))
    manager = ChromeManager(settings, bus)
    bus.subscribe(manager)
    seen: list[Envelope] = []

    class Later:
        def deliver(self, envelope: Envelope) -> None:
            seen.append(envelope)

    bus.subscribe(Later())
    bus.publish("player.identity", {"username": "rugs_bot"}, source="cdp")
    for _ in range(10):
        await asyncio.sleep(0)
    assert [envelope.type for envelope in seen] == ["player.identity", "chrome.status"]
    assert [envelope.seq for envelope in seen] == sorted(envelope.seq for envelope in seen)
    assert seen[-1].data["authenticated_as"] == "rugs_bot"
