"""Payloads with the shapes of the real rugs.fun feed (field names, types, nesting, key order).

Values are generated from the world; only the shapes follow the captured frames. Which shape a frame
gets is part of the feed's behaviour that consumers must cope with: most cooldown frames carry only
seven keys, some carry the full set, and rug/genesis frames carry the large `gameHistory`.
"""

from __future__ import annotations

import hashlib
import random
import uuid

from core.sim.world import COOLDOWN_MS, PRESALE_AT_MS, TICK_MS, Event, Game, World

FULL_COOLDOWN_EVERY = 10
PARTIAL_WINDOW = 5
LEADERBOARD_SIZE = 12
PRACTICE_COIN = {
    "address": "0xPractice",
    "ticker": "FREE",
    "name": "Free Practice Token",
    "max_bet": 10000,
    "max_win": 50000,
    "logoURI": "/icons/Icon_Free_Solana.png",
}
SOL_ADDRESS = "So11111111111111111111111111111111111111112"


def render(world: World, game: Game, event: Event) -> tuple[str, tuple]:
    """Event name and emit arguments (a tuple: traced trades send two arguments)."""
    if event.kind == "trade":
        return "standard/newTrade", (event.trade["trace"], event.trade["payload"])
    if event.kind == "cooldown":
        return "gameStateUpdate", (cooldown_frame(world, game, event.value),)
    if event.kind == "tick":
        return "gameStateUpdate", (tick_frame(world, game, event.value),)
    return "gameStateUpdate", (rug_history_frame(world, game),)


def is_full_cooldown(timer: int) -> bool:
    """The real feed mixes shapes; full frames always at the presale flip so consumers see it."""
    return timer == PRESALE_AT_MS or (COOLDOWN_MS - timer) // 100 % FULL_COOLDOWN_EVERY == 0


def cooldown_frame(world: World, game: Game, timer: int) -> dict:
    presale = timer <= PRESALE_AT_MS
    board = leaderboard(world, game, None) if presale else leaderboard(world, world.game(game.index - 1), -1)
    if timer == COOLDOWN_MS:
        return genesis_frame(world, game, board)
    if not is_full_cooldown(timer):
        return {
            "gameId": game.game_id,
            "cooldownTimer": timer,
            "cooldownPaused": False,
            "allowPreRoundBuys": presale,
            "leaderboard": board,
            "connectedPlayers": connected_players(world, game, timer),
            "provablyFair": provably_fair(game),
        }
    return {
        "active": False,
        "price": 1,
        "partialPrices": {"startTick": 0, "endTick": 0, "values": {"0": 1}},
        "tradeCount": trade_count(game, COOLDOWN_MS - timer, None),
        "rugged": False,
        "tickCount": 0,
        "cooldownTimer": timer,
        "cooldownPaused": False,
        "pauseMessage": "",
        "allowPreRoundBuys": presale,
        **stats(world, game.index),
        "leaderboard": board,
        "gameId": game.game_id,
        "connectedPlayers": connected_players(world, game, timer),
        "rugpool": rugpool(world, game),
        "rugRoyale": RUG_ROYALE,
        "provablyFair": provably_fair(game),
    }


def tick_frame(world: World, game: Game, tick: int) -> dict:
    if tick == 0:
        return {
            "active": True,
            "price": 1,
            "rugged": False,
            "tickCount": 0,
            "cooldownTimer": 0,
            "cooldownPaused": False,
            "pauseMessage": "",
            "allowPreRoundBuys": False,
            "leaderboard": [],
            "gameId": game.game_id,
            "connectedPlayers": connected_players(world, game, tick),
            "gameVersion": "v3",
            "partialPrices": partial_prices(game, 0),
            "provablyFair": provably_fair(game),
        }
    return {
        "active": True,
        "price": game.prices[tick],
        "partialPrices": partial_prices(game, tick),
        "tradeCount": trade_count(game, COOLDOWN_MS, tick),
        **running_flags(game, tick),
        **stats(world, game.index),
        "leaderboard": leaderboard(world, game, tick),
        "gameId": game.game_id,
        "connectedPlayers": connected_players(world, game, tick),
        "rugpool": rugpool(world, game),
        "rugRoyale": RUG_ROYALE,
        "provablyFair": provably_fair(game),
    }


def running_flags(game: Game, tick: int) -> dict:
    """The flags of a frame while a game runs (the rug frames included), in the real frames' order."""
    return {
        "rugged": tick == game.rug_tick,
        "tickCount": tick,
        "cooldownTimer": 0,
        "cooldownPaused": False,
        "pauseMessage": "",
        "allowPreRoundBuys": False,
    }


def rug_history_frame(world: World, game: Game) -> dict:
    """Second broadcast of the rug: the history already lists the game that just ended."""
    tick = game.rug_tick
    return {
        **history_block(world, game.index + 1),
        "active": True,
        "price": game.prices[tick],
        **running_flags(game, tick),
        "leaderboard": leaderboard(world, game, tick),
        "gameId": game.game_id,
        "connectedPlayers": connected_players(world, game, tick),
        "gameVersion": "v3",
        "partialPrices": partial_prices(game, tick),
        "provablyFair": provably_fair(game),
    }


def genesis_frame(world: World, game: Game, board: list[dict]) -> dict:
    return {
        **history_block(world, game.index),
        "active": False,
        "price": 1,
        "rugged": False,
        "tickCount": 0,
        "cooldownTimer": COOLDOWN_MS,
        "cooldownPaused": False,
        "pauseMessage": "",
        "allowPreRoundBuys": False,
        "leaderboard": board,
        "gameId": game.game_id,
        "connectedPlayers": connected_players(world, game, COOLDOWN_MS),
        "gameVersion": "v3",
        "partialPrices": {"startTick": 0, "endTick": 0, "values": {"0": 1}},
        "provablyFair": provably_fair(game),
    }


def history_block(world: World, index: int) -> dict:
    """`gameHistory` and the records derived from it, as seen by game `index`."""
    history = world.history(index)
    best = max(history, key=lambda g: g.peak)
    block = {
        "gameHistory": [history_entry(world, g) for g in history],
        **stats(world, index),
        "highestToday": best.peak,
        "highestTodayTimestamp": round(world.wall_ms(best.start_ms + peak_offset(best))),
        "highestTodayGameId": best.game_id,
        "highestTodayServerSeed": best.server_seed,
    }
    for multiple in (2, 10, 50):
        block.update(god_candle(world, history, multiple))
    block["availableShitcoins"] = [
        {"address": "0xPractice", "ticker": "FREE", "name": "Practice SOL", "max_bet": 10000, "max_win": 100000}
    ]
    return block


def god_candle(world: World, history: list[Game], multiple: int) -> dict:
    """Most recent single-tick jump of at least `multiple`x, the way the site records god candles."""
    prefix = f"godCandle{multiple}x"
    for game in history:
        for tick in range(1, game.rug_tick):
            before, after = game.prices[tick - 1], game.prices[tick]
            if after >= before * multiple:
                return {
                    prefix: game.peak,
                    f"{prefix}Timestamp": round(world.wall_ms(game.start_ms + COOLDOWN_MS + tick * TICK_MS)),
                    f"{prefix}GameId": game.game_id,
                    f"{prefix}ServerSeed": game.server_seed,
                    f"{prefix}MassiveJump": [before, after],
                }
    return {prefix: None, f"{prefix}Timestamp": None, f"{prefix}GameId": None,
            f"{prefix}ServerSeed": None, f"{prefix}MassiveJump": None}


def history_entry(world: World, game: Game) -> dict:
    rug_wall = world.wall_ms(game.start_ms + COOLDOWN_MS + game.rug_tick * TICK_MS)
    return {
        "id": game.game_id,
        "timestamp": round(rug_wall),
        "peakMultiplier": game.peak,
        "rugged": True,
        "prices": game.prices,
        "globalTrades": [],
        "globalSidebets": sidebets(world, game, rug_wall),
        "provablyFair": {"serverSeed": game.server_seed, "serverSeedHash": game.server_seed_hash},
        "gameVersion": "v3",
    }


def sidebets(world: World, game: Game, rug_wall: float) -> list[dict]:
    """Side bets make up most of a real history entry's size, so they are generated too."""
    rng = random.Random(f"{world.seed}/{game.index}/sidebets")
    bets = []
    for _ in range(rng.randint(25, 70)):
        player = rng.choice(world.players)
        amount = rng.choice((0.001, 0.002, 0.005, 0.01, 0.05))
        start = rng.randint(0, game.rug_tick)
        bet = {
            "playerId": player.id,
            "username": player.username,
            "gameId": game.game_id,
            "betAmount": amount,
            "xPayout": 5,
            "coinAddress": SOL_ADDRESS,
            "bonusPortion": 0,
            "realPortion": amount,
            "timestamp": round(rug_wall - (game.rug_tick - start) * TICK_MS / world.speed),
            "type": "placed",
            "startedAtTick": start,
            "end": start + 40,
            "id": _uuid(rng),
        }
        bets.append(bet)
    return bets


def _uuid(rng: random.Random) -> str:
    return str(uuid.UUID(int=rng.getrandbits(128), version=4))


def peak_offset(game: Game) -> int:
    return COOLDOWN_MS + game.prices.index(game.peak) * TICK_MS


def partial_prices(game: Game, tick: int) -> dict:
    start = max(0, tick - PARTIAL_WINDOW + 1)
    return {
        "startTick": start,
        "endTick": tick,
        "values": {str(t): game.prices[t] for t in range(start, tick + 1)},
    }


def trade_count(game: Game, cooldown_elapsed_ms: int, tick: int | None) -> int:
    """Trades of this game broadcast up to (and including) this frame."""
    count = 0
    for event in game.events:
        if event.kind != "trade":
            continue
        if tick is None and event.offset_ms > cooldown_elapsed_ms:
            break
        if tick is not None and event.offset_ms > COOLDOWN_MS + tick * TICK_MS:
            break
        count += 1
    return count


def stats(world: World, index: int) -> dict:
    peaks = [g.peak for g in world.history(index)]
    return {
        "averageMultiplier": sum(peaks) / len(peaks),
        "count2x": sum(p >= 2 for p in peaks),
        "count10x": sum(p >= 10 for p in peaks),
        "count50x": sum(p >= 50 for p in peaks),
        "count100x": sum(p >= 100 for p in peaks),
    }


def connected_players(world: World, game: Game, phase_value: int) -> int:
    """A slow drift per game plus a little jitter, like a real lobby."""
    base = 150 + int(hashlib.sha256(f"{world.seed}/{game.index}/lobby".encode()).hexdigest()[:4], 16) % 60
    return base + (phase_value * 7919) % 5


def rugpool(world: World, game: Game) -> dict:
    rng = random.Random(f"{world.seed}/{game.index}/rugpool")
    return {"instarugCount": rng.randint(0, 9), "threshold": 10, "rugpoolAmount": rng.uniform(0.5, 8)}


RUG_ROYALE = {"status": "INACTIVE", "activeEventId": None, "currentEvent": None, "upcomingEvents": [], "events": []}


def provably_fair(game: Game) -> dict:
    return {"serverSeedHash": game.server_seed_hash, "version": "v3"}


def leaderboard(world: World, game: Game, tick: int | None) -> list[dict]:
    """Top players of `game` at `tick` (None: presale, everyone flat; -1: final, before the rug).

    Participants and their entries are fixed per game, so the board evolves smoothly with the price.
    """
    rng = random.Random(f"{world.seed}/{game.index}/board")
    at = game.rug_tick - 1 if tick == -1 else tick
    rows = []
    for player in rng.sample(world.players, LEADERBOARD_SIZE + 4):
        entry = rng.randint(0, max(0, game.rug_tick - 1))
        invested = round(rng.choice((0.002, 0.01, 0.02, 0.05, 0.2, 1.0)) * rng.uniform(0.5, 3), 9)
        coin = PRACTICE_COIN if rng.random() < 0.15 else None
        if at is None:
            pnl = 0.0
        elif entry > at:
            continue
        else:
            pnl = round(invested * (game.prices[max(at, 0)] / game.prices[entry] - 1), 9)
        rows.append(_board_row(player, pnl, invested, coin))
    rows.sort(key=lambda r: r["pnl"], reverse=True)
    rows = rows[:LEADERBOARD_SIZE]
    for position, row in enumerate(rows, 1):
        row["position"] = position
    return rows


def _board_row(player, pnl: float, invested: float, coin: dict | None) -> dict:
    return {
        "id": player.id,
        "username": player.username,
        "level": player.level,
        "pnl": pnl,
        "regularPnl": pnl,
        "sidebetPnl": 0,
        "shortPnl": 0,
        "sidebetActive": None,
        "sideBet": None,
        "shortPosition": None,
        "pnlPercent": pnl / invested * 100 if invested else 0,
        "hasActiveTrades": True,
        "positionQty": 0,
        "avgCost": 0,
        "totalInvested": invested,
        "selectedCoin": coin,
    }
