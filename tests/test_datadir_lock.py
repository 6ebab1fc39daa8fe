"""One foundation per data folder: a second daemon, replay or console on it stops with exit 2 and says
who holds it; the holder keeps serving; after a SIGKILL the folder is free at once."""

from __future__ import annotations

import fcntl
import json
import os
import signal
import subprocess
import time
from pathlib import Path

import pytest

from core.contracts.recordings import recordings_dir
from tests.conftest import free_port
from tests.processes import REPO, VECTRA, DaemonProcess
from tests.test_recorder import sim  # noqa: F401 - a fixture

pytestmark = [pytest.mark.slow, pytest.mark.timeout(120)]


def other_ports(env: dict[str, str]) -> dict[str, str]:
    """The same data folder, every port its own: nothing but the folder is shared."""
    return {**env, "VECTRA_HTTP_PORT": str(free_port()), "VECTRA_ZMQ_PUB": f"tcp://127.0.0.1:{free_port()}",
            "VECTRA_ZMQ_ROUTER": f"tcp://127.0.0.1:{free_port()}", "VECTRA_CDP_PORT": str(free_port())}


def run_vectra(env: dict[str, str], *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([*VECTRA, *args], cwd=REPO, env={**os.environ, **env}, capture_output=True, text=True,
                          stdin=subprocess.DEVNULL, timeout=60)


def seqs(events: list[dict]) -> list[int]:
    return [event["seq"] for event in events if event.get("seq") is not None]


def worker_of(daemon: DaemonProcess, timeout: float = 30) -> int:
    """The pid of the daemon's Parquet worker, once recording has started it (from whichever thread)."""
    deadline = time.monotonic() + timeout
    tasks = Path(f"/proc/{daemon.proc.pid}/task")
    while time.monotonic() < deadline:
        children = [pid for task in tasks.iterdir() for pid in _read(task / "children").split()]
        if children:
            return int(children[0])
        time.sleep(0.1)
    raise AssertionError("the daemon started no Parquet worker")


def _read(path: Path) -> str:
    """A thread's children; the thread may have ended since the folder was listed."""
    try:
        return path.read_text()
    except FileNotFoundError:
        return ""


@pytest.mark.parametrize("second", ["daemon", "replay", "console"])
def test_a_second_foundation_on_the_same_folder_exits_2_and_the_first_keeps_serving(sim, daemon_for, vectra_env,
                                                                                   second):
    first = daemon_for(sim, VECTRA_RECORD="true")
    first.wait_for(lambda events: len(seqs(events)) >= 20)
    data_dir = vectra_env["VECTRA_DATA_DIR"]
    args = {"daemon": ("--daemon", "--stdout"), "console": (),
            "replay": ("replay", str(recordings_dir(Path(data_dir))), "--stdout")}[second]

    refused = run_vectra(other_ports(vectra_env), *args)

    assert refused.returncode == 2, refused.stderr
    lines = refused.stderr.strip().splitlines()
    assert len(lines) == 1, refused.stderr
    assert data_dir in lines[0] and f"pid {first.proc.pid}" in lines[0] and "VECTRA_DATA_DIR" in lines[0]
    assert refused.stdout == "", "the refused process published something"
    served = len(seqs(first.events))
    after = first.wait_for(lambda events: len(seqs(events)) >= served + 20)
    assert seqs(after) == sorted(set(seqs(after))), "the first daemon's seq went back or repeated"
    health = run_vectra(vectra_env, "health")  # a reader beside the daemon, on the same folder
    assert health.returncode in (0, 1) and json.loads(health.stdout)["recording"]["on"] is True, health.stderr


def test_after_sigkill_the_folder_is_free_at_once_even_with_the_worker_alive_and_seq_carries_on(
        sim, daemon_for, vectra_env):
    first = daemon_for(sim, VECTRA_RECORD="true")
    first.wait_for(lambda events: len(seqs(events)) >= 20)
    worker = worker_of(first)
    os.kill(worker, signal.SIGSTOP)  # a worker that lingers after its daemon
    try:
        first.kill()
        last_seen = max(seqs(first.events))
        with open(Path(vectra_env["VECTRA_DATA_DIR"]) / "vectra.lock", "rb") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)  # raises if anything still holds the folder
            fcntl.flock(lock, fcntl.LOCK_UN)
        again = daemon_for(sim, VECTRA_RECORD="true")
        events = again.wait_for(lambda events: len(seqs(events)) >= 5)
    finally:
        os.kill(worker, signal.SIGKILL)
    start = next(event for event in events if event["type"] == "sys.start")
    assert start["data"]["previous_last_seq"] >= last_seen
    assert min(seqs(events)) > last_seen, "a seq of the killed daemon was issued again"
