"""The HTTP side: `/health` and `/metrics` as monitoring sees them, `vectra health`, the start-up
refusal off loopback, and the web page in a real headless Chromium."""

from __future__ import annotations

import asyncio
import json
import os
import re
import shutil
import socket
import subprocess
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Callable

import aiohttp
import pytest
from prometheus_client.parser import text_string_to_metric_families
from websockets.asyncio.client import connect

from core.contracts.recordings import recordings_dir
from tests.processes import REPO, VECTRA, DaemonProcess, SimProcess
from tests.test_websocket import command, running, ws_url
from tests.test_zmq import TailProcess

CHROMIUM = Path("/usr/bin/chromium")


def get_json(url: str) -> tuple[int, dict]:
    try:
        with urllib.request.urlopen(url, timeout=5) as reply:
            return reply.status, json.loads(reply.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


def wait_for_report(url: str, wanted: Callable[[dict], bool], what: str, timeout: float) -> tuple[int, dict]:
    deadline = time.monotonic() + timeout
    while True:
        try:
            code, report = get_json(url)
            if wanted(report):
                return code, report
        except (urllib.error.URLError, OSError):
            report = None
        assert time.monotonic() < deadline, f"/health never said {what} within {timeout} s; last: {report}"
        time.sleep(0.1)


def wait_for_status(url: str, wanted: str, timeout: float) -> tuple[int, dict]:
    return wait_for_report(url, lambda report: report["status"] == wanted, repr(wanted), timeout)


def vectra_health(env: dict[str, str]) -> subprocess.CompletedProcess:
    return subprocess.run(
        [*VECTRA, "health"], cwd=REPO, env={**os.environ, **env}, capture_output=True, text=True, timeout=30
    )


async def test_health_and_metrics_report_the_same_figures(tmp_path):
    async with running(tmp_path) as (foundation, server):
        for index in range(25):
            foundation.bus.publish("game.tick", {"index": index}, source="socketio")
        base = f"http://127.0.0.1:{server.port}"
        async with connect(ws_url(server)) as client, aiohttp.ClientSession() as http:
            await command(client, {"action": "ping"})
            async with http.get(base + "/health") as reply:
                status_code = reply.status
                report = await reply.json()
            async with http.get(base + "/metrics") as reply:
                assert reply.headers["Content-Type"].startswith("text/plain")
                metrics = {
                    (sample.name, tuple(sorted(sample.labels.items()))): sample.value
                    for family in text_string_to_metric_families(await reply.text())
                    for sample in family.samples
                }
    assert status_code == 503 and report["status"] == "down", "no feed source at all is down"
    expected_keys = {"status", "source", "connection", "latency_ms", "events_total", "events_per_s", "seq",
                     "subscribers", "recording", "chrome", "uptime_s"}
    assert expected_keys <= set(report)
    assert set(report["connection"]) >= {"state", "url", "connected_since", "reconnects", "last_event_ts",
                                         "last_event_age_ms"}
    assert report["subscribers"]["ws"] == 1 and "zmq" in report["subscribers"]
    assert metrics[("vectra_seq", ())] == report["seq"] == 26
    assert metrics[("vectra_events_total", ())] == report["events_total"]
    assert metrics[("vectra_subscribers", (("transport", "ws"),))] == 1
    assert metrics[("vectra_status", (("status", "down"),))] == 1
    assert metrics[("vectra_status", (("status", "ok"),))] == 0


async def test_unknown_path_is_404_and_the_page_and_module_are_served(tmp_path):
    async with running(tmp_path) as (foundation, server), aiohttp.ClientSession() as http:
        base = f"http://127.0.0.1:{server.port}"
        async with http.get(base + "/nope") as reply:
            assert reply.status == 404
        async with http.get(base + "/") as reply:
            assert reply.status == 200 and reply.headers["Content-Type"].startswith("text/html")
            assert 'from "/client.js"' in await reply.text()
        async with http.get(base + "/client.js") as reply:
            assert reply.headers["Content-Type"].startswith("text/javascript")
            assert "export function subscribe" in await reply.text()
        async with http.get(base + "/health", headers={"Origin": "http://evil.example"}) as reply:
            assert reply.status == 403


def a_feed() -> SimProcess:
    return SimProcess(speed=10, seed=5, max_ticks=60)


@pytest.fixture(scope="module")
def sim():
    """One simulator for the tests that each start their own daemon on it and leave it as they found it
    (a silence they inject they end); a test that kills it has its own."""
    with a_feed() as process:
        yield process


@pytest.fixture
def own_sim():
    with a_feed() as process:
        yield process


@pytest.mark.timeout(120)
def test_the_plain_websocket_example_resumes_after_a_kill_without_missing_an_event(sim, daemon_for, tmp_path):
    """The `websockets` program of docs/PROTOCOL.md, killed and started again: the second run begins
    with the first game event after the one the first run saved, and misses none after it."""
    daemon = daemon_for(sim)
    protocol = (REPO / "docs" / "PROTOCOL.md").read_text()
    example = next(block for block in re.findall(r"```python\n(.*?)```", protocol, re.S) if "import websockets" in block)
    assert "from core" not in example and "import core" not in example

    def events_printed(run: TailProcess) -> list[int]:
        return [int(line.split(" ", 1)[0]) for line in run.lines if line[:1].isdigit()]

    first = TailProcess(daemon.env, code=example, cwd=tmp_path)
    try:
        first.wait_for(lambda lines: len(events_printed(first)) >= 5)
    finally:
        first.kill()
    saved = int((tmp_path / "last_seq.txt").read_text())
    assert saved in events_printed(first)
    daemon.wait_for(lambda events: events[-1]["seq"] >= saved + 50)  # events go by while it is away
    second = TailProcess(daemon.env, code=example, cwd=tmp_path)
    try:
        second.wait_for(lambda lines: len(events_printed(second)) >= 20)
    finally:
        second.kill()
    got = events_printed(second)
    daemon.wait_for(lambda events: events[-1]["seq"] >= got[-1])
    expected = [event["seq"] for event in daemon.events
                if saved < event["seq"] <= got[-1] and event["type"].startswith("game.")]
    assert got == expected


@pytest.mark.slow
@pytest.mark.timeout(120)
def test_health_follows_the_feed_down_degraded_and_back(own_sim, vectra_env):
    sim = own_sim
    env = {**vectra_env, "VECTRA_FEED_URL": sim.url, "VECTRA_RECONNECT_INITIAL_S": "0.1",
           "VECTRA_RECONNECT_MAX_S": "0.5", "VECTRA_STALE_AFTER_S": "30"}
    daemon = DaemonProcess(env).start()
    url = f"http://127.0.0.1:{vectra_env['VECTRA_HTTP_PORT']}/health"
    try:
        code, report = wait_for_status(url, "ok", timeout=30)
        assert code == 200 and report["connection"]["state"] == "connected"
        ok = vectra_health(env)
        assert ok.returncode == 0 and json.loads(ok.stdout)["status"] == "ok"

        sim.fault(kind="silence", seconds=10)  # long enough for `vectra health` to start on a busy machine
        code, report = wait_for_status(url, "degraded", timeout=5)
        assert code == 200 and report["connection"]["last_event_age_ms"] >= 2000
        assert vectra_health(env).returncode == 1
        sim.fault(kind="silence", seconds=0)  # the feed speaks again: a new silence replaces the last
        wait_for_status(url, "ok", timeout=20)

        sim.kill()
        killed = time.monotonic()
        code, report = wait_for_status(url, "down", timeout=5)
        assert time.monotonic() - killed <= 2.0, "the issue's promise: the feed's loss shows within 2 s"
        assert code == 503 and report["connection"]["state"] != "connected"
        down = vectra_health(env)
        assert down.returncode == 2 and json.loads(down.stdout)["status"] == "down"

        sim.start()
        code, report = wait_for_status(url, "ok", timeout=20)
        assert report["connection"]["reconnects"] >= 1
    finally:
        daemon.kill()


@pytest.mark.slow
@pytest.mark.timeout(90)
def test_health_is_not_ok_while_the_feed_stays_silent_after_a_reconnect(sim, daemon_for):
    """Vectra's own `connection.status` after the reconnect is not the feed speaking."""
    daemon = daemon_for(sim)  # gives up on a feed silent for 2 s and reconnects at once
    url = f"http://127.0.0.1:{daemon.env['VECTRA_HTTP_PORT']}/health"
    wait_for_status(url, "ok", timeout=30)
    sim.fault(kind="silence", seconds=8)
    silent_until = time.monotonic() + 7.5
    stale_after_s = float(daemon.env["VECTRA_STALE_AFTER_S"])
    reconnected = []
    while time.monotonic() < silent_until:  # after the first reconnect, until the next one would be due
        _, report = get_json(url)
        if report["connection"]["reconnects"] >= 1 and report["connection"]["state"] == "connected":
            if not reconnected:
                silent_until = min(silent_until, time.monotonic() + stale_after_s)
            reconnected.append(report)
        time.sleep(0.05)
    assert reconnected, "the daemon did not reconnect to the silent feed"
    assert [report["status"] for report in reconnected] == ["degraded"] * len(reconnected), reconnected[0]
    assert all(report["connection"]["last_frame_age_ms"] >= 2000 for report in reconnected)
    sim.fault(kind="silence", seconds=0)  # the feed speaks again: a new silence replaces the last
    _, report = wait_for_status(url, "ok", timeout=20)
    assert report["connection"]["last_frame_age_ms"] < 2000


@pytest.mark.slow
@pytest.mark.timeout(90)
def test_health_is_degraded_while_recording_has_failed(sim, daemon_for, vectra_env):
    root = recordings_dir(Path(vectra_env["VECTRA_DATA_DIR"]))
    root.parent.mkdir(parents=True)
    root.write_text("a file where the recordings folder belongs")
    daemon = daemon_for(sim, VECTRA_RECORD="true", VECTRA_RECORD_RETRY_S="0.5")
    url = f"http://127.0.0.1:{daemon.env['VECTRA_HTTP_PORT']}/health"

    def failing_on_a_live_feed(report: dict) -> bool:
        connection = report["connection"]
        fresh = connection["last_frame_age_ms"] is not None and connection["last_frame_age_ms"] < 1000
        return report["recording"]["state"] == "failed" and connection["state"] == "connected" and fresh

    code, report = wait_for_report(url, failing_on_a_live_feed, "a failed recording on a live feed", timeout=30)
    assert code == 200 and report["status"] == "degraded"
    assert vectra_health(daemon.env).returncode == 1
    root.unlink()
    _, report = wait_for_status(url, "ok", timeout=20)
    assert report["recording"]["state"] == "recording"


def test_vectra_health_without_a_daemon_is_unreachable(vectra_env):
    result = vectra_health(vectra_env)
    assert result.returncode == 2
    assert "unreachable" in result.stderr and result.stderr.count("\n") == 1


@pytest.mark.parametrize(
    "flag",
    [["--http-host", "0.0.0.0"], ["--zmq-pub", "tcp://0.0.0.0:5999"], ["--zmq-router", "tcp://*:5998"]],
)
def test_binding_beyond_loopback_without_a_token_is_refused_in_one_line(flag, vectra_env):
    result = subprocess.run(
        [*VECTRA, "--daemon", *flag], cwd=REPO, env={**os.environ, **vectra_env},
        capture_output=True, text=True, timeout=30,
    )
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "VECTRA_AUTH_TOKEN" in lines[0] and flag[1] in lines[0]


@pytest.mark.parametrize("variable", ["VECTRA_HTTP_PORT", "VECTRA_ZMQ_PUB"])
def test_a_port_already_taken_is_refused_in_one_line_naming_the_setting(variable, vectra_env):
    """A second Vectra on the same ports (the usual newcomer's mistake) gets the setting to change, not
    a traceback."""
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        value = str(port) if variable == "VECTRA_HTTP_PORT" else f"tcp://127.0.0.1:{port}"
        result = subprocess.run(
            [*VECTRA, "--daemon"], cwd=REPO, env={**os.environ, **vectra_env, variable: value},
            capture_output=True, text=True, timeout=30,
        )
    assert result.returncode == 2 and "Traceback" not in result.stderr, result.stderr
    refusals = [line for line in result.stderr.splitlines() if line.startswith("vectra:")]
    assert len(refusals) == 1 and refusals[0] == result.stderr.strip().splitlines()[-1]
    assert str(port) in refusals[0] and "another vectra" in refusals[0] and variable in refusals[0]


class Chromium:
    """Headless Chromium driven over the DevTools protocol, the way a test harness drives a browser."""

    def __init__(self, page_url: str) -> None:
        self.profile = tempfile.mkdtemp(prefix="vectra-chromium-")
        self.process = subprocess.Popen(
            [str(CHROMIUM), "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
             "--disable-component-update", "--no-first-run", f"--user-data-dir={self.profile}",
             "--remote-debugging-port=0", page_url],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )
        self._devtools = None
        self._next_id = 0

    async def open(self) -> None:
        active_port = Path(self.profile) / "DevToolsActivePort"
        for _ in range(300):
            if active_port.is_file() and active_port.read_text().strip():
                break
            await asyncio.sleep(0.1)
        port = active_port.read_text().split()[0]
        async with aiohttp.ClientSession() as http:
            for _ in range(100):
                async with http.get(f"http://127.0.0.1:{port}/json/list") as reply:
                    pages = [target for target in await reply.json() if target["type"] == "page"]
                if pages:
                    break
                await asyncio.sleep(0.1)
        self._devtools = await connect(pages[0]["webSocketDebuggerUrl"], max_size=None)

    async def evaluate(self, expression: str):
        self._next_id += 1
        await self._devtools.send(json.dumps(
            {"id": self._next_id, "method": "Runtime.evaluate", "params": {"expression": expression, "returnByValue": True}}
        ))
        while True:
            reply = json.loads(await asyncio.wait_for(self._devtools.recv(), timeout=10))
            if reply.get("id") == self._next_id:
                return reply["result"]["result"].get("value")

    async def close(self) -> None:
        if self._devtools is not None:
            await self._devtools.close()
        self.process.kill()
        self.process.wait(timeout=10)
        shutil.rmtree(self.profile, ignore_errors=True)


@pytest.mark.chromium
@pytest.mark.timeout(90)
@pytest.mark.skipif(not CHROMIUM.exists(), reason="/usr/bin/chromium is not installed (Debian package chromium)")
async def test_the_page_in_a_real_browser_shows_live_events_and_health(tmp_path):
    async with running(tmp_path) as (foundation, server):
        stop = asyncio.Event()

        async def publish_ticks() -> None:
            tick = 0
            while not stop.is_set():
                tick += 1
                foundation.bus.publish("game.tick", {"tickCount": tick}, source="socketio", game_id="g-browser")
                foundation.bus.publish("sidebet.placed", {"hidden": True}, source="socketio")
                await asyncio.sleep(0.05)

        publisher = asyncio.create_task(publish_ticks())
        browser = Chromium(f"http://127.0.0.1:{server.port}/")
        try:
            await browser.open()
            shown = ""
            for _ in range(200):
                shown = await browser.evaluate("document.getElementById('events').innerText") or ""
                health = await browser.evaluate("document.getElementById('status').textContent")
                if "game.tick g-browser" in shown and health == "down":
                    break
                await asyncio.sleep(0.1)
            assert "game.tick g-browser" in shown, "the page must show live events from /ws"
            assert "sidebet.placed" not in shown, "the page shows only the channels picked"
            assert health == "down", "the page shows /health (no feed source here: down)"
            assert server.health().clients == 1
        finally:
            stop.set()
            await publisher
            await browser.close()
