"""The channel catalogue: every channel Vectra can emit, with the model its `data` must satisfy.

This is the code side of `docs/PROTOCOL.md`; tests hold the two together, so a channel cannot be
emitted without being documented, and a documented example cannot drift from what the code checks.
Models allow extra fields: the contract only ever grows.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, create_model

from core.contracts.fields import TICK_FIELDS, TRADE_FIELDS, ChannelField, Phase

from core.contracts.orders import ORDER_CHANNELS, PlayerState

SourceName = Literal["socketio", "cdp", "replay", "nats"]
LinkState = Literal["connecting", "connected", "disconnected", "reconnecting", "failed"]


def family_of(channel: str) -> str:
    """A channel's family, the name before its first dot (`game`, `raw`, `sent`, ...): what
    `/health`'s `events_by_family` and `/metrics`' family label count by."""
    return channel.split(".", 1)[0]


class _Open(BaseModel):
    model_config = ConfigDict(extra="allow")


class Skipped(BaseModel):
    from_seq: int = Field(alias="from")
    to_seq: int = Field(alias="to")


class SysStart(_Open):
    previous_last_seq: int
    skipped: Skipped | None
    version: str
    sources: list[SourceName]


def _table_model(name: str, fields: tuple[ChannelField, ...], doc: str) -> type[_Open]:
    """A channel model built from its table of fields (core/contracts/fields.py): every field
    required (the normalizer always writes it), null allowed where the table says so."""
    definitions: dict[str, Any] = {f.name: (f.type | None if f.nullable else f.type, ...) for f in fields}
    return create_model(name, __base__=_Open, __module__=__name__, __doc__=doc, **definitions)


GameTick = _table_model("GameTick", TICK_FIELDS, "`game.tick`: a frame of the game, or a tick recovered.")
PlayerTrade = _table_model("PlayerTrade", TRADE_FIELDS, "`player.trade`: one trade by any player.")


class GamePhase(_Open):
    from_phase: Phase | None = Field(alias="from")
    to_phase: Phase = Field(alias="to")


class GameStart(_Open):
    tick: int
    price: float
    late: bool


class GameEnd(_Open):
    finalTick: int
    finalPrice: float
    peakPrice: float
    durationMs: int | None
    ticksSeen: int
    ticksExpected: int
    inferred: bool


class GameGap(_Open):
    gameId: str
    fromTick: int
    toTick: int


class ConnectionStatus(_Open):
    state: LinkState
    source: SourceName
    url: str | None
    attempt: int
    reason: str | None


class ErrorEvent(_Open):
    code: str
    message: str
    raw: str | None


class RawEvent(_Open):
    payload: Any
    trace: dict[str, Any] | None


class SentEvent(RawEvent):
    """`sent.*`: like `raw.*`, plus the frame as the page's WebSocket carried it."""

    frame: str | None = None


class RawAck(_Open):
    ackId: int
    args: list[Any]


class ChromeStatus(_Open):
    state: Literal["stopped", "launching", "running", "attached", "crashed"]
    pid: int | None
    profile: str
    cdp_port: int
    tab_url: str | None
    authenticated_as: str | None
    reason: str | None
    launches: int


class RecordingStatus(_Open):
    on: bool
    state: Literal["recording", "stopped", "failed", "behind"]
    path: str
    rows: int
    bytes: int
    wal_bytes: int
    since: int | None
    reason: str | None
    buffered: int


class RecordingGap(Skipped):
    """Events of an earlier run that are in no recording (`from`..`to`, inclusive)."""

    model_config = ConfigDict(extra="allow", populate_by_name=True)
    reason: str


class Passthrough(_Open):
    """The feed's own payload, unchanged (an object; a non-object payload sits under `payload`)."""


CHANNELS: dict[str, type[BaseModel]] = {
    "sys.start": SysStart,
    "game.tick": GameTick,
    "game.phase": GamePhase,
    "game.start": GameStart,
    "game.end": GameEnd,
    "game.gap": GameGap,
    "player.trade": PlayerTrade,
    "player.update": Passthrough,
    "player.identity": Passthrough,
    "player.state": PlayerState,
    "sidebet.placed": Passthrough,
    "sidebet.result": Passthrough,
    "connection.status": ConnectionStatus,
    "error": ErrorEvent,
    "raw.ack": RawAck,
    "chrome.status": ChromeStatus,
    "recording.status": RecordingStatus,
    "recording.gap": RecordingGap,
    **ORDER_CHANNELS,
    "raw.*": RawEvent,
    "sent.*": SentEvent,
}

# Feed events whose payload is republished unchanged on a named channel of their own.
# (`gameStatePlayerUpdate` grew into `player.state`, merged with `playerUpdate` by the orders' player book.)
PASSTHROUGH_EVENTS: dict[str, str] = {
    "playerUpdate": "player.update",
    "usernameStatus": "player.identity",
    "currentSidebet": "sidebet.placed",
    "currentSidebetResult": "sidebet.result",
}
