"""The one managed browser: attach to it or launch it on the `rugs_bot` profile, and keep it alive.

The feed that matters most only flows to a browser logged in with the bot's wallet, so that browser is
part of Vectra: found on the CDP port (attached, never killed) or started by Vectra itself on the
dedicated profile (never the system's default one, where Chrome ignores remote debugging), watched,
and started again with backoff when it dies (the `Supervisor` keeps it up: the manager is its `Link`).
Every change of state goes out on `chrome.status`.
"""

from __future__ import annotations

import asyncio
import logging
import os
import shutil
import signal
import subprocess
import time
from pathlib import Path
from typing import Any

from core.bus import EventBus
from core.chrome.devtools import browser_version
from core.chrome.profile import PROFILE_IN_USE_EXIT, ProfileInUse, claim_profile, lock_holder
from core.config import Settings
from core.contracts.envelope import Envelope
from core.contracts.component import CommandError
from core.contracts.health import ChromeHealth
from core.supervisor import DISCONNECTED, FAILED, ChangeGate, Policy, Supervisor, Transition
from core.contracts.requests import Chrome

log = logging.getLogger(__name__)

BROWSER_NAMES = ("chromium", "google-chrome", "chromium-browser", "google-chrome-stable")
LAUNCH_TIMEOUT_S = 20.0
POLL_S = 0.25
ATTACHED_POLL_S = 2.0
STABLE_AFTER_S = 60.0  # a browser that lived this long crashed afresh: its backoff starts over
RELAUNCH_REQUESTED = "relaunch requested"
TERMINATE_GRACE_S = 3.0
STATUS_SOURCE = "cdp"
# Quiet, offline-safe defaults: no first-run UI, no background traffic to Google's services.
QUIET_FLAGS = (
    "--no-first-run",
    "--no-default-browser-check",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
)


class ChromeError(Exception):
    """The browser cannot be found or started; the message is one line for the operator."""


def find_browser(settings: Settings) -> str:
    if settings.chrome_binary:
        found = shutil.which(settings.chrome_binary)
        if found is None:
            raise ChromeError(f"VECTRA_CHROME_BINARY={settings.chrome_binary} is not an executable")
        return found
    for name in BROWSER_NAMES:
        found = shutil.which(name)
        if found is not None:
            return found
    raise ChromeError(f"no browser found on PATH (looked for {', '.join(BROWSER_NAMES)}); set VECTRA_CHROME_BINARY")


def launch_command(settings: Settings, binary: str) -> list[str]:
    command = [
        binary,
        f"--user-data-dir={settings.chrome_profile}",
        f"--remote-debugging-port={settings.cdp_port}",
        *QUIET_FLAGS,
    ]
    if settings.chrome_headless:
        command += ["--headless=new", "--disable-gpu"]
    if os.geteuid() == 0:
        command.append("--no-sandbox")  # Chromium refuses to run as root with its sandbox
    command.append(settings.game_url)
    return command


def pid_file(settings: Settings) -> Path:
    """Where the pid of the browser Vectra launched is kept, so `vectra chrome stop` can find it later."""
    return settings.data_dir / "chrome.pid"


def is_our_browser(settings: Settings, pid: int) -> bool:
    """The process is a browser on our profile (a pid from the file may have been reused since)."""
    try:
        arguments = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except OSError:
        return False
    return f"--user-data-dir={settings.chrome_profile}".encode() in arguments


def terminate_group(pid: int, grace_s: float = TERMINATE_GRACE_S, child: subprocess.Popen | None = None) -> None:
    """SIGTERM the browser's process group (renderers included), SIGKILL what is left after the grace.
    `child`: the browser's process when this process started it, reaped as soon as it exits (until
    then it is a zombie that keeps its group alive: every stop waited the whole grace, then killed)."""
    try:
        os.killpg(pid, signal.SIGTERM)
    except ProcessLookupError:
        return
    deadline = time.monotonic() + grace_s
    while time.monotonic() < deadline:
        if child is not None:
            child.poll()
        try:
            os.killpg(pid, 0)
        except ProcessLookupError:
            return
        time.sleep(0.05)
    try:
        os.killpg(pid, signal.SIGKILL)
    except ProcessLookupError:
        pass


class ChromeManager:
    """A foundation component; also a bus subscriber, to learn the logged-in identity from the feed."""

    name = "chrome"

    def __init__(self, settings: Settings, bus: EventBus | None = None) -> None:
        self.settings = settings
        self.bus = bus
        self.state = "stopped"
        self.pid: int | None = None
        self.reason: str | None = None
        self.tab_url: str | None = None
        self.authenticated_as: str | None = None
        self.launches = 0
        self._process: subprocess.Popen | None = None
        self._task: asyncio.Task | None = None
        self._shown = ChangeGate((self.state, self.reason, self.pid))
        policy = Policy.from_settings(settings, stable_after_s=STABLE_AFTER_S)
        self.supervisor = Supervisor(self, self._show, policy, retry_on=(ChromeError, ProfileInUse, OSError))

    # --- what the outside sees ------------------------------------------------------------------

    @property
    def owns_browser(self) -> bool:
        return self._process is not None and self._process.poll() is None

    def status(self) -> dict[str, Any]:
        return {
            "state": self.state,
            "pid": self.pid,
            "profile": str(self.settings.chrome_profile),
            "cdp_port": self.settings.cdp_port,
            "tab_url": self.tab_url,
            "authenticated_as": self.authenticated_as,
            "reason": self.reason,
            "launches": self.launches,
        }

    def health(self) -> ChromeHealth:
        return ChromeHealth(**self.status())

    def _set(self, state: str, *, reason: str | None = None, pid: int | None = None) -> None:
        self.state, self.reason, self.pid = state, reason, pid
        if self._shown.changed((state, reason, pid)):
            self._publish()

    def _show(self, step: Transition) -> None:
        """The supervisor's steps: launching and running are told by `ensure`, every end is a crash."""
        if step.state == FAILED:
            log.error("%s", step.reason)
        elif step.state == DISCONNECTED:
            log.warning("browser gone: %s", step.reason)
        else:
            return
        self._set("crashed", reason=step.reason)

    def _publish(self) -> None:
        if self.bus is not None:
            self.bus.publish("chrome.status", self.status(), source=STATUS_SOURCE)

    def note_tab(self, url: str | None) -> None:
        """The CDP source says which page the game tab shows."""
        if url != self.tab_url:
            self.tab_url = url
            self._publish()

    def deliver(self, envelope: Envelope) -> None:
        """The status goes out on the next loop turn: published from inside the bus's fan-out, it would
        reach the subscribers after this one before the identity it follows."""
        if envelope.type == "player.identity" and envelope.source == STATUS_SOURCE:
            asyncio.get_running_loop().call_soon(self._learn_identity, envelope.data)

    def _learn_identity(self, data: dict[str, Any]) -> None:
        name = data.get("username") or data.get("name")
        identity = str(name) if name else "unknown user"
        if identity != self.authenticated_as:
            self.authenticated_as = identity
            self._publish()

    # --- life cycle (as a component) -------------------------------------------------------------

    async def start(self) -> None:
        self._task = asyncio.create_task(self.supervisor.run(), name="chrome-manager")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
            self._task = None
        if self.owns_browser:
            await asyncio.to_thread(self._terminate_own)
        self._set("stopped")

    async def relaunch(self) -> dict[str, Any]:
        """Stop the browser Vectra started (the supervisor's `close`) and start it again at once."""
        if not self.owns_browser:
            raise ChromeError(
                f"the browser on CDP port {self.settings.cdp_port} was not started by Vectra; it is left alone"
            )
        self.supervisor.wake(RELAUNCH_REQUESTED)
        return self.status()

    # --- attach or launch -----------------------------------------------------------------------

    async def ensure(self) -> str:
        """Attach to the browser on the CDP port, or launch one; returns the new state."""
        timeout = self.settings.cdp_call_timeout_s
        if await browser_version(self.settings.cdp_port, timeout) is not None:
            self._process = None
            self._set("attached", pid=None)
            return self.state
        binary = find_browser(self.settings)
        claim_profile(self.settings.chrome_profile)
        self._set("launching")
        process = self._spawn(binary)
        try:
            await self._wait_until_up(process)
        except BaseException:
            await asyncio.to_thread(terminate_group, process.pid, child=process)
            process.poll()
            raise
        self._process = process
        self.launches += 1
        pid_file(self.settings).write_text(f"{process.pid}\n")
        self._set("running", pid=process.pid)
        return self.state

    def _spawn(self, binary: str) -> subprocess.Popen:
        self.settings.data_dir.mkdir(parents=True, exist_ok=True)
        command = launch_command(self.settings, binary)
        log.info("launching %s on profile %s", binary, self.settings.chrome_profile)
        with open(self.settings.data_dir / "chrome.log", "wb") as output:
            return subprocess.Popen(
                command,
                stdin=subprocess.DEVNULL,
                stdout=output,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # its own process group: stopped as one, survives `vectra chrome launch`
            )

    async def _wait_until_up(self, process: subprocess.Popen) -> None:
        deadline = time.monotonic() + LAUNCH_TIMEOUT_S
        while time.monotonic() < deadline:
            code = process.poll()
            if code is not None:
                raise self._early_exit(code)
            if await browser_version(self.settings.cdp_port, self.settings.cdp_call_timeout_s) is not None:
                return
            await asyncio.sleep(POLL_S)
        raise ChromeError(
            f"the browser did not open CDP port {self.settings.cdp_port} within {LAUNCH_TIMEOUT_S:g} s "
            f"(is the port taken? see {self.settings.data_dir / 'chrome.log'})"
        )

    def _early_exit(self, code: int) -> Exception:
        profile = self.settings.chrome_profile
        holder = lock_holder(profile)
        if code == PROFILE_IN_USE_EXIT or (holder is not None and holder.alive):
            return ProfileInUse(profile, str(holder) if holder else "exit code 21")
        return ChromeError(f"the browser exited at once with code {code} (see {self.settings.data_dir / 'chrome.log'})")

    def _terminate_own(self) -> None:
        process = self._process
        if process is None:
            return
        terminate_group(process.pid, child=process)
        process.poll()
        try:
            pid_file(self.settings).unlink()
        except FileNotFoundError:
            pass

    # --- the supervisor's Link: attach or launch, watch, stop what is left -------------------------

    async def open(self) -> None:
        await self.ensure()

    async def hold(self) -> str:
        """Wait until the browser is gone; say how it went."""
        process = self._process
        if process is not None:
            while (code := process.poll()) is None:
                await asyncio.sleep(POLL_S)
            self._process = None
            return f"browser exited with code {code}"
        misses = 0
        while misses < 2:
            await asyncio.sleep(ATTACHED_POLL_S)
            answered = await browser_version(self.settings.cdp_port, self.settings.cdp_call_timeout_s)
            misses = 0 if answered is not None else misses + 1
        return f"the attached browser stopped answering on port {self.settings.cdp_port}"

    async def close(self) -> None:
        """A browser of ours still running (a relaunch, a shutdown) is stopped before the next launch."""
        if self.owns_browser:
            await asyncio.to_thread(self._terminate_own)


def chrome_command(manager: ChromeManager):
    """The `chrome` action of `Foundation.command`: `{"action": "chrome", "op": "status"|"relaunch"}`."""

    async def handle(request: Chrome) -> dict[str, Any]:
        if request.op == "status":
            return {"type": "chrome", "data": manager.status()}
        try:
            return {"type": "chrome", "data": await manager.relaunch()}
        except ChromeError as exc:
            raise CommandError("not_owner", str(exc)) from None

    return handle
