"""The payloads the server sends about one player, with the keys and key order of the captured frames
(`../shared/fixtures/rugs/order-cycle.json`); values come from the player's books.

Amounts go out in SOL as `integer / 1e9`, so `round(value * 1e9)` gives back the books' integers.
Fields the simulator has no model for (levels, crates, bonus balances) keep fixed neutral values.
"""

from __future__ import annotations

from core.sim.books import LAMPORTS, Book, Short, Sidebet

SOL_ADDRESS = "So11111111111111111111111111111111111111112"
NO_CRATES = {"gold": 0, "diamond": 0, "coal": 0, "iron": 0, "tier1": 0, "tier0": 0}


def sol(units: int) -> float:
    return units / LAMPORTS


def username_status(book: Book) -> dict:
    return {"id": book.id, "username": book.username, "hasUsername": True}


def player_update(book: Book) -> dict:
    return {
        "id": book.id,
        "role": None,
        "cash": sol(book.cash),
        "bonusBalance": 0,
        "authenticated": not book.guest,
        "autobuysEnabled": False,
        "autosellPrice": None,
        "avgCost": sol(book.avg_cost),
        "bonusWagerReq": 0,
        "bonusWagered": 0,
        "crateKeys": dict(NO_CRATES),
        "cumulativePnL": sol(book.cumulative_pnl),
        "hasInteracted": book.game_id is not None,
        "hitMaxWin": False,
        "levelInfo": {"level": book.level, "xp": 0, "xpForNextLevel": 5000, "totalXP": 0},
        "leveragedPositions": [],
        "pnlPercent": book.pnl_percent(),
        "positionQty": sol(book.position_qty),
        "recentCrateRewards": [],
        "selectedCoin": None,
        "shitcoinBalances": {"0xPractice": 100},
        "shortPosition": short_position(book.short),
        "sideBet": side_bet(book.sidebet),
        "sidebetPnl": sol(book.sidebet_pnl),
        "sidebets": [],
        "totalInvested": sol(book.total_invested),
        "xpBoost": {"active": False, "activeUntil": 0, "available": 0},
    }


def game_state_player_update(book: Book, rank: int) -> dict:
    return {
        "gameId": book.game_id,
        "leaderboardEntry": {
            "id": book.id,
            "username": book.username,
            "level": book.level,
            "pnl": sol(book.cumulative_pnl),
            "pnlPercent": book.pnl_percent(),
            "avgCost": sol(book.avg_cost),
            "hasActiveTrades": True,
            "position": rank,
            "positionQty": sol(book.position_qty),
            "regularPnl": sol(book.regular_pnl),
            "selectedCoin": None,
            "shortPnl": sol(book.short_pnl),
            "shortPosition": short_position(book.short),
            "sideBet": side_bet(book.sidebet),
            "sidebetActive": True if book.sidebet else None,
            "sidebetPnl": sol(book.sidebet_pnl),
            "totalInvested": sol(book.total_invested),
        },
    }


def side_bet(bet: Sidebet | None) -> dict | None:
    if bet is None:
        return None
    return {
        "startedAtTick": bet.start_tick,
        "gameId": bet.game_id,
        "end": bet.end_tick,
        "betAmount": sol(bet.amount),
        "xPayout": bet.x_payout,
        "bonusPortion": 0,
        "coinAddress": bet.coin_address,
        "realPortion": sol(bet.amount),
    }


def short_position(short: Short | None) -> dict | None:
    """The simulator's own shape: the real one has never been captured."""
    if short is None:
        return None
    return {"amount": sol(short.amount), "entryPrice": short.entry_price, "entryTick": short.entry_tick,
            "gameId": short.game_id}


def trade(book: Book, trade_id: str, kind: str, lamports: int, qty: int, price: float, tick: int) -> dict:
    payload = {
        "id": trade_id,
        "gameId": book.game_id,
        "playerId": book.id,
        "username": book.username,
        "level": book.level,
        "amount": sol(lamports),
        "qty": sol(qty),
        "price": price,
        "tickIndex": tick,
        "type": kind,
    }
    if kind == "buy":
        payload["leverage"] = 1
    payload["coin"] = "solana"
    if kind in ("buy", "sell"):
        payload["bonusPortion"] = 0
        payload["realPortion"] = sol(lamports)
    return payload


def sidebet_placed(book: Book, bet: Sidebet) -> dict:
    """`currentSidebet` (and `newSideBet`, which everyone gets) when a sidebet is placed."""
    return {
        "playerId": book.id,
        "gameId": bet.game_id,
        "username": book.username,
        "level": book.level,
        "price": bet.price,
        "betAmount": sol(bet.amount),
        "xPayout": bet.x_payout,
        "coinAddress": bet.coin_address,
        "startTick": bet.start_tick,
        "endTick": bet.end_tick,
        "tickIndex": bet.start_tick,
        "timestamp": bet.timestamp,
        "type": "placed",
    }


def sidebet_ack(book: Book, bet: Sidebet) -> dict:
    """The documented ack's sidebet lists `endTick` before `startTick`; kept as written."""
    placed = sidebet_placed(book, bet)
    order = ("playerId", "gameId", "username", "level", "price", "betAmount", "xPayout", "coinAddress",
             "endTick", "startTick", "tickIndex", "timestamp", "type")
    return {"success": True, "message": "Side bet placed", "sidebet": {key: placed[key] for key in order}}


def sidebet_result(book: Book, bet: Sidebet, payout: int, tick: int, price: float, timestamp: int) -> dict:
    """`type` is `payout` as captured for a win; `loss` for a lost bet is the simulator's own guess."""
    return {
        "playerId": book.id,
        "gameId": bet.game_id,
        "username": book.username,
        "level": book.level,
        "betAmount": sol(bet.amount),
        "coinAddress": bet.coin_address,
        "startTick": bet.start_tick,
        "endTick": bet.end_tick,
        "tickIndex": tick,
        "price": price,
        "payout": sol(payout),
        "profit": sol(payout - bet.amount),
        "xPayout": bet.x_payout,
        "type": "payout" if payout else "loss",
        "timestamp": timestamp,
    }
