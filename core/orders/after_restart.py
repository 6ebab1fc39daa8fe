"""How an order whose outcome a stopped (or killed) run never learned is settled by the run after it.

In a run, the player's own trade (matched by trace id or fields) settles a timed-out order. That trade
went by while no Vectra was listening, so the evidence left is the player's account: the first
`playerUpdate` of the new run, compared with the figure the order moves as the journal recorded it just
before the frame left (`playerBefore`). The comparison only means something inside the game the order
was placed in, before its rug: the rug force-sells every position and settles every side bet, so once
the game has ended an unchanged or emptied account says nothing about the order. Then the order stays
`timeout`, with the reason. A change in the direction the order moves is a fill, no change a refusal
(as in a run: no ack, and the next `playerUpdate` shows no trade); anything else is unknown. Never a
guessed fill. An order the server acked with success cannot have been refused, whatever the account
shows later (another trade may have undone it): no change leaves it unknown.

The same comparison settles, within a run, an order acked with success whose own trade never came
(desk.py, `_settle_by_account`): there too the account is the only evidence left.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

from core.contracts.fields import as_float

AMOUNT_TOLERANCE = 1e-9
OPEN_PHASES = frozenset({"PRESALE", "ACTIVE"})
# The player.state figure each kind moves: orders on the same figure cannot be told apart by it.
FIGURE_OF: dict[str, str] = {"buy": "positionQty", "sell": "positionQty", "sidebet": "sidebet",
                             "short_open": "shortPosition", "short_close": "shortPosition"}


@dataclass(frozen=True, slots=True)
class Verdict:
    outcome: Literal["filled", "rejected", "unknown"]
    why: str


def player_before(state: dict[str, Any], others_in_flight: bool) -> dict[str, Any] | None:
    """What the journal keeps of the player just before an order is sent; None when another order was
    still unsettled, since its fill could then move the same figure and the comparison would lie."""
    if others_in_flight or state.get("playerId") is None:
        return None
    return {"playerId": state["playerId"], **{figure: state.get(figure) for figure in set(FIGURE_OF.values())}}


def decide(record: dict[str, Any], player: dict[str, Any], game_id: str | None, phase: str) -> Verdict:
    """The outcome the player's state `player` shows for `record`, seen while the game `game_id` is in
    `phase` (both of this run's last `game.tick`)."""
    before = record.get("playerBefore")
    if before is None:
        return Verdict("unknown", "the player's state before it was sent is not known (no playerUpdate yet, or "
                                  "another order was unsettled then)")
    if player.get("playerId") != before["playerId"]:
        return Verdict("unknown", f"the player now logged in ({player.get('playerId')}) is not the one that sent it")
    if game_id is None or game_id != record.get("gameId") or phase not in OPEN_PHASES:
        return Verdict("unknown", f"its game {record.get('gameId')} has ended: the rug force-sells every "
                                  "position, so the account can no longer tell whether it filled")
    figure = FIGURE_OF[record["kind"]]
    then, now = before.get(figure), player.get(figure)
    if _same(then, now) and record["state"] == "acked":
        return Verdict("unknown", f"the server acked it with success, yet the player's account shows {figure} "
                                  "unchanged (another trade may have undone it)")
    if _same(then, now):
        return Verdict("rejected", "no ack before Vectra stopped, and the first playerUpdate after the restart "
                                   f"shows no trade of this order ({figure} unchanged)")
    if _moved_its_way(record["kind"], then, now):
        return Verdict("filled", f"{figure} moved from {then!r} to {now!r}")
    return Verdict("unknown", f"{figure} moved from {then!r} to {now!r}, not the way this order moves it")


def _same(then: Any, now: Any) -> bool:
    numbers = as_float(then), as_float(now)
    if None not in numbers:
        return abs(numbers[0] - numbers[1]) < AMOUNT_TOLERANCE
    return bool(then) == bool(now) and then == now


def _moved_its_way(kind: str, then: Any, now: Any) -> bool:
    if kind in ("buy", "sell"):
        qty_then, qty_now = as_float(then) or 0.0, as_float(now) or 0.0
        return qty_now > qty_then if kind == "buy" else qty_now < qty_then
    if kind == "short_close":
        return bool(then) and not now
    return bool(now)  # a side bet or a short now stands where another (or none) stood
