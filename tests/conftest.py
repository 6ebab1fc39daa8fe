"""Shared test fixtures: the real-feed captures, free ports, and throwaway data directories."""

from __future__ import annotations

import json
import os
import socket
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent


def fixtures_dir() -> Path:
    return Path(os.environ.get("VECTRA_FIXTURES", REPO.parent / "shared" / "fixtures" / "rugs"))


@pytest.fixture(scope="session")
def key_samples() -> dict:
    path = fixtures_dir() / "key-samples.json"
    if not path.is_file():
        pytest.skip(f"real-feed captures absent: {path} (set VECTRA_FIXTURES to their folder)")
    return json.loads(path.read_text())


@pytest.fixture(scope="session")
def discovered_schemas() -> dict:
    path = fixtures_dir() / "discovered_schemas.json"
    if not path.is_file():
        pytest.skip(f"real-feed schemas absent: {path} (set VECTRA_FIXTURES to their folder)")
    return json.loads(path.read_text())


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.fixture
def vectra_env(tmp_path, monkeypatch) -> dict[str, str]:
    """Environment for a daemon under test: its own data dir and free ports, nothing shared."""
    env = {
        "VECTRA_DATA_DIR": str(tmp_path / "data"),
        "VECTRA_HTTP_PORT": str(free_port()),
        "VECTRA_ZMQ_PUB": f"tcp://127.0.0.1:{free_port()}",
        "VECTRA_ZMQ_ROUTER": f"tcp://127.0.0.1:{free_port()}",
        "VECTRA_CDP_PORT": str(free_port()),
    }
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    return env


@pytest.fixture
def daemon_for(vectra_env):
    """Start `vectra --daemon --stdout` processes on a simulator, quick to notice a dead feed;
    every one is killed when the test ends."""
    from tests.processes import DaemonProcess

    started = []

    def start(sim, **extra_env: str):
        env = {**vectra_env, "VECTRA_FEED_URL": sim.url, "VECTRA_STALE_AFTER_S": "2",
               "VECTRA_RECONNECT_INITIAL_S": "0.1", "VECTRA_RECONNECT_MAX_S": "0.5", **extra_env}
        daemon = DaemonProcess(env).start()
        started.append(daemon)
        return daemon

    yield start
    for daemon in started:
        daemon.kill()


@pytest.fixture
def tiny_disk(tmp_path):
    """A real 256 KB file system (tmpfs), to fill up; the tests run as root, elsewhere they skip."""
    mount = tmp_path / "tiny"
    mount.mkdir()
    if subprocess.run(["mount", "-t", "tmpfs", "-o", "size=256k", "tmpfs", str(mount)],
                      capture_output=True).returncode != 0:
        pytest.skip("cannot mount a tmpfs here")
    yield mount
    subprocess.run(["umount", "-l", str(mount)], capture_output=True)
