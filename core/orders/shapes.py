"""The frame of every order kind, as data: which Socket.IO event, how its payload is built from the
order, whether a trace element goes first, and whether the shape was ever seen on the real site.

Only `buyOrder` was captured (../shared/fixtures/rugs/order-cycle.json, `buy_add_to_position`):
`4229["buyOrder",{"__trace":true,"traceparent":"00-…-01"},{"amount":0.002}]`, acked `4329[{"success":true}]`.
`requestSidebet` is documented by the site's own spec but not captured; `sellOrder {"percentage"}`
appears only in an illustrative example, and the short events are named as the simulator names them.
`live` mode refuses an `unverified` shape unless VECTRA_ORDERS_UNVERIFIED allows it.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass, field
from typing import Any, Literal

import orjson

from core.contracts.orders import Order
from core.orders.executors.base import OrderFrame

SOL_COIN_ADDRESS = "So11111111111111111111111111111111111111112"


@dataclass(frozen=True, slots=True)
class FromOrder:
    """A payload value taken from the order's field of this name."""

    field: str


@dataclass(frozen=True, slots=True)
class Shape:
    event: str
    payload: dict[str, Any] = field(default_factory=dict)  # key -> FromOrder or a constant, in wire order
    traced: bool = True
    status: Literal["captured", "unverified"] = "unverified"
    evidence: str = ""


SHAPES: dict[str, Shape] = {
    "buy": Shape("buyOrder", {"amount": FromOrder("amount_sol")}, status="captured",
                 evidence="order-cycle.json buy_add_to_position (DevTools capture)"),
    "sell": Shape("sellOrder", {"percentage": FromOrder("percent")},
                  evidence="order-cycle.json buy_sell_order_documented (illustrative, untraced)"),
    "sidebet": Shape("requestSidebet", {"amount": FromOrder("amount_sol"), "coinAddress": SOL_COIN_ADDRESS,
                                        "xPayout": FromOrder("x_payout")},
                     evidence="order-cycle.json sidebet_place_documented (site spec, not captured)"),
    "short_open": Shape("shortOpen", {"amount": FromOrder("amount_sol")}, evidence="the simulator's name"),
    "short_close": Shape("shortClose", {}, evidence="the simulator's name"),
}


def new_trace() -> tuple[str, dict[str, Any]]:
    """A W3C trace id and the trace element the page puts before an order's payload."""
    trace_id = secrets.token_hex(16)
    return trace_id, {"__trace": True, "traceparent": f"00-{trace_id}-{secrets.token_hex(8)}-01"}


def build_frame(order: Order, ack_id: int) -> OrderFrame:
    shape = SHAPES[order.kind]
    payload = {
        key: getattr(order, value.field) if isinstance(value, FromOrder) else value
        for key, value in shape.payload.items()
    }
    trace_id, trace = new_trace() if shape.traced else (None, None)
    args = [trace, payload] if trace is not None else [payload]
    text = f"42{ack_id}" + orjson.dumps([shape.event, *args]).decode()
    return OrderFrame(event=shape.event, args=args, ack_id=ack_id, trace_id=trace_id, text=text)


def trace_id_of(trace: Any) -> str | None:
    """The trace id of a `{"__trace": true, "traceparent": "00-<trace id>-<span>-01"}` element."""
    if not isinstance(trace, dict) or not isinstance(trace.get("traceparent"), str):
        return None
    parts = trace["traceparent"].split("-")
    return parts[1] if len(parts) == 4 else None


def frame_from_text(text: str) -> OrderFrame | None:
    """An order frame read back from its wire text (`42<ackId>["event", {trace}?, {payload}]`), as an
    executor that lets the page build it reports it; None when the text is not such a frame."""
    head, _, body = text.partition("[")
    if not head.startswith("42") or not head[2:].isdigit():
        return None
    try:
        event, *args = orjson.loads("[" + body)
    except (orjson.JSONDecodeError, ValueError):
        return None
    if not isinstance(event, str) or not args:
        return None
    trace_id = trace_id_of(args[0]) if len(args) > 1 else None
    return OrderFrame(event=event, args=args, ack_id=int(head[2:]), trace_id=trace_id, text=text)
