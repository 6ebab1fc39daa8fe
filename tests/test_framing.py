"""Wire framing: every packet shape the real feed uses, and every way a frame can be broken."""

from __future__ import annotations

import base64

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from core.framing import FrameError, PacketDecoder, decode_polling_payload, split_engineio, unwrap_event
from core.normalizer import Normalizer

LIMIT = 1024 * 1024


def decode(text: str):
    return PacketDecoder(LIMIT).feed(text)


def test_real_tick_packet(key_samples):
    frame = key_samples["05_active_midgame"]
    packet = decode("2" + orjson.dumps(["gameStateUpdate", frame["data"]]).decode())
    event = unwrap_event(packet)
    assert (event.name, event.payload, event.trace, event.ack_id) == ("gameStateUpdate", frame["data"], None, None)


def test_traced_trade_packet_puts_payload_last_and_keeps_trace(key_samples):
    trade = key_samples["06_trade_buy"]["data"]
    trace = {"__trace": True, "traceparent": "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"}
    event = unwrap_event(decode("2" + orjson.dumps(["standard/newTrade", trace, trade]).decode()))
    assert event.payload == trade and event.trace == trace and event.extra_args == []


def test_namespace_and_ack_id():
    packet = decode('2/game,17["ping",{"a":1}]')
    assert (packet.namespace, packet.ack_id) == ("/game", 17)
    ack = decode('351[{"ok":true}]')
    assert (ack.kind, ack.ack_id, ack.data) == ("ack", 51, [{"ok": True}])


def test_binary_event_waits_for_its_attachment():
    decoder = PacketDecoder(LIMIT)
    assert decoder.feed('51-["upload",{"_placeholder":true,"num":0}]') is None
    packet = decoder.feed(b"\x00\x01\xff")
    event = unwrap_event(packet)
    assert event.payload == {"_binary": base64.b64encode(b"\x00\x01\xff").decode()}


def test_engineio_split():
    assert split_engineio('42["x",{}]') == ("4", '2["x",{}]')
    assert split_engineio("3probe") == ("3", "probe")
    with pytest.raises(FrameError):
        split_engineio("x")


def test_polling_payload_splits_into_engineio_packets_in_order_with_binary_decoded():
    attachment = b"\x00\x01\xff"
    body = "\x1e".join(['0{"sid":"abc"}', '451-["upload",{"_placeholder":true,"num":0}]',
                        "b" + base64.b64encode(attachment).decode(), "2", '42["x",{}]'])
    packets = decode_polling_payload(body)
    assert packets == ['0{"sid":"abc"}', '451-["upload",{"_placeholder":true,"num":0}]', attachment, "2", '42["x",{}]']
    decoder = PacketDecoder(LIMIT)
    assert decoder.feed(split_engineio(packets[1])[1]) is None
    assert unwrap_event(decoder.feed(packets[2])).payload == {"_binary": base64.b64encode(attachment).decode()}


def test_polling_payload_keeps_a_bad_binary_packet_as_text_so_it_is_reported():
    packets = decode_polling_payload('42["a",1]\x1ebnot base64!\x1e42["b",2]')
    assert packets == ['42["a",1]', "bnot base64!", '42["b",2]']
    with pytest.raises(FrameError):
        split_engineio(packets[1])
    assert decode_polling_payload("") == []


@pytest.mark.parametrize(
    "frame, code",
    [
        ('2["gameStateUpdate", {"broken', "bad_json"),
        ("x[]", "bad_packet"),
        ("", "bad_packet"),
        ("9[]", "bad_packet"),
        ("5[]", "bad_packet"),
        ("²[]", "bad_packet"),
        ("51²-[]", "bad_packet"),
        (b"\x00\x01", "unexpected_binary"),
        ("2" + "[" + '"a",' * 400_000 + '"b"]', "frame_too_large"),
    ],
)
def test_broken_frames_raise_frame_errors_with_a_code(frame, code):
    with pytest.raises(FrameError) as caught:
        decode(frame)
    assert caught.value.code == code


def test_event_without_a_name_is_refused():
    with pytest.raises(FrameError) as caught:
        unwrap_event(decode("2[42]"))
    assert caught.value.code == "bad_event"


def test_text_frame_during_pending_binary_is_reported_and_the_decoder_recovers():
    decoder = PacketDecoder(LIMIT)
    decoder.feed('51-["upload",{"_placeholder":true,"num":0}]')
    with pytest.raises(FrameError):
        decoder.feed('2["gameStateUpdate",{}]')
    assert unwrap_event(decoder.feed('2["gameStateUpdate",{}]')).name == "gameStateUpdate"


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=8),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4),
    max_leaves=20,
)
FIELDS = ["gameId", "active", "rugged", "price", "tickCount", "cooldownTimer", "allowPreRoundBuys",
          "partialPrices", "cooldownPaused", "tradeCount", "gameHistory", "id", "type"]


@settings(max_examples=300, deadline=None)
@given(st.one_of(st.text(max_size=200), st.binary(max_size=64)))
def test_decoder_never_raises_anything_but_frame_errors(message):
    try:
        packet = PacketDecoder(LIMIT).feed(message)
        if packet is not None and packet.kind == "event":
            unwrap_event(packet)
    except FrameError:
        pass


@settings(max_examples=300, deadline=None)
@given(
    st.lists(
        st.tuples(
            st.sampled_from(["gameStateUpdate", "standard/newTrade", "playerUpdate", "other"]),
            st.one_of(json_values, st.dictionaries(st.sampled_from(FIELDS), json_values, max_size=8)),
        ),
        max_size=20,
    )
)
def test_normalizer_never_raises_on_random_frames(frames):
    from core.contracts.feed import FeedEvent

    normalizer = Normalizer()
    for name, payload in frames:
        out = normalizer.normalize(FeedEvent(name, payload), 1)
        assert out[0].type == f"raw.{name}"
        assert not any(d.type == "error" and d.data["code"] == "normalize_failed" for d in out)


@settings(max_examples=80, deadline=None)
@given(st.data())
def test_normalizer_never_raises_on_mutated_real_frames(key_samples, data):
    from core.contracts.feed import FeedEvent

    normalizer = Normalizer()
    for name in sorted(key_samples):
        frame = dict(key_samples[name]["data"])
        for field in data.draw(st.lists(st.sampled_from(FIELDS), max_size=3)):
            frame[field] = data.draw(json_values)
        out = normalizer.normalize(FeedEvent(key_samples[name]["event_type"], frame), 1)
        assert not any(d.type == "error" and d.data["code"] == "normalize_failed" for d in out)
