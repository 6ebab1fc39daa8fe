"""The request verbs both transports share (ZeroMQ ROUTER and WebSocket).

Reading is open to every client; anything that changes state is a control command and needs
`VECTRA_AUTH_TOKEN` when one is set. Keeping the rules here means the two transports cannot
disagree on who may do what.
"""

from __future__ import annotations

import asyncio
import hmac
import time
from itertools import islice
from typing import Any, AsyncIterator, Iterator

import orjson

from core.contracts.patterns import ChannelFilter, valid_patterns
from core.contracts.envelope import Envelope
from core.contracts.component import CommandError
from core.contracts.history import History
from core.foundation import Foundation

READ_ACTIONS = frozenset({"replay", "snapshot", "ping", "health", "subscribe", "unsubscribe"})
HISTORY_BATCH = 2000  # envelopes read from disk per trip to the worker thread


def error_reply(code: str, message: str) -> dict[str, Any]:
    return {"type": "error", "data": {"code": code, "message": message}}


def gap_message(first: int, last: int) -> dict[str, Any]:
    return {"type": "gap", "from_seq": first, "to_seq": last}


def parse_request(payload: bytes | str, max_bytes: int) -> tuple[dict[str, Any] | None, dict[str, Any] | None]:
    """The request, or the error reply that explains why it is not one."""
    size = len(payload.encode() if isinstance(payload, str) else payload)
    if size > max_bytes:
        return None, error_reply("too_large", f"request of {size} bytes; the limit is {max_bytes}")
    try:
        request = orjson.loads(payload)
    except orjson.JSONDecodeError as exc:
        return None, error_reply("bad_json", f"request is not JSON: {exc}")
    if not isinstance(request, dict):
        return None, error_reply("bad_request", "a request is a JSON object with an `action` field")
    if not isinstance(request.get("action"), str):
        return request, error_reply("bad_request", 'missing `action` (a string), e.g. {"action": "ping"}')
    return request, None


def parse_stream(request: dict[str, Any], default_channels: list[str] | None) -> tuple[int | None, list[str]] | dict[str, Any]:
    """`from_seq` and channel patterns of a `subscribe` or `replay` request, or the error reply."""
    from_seq = request.get("from_seq")
    if from_seq is not None and (type(from_seq) is not int or from_seq < 0):
        return error_reply("bad_request", "`from_seq` must be a non-negative integer")
    patterns = valid_patterns(request.get("channels", default_channels))
    if patterns is None:
        return error_reply("bad_request", "`channels` must be a non-empty list of channel patterns")
    return from_seq, patterns


def with_id(request: dict[str, Any], reply: dict[str, Any]) -> dict[str, Any]:
    """Echo the request's `id` (a string or an integer), so a client can match replies to requests."""
    request_id = request.get("id")
    return {**reply, "id": request_id} if isinstance(request_id, (str, int)) else reply


class Requests:
    def __init__(self, foundation: Foundation, history: History | None = None) -> None:
        self.foundation = foundation
        self._history = history
        token = foundation.settings.auth_token
        self._token = token.get_secret_value().encode() if token else None

    @property
    def history(self) -> History | None:
        """The one given, else the foundation's (the recorder's, when it is installed)."""
        return self._history if self._history is not None else self.foundation.history

    @property
    def requires_token(self) -> bool:
        return self._token is not None

    def token_ok(self, presented: object) -> bool:
        if self._token is None:
            return True
        return isinstance(presented, str) and hmac.compare_digest(presented.encode(), self._token)

    async def replay(self, from_seq: int, wanted: ChannelFilter) -> AsyncIterator[Envelope | dict[str, Any]]:
        """Every matching event with seq >= from_seq, oldest first; an explicit gap for a hole.

        Events older than the ring come from the recordings, read in a worker thread a batch at a
        time so that a resume spanning hours never stalls the loop. The ring moves on meanwhile,
        so the history is read again up to the ring's new start until it has nothing more.
        """
        cursor = max(1, from_seq)
        while self.history is not None and cursor < self._ring_start():
            before = cursor
            reader = self.history.read_range(cursor, self._ring_start() - 1)
            while batch := await asyncio.to_thread(_take, reader, HISTORY_BATCH):
                for envelope in batch:
                    if envelope.seq < cursor:
                        continue
                    if envelope.seq > cursor:
                        yield gap_message(cursor, envelope.seq - 1)
                    cursor = envelope.seq + 1
                    if wanted(envelope.type):
                        yield envelope
            if cursor == before:
                break
        held = self.foundation.bus.ring.since(cursor)
        first_held = held[0].seq if held else self.foundation.bus.last_seq + 1
        if cursor < first_held:
            yield gap_message(cursor, first_held - 1)
        for envelope in held:
            if wanted(envelope.type):
                yield envelope

    def _ring_start(self) -> int:
        first = self.foundation.bus.ring.first_seq
        return first if first is not None else self.foundation.bus.last_seq + 1

    async def handle(self, request: dict[str, Any], *, authorized: bool = False) -> dict[str, Any]:
        """Answer ping, snapshot, health and control commands (replay and subscribe stream, so
        the transports handle those themselves)."""
        action = request.get("action")
        if action == "ping":
            return {"type": "pong", "seq": self.foundation.bus.last_seq, "ts": int(time.time() * 1000)}
        if action == "snapshot":
            return self.foundation.snapshot()
        if action == "health":
            return {"type": "health", "data": self.foundation.health().model_dump()}
        if action in READ_ACTIONS:
            return error_reply("bad_request", f"{action!r} is not answered here")
        needs_token = action not in self.foundation.read_only_commands
        if needs_token and not (authorized or self.token_ok(request.get("token"))):
            return error_reply("unauthorized", "this command needs VECTRA_AUTH_TOKEN (field `token`)")
        try:
            return await self.foundation.command(request)
        except CommandError as exc:
            return error_reply(exc.code, exc.message)


def _take(reader: Iterator[Envelope], count: int) -> list[Envelope]:
    return list(islice(reader, count))
