"""Real processes for end-to-end tests: the simulator and the daemon, started as a user would."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Callable

from tests.conftest import free_port

REPO = Path(__file__).resolve().parent.parent
VECTRA = [sys.executable, "-m", "vectra_cli"]


class SimProcess:
    """`vectra sim` in a subprocess, so a test can kill it and bring the same world back."""

    def __init__(self, *, speed: float = 20, seed: int = 7, max_ticks: int = 40, anchor_ms: int | None = None,
                 starting_cash: float = 1.0):
        self.port = free_port()
        self.speed, self.seed, self.max_ticks, self.starting_cash = speed, seed, max_ticks, starting_cash
        self.anchor_ms = anchor_ms  # None: now, when first started
        self.proc: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> "SimProcess":
        if self.anchor_ms is None:
            self.anchor_ms = int(time.time() * 1000)
        args = [*VECTRA, "sim", "--port", str(self.port), "--speed", str(self.speed), "--seed", str(self.seed),
                "--max-ticks", str(self.max_ticks), "--anchor-ms", str(self.anchor_ms),
                "--starting-cash", str(self.starting_cash)]
        self.proc = subprocess.Popen(args, cwd=REPO, stderr=subprocess.PIPE, text=True)
        line = self.proc.stderr.readline()
        assert "listening" in line, f"simulator did not start: {line!r}"
        threading.Thread(target=self.proc.stderr.read, daemon=True).start()
        return self

    def __enter__(self) -> "SimProcess":
        return self.start()

    def __exit__(self, *exc_info) -> None:
        self.kill()

    def kill(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=10)

    def fault(self, **body) -> dict:
        request = urllib.request.Request(
            self.url + "/admin/fault", data=json.dumps(body).encode(), headers={"Content-Type": "application/json"}
        )
        with urllib.request.urlopen(request, timeout=5) as reply:
            return json.loads(reply.read())

    def state(self) -> dict:
        with urllib.request.urlopen(self.url + "/admin/state", timeout=5) as reply:
            return json.loads(reply.read())


class DaemonProcess:
    """`vectra --daemon --stdout` in a subprocess; every envelope it prints is collected."""

    def __init__(self, env: dict[str, str], *extra: str):
        self.env = {**os.environ, **env}
        self.extra = extra
        self.events: list[dict] = []
        self.stderr: list[str] = []
        self.proc: subprocess.Popen | None = None
        self._changed = threading.Condition()

    def start(self) -> "DaemonProcess":
        self.proc = subprocess.Popen(
            [*VECTRA, "--daemon", "--stdout", *self.extra],
            cwd=REPO,
            env=self.env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        threading.Thread(target=self._read_stdout, daemon=True).start()
        threading.Thread(target=self._read_stderr, daemon=True).start()
        return self

    def _read_stdout(self) -> None:
        for line in self.proc.stdout:
            if not line.endswith("\n"):
                break  # the last line of a killed daemon, cut short
            with self._changed:
                self.events.append(json.loads(line))
                self._changed.notify_all()

    def _read_stderr(self) -> None:
        for line in self.proc.stderr:
            self.stderr.append(line)

    def wait_for(self, predicate: Callable[[list[dict]], bool], timeout: float = 30) -> list[dict]:
        deadline = time.monotonic() + timeout
        with self._changed:
            while not predicate(self.events):
                remaining = deadline - time.monotonic()
                if remaining <= 0 or self.proc.poll() is not None:
                    raise AssertionError(
                        f"condition not met after {timeout}s; {len(self.events)} events; "
                        f"stderr tail: {''.join(self.stderr[-10:])}"
                    )
                self._changed.wait(min(remaining, 0.5))
            return list(self.events)

    def of_type(self, channel: str) -> list[dict]:
        return [event for event in self.events if event["type"] == channel]

    def terminate(self, timeout: float = 10) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        return self.proc.wait(timeout=timeout)

    def kill(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=10)


def health(settings: dict[str, str]) -> dict:
    """The daemon's `/health` report, whether it answers 200 or 503 (`down`)."""
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{settings['VECTRA_HTTP_PORT']}/health", timeout=5) as reply:
            return json.loads(reply.read())
    except urllib.error.HTTPError as exc:
        return json.loads(exc.read())
