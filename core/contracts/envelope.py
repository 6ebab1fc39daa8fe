"""The envelope: the one shape every published event has, on every transport and in every file.

An envelope is serialized exactly once (orjson, cached) however many subscribers it reaches, because
fan-out to ZeroMQ, WebSocket clients and the recorder would otherwise encode the same 5 KB tick
several times. What is kept for resume (the memory ring) is the compact form, the JSON bytes only:
a parsed 5 KB frame is about a hundred Python objects that the garbage collector would walk again
and again, and several times the memory.
"""

from __future__ import annotations

import time
from typing import Any

import orjson

SCHEMA_VERSION = 1


def now_ms() -> int:
    return time.time_ns() // 1_000_000


class Envelope:
    __slots__ = ("seq", "type", "timestamp", "gameId", "source", "_data", "_json")

    def __init__(
        self,
        seq: int,
        type: str,
        timestamp: int,
        gameId: str | None,
        source: str,
        data: dict[str, Any] | None = None,
        *,
        json: bytes | None = None,
        data_json: bytes | None = None,
    ) -> None:
        """`json`: the whole envelope already serialized; `data_json`: only its `data`, which the
        envelope's JSON then wraps as it is (a `raw.*` event around the payload it received)."""
        self.seq = seq
        self.type = type
        self.timestamp = timestamp
        self.gameId = gameId
        self.source = source
        self._data = data
        self._json = json if data_json is None else self._around(data_json)

    @property
    def data(self) -> dict[str, Any]:
        """The event's fields; a compact envelope decodes them on each access, keeping nothing."""
        if self._data is not None:
            return self._data
        return orjson.loads(self._json)["data"] if self._json is not None else {}

    def compact(self) -> "Envelope":
        return Envelope(self.seq, self.type, self.timestamp, self.gameId, self.source, json=self.to_json())

    @property
    def v(self) -> int:
        return SCHEMA_VERSION

    def as_dict(self) -> dict[str, Any]:
        return {
            "v": SCHEMA_VERSION,
            "seq": self.seq,
            "type": self.type,
            "timestamp": self.timestamp,
            "gameId": self.gameId,
            "source": self.source,
            "data": self.data,
        }

    def _around(self, data_json: bytes) -> bytes:
        head = orjson.dumps(
            {"v": SCHEMA_VERSION, "seq": self.seq, "type": self.type, "timestamp": self.timestamp,
             "gameId": self.gameId, "source": self.source}
        )
        return b"%b,\"data\":%b}" % (head[:-1], data_json)

    def to_json(self) -> bytes:
        if self._json is None:
            self._json = orjson.dumps(self.as_dict())
        return self._json

    @classmethod
    def from_dict(cls, raw: dict[str, Any]) -> "Envelope":
        return cls(
            seq=raw["seq"],
            type=raw["type"],
            timestamp=raw["timestamp"],
            gameId=raw.get("gameId"),
            source=raw["source"],
            data=raw.get("data") or {},
        )

    @classmethod
    def from_json(cls, blob: bytes | str) -> "Envelope":
        return cls.from_dict(orjson.loads(blob))

    def __repr__(self) -> str:
        return f"Envelope(seq={self.seq}, type={self.type!r}, gameId={self.gameId!r})"
