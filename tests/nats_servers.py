"""Real `nats-server` processes with JetStream for the NATS tests: one server, or a cluster of three.

Each server gets loopback ports from the OS and its own store folder under the test's tmp_path, and
a stopped server comes back with the same ports and store (a restart, not a new server). Where the
Debian package `nats-server` is missing, tests that need one skip and say how to get it.
"""

from __future__ import annotations

import shutil
import socket
import subprocess
import time
from pathlib import Path

import pytest

from tests.conftest import free_port

BINARY = shutil.which("nats-server") or ("/usr/sbin/nats-server" if Path("/usr/sbin/nats-server").exists() else None)


def require_nats_server() -> str:
    if BINARY is None:
        pytest.skip("nats-server is not installed: `./start.sh test` installs it (Debian package nats-server)")
    return BINARY


class NatsServer:
    def __init__(self, store: Path, *, name: str = "n1", cluster: str | None = None) -> None:
        self.binary = require_nats_server()
        self.store, self.name, self.cluster = store, name, cluster
        self.port = free_port()
        self.cluster_port = free_port() if cluster else None
        self.routes: list[str] = []
        self.proc: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"nats://127.0.0.1:{self.port}"

    def start(self) -> "NatsServer":
        args = [self.binary, "-js", "-a", "127.0.0.1", "-p", str(self.port), "-sd", str(self.store), "-n", self.name]
        if self.cluster:
            args += ["--cluster_name", self.cluster, "--cluster", f"nats://127.0.0.1:{self.cluster_port}"]
            if self.routes:
                args += ["--routes", ",".join(self.routes)]
        self.store.mkdir(parents=True, exist_ok=True)
        self.proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        self._wait_listening()
        return self

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(timeout=10)

    def kill(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=10)

    def _wait_listening(self, timeout_s: float = 20) -> None:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"nats-server {self.name} exited with {self.proc.returncode}")
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=1):
                    return
            except OSError:
                time.sleep(0.05)
        raise TimeoutError(f"nats-server {self.name} did not listen on {self.port}")


def cluster_of_three(root: Path) -> list[NatsServer]:
    """Three routed servers (not started): JetStream with replicas up to 3."""
    servers = [NatsServer(root / name, name=name, cluster="vectra-test") for name in ("n1", "n2", "n3")]
    for server in servers:
        server.routes = [f"nats://127.0.0.1:{other.cluster_port}" for other in servers if other is not server]
    return servers


@pytest.fixture
def nats_server(tmp_path):
    server = NatsServer(tmp_path / "nats").start()
    yield server
    server.kill()


@pytest.fixture
def nats_cluster(tmp_path):
    servers = cluster_of_three(tmp_path / "nats")
    for server in servers:
        server.start()
    yield servers
    for server in servers:
        server.kill()
