"""The orders and the player's state as the console follows them: from the `order.*` and `player.state`
events, the same ones a bot sees, so the Player panel shows what the channels said and nothing else.

The desk's own settings and switches (mode, kill switch, executor) are not events: they come from the
health report's `orders` section (see health_view.py).
"""

from __future__ import annotations

from collections import deque
from typing import Any

from vectra_tui.view import LoggedEvent, OrderLine

DESK_CHANNELS = frozenset(
    {"order.request", "order.sent", "order.ack", "order.filled", "order.rejected", "order.timeout", "order.unsettled",
     "player.state"}
)
RECENT_ORDERS = 8
STATE_BY_CHANNEL = {"order.request": "requested", "order.sent": "sent", "order.ack": "acked", "order.timeout": "timeout"}


class DeskTracker:
    def __init__(self) -> None:
        self.player: dict[str, Any] = {}
        self.in_flight: dict[str, OrderLine] = {}
        self.recent: deque[OrderLine] = deque(maxlen=RECENT_ORDERS)

    def seed_player(self, state: dict[str, Any]) -> None:
        """The state from before the console watched (`player` on attach), unless an event was newer."""
        if not self.player:
            self.player = state

    def observe(self, event: LoggedEvent) -> None:
        data = event.data
        if event.type == "player.state":
            self.player = data
            return
        order_id, kind, dry_run = data.get("order_id"), data.get("kind"), bool(data.get("dryRun"))
        if not isinstance(order_id, str) or not isinstance(kind, str):
            return
        if event.type == "order.filled":
            self.in_flight.pop(order_id, None)
            price = data.get("price")
            price = price if isinstance(price, (int, float)) else None
            self.recent.appendleft(OrderLine(order_id, kind, "filled", price=price, dry_run=dry_run))
        elif event.type == "order.rejected":
            self.in_flight.pop(order_id, None)
            code, message = data.get("code"), data.get("message")
            self.recent.appendleft(OrderLine(order_id, kind, "rejected", code=code, message=message, dry_run=dry_run))
        elif event.type == "order.unsettled" or (event.type == "order.timeout" and data.get("reason")):
            # acked, yet neither its trade nor the account settles it; or a timeout the run after a
            # restart could not settle (only those carry a reason): nothing more will come, so it is no
            # longer in flight; it is listed apart from the fills, since it may not have happened
            self.in_flight.pop(order_id, None)
            self.recent.appendleft(OrderLine(order_id, kind, "unsettled", message=data.get("reason"), dry_run=dry_run))
        elif event.type == "order.ack" and data.get("success") is not True:
            return  # a failing ack: its order.rejected follows
        else:
            self.in_flight[order_id] = OrderLine(order_id, kind, STATE_BY_CHANNEL[event.type], dry_run=dry_run)
