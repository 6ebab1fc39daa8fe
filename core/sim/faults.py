"""Validation of `POST /admin/fault` bodies, kept apart from the server so the rules are testable
and the error messages stay precise (callers are scripts and tests that need to know what was wrong)."""

from __future__ import annotations

from dataclasses import dataclass

DEFAULT_OVERSIZED_BYTES = 5 * 1024 * 1024
MAX_OVERSIZED_BYTES = 64 * 1024 * 1024
MAX_SECONDS = 3600
MAX_COUNT = 10_000

# kind -> {field: (default, minimum, maximum, integer-only)}; a default of None means required.
FIELDS: dict[str, dict[str, tuple]] = {
    "drop": {"seconds": (0, 0, MAX_SECONDS, False)},
    "silence": {"seconds": (None, 0, MAX_SECONDS, False)},
    "malformed": {},
    "truncated": {},
    "binary": {},
    "oversized": {"bytes": (DEFAULT_OVERSIZED_BYTES, 1, MAX_OVERSIZED_BYTES, True)},
    "duplicate": {"count": (1, 1, MAX_COUNT, True)},
    "reorder": {"count": (1, 1, MAX_COUNT, True)},
}
KINDS = tuple(FIELDS)
# `POST /admin/acks`: acks of orders dropped or held back, or the player's own trade frame of an order
# dropped, while the orders themselves still execute.
ACK_FIELDS: dict[str, tuple] = {"drop": (0, 0, MAX_COUNT, True), "delay_ms": (0, 0, MAX_SECONDS * 1000, False),
                                "drop_trades": (0, 0, MAX_COUNT, True)}


class FaultError(ValueError):
    """Bad fault request; the message is sent back to the caller as is."""


@dataclass(frozen=True)
class Fault:
    kind: str
    seconds: float = 0
    count: int = 1
    bytes: int = DEFAULT_OVERSIZED_BYTES


def parse_fault(body: object) -> Fault:
    if not isinstance(body, dict):
        raise FaultError("body must be a JSON object like {\"kind\": \"drop\", \"seconds\": 5}")
    kind = body.get("kind")
    if kind not in FIELDS:
        raise FaultError(f"unknown or missing kind {kind!r}; expected one of: {', '.join(KINDS)}")
    fields = FIELDS[kind]
    extra = sorted(set(body) - set(fields) - {"kind"})
    if extra:
        raise FaultError(f"unexpected field(s) for {kind}: {', '.join(extra)}")
    values = {name: _number(kind, name, body.get(name), *spec) for name, spec in fields.items()}
    return Fault(kind, **values)


def parse_ack_fault(body: object) -> dict:
    """Only the fields given change; `{"drop": 2}` drops the next two acks, `{"delay_ms": 0}` ends delays,
    `{"drop_trades": 1}` withholds the next order's `standard/newTrade`."""
    if not isinstance(body, dict) or not body:
        raise FaultError('body must be a JSON object like {"drop": 1} or {"delay_ms": 500}')
    extra = sorted(set(body) - set(ACK_FIELDS))
    if extra:
        raise FaultError(f"unexpected field(s): {', '.join(extra)}; expected drop, delay_ms and/or drop_trades")
    return {name: _number("acks", name, body[name], *ACK_FIELDS[name]) for name in body}


def _number(kind: str, name: str, value: object, default, low, high, integer: bool):
    if value is None:
        if default is None:
            raise FaultError(f"{kind} needs {name!r}")
        return default
    wanted = int if integer else (int, float)
    if isinstance(value, bool) or not isinstance(value, wanted):
        raise FaultError(f"{name!r} must be {'an integer' if integer else 'a number'}, got {value!r}")
    if not low <= value <= high:
        raise FaultError(f"{name!r} must be between {low} and {high}, got {value!r}")
    return value
