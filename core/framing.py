"""Engine.IO / Socket.IO wire framing, decoded by Vectra itself.

Both sources hand the core the same thing, the text (or bytes) of one Engine.IO message, so the
direct feed and the browser feed share one parser and one set of error events. python-socketio's
own decoder would swallow a malformed frame with a log line; a feed handler must report it instead.

Socket.IO packet text: ``<type>[<attachments>-][<namespace>,][<ack id>][<JSON>]``.
Engine.IO frame text (what a browser's WebSocket carries): ``<eio type><payload>``; ``4`` is a
message whose payload is one Socket.IO packet. An Engine.IO v4 long-polling response carries several
such packets separated by ``\x1e``, binary ones as ``b<base64>``.
"""

from __future__ import annotations

import base64
from dataclasses import dataclass, field
from typing import Any

import orjson

from core.contracts.feed import FeedEvent

CONNECT, DISCONNECT, EVENT, ACK, CONNECT_ERROR, BINARY_EVENT, BINARY_ACK = range(7)
PACKET_KINDS = {
    CONNECT: "connect",
    DISCONNECT: "disconnect",
    EVENT: "event",
    ACK: "ack",
    CONNECT_ERROR: "connect_error",
    BINARY_EVENT: "event",
    BINARY_ACK: "ack",
}

EIO_OPEN, EIO_CLOSE, EIO_PING, EIO_PONG, EIO_MESSAGE, EIO_UPGRADE, EIO_NOOP = "0123456"
EIO_PACKET_SEPARATOR = "\x1e"  # between the packets of one long-polling payload


class FrameError(Exception):
    """A frame that cannot be decoded; `code` is the `error` event's code."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


@dataclass(slots=True)
class Packet:
    kind: str
    namespace: str = "/"
    ack_id: int | None = None
    data: Any = None
    text: str = ""  # the JSON text `data` was parsed from


def split_engineio(frame: str) -> tuple[str, str]:
    """Split a browser-side Engine.IO text frame into its type and payload."""
    if not frame or frame[0] not in "0123456":
        raise FrameError("bad_engineio_frame", f"not an Engine.IO frame: {frame[:40]!r}")
    return frame[0], frame[1:]


def decode_polling_payload(body: str) -> list[str | bytes]:
    """The Engine.IO packets of one long-polling response body, in order: text packets as they are
    (for `split_engineio`), binary attachments decoded to bytes. A binary packet that is not base64
    stays text, so `split_engineio` rejects it and the core reports it, raw, with the rest intact."""
    packets: list[str | bytes] = []
    for packet in body.split(EIO_PACKET_SEPARATOR):
        if packet.startswith("b"):
            try:
                packets.append(base64.b64decode(packet[1:], validate=True))
            except ValueError:
                packets.append(packet)
        elif packet:
            packets.append(packet)
    return packets


ASCII_DIGITS = frozenset("0123456789")


def _is_ascii_number(text: str) -> bool:
    return bool(text) and all(char in ASCII_DIGITS for char in text)


def _parse_packet_text(text: str) -> tuple[int, int, Packet]:
    if not text or text[0] not in "0123456":
        raise FrameError("bad_packet", f"not a Socket.IO packet: {text[:40]!r}")
    ptype = int(text[0])
    pos = 1
    attachments = 0
    if ptype in (BINARY_EVENT, BINARY_ACK):
        dash = text.find("-", pos)
        if dash < 0 or not _is_ascii_number(text[pos:dash]):
            raise FrameError("bad_packet", "binary packet without an attachment count")
        attachments = int(text[pos:dash])
        pos = dash + 1
    namespace = "/"
    if pos < len(text) and text[pos] == "/":
        comma = text.find(",", pos)
        end = comma if comma >= 0 else len(text)
        namespace = text[pos:end]
        pos = end + 1 if comma >= 0 else end
    start = pos
    while pos < len(text) and text[pos] in ASCII_DIGITS:
        pos += 1
    ack_id = int(text[start:pos]) if pos > start else None
    body = text[pos:]
    try:
        data = orjson.loads(body) if body else None
    except orjson.JSONDecodeError as exc:
        raise FrameError("bad_json", f"packet body is not valid JSON: {exc}") from None
    return ptype, attachments, Packet(PACKET_KINDS[ptype], namespace, ack_id, data, body)


def _fill_placeholders(value: Any, attachments: list[bytes]) -> Any:
    if isinstance(value, dict):
        if value.get("_placeholder") is True and isinstance(value.get("num"), int):
            num = value["num"]
            if not 0 <= num < len(attachments):
                raise FrameError("bad_binary", f"placeholder {num} has no attachment")
            return {"_binary": base64.b64encode(attachments[num]).decode()}
        return {key: _fill_placeholders(item, attachments) for key, item in value.items()}
    if isinstance(value, list):
        return [_fill_placeholders(item, attachments) for item in value]
    return value


class PacketDecoder:
    """Turns Engine.IO message payloads into Socket.IO packets.

    Stateful because a binary event spans several messages: its text header, then one binary
    message per attachment. Attachments are republished base64-encoded (`{"_binary": "..."}`),
    since envelopes are JSON.
    """

    def __init__(self, max_bytes: int) -> None:
        self.max_bytes = max_bytes
        self._pending: tuple[Packet, int, list[bytes]] | None = None

    def reset(self) -> None:
        """Forget a half-received binary packet (the connection it belonged to is gone)."""
        self._pending = None

    def feed(self, message: str | bytes) -> Packet | None:
        """Decode one message; None while a binary packet still waits for attachments."""
        if len(message) > self.max_bytes:
            raise FrameError(
                "frame_too_large", f"frame of {len(message)} bytes exceeds {self.max_bytes}"
            )
        if isinstance(message, (bytes, bytearray, memoryview)):
            return self._attach(bytes(message))
        if self._pending is not None:
            self._pending = None
            raise FrameError("bad_binary", "text frame arrived while binary attachments were due")
        _, attachments, packet = _parse_packet_text(message)
        if attachments:
            self._pending = (packet, attachments, [])
            return None
        return packet

    def _attach(self, blob: bytes) -> Packet | None:
        if self._pending is None:
            raise FrameError("unexpected_binary", f"binary frame of {len(blob)} bytes with no packet")
        packet, wanted, received = self._pending
        received.append(blob)
        if len(received) < wanted:
            return None
        self._pending = None
        packet.data = _fill_placeholders(packet.data, received)
        return packet


def is_trace(value: Any) -> bool:
    return isinstance(value, dict) and value.get("__trace") is True


def unwrap_event(packet: Packet) -> FeedEvent:
    """Name, payload and trace of an event packet; the payload is the last non-trace argument."""
    args = packet.data
    if not isinstance(args, list) or not args or not isinstance(args[0], str):
        raise FrameError("bad_event", "event packet must be a list starting with the event name")
    name, rest = args[0], args[1:]
    trace = next((arg for arg in rest if is_trace(arg)), None)
    if trace is not None:
        rest = [arg for arg in rest if arg is not trace]
    payload = rest[-1] if rest else None
    return FeedEvent(
        name=name,
        payload=payload,
        trace=trace,
        extra_args=rest[:-1],
        ack_id=packet.ack_id,
        namespace=packet.namespace,
        payload_json=_payload_text(packet.text, name) if len(args) == 2 else None,
    )


def _payload_text(text: str, name: str) -> str | None:
    """The payload's own JSON text in `["name",<payload>]`, so the `raw.*` envelope can wrap it
    instead of encoding the parsed payload again (the bulk of a 5 KB tick). Only this plain
    shape, as the feed sends it: anything else (spaces, escapes in the name) is encoded as usual."""
    head = f'["{name}",'
    return text[len(head) : -1] if text.startswith(head) and text.endswith("]") else None
