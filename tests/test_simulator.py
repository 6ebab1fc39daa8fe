"""The simulator must behave like the real rugs.fun feed, since every other part is tested against it.

Everything runs over real loopback sockets with the real python-socketio client, at high clock speeds
so that whole game cycles fit in a few seconds.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import re
import socket
import subprocess
import sys
import time

import aiohttp
import pytest
import socketio

from core.sim.server import SimOptions, Simulator
from core.sim.world import World
from core.sim.frames import render
from core.sim.world import COOLDOWN_MS

MINIMAL_KEYS = {"gameId", "cooldownTimer", "cooldownPaused", "allowPreRoundBuys", "leaderboard",
                "connectedPlayers", "provablyFair"}


def now_ms() -> int:
    return int(time.time() * 1000)


class Client(socketio.AsyncClient):
    """Records every event, and every raw Engine.IO message, which is the only place broken packets show."""

    def __init__(self):
        super().__init__(reconnection=False)
        self.events: list[tuple[float, str, tuple]] = []
        self.raw: list[str | bytes] = []
        self.disconnects: list[object] = []
        self.on("*", lambda event, *args: self.events.append((time.monotonic(), event, args)))
        self.on("disconnect", lambda reason=None: self.disconnects.append(reason))

    async def _handle_eio_message(self, data):
        self.raw.append(data)
        with contextlib.suppress(ValueError):  # broken packets make the stock client raise
            await super()._handle_eio_message(data)

    def frames(self) -> list[dict]:
        return [args[0] for _, event, args in self.events if event == "gameStateUpdate"]

    def ticks(self) -> list[dict]:
        return [f for f in self.frames() if f.get("active") and "gameHistory" not in f]

    async def wait_for(self, predicate, timeout: float = 8.0) -> None:
        deadline = time.monotonic() + timeout
        while not predicate():
            assert time.monotonic() < deadline, "timed out waiting for frames"
            await asyncio.sleep(0.02)


@contextlib.asynccontextmanager
async def simulator(**overrides):
    sim = Simulator(SimOptions(port=0, **overrides))
    await sim.start()
    try:
        yield sim
    finally:
        await sim.stop()


@contextlib.asynccontextmanager
async def client(sim: Simulator):
    c = Client()
    await c.connect(sim.url, transports=["websocket"])
    try:
        yield c
    finally:
        if c.connected:
            await c.disconnect()


async def admin(sim: Simulator, method: str, path: str, body=None, raw: bytes | None = None):
    async with aiohttp.ClientSession() as session:
        kwargs = {"data": raw} if raw is not None else {"json": body} if body is not None else {}
        async with session.request(method, sim.url + path, **kwargs) as r:
            return r.status, await r.json()


def active_anchor(speed: float, into_game_ms: float = 300) -> int:
    """An anchor that puts game 0 `into_game_ms` (wall) past its first tick right now."""
    return now_ms() - int(COOLDOWN_MS / speed + into_game_ms)


def long_game_seed(min_ticks: int) -> int:
    return next(s for s in range(1, 500) if World(s, 0).game(0).rug_tick >= min_ticks)


# --- the world, without sockets ---------------------------------------------------------------------
def test_world_is_a_pure_function_of_seed_and_anchor():
    a, b = World(7, 1_000_000, speed=5), World(7, 1_000_000, speed=5)
    for index in (-3, 0, 4):
        assert a.game(index).game_id == b.game(index).game_id
        assert a.game(index).prices == b.game(index).prices
    assert World(8, 1_000_000).game(0).game_id != a.game(0).game_id
    assert a.game(1).start_ms == a.game(0).start_ms + a.game(0).duration_ms
    late = a.game(3).start_ms + 123
    assert [p for p, _, _ in a.due((0, -1), late)][-1] == a.cursor_at(late)


def test_rugs_are_about_half_a_percent_per_tick_and_capped_by_max_ticks():
    world, capped = World(3, 0), World(3, 0, max_ticks=9)
    ticks = [world.game(i).rug_tick for i in range(200)]
    assert 120 < sum(ticks) / len(ticks) < 300
    assert max(capped.game(i).rug_tick for i in range(50)) == 9


def test_genesis_frames_are_big_and_minimal_frames_are_minimal():
    world = World(1, 0, max_ticks=30)
    game = world.game(2)
    shapes = {}
    for event in game.events:
        name, args = render(world, game, event)
        if event.kind == "cooldown":
            shapes.setdefault(event.value, args[0])
    assert len(json.dumps(shapes[15000])) > 100_000
    assert set(shapes[14900]) == MINIMAL_KEYS
    assert "tickCount" in shapes[10000] and shapes[10000]["allowPreRoundBuys"] is True
    assert 2_000 < len(json.dumps(shapes[14900])) < 10_000


# --- the feed over real sockets ---------------------------------------------------------------------
async def test_two_full_cycles_look_like_the_real_feed():
    speed = 20
    async with simulator(speed=speed, max_ticks=8, seed=3, anchor_ms=now_ms() + 300) as sim, client(sim) as c:
        world = sim.world
        ids = [world.game(i).game_id for i in range(3)]
        await c.wait_for(lambda: any(f["gameId"] == ids[2] for f in c.frames()))
        frames = c.frames()
        frames = frames[next(n for n, f in enumerate(frames) if f["gameId"] == ids[0]):]  # skip game -1
        assert frames[0]["cooldownTimer"] == 15000
        for n in (0, 1):
            check_cycle([f for f in frames if f["gameId"] == ids[n]],
                        next(f for f in frames if f["gameId"] == ids[n + 1]))
        trades = [args for _, event, args in c.events if event == "standard/newTrade"]
        assert trades and all(len(a) == 2 and a[0]["__trace"] is True for a in trades)
        assert {t[1]["type"] for t in trades} <= {"buy", "sell", "short_open", "short_close"}
        assert all(t[1]["gameId"] in ids + [world.game(-1).game_id] for t in trades)


def check_cycle(frames: list[dict], next_genesis: dict) -> None:
    genesis, cooldown = frames[0], [f for f in frames if not f.get("active")]
    assert "gameHistory" in genesis and genesis["active"] is False and genesis["tickCount"] == 0
    assert [f["cooldownTimer"] for f in cooldown] == list(range(15000, 0, -100))
    assert all(f["allowPreRoundBuys"] is (f["cooldownTimer"] <= 10000) for f in cooldown)
    minimal = [f for f in cooldown if "active" not in f]
    assert minimal and all(set(f) == MINIMAL_KEYS for f in minimal)
    assert "active" in next(f for f in cooldown if f["cooldownTimer"] == 10000)

    active = frames[len(cooldown):]
    first = active[0]
    assert (first["active"], first["tickCount"], first["price"], first["cooldownTimer"]) == (True, 0, 1, 0)
    rug, history = active[-2], active[-1]
    ticks = active[:-1]
    assert [f["tickCount"] for f in ticks] == list(range(len(ticks)))
    for f in ticks:
        pp = f["partialPrices"]
        assert pp["endTick"] == f["tickCount"] and pp["startTick"] == max(0, f["tickCount"] - 4)
        assert pp["values"][str(f["tickCount"])] == f["price"]
        assert f["rugged"] is (f is rug)
    assert rug["active"] is True and rug["price"] < 0.01
    assert history["rugged"] is True and history["tickCount"] == rug["tickCount"] and "gameHistory" in history
    assert history["gameHistory"][0]["id"] == rug["gameId"]

    assert next_genesis["cooldownTimer"] == 15000 and next_genesis["rugged"] is False
    ended = next_genesis["gameHistory"][0]
    assert ended["id"] == rug["gameId"]
    assert len(ended["prices"]) == rug["tickCount"] + 1 and ended["prices"][-1] == rug["price"]
    seed = ended["provablyFair"]["serverSeed"]
    assert hashlib.sha256(seed.encode()).hexdigest() == rug["provablyFair"]["serverSeedHash"]
    assert len(json.dumps(next_genesis)) > 100_000


async def test_same_seed_and_anchor_give_identical_feeds():
    anchor = active_anchor(20, into_game_ms=-200)
    async with simulator(speed=20, seed=5, anchor_ms=anchor, max_ticks=40) as a, \
            simulator(speed=20, seed=5, anchor_ms=anchor, max_ticks=40) as b, client(a) as ca, client(b) as cb:
        # enough ticks from both, however slowly a loaded machine delivers them
        await ca.wait_for(lambda: len(ca.ticks()) > 60, timeout=20)
        await cb.wait_for(lambda: len(cb.ticks()) > 60, timeout=20)
    seq_a = [(f["gameId"], f["tickCount"], f["price"]) for f in ca.ticks()]
    seq_b = [(f["gameId"], f["tickCount"], f["price"]) for f in cb.ticks()]
    common = set(seq_a) & set(seq_b)
    assert len(common) > 40
    assert [x for x in seq_a if x in common] == [x for x in seq_b if x in common]


async def test_restart_resumes_the_same_game_later():
    seed, speed = long_game_seed(150), 20
    anchor = active_anchor(speed)
    async with simulator(speed=speed, seed=seed, anchor_ms=anchor) as sim, client(sim) as c:
        await c.wait_for(lambda: len(c.ticks()) > 5)
    before = c.ticks()[-1]
    await asyncio.sleep(0.3)
    async with simulator(speed=speed, seed=seed, anchor_ms=anchor) as sim, client(sim) as c:
        await c.wait_for(lambda: len(c.ticks()) > 5)
    after = c.ticks()[0]
    assert after["gameId"] == before["gameId"]
    assert after["tickCount"] > before["tickCount"] + 10  # the hole of ticks missed while down


async def test_admin_state_and_emitted_log():
    async with simulator(speed=20, seed=long_game_seed(100), anchor_ms=active_anchor(20)) as sim, client(sim) as c:
        await c.wait_for(lambda: len(c.ticks()) > 3)
        status, state = await admin(sim, "GET", "/admin/state")
        assert status == 200 and state["phase"] == "ACTIVE" and state["clients"] == 1
        assert {"gameId", "tickCount", "price", "frames_emitted", "games_completed", "seed", "speed"} <= set(state)
        status, log = await admin(sim, "GET", "/admin/emitted?since=0")
        assert log[0]["n"] == 1 and {"event", "gameId", "tickCount", "cooldownTimer", "ts_ms"} <= set(log[0])
        _, tail = await admin(sim, "GET", f"/admin/emitted?since={log[-1]['n']}")
        assert all(e["n"] > log[-1]["n"] for e in tail)


# --- faults -----------------------------------------------------------------------------------------
async def test_drop_disconnects_and_refuses_for_a_while():
    async with simulator(speed=20, anchor_ms=active_anchor(20)) as sim, client(sim) as c:
        await c.wait_for(lambda: len(c.frames()) > 3)
        status, reply = await admin(sim, "POST", "/admin/fault", {"kind": "drop", "seconds": 1})
        assert status == 200 and reply["ok"] is True and reply["clients"] == 1
        await c.wait_for(lambda: not c.connected, timeout=2)
        refused = Client()
        with pytest.raises(socketio.exceptions.ConnectionError):
            await refused.connect(sim.url, transports=["websocket"])
        await asyncio.sleep(1.0)
        async with client(sim) as again:
            await again.wait_for(lambda: len(again.frames()) > 3)


async def test_silence_skips_frames_instead_of_queueing_them():
    async with simulator(speed=20, seed=long_game_seed(200), anchor_ms=active_anchor(20)) as sim, client(sim) as c:
        await c.wait_for(lambda: len(c.ticks()) > 3)
        await admin(sim, "POST", "/admin/fault", {"kind": "silence", "seconds": 0.5})
        quiet_from = time.monotonic()
        await asyncio.sleep(0.8)
    during = [t for t, e, _ in c.events if quiet_from + 0.05 < t < quiet_from + 0.45]
    assert not during
    ticks = [f["tickCount"] for f in c.ticks()]
    gaps = [b - a for a, b in zip(ticks, ticks[1:], strict=False)]
    assert max(gaps) >= 30 and min(gaps) == 1  # ~40 ticks (0.5 s at 12.5 ms) never sent


async def test_broken_packets_arrive_raw_and_the_connection_survives():
    async with simulator(speed=20, anchor_ms=active_anchor(20)) as sim, client(sim) as c:
        await c.wait_for(lambda: len(c.frames()) > 3)
        for kind in ("malformed", "truncated", "binary"):
            status, _ = await admin(sim, "POST", "/admin/fault", {"kind": kind})
            assert status == 200
        await c.wait_for(lambda: any(isinstance(r, bytes) for r in c.raw))
        assert '2["gameStateUpdate", {"broken' in c.raw
        truncated = [r for r in c.raw if isinstance(r, str) and r.startswith('2["gameStateUpdate",{"active"')
                     and not r.endswith("}]")]
        assert truncated
        count = len(c.frames())
        await c.wait_for(lambda: len(c.frames()) > count + 3)
        assert c.connected


async def test_oversized_frame_is_a_valid_packet_bigger_than_asked():
    async with simulator(speed=20, anchor_ms=active_anchor(20)) as sim, client(sim) as c:
        await c.wait_for(lambda: len(c.frames()) > 3)
        await admin(sim, "POST", "/admin/fault", {"kind": "oversized", "bytes": 300_000})
        await c.wait_for(lambda: any("padding" in f for f in c.frames()))
        big = next(f for f in c.frames() if "padding" in f)
        assert len(json.dumps(big)) > 300_000 and big["active"] is True


async def test_duplicate_sends_frames_twice():
    async with simulator(speed=20, anchor_ms=active_anchor(20)) as sim, client(sim) as c:
        await c.wait_for(lambda: len(c.frames()) > 3)
        await admin(sim, "POST", "/admin/fault", {"kind": "duplicate", "count": 3})
        count = len(c.frames())
        await c.wait_for(lambda: len(c.frames()) > count + 12)
    frames = c.frames()
    twins = [n for n in range(1, len(frames)) if frames[n] == frames[n - 1]]
    assert len(twins) == 3 and all(b - a == 2 for a, b in zip(twins, twins[1:], strict=False))


async def test_reorder_swaps_pairs_of_ticks():
    seed = long_game_seed(200)
    async with simulator(speed=20, seed=seed, anchor_ms=active_anchor(20)) as sim, client(sim) as c:
        await c.wait_for(lambda: len(c.ticks()) > 3)
        await admin(sim, "POST", "/admin/fault", {"kind": "reorder", "count": 2})
        count = len(c.ticks())
        await c.wait_for(lambda: len(c.ticks()) > count + 10)
    ticks = [f["tickCount"] for f in c.ticks()]
    backwards = [n for n in range(1, len(ticks)) if ticks[n] == ticks[n - 1] - 1]
    assert len(backwards) == 2
    assert sorted(ticks) == list(range(ticks[0], ticks[0] + len(ticks)))  # nothing lost, nothing extra


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (b"{nope", "not valid JSON"),
        ([1, 2], "JSON object"),
        ({"kind": "meteor"}, "unknown or missing kind"),
        ({"seconds": 1}, "unknown or missing kind"),
        ({"kind": "silence"}, "needs 'seconds'"),
        ({"kind": "drop", "seconds": -1}, "between"),
        ({"kind": "drop", "seconds": "5"}, "must be a number"),
        ({"kind": "duplicate", "count": 1.5}, "must be an integer"),
        ({"kind": "reorder", "count": True}, "must be an integer"),
        ({"kind": "malformed", "seconds": 1}, "unexpected field"),
    ],
)
async def test_bad_fault_requests_get_a_clear_400(body, message):
    async with simulator(speed=20) as sim:
        raw = body if isinstance(body, bytes) else None
        status, reply = await admin(sim, "POST", "/admin/fault", None if raw else body, raw=raw)
        assert status == 400 and message in reply["error"]
        status, reply = await admin(sim, "GET", "/admin/emitted?since=abc")
        assert status == 400 and "since" in reply["error"]


async def test_scheduled_faults_fire_on_their_own():
    async with simulator(speed=20, anchor_ms=active_anchor(20), fault_every_s=0.2,
                         fault_kinds=("malformed",)) as sim, client(sim) as c:
        await c.wait_for(lambda: c.raw.count('2["gameStateUpdate", {"broken') >= 2, timeout=3)


async def test_cli_prints_where_it_listens_and_stops_on_sigterm():
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "vectra_cli", "sim", "--port", "0", "--speed", "20", "--seed", "4",
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        line = (await asyncio.wait_for(proc.stderr.readline(), 10)).decode()
        assert re.fullmatch(r"vectra sim: listening on http://127\.0\.0\.1:\d+ \(seed 4, speed 20\)\n", line)
    finally:
        proc.terminate()
        assert await asyncio.wait_for(proc.wait(), 10) == 0


def test_cli_on_a_taken_port_says_how_to_choose_another():
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        ran = subprocess.run([sys.executable, "-m", "vectra_cli", "sim", "--port", str(port)], capture_output=True,
                             text=True, timeout=30)
    assert ran.returncode == 1
    assert f"cannot listen on 127.0.0.1:{port}" in ran.stderr and "--port (0: any free port" in ran.stderr
