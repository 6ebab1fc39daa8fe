"""The checks an order must pass before anything is sent: pure functions of the order, what the desk
knows at that moment, and the settings. The first failing check refuses the order with its code.

They run in the same order in `dry-run` and `live`, so a dry run shows exactly what live would do;
the only checks live adds are the ones about sending (the executor, unverified shapes).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

from core.config import Settings
from core.contracts.orders import Order, RejectCode

Refusal = tuple[RejectCode, str]

# Phases in which each kind may be sent.
OPEN_PHASES: dict[str, frozenset[str]] = {
    "buy": frozenset({"PRESALE", "ACTIVE"}),
    "sell": frozenset({"PRESALE", "ACTIVE"}),
    "sidebet": frozenset({"ACTIVE"}),
    "short_open": frozenset({"ACTIVE"}),
    "short_close": frozenset({"PRESALE", "ACTIVE"}),
}


@dataclass(frozen=True, slots=True)
class DeskView:
    """What the desk knows when an order arrives."""

    mode: str  # off | dry-run | live
    halted: bool
    phase: str | None
    game_id: str | None
    tick_age_s: float | None  # None: no tick seen yet
    position_qty: float | None  # None: the player's state is unknown
    short_open: bool | None
    staked_this_game: float
    orders_last_minute: int
    in_flight_of_kind: int
    shape_status: str
    executor_problem: str | None  # None: the executor can send now


def _off(order: Order, view: DeskView, settings: Settings) -> Refusal | None:
    if view.mode == "off":
        return RejectCode.ORDERS_OFF, ("orders are off (the daemon runs with VECTRA_ORDERS=off): restart the daemon "
                                       "with VECTRA_ORDERS=dry-run or live (live also needs VECTRA_AUTH_TOKEN)")
    return None


def _halted(order: Order, view: DeskView, settings: Settings) -> Refusal | None:
    if view.halted:
        return RejectCode.HALTED, "orders are halted (kill switch); `orders_resume` lifts it"
    return None


def _shape(order: Order, view: DeskView, settings: Settings) -> Refusal | None:
    if view.mode == "live" and view.shape_status != "captured" and not settings.orders_unverified:
        return (RejectCode.UNVERIFIED_SHAPE, f"the {order.kind} frame was never captured from the real site; "
                "VECTRA_ORDERS_UNVERIFIED=true allows it")
    return None


def _executor(order: Order, view: DeskView, settings: Settings) -> Refusal | None:
    if view.mode == "live" and view.executor_problem is not None:
        return RejectCode.NO_EXECUTOR, f"the {settings.order_executor_name} executor cannot send: {view.executor_problem}"
    return None


def _order_sol(order: Order, view: DeskView, settings: Settings) -> Refusal | None:
    if order.amount > settings.order_max_sol:
        return (RejectCode.LIMIT_ORDER_SOL,
                f"{order.amount:g} SOL is above the limit of {settings.order_max_sol:g} SOL per order")
    return None


def _game_sol(order: Order, view: DeskView, settings: Settings) -> Refusal | None:
    if order.amount and view.staked_this_game + order.amount > settings.order_max_sol_per_game + 1e-12:
        return (RejectCode.LIMIT_GAME_SOL,
                f"{view.staked_this_game:g} SOL already staked in this game; {order.amount:g} more exceeds "
                f"the limit of {settings.order_max_sol_per_game:g} SOL per game")
    return None


def _rate(order: Order, view: DeskView, settings: Settings) -> Refusal | None:
    if view.orders_last_minute >= settings.order_max_per_minute:
        return RejectCode.LIMIT_RATE, f"{view.orders_last_minute} orders in the last minute; the limit is {settings.order_max_per_minute}"
    return None


def _fresh(order: Order, view: DeskView, settings: Settings) -> Refusal | None:
    if view.tick_age_s is None:
        return RejectCode.FEED_STALE, "no game tick seen yet"
    if view.tick_age_s > settings.order_max_tick_age_s:
        return (RejectCode.FEED_STALE, f"the last game tick is {view.tick_age_s:.1f} s old "
                f"(limit {settings.order_max_tick_age_s:g} s)")
    return None


def _phase(order: Order, view: DeskView, settings: Settings) -> Refusal | None:
    allowed = OPEN_PHASES[order.kind]
    if view.phase not in allowed:
        after_rug = " (after the rug)" if view.phase in ("RUGGED", "COOLDOWN") else ""
        return (RejectCode.PHASE, f"no {order.kind} in phase {view.phase}{after_rug}; allowed in "
                f"{', '.join(sorted(allowed))}")
    return None


def _position(order: Order, view: DeskView, settings: Settings) -> Refusal | None:
    if order.kind == "sell" and not (view.position_qty or 0) > 0:
        known = "unknown (no player.state yet)" if view.position_qty is None else f"{view.position_qty:g}"
        return RejectCode.NO_POSITION, f"nothing to sell: the position is {known}"
    if order.kind == "short_close" and not view.short_open:
        return RejectCode.NO_POSITION, "no short position to close"
    return None


def _in_flight(order: Order, view: DeskView, settings: Settings) -> Refusal | None:
    if view.in_flight_of_kind >= settings.order_max_in_flight:
        return (RejectCode.IN_FLIGHT, f"{view.in_flight_of_kind} {order.kind} order(s) still wait for their outcome "
                f"(VECTRA_ORDER_MAX_IN_FLIGHT={settings.order_max_in_flight})")
    return None


Check = Callable[[Order, DeskView, Settings], Refusal | None]
CHECKS: tuple[tuple[str, Check], ...] = (
    ("mode", _off),
    ("halt", _halted),
    ("shape", _shape),
    ("executor", _executor),
    ("order_sol", _order_sol),
    ("game_sol", _game_sol),
    ("rate", _rate),
    ("feed", _fresh),
    ("phase", _phase),
    ("position", _position),
    ("in_flight", _in_flight),
)


def check(order: Order, view: DeskView, settings: Settings) -> tuple[list[str], Refusal | None]:
    """The names of the checks passed, and the first refusal (None: the order may go)."""
    passed: list[str] = []
    for name, rule in CHECKS:
        refusal = rule(order, view, settings)
        if refusal is not None:
            return passed, refusal
        passed.append(name)
    return passed, None
