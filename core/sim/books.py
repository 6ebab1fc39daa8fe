"""One player's books, kept in whole units of 1e-9 so that a client can check them to the lamport.

Money is in lamports (1 SOL = 1e9), position quantities in 1e-9 tokens and prices stay floats (they
come from the world's price path). Every operation rounds down once, in one place, so the numbers a
client derives from the `playerUpdate` frames (value * 1e9) are exactly the integers kept here.
Per-game figures (invested, realized PnL, sidebet and short PnL) start again when a player first acts
in a new game, which is how the real leaderboard entry behaves.
"""

from __future__ import annotations

from dataclasses import dataclass

LAMPORTS = 1_000_000_000
SIDEBET_WINDOW_TICKS = 40


class OrderRefused(Exception):
    """An order the server answers with a failure ack; `reason` is a stable code, `message` says why."""

    def __init__(self, reason: str, message: str):
        super().__init__(message)
        self.reason = reason
        self.message = message


@dataclass
class Sidebet:
    amount: int  # lamports
    x_payout: int
    coin_address: str
    game_id: str
    start_tick: int
    price: float
    timestamp: int

    @property
    def end_tick(self) -> int:
        return self.start_tick + SIDEBET_WINDOW_TICKS


@dataclass
class Short:
    amount: int  # lamports
    entry_price: float
    entry_tick: int
    game_id: str


@dataclass
class Book:
    name: str
    id: str
    username: str
    cash: int
    guest: bool = False
    level: int = 1
    game_id: str | None = None
    position_qty: int = 0  # 1e-9 tokens
    cost_basis: int = 0  # lamports paid for the open position
    total_invested: int = 0  # lamports bought this game
    realized_pnl: int = 0  # lamports, this game
    sidebet_pnl: int = 0
    short_pnl: int = 0
    mark_price: float = 1.0  # price at the last change: the unrealized PnL the last playerUpdate showed
    sidebet: Sidebet | None = None
    short: Short | None = None

    # --- derived figures ------------------------------------------------------------------------
    @property
    def avg_cost(self) -> int:
        """Average price paid, in 1e-9 units (0 without a position, as the real feed shows)."""
        return self.cost_basis * LAMPORTS // self.position_qty if self.position_qty else 0

    @property
    def regular_pnl(self) -> int:
        return self.realized_pnl + int(self.position_qty * self.mark_price) - self.cost_basis

    @property
    def cumulative_pnl(self) -> int:
        return self.regular_pnl + self.sidebet_pnl + self.short_pnl

    def pnl_percent(self) -> float:
        invested = self.total_invested + (self.short.amount if self.short else 0)
        return self.cumulative_pnl / invested * 100 if invested else 0

    def integers(self) -> dict:
        """What `GET /admin/players/<name>` shows: every figure an exact integer of 1e-9 units."""
        return {
            "cash": self.cash,
            "positionQty": self.position_qty,
            "avgCost": self.avg_cost,
            "costBasis": self.cost_basis,
            "totalInvested": self.total_invested,
            "realizedPnL": self.realized_pnl,
            "regularPnl": self.regular_pnl,
            "sidebetPnl": self.sidebet_pnl,
            "shortPnl": self.short_pnl,
            "cumulativePnL": self.cumulative_pnl,
            "sidebet": self.sidebet.amount if self.sidebet else 0,
            "shortAmount": self.short.amount if self.short else 0,
        }

    # --- operations -----------------------------------------------------------------------------
    def enter_game(self, game_id: str) -> None:
        if self.game_id != game_id:
            self.game_id = game_id
            self.total_invested = self.realized_pnl = self.sidebet_pnl = self.short_pnl = 0

    def buy(self, lamports: int, price: float) -> int:
        """Spend `lamports` at `price`; returns the quantity bought."""
        self._spend(lamports)
        qty = int(lamports / price)
        self.position_qty += qty
        self.cost_basis += lamports
        self.total_invested += lamports
        self.mark_price = price
        return qty

    def sell(self, percent: int, price: float) -> tuple[int, int]:
        """Sell `percent` % of the position; returns (quantity sold, lamports received)."""
        if not self.position_qty:
            raise OrderRefused("no_position", "there is no position to sell")
        qty = self.position_qty if percent == 100 else self.position_qty * percent // 100
        if qty == 0:
            raise OrderRefused("bad_amount", f"{percent} % of the position is less than one unit")
        proceeds = int(qty * price)
        basis = self.cost_basis if qty == self.position_qty else self.cost_basis * qty // self.position_qty
        self.position_qty -= qty
        self.cost_basis -= basis
        self.realized_pnl += proceeds - basis
        self.cash += proceeds
        self.mark_price = price
        return qty, proceeds

    def place_sidebet(self, bet: Sidebet) -> None:
        if self.sidebet is not None:
            raise OrderRefused("sidebet_active", f"a sidebet is already running until tick {self.sidebet.end_tick}")
        self._spend(bet.amount)
        self.sidebet = bet
        self.sidebet_pnl -= bet.amount

    def settle_sidebet(self, won: bool) -> tuple[Sidebet, int]:
        """Close the running sidebet; returns it and its payout in lamports (0 when lost)."""
        bet, self.sidebet = self.sidebet, None
        payout = bet.amount * bet.x_payout if won else 0
        self.cash += payout
        self.sidebet_pnl += payout
        return bet, payout

    def open_short(self, lamports: int, price: float, tick: int) -> None:
        if self.short is not None:
            raise OrderRefused("short_active", "a short is already open; close it first")
        self._spend(lamports)
        self.short = Short(lamports, price, tick, self.game_id)
        self.mark_price = price

    def close_short(self, price: float) -> tuple[Short, int]:
        """Close the short: it gains what the price lost since entry, at most doubling, never below 0."""
        if self.short is None:
            raise OrderRefused("no_short", "there is no open short to close")
        short, self.short = self.short, None
        value = int(short.amount * (2 - price / short.entry_price))
        value = min(max(value, 0), 2 * short.amount)
        self.cash += value
        self.short_pnl += value - short.amount
        self.mark_price = price
        return short, value

    def _spend(self, lamports: int) -> None:
        if lamports > self.cash:
            raise OrderRefused(
                "insufficient_funds",
                f"needs {lamports / LAMPORTS:.9f} SOL, the balance is {self.cash / LAMPORTS:.9f} SOL",
            )
        self.cash -= lamports
