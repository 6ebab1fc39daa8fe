"""The server's part in a player's orders: check them, move the books, say what happened.

The desk knows the game only from the frames the server is about to broadcast (`observe`), so an
order is judged against what every client has seen, never against a clock the frames lag behind. It
sends nothing itself: every call returns the frames to send, in the order the real server sends them
(the player's own traced `standard/newTrade`, then `playerUpdate`, then `gameStatePlayerUpdate`, then
the ack), and the server puts them on the sockets.
"""

from __future__ import annotations

import math
import random
import re
import time
import uuid
from dataclasses import dataclass

from core.sim import account_frames as frames
from core.sim.books import LAMPORTS, Book, OrderRefused, Sidebet
from core.sim.world import PRESALE_AT_MS, Event, Game

ORDER_EVENTS = ("buyOrder", "sellOrder", "requestSidebet", "shortOpen", "shortClose")
MIN_AMOUNT = 0.001
MAX_AMOUNT = 1_000_000_000  # SOL; beyond it lamports stop being exact in a float
SIDEBET_PAYOUT = 5
TRACEPARENT = re.compile(r"00-([0-9a-f]{32})-[0-9a-f]{16}-[0-9a-f]{2}")
PLAYER_NAME = re.compile(r"[A-Za-z0-9_-]{1,32}")
OK = {"success": True}


@dataclass(frozen=True)
class Outgoing:
    """One emit: `to` is a player's name (all of that player's connections) or None (everyone)."""

    event: str
    args: tuple
    to: str | None


def failure(refused: OrderRefused) -> dict:
    return {"success": False, "reason": refused.reason, "message": refused.message}


class OrderDesk:
    def __init__(self, seed: int, starting_cash_sol: float, require_login: bool):
        if not math.isfinite(starting_cash_sol) or starting_cash_sol < 0:
            raise ValueError(f"starting cash must be a number of SOL >= 0, got {starting_cash_sol!r}")
        self.starting_cash = round(starting_cash_sol * LAMPORTS)
        self.require_login = require_login
        self.books: dict[str, Book] = {}
        self._rng = random.Random(f"{seed}/orders")
        self._guests = 0
        self.game_id: str | None = None
        self.phase = "COOLDOWN"
        self.tick = 0
        self.price = 1.0
        self.rug_tick: int | None = None

    # --- players ----------------------------------------------------------------------------------
    def login(self, auth: object) -> Book | None:
        """The book of the player named in a connection's auth (None: anonymous); bad auth raises."""
        if auth is None or auth == {}:
            return None
        name = auth.get("player") if isinstance(auth, dict) else None
        if not isinstance(name, str) or not PLAYER_NAME.fullmatch(name):
            raise ValueError('auth must be {"player": "<name>"}, the name 1-32 of A-Z a-z 0-9 _ -')
        if name.startswith("guest-"):
            raise ValueError("player names starting with guest- are kept for anonymous connections")
        return self.books.get(name) or self._open(name, guest=False)

    def guest(self) -> Book:
        self._guests += 1
        return self._open(f"guest-{self._guests}", guest=True)

    def _open(self, name: str, guest: bool) -> Book:
        book = Book(name=name, id=f"did:sim:{name}", username=name, cash=self.starting_cash, guest=guest)
        self.books[name] = book
        return book

    def greeting(self, book: Book) -> list[Outgoing]:
        """What a logged-in connection gets right after connecting."""
        return [Outgoing("usernameStatus", (self._trace(None), frames.username_status(book)), book.name),
                Outgoing("playerUpdate", (frames.player_update(book),), book.name)]

    # --- the game, as broadcast -------------------------------------------------------------------
    def observe(self, game: Game, event: Event) -> list[Outgoing]:
        """Follow the broadcast; returns the settlements due before `event` goes out."""
        if event.kind == "cooldown":
            self.game_id, self.tick, self.price, self.rug_tick = game.game_id, 0, 1.0, game.rug_tick
            self.phase = "PRESALE" if event.value <= PRESALE_AT_MS else "COOLDOWN"
        elif event.kind == "tick":
            self.game_id, self.tick, self.price = game.game_id, event.value, game.prices[event.value]
            self.rug_tick = game.rug_tick
            if event.value == game.rug_tick:
                self.phase = "RUGGED"
                return self._settle_rug()
            self.phase = "ACTIVE"
            return self._expire_sidebets()
        return []

    def start_at(self, game: Game, phase: str, tick: int, price: float) -> None:
        """Where the broadcast starts, before any frame went out."""
        self.game_id, self.phase, self.tick, self.price, self.rug_tick = game.game_id, phase, tick, price, game.rug_tick

    # --- orders -----------------------------------------------------------------------------------
    def order(self, event: str, book: Book | None, args: tuple) -> tuple[list[Outgoing], dict]:
        """Carry out one order; returns the frames to send and the ack (a failure ack changes nothing)."""
        try:
            if book is None:
                raise OrderRefused("not_logged_in", 'this server requires login: connect with auth {"player": "<name>"}')
            trace, payload = split_args(args)
            handler = {"buyOrder": self._buy, "sellOrder": self._sell, "requestSidebet": self._sidebet,
                       "shortOpen": self._short_open, "shortClose": self._short_close}[event]
            return handler(book, trace, payload)
        except OrderRefused as refused:
            return [], failure(refused)

    def _buy(self, book: Book, trace: dict | None, payload: object) -> tuple[list[Outgoing], dict]:
        lamports = amount_of(fields(payload, "amount"))
        self._trading_open("buy")
        book.enter_game(self.game_id)
        qty = book.buy(lamports, self.price)
        return self._trade(book, trace, "buy", lamports, qty), OK

    def _sell(self, book: Book, trace: dict | None, payload: object) -> tuple[list[Outgoing], dict]:
        percent = fields(payload, "percentage")["percentage"]
        if isinstance(percent, bool) or not isinstance(percent, int) or not 1 <= percent <= 100:
            raise OrderRefused("bad_percentage", f"percentage must be an integer from 1 to 100, got {percent!r}")
        self._trading_open("sell")
        book.enter_game(self.game_id)
        qty, proceeds = book.sell(percent, self.price)
        return self._trade(book, trace, "sell", proceeds, qty), OK

    def _short_open(self, book: Book, trace: dict | None, payload: object) -> tuple[list[Outgoing], dict]:
        lamports = amount_of(fields(payload, "amount"))
        self._trading_open("short")
        book.enter_game(self.game_id)
        book.open_short(lamports, self.price, self.tick)
        return self._trade(book, trace, "short_open", lamports, 0), OK

    def _short_close(self, book: Book, trace: dict | None, payload: object) -> tuple[list[Outgoing], dict]:
        if payload not in (None, {}):
            raise OrderRefused("malformed", f"shortClose takes no fields (or {{}}), got {payload!r}")
        self._trading_open("short close")
        book.enter_game(self.game_id)
        _, value = book.close_short(self.price)
        return self._trade(book, trace, "short_close", value, 0), OK

    def _sidebet(self, book: Book, trace: dict | None, payload: object) -> tuple[list[Outgoing], dict]:
        values = fields(payload, "amount", "coinAddress", "xPayout")
        lamports = amount_of(values)
        if values["coinAddress"] != frames.SOL_ADDRESS:
            raise OrderRefused("bad_sidebet", f"coinAddress must be {frames.SOL_ADDRESS} (SOL)")
        if values["xPayout"] != SIDEBET_PAYOUT or isinstance(values["xPayout"], bool):
            raise OrderRefused("bad_sidebet", f"xPayout must be {SIDEBET_PAYOUT}")
        self._trading_open("sidebet")
        book.enter_game(self.game_id)
        bet = Sidebet(lamports, SIDEBET_PAYOUT, frames.SOL_ADDRESS, self.game_id, self.tick, self.price, now_ms())
        book.place_sidebet(bet)
        placed = frames.sidebet_placed(book, bet)
        out = [Outgoing("playerUpdate", (frames.player_update(book),), book.name),
               Outgoing("currentSidebet", (self._trace(trace), placed), book.name),
               Outgoing("newSideBet", (self._trace(trace), placed), None),
               self._standing(book)]
        return out, frames.sidebet_ack(book, bet)

    def _trading_open(self, what: str) -> None:
        if self.phase in ("PRESALE", "ACTIVE"):
            return
        if self.phase == "RUGGED":
            detail = f"game {self.game_id} rugged at tick {self.tick}"
        else:
            detail = f"game {self.game_id} is in its cooldown"
        raise OrderRefused("game_not_running", f"no {what} now: {detail}; orders open at the next presale")

    # --- frames -----------------------------------------------------------------------------------
    def _trade(self, book: Book, trace: dict | None, kind: str, lamports: int, qty: int) -> list[Outgoing]:
        payload = frames.trade(book, self._uuid(), kind, lamports, qty, self.price, self.tick)
        return [Outgoing("standard/newTrade", (self._trace(trace), payload), None),
                Outgoing("playerUpdate", (frames.player_update(book),), book.name),
                self._standing(book)]

    def _standing(self, book: Book) -> Outgoing:
        rivals = [b for b in self.books.values() if b.game_id == book.game_id and b is not book]
        rank = 1 + sum(b.cumulative_pnl > book.cumulative_pnl for b in rivals)
        return Outgoing("gameStatePlayerUpdate", (frames.game_state_player_update(book, rank),), book.name)

    def _trace(self, order_trace: dict | None) -> dict:
        """A new span: in the order's trace when the order carried one, else in a trace of its own."""
        match = TRACEPARENT.fullmatch(order_trace["traceparent"]) if order_trace else None
        trace_id = match.group(1) if match else f"{self._rng.getrandbits(128):032x}"
        return {"__trace": True, "traceparent": f"00-{trace_id}-{self._rng.getrandbits(64):016x}-01"}

    def _uuid(self) -> str:
        return str(uuid.UUID(int=self._rng.getrandbits(128), version=4))

    # --- settlement -------------------------------------------------------------------------------
    def _settle_rug(self) -> list[Outgoing]:
        """At the rug, as captured: sidebet results, then forced sells (and short closes)."""
        out: list[Outgoing] = []
        for book in self.books.values():
            if book.game_id != self.game_id:
                continue
            touched = False
            if book.sidebet is not None and book.sidebet.game_id == self.game_id:
                out += self._sidebet_result(book, won=book.sidebet.end_tick >= self.tick)
                touched = True
            if book.position_qty:
                qty, proceeds = book.sell(100, self.price)
                out += self._trade(book, None, "sell", proceeds, qty)[:2]
                touched = True
            if book.short is not None:
                _, value = book.close_short(self.price)
                out += self._trade(book, None, "short_close", value, 0)[:2]
                touched = True
            if touched:
                out.append(self._standing(book))
        return out

    def _expire_sidebets(self) -> list[Outgoing]:
        out: list[Outgoing] = []
        for book in self.books.values():
            if book.sidebet is not None and book.sidebet.end_tick < self.tick:
                out += self._sidebet_result(book, won=False)
                out.append(self._standing(book))
        return out

    def _sidebet_result(self, book: Book, won: bool) -> list[Outgoing]:
        bet, payout = book.settle_sidebet(won)
        result = frames.sidebet_result(book, bet, payout, self.tick, self.price, now_ms())
        return [Outgoing("currentSidebetResult", (self._trace(None), result), book.name),
                Outgoing("playerUpdate", (frames.player_update(book),), book.name)]


def split_args(args: tuple) -> tuple[dict | None, object]:
    """`(trace, payload)` as the page sends it, or `(payload,)` as documented without the trace."""
    if len(args) == 2 and isinstance(args[0], dict) and args[0].get("__trace") is True:
        trace = args[0]
        if not isinstance(trace.get("traceparent"), str) or not TRACEPARENT.fullmatch(trace["traceparent"]):
            raise OrderRefused("malformed", "traceparent must look like 00-<32 hex>-<16 hex>-<2 hex>")
        return trace, args[1]
    if len(args) == 1:
        return None, args[0]
    if not args:
        return None, None
    raise OrderRefused("malformed", f"expected [trace, payload] or [payload], got {len(args)} arguments")


def fields(payload: object, *names: str) -> dict:
    if not isinstance(payload, dict):
        raise OrderRefused("malformed", f"payload must be an object with {', '.join(names)}, got {payload!r}")
    missing = [n for n in names if n not in payload]
    extra = sorted(set(payload) - set(names))
    if missing or extra:
        raise OrderRefused("malformed", f"payload needs exactly {', '.join(names)}"
                           + (f"; missing {', '.join(missing)}" if missing else "")
                           + (f"; unexpected {', '.join(extra)}" if extra else ""))
    return payload


def amount_of(values: dict) -> int:
    """SOL amount to lamports: a finite number, at least MIN_AMOUNT, at most 9 decimals."""
    amount = values["amount"]
    if isinstance(amount, bool) or not isinstance(amount, (int, float)) or not math.isfinite(amount):
        raise OrderRefused("bad_amount", f"amount must be a number of SOL, got {amount!r}")
    if amount > MAX_AMOUNT:
        raise OrderRefused("bad_amount", f"amount must be at most {MAX_AMOUNT} SOL, got {amount!r}")
    lamports = round(amount * LAMPORTS)
    if abs(lamports - amount * LAMPORTS) > 1e-3:
        raise OrderRefused("bad_amount", f"amount {amount!r} has more than 9 decimals")
    if amount < MIN_AMOUNT:
        raise OrderRefused("bad_amount", f"amount must be at least {MIN_AMOUNT} SOL, got {amount!r}")
    return lamports


def now_ms() -> int:
    return int(time.time() * 1000)
