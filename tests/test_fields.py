"""The one table of fields (core/contracts/fields.py): what Vectra publishes on `game.tick` and
`player.trade` is what a recording stores in its typed columns, and docs/RECORDING.md describes
exactly the columns a recording has."""

from __future__ import annotations

import copy
import re
from pathlib import Path

import orjson
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from core.config import load_settings
from core.contracts.envelope import Envelope
from core.contracts.fields import TYPED_CHANNELS
from core.recorder.schema import SCHEMA
from core.recorder.segment import Segment
from core.runtime import build_foundation

REPO = Path(__file__).resolve().parent.parent
INT64_MAX = 2**63 - 1


class Collector:
    """A subscriber of the bus, as every transport is: it keeps what was published."""

    def __init__(self) -> None:
        self.envelopes: list[Envelope] = []

    def deliver(self, envelope: Envelope) -> None:
        self.envelopes.append(envelope)


def publish(tmp_path: Path, frames: list[tuple[str, dict]]) -> list[Envelope]:
    """The feed frames through the daemon's own ingest path (framing, normalizer, sequencing, bus)."""
    foundation = build_foundation(load_settings({"data_dir": str(tmp_path / "data")}))
    collector = Collector()
    foundation.bus.subscribe(collector)
    try:
        for name, payload in frames:
            foundation.frame("socketio", "2" + orjson.dumps([name, payload]).decode(), 0)
    finally:
        foundation.seqstore.close()
    return collector.envelopes


def record(root: Path, envelopes: list[Envelope]) -> list[dict]:
    """The envelopes written as a recording segment is written, read back row by row."""
    segment = Segment(root, envelopes[0])
    for envelope in envelopes:
        segment.add(envelope)
    return pq.read_table(segment.close()).to_pylist()


def published(envelope: Envelope) -> dict:
    """The data exactly as a subscriber decodes it from the wire."""
    return orjson.loads(envelope.to_json())["data"]


def frames_with_odd_numbers(key_samples) -> list[tuple[str, dict]]:
    tick = copy.deepcopy(key_samples["05_active_midgame"]["data"])
    tick |= {"tickCount": 2.0, "price": 1, "tradeCount": INT64_MAX + 1, "partialPrices": None}
    trade = copy.deepcopy(key_samples["06_trade_buy"]["data"])
    trade |= {"tickIndex": INT64_MAX + 1, "amount": 1, "qty": True, "price": 2.5}
    return [("gameStateUpdate", tick), ("standard/newTrade", trade)]


def test_a_tick_with_tickcount_2_0_is_published_and_recorded_as_2(key_samples, tmp_path):
    envelopes = publish(tmp_path, frames_with_odd_numbers(key_samples))
    tick = next(e for e in envelopes if e.type == "game.tick")
    assert b'"tickCount":2,' in tick.to_json()
    assert published(tick)["tickCount"] == 2 and published(tick)["tradeCount"] is None
    (row,) = [row for row in record(tmp_path / "rec", envelopes) if row["type"] == "game.tick"]
    assert row["tickCount"] == 2 and row["price"] == 1.0


def test_every_typed_column_holds_what_was_published(key_samples, tmp_path):
    envelopes = publish(tmp_path, frames_with_odd_numbers(key_samples))
    rows = record(tmp_path / "rec", envelopes)
    checked = 0
    for envelope, row in zip(envelopes, rows, strict=True):
        data = published(envelope)
        assert orjson.loads(row["data"]) == data
        for field in TYPED_CHANNELS.get(envelope.type, ()):
            if field.column is not None:
                assert row[field.column] == data[field.name], (envelope.type, field.name)
                checked += 1
    assert checked == 3 + 7, "a tick fills three typed columns, a trade seven"
    trade = next(row for row in rows if row["type"] == "player.trade")
    assert (trade["tickCount"], trade["amount"], trade["qty"]) == (None, 1.0, None), "beyond int64, a bool: no value"


def test_an_envelope_with_an_integral_float_is_recorded_as_the_integer(tmp_path):
    """What reaches the recorder without passing the normalizer (a replay of another version's
    recording) is read with the same coercers: 2.0 is the integer 2, as the normalizer publishes it."""
    data = {"tickCount": 2.0, "price": 3, "phase": "ACTIVE", "backfilled": False}
    (row,) = record(tmp_path, [Envelope(1, "game.tick", 1_770_365_099_281, "g", "replay", data)])
    assert (row["tickCount"], row["price"], row["phase"]) == (2, 3.0, "ACTIVE")


DOC_TYPES = {
    "int64": pa.int64(),
    "float64": pa.float64(),
    "string": pa.string(),
    "dictionary string": pa.dictionary(pa.int32(), pa.string()),
    "timestamp[ms, UTC]": pa.timestamp("ms", tz="UTC"),
}


def test_recording_md_documents_every_column_in_order_with_its_type():
    doc = (REPO / "docs" / "RECORDING.md").read_text()
    section = doc.split("\n## Schema", 1)[1].split("\n## ", 1)[0]
    rows = re.findall(r"^\| `([^`]+)` \| ([^|]+?) \|", section, flags=re.M)
    assert [(name, DOC_TYPES[kind]) for name, kind in rows] == [(f.name, f.type) for f in SCHEMA]


@pytest.mark.parametrize("channel", sorted(TYPED_CHANNELS))
def test_recording_md_says_which_field_fills_each_typed_column(channel):
    doc = (REPO / "docs" / "RECORDING.md").read_text()
    contents = dict(re.findall(r"^\| `([^`]+)` \| [^|]+ \| (.+) \|$", doc, flags=re.M))
    for field in TYPED_CHANNELS[channel]:
        if field.column is not None:
            assert f"`{channel}`" in contents[field.column] and f"`{field.name}`" in contents[field.column]
