"""The recorder against real processes: the simulator as the feed, the daemon as a subprocess, real files."""

from __future__ import annotations

import functools

import json
import os
import subprocess
import threading
import time
import urllib.error
import urllib.request
from collections import deque
from pathlib import Path

import duckdb
import orjson
import polars
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import zmq

from core.client import request, subscribe_blocking
from core.config import Settings
from core.contracts.envelope import Envelope
from core.contracts.recordings import (
    closed_files, live_log_path, live_logs, partial_files, recordings_dir, stem_for, wal_segments,
)
from core.recorder.history import RecordingHistory
from core.recorder.recovery import recover
from core.recorder.schema import SCHEMA_VERSION, schema_version
from core.recorder.segment import Segment
from core.recorder.writer import RecordingWriter
from tests.processes import REPO, VECTRA, DaemonProcess, SimProcess

pytestmark = pytest.mark.timeout(90)


# --- helpers (also used by tests/test_replay.py) ---------------------------------------------------


def read_recordings(root: Path) -> pa.Table:
    files = closed_files(root)
    assert files, f"no recordings under {root}"
    return pa.concat_tables([pq.read_table(path) for path in files]).sort_by("seq")


def assert_readable_everywhere(root: Path) -> None:
    """Every closed file opens with pyarrow, DuckDB and Polars, with the schema version set."""
    for path in closed_files(root):
        arrow = pq.read_table(path)
        assert schema_version(arrow.schema.metadata) == SCHEMA_VERSION
        assert duckdb.sql(f"select count(*) from read_parquet('{path}')").fetchall()[0][0] == arrow.num_rows
        assert polars.read_parquet(path).height == arrow.num_rows


def assert_no_leftovers(root: Path) -> None:
    assert partial_files(root) == [] and wal_segments(root) == [] and live_logs(root) == []


def games_ended(events: list[dict]) -> int:
    return sum(1 for event in events if event["type"] == "game.end")


def recording_statuses(events: list[dict]) -> list[dict]:
    return [event for event in events if event["type"] == "recording.status"]


def cli(daemon: DaemonProcess, *args: str) -> dict:
    """A `vectra` sub-command against the running daemon, as an operator would type it."""
    done = subprocess.run([*VECTRA, *args, "--json"], cwd=REPO, env=daemon.env, capture_output=True,
                          text=True, timeout=30)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


def command(daemon: DaemonProcess, payload: dict) -> dict:
    """The same command from a program: one request on the ZeroMQ ROUTER."""
    reply = request(payload, router=daemon.env["VECTRA_ZMQ_ROUTER"])
    assert reply["type"] == "recording.status", reply
    return reply["data"]


def health(daemon: DaemonProcess) -> dict:
    """The report, also when it says 503 (`down`: the source was between connections just then,
    which a loaded machine can cause; the recording's state is in the report all the same)."""
    port = daemon.env["VECTRA_HTTP_PORT"]
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=5) as reply:
            return json.loads(reply.read())
    except urllib.error.HTTPError as exc:
        assert exc.code == 503, exc
        return json.loads(exc.read())


@pytest.fixture
def sim():
    with SimProcess(speed=20, seed=3, max_ticks=40) as process:
        yield process


@pytest.fixture
def daemon_for(daemon_for):
    """Daemons that flush and retry quickly, so the tests see the recorder act within a second."""
    return functools.partial(daemon_for, VECTRA_RECORD_FLUSH_S="0.2", VECTRA_RECORD_RETRY_S="0.5")


@pytest.fixture
def root(vectra_env) -> Path:
    return recordings_dir(Path(vectra_env["VECTRA_DATA_DIR"]))


# --- tests -----------------------------------------------------------------------------------------


def test_recording_of_several_games_has_every_published_seq_once(sim, daemon_for, root):
    daemon = daemon_for(sim, VECTRA_RECORD="true", VECTRA_RECORD_ROTATE_MB="0.01")
    daemon.wait_for(lambda events: games_ended(events) >= 3)
    assert daemon.terminate() == 0

    files = closed_files(root)
    assert len(files) >= 2, "a file is closed and a new one begun at the size setting"
    firsts = [pq.read_table(path, columns=["seq"])["seq"][0].as_py() for path in files]
    assert sorted(files, key=lambda path: path.name) == files and firsts == sorted(firsts)
    table = read_recordings(root)
    recorded = table.column("seq").to_pylist()
    published = [event["seq"] for event in daemon.events]
    assert len(recorded) == len(set(recorded)), "an event was recorded twice"
    assert recorded == list(range(1, recorded[-1] + 1)), "recording must hold every seq from the start"
    assert set(published) <= set(recorded)
    by_seq = {event["seq"]: event for event in daemon.events}
    ticks = table.filter(pa.compute.equal(table["type"].cast(pa.string()), "game.tick")).to_pylist()
    assert ticks, "the run must have produced ticks"
    for row in ticks:
        if row["seq"] in by_seq:
            assert json.loads(row["data"]) == by_seq[row["seq"]]["data"]
            assert row["tickCount"] == by_seq[row["seq"]]["data"]["tickCount"]
    assert_readable_everywhere(root)
    assert_no_leftovers(root)


def test_sigkill_while_recording_loses_nothing_flushed(sim, daemon_for, root):
    daemon = daemon_for(sim, VECTRA_RECORD="true")
    events = daemon.wait_for(lambda events: len(events) >= 1500)
    time.sleep(1.0)  # five times the flush interval: everything seen so far is in the log
    daemon.kill()
    seen_before_kill = [event["seq"] for event in events]
    assert wal_segments(root), "a killed recorder leaves its log for recovery"

    again = daemon_for(sim, VECTRA_RECORD="true")
    again.wait_for(lambda events: games_ended(events) >= 1)
    assert again.terminate() == 0

    recorded = read_recordings(root).column("seq").to_pylist()
    assert len(recorded) == len(set(recorded)), "an event was recorded twice"
    assert set(seen_before_kill) <= set(recorded)
    assert set(event["seq"] for event in again.events) <= set(recorded)
    assert_readable_everywhere(root)
    assert_no_leftovers(root)


def test_toggle_on_off_on_across_a_feed_drop(sim, daemon_for, root):
    daemon = daemon_for(sim)
    daemon.wait_for(lambda events: games_ended(events) >= 1)
    assert cli(daemon, "record", "status")["on"] is False
    assert cli(daemon, "record")["state"] == "stopped", "`vectra record` alone shows the status"

    assert cli(daemon, "record", "on")["state"] == "recording"
    sim.fault(kind="drop", seconds=2)
    daemon.wait_for(lambda events: any(e["type"] == "connection.status" and e["data"]["state"] == "disconnected"
                                       for e in events))
    status = cli(daemon, "record", "status")
    assert (status["on"], status["state"]) == (True, "recording"), "a feed drop must not touch the switch"
    daemon.wait_for(lambda events: [e["data"]["state"] for e in events if e["type"] == "connection.status"][-1]
                    == "connected")
    assert health(daemon)["recording"]["on"] is True
    assert command(daemon, {"action": "record", "on": False})["state"] == "stopped"
    assert health(daemon)["recording"]["on"] is False
    count = len(daemon.events)
    daemon.wait_for(lambda events: len(events) >= count + 200)
    assert command(daemon, {"action": "record", "on": True})["on"] is True
    count = len(daemon.events)
    daemon.wait_for(lambda events: len(events) >= count + 300)
    assert cli(daemon, "record", "off")["on"] is False
    daemon.wait_for(lambda events: len(recording_statuses(events)) >= 4)
    assert daemon.terminate() == 0

    switches = [(e["seq"], e["data"]["on"]) for e in recording_statuses(daemon.events)
                if e["data"]["state"] in ("recording", "stopped")]
    periods: list[list[int | None]] = []
    for seq, on in switches:
        is_open = bool(periods) and periods[-1][1] is None
        if on and not is_open:
            periods.append([seq, None])
        elif not on and is_open:
            periods[-1][1] = seq
    assert len(periods) == 2 and all(end is not None for _, end in periods)
    expected = [e["seq"] for e in daemon.events if any(start <= e["seq"] <= end for start, end in periods)]
    assert read_recordings(root).column("seq").to_pylist() == expected
    assert_readable_everywhere(root)


def test_a_file_in_the_way_is_reported_and_recording_resumes_when_it_is_gone(sim, daemon_for, root):
    root.parent.mkdir(parents=True)
    root.write_text("not a folder")
    daemon = daemon_for(sim, VECTRA_RECORD="true")
    events = daemon.wait_for(lambda events: any(e["data"]["state"] == "failed" for e in recording_statuses(events)))
    assert any(e["type"] == "error" and e["data"]["code"] == "record_failed" for e in events)
    failed = [e for e in recording_statuses(events) if e["data"]["state"] == "failed"]
    assert "recordings" in failed[-1]["data"]["reason"]
    assert health(daemon)["recording"]["state"] == "failed"
    count = len(daemon.events)
    daemon.wait_for(lambda events: len(events) >= count + 100)  # the service goes on

    root.unlink()
    daemon.wait_for(lambda events: recording_statuses(events)[-1]["data"]["state"] == "recording")
    daemon.wait_for(lambda events: games_ended(events) >= 1)
    assert daemon.terminate() == 0
    recorded = read_recordings(root).column("seq").to_pylist()
    assert recorded == list(range(1, recorded[-1] + 1)), "events buffered while failing must be recorded"
    assert set(e["seq"] for e in daemon.events) <= set(recorded)


def parquet_worker_of(daemon: DaemonProcess) -> int | None:
    """The pid of the daemon's Parquet worker process, if it runs."""
    for task in Path(f"/proc/{daemon.proc.pid}/task").glob("*/children"):
        for child in task.read_text().split():
            cmdline = Path(f"/proc/{child}/cmdline").read_bytes()
            if b"core.recorder.parquet_worker" in cmdline:
                return int(child)
    return None


def runs_below_the_daemon(worker: int, daemon: DaemonProcess) -> bool:
    """Building columns must not take CPU from the live path: the worker is the nicer process."""
    return os.getpriority(os.PRIO_PROCESS, worker) > os.getpriority(os.PRIO_PROCESS, daemon.proc.pid)


def wait_for_value(produce, timeout: float = 30):
    deadline = time.monotonic() + timeout
    while (value := produce()) is None:
        assert time.monotonic() < deadline, f"nothing from {produce.__name__} after {timeout} s"
        time.sleep(0.05)
    return value


def test_a_killed_parquet_worker_is_reported_and_replaced_and_nothing_is_lost(sim, daemon_for, root):
    daemon = daemon_for(sim, VECTRA_RECORD="true", VECTRA_RECORD_ROTATE_MB="0.01")
    daemon.wait_for(lambda events: recording_statuses(events) and recording_statuses(events)[-1]["data"]["state"] == "recording")
    worker = wait_for_value(lambda: parquet_worker_of(daemon))
    wait_for_value(lambda: runs_below_the_daemon(worker, daemon) or None)
    subprocess.run(["kill", "-KILL", str(worker)], check=True)
    events = daemon.wait_for(lambda events: any(e["type"] == "error" and e["data"]["code"] == "record_failed"
                                                for e in events))
    assert "Parquet worker" in [e for e in events if e["type"] == "error"][-1]["data"]["message"]
    count = len(events)
    daemon.wait_for(lambda events: len(events) > count and recording_statuses(events)[-1]["data"]["state"] == "recording")
    daemon.wait_for(lambda events: games_ended(events) >= 1)
    replacement = wait_for_value(lambda: parquet_worker_of(daemon))
    assert replacement != worker
    wait_for_value(lambda: runs_below_the_daemon(replacement, daemon) or None)
    assert daemon.terminate() == 0
    recorded = read_recordings(root).column("seq").to_pylist()
    assert recorded == list(range(1, recorded[-1] + 1)), "what the dead worker held is rebuilt from the log"
    assert set(e["seq"] for e in daemon.events) <= set(recorded)
    assert_readable_everywhere(root)
    assert_no_leftovers(root)


def test_a_full_disk_is_reported_and_recording_resumes_when_there_is_room(sim, daemon_for, tiny_disk, vectra_env):
    data_dir = tiny_disk / "data"
    daemon = daemon_for(sim, VECTRA_RECORD="true", VECTRA_DATA_DIR=str(data_dir))
    events = daemon.wait_for(lambda events: any(e["type"] == "error" and e["data"]["code"] == "record_failed"
                                                for e in events))
    assert "No space left" in [e for e in events if e["type"] == "error"][-1]["data"]["message"]
    count = len(daemon.events)
    daemon.wait_for(lambda events: len(events) >= count + 100)  # the service goes on

    subprocess.run(["mount", "-o", "remount,size=64m", str(tiny_disk)], check=True)
    daemon.wait_for(lambda events: recording_statuses(events)[-1]["data"]["state"] == "recording")
    assert daemon.terminate() == 0
    root = recordings_dir(data_dir)
    recorded = read_recordings(root).column("seq").to_pylist()
    assert len(recorded) == len(set(recorded))
    assert recorded == list(range(1, recorded[-1] + 1))
    assert_readable_everywhere(root)


def test_subscriber_resumes_from_a_seq_older_than_the_ring(sim, daemon_for):
    daemon = daemon_for(sim, VECTRA_RECORD="true", VECTRA_RING_SIZE="1000")
    daemon.wait_for(lambda events: len(events) >= 2600)
    settings = Settings(zmq_pub=daemon.env["VECTRA_ZMQ_PUB"], zmq_router=daemon.env["VECTRA_ZMQ_ROUTER"])
    received = []
    for event in subscribe_blocking(from_seq=1, settings=settings):
        assert event.seq is not None, f"the client reported {event.type}: {event.data}"
        received.append(event)
        if event.seq >= 2500:
            break
    published = {event["seq"]: event for event in daemon.events}
    assert [event.seq for event in received] == list(range(1, 2501))
    compared = [event for event in received if event.seq in published]  # stdout starts after the recorder
    assert len(compared) > 2400
    for event in compared:
        assert (event.type, event.data) == (published[event.seq]["type"], published[event.seq]["data"])


def test_files_rotate_at_the_hour_and_sit_in_their_utc_day(tmp_path):
    """The writer thread on its own, fed envelopes across midnight UTC."""
    midnight = 1_764_115_200_000  # 2025-11-26T00:00:00Z
    stamps = [midnight - 1_000, midnight - 10, midnight + 10, midnight + 3_600_000 + 5]
    queue: deque = deque(Envelope(n + 1, "game.tick", stamp, "g", "socketio", {"tickCount": n})
                         for n, stamp in enumerate(stamps))
    writer = RecordingWriter(tmp_path, Settings(data_dir=tmp_path), queue, lambda: None)
    writer.start()
    writer.stop()
    writer.join(10)
    names = [f"{path.parent.name}/{path.name}" for path in closed_files(tmp_path)]
    assert names == [
        "2025-11-25/vectra-20251125T235959Z-000000000001.parquet",
        "2025-11-26/vectra-20251126T000000Z-000000000003.parquet",
        "2025-11-26/vectra-20251126T010000Z-000000000004.parquet",
    ]
    assert_no_leftovers(tmp_path)


def raw_events(count: int) -> list[Envelope]:
    now = int(time.time() * 1000)
    return [Envelope(n, "raw.x", now + n, None, "socketio", {"payload": n, "trace": None}) for n in range(1, count + 1)]


def killed_segment(root: Path, envelopes: list[Envelope]) -> Segment:
    """A segment whose log got `envelopes` and whose Parquet file was never closed."""
    segment = Segment(root, envelopes[0])
    for envelope in envelopes:
        segment.add(envelope)
    segment.wal.flush()
    return segment


def bytes_read() -> int:
    """What this process has read so far, as the kernel counts it (`rchar` of /proc/self/io)."""
    counters = dict(line.split(": ") for line in Path("/proc/self/io").read_text().splitlines())
    return int(counters["rchar"])


def test_a_short_range_of_a_long_log_costs_that_range_not_the_log(tmp_path):
    """`replay` and the NATS bridge's catch-up read a few thousand events at a time while the log of
    the segment being written grows for hours: each read pays for what it returns, not for the whole
    log, and still finds every event of its range, past torn and garbled lines."""
    if not Path("/proc/self/io").exists():
        pytest.skip("counts the bytes read with Linux's /proc/self/io")
    now = int(time.time() * 1000)
    padded = [Envelope(n, "raw.x", now + n, None, "socketio", {"payload": n, "pad": "x" * 500}) for n in range(1, 20_001)]
    segment = killed_segment(tmp_path, padded)
    wal = segment.paths.wal
    history = RecordingHistory(tmp_path)
    list(history.read_range(1, 1))  # what a first read imports is not counted
    before = bytes_read()
    got = [envelope.seq for envelope in history.read_range(12_345, 12_354)]
    read = bytes_read() - before
    assert got == list(range(12_345, 12_355))
    assert read < wal.stat().st_size / 20, f"{read} bytes read of a {wal.stat().st_size}-byte log for 10 events"

    lines = wal.read_bytes().split(b"\n")
    lines[9_999] = b"not an envelope"  # seq 10_000's line, garbled
    wal.write_bytes(b"\n".join(lines) + b'{"v": 1, "seq": 20001')  # and the last line torn by a kill
    assert [envelope.seq for envelope in history.read_range(1, 3)] == [1, 2, 3]
    assert [envelope.seq for envelope in history.read_range(9_999, 10_001)] == [9_999, 10_001]
    assert [envelope.seq for envelope in history.read_range(10_000, 10_000)] == []
    assert [envelope.seq for envelope in history.read_range(19_999, 30_000)] == [19_999, 20_000]
    assert [envelope.seq for envelope in history.read_range(20_001, 30_000)] == []


def test_recovery_never_records_an_event_twice(tmp_path):
    """A crash after a file was closed but before its log was deleted leaves both: one copy is kept."""
    envelopes = raw_events(2500)
    segment = killed_segment(tmp_path, envelopes[:1500])
    survivor = segment.paths.wal.read_bytes()
    segment.close()
    segment.paths.wal.write_bytes(survivor)  # the log of the closed file is back
    killed_segment(tmp_path, envelopes[1500:])  # ... and a second segment was killed mid-file
    assert recover(tmp_path).highest == 2500
    assert read_recordings(tmp_path).column("seq").to_pylist() == list(range(1, 2501))
    assert_readable_everywhere(tmp_path)
    assert_no_leftovers(tmp_path)


def test_recovery_names_what_a_failed_live_log_missed_and_no_log_holds(tmp_path):
    """The live log failed at seq 81 and began again at 121; the writer's log reached 100 before the kill."""
    envelopes = raw_events(150)
    killed_segment(tmp_path, envelopes[:100])
    resumed = live_log_path(tmp_path, stem_for(121, envelopes[120].timestamp), missed_from=81)
    torn = b'{"v":1,"seq":151,'  # the write a kill cut short
    resumed.write_bytes(b"".join(envelope.to_json() + b"\n" for envelope in envelopes[120:]) + torn)
    recovered = recover(tmp_path)
    assert recovered.holes == ((101, 120),) and recovered.highest == 150
    assert read_recordings(tmp_path).column("seq").to_pylist() == [*range(1, 101), *range(121, 151)]
    assert_no_leftovers(tmp_path)


# --- Vectra itself killed while recording: what a subscriber received is recorded, or declared -----


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
    with SimProcess(speed=100, seed=5, max_ticks=400) as process:
        yield process


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


def test_sigkill_loses_nothing_a_subscriber_saw(fast_sim, daemon_for, root):
    seen = kill_while_watched(daemon_for(fast_sim, VECTRA_RECORD="true"), 3000)

    again = daemon_for(fast_sim, VECTRA_RECORD="true")
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
    first = daemon_for(fast_sim, VECTRA_RECORD="true", VECTRA_DATA_DIR=str(data_dir))
    first.wait_for(lambda events: any(e["type"] == "error" and e["data"]["code"] == "record_failed"
                                      for e in events), timeout=60)
    seen = kill_while_watched(first, 500)

    subprocess.run(["mount", "-o", "remount,size=256m", str(tiny_disk)], check=True)
    again = daemon_for(fast_sim, VECTRA_RECORD="true", VECTRA_DATA_DIR=str(data_dir))
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
