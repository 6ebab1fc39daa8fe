"""The simulator's options, apart from the server so that building the CLI stays cheap."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass
class SimOptions:
    host: str = "127.0.0.1"
    port: int = 8700
    speed: float = 1.0
    seed: int = 1
    anchor_ms: int | None = None  # None = now at start
    max_ticks: int | None = None  # cap game length (forced rug)
    trades_per_s: float = 3.0
    fault_every_s: float | None = None  # inject the next of `fault_kinds` this often
    fault_kinds: tuple[str, ...] = ("drop", "silence", "malformed", "duplicate", "reorder")
    starting_cash: float = 1.0  # SOL each new player starts with
    require_login: bool = False  # anonymous connections get failure acks instead of a guest player
