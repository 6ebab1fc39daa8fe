"""The console's ports against real things: the foundation in-process, a daemon over its /ws, a dead URL;
and the headless side: the core never imports Textual, and SIGTERM while recording loses nothing."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import time
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from core.config import load_settings
from core.recorder.segment import ROW_GROUP_ROWS
from core.sim.server import SimOptions, Simulator
from tests.conftest import free_port
from tests.processes import REPO, DaemonProcess, SimProcess
from vectra_tui.embedded import EmbeddedFoundation
from vectra_tui.panels import WAITING_PHASES
from vectra_tui.remote import RemoteFoundation


async def until(predicate, port, timeout: float = 20.0):
    """Poll the port's snapshot until `predicate(snapshot)` holds; the last snapshot either way."""
    deadline = time.monotonic() + timeout
    snapshot = port.snapshot()
    while not predicate(snapshot) and time.monotonic() < deadline:
        await asyncio.sleep(0.1)
        snapshot = port.snapshot()
    assert predicate(snapshot), f"not reached within {timeout}s: {snapshot.connection}, {snapshot.game}, {snapshot.recording}"
    return snapshot


def recorded_seqs(data_dir: Path) -> list[int]:
    files = sorted((data_dir / "recordings").rglob("*.parquet"))
    return [seq for path in files for seq in pq.read_table(path, columns=["seq"]).column("seq").to_pylist()]


@pytest.fixture
def sim_process():
    with SimProcess(speed=20, seed=5, max_ticks=40) as process:
        yield process


@pytest.mark.timeout(60)
async def test_embedded_port_shows_the_live_game_and_records(vectra_env, monkeypatch):
    sim = Simulator(SimOptions(port=0, speed=20, seed=1, max_ticks=40))
    await sim.start()
    monkeypatch.setenv("VECTRA_FEED_URL", sim.url)
    port = EmbeddedFoundation(load_settings())
    try:
        await port.start()
        snapshot = await until(lambda s: s.connection.state == "connected" and s.game.tick is not None, port)
        assert snapshot.connection.url == sim.url
        assert snapshot.recording.available and not snapshot.recording.on
        assert any(event.type == "game.tick" for event in snapshot.events)
        reply = await port.command("record", on=True)
        assert reply.get("type") != "error", reply
        await until(lambda s: s.recording.on and (s.recording.rows or 0) > 0, port)
        written = await until(lambda s: (s.recording.bytes or 0) > 0, port)
        assert written.recording.rows < ROW_GROUP_ROWS, "the size counts the rows still in the write-ahead log"
        # between games: the countdown to the start and the last results (what the Game panel draws then)
        waiting = await until(
            lambda s: s.game.phase in WAITING_PHASES and s.game.cooldown_ms is not None and s.game.recent_results, port
        )
        assert waiting.latency.feed_rtt_ms is None, "the direct source measures no round trip: the row is dropped"
        unknown = await port.command("launch_rockets")
        assert unknown["type"] == "error" and unknown["data"]["code"] == "unknown_action"
    finally:
        await port.stop()
        await sim.stop()
    assert recorded_seqs(Path(vectra_env["VECTRA_DATA_DIR"])), "stopping the console must flush the recording"


@pytest.mark.timeout(90)
async def test_attach_watches_and_commands_a_daemon_with_a_token(sim_process, vectra_env):
    env = {**vectra_env, "VECTRA_FEED_URL": sim_process.url, "VECTRA_AUTH_TOKEN": "s3cret"}
    daemon = DaemonProcess(env).start()
    url = f"ws://127.0.0.1:{vectra_env['VECTRA_HTTP_PORT']}/ws"
    stranger, operator = RemoteFoundation(url), RemoteFoundation(url, token="s3cret")
    try:
        daemon.wait_for(lambda events: any(e["type"] == "game.tick" for e in events), timeout=30)
        await stranger.start()
        await operator.start()
        snapshot = await until(lambda s: s.connection.unreachable is None and s.game.tick is not None, operator)
        assert snapshot.connection.state == "connected" and snapshot.mode == f"attached to {url}"
        refused = await stranger.command("record", on=True)
        assert refused["type"] == "error" and refused["data"]["code"] == "unauthorized"
        accepted = await operator.command("record", on=True)
        assert accepted.get("type") != "error", accepted
        await until(lambda s: s.recording.on, operator)
        await until(lambda s: s.recording.on, stranger)  # everyone sees it; only the operator could do it
    finally:
        await stranger.stop()
        await operator.stop()
        daemon.terminate()
        daemon.kill()


async def test_attach_to_nothing_says_so_and_keeps_trying():
    port = RemoteFoundation(f"ws://127.0.0.1:{free_port()}/ws")
    await port.start()
    try:
        snapshot = await until(lambda s: s.connection.unreachable and "daemon unreachable" in s.connection.unreachable, port, 10)
        assert "retrying" in snapshot.connection.unreachable and port.url in snapshot.connection.unreachable
        assert snapshot.connection.status == "down"
        reply = await port.command("record", on=True)
        assert reply["type"] == "error" and reply["data"]["code"] == "unreachable"
    finally:
        await port.stop()


def test_the_core_never_imports_textual():
    code = (
        "import pkgutil, importlib, sys, core\n"
        "for module in pkgutil.walk_packages(core.__path__, 'core.'):\n"
        "    if not module.name.endswith('__main__'):\n"
        "        importlib.import_module(module.name)\n"
        "import core.runtime, core.foundation, vectra_cli.main\n"
        "vectra_cli.main.build_parser()\n"
        "loaded = sorted(name for name in sys.modules if name.split('.')[0] in ('textual', 'vectra_tui'))\n"
        "print(len([n for n in sys.modules if n.startswith('core.')]), loaded)\n"
        "sys.exit(1 if loaded else 0)\n"
    )
    result = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, f"core pulled in Textual: {result.stdout} {result.stderr[-2000:]}"


@pytest.mark.timeout(90)
def test_daemon_sigterm_while_recording_exits_cleanly_with_a_readable_recording(sim_process, vectra_env):
    daemon = DaemonProcess({**vectra_env, "VECTRA_FEED_URL": sim_process.url}, "--record").start()
    try:
        events = daemon.wait_for(lambda evs: sum(e["type"] == "game.tick" for e in evs) >= 30, timeout=40)
        assert daemon.terminate(timeout=15) == 0, "".join(daemon.stderr[-10:])
    finally:
        daemon.kill()
    recorded = set(recorded_seqs(Path(vectra_env["VECTRA_DATA_DIR"])))
    ticks = [event["seq"] for event in events if event["type"] == "game.tick"]
    assert ticks and set(ticks) <= recorded, "every tick published before SIGTERM must be in the recording"
