"""A Socket.IO server that plays the simulated world the way the rugs.fun backend would.

The emit loop owns no game state: it keeps only a cursor into the world's schedule and emits whatever
became due since its last pass, so a late loop sends a burst instead of drifting, and faults only
change *how* frames leave the server, never the world.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import signal
import sys
import time
from collections import deque

import socketio
from aiohttp import web

from core.sim.faults import KINDS, Fault, FaultError, parse_fault
from core.sim.frames import render, tick_frame
from core.sim.options import SimOptions
from core.sim.page import add_page_routes
from core.sim.trading import Trading, emit_data
from core.sim.world import World, position_at

EMITTED_LOG_SIZE = 10_000
MAX_SLEEP_S = 0.05
BINARY_GARBAGE = b"\x00\xff\xfe\xfd\x80\x81garbage"
MALFORMED_PACKET = '2["gameStateUpdate", {"broken'


class Simulator:
    def __init__(self, options: SimOptions):
        World(options.seed, 0, options.speed, options.max_ticks, options.trades_per_s)  # validate early
        unknown = set(options.fault_kinds) - set(KINDS)
        if unknown or not options.fault_kinds:
            raise ValueError(f"fault kinds must be some of {', '.join(KINDS)}; got {sorted(unknown) or 'none'}")
        self.options = options
        self.port = options.port
        self.sio = socketio.AsyncServer(async_mode="aiohttp", cors_allowed_origins="*")
        self.app = web.Application()
        self.sio.attach(self.app)
        self.sio.on("connect", self._on_connect)
        self.sio.on("disconnect", self._on_disconnect)
        self.app.router.add_post("/admin/fault", self._post_fault)
        self.app.router.add_get("/admin/state", self._get_state)
        self.app.router.add_get("/admin/emitted", self._get_emitted)
        add_page_routes(self.app)
        self.trading = Trading(self)
        self.world: World | None = None
        self._clients: dict[str, str] = {}  # socket.io sid -> engine.io sid (raw sends need the latter)
        self._log: deque[dict] = deque(maxlen=EMITTED_LOG_SIZE)
        self.frames_emitted = 0
        self._refuse_until = 0.0
        self._silent_until = 0.0
        self._duplicate = 0
        self._reorder = 0
        self._held: tuple[str, tuple] | None = None
        self._runner: web.AppRunner | None = None
        self._tasks: list[asyncio.Task] = []

    @property
    def url(self) -> str:
        return f"http://{self.options.host}:{self.port}"

    # --- lifecycle --------------------------------------------------------------------------------
    async def start(self) -> None:
        o = self.options
        anchor = o.anchor_ms if o.anchor_ms is not None else int(time.time() * 1000)
        self.world = World(o.seed, anchor, o.speed, o.max_ticks, o.trades_per_s)
        self.trading.start(self.world, self._sim_now())
        self._runner = web.AppRunner(self.app, shutdown_timeout=1.0, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, o.host, o.port)
        await site.start()
        self.port = self._runner.addresses[0][1]
        self._tasks.append(asyncio.create_task(self._emit_loop(), name="sim-emit"))
        if o.fault_every_s:
            self._tasks.append(asyncio.create_task(self._fault_loop(), name="sim-faults"))
        print(f"vectra sim: listening on {self.url} (seed {o.seed}, speed {o.speed:g})", file=sys.stderr)

    async def stop(self) -> None:
        self.trading.stop()
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._tasks.clear()
        for sid in list(self._clients):
            await self.sio.disconnect(sid)
        await self.sio.shutdown()
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    # --- clock ------------------------------------------------------------------------------------
    def _sim_now(self) -> float:
        return self.world.sim_ms(time.time() * 1000)

    async def _emit_loop(self) -> None:
        world = self.world
        cursor = world.cursor_at(self._sim_now())
        while True:
            for cursor, game, event in world.due(cursor, self._sim_now()):
                await self.trading.observe(game, event)
                if time.monotonic() >= self._silent_until:
                    await self._broadcast(*render(world, game, event))
            wait_ms = (world.next_due_ms(cursor) - self._sim_now()) / world.speed
            await asyncio.sleep(min(max(wait_ms / 1000, 0), MAX_SLEEP_S))

    async def _fault_loop(self) -> None:
        """Scheduled faults use modest defaults so an unattended run keeps flowing."""
        n = 0
        while True:
            await asyncio.sleep(self.options.fault_every_s)
            kind = self.options.fault_kinds[n % len(self.options.fault_kinds)]
            await self.apply_fault(Fault(kind, seconds=1 if kind in ("drop", "silence") else 0, count=3))
            n += 1

    # --- sending ----------------------------------------------------------------------------------
    async def _broadcast(self, name: str, args: tuple) -> None:
        """Apply pending reorder/duplicate faults, which only concern gameStateUpdate frames."""
        if name != "gameStateUpdate":
            await self._send(name, args)
            return
        plain_tick = _is_plain_tick(args[0])
        if self._held is not None:
            held, self._held = self._held, None
            if plain_tick:
                await self._send(name, args)
                await self._send(*held)
                self._reorder -= 1
                return
            await self._send(*held)
        if plain_tick and self._reorder > 0:
            self._held = (name, args)
            return
        await self._send(name, args)

    async def _send(self, name: str, args: tuple) -> None:
        copies = 1
        if name == "gameStateUpdate" and self._duplicate > 0:
            self._duplicate -= 1
            copies = 2
        for _ in range(copies):
            await self.sio.emit(name, emit_data(args))
            payload = args[-1]
            self.record(name, payload.get("gameId"), payload.get("tickCount", payload.get("tickIndex")),
                        payload.get("cooldownTimer"))

    def record(self, event: str, game_id: str | None, tick: int | None, timer: int | None,
               player: str | None = None) -> None:
        """Log one frame sent (or, for `received/<order>`, `ack-dropped/<order>` and `trade-dropped/<order>`,
        one seen or held back)."""
        self.frames_emitted += 1
        self._log.append({"n": self.frames_emitted, "event": event, "gameId": game_id, "tickCount": tick,
                          "cooldownTimer": timer, "player": player, "ts_ms": time.time() * 1000})

    async def _send_raw(self, data: str | bytes, kind: str) -> None:
        """Raw Engine.IO messages bypass socket.io encoding, which is the only way to send broken packets."""
        for eio_sid in list(self._clients.values()):
            await self.sio.eio.send(eio_sid, data)
        self.record(f"fault/{kind}", None, None, None)

    # --- connections ------------------------------------------------------------------------------
    async def _on_connect(self, sid: str, environ: dict, auth: object = None) -> None:
        if time.monotonic() < self._refuse_until:
            raise socketio.exceptions.ConnectionRefusedError("simulated outage")
        await self.trading.connect(sid, auth)
        self._clients[sid] = self.sio.manager.eio_sid_from_sid(sid, "/")

    async def _on_disconnect(self, sid: str, reason: object = None) -> None:
        self._clients.pop(sid, None)
        self.trading.disconnect(sid)

    # --- faults -----------------------------------------------------------------------------------
    async def apply_fault(self, fault: Fault) -> dict:
        clients = len(self._clients)
        kind = fault.kind
        if kind == "drop":
            self._refuse_until = time.monotonic() + fault.seconds
            for sid in list(self._clients):
                await self.sio.disconnect(sid)
            self.record("fault/drop", None, None, None)
        elif kind == "silence":
            self._silent_until = time.monotonic() + fault.seconds
            self.record("fault/silence", None, None, None)
        elif kind == "malformed":
            await self._send_raw(MALFORMED_PACKET, kind)
        elif kind == "truncated":
            text = _packet_text("gameStateUpdate", self._sample_tick_frame())
            await self._send_raw(text[: len(text) // 2], kind)
        elif kind == "binary":
            await self._send_raw(BINARY_GARBAGE, kind)
        elif kind == "oversized":
            frame = {**self._sample_tick_frame(), "padding": "x" * fault.bytes}
            await self.sio.emit("gameStateUpdate", frame)
            self.record("fault/oversized", frame["gameId"], frame["tickCount"], None)
        elif kind == "duplicate":
            self._duplicate += fault.count
        elif kind == "reorder":
            self._reorder += fault.count
        return {"ok": True, "kind": kind, "clients": clients}

    def _sample_tick_frame(self) -> dict:
        """A genuine tick frame of the current game: the current tick, or tick 1 outside ACTIVE."""
        pos = position_at(self.world, self._sim_now())
        tick = pos.tick if pos.phase == "ACTIVE" else min(1, pos.game.rug_tick)
        return tick_frame(self.world, pos.game, tick)

    # --- admin http -------------------------------------------------------------------------------
    async def _post_fault(self, request: web.Request) -> web.Response:
        try:
            body = await request.json()
        except (json.JSONDecodeError, UnicodeDecodeError):
            return _bad("body is not valid JSON")
        try:
            fault = parse_fault(body)
        except FaultError as e:
            return _bad(str(e))
        return web.json_response(await self.apply_fault(fault))

    async def _get_state(self, request: web.Request) -> web.Response:
        pos = position_at(self.world, self._sim_now())
        completed = pos.game.index + (1 if pos.phase == "RUGGED" else 0)
        return web.json_response({
            "gameId": pos.game.game_id,
            "phase": pos.phase,
            "tickCount": pos.tick,
            "price": pos.price,
            "frames_emitted": self.frames_emitted,
            "clients": len(self._clients),
            "games_completed": completed,
            "seed": self.options.seed,
            "speed": self.options.speed,
            "anchor_ms": self.world.anchor_ms,
        })

    async def _get_emitted(self, request: web.Request) -> web.Response:
        try:
            since = int(request.query.get("since", "0"))
        except ValueError:
            return _bad("'since' must be an integer")
        return web.json_response([entry for entry in self._log if entry["n"] > since])


def _is_plain_tick(frame: dict) -> bool:
    return frame.get("active") is True and frame.get("rugged") is False and "gameHistory" not in frame


def _packet_text(name: str, payload: dict) -> str:
    return "2" + json.dumps([name, payload], separators=(",", ":"))


def _bad(message: str) -> web.Response:
    return web.json_response({"error": message}, status=400)


async def run_simulator(options: SimOptions) -> None:
    """Run until cancelled or SIGINT/SIGTERM; always stop cleanly so the port is released."""
    sim = Simulator(options)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError, RuntimeError):
            loop.add_signal_handler(sig, stop.set)
    await sim.start()
    try:
        await stop.wait()
    finally:
        await sim.stop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            with contextlib.suppress(NotImplementedError, RuntimeError):
                loop.remove_signal_handler(sig)
