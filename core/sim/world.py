"""The simulated game world as a pure function of time.

Nothing here keeps running state: every game, price path and trade is derived from `(seed, game
index)`, and game `i` starts right after game `i-1` rugs, with game 0 starting at the anchor. A server
restarted with the same seed, anchor and speed therefore lands in the same game at the same tick, and
two servers started apart emit identical sequences, which is what replay and reconnect tests need.
"""

from __future__ import annotations

import hashlib
import math
import random
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import lru_cache

COOLDOWN_MS = 15_000
PRESALE_AT_MS = 10_000
COOLDOWN_STEP_MS = 100
TICK_MS = 250
COOLDOWN_FRAMES = COOLDOWN_MS // COOLDOWN_STEP_MS  # 15000 .. 100
RUG_PROBABILITY = 0.005
HISTORY_GAMES = 10
PLAYER_POOL = 80

TRADE_TYPES = ("buy", "sell", "short_open", "short_close")
TRADE_WEIGHTS = (0.45, 0.35, 0.1, 0.1)


@dataclass(frozen=True)
class Player:
    id: str
    username: str
    level: int


@dataclass(frozen=True)
class Event:
    """One thing the server broadcasts, with its due time relative to its game's start.

    `kind` is `cooldown` (value = cooldownTimer), `tick` (value = tickCount), `history` (the second
    rug broadcast) or `trade` (value = tickIndex, `trade` holds the payload).
    """

    offset_ms: int
    kind: str
    value: int
    trade: dict | None = None


@dataclass
class Game:
    index: int
    game_id: str
    server_seed: str
    server_seed_hash: str
    rug_tick: int
    prices: list[float]
    start_ms: float = 0.0  # sim time of the genesis frame
    events: list[Event] = field(default_factory=list)

    @property
    def duration_ms(self) -> int:
        """Cooldown, ticks 0..rug, and one tick of pause before the next genesis frame."""
        return COOLDOWN_MS + TICK_MS * (self.rug_tick + 1)

    @property
    def peak(self) -> float:
        return max(self.prices)


def _rng(seed: int, index: int, stream: str) -> random.Random:
    """Separate streams so that e.g. changing the trade rate never changes price paths."""
    return random.Random(f"{seed}/{index}/{stream}")


def _hex(seed: int, index: int, stream: str) -> str:
    return hashlib.sha256(f"{seed}/{index}/{stream}".encode()).hexdigest()


def _poisson(rng: random.Random, mean: float) -> int:
    limit, k, p = math.exp(-mean), 0, rng.random()
    while p > limit:
        k += 1
        p *= rng.random()
    return k


@lru_cache(maxsize=16)
def player_pool(seed: int) -> tuple[Player, ...]:
    rng = _rng(seed, 0, "players")
    alphabet = "abcdefghijklmnopqrstuvwxyz0123456789"
    syllables = ("ka", "zo", "mi", "ru", "gg", "sol", "moon", "degen", "ape", "jeet", "x", "bag")
    players = []
    for n in range(PLAYER_POOL):
        did = "did:privy:cm" + "".join(rng.choice(alphabet) for _ in range(23))
        name = "".join(rng.choice(syllables) for _ in range(rng.randint(2, 3))) + str(n)
        players.append(Player(did, name.capitalize(), rng.randint(0, 80)))
    return tuple(players)


class World:
    """Which frames are due when, for one `(seed, anchor, speed)` triple."""

    def __init__(
        self,
        seed: int,
        anchor_ms: int,
        speed: float = 1.0,
        max_ticks: int | None = None,
        trades_per_s: float = 3.0,
    ):
        if speed <= 0:
            raise ValueError("speed must be > 0")
        if max_ticks is not None and max_ticks < 1:
            raise ValueError("max_ticks must be >= 1")
        if trades_per_s < 0:
            raise ValueError("trades_per_s must be >= 0")
        self.seed, self.anchor_ms, self.speed = seed, anchor_ms, speed
        self.max_ticks, self.trades_per_s = max_ticks, trades_per_s
        self.players = player_pool(seed)
        self._games: dict[int, Game] = {}
        self._starts: dict[int, float] = {0: 0.0}

    # --- clock ------------------------------------------------------------------------------------
    def sim_ms(self, wall_ms: float) -> float:
        return (wall_ms - self.anchor_ms) * self.speed

    def wall_ms(self, sim_ms: float) -> float:
        return self.anchor_ms + sim_ms / self.speed

    # --- games ------------------------------------------------------------------------------------
    def game(self, index: int) -> Game:
        """Games are cached because renders and catch-up hit the same few games repeatedly."""
        game = self._games.get(index)
        if game is None:
            game = self._make_game(index)
            game.start_ms = self._start_ms(index)
            game.events = self._make_events(game)
            if len(self._games) > 64:
                self._games.pop(max(self._games, key=lambda i: abs(i - index)))
            self._games[index] = game
        return game

    def _start_ms(self, index: int) -> float:
        if index in self._starts:
            return self._starts[index]
        step = 1 if index > 0 else -1
        i = max(k for k in self._starts if k <= index) if index > 0 else min(self._starts)
        while i != index:
            if step > 0:
                self._starts[i + 1] = self._starts[i] + self._rug_tick_duration(i)
            else:
                self._starts[i - 1] = self._starts[i] - self._rug_tick_duration(i - 1)
            i += step
        return self._starts[index]

    def _rug_tick_duration(self, index: int) -> int:
        return COOLDOWN_MS + TICK_MS * (self._rug_tick(index) + 1)

    def _rug_tick(self, index: int) -> int:
        rng = _rng(self.seed, index, "rug")
        tick = 1
        while rng.random() >= RUG_PROBABILITY and tick < 5_000:
            tick += 1
        return min(tick, self.max_ticks) if self.max_ticks else tick

    def _make_game(self, index: int) -> Game:
        rug_tick = self._rug_tick(index)
        rng = _rng(self.seed, index, "price")
        prices, price = [1.0], 1.0
        for _ in range(1, rug_tick):
            price *= math.exp(rng.gauss(0.0008, 0.03))
            if rng.random() < 0.01:
                price *= rng.uniform(1.2, 2.5) if rng.random() < 0.7 else rng.uniform(0.5, 0.8)
            prices.append(price)
        prices.append(rng.uniform(0.0015, 0.0025))
        server_seed = _hex(self.seed, index, "server")
        start_wall = self.wall_ms(self._start_ms(index))
        day = datetime.fromtimestamp(start_wall / 1000, UTC).strftime("%Y%m%d")
        return Game(
            index=index,
            game_id=f"{day}-{_hex(self.seed, index, 'id')[:16]}",
            server_seed=server_seed,
            server_seed_hash=hashlib.sha256(server_seed.encode()).hexdigest(),
            rug_tick=rug_tick,
            prices=prices,
        )

    def _make_events(self, game: Game) -> list[Event]:
        rng = _rng(self.seed, game.index, "trades")
        events: list[Event] = []
        for k in range(COOLDOWN_FRAMES):
            timer = COOLDOWN_MS - k * COOLDOWN_STEP_MS
            events.append(Event(k * COOLDOWN_STEP_MS, "cooldown", timer))
            if timer <= PRESALE_AT_MS:
                for _ in range(_poisson(rng, self.trades_per_s * COOLDOWN_STEP_MS / 1000)):
                    events.append(Event(k * COOLDOWN_STEP_MS, "trade", 0, self._trade(rng, game, 0, "buy")))
        for tick in range(game.rug_tick + 1):
            offset = COOLDOWN_MS + tick * TICK_MS
            events.append(Event(offset, "tick", tick))
            if tick == game.rug_tick:
                events.append(Event(offset, "history", tick))
                break
            for _ in range(_poisson(rng, self.trades_per_s * TICK_MS / 1000)):
                kind = rng.choices(TRADE_TYPES, TRADE_WEIGHTS)[0]
                events.append(Event(offset, "trade", tick, self._trade(rng, game, tick, kind)))
        return events

    def _trade(self, rng: random.Random, game: Game, tick: int, kind: str) -> dict:
        player = rng.choice(self.players)
        amount = round(rng.choice((0.001, 0.01, 0.03, 0.1, 0.2, 0.5, 1.0)) * rng.uniform(0.5, 2), 9)
        price = game.prices[tick]
        bonus = amount if rng.random() < 0.2 else 0
        trade = {
            "id": str(uuid.UUID(int=rng.getrandbits(128), version=4)),
            "gameId": game.game_id,
            "playerId": player.id,
            "price": price,
            "type": kind,
            "qty": round(amount / price, 9) if kind in ("buy", "sell") else 0,
            "tickIndex": tick,
            "coin": "solana",
            "amount": amount,
        }
        if kind == "buy" and rng.random() < 0.5:
            trade["leverage"] = rng.choice((1, 2, 4, 5))
        if kind in ("buy", "sell"):
            trade["bonusPortion"] = bonus
            trade["realPortion"] = round(amount - bonus, 9)
        trade["username"] = player.username
        trade["level"] = player.level
        trace = {"__trace": True, "traceparent": f"00-{rng.getrandbits(128):032x}-{rng.getrandbits(64):016x}-01"}
        return {"trace": trace, "payload": trade}

    # --- positions in the schedule ------------------------------------------------------------------
    def game_index_at(self, sim_ms: float) -> int:
        index = 0
        if sim_ms < 0:
            while self._start_ms(index) > sim_ms:
                index -= 1
            return index
        index = max(i for i in self._starts if self._starts[i] <= sim_ms)
        while self._start_ms(index + 1) <= sim_ms:
            index += 1
        return index

    def cursor_at(self, sim_ms: float) -> tuple[int, int]:
        """Position `(game, event index)` of the last event due at `sim_ms` (-1: none of that game yet)."""
        game = self.game(self.game_index_at(sim_ms))
        offset = sim_ms - game.start_ms
        due = -1
        for n, event in enumerate(game.events):
            if event.offset_ms > offset:
                break
            due = n
        return game.index, due

    def due(self, cursor: tuple[int, int], sim_ms: float) -> list[tuple[tuple[int, int], Game, Event]]:
        """Every event after `cursor` that is due at `sim_ms`, in broadcast order."""
        index, n = cursor
        out = []
        while True:
            game = self.game(index)
            for k in range(n + 1, len(game.events)):
                event = game.events[k]
                if game.start_ms + event.offset_ms > sim_ms:
                    return out
                out.append(((index, k), game, event))
            index, n = index + 1, -1

    def next_due_ms(self, cursor: tuple[int, int]) -> float:
        index, n = cursor
        game = self.game(index)
        if n + 1 < len(game.events):
            return game.start_ms + game.events[n + 1].offset_ms
        return self.game(index + 1).start_ms

    def history(self, index: int) -> list[Game]:
        """The games a genesis frame of game `index` lists, most recent first (negative indexes too,
        so that even the first game after the anchor carries a full-size history)."""
        return [self.game(i) for i in range(index - 1, index - 1 - HISTORY_GAMES, -1)]


@dataclass(frozen=True)
class Position:
    game: Game
    phase: str  # COOLDOWN | PRESALE | ACTIVE | RUGGED
    tick: int
    price: float


def position_at(world: World, sim_ms: float) -> Position:
    """Where the world is at `sim_ms`, whether or not any frame was emitted for it."""
    game = world.game(world.game_index_at(sim_ms))
    offset = sim_ms - game.start_ms
    if offset < COOLDOWN_MS - PRESALE_AT_MS:
        return Position(game, "COOLDOWN", 0, 1.0)
    if offset < COOLDOWN_MS:
        return Position(game, "PRESALE", 0, 1.0)
    tick = min(int((offset - COOLDOWN_MS) // TICK_MS), game.rug_tick)
    phase = "RUGGED" if tick == game.rug_tick else "ACTIVE"
    return Position(game, phase, tick, game.prices[tick])
