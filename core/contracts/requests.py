"""Every request a client can send, one model per `action`, and the one parser for all of them.

The WebSocket session, the ZeroMQ ROUTER and the console all turn a message into a `Request` here, so
a field means the same thing and a mistake gets the same error reply on every path. Replies to bad
input keep the codes of docs/PROTOCOL.md: `too_large`, `bad_json`, `bad_request`, `unknown_action`.

JSON is read with the standard library on these small messages (never on the event stream) because
it can see a repeated key: orjson keeps the last one, and `{"action": "ping", "action": "reconnect"}`
must not run a reconnect.
"""

from __future__ import annotations

import json
from typing import Annotated, Any, ClassVar, Collection, Literal, Union, get_args

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, StrictBool, StrictInt, StrictStr, TypeAdapter
from pydantic import ValidationError

from core.contracts.patterns import MAX_PATTERN_CHARS

MAX_SEQ = 2**63 - 1  # seq numbers are signed 64-bit integers in the recordings and the seq file


def _one_pattern_is_a_list(value: object) -> object:
    return [value] if isinstance(value, str) else value


Seq = Annotated[StrictInt, Field(ge=0, le=MAX_SEQ)]
Patterns = Annotated[
    list[Annotated[StrictStr, Field(min_length=1, max_length=MAX_PATTERN_CHARS)]],
    Field(min_length=1),
    BeforeValidator(_one_pattern_is_a_list),
]

# What a client is told for each field it got wrong: the rule, not pydantic's wording.
FIELD_RULES = {
    "from_seq": f"`from_seq` must be a non-negative integer (at most {MAX_SEQ})",
    "channels": f"`channels` must be a non-empty list of channel patterns (each 1 to {MAX_PATTERN_CHARS} characters)",
    "on": '"record" needs "on": true or false',
    "op": '`op` must be "status" or "relaunch"',
    "id": "`id` must be a string or an integer",
    "token": "`token` must be a string",
    "reason": "`reason` must be a string",
}


class _Request(BaseModel):
    """Fields every request may carry; fields a request does not use are ignored (the contract grows)."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    id: StrictStr | StrictInt | None = None
    token: StrictStr | None = None

    changes_state: ClassVar[bool] = False  # a control command: needs VECTRA_AUTH_TOKEN when one is set
    only_on: ClassVar[str | None] = None  # the one transport that answers it, with what to use elsewhere


class Ping(_Request):
    action: Literal["ping"]


class Snapshot(_Request):
    action: Literal["snapshot"]


class Health(_Request):
    action: Literal["health"]


class Subscribe(_Request):
    action: Literal["subscribe"]
    channels: Patterns
    from_seq: Seq | None = None
    only_on: ClassVar[str | None] = "`subscribe` is WebSocket only: ZeroMQ subscribers use the PUB socket's prefix filter"


class Unsubscribe(_Request):
    action: Literal["unsubscribe"]
    channels: Patterns
    only_on: ClassVar[str | None] = "`unsubscribe` is WebSocket only: ZeroMQ subscribers use the PUB socket's prefix filter"


class Replay(_Request):
    action: Literal["replay"]
    from_seq: Seq
    channels: Patterns = ["*"]
    only_on: ClassVar[str | None] = "`replay` is ZeroMQ only: on the WebSocket, `subscribe` with `from_seq` resumes"


class Reconnect(_Request):
    action: Literal["reconnect"]
    changes_state: ClassVar[bool] = True


class Record(_Request):
    action: Literal["record"]
    on: StrictBool
    changes_state: ClassVar[bool] = True


class RecordStatus(_Request):
    action: Literal["record_status"]


class Chrome(_Request):
    action: Literal["chrome"]
    op: Literal["status", "relaunch"]
    changes_state: ClassVar[bool] = True


class Order(_Request):
    """The order's own fields (`kind`, `order_id`, `amount_sol`, ...) are checked by the desk, which
    answers a malformed order with `bad_order` (core/contracts/orders.py)."""

    model_config = ConfigDict(extra="allow", frozen=True)
    action: Literal["order"]
    changes_state: ClassVar[bool] = True

    def order_fields(self) -> dict[str, Any]:
        return dict(self.model_extra or {})


class OrdersHalt(_Request):
    action: Literal["orders_halt"]
    reason: StrictStr = "operator"
    changes_state: ClassVar[bool] = True


class OrdersResume(_Request):
    action: Literal["orders_resume"]
    changes_state: ClassVar[bool] = True


class OrdersStatus(_Request):
    action: Literal["orders_status"]


class Player(_Request):
    action: Literal["player"]


Request = Annotated[
    Union[
        Ping, Snapshot, Health, Subscribe, Unsubscribe, Replay, Reconnect, Record, RecordStatus, Chrome,
        Order, OrdersHalt, OrdersResume, OrdersStatus, Player,
    ],
    Field(discriminator="action"),
]
REQUEST_MODELS: tuple[type[_Request], ...] = get_args(get_args(Request)[0])
ACTIONS = frozenset(get_args(model.model_fields["action"].annotation)[0] for model in REQUEST_MODELS)
# Answered by every foundation itself; the other actions are commands that components register.
BUILT_IN_ACTIONS = frozenset({"ping", "snapshot", "health", "subscribe", "unsubscribe", "replay"})
_adapter: TypeAdapter[Request] = TypeAdapter(Request)


class RequestError(Exception):
    """A request refused before it runs; `reply()` is the error message the client gets."""

    def __init__(self, code: str, message: str, request_id: str | int | None = None) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.request_id = request_id

    def reply(self) -> dict[str, Any]:
        return with_id(self.request_id, error_reply(self.code, self.message))


def error_reply(code: str, message: str) -> dict[str, Any]:
    return {"type": "error", "data": {"code": code, "message": message}}


def with_id(request_id: str | int | None, reply: dict[str, Any]) -> dict[str, Any]:
    """Echo the request's `id`, so a client can match replies to requests."""
    return reply if request_id is None else {**reply, "id": request_id}


def internal_error(request: Request) -> dict[str, Any]:
    """The reply to a request that failed inside the foundation (the log has the traceback)."""
    return with_id(request.id, error_reply("internal", f"{request.action!r} failed inside the foundation (logged)"))


def unknown_action(action: str, served: Collection[str]) -> str:
    """The one wording of an unknown action, listing what this daemon answers, on every transport."""
    return f"unknown action {action!r}; known: {', '.join(sorted(served))}"


def decode_request(payload: bytes | str, max_bytes: int, served: Collection[str]) -> Request:
    """A request from one message; raises `RequestError` with the reply that explains what is wrong."""
    size = len(payload.encode() if isinstance(payload, str) else payload)
    if size > max_bytes:
        raise RequestError("too_large", f"request of {size} bytes; the limit is {max_bytes}")
    try:
        fields = json.loads(payload, object_pairs_hook=_refuse_repeated_keys, parse_constant=_refuse_constant)
    except _RepeatedKey as exc:
        raise RequestError("bad_request", f"key {exc.key!r} appears twice in one object; send each key once") from None
    except (ValueError, RecursionError) as exc:  # JSONDecodeError and UnicodeDecodeError are ValueErrors
        raise RequestError("bad_json", f"request is not JSON: {exc}") from None
    return validate_request(fields, served)


def validate_request(fields: object, served: Collection[str]) -> Request:
    """A request from already-decoded JSON (the console builds its commands as dicts)."""
    if not isinstance(fields, dict):
        raise RequestError("bad_request", "a request is a JSON object with an `action` field")
    raw_id = fields.get("id")
    request_id = raw_id if isinstance(raw_id, (str, int)) and not isinstance(raw_id, bool) else None
    action = fields.get("action")
    if not isinstance(action, str):
        raise RequestError("bad_request", 'missing `action` (a string), e.g. {"action": "ping"}', request_id)
    if action not in served or action not in ACTIONS:
        raise RequestError("unknown_action", unknown_action(action, served), request_id)
    try:
        return _adapter.validate_python(fields)
    except ValidationError as exc:
        raise RequestError("bad_request", _explain(exc), request_id) from None


def _explain(exc: ValidationError) -> str:
    """Each wrong field's rule and what was given instead; a client fixes it without the docs."""
    problems = []
    for error in exc.errors(include_url=False):
        field = str(error["loc"][1]) if len(error["loc"]) > 1 else ""
        rule = FIELD_RULES.get(field, f"`{field}`: {error['msg']}")
        given = "missing" if error["type"] == "missing" else f"got {_shortened(error['input'])}"
        problems.append(f"{rule} ({given})")
    return "; ".join(dict.fromkeys(problems))


def _shortened(value: object, limit: int = 60) -> str:
    text = json.dumps(value, default=repr)
    return text if len(text) <= limit else text[:limit] + "..."


class _RepeatedKey(ValueError):
    def __init__(self, key: str) -> None:
        super().__init__(key)
        self.key = key


def _refuse_repeated_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    fields = dict(pairs)
    if len(fields) != len(pairs):
        seen: set[str] = set()
        raise _RepeatedKey(next(key for key, _ in pairs if key in seen or seen.add(key)))
    return fields


def _refuse_constant(name: str) -> None:
    raise ValueError(f"{name} is not JSON")
