"""The chaos matrix's shared harness: one real daemon on one real simulator per scenario, watched from
outside, and the truth about what the watchers got.

A scenario (see `bench/chaos_scenarios.py`) receives a `Stack`: a `vectra sim` subprocess, a
`vectra --daemon --stdout` subprocess with recording on (its own data dir and free ports), and
watchers that subscribe to everything from `seq` 1: the project's Python client over ZeroMQ
(`core.client`), a raw WebSocket that resumes with `from_seq` whenever it is cut off, and a poller
of `/health`. The scenario breaks something, says when the fault is over (`stack.fault_over()`) and
returns; `Stack.verdict()` then stops the daemon cleanly, reads its recordings and computes the
measures defined in docs/RELIABILITY.md:

- published: every `seq` the daemon is known to have published up to the cut-off: printed on its
  stdout, held in its recordings (ring's long tail) or received by any watcher;
- lost silently: per view (each subscriber and the recordings), a published `seq` it never got and
  never had declared (`client.gap`, `gap`, `recording.gap`), excluding numbers a restart reserved and
  never used; plus, per game, ticks between `game.start` and `game.end` neither published nor declared
  on `game.gap`, a `game.end` whose `ticksExpected`/`ticksSeen` differ from what was published, and
  games that started and never ended although a later game began;
- declared gaps: how many declarations the views received;
- false alarms: a declared range holding something that was delivered (or never used), a second
  `game.start`, an inferred `game.end` for a game whose rug frame was published, a `game.gap` after
  its game's `game.end`, and every episode of `/health` saying `ok` while the feed was silent or the
  recording had failed;
- recovery: from the end of the fault to the first feed frame a subscriber got after it and a
  `/health` `ok` (or what the scenario measures itself).

Only 127.0.0.1, every process started here is killed by its pid at the end.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Awaitable, Callable

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

import orjson  # noqa: E402
from websockets.asyncio.client import connect as ws_connect  # noqa: E402

from core.client import request as zmq_request  # noqa: E402
from core.client import subscribe  # noqa: E402
from core.contracts.recordings import recordings_dir  # noqa: E402
from core.recorder.history import RecordingHistory  # noqa: E402
from tests.conftest import free_port  # noqa: E402
from tests.processes import DaemonProcess, SimProcess  # noqa: E402

HEALTH_STALE_S = 2.0  # VECTRA_HEALTH_STALE_S in every scenario (the default)
HEALTH_MARGIN_S = 1.0  # a silent feed must show within stale + this
CATCH_UP_S = 15.0
LAST_SEQ = 2**62


@dataclass
class View:
    """What one consumer got: the seqs delivered to it and the seq ranges declared lost to it."""

    name: str
    seqs: set[int] = field(default_factory=set)
    declared: list[tuple[int, int]] = field(default_factory=list)
    first_seq: int = 1  # the view is accountable from here on
    live: bool = True  # False once the scenario stopped it on purpose for good

    def high(self) -> int:
        return max(self.seqs, default=0)


@dataclass
class Row:
    scenario: str
    published: int = 0
    lost_silently: int = 0
    declared_gaps: int = 0
    false_alarms: int = 0
    recovery_s: float | None = None
    check: str = "ok"
    notes: list[str] = field(default_factory=list)

    def cells(self) -> list[str]:
        recovery = "-" if self.recovery_s is None else f"{self.recovery_s:.1f}"
        return [self.scenario, str(self.published), str(self.lost_silently), str(self.declared_gaps),
                str(self.false_alarms), recovery, self.check, "; ".join(self.notes)]


HEADER = ["scenario", "published", "lost silently", "declared gaps", "false alarms", "recovery s", "check", "notes"]


def table(rows: list[Row]) -> str:
    """A Markdown table, readable in a terminal too."""
    lines = ["| " + " | ".join(HEADER) + " |", "|" + "|".join("---" for _ in HEADER) + "|"]
    lines += ["| " + " | ".join(cell.replace("|", "/") for cell in row.cells()) + " |" for row in rows]
    return "\n".join(lines)


# --- plain HTTP, off the loop ---------------------------------------------------------------------


def http_get(url: str, headers: dict[str, str] | None = None, timeout: float = 2.0) -> tuple[int, bytes]:
    request = urllib.request.Request(url, headers=headers or {})
    try:
        with urllib.request.urlopen(request, timeout=timeout) as reply:
            return reply.status, reply.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


# --- watchers ---------------------------------------------------------------------------------------


class Watchers:
    """Everything a scenario watches with, sharing one record of every envelope seen."""

    def __init__(self, stack: "Stack") -> None:
        self.stack = stack
        self.events: dict[int, dict[str, Any]] = {}  # seq -> envelope (type, gameId, data)
        self.health: list[tuple[float, str, str | None]] = []  # (epoch s at the reply, status, recording state)
        self.tasks: list[asyncio.Task] = []

    def keep(self, envelope: dict[str, Any]) -> None:
        self.events.setdefault(envelope["seq"], envelope)

    def start(self, task: Awaitable[None]) -> asyncio.Task:
        started = asyncio.create_task(task)
        self.tasks.append(started)
        return started

    async def stop(self) -> None:
        for task in self.tasks:
            task.cancel()
        for task in self.tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task


async def watch_with_client(stack: "Stack", view: View, from_seq: int = 1, patterns: tuple[str, ...] = ()) -> None:
    """The project's Python client (ZeroMQ), in this process: it resumes by itself."""
    subscription = subscribe(*patterns, from_seq=from_seq, pub=stack.env["VECTRA_ZMQ_PUB"],
                             router=stack.env["VECTRA_ZMQ_ROUTER"], dead_after_s=3.0)
    async for item in subscription:
        if item.seq is None:
            if item.type == "client.gap":
                view.declared.append((item.data["from_seq"], item.data["to_seq"]))
            continue
        envelope = item.as_dict()
        view.seqs.add(item.seq)
        stack.watchers.keep(envelope)


async def watch_with_websocket(stack: "Stack", view: View, from_seq: int = 1, stop_after: int | None = None) -> None:
    """A raw WebSocket client subscribed to `*`; whenever it is cut off it subscribes again with
    `from_seq` = its last seq + 1, as docs/PROTOCOL.md tells clients to."""
    next_seq = from_seq
    while True:
        try:
            async with ws_connect(stack.ws_url, max_size=None, open_timeout=3) as ws:
                await ws.send(orjson.dumps({"action": "subscribe", "channels": ["*"], "from_seq": next_seq}).decode())
                async for message in ws:
                    item = orjson.loads(message)
                    if item.get("type") == "gap":
                        view.declared.append((item["from_seq"], item["to_seq"]))
                        next_seq = max(next_seq, item["to_seq"] + 1)
                    elif isinstance(item.get("seq"), int) and "v" in item:
                        view.seqs.add(item["seq"])
                        stack.watchers.keep(item)
                        next_seq = max(next_seq, item["seq"] + 1)
                        if stop_after is not None and len(view.seqs) >= stop_after:
                            return
        except Exception:  # noqa: BLE001 - whatever cut it off, it resumes
            pass
        await asyncio.sleep(0.2)


async def poll_health(stack: "Stack") -> None:
    while True:
        try:
            status, body = await asyncio.to_thread(http_get, stack.http_url + "/health", None, 1.0)
            report = json.loads(body)
            recording = report.get("recording") or {}
            stack.watchers.health.append((time.time(), report.get("status", f"http {status}"), recording.get("state")))
        except (OSError, ValueError):
            pass
        await asyncio.sleep(0.25)


# --- the stack --------------------------------------------------------------------------------------


class Stack:
    """One scenario's world; see the module docstring."""

    def __init__(self, name: str, workdir: Path, *, speed: float = 10, max_ticks: int = 60,
                 seed: int = 11, env: dict[str, str] | None = None, data_dir: Path | None = None,
                 cdp: bool = False) -> None:
        self.name = name
        self.workdir = workdir
        self.sim = SimProcess(speed=speed, seed=seed, max_ticks=max_ticks)
        self.data_dir = data_dir or workdir / "data"
        self.env = {
            "VECTRA_DATA_DIR": str(self.data_dir),
            "VECTRA_HTTP_PORT": str(free_port()),
            "VECTRA_ZMQ_PUB": f"tcp://127.0.0.1:{free_port()}",
            "VECTRA_ZMQ_ROUTER": f"tcp://127.0.0.1:{free_port()}",
            "VECTRA_CDP_PORT": str(free_port()),
            "VECTRA_FEED_URL": self.sim.url,
            "VECTRA_RECORD": "true",
            "VECTRA_STALE_AFTER_S": "2",
            "VECTRA_RECONNECT_INITIAL_S": "0.1",
            "VECTRA_RECONNECT_MAX_S": "0.5",
            "VECTRA_HEALTH_STALE_S": str(HEALTH_STALE_S),
            "VECTRA_LOG_LEVEL": "WARNING",
            **(self._browser_env() if cdp else {}),
            **(env or {}),
        }
        self.daemons: list[DaemonProcess] = []
        self.watchers = Watchers(self)
        self.views: list[View] = []
        self.row = Row(name)
        self.fault_over_at: float | None = None
        self.recovery_override: float | None = None
        self.cleanups: list[Callable[[], None]] = []

    def _browser_env(self) -> dict[str, str]:
        """The CDP source: a headless Chromium on a throwaway profile, showing the simulator's page."""
        return {
            "VECTRA_SOURCE": "cdp",
            "VECTRA_CHROME_HEADLESS": "true",
            "VECTRA_CHROME_PROFILE": str(self.workdir / "profile"),
            "VECTRA_GAME_URL": self.sim.url + "/",
            "VECTRA_CDP_SOCKET_MATCH": f"127.0.0.1:{self.sim.port}/socket.io",
            "VECTRA_STALE_AFTER_S": "3",
            "VECTRA_CDP_SILENCE_RELOAD_S": "3",
            "VECTRA_RECONNECT_MAX_S": "1",
        }

    # endpoints
    @property
    def http_url(self) -> str:
        return f"http://127.0.0.1:{self.env['VECTRA_HTTP_PORT']}"

    @property
    def ws_url(self) -> str:
        return f"ws://127.0.0.1:{self.env['VECTRA_HTTP_PORT']}/ws"

    @property
    def daemon(self) -> DaemonProcess:
        return self.daemons[-1]

    # processes
    async def start(self, *, watch: bool = True, wait_events: int = 200) -> "Stack":
        if self.sim.proc is None:
            await asyncio.to_thread(self.sim.start)
        await self.start_daemon()
        if watch:
            self.watch(watch_with_client, "zmq client")
            self.watch(watch_with_websocket, "websocket")
            self.watchers.start(poll_health(self))
            await self.wait_for(lambda: self.views[0].high() >= wait_events, 30, f"{wait_events} events")
        return self

    async def start_daemon(self) -> DaemonProcess:
        daemon = DaemonProcess(self.env)
        await asyncio.to_thread(daemon.start)
        self.daemons.append(daemon)
        await self.wait_for(lambda: self._answers(), 20, "the daemon to answer /health")
        return daemon

    def _answers(self) -> bool:
        if self.daemon.proc.poll() is not None:
            said = "".join(self.daemon.stderr[-3:]).strip()
            raise RuntimeError(f"daemon exited {self.daemon.proc.returncode}" + (f": {said}" if said else ", no message"))
        try:
            return http_get(self.http_url + "/health", None, 0.5)[0] in (200, 503)
        except OSError:
            return False

    async def stop_daemon(self, how: signal.Signals) -> int:
        daemon = self.daemon
        if daemon.proc.poll() is None:
            daemon.proc.send_signal(how)
        return await asyncio.to_thread(daemon.proc.wait, 20)

    def watch(self, watcher: Callable[..., Awaitable[None]], name: str, **options: Any) -> View:
        view = View(name, first_seq=options.get("from_seq", 1))
        self.views.append(view)
        self.watchers.start(watcher(self, view, **options))
        return view

    async def fault(self, **body: Any) -> dict:
        return await asyncio.to_thread(self.sim.fault, **body)

    async def sim_state(self) -> dict:
        return await asyncio.to_thread(self.sim.state)

    async def wait_for(self, condition: Callable[[], bool], timeout: float, what: str) -> None:
        deadline = time.monotonic() + timeout
        while not condition():
            if time.monotonic() > deadline:
                raise TimeoutError(f"timed out after {timeout:g} s waiting for {what}")
            await asyncio.sleep(0.05)

    async def wait_phase(self, phases: tuple[str, ...], timeout: float = 30) -> None:
        """Until the simulator is in one of `phases` (`ACTIVE`, `COOLDOWN`, ...)."""
        deadline = time.monotonic() + timeout
        while (await self.sim_state()).get("phase") not in phases:
            if time.monotonic() > deadline:
                raise TimeoutError(f"the simulator never reached {phases}")
            await asyncio.sleep(0.02)

    def fault_over(self) -> None:
        self.fault_over_at = time.time()

    def last_seq(self, patience_s: float = 60) -> int:
        """The last seq published, asked on the ROUTER (retried: a stalled daemon may answer late)."""
        deadline = time.monotonic() + patience_s
        while True:
            try:
                reply = zmq_request({"action": "ping"}, 5, router=self.env["VECTRA_ZMQ_ROUTER"])
                if reply.get("type") == "pong":
                    return int(reply["seq"])
            except TimeoutError:
                pass
            if time.monotonic() > deadline:
                raise TimeoutError("the daemon does not answer `ping`")
            time.sleep(0.5)

    def fail(self, what: str) -> None:
        """The scenario's own check of the behaviour the issue requires did not hold."""
        self.row.check = "FAIL" if self.row.check == "ok" else self.row.check
        self.row.notes.append(what)

    def note(self, what: str) -> None:
        self.row.notes.append(what)

    def note_once(self, what: str) -> None:
        if what not in self.row.notes:
            self.row.notes.append(what)

    # --- the truth ------------------------------------------------------------------------------

    async def verdict(self) -> Row:
        row = self.row
        cutoff = await asyncio.to_thread(self.last_seq)
        live = [view for view in self.views if view.live]
        try:
            await self.wait_for(lambda: all(view.high() >= cutoff for view in live), CATCH_UP_S, "the views to catch up")
        except TimeoutError:
            row.notes.append("not caught up within %gs: %s" % (CATCH_UP_S, ", ".join(
                f"{view.name} at {view.high()}/{cutoff}" for view in live if view.high() < cutoff)))
        await self.watchers.stop()
        await self.stop_daemon(signal.SIGTERM)
        recorded = {envelope.seq: envelope.as_dict()
                    for envelope in RecordingHistory(recordings_dir(self.data_dir)).read_range(1, LAST_SEQ)}
        for envelope in recorded.values():
            self.watchers.keep(envelope)
        for daemon in self.daemons:
            for envelope in daemon.events:
                self.watchers.keep(envelope)
        recording = View("recordings", set(recorded), self._recording_gaps())
        published = {seq for seq in self.watchers.events if seq <= cutoff}
        row.published = len(published)
        lost, alarms = self.account(published, cutoff, [recording])
        row.declared_gaps += sum(len(view.declared) for view in [*self.views, recording])
        row.notes += [f"declared: {view.name} {first}-{last}" for view in [*self.views, recording]
                      for first, last in view.declared]
        game_lost, game_alarms, game_gaps = self._games(cutoff)
        lost.update(game_lost)
        alarms.update(game_alarms)
        row.declared_gaps += game_gaps
        alarms.update(self._health_alarms())
        row.lost_silently = sum(lost.values())
        row.false_alarms = sum(alarms.values())
        row.notes += [f"lost: {name} {n}" for name, n in lost.items() if n]
        row.notes += [f"false alarm: {name}" + (f" x{n}" if n > 1 else "") for name, n in alarms.items() if n]
        row.recovery_s = self.recovery_override if self.recovery_override is not None else self._recovery()
        return row

    def account(self, published: set[int], cutoff: int, extra_views: list[View]) -> tuple[Counter, Counter]:
        """Per view: published events neither delivered nor declared (lost silently), and
        declarations of delivered events or of numbers never used (false alarms)."""
        never_used = self._never_used(published)
        lost: Counter[str] = Counter()
        alarms: Counter[str] = Counter()
        for view in [*self.views, *extra_views]:
            declared = {seq for first, last in view.declared for seq in range(first, min(last, cutoff) + 1)}
            expected = {seq for seq in published if seq >= view.first_seq}
            lost[view.name] += len(expected - view.seqs - declared - never_used)
            for first, last in view.declared:
                span = set(range(first, last + 1))
                if span & view.seqs:
                    alarms[f"{view.name} gap {first}-{last} of delivered events"] += 1
                elif span <= never_used:
                    alarms[f"{view.name} gap {first}-{last} of numbers never used"] += 1
        return +lost, +alarms

    def _never_used(self, published: set[int]) -> set[int]:
        """Numbers between a run's announced `previous_last_seq` and its `sys.start` that nobody
        ever saw published: reserved by the previous run and never used (not a loss)."""
        unused: set[int] = set()
        for seq, envelope in self.watchers.events.items():
            if envelope["type"] == "sys.start":
                previous = envelope["data"].get("previous_last_seq") or 0
                unused |= set(range(previous + 1, seq)) - published
        return unused

    def _recording_gaps(self) -> list[tuple[int, int]]:
        """`recording.gap` ranges: `data.from`..`data.to`, inclusive (docs/PROTOCOL.md,
        `RecordingGap` in core/contracts/channels.py); one without them is noted, not guessed."""
        gaps = []
        for event in self.watchers.events.values():
            if event["type"] != "recording.gap":
                continue
            data = event["data"]
            if isinstance(data.get("from"), int) and isinstance(data.get("to"), int):
                gaps.append((data["from"], data["to"]))
            else:
                self.note(f"recording.gap without a range: {data}")
        return gaps

    def _games(self, cutoff: int) -> tuple[Counter, Counter, int]:
        """Per game: ticks neither published nor declared, starts without an end, and the false
        alarms among `game.*` (see the module docstring)."""
        lost: Counter[str] = Counter()
        alarms: Counter[str] = Counter()
        starts: dict[str, list[dict]] = defaultdict(list)
        ends: dict[str, dict] = {}
        ticks: dict[str, set[int]] = defaultdict(set)
        gaps: dict[str, set[int]] = defaultdict(set)
        rugs: set[str] = set()
        order: list[str] = []
        declared = 0
        for seq in sorted(self.watchers.events):
            if seq > cutoff:
                break
            event = self.watchers.events[seq]
            game, data, kind = event.get("gameId"), event["data"], event["type"]
            if kind == "raw.gameStateUpdate" and isinstance(data.get("payload"), dict) and data["payload"].get("rugged"):
                rugs.add(data["payload"].get("gameId"))
            if not kind.startswith("game.") or game is None:
                continue
            if game not in order:
                order.append(game)
            if kind == "game.start":
                starts[game].append(data)
            elif kind == "game.end":
                ends[game] = data
            elif kind == "game.tick" and data["phase"] in ("ACTIVE", "RUGGED") and data["tickCount"] is not None:
                ticks[game].add(data["tickCount"])
            elif kind == "game.gap":
                declared += 1
                self.note(f"declared: game.gap ticks {data['fromTick']}-{data['toTick']}")
                span = set(range(data["fromTick"], data["toTick"] + 1))
                if game in ends:
                    alarms["game.gap after game.end"] += 1
                alarms["game.gap of published ticks"] += len(span & ticks[game])
                gaps[game] |= span
        for index, game in enumerate(order):
            if len(starts[game]) > 1:
                alarms["second game.start"] += len(starts[game]) - 1
            if not starts[game]:
                continue
            end = ends.get(game)
            if end is None:
                if any(starts[later] for later in order[index + 1:]):
                    lost["game without game.end"] += 1
                continue
            if end.get("inferred") and game in rugs:
                alarms["inferred game.end of a received rug"] += 1
            # every tick from 0 is expected unless Vectra joined the game late (docs/PROTOCOL.md, game.end)
            first = min(start["tick"] if start.get("late") else 0 for start in starts[game])
            missing = set(range(first, end["finalTick"] + 1)) - ticks[game] - gaps[game]
            lost["game ticks"] += len(missing)
            seen = len({tick for tick in ticks[game] if tick <= end["finalTick"]})
            if (end.get("ticksExpected"), end.get("ticksSeen")) != (end["finalTick"] - first + 1, seen):
                lost["game.end counts that hide missing ticks"] += 1  # e.g. ticksExpected from a restart
        return lost, alarms, declared

    def _health_alarms(self) -> Counter:
        """Episodes of `/health` `ok` while the daemon had received no feed frame (a `raw.*` event,
        by its receive stamp) for longer than the staleness limit, or while the recording had failed."""
        alarms: Counter[str] = Counter()
        feed = self.feed_times()
        silent_before, failed_before = False, False
        index = 0
        for at, status, recording_state in self.watchers.health:
            while index < len(feed) and feed[index] <= at:
                index += 1
            last_frame = feed[index - 1] if index else None
            silent = last_frame is not None and at - last_frame > HEALTH_STALE_S + HEALTH_MARGIN_S
            silent_ok = status == "ok" and silent
            failed_ok = status == "ok" and recording_state == "failed"
            if silent_ok and not silent_before:
                alarms["health ok while the feed was silent"] += 1
            if failed_ok and not failed_before:
                alarms["health ok while recording failed"] += 1
            silent_before, failed_before = silent_ok, failed_ok
        return alarms

    def feed_times(self) -> list[float]:
        """When the daemon received each feed frame (epoch s), from every envelope seen."""
        return sorted(e["timestamp"] / 1000 for e in self.watchers.events.values() if e["type"].startswith("raw."))

    def _recovery(self) -> float | None:
        start = self.fault_over_at
        if start is None:
            return None
        frame = next((at for at in self.feed_times() if at >= start), None)
        healthy = next((at for at, status, _ in self.watchers.health if at >= start and status == "ok"), None)
        if frame is None or healthy is None:
            return None
        return max(frame, healthy) - start

    def cleanup(self) -> None:
        for daemon in self.daemons:
            daemon.kill()
        self.sim.kill()
        for action in reversed(self.cleanups):
            with contextlib.suppress(Exception):
                action()


# --- running scenarios ----------------------------------------------------------------------------


@dataclass
class Scenario:
    name: str
    run: Callable[[Stack], Awaitable[None]]
    stack_options: dict[str, Any]
    quick: bool
    timeout_s: float
    needs: Callable[[], str | None] | None = None  # returns why it cannot run here, or None


SCENARIOS: dict[str, Scenario] = {}


def scenario(name: str, *, quick: bool = False, timeout_s: float = 120, needs: Callable[[], str | None] | None = None,
             **stack_options: Any) -> Callable:
    def register(run: Callable[[Stack], Awaitable[None]]) -> Callable:
        SCENARIOS[name] = Scenario(name, run, stack_options, quick, timeout_s, needs)
        return run

    return register


async def run_scenario(item: Scenario) -> Row:
    reason = item.needs() if item.needs else None
    if reason:
        return Row(item.name, check=f"skipped: {reason}")
    workdir = Path(tempfile.mkdtemp(prefix=f"chaos-{item.name}-"))
    stack = Stack(item.name, workdir, **item.stack_options)
    try:
        await asyncio.wait_for(item.run(stack), item.timeout_s)
        return await asyncio.wait_for(stack.verdict(), 90)
    except Exception as exc:  # noqa: BLE001 - a scenario that breaks is a row saying so, not a crash
        stack.row.check = f"ERROR: {type(exc).__name__}: {exc}"[:300]
        return stack.row
    finally:
        await stack.watchers.stop()
        await asyncio.to_thread(stack.cleanup)
        shutil.rmtree(workdir, ignore_errors=True)


# --- small tools scenarios share -------------------------------------------------------------------


def tmpfs(stack: Stack, size: str) -> Path:
    """A real small filesystem for the data dir (root only); unmounted when the scenario ends."""
    mount = stack.workdir / "tiny"
    mount.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(mount)], check=True, capture_output=True)
    stack.cleanups.append(lambda: subprocess.run(["umount", "-l", str(mount)], capture_output=True))
    return mount


def can_mount() -> str | None:
    return None if os.geteuid() == 0 else "needs root to mount a tmpfs"
