"""The request verbs both transports share (ZeroMQ ROUTER and WebSocket).

Reading is open to every client; anything that changes state is a control command and needs
`VECTRA_AUTH_TOKEN` when one is set. Keeping the rules here means the two transports cannot
disagree on who may do what.
"""

from __future__ import annotations

import asyncio
import hmac
import time
from itertools import chain, islice
from typing import Any, AsyncIterator, Iterator

from core.contracts.component import CommandError
from core.contracts.envelope import Envelope
from core.contracts.history import History
from core.contracts.patterns import ChannelFilter
from core.contracts.requests import (
    BUILT_IN_ACTIONS, Health, Ping, Request, RequestError, Snapshot, decode_request, error_reply, validate_request,
    with_id,
)
from core.foundation import Foundation

HISTORY_BATCH = 2000  # envelopes read from disk per trip to the worker thread


def gap_message(first: int, last: int) -> dict[str, Any]:
    return {"type": "gap", "from_seq": first, "to_seq": last}


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
    def served(self) -> frozenset[str]:
        """Every action this daemon answers: the one list an unknown action is told, on every path."""
        return BUILT_IN_ACTIONS | self.foundation.commands.keys()

    def parse(self, payload: bytes | str, max_bytes: int) -> Request:
        """One message from a transport as a request; raises `RequestError` (its reply says why)."""
        return decode_request(payload, max_bytes, self.served)

    def validate(self, fields: dict[str, Any]) -> Request:
        """A request built in-process (the console's commands); raises `RequestError`."""
        return validate_request(fields, self.served)

    def check_pattern_count(self, count: int, request: Request, counted: str) -> None:
        """Refuse a request that brings `count` channel patterns where `VECTRA_MAX_PATTERNS` is the
        limit (raises `RequestError`; `counted` says what was counted). Each new pattern is compiled
        and tried on every channel, so their number is the cost a client without a token could
        otherwise make the whole daemon pay."""
        limit = self.foundation.settings.max_patterns
        if count > limit:
            raise RequestError(
                "too_many_patterns",
                f"{count} channel patterns {counted}; the limit is {limit} (VECTRA_MAX_PATTERNS): "
                "use fewer, wider globs such as `game.*`",
                request.id,
            )

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
        A hole is announced only for numbers that held events: the block a restart reserved and
        never used (`sys.start.data.skipped`) is not a loss, and a browser must not report one.
        """
        cursor = max(1, from_seq)
        while self.history is not None and cursor < self._ring_start():
            before = cursor
            reader = self.history.read_range(cursor, self._ring_start() - 1)
            while batch := await asyncio.to_thread(_take, reader, HISTORY_BATCH):
                for envelope in batch:
                    if envelope.seq < cursor:
                        continue
                    for gap in self._holes(cursor, envelope.seq - 1, envelope):
                        yield gap
                    cursor = envelope.seq + 1
                    if wanted(envelope.type):
                        yield envelope
            if cursor == before:
                break
        held = self.foundation.bus.ring.since(cursor)
        first = next(held, None)
        first_held = first.seq if first is not None else self.foundation.bus.last_seq + 1
        for gap in self._holes(cursor, first_held - 1, first):
            yield gap
        for envelope in chain((first,), held) if first is not None else ():
            if wanted(envelope.type):
                yield envelope

    def _holes(self, first: int, last: int, following: Envelope | None) -> list[dict[str, Any]]:
        """The gap messages for the missing numbers first..last (none when first > last), without
        the numbers a restart skipped: this run's block, and the block the run that `following`
        starts announced on its `sys.start`."""
        if first > last:
            return []
        unused = [self.foundation.seqstore.resume.skipped, skipped_by(following)]
        return [gap_message(a, b) for a, b in without(first, last, [block for block in unused if block])]

    def _ring_start(self) -> int:
        first = self.foundation.bus.ring.first_seq
        return first if first is not None else self.foundation.bus.last_seq + 1

    async def handle(self, request: Request, *, authorized: bool = False) -> dict[str, Any]:
        """The one reply to ping, snapshot, health and control commands, with the request's `id`
        (replay and subscribe stream, so the transport that answers them does it itself)."""
        return with_id(request.id, await self._answer(request, authorized))

    async def _answer(self, request: Request, authorized: bool) -> dict[str, Any]:
        if isinstance(request, Ping):
            return {"type": "pong", "seq": self.foundation.bus.last_seq, "ts": int(time.time() * 1000)}
        if isinstance(request, Snapshot):
            return self.foundation.snapshot()
        if isinstance(request, Health):
            return {"type": "health", "data": self.foundation.health().model_dump()}
        if request.only_on is not None:
            return error_reply("bad_request", request.only_on)
        if request.changes_state and not (authorized or self.token_ok(request.token)):
            return error_reply("unauthorized", unauthorized_message(request.token))
        try:
            return await self.foundation.command(request)
        except CommandError as exc:
            return error_reply(exc.code, exc.message)


def unauthorized_message(presented: object) -> str:
    """A missing token and a wrong one need different fixes: say which it was (never the token itself)."""
    if presented is None:
        return ("this command needs VECTRA_AUTH_TOKEN (field `token`); the vectra commands and core.client send "
                "it when VECTRA_AUTH_TOKEN or VECTRA_AUTH_TOKEN_FILE is set where they run")
    return "the `token` is not the daemon's VECTRA_AUTH_TOKEN: send the value the daemon was started with"


def skipped_by(envelope: Envelope | None) -> tuple[int, int] | None:
    """The numbers a new run reserved and never used, as its `sys.start` announced them."""
    if envelope is None or envelope.type != "sys.start":
        return None
    skipped = envelope.data.get("skipped")
    if not isinstance(skipped, dict):
        return None
    first, last = skipped.get("from"), skipped.get("to")
    return (first, last) if isinstance(first, int) and isinstance(last, int) else None


def without(first: int, last: int, blocks: list[tuple[int, int]]) -> list[tuple[int, int]]:
    """first..last (inclusive) minus the inclusive ranges in `blocks`, as inclusive ranges in order."""
    pieces = [(first, last)] if first <= last else []
    for low, high in blocks:
        cut = []
        for a, b in pieces:
            cut += [piece for piece in ((a, min(b, low - 1)), (max(a, high + 1), b)) if piece[0] <= piece[1]]
        pieces = cut
    return pieces


def _take(reader: Iterator[Envelope], count: int) -> list[Envelope]:
    return list(islice(reader, count))


class Transport:
    """What every transport starts from: the foundation it serves, its settings, and the `Requests`
    it answers and replays through, so reads, replays and the token rule are the same on each."""

    def __init__(self, foundation: Foundation, requests: Requests | None = None) -> None:
        self.foundation = foundation
        self.settings = foundation.settings
        self.requests = requests or Requests(foundation)
