"""The fields of the typed channels (`game.tick`, `player.trade`), declared once, and their coercers.

Each field says its name on the channel, its type, the key the feed's payload carries it under and
the typed column of a recording it fills. The normalizer reads payloads through these tables, the
channel models are built from them and the recorder derives its typed Parquet columns from them, so
a field cannot be published, checked and recorded three slightly different ways. The coercers below
are the only ones: what the normalizer publishes is what the recorder stores.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from keyword import iskeyword
from typing import Any, Callable, Literal, get_args, get_origin

Phase = Literal["COOLDOWN", "PRESALE", "ACTIVE", "RUGGED", "UNKNOWN"]

# A recording's integer columns are int64: an integer beyond them is no usable value anywhere.
_INT64_MIN, _INT64_MAX = -(2**63), 2**63 - 1


def as_int(value: Any) -> int | None:
    """An integer, or None. JSON does not tell 2 from 2.0, so an integral float is that integer;
    a bool is not an integer."""
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    elif isinstance(value, bool) or not isinstance(value, int):
        return None
    return value if _INT64_MIN <= value <= _INT64_MAX else None


def as_float(value: Any) -> float | None:
    """A float, or None; an integer becomes its float (a bool is no number)."""
    if isinstance(value, float):
        return value
    if not isinstance(value, int) or isinstance(value, bool):
        return None
    try:
        return float(value)
    except OverflowError:  # an integer beyond any float
        return None


def as_bool(value: Any) -> bool | None:
    return value if isinstance(value, bool) else None


def as_str(value: Any) -> str | None:
    return value if isinstance(value, str) else None


_COERCERS: dict[Any, Callable[[Any], Any]] = {int: as_int, float: as_float, bool: as_bool, str: as_str}


def coercer_for(kind: Any) -> Callable[[Any], Any]:
    """The coercer of a field type: one of int, float, bool, str, or a Literal of strings."""
    if get_origin(kind) is Literal and all(isinstance(choice, str) for choice in get_args(kind)):
        return as_str
    return _COERCERS[kind]


@dataclass(frozen=True, slots=True)
class ChannelField:
    """One field of a typed channel; its coercer follows from its type."""

    name: str  # the key in the channel's `data`
    type: Any  # int, float, bool, str or a Literal of strings
    source: str | None  # the key in the feed's payload; None: the normalizer derives the value
    nullable: bool = True  # null when the payload lacks it or holds something else
    column: str | None = None  # the typed column of a recording it fills
    categorical: bool = False  # few distinct values: the column is dictionary-encoded
    coerce: Callable[[Any], Any] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "coerce", coercer_for(self.type))


TICK_FIELDS: tuple[ChannelField, ...] = (
    ChannelField("tickCount", int, "tickCount", column="tickCount"),
    ChannelField("price", float, "price", column="price"),
    ChannelField("active", bool, "active"),
    ChannelField("rugged", bool, "rugged"),
    ChannelField("phase", Phase, None, nullable=False, column="phase", categorical=True),
    ChannelField("cooldownTimer", int, "cooldownTimer"),
    ChannelField("cooldownPaused", bool, "cooldownPaused"),
    ChannelField("allowPreRoundBuys", bool, "allowPreRoundBuys"),
    ChannelField("tradeCount", int, "tradeCount"),
    ChannelField("connectedPlayers", int, "connectedPlayers"),
    ChannelField("backfilled", bool, None, nullable=False),
)

TRADE_FIELDS: tuple[ChannelField, ...] = (
    ChannelField("id", str, "id"),
    ChannelField("gameId", str, "gameId"),
    ChannelField("playerId", str, "playerId", column="playerId"),
    ChannelField("username", str, "username", column="username"),
    ChannelField("level", int, "level"),
    ChannelField("type", str, "type", column="tradeType", categorical=True),
    ChannelField("price", float, "price", column="price"),
    ChannelField("amount", float, "amount", column="amount"),
    ChannelField("qty", float, "qty", column="qty"),
    ChannelField("tickIndex", int, "tickIndex", column="tickCount"),
    ChannelField("leverage", float, "leverage"),
    ChannelField("coin", str, "coin"),
    ChannelField("bonusPortion", float, "bonusPortion"),
    ChannelField("realPortion", float, "realPortion"),
)

# The channels whose fields fill a recording's typed columns. Their order, then the fields' order,
# is the order of those columns in the file: new columns go at the end.
TYPED_CHANNELS: dict[str, tuple[ChannelField, ...]] = {
    "game.tick": TICK_FIELDS,
    "player.trade": TRADE_FIELDS,
}


def data_reader(fields: tuple[ChannelField, ...]) -> Callable[..., dict[str, Any]]:
    """`read(payload, *, <derived fields>) -> data`: a channel's `data` from a feed payload, each
    field from its source key through its coercer, the derived ones given by keyword, in the table's
    order (the order subscribers see)."""
    items = [
        f"{f.name!r}: {f.name}" if f.source is None else f"{f.name!r}: _c{i}(get({f.source!r}))"
        for i, f in enumerate(fields)
    ]
    derived = [f.name for f in fields if f.source is None]
    return _compiled("payload", derived, "{" + ", ".join(items) + "}", fields)


def column_reader(
    fields: tuple[ChannelField, ...], columns: tuple[str, ...]
) -> Callable[[dict[str, Any]], tuple]:
    """`read(data) -> values`: for each of `columns`, the value of the field that fills it, read
    from the channel's published `data` through the coercer that wrote it; None where none does."""
    filled = {f.column: f"_c{i}(get({f.name!r}))" for i, f in enumerate(fields) if f.column is not None}
    return _compiled("data", [], "(" + "".join(filled.get(c, "None") + ", " for c in columns) + ")", fields)


def _compiled(
    mapping: str, keywords: list[str], expression: str, fields: tuple[ChannelField, ...]
) -> Callable[..., Any]:
    """A reader compiled once into a single expression, as `dataclasses` compiles `__init__`:
    readers run on every frame and every recorded row, and a loop over the table costs about twice
    the literal it replaces. Keys enter the source only as `repr` literals, names only checked."""
    for name in keywords:
        if not name.isidentifier() or iskeyword(name) or name == mapping:
            raise ValueError(f"a derived field must be named like a Python parameter, not {name!r}")
    parameters = ", ".join([mapping, "*", *keywords]) if keywords else mapping
    namespace: dict[str, Any] = {f"_c{i}": f.coerce for i, f in enumerate(fields)}
    exec(f"def read({parameters}):\n    get = {mapping}.get\n    return {expression}\n", namespace)
    return namespace["read"]
