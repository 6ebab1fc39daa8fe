"""The container engine for the deployment tests: podman with runc (deploy/ci-setup.sh installs it and
builds the base image), the project's image built from its Dockerfile, and containers run as an operator
would, on the host's network so that they meet the simulator and the test on 127.0.0.1."""

from __future__ import annotations

import functools
import json
import os
import subprocess
import time
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
CONTAINERS_CONF = REPO / "deploy" / "ci" / "containers.conf"
IMAGE = "localhost/vectra:test"
HOST_PIP_FILES = ("/etc/ssl/certs/ca-certificates.crt", "/etc/pip.conf", "/etc/xdg/pip")
PIP_BUILD_ARGS = ("PIP_INDEX_URL", "PIP_EXTRA_INDEX_URL", "PIP_TRUSTED_HOST", "PIP_DEFAULT_TIMEOUT")


def engine_env() -> dict[str, str]:
    return {**os.environ, "CONTAINERS_CONF": str(CONTAINERS_CONF)}


def podman(*args: str, check: bool = True, timeout: float = 120) -> subprocess.CompletedProcess:
    done = subprocess.run(["podman", *args], env=engine_env(), capture_output=True, text=True, timeout=timeout)
    if check and done.returncode != 0:
        raise AssertionError(f"podman {' '.join(args)} failed ({done.returncode}): {done.stderr[-2000:]}")
    return done


@functools.cache
def run_setup() -> subprocess.CompletedProcess:
    """deploy/ci-setup.sh, once per test session: Compose v2, the engine, the base image."""
    return subprocess.run([str(REPO / "deploy" / "ci-setup.sh")], capture_output=True, text=True, timeout=900)


def prepare_engine() -> str:
    """The base image's name, once podman can run a container here; otherwise the test skips, saying why."""
    setup = run_setup()
    if setup.returncode == 3:
        pytest.skip(f"this machine cannot run the container tests: {setup.stderr.strip()}")
    assert setup.returncode == 0, f"deploy/ci-setup.sh failed: {setup.stderr[-3000:]}"
    base = setup.stdout.strip().splitlines()[-1]
    probe = podman("run", "--rm", "--network", "host", base, "true", check=False)
    if probe.returncode != 0:
        pytest.skip(f"podman cannot start a container on this machine: {probe.stderr.strip()[-500:]}")
    return base


def build_image(base: str, target: str = "daemon", tag: str = IMAGE) -> str:
    """A target of the Dockerfile (the daemon by default). pip inside the build reaches PyPI through this machine's own
    configuration: its CA bundle and pip settings are mounted for the build, never copied into the image."""
    mounts = [arg for path in HOST_PIP_FILES if os.path.exists(path) for arg in ("-v", f"{path}:{path}:ro")]
    build_args = [arg for name in PIP_BUILD_ARGS if os.environ.get(name)
                  for arg in ("--build-arg", f"{name}={os.environ[name]}")]
    podman("build", "--format", "docker", "--network", "host", "--build-arg", f"BASE={base}", *build_args,
           *mounts, "--target", target, "-t", tag, str(REPO), timeout=900)
    return tag


class Container:
    """One `podman run -d` of the image: the daemon with its data on a named volume. `health_start_period`
    (e.g. "0s"): the image's HEALTHCHECK with another start period, see `health_options`."""

    def __init__(self, name: str, env: dict[str, str], volume: str, image: str = IMAGE,
                 health_start_period: str | None = None):
        self.name, self.env, self.volume, self.image = name, env, volume, image
        self.health_start_period = health_start_period

    def run(self) -> "Container":
        settings = [arg for key, value in self.env.items() for arg in ("-e", f"{key}={value}")]
        podman("run", "-d", "--name", self.name, "--network", "host", *self.health_options(),
               "-v", f"{self.volume}:/var/lib/vectra/data", *settings, self.image)
        return self

    def health_options(self) -> list[str]:
        """The image's own HEALTHCHECK (its command, interval, timeout and retries) with `health_start_period`.
        Podman 4.3 counts no failure within the start period even after a success (Docker's ends at the first
        success), from each start of the container, and takes a HEALTHCHECK from the command line only whole."""
        if self.health_start_period is None:
            return []
        check = json.loads(podman("image", "inspect", "--format", "{{json .Config.Healthcheck}}", self.image).stdout)
        return ["--health-cmd", json.dumps(check["Test"]), "--health-interval", f"{check['Interval'] / 1e9:g}s",
                "--health-timeout", f"{check['Timeout'] / 1e9:g}s", "--health-retries", str(check["Retries"]),
                "--health-start-period", self.health_start_period]

    def wait_health(self, wanted: str, timeout: float = 60) -> None:
        """Runs the image's HEALTHCHECK, as the engine's scheduler would (podman's is systemd, absent here),
        until the container's health status is `wanted` (the HEALTHCHECK's retries count)."""
        deadline = time.monotonic() + timeout
        while True:
            podman("healthcheck", "run", self.name, check=False)
            status = self.inspect("{{.State.Healthcheck.Status}}")
            if status == wanted:
                return
            assert time.monotonic() < deadline, f"{self.name}: health {status!r}, never {wanted!r}; {self.logs()[-1500:]}"
            time.sleep(0.5)

    def inspect(self, template: str) -> str:
        return podman("inspect", "--format", template, self.name).stdout.strip()

    def logs(self) -> str:
        done = podman("logs", self.name, check=False)
        return done.stdout + done.stderr

    def data_dir(self) -> Path:
        return Path(podman("volume", "inspect", "--format", "{{.Mountpoint}}", self.volume).stdout.strip())

    def remove(self) -> None:
        podman("rm", "-f", "-v", "-t", "0", self.name, check=False)  # -v: the image's anonymous volumes too
        podman("volume", "rm", "-f", self.volume, check=False)
