"""The CDP source end to end: the simulator's page in a real headless Chromium, read through DevTools.

Every test runs the real assembly (`build_foundation`) with `VECTRA_SOURCE=cdp` (or `cdp,socketio`),
so the Chrome manager launches Chromium on a temporary profile, and the simulator runs as its own
process so it can be killed and brought back with the same world.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
import urllib.request
from collections import Counter, defaultdict
from pathlib import Path
from typing import Any, AsyncIterator, Callable

import pychrome
import pytest

from tests.protocol_models import model_for
from core.chrome.devtools import close_page, list_pages
from core.chrome.manager import terminate_group
from core.config import Settings
from core.dedup import FrameDeduplicator
from core.contracts.envelope import Envelope
from core.foundation import Foundation
from core.contracts.feed import FeedEvent
from core.assembly import build_foundation
from core.chrome.pychrome_tab import QuietTab
from tests.conftest import free_port
from tests.processes import SimProcess
from tests.test_chrome import no_browser_outlives_the_test  # noqa: F401 - autouse fixture

CHROMIUM = Path("/usr/bin/chromium")
NODE_CLIENT = Path(__file__).resolve().parent.parent / "node_modules" / "socket.io-client" / "dist" / "socket.io.min.js"

pytestmark = [
    pytest.mark.chromium,
    pytest.mark.timeout(60),
    pytest.mark.filterwarnings("ignore:Page.crash error:UserWarning"),
    pytest.mark.skipif(not CHROMIUM.exists(), reason="needs the Debian chromium package (/usr/bin/chromium)"),
    pytest.mark.skipif(not NODE_CLIENT.exists(), reason="needs the page's npm packages: run `npm ci` at the repo root"),
]


class Collector:
    """A bus subscriber keeping every envelope as the wire would carry it."""

    def __init__(self) -> None:
        self.events: list[dict[str, Any]] = []

    def deliver(self, envelope: Envelope) -> None:
        self.events.append(envelope.as_dict())

    def of_type(self, channel: str) -> list[dict[str, Any]]:
        return [event for event in self.events if event["type"] == channel]

    def count(self, channel: str) -> int:
        return sum(1 for event in self.events if event["type"] == channel)


def stack_settings(tmp_path: Path, sim: SimProcess, source: str = "cdp", **extra: Any) -> Settings:
    values: dict[str, Any] = {
        "source": source,
        "data_dir": tmp_path / "data",
        "chrome_profile": tmp_path / "profile",
        "cdp_port": free_port(),
        "game_url": sim.url + "/",
        "cdp_socket_match": f"127.0.0.1:{sim.port}/socket.io",
        "chrome_headless": True,
        "feed_url": sim.url,
        "http_port": free_port(),
        "zmq_pub": f"tcp://127.0.0.1:{free_port()}",
        "zmq_router": f"tcp://127.0.0.1:{free_port()}",
        "reconnect_initial_s": 0.1,
        "reconnect_max_s": 1.0,
        "stale_after_s": 3.0,
        "cdp_silence_reload_s": 3.0,
        **extra,
    }
    return Settings(**values)


@contextlib.asynccontextmanager
async def running(settings: Settings) -> AsyncIterator[tuple[Foundation, Collector]]:
    """The daemon's foundation in this process; every browser it started is killed on the way out."""
    foundation = build_foundation(settings)
    collector = Collector()
    foundation.bus.subscribe(collector)
    chrome = next(component for component in foundation.components if component.name == "chrome")
    await foundation.start()
    try:
        yield foundation, collector
    finally:
        pids = {event["data"]["pid"] for event in collector.of_type("chrome.status") if event["data"]["pid"]}
        await foundation.stop()
        for pid in pids | ({chrome.pid} if chrome.pid else set()):
            terminate_group(pid, grace_s=1)


async def wait_until(condition: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:g} s waiting for {what}")
        await asyncio.sleep(0.05)


def emitted(sim: SimProcess) -> list[dict[str, Any]]:
    with urllib.request.urlopen(sim.url + "/admin/emitted", timeout=5) as reply:
        return json.loads(reply.read())


def frame_identity(event: dict[str, Any]) -> tuple:
    payload = event["data"]["payload"]
    name = event["type"].removeprefix("raw.")
    return name, payload.get("gameId"), payload.get("tickCount", payload.get("tickIndex")), payload.get("cooldownTimer")


def assert_frames_are_a_slice_of_emitted(events: list[dict[str, Any]], sim: SimProcess) -> None:
    """The published frames are exactly the simulator's emitted frames from the first one seen: none lost,
    none twice, same order."""
    seen = [frame_identity(event) for event in game_frames(events)]
    log = [
        (entry["event"], entry["gameId"], entry["tickCount"], entry["cooldownTimer"])
        for entry in emitted(sim)
        if entry["event"] in ("gameStateUpdate", "standard/newTrade")
    ]
    logged = set(log)
    seen = seen[next(i for i, frame in enumerate(seen) if frame in logged):]  # the log keeps the last 10 000
    first = log.index(seen[0])
    expected = log[first:first + len(seen)]
    differ = next((i for i, (a, b) in enumerate(zip(seen, expected)) if a != b), None)
    context = "" if differ is None else (
        f" (from index {differ}: published {seen[differ:differ + 4]}, emitted {expected[differ:differ + 4]},"
        f" published later: {[frame for frame in expected[differ:differ + 4] if frame in seen[differ:]]})"
    )
    assert seen == expected, "published frames must be the emitted ones, all, once, in order" + context


def game_frames(events: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [e for e in events if e["type"] in ("raw.gameStateUpdate", "raw.standard/newTrade")]


def assert_every_tick_accounted(events: list[dict[str, Any]]) -> int:
    """Each finished game: every tick from its start to its end published once, or inside a `game.gap`."""
    ticks: dict[str, list[int]] = defaultdict(list)
    gaps: dict[str, set[int]] = defaultdict(set)
    starts, ends = {}, {}
    for event in events:
        game, data = event["gameId"], event["data"]
        if event["type"] == "game.tick" and data["phase"] in ("ACTIVE", "RUGGED") and data["tickCount"] is not None:
            ticks[game].append(data["tickCount"])
        elif event["type"] == "game.gap":
            gaps[game].update(range(data["fromTick"], data["toTick"] + 1))
        elif event["type"] == "game.start":
            starts[game] = data["tick"]
        elif event["type"] == "game.end":
            ends[game] = data["finalTick"]
    checked = 0
    for game, final in ends.items():
        if game not in starts:
            continue
        # the rug frame repeats the last tick with rugged=true: one ACTIVE and one RUGGED copy at most
        duplicates = [tick for tick, n in Counter(ticks[game]).items() if n > 2]
        assert not duplicates, f"game {game}: ticks published more than once: {duplicates}"
        covered = set(ticks[game]) | gaps[game]
        missing = sorted(set(range(starts[game], final + 1)) - covered)
        assert not missing, f"game {game}: ticks neither published nor declared a gap: {missing}"
        checked += 1
    return checked


def assert_valid_envelopes(events: list[dict[str, Any]]) -> None:
    seqs = [event["seq"] for event in events]
    assert seqs == list(range(seqs[0], seqs[0] + len(seqs))), "seq must grow by exactly one"
    for event in events:
        model = model_for(event["type"])
        if model is not None:  # other parts' channels are checked by the protocol test
            model.model_validate(event["data"])


@pytest.fixture
def sim():
    with SimProcess(speed=20, seed=5, max_ticks=40) as process:
        yield process


async def test_cdp_source_delivers_every_emitted_frame_in_order(tmp_path, sim):
    settings = stack_settings(tmp_path, sim)
    async with running(settings) as (foundation, collector):
        await wait_until(lambda: collector.count("game.end") >= 2, 40, "two whole games through the browser")
        events = list(collector.events)
    assert_frames_are_a_slice_of_emitted(events, sim)
    assert all(event["source"] == "cdp" for event in events)
    assert collector.count("game.tick") > 100 and collector.count("player.trade") > 0
    assert assert_every_tick_accounted(events) >= 1
    assert_valid_envelopes(events)
    connected = [e for e in collector.of_type("connection.status") if e["data"]["state"] == "connected"]
    assert connected
    # The socket's URL is known when Vectra saw the page open it; a socket the page opened before
    # Vectra attached (the browser was slow to answer on the CDP port) is adopted without one.
    first = connected[0]["data"]
    if first["url"] is None:
        assert "adopted a game socket opened before Vectra attached" in first["reason"]
    else:
        assert f"127.0.0.1:{sim.port}/socket.io" in first["url"]
    chrome = collector.of_type("chrome.status")
    assert chrome[-1]["data"]["state"] == "stopped"
    assert any(e["data"]["state"] == "running" and e["data"]["tab_url"] == sim.url + "/" for e in chrome)


async def frames_after_reconnect(collector: Collector, mark: int, what: str) -> None:
    """Wait for the CDP source to report `connected` after `mark`, then for frames on that connection."""

    def reconnected_at() -> int | None:
        return next(
            (i for i in range(mark, len(collector.events))
             if collector.events[i]["type"] == "connection.status" and collector.events[i]["source"] == "cdp"
             and collector.events[i]["data"]["state"] == "connected"),
            None,
        )

    statuses = lambda: [(e["data"]["state"], e["data"]["reason"]) for e in collector.events[mark:]  # noqa: E731
                        if e["type"] in ("connection.status", "chrome.status")]
    try:
        await wait_until(lambda: reconnected_at() is not None, 20, f"the browser feed to reconnect after {what}")
    except AssertionError as exc:
        raise AssertionError(f"{exc}; statuses since: {statuses()}") from None
    start = reconnected_at()
    await wait_until(
        lambda: sum(1 for e in collector.events[start:] if e["type"] == "raw.gameStateUpdate" and e["source"] == "cdp") >= 20,
        20,
        f"frames again after {what}",
    )


async def crash_renderer(port: int) -> None:
    """`Page.crash` on the game tab, through a DevTools session of the test's own."""
    target = next(page for page in await list_pages(port, 5) if page["url"].startswith("http"))
    tab = QuietTab(**target)
    await asyncio.to_thread(tab.start)
    try:
        with contextlib.suppress(pychrome.PyChromeException):
            await asyncio.to_thread(tab.call_method, "Page.crash", _timeout=1)
    finally:
        await asyncio.to_thread(tab.stop)


async def test_stream_comes_back_after_every_failure(tmp_path, sim):
    settings = stack_settings(tmp_path, sim)
    async with running(settings) as (foundation, collector):
        chrome = next(component for component in foundation.components if component.name == "chrome")

        async def resumes(what: str) -> None:
            await frames_after_reconnect(collector, len(collector.events), what)

        await frames_after_reconnect(collector, 0, "start-up")
        sim.kill()
        await asyncio.sleep(1)
        sim.start()
        await resumes("the simulator came back")

        first_pid = chrome.pid
        terminate_group(first_pid, grace_s=0)
        await wait_until(lambda: chrome.pid not in (None, first_pid), 20, "the manager to relaunch Chromium")
        await resumes("Chromium was killed")

        await crash_renderer(settings.cdp_port)
        await resumes("the renderer crashed")

        game_tab = next(page for page in await list_pages(settings.cdp_port, 5) if page["url"].startswith("http"))
        await close_page(settings.cdp_port, game_tab["id"], 5)
        await resumes("the tab was closed")
        await wait_until(lambda: collector.count("game.end") >= 1, 10, "a game end")
        events = list(collector.events)

    reasons = [e["data"]["reason"] or "" for e in events if e["type"] == "connection.status"]
    assert any("renderer crashed" in reason for reason in reasons)
    assert any("browser is gone" in reason for reason in reasons), reasons
    assert any("detached (target_closed)" in reason or "game tab is gone" in reason for reason in reasons), reasons
    assert any(e["data"]["state"] == "crashed" for e in events if e["type"] == "chrome.status")
    assert_every_tick_accounted(events)
    assert_valid_envelopes(events)


@pytest.fixture
def slow_sim():
    """2x the real rate: the two paths then differ by less than one frame interval, as they do live."""
    with SimProcess(speed=2, seed=9, max_ticks=16) as process:
        yield process


async def test_two_sources_give_one_stream_when_one_path_dies(tmp_path, slow_sim):
    """Both paths carry the same frames before and after each fault (the deduplicator drops one copy
    of each, which is what the waits count); which copy is published first is a race either may win."""
    sim = slow_sim
    settings = stack_settings(tmp_path, sim, source="cdp,socketio")
    async with running(settings) as (foundation, collector):
        chrome = next(component for component in foundation.components if component.name == "chrome")
        await wait_until(lambda: foundation.dedup.dropped > 50, 30, "both sources delivering")
        await wait_until(lambda: (foundation.normalizer.game and (foundation.normalizer.game.last_tick or 0) > 5), 20,
                         "the middle of a game")
        first_pid = chrome.pid
        terminate_group(first_pid, grace_s=0)  # the browser path dies mid-game
        await wait_until(lambda: chrome.pid not in (None, first_pid), 20, "the manager to relaunch Chromium")
        mark = foundation.dedup.dropped
        await wait_until(lambda: foundation.dedup.dropped > mark + 50, 20, "the browser path to carry frames again")
        foundation.sources[1].reconnect_now()  # now the direct path drops for a moment
        mark = foundation.dedup.dropped
        await wait_until(lambda: foundation.dedup.dropped > mark + 50, 20, "the direct path to carry frames again")
        ended = collector.count("game.end")
        await wait_until(lambda: collector.count("game.end") > ended, 30, "the game to end")
        events = list(collector.events)

    assert not [e for e in events if e["type"] == "game.gap"], "one live path must leave no gap"
    assert assert_every_tick_accounted(events) >= 1
    trades = [e["data"]["id"] for e in events if e["type"] == "player.trade"]
    assert len(trades) == len(set(trades)), "a trade must be published once"
    assert_frames_are_a_slice_of_emitted(events, sim)
    assert_valid_envelopes(events)


def test_each_copy_is_counted_per_source_so_a_servers_own_repeat_survives():
    """A frame the server really sends twice is published twice; the other path's copies never are."""
    tick = FeedEvent("gameStateUpdate", {"gameId": "g1", "tickCount": 7, "active": True, "rugged": False, "price": 1.2})
    chat = FeedEvent("newChatMessage", {"text": "gm"})
    dedup = FrameDeduplicator(window_s=30)
    admitted = [dedup.admit(source, event) for source, event in [
        ("socketio", tick), ("cdp", tick),            # one broadcast, two paths: once
        ("cdp", chat), ("cdp", chat),                 # the server repeats itself: twice
        ("socketio", chat), ("socketio", chat),       # ...and the other path's two copies: dropped
    ]]
    assert admitted == [True, False, True, True, False, False]
    assert dedup.dropped == 3
