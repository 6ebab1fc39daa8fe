"""Turns feed events into the documented channels, with the game's rules enforced.

The real stream is untidy: frames arrive late, twice or not at all, and the frame that reveals a rug
may be followed by another one for the same game. The normalizer keeps just enough state per game
to publish every channel monotonically: one `game.start` and one `game.end` per game, phases only
moving forward, ticks in order with holes refilled from `partialPrices` or declared as `game.gap`.
Anything it cannot use still goes out verbatim on `raw.<event>`; it never raises.
"""

from __future__ import annotations

import logging
from collections import OrderedDict
from dataclasses import fields
from itertools import islice
from operator import attrgetter
from typing import Any, Literal

from pydantic import ValidationError
from pydantic.dataclasses import dataclass

from core.contracts.channels import PASSTHROUGH_EVENTS
from core.contracts.fields import TICK_FIELDS, TRADE_FIELDS, as_float, as_int, as_str, data_reader
from core.contracts.feed import Draft, FeedEvent

log = logging.getLogger(__name__)

COOLDOWN, PRESALE, ACTIVE, RUGGED, UNKNOWN = "COOLDOWN", "PRESALE", "ACTIVE", "RUGGED", "UNKNOWN"
Phase = Literal["COOLDOWN", "PRESALE", "ACTIVE", "RUGGED", "UNKNOWN"]
PHASE_RANK = {COOLDOWN: 0, PRESALE: 1, ACTIVE: 2, RUGGED: 3}
REMEMBERED_GAMES = 64
REMEMBERED_ACROSS_RESTART = 4  # finished games whose late frames a restarted normalizer still recognises
MEMORY_VERSION = 1
REMEMBERED_TRADES = 20_000
_tick_data = data_reader(TICK_FIELDS)
_trade_data = data_reader(TRADE_FIELDS)


def derive_phase(frame: dict[str, Any]) -> str:
    """The phase rule of the real feed, in its priority order."""
    active = frame.get("active") is True
    rugged = frame.get("rugged") is True
    timer = as_float(frame.get("cooldownTimer")) or 0
    presale = frame.get("allowPreRoundBuys") is True
    if active and not rugged:
        return ACTIVE
    if rugged:
        return RUGGED
    if timer > 0:
        return PRESALE if presale else COOLDOWN
    return PRESALE if presale else UNKNOWN


def error_draft(code: str, message: str, raw: str | None) -> Draft:
    return Draft("error", None, {"code": code, "message": message, "raw": raw})


def verbatim_draft(family: str, event: FeedEvent) -> Draft:
    """`<family>.<event name>` with the event as it was: `raw.*` for what the server sent, `sent.*` for
    what the page sent."""
    data: dict[str, Any] = {"payload": event.payload, "trace": event.trace}
    if event.extra_args:
        data["args"] = event.extra_args
    if event.ack_id is not None:
        data["ackId"] = event.ack_id
    if event.namespace != "/":
        data["namespace"] = event.namespace
    payload = event.payload
    game_id = as_str(payload.get("gameId")) if isinstance(payload, dict) else None
    plain = event.payload_json is not None and len(data) == 2 and event.trace is None
    data_json = b'{"payload":%b,"trace":null}' % event.payload_json.encode() if plain else None
    return Draft(f"{family}.{event.name}", game_id, data, data_json)


@dataclass(slots=True)
class GameState:
    """What the normalizer knows of the current game; a pydantic dataclass, so that the copy a restart
    reads back (`Normalizer.resumed`) is checked field by field."""

    game_id: str
    phase: Phase = UNKNOWN
    seen_before_active: bool = False
    started: bool = False
    ended: bool = False
    expected_first: int = 0
    last_tick: int | None = None
    last_timer: float | None = None
    last_price: float | None = None
    peak_price: float | None = None
    ticks_seen: int = 0
    backfilled: int = 0
    start_ms: int | None = None
    last_ms: int | None = None


_game_values = attrgetter(*(field.name for field in fields(GameState)))


class Normalizer:
    def __init__(self) -> None:
        self.game: GameState | None = None
        self.phase: str | None = None
        self._finished: OrderedDict[str, None] = OrderedDict()
        self._trade_ids: OrderedDict[str, None] = OrderedDict()
        self._changed = False
        self._recently_finished: list[str] = []

    # --- memory across restarts ---------------------------------------------------------------

    def changed_memory(self) -> dict[str, Any] | None:
        """The game memory, when the last event may have changed it (a game frame), else None.

        A restarted Vectra resumes from it (`resumed`), so the game it was inside keeps one
        `game.start`, its missed ticks are refilled or declared, and its counts cover the whole game."""
        if not self._changed:
            return None
        self._changed = False
        game = self.game
        return {
            "version": MEMORY_VERSION,
            "phase": self.phase,
            "finished": self._recently_finished,
            "game": None if game is None else _game_values(game),
        }

    @classmethod
    def resumed(cls, memory: Any) -> "Normalizer":
        """A normalizer that carries on from `changed_memory()`; ValueError if it is not one."""
        if not isinstance(memory, dict) or memory.get("version") != MEMORY_VERSION:
            raise ValueError(f"not a game memory of version {MEMORY_VERSION}")
        phase, finished, game = memory.get("phase"), memory.get("finished"), memory.get("game")
        if phase is not None and phase not in PHASE_RANK:
            raise ValueError(f"unknown phase {phase!r}")
        if not isinstance(finished, list) or not all(isinstance(game_id, str) for game_id in finished):
            raise ValueError("finished games are not a list of game ids")
        if game is not None and (not isinstance(game, list) or len(game) != len(fields(GameState))):
            raise ValueError("the current game is not a list of its fields")
        normalizer = cls()
        try:
            normalizer.game = None if game is None else GameState(*game)
        except ValidationError as exc:
            problems = "; ".join(f"field {error['loc']}: {error['msg']}" for error in exc.errors())
            raise ValueError(f"the current game does not fit: {problems}") from None
        normalizer.phase = phase
        normalizer._finished.update(dict.fromkeys(finished))
        normalizer._recently_finished = finished[-REMEMBERED_ACROSS_RESTART:]
        return normalizer

    # --- events ---------------------------------------------------------------------------------

    def normalize(self, event: FeedEvent, received_ms: int) -> list[Draft]:
        """All drafts one feed event produces: `raw.<name>` first, then the normalized ones."""
        out = [verbatim_draft("raw", event)]
        try:
            handler = self._handlers.get(event.name)
            if handler is not None:
                handler(self, event.payload, received_ms, out)
            elif event.name in PASSTHROUGH_EVENTS:
                self._passthrough(event, out)
        except Exception as exc:  # the stream must go on; the failure is reported, never hidden
            log.exception("normalizer failed on %s", event.name)
            out.append(error_draft("normalize_failed", f"{event.name}: {exc!r}", None))
        return out

    @staticmethod
    def _passthrough(event: FeedEvent, out: list[Draft]) -> None:
        payload = event.payload
        data = payload if isinstance(payload, dict) else {"payload": payload}
        game_id = as_str(data.get("gameId"))
        out.append(Draft(PASSTHROUGH_EVENTS[event.name], game_id, data))

    # --- trades ---------------------------------------------------------------------------------

    def _trade(self, payload: Any, received_ms: int, out: list[Draft]) -> None:
        if not isinstance(payload, dict):
            out.append(error_draft("bad_payload", "standard/newTrade payload is not an object", None))
            return
        trade_id = as_str(payload.get("id"))
        if trade_id is not None:
            if trade_id in self._trade_ids:
                return
            self._trade_ids[trade_id] = None
            if len(self._trade_ids) > REMEMBERED_TRADES:
                self._trade_ids.popitem(last=False)
        data = _trade_data(payload)
        out.append(Draft("player.trade", data["gameId"], data))

    # --- game state -----------------------------------------------------------------------------

    def _game_state(self, frame: Any, received_ms: int, out: list[Draft]) -> None:
        if not isinstance(frame, dict):
            out.append(error_draft("bad_payload", "gameStateUpdate payload is not an object", None))
            return
        self._changed = True
        game_id = as_str(frame.get("gameId"))
        if game_id is None:
            out.append(error_draft("bad_payload", "gameStateUpdate without a gameId", None))
            return
        if game_id in self._finished:
            return  # a late frame of a game that is over: raw only
        if self.game is None or self.game.game_id != game_id:
            self._begin_game(game_id, frame, out)
        game = self.game
        assert game is not None
        phase = derive_phase(frame)
        if self._is_stale(game, phase, frame):
            return
        tick = as_int(frame.get("tickCount"))
        price = as_float(frame.get("price"))
        phase_changed = phase != UNKNOWN and phase != game.phase
        starts_now = phase == ACTIVE and not game.started
        ticking = phase in (ACTIVE, RUGGED) and tick is not None and (game.started or starts_now)

        if ticking and not starts_now and not game.ended:  # after the rug, no tick is missed
            self._refill(game, tick, frame, out)
        if phase_changed:
            out.append(Draft("game.phase", game_id, {"from": self.phase, "to": phase}))
            self.phase = phase
            game.phase = phase
        if starts_now:
            self._start(game, tick, price, received_ms, out)
            if tick is not None:
                self._refill(game, tick, frame, out)
        if phase in (COOLDOWN, PRESALE):
            game.seen_before_active = True
            game.last_timer = as_float(frame.get("cooldownTimer"))
        out.append(Draft("game.tick", game_id, _tick_data(frame, phase=phase, backfilled=False)))
        game.last_ms = received_ms
        if ticking:
            self._count_tick(game, tick, price)
        if phase == RUGGED and game.started and not game.ended:
            game.ended = True
            out.append(Draft("game.end", game_id, self._end_data(game, inferred=False)))

    def _is_stale(self, game: GameState, phase: str, frame: dict[str, Any]) -> bool:
        """A frame that would move the game backwards (late, duplicated) is not republished."""
        if phase == UNKNOWN or game.phase == UNKNOWN:
            return False
        if PHASE_RANK[phase] < PHASE_RANK[game.phase]:
            return True
        if phase != game.phase:
            return False
        if phase in (ACTIVE, RUGGED):
            tick = as_int(frame.get("tickCount"))
            return tick is not None and game.last_tick is not None and tick <= game.last_tick
        timer = as_float(frame.get("cooldownTimer"))
        paused = frame.get("cooldownPaused") is True
        if timer is None or game.last_timer is None:
            return False
        return timer > game.last_timer or (timer == game.last_timer and not paused)

    def _begin_game(self, game_id: str, frame: dict[str, Any], out: list[Draft]) -> None:
        previous = self.game
        if previous is not None:
            if previous.started and not previous.ended:
                self._infer_end(previous, frame.get("gameHistory"), out)
            self._finished[previous.game_id] = None
            if len(self._finished) > REMEMBERED_GAMES:
                self._finished.popitem(last=False)
            self._recently_finished = list(islice(reversed(self._finished), REMEMBERED_ACROSS_RESTART))[::-1]
        self.game = GameState(game_id)

    def _infer_end(self, game: GameState, history: Any, out: list[Draft]) -> None:
        """The rug was missed (disconnected): close the game from `gameHistory` or what was seen.

        History entries carry `peakMultiplier` and, in some captures, the full `prices` list; with
        the prices, the ticks missed since the disconnect are published as backfilled ticks."""
        entry = None
        if isinstance(history, list):
            entry = next(
                (item for item in history if isinstance(item, dict) and item.get("id") == game.game_id),
                None,
            )
        prices = entry.get("prices") if entry else None
        if isinstance(prices, list) and prices and all(as_float(p) is not None for p in prices):
            final = len(prices) - 1
            if game.last_tick is not None and final > game.last_tick:
                window = {str(tick): prices[tick] for tick in range(game.last_tick + 1, final + 1)}
                self._refill(game, final + 1, {"partialPrices": {"values": window}}, out)
            game.last_tick = final
            game.last_price = prices[-1]
            game.peak_price = max(prices)
        elif entry and as_float(entry.get("peakMultiplier")) is not None:
            game.peak_price = max(game.peak_price or 0.0, entry["peakMultiplier"])
        game.ended = True
        out.append(Draft("game.end", game.game_id, self._end_data(game, inferred=True)))

    def _start(
        self, game: GameState, tick: int | None, price: float | None, now: int, out: list[Draft]
    ) -> None:
        game.started = True
        game.start_ms = now
        first = tick if tick is not None else 0
        late = first > 0 and not game.seen_before_active
        if late:
            game.expected_first = first
        elif first > 0:
            game.last_tick = -1
        out.append(
            Draft(
                "game.start",
                game.game_id,
                {"tick": first, "price": price if price is not None else 1.0, "late": late},
            )
        )

    def _refill(self, game: GameState, tick: int, frame: dict[str, Any], out: list[Draft]) -> None:
        """Publish missed ticks from the `partialPrices` window; declare the rest a `game.gap`."""
        if game.last_tick is None or tick <= game.last_tick + 1:
            return
        first, last = game.last_tick + 1, tick - 1
        window = frame.get("partialPrices")
        values = window.get("values") if isinstance(window, dict) else None
        known: dict[int, float] = {}
        if isinstance(values, dict):
            for key, value in values.items():
                index = int(key) if isinstance(key, str) and key.isascii() and key.isdigit() else None
                if index is not None and first <= index <= last and as_float(value) is not None:
                    known[index] = value
        cursor = first
        for index in sorted(known):
            if index > cursor:
                out.append(Draft("game.gap", game.game_id, self._gap(game, cursor, index - 1)))
            out.append(Draft("game.tick", game.game_id, self._backfilled(index, known[index])))
            self._count_tick(game, index, known[index])
            game.backfilled += 1
            cursor = index + 1
        if cursor <= last:
            out.append(Draft("game.gap", game.game_id, self._gap(game, cursor, last)))
            game.last_tick = last

    @staticmethod
    def _gap(game: GameState, first: int, last: int) -> dict[str, Any]:
        return {"gameId": game.game_id, "fromTick": first, "toTick": last}

    @staticmethod
    def _count_tick(game: GameState, tick: int, price: float | None) -> None:
        game.last_tick = tick
        game.ticks_seen += 1
        if price is not None:
            game.last_price = price
            game.peak_price = price if game.peak_price is None else max(game.peak_price, price)

    @staticmethod
    def _backfilled(tick: int, price: float) -> dict[str, Any]:
        """A recovered tick knows what `partialPrices` says (tick, price) and that the game ran."""
        known = {"tickCount": tick, "price": price, "active": True, "rugged": False}
        return _tick_data(known, phase=ACTIVE, backfilled=True)

    @staticmethod
    def _end_data(game: GameState, inferred: bool) -> dict[str, Any]:
        final_tick = game.last_tick if game.last_tick is not None and game.last_tick >= 0 else 0
        duration = (
            game.last_ms - game.start_ms
            if game.start_ms is not None and game.last_ms is not None
            else None
        )
        return {
            "finalTick": final_tick,
            "finalPrice": game.last_price if game.last_price is not None else 0.0,
            "peakPrice": game.peak_price if game.peak_price is not None else 0.0,
            "durationMs": duration,
            "ticksSeen": game.ticks_seen,
            "ticksExpected": final_tick - game.expected_first + 1,
            "backfilledTicks": game.backfilled,
            "inferred": inferred,
        }

    _handlers = {
        "gameStateUpdate": _game_state,
        "standard/newTrade": _trade,
    }
