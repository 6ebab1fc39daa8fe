"""The simulator's trading face: who each connection is, the order events, their acks and ack faults,
and the admin endpoints that show the books.

A connection that gives `auth={"player": "<name>"}` is that player (several connections may share
one); an anonymous one trades as a guest player of its own from its first order, unless the server
requires login. Acks go out after the order's frames, like the real server's; on demand they are
dropped (the order still executes) or held back, or the order's own trade frame is lost on the way
while everything else about it goes out (an ack the trade never reached).
"""

from __future__ import annotations

import asyncio
import json
from typing import TYPE_CHECKING

import socketio
from aiohttp import web

from core.sim import account_frames
from core.sim.faults import FaultError, parse_ack_fault
from core.sim.orders import ORDER_EVENTS, OrderDesk, Outgoing
from core.sim.world import Event, Game, position_at

if TYPE_CHECKING:
    from core.sim.server import Simulator

CONNECTED_WAIT_S = 2.0


def room(name: str) -> str:
    return "player:" + name


class Trading:
    def __init__(self, sim: Simulator):
        options = sim.options
        self.sim = sim
        self.desk = OrderDesk(options.seed, options.starting_cash, options.require_login)
        self.players: dict[str, str] = {}  # socket.io sid -> player name
        self.drop_acks = 0
        self.delay_ms = 0.0
        self.drop_trades = 0
        self._greetings: set[asyncio.Task] = set()
        for event in ORDER_EVENTS:
            sim.sio.on(event, self._handler(event))
        router = sim.app.router
        router.add_get("/admin/players", self._get_players)
        router.add_get("/admin/players/{name}", self._get_player)
        router.add_get("/admin/acks", self._get_acks)
        router.add_post("/admin/acks", self._post_acks)

    def start(self, world, sim_ms: float) -> None:
        pos = position_at(world, sim_ms)
        self.desk.start_at(pos.game, pos.phase, pos.tick, pos.price)

    # --- connections ------------------------------------------------------------------------------
    async def connect(self, sid: str, auth: object) -> None:
        """Log the connection in; bad auth refuses it with the reason."""
        try:
            book = self.desk.login(auth)
        except ValueError as e:
            raise socketio.exceptions.ConnectionRefusedError(str(e)) from None
        if book is None:
            return
        await self._bind(sid, book.name)
        task = asyncio.create_task(self._greet(sid, self.desk.greeting(book)))
        self._greetings.add(task)
        task.add_done_callback(self._greetings.discard)

    def stop(self) -> None:
        for task in self._greetings:
            task.cancel()

    def disconnect(self, sid: str) -> None:
        self.players.pop(sid, None)

    async def _bind(self, sid: str, name: str) -> None:
        self.players[sid] = name
        await self.sim.sio.enter_room(sid, room(name))

    async def _greet(self, sid: str, frames: list[Outgoing]) -> None:
        """Sent once the connection is complete: emits before that would never reach the client."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + CONNECTED_WAIT_S
        while not self.sim.sio.manager.is_connected(sid, "/"):
            if loop.time() > deadline:
                return
            await asyncio.sleep(0.005)
        for frame in frames:
            await self.sim.sio.emit(frame.event, emit_data(frame.args), to=sid)
            self.record(frame)

    # --- the world's broadcast --------------------------------------------------------------------
    async def observe(self, game: Game, event: Event) -> None:
        for frame in self.desk.observe(game, event):
            await self.send(frame)

    # --- orders -----------------------------------------------------------------------------------
    def _handler(self, event: str):
        async def handle(sid: str, *args):
            book = await self._book_of(sid)
            self.sim.record(f"received/{event}", self.desk.game_id, self.desk.tick, None, book.name if book else None)
            frames, ack = self.desk.order(event, book, args)
            for frame in self._lose_trade(event, frames, book.name if book else None):
                await self.send(frame)
            return await self._ack(event, ack, book.name if book else None)

        return handle

    async def _book_of(self, sid: str):
        name = self.players.get(sid)
        if name is not None:
            return self.desk.books[name]
        if self.desk.require_login:
            return None
        guest = self.desk.guest()
        await self._bind(sid, guest.name)
        return guest

    def _lose_trade(self, event: str, frames: list[Outgoing], player: str | None) -> list[Outgoing]:
        """With `drop_trades` pending, an order's `standard/newTrade` reaches no one; the order stands and
        its `playerUpdate` and ack still go out. An order that makes no trade (a side bet, a refusal)
        uses none up."""
        if self.drop_trades <= 0 or not any(frame.event == "standard/newTrade" for frame in frames):
            return frames
        self.drop_trades -= 1
        self.sim.record(f"trade-dropped/{event}", self.desk.game_id, self.desk.tick, None, player)
        return [frame for frame in frames if frame.event != "standard/newTrade"]

    async def _ack(self, event: str, ack: dict, player: str | None):
        if self.drop_acks > 0:
            self.drop_acks -= 1
            self.sim.record(f"ack-dropped/{event}", self.desk.game_id, self.desk.tick, None, player)
            return self.sim.sio.not_handled  # python-socketio sends no ack for this value
        if self.delay_ms:
            await asyncio.sleep(self.delay_ms / 1000)
        self.sim.record(f"ack/{event}", self.desk.game_id, self.desk.tick, None, player)
        return ack

    async def send(self, frame: Outgoing) -> None:
        to = {"room": room(frame.to)} if frame.to else {}
        await self.sim.sio.emit(frame.event, emit_data(frame.args), **to)
        self.record(frame)

    def record(self, frame: Outgoing) -> None:
        payload = frame.args[-1]
        self.sim.record(frame.event, payload.get("gameId"), payload.get("tickIndex"), None, frame.to)

    # --- admin http -------------------------------------------------------------------------------
    def _describe(self, name: str) -> dict:
        book = self.desk.books[name]
        return {
            "name": name,
            "id": book.id,
            "username": book.username,
            "guest": book.guest,
            "connections": sum(1 for player in self.players.values() if player == name),
            "lamports": book.integers(),
            "playerUpdate": account_frames.player_update(book),
        }

    async def _get_players(self, request: web.Request) -> web.Response:
        return web.json_response([self._describe(name) for name in self.desk.books])

    async def _get_player(self, request: web.Request) -> web.Response:
        name = request.match_info["name"]
        if name not in self.desk.books:
            return web.json_response({"error": f"no player named {name!r}"}, status=404)
        return web.json_response(self._describe(name))

    async def _get_acks(self, request: web.Request) -> web.Response:
        return web.json_response(self._ack_faults())

    async def _post_acks(self, request: web.Request) -> web.Response:
        try:
            values = parse_ack_fault(await request.json())
        except (json.JSONDecodeError, UnicodeDecodeError):
            return web.json_response({"error": "body is not valid JSON"}, status=400)
        except FaultError as e:
            return web.json_response({"error": str(e)}, status=400)
        self.drop_acks = values.get("drop", self.drop_acks)
        self.delay_ms = values.get("delay_ms", self.delay_ms)
        self.drop_trades = values.get("drop_trades", self.drop_trades)
        return web.json_response({"ok": True, **self._ack_faults()})

    def _ack_faults(self) -> dict:
        return {"drop": self.drop_acks, "delay_ms": self.delay_ms, "drop_trades": self.drop_trades}


def emit_data(args: tuple):
    """python-socketio sends a tuple as several arguments, anything else as one."""
    return args if len(args) > 1 else args[0]
