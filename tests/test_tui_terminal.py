"""`vectra` in a real terminal (tmux) against the simulator, used as a person would: read the screen,
press keys, and check the effect where it matters (`/health`, the recording on disk)."""

from __future__ import annotations

import json
import os
import shlex
import shutil
import subprocess
import time
import urllib.request
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from tests.processes import REPO, SimProcess

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(shutil.which("tmux") is None, reason="tmux is not installed"),
]
VECTRA_BIN = Path(os.environ.get("VIRTUAL_ENV", REPO / ".venv")) / "bin" / "vectra"


class Terminal:
    """A private tmux server (its own socket) holding one 120x40 window."""

    def __init__(self, name: str) -> None:
        self.socket = name

    def tmux(self, *args: str) -> str:
        return subprocess.run(["tmux", "-L", self.socket, *args], capture_output=True, text=True, timeout=10).stdout

    def open(self, command: str) -> None:
        subprocess.run(
            ["tmux", "-L", self.socket, "-f", "/dev/null", "new-session", "-d", "-x", "120", "-y", "40", command],
            check=True,
            timeout=10,
        )

    def screen(self) -> str:
        return self.tmux("capture-pane", "-p")

    def press(self, key: str) -> None:
        self.tmux("send-keys", key)

    def wait_for(self, words: list[str], timeout: float = 30) -> str:
        deadline = time.monotonic() + timeout
        screen = self.screen()
        while not all(word in screen for word in words) and time.monotonic() < deadline:
            time.sleep(0.2)
            screen = self.screen()
        assert all(word in screen for word in words), f"screen never showed {words}:\n{screen}"
        return screen

    def close(self) -> None:
        subprocess.run(["tmux", "-L", self.socket, "kill-server"], capture_output=True, timeout=10)


def health(http_port: str) -> dict:
    with urllib.request.urlopen(f"http://127.0.0.1:{http_port}/health", timeout=3) as reply:
        return json.loads(reply.read())


def wait_health(http_port: str, predicate, timeout: float = 15) -> dict:
    deadline = time.monotonic() + timeout
    while True:
        try:
            report = health(http_port)
            if predicate(report):
                return report
        except OSError:
            report = None
        if time.monotonic() > deadline:
            raise AssertionError(f"/health never matched; last: {report}")
        time.sleep(0.2)


@pytest.mark.timeout(120)
def test_console_in_a_terminal_records_on_r_and_quits_cleanly_on_q(vectra_env, tmp_path):
    if not VECTRA_BIN.exists():
        pytest.skip(f"the vectra script is not installed at {VECTRA_BIN} (pip install -e .)")
    sim = SimProcess(speed=5, seed=9, max_ticks=200).start()
    terminal = Terminal(f"vectra-test-{os.getpid()}-{tmp_path.name}")
    exit_file = tmp_path / "exit-code"
    env = {**vectra_env, "VECTRA_FEED_URL": sim.url, "TERM": "xterm-256color"}
    assignments = " ".join(f"{key}={shlex.quote(value)}" for key, value in env.items())
    try:
        terminal.open(f"cd {shlex.quote(str(REPO))} && env {assignments} {VECTRA_BIN}; echo $? > {exit_file}; sleep 60")
        screen = terminal.wait_for(["Connection", "connected", "game 2", "Recording", "off", "r Record"])
        assert sim.url.removeprefix("http://") in screen
        assert wait_health(vectra_env["VECTRA_HTTP_PORT"], lambda h: "recording" in h)["recording"]["on"] is False

        terminal.press("r")
        terminal.wait_for(["REC", "recording"])
        report = wait_health(vectra_env["VECTRA_HTTP_PORT"], lambda h: h["recording"]["on"] and h["recording"]["rows"] > 0)
        assert report["recording"]["state"] == "recording"

        terminal.press("q")
        deadline = time.monotonic() + 20
        while not exit_file.exists() and time.monotonic() < deadline:
            time.sleep(0.2)
        assert exit_file.exists(), f"vectra did not exit on q:\n{terminal.screen()}"
        assert exit_file.read_text().strip() == "0"
    finally:
        terminal.close()
        sim.kill()
    files = sorted((Path(vectra_env["VECTRA_DATA_DIR"]) / "recordings").rglob("*.parquet"))
    assert files and sum(pq.read_metadata(path).num_rows for path in files) >= report["recording"]["rows"]
