"""The logged-in player's own figures, merged from the two feed events that carry them.

`playerUpdate` is the player's account as the server books it and always wins; the leaderboard entry
of `gameStatePlayerUpdate` lags behind it (captured: positionQty 0.002 there while playerUpdate already
said 0.003384584), so it only fills figures playerUpdate never gave, and the username.
"""

from __future__ import annotations

from typing import Any

from core.contracts.fields import as_str

# player.state field -> key in playerUpdate / leaderboardEntry
FIGURES: dict[str, str] = {
    "cash": "cash",
    "positionQty": "positionQty",
    "avgCost": "avgCost",
    "totalInvested": "totalInvested",
    "cumulativePnL": "cumulativePnL",
    "pnlPercent": "pnlPercent",
    "sidebet": "sideBet",
    "shortPosition": "shortPosition",
    "username": "username",
    "authenticated": "authenticated",
}


class PlayerBook:
    def __init__(self) -> None:
        self.figures: dict[str, Any] = dict.fromkeys(FIGURES)
        self.player_id: str | None = None
        self.game_id: str | None = None
        self._booked: set[str] = set()  # figures playerUpdate has given

    @property
    def updated(self) -> bool:
        """Whether a `playerUpdate` (the account as the server books it) came in this run."""
        return bool(self._booked)

    def state(self) -> dict[str, Any]:
        return {"playerId": self.player_id, **self.figures}

    def player_update(self, payload: Any) -> bool:
        """Take a `playerUpdate`; True when a figure changed."""
        if not isinstance(payload, dict):
            return False
        before = self.state()
        self.player_id = as_str(payload.get("id")) or self.player_id
        for name, key in FIGURES.items():
            if key in payload:
                self.figures[name] = payload[key]
                self._booked.add(name)
        return self.state() != before

    def leaderboard(self, payload: Any) -> dict[str, Any] | None:
        """Take a `gameStatePlayerUpdate`; the `player.state` data (its own keys kept), or None."""
        if not isinstance(payload, dict):
            return None
        entry = payload.get("leaderboardEntry")
        if isinstance(entry, dict):
            self.player_id = self.player_id or as_str(entry.get("id"))
            for name, key in FIGURES.items():
                if name not in self._booked and key in entry:
                    self.figures[name] = entry[key]
        self.game_id = as_str(payload.get("gameId")) or self.game_id
        return {**payload, **self.state()}

    def identity(self, payload: Any) -> bool:
        """Take a `usernameStatus`; True when the username changed."""
        if not isinstance(payload, dict) or not isinstance(payload.get("username"), str):
            return False
        changed = self.figures["username"] != payload["username"]
        self.figures["username"] = payload["username"]
        self.player_id = self.player_id or as_str(payload.get("id"))
        return changed
