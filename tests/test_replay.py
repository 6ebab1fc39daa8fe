"""Recordings played back as a live feed, and the reading examples of docs/RECORDING.md, on a real recording."""

from __future__ import annotations

import asyncio
import json
import re
import time
from pathlib import Path
from typing import Callable

import pyarrow as pa
import pytest

from core.config import Settings
from core.contracts.envelope import Envelope
from core.foundation import Foundation
from core.contracts.recordings import recordings_dir
from core.recorder.segment import Segment
from core.sources.replay_source import ReplaySource
from tests.conftest import free_port
from tests.processes import REPO, DaemonProcess, SimProcess
from tests.test_recorder import games_ended, read_recordings

pytestmark = pytest.mark.timeout(90)

DOC_DAY = "/home/bot/.local/share/vectra/recordings/2026-11-25"


def fresh_env(folder: Path) -> dict[str, str]:
    return {
        "VECTRA_DATA_DIR": str(folder),
        "VECTRA_HTTP_PORT": str(free_port()),
        "VECTRA_ZMQ_PUB": f"tcp://127.0.0.1:{free_port()}",
        "VECTRA_ZMQ_ROUTER": f"tcp://127.0.0.1:{free_port()}",
        "VECTRA_CDP_PORT": str(free_port()),
    }


@pytest.fixture(scope="module")
def recording(tmp_path_factory) -> Path:
    """The recordings folder of a daemon that recorded three simulated games."""
    data_dir = tmp_path_factory.mktemp("recorded")
    sim = SimProcess(speed=20, seed=5, max_ticks=40).start()
    daemon = DaemonProcess({**fresh_env(data_dir), "VECTRA_FEED_URL": sim.url, "VECTRA_RECORD": "true"})
    try:
        daemon.start().wait_for(lambda events: games_ended(events) >= 3)
        assert daemon.terminate() == 0
    finally:
        daemon.kill()
        sim.kill()
    return recordings_dir(data_dir)


def game_events(events: list[dict]) -> list[tuple]:
    """What a replay must reproduce: the game channels, their games and ticks (not the clock)."""
    keys = ("tickCount", "price", "phase", "from", "to", "tick", "finalTick", "finalPrice", "backfilled")
    return [
        (event["type"], event["gameId"], *(event["data"].get(key) for key in keys))
        for event in events
        if event["type"].startswith("game.")
    ]


def recorded_events(root: Path) -> list[dict]:
    rows = read_recordings(root).select(["seq", "type", "gameId", "data"]).to_pylist()
    return [{**row, "data": json.loads(row["data"])} for row in rows]


def replay(tmp_path: Path, *args: str) -> DaemonProcess:
    """`vectra replay ...` to completion, collecting what it published."""
    daemon = DaemonProcess(fresh_env(tmp_path / "replayed"), "replay", *args, "--stdout")
    try:
        daemon.start().wait_for(
            lambda events: any(e["type"] == "connection.status" and e["data"]["reason"] == "replay finished"
                               for e in events)
        )
        assert daemon.terminate() == 0
    finally:
        daemon.kill()
    return daemon


def test_replay_reproduces_the_recorded_game_events(recording, tmp_path):
    original = game_events(recorded_events(recording))
    replayed = replay(tmp_path, str(recording), "--speed", "0")
    assert len({event[1] for event in original}) >= 3
    assert game_events(replayed.events) == original
    assert {event["source"] for event in replayed.events if event["type"].startswith(("game.", "raw."))} == {"replay"}


def test_replay_of_one_game(recording, tmp_path):
    original = recorded_events(recording)
    game_id = [event["gameId"] for event in original if event["type"] == "game.start"][1]
    replayed = replay(tmp_path, str(recording), "--speed", "0", "--game", game_id).events

    def ticks(events: list[dict]) -> list[tuple]:
        return [(e["gameId"], e["data"]["tickCount"], e["data"]["price"]) for e in events if e["type"] == "game.tick"
                and e["gameId"] == game_id]

    assert ticks(replayed) == ticks(original)
    assert {e["gameId"] for e in replayed if e["type"] in ("game.start", "game.end")} == {game_id}
    assert [e["type"] for e in replayed if e["type"] in ("game.start", "game.end")] == ["game.start", "game.end"]


async def replay_in_process(path: Path, data_dir: Path, done: Callable[[Envelope], bool], **options) -> list[Envelope]:
    """The replay source in a real foundation on this loop, at full speed, until `done(envelope)`."""
    settings = Settings(data_dir=data_dir, source="replay", replay_path=path, replay_speed=0, **options)
    foundation = Foundation(settings)
    foundation.add_source(ReplaySource(foundation, settings))
    seen: list[Envelope] = []
    finished = asyncio.Event()

    class Collector:
        def deliver(self, envelope: Envelope) -> None:
            seen.append(envelope)
            if done(envelope):
                finished.set()

    foundation.bus.subscribe(Collector())
    await foundation.start()
    try:
        await asyncio.wait_for(finished.wait(), 30)
    finally:
        await foundation.stop()
    return seen


async def test_acks_and_extra_arguments_come_back_as_recorded(tmp_path):
    now = int(time.time() * 1000)
    frames = [
        Envelope(1, "raw.newChatMessage", now, None, "socketio",
                 {"payload": {"text": "gm"}, "trace": None, "args": ["room"], "ackId": 7}),
        Envelope(2, "raw.ack", now + 5, None, "socketio", {"ackId": 51, "args": [{"success": True}]}),
        Envelope(3, "game.tick", now + 6, None, "socketio", {"tickCount": 1}),  # derived: not replayed
    ]
    segment = Segment(tmp_path / "recordings", frames[0])
    for frame in frames:
        segment.add(frame)
    segment.close()

    seen = await replay_in_process(tmp_path / "recordings", tmp_path / "data",
                                   lambda e: e.type == "connection.status" and e.data["reason"] == "replay finished")
    replayed = [(e.type, e.data, e.source) for e in seen if e.type.startswith("raw.")]
    assert replayed == [(f.type, f.data, "replay") for f in frames[:2]]
    assert not any(e.type == "game.tick" for e in seen)


def test_the_reading_examples_of_the_docs_run_on_a_real_recording(recording, capsys):
    text = (REPO / "docs" / "RECORDING.md").read_text()
    examples = re.findall(r"```python\n(.*?)```", text, re.S)
    assert len(examples) >= 3, "docs/RECORDING.md shows pyarrow, DuckDB and Polars"
    day = next(path for path in recording.iterdir() if path.name[:2] == "20")
    expected_rows = read_recordings(recording).filter(
        pa.compute.equal(read_recordings(recording)["type"].cast(pa.string()), "game.tick")).num_rows
    for example in examples:
        namespace: dict = {}
        exec(example.replace(DOC_DAY, str(day)), namespace)
        assert namespace["ticks"] == expected_rows, example


async def test_a_looped_replay_plays_the_games_again(recording, tmp_path):
    original = [e for e in game_events(recorded_events(recording)) if e[0] in ("game.start", "game.end")]
    ends: list[Envelope] = []

    def two_passes(envelope: Envelope) -> bool:
        if envelope.type == "game.end":
            ends.append(envelope)
        return len(ends) >= 2 * sum(1 for e in original if e[0] == "game.end")

    seen = await replay_in_process(recording, tmp_path / "data", two_passes, replay_loop=True)
    replayed = [e for e in game_events([e.as_dict() for e in seen]) if e[0] in ("game.start", "game.end")]
    assert replayed == original + original
