"""Orders, as every layer sees them: what a bot may ask for, why Vectra refuses, and the data of the
channels an order's life is published on.

Real money moves, so the request models are strict (an unknown field is an error, not ignored: a
typo such as `amount` for `amount_sol` must never turn into a default; `true` or `"50"` is not a
number, so a bug in a bot never becomes a 1 % sell or a 1 SOL buy), and every refusal carries one of a
fixed set of codes a bot can act on.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Annotated, Any, Literal, Union, get_args

from pydantic import BaseModel, ConfigDict, Field, StrictFloat, StrictInt, TypeAdapter, ValidationError, field_validator
from pydantic_core import PydanticCustomError

ORDER_ID_PATTERN = r"^[A-Za-z0-9_.:-]{1,64}$"
LAMPORTS_PER_SOL = 1_000_000_000  # SOL moves in whole lamports: a finer amount cannot be what was meant
JS_SAFE_INTEGER = 2**53 - 1  # the page is JavaScript: a larger integer does not reach it as sent
OrderKind = Literal["buy", "sell", "sidebet", "short_open", "short_close"]
OrderState = Literal["requested", "sent", "acked", "filled", "rejected", "timeout"]


class RejectCode(StrEnum):
    ORDERS_OFF = "orders_off"
    HALTED = "halted"
    NO_TOKEN = "no_token"
    LIMIT_ORDER_SOL = "limit_order_sol"
    LIMIT_GAME_SOL = "limit_game_sol"
    LIMIT_RATE = "limit_rate"
    FEED_STALE = "feed_stale"
    PHASE = "phase"
    NO_POSITION = "no_position"
    IN_FLIGHT = "in_flight"
    UNVERIFIED_SHAPE = "unverified_shape"
    NO_EXECUTOR = "no_executor"
    SERVER_REJECTED = "server_rejected"
    BAD_ORDER = "bad_order"
    NOT_DURABLE = "not_durable"


# --- the request ------------------------------------------------------------------------------------


class _Order(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    order_id: str = Field(pattern=ORDER_ID_PATTERN)

    @property
    def amount(self) -> float:
        """SOL this order puts at stake (0 for orders that take money out)."""
        return 0.0


class _Staking(_Order):
    amount_sol: StrictFloat = Field(gt=0, allow_inf_nan=False)

    @field_validator("amount_sol")
    @classmethod
    def _whole_lamports(cls, value: float) -> float:
        lamports = value * LAMPORTS_PER_SOL
        if lamports < 1 - 1e-6 or (lamports < JS_SAFE_INTEGER and abs(lamports - round(lamports)) > 1e-3):
            raise PydanticCustomError("lamports", "must be a whole number of lamports (at most 9 decimals, at least 1e-9 SOL)")
        return value

    @property
    def amount(self) -> float:
        return self.amount_sol


class BuyOrder(_Staking):
    kind: Literal["buy"]


class SellOrder(_Order):
    kind: Literal["sell"]
    percent: StrictInt = Field(ge=1, le=100)


class SidebetOrder(_Staking):
    kind: Literal["sidebet"]
    x_payout: StrictInt = Field(5, ge=2, le=JS_SAFE_INTEGER)


class ShortOpenOrder(_Staking):
    kind: Literal["short_open"]


class ShortCloseOrder(_Order):
    kind: Literal["short_close"]


Order = Annotated[
    Union[BuyOrder, SellOrder, SidebetOrder, ShortOpenOrder, ShortCloseOrder], Field(discriminator="kind")
]
_ORDER = TypeAdapter(Order)


class BadOrder(ValueError):
    """The request is not an order; the message names the first problem."""


def parse_order(fields: dict[str, Any]) -> Order:
    """The order's fields of an `{"action": "order", ...}` command, or `BadOrder` saying what is wrong."""
    try:
        return _ORDER.validate_python(fields)
    except ValidationError as exc:
        first = exc.errors()[0]
        if first["type"] in ("union_tag_invalid", "union_tag_not_found"):
            given = f" (got {fields['kind']!r})" if "kind" in fields else ""
            raise BadOrder(f"kind: must be one of {', '.join(get_args(OrderKind))}{given}") from None
        where = ".".join(str(part) for part in first["loc"] if part not in ("buy", "sell", "sidebet", "short_open", "short_close"))
        raise BadOrder(f"{where or 'order'}: {first['msg']}") from None


def order_fields(order: Order) -> dict[str, Any]:
    """The order as the channels and replies show it (its own fields, `kind` and `order_id` included)."""
    return order.model_dump()


# --- the channels -----------------------------------------------------------------------------------


class _Open(BaseModel):
    model_config = ConfigDict(extra="allow")


class _OrderEvent(_Open):
    order_id: str
    kind: OrderKind
    dryRun: bool


class OrderRequested(_OrderEvent):
    order: dict[str, Any]
    checks: list[str]
    executor: str | None


class OrderSent(_OrderEvent):
    executor: str | None
    frame: str
    event: str
    ackId: int | None  # None: the page built the frame (click) and it was not seen
    traceId: str | None
    sent: bool
    shape: Literal["captured", "unverified"]
    timing: dict[str, float] | None = None  # received, checked, durable, sent (epoch ms); none in a dry run


class OrderAck(_OrderEvent):
    ackId: int
    ack: list[Any]
    success: bool | None
    latency_ms: float
    timing: dict[str, float]  # order.sent's, plus acked (epoch ms)


class OrderFilled(_OrderEvent):
    matchedBy: Literal["trace", "fields", "sidebet", "position", "dry-run"]
    trade: dict[str, Any] | None
    price: float | None
    tickIndex: int | None


class OrderRejected(_OrderEvent):
    code: RejectCode
    message: str
    by: Literal["vectra", "server"]


class OrderTimeout(_OrderEvent):
    ackId: int
    waited_ms: float
    reason: str | None = None  # only after a restart, when the evidence cannot settle it: why it stays unknown


class OrderUnsettled(_OrderEvent):
    ackId: int | None
    reason: str  # why the account cannot settle an order the server acked with success (its trade unmatched)


class PlayerState(_Open):
    """The logged-in player's own state. Keeps every key `gameStatePlayerUpdate` carries (it was a
    passthrough of it) and adds the player's figures, merged from `playerUpdate` (which wins) and the
    leaderboard entry; a figure never seen yet is null."""

    cash: float | None
    positionQty: float | None
    avgCost: float | None
    totalInvested: float | None
    cumulativePnL: float | None
    pnlPercent: float | None
    sidebet: dict[str, Any] | None
    shortPosition: dict[str, Any] | None
    username: str | None
    authenticated: bool | None


ORDER_CHANNELS: dict[str, type[BaseModel]] = {
    "order.request": OrderRequested,
    "order.sent": OrderSent,
    "order.ack": OrderAck,
    "order.filled": OrderFilled,
    "order.rejected": OrderRejected,
    "order.timeout": OrderTimeout,
    "order.unsettled": OrderUnsettled,
}
