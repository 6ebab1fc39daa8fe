"""Vectra itself killed while recording: what a subscriber received is in the recordings, or declared.

A real daemon records the simulator at high speed; a ZeroMQ subscriber notes every `seq` it receives;
the daemon gets SIGKILL and is started again on the same data folder; then the recordings are read back.
"""

from __future__ import annotations

import functools
import subprocess
import threading
from pathlib import Path

import orjson
import pytest
import zmq

from core.contracts.recordings import recordings_dir
from tests.processes import DaemonProcess, SimProcess
from tests.test_recorder import assert_no_leftovers, assert_readable_everywhere, games_ended, read_recordings

pytestmark = pytest.mark.timeout(120)


class SeqWatcher:
    """A ZeroMQ subscriber in a thread that keeps the `seq` of every envelope it receives."""

    def __init__(self, endpoint: str) -> None:
        self.seqs: list[int] = []
        self._context = zmq.Context()
        self._socket = self._context.socket(zmq.SUB)
        self._socket.setsockopt(zmq.SUBSCRIBE, b"")
        self._socket.setsockopt(zmq.RCVTIMEO, 200)
        self._socket.setsockopt(zmq.LINGER, 0)
        self._socket.connect(endpoint)
        self._running = True
        self._thread = threading.Thread(target=self._receive, daemon=True)
        self._thread.start()

    def _receive(self) -> None:
        while self._running:
            try:
                frames = self._socket.recv_multipart()
            except zmq.Again:
                continue
            envelope = orjson.loads(frames[-1])
            if "seq" in envelope:
                self.seqs.append(envelope["seq"])

    def close(self) -> list[int]:
        """Stop after what is already on its way has arrived; the `seq` received, in order."""
        self._running = False
        self._thread.join(5)
        self._socket.close()
        self._context.term()
        return self.seqs


@pytest.fixture
def fast_sim():
    process = SimProcess(speed=100, seed=5, max_ticks=400).start()
    yield process
    process.kill()


@pytest.fixture
def daemon_for(daemon_for):
    return functools.partial(daemon_for, VECTRA_RECORD="true", VECTRA_RECORD_FLUSH_S="0.2",
                             VECTRA_RECORD_RETRY_S="0.5")


def declared(events: list[dict]) -> set[int]:
    """Every `seq` named by a `recording.gap` event."""
    return {seq for event in events if event["type"] == "recording.gap"
            for seq in range(event["data"]["from"], event["data"]["to"] + 1)}


def kill_while_watched(daemon: DaemonProcess, count: int) -> list[int]:
    """SIGKILL the daemon mid-stream, after a ZeroMQ subscriber has seen `count` events."""
    watcher = SeqWatcher(daemon.env["VECTRA_ZMQ_PUB"])
    start = len(daemon.events)
    daemon.wait_for(lambda events: len(events) >= start + count, timeout=60)
    daemon.kill()
    seen = watcher.close()
    assert seen, "the subscriber received nothing"
    return seen


def test_sigkill_loses_nothing_a_subscriber_saw(fast_sim, daemon_for, vectra_env):
    root = recordings_dir(Path(vectra_env["VECTRA_DATA_DIR"]))
    seen = kill_while_watched(daemon_for(fast_sim), 3000)

    again = daemon_for(fast_sim)
    again.wait_for(lambda events: games_ended(events) >= 1, timeout=60)
    assert again.terminate() == 0

    recorded = set(read_recordings(root).column("seq").to_pylist())
    missing = sorted(set(seen) - recorded)
    assert not missing, f"{len(missing)} events a subscriber received are in no recording: {missing[:20]}"
    assert declared(again.events) == set(), "nothing was lost, so nothing may be declared lost"
    assert_readable_everywhere(root)
    assert_no_leftovers(root)


def test_events_a_full_disk_kept_out_of_the_recordings_are_declared_after_sigkill(fast_sim, daemon_for, tiny_disk):
    data_dir = tiny_disk / "data"
    first = daemon_for(fast_sim, VECTRA_DATA_DIR=str(data_dir))
    first.wait_for(lambda events: any(e["type"] == "error" and e["data"]["code"] == "record_failed"
                                      for e in events), timeout=60)
    seen = kill_while_watched(first, 500)

    subprocess.run(["mount", "-o", "remount,size=256m", str(tiny_disk)], check=True)
    again = daemon_for(fast_sim, VECTRA_DATA_DIR=str(data_dir))
    again.wait_for(lambda events: declared(events), timeout=60)
    again.wait_for(lambda events: games_ended(events) >= 1, timeout=60)
    assert again.terminate() == 0

    root = recordings_dir(data_dir)
    recorded = set(read_recordings(root).column("seq").to_pylist())
    lost = declared(again.events)
    assert not lost & recorded, "a declared loss must really be missing (no false alarm)"
    unaccounted = sorted(set(seen) - recorded - lost)
    assert not unaccounted, f"received, not recorded and not declared: {unaccounted[:20]}"
    start = next(e for e in again.events if e["type"] == "sys.start")
    assert max(lost) == start["data"]["previous_last_seq"]
    assert_readable_everywhere(root)
    assert_no_leftovers(root)
