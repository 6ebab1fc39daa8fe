"""The Parquet schema of a recording, and the conversions between envelopes and its rows.

The whole envelope is kept as JSON text (`data`), so nothing the feed sent is ever lost to a schema;
the typed columns beside it are a convenience for analysts and may only grow; they come from the
table of fields (core/contracts/fields.py), read through the coercers that wrote the published data.
The schema version in the file metadata tells a reader which columns to expect.
"""

from __future__ import annotations

from array import array
from itertools import accumulate
from typing import Any, Iterator

import orjson
import pyarrow as pa

from core.contracts.envelope import Envelope
from core.contracts.fields import TYPED_CHANNELS, column_reader

SCHEMA_VERSION = 1
# Parquet would try dictionary encoding and min/max statistics on the multi-kilobyte `data` text too:
# wasted work (every value differs) that more than doubles the encoding time.
DICTIONARY_COLUMNS = ["type", "source", "phase", "tradeType", "gameId", "playerId", "username"]
SCHEMA_VERSION_KEY = b"vectra.schema_version"
_DATA_KEY = b'"data":'
_DICT = pa.dictionary(pa.int32(), pa.string())

_ARROW = {int: pa.int64(), float: pa.float64(), str: pa.string()}


def _typed_columns() -> dict[str, pa.Field]:
    """The typed columns, from the table of fields: a field with a `column` fills it. Columns appear
    in the table's order, so a new one goes last; two channels filling one column agree on its type."""
    columns: dict[str, pa.Field] = {}
    for fields in TYPED_CHANNELS.values():
        for f in fields:
            if f.column is None:
                continue
            column = pa.field(f.column, _DICT if f.categorical else _ARROW[f.type])
            if columns.setdefault(f.column, column) != column:
                raise TypeError(f"recording column {f.column!r} is typed twice: {columns[f.column]} and {column}")
    return columns


_TYPED_COLUMNS = _typed_columns()
_TYPED = tuple(_TYPED_COLUMNS)

SCHEMA = pa.schema(
    [
        pa.field("seq", pa.int64(), nullable=False),
        pa.field("type", _DICT, nullable=False),
        pa.field("timestamp", pa.timestamp("ms", tz="UTC"), nullable=False),
        pa.field("gameId", pa.string()),
        pa.field("source", _DICT, nullable=False),
        pa.field("data", pa.string(), nullable=False),
        *_TYPED_COLUMNS.values(),
    ],
    metadata={SCHEMA_VERSION_KEY: str(SCHEMA_VERSION).encode()},
)


STATISTICS_COLUMNS = [name for name in SCHEMA.names if name != "data"]
_NO_FIELDS = (None,) * len(_TYPED)
_TYPED_BY_CHANNEL = {channel: column_reader(fields, _TYPED) for channel, fields in TYPED_CHANNELS.items()}


def data_json(envelope: Envelope) -> memoryview:
    """The `data` member of the envelope's cached JSON, without encoding or copying it again.

    `data` is the last key of `Envelope.as_dict`, and inside a JSON string a quote is always
    escaped, so the first unescaped `"data":` is the key itself.
    """
    blob = envelope.to_json()
    return memoryview(blob)[blob.index(_DATA_KEY) + len(_DATA_KEY) : -1]


def _string_column(parts: list[memoryview]) -> pa.Array:
    """An Arrow string column built from one joined buffer and its offsets: 5 KB values are the
    bulk of a recording, and converting them one by one (copy and UTF-8 check each) was the
    writer's largest cost. orjson only ever writes valid UTF-8."""
    offsets = array("i", [0])
    offsets.extend(accumulate(len(part) for part in parts))
    return pa.StringArray.from_buffers(len(parts), pa.py_buffer(offsets), pa.py_buffer(b"".join(parts)))


def to_table(envelopes: list[Envelope]) -> pa.Table:
    """One batch of envelopes as an Arrow table of the recording schema."""
    typed = [
        (_TYPED_BY_CHANNEL[e.type](e.data) if e.type in _TYPED_BY_CHANNEL else _NO_FIELDS) for e in envelopes
    ]
    columns: dict[str, list[Any]] = {
        "seq": [e.seq for e in envelopes],
        "type": [e.type for e in envelopes],
        "timestamp": [e.timestamp for e in envelopes],
        "gameId": [e.gameId for e in envelopes],
        "source": [e.source for e in envelopes],
    }
    for index, name in enumerate(_TYPED):
        columns[name] = [row[index] for row in typed]
    arrays = [
        _string_column([data_json(e) for e in envelopes])
        if field.name == "data"
        else pa.array(columns[field.name], type=field.type)
        for field in SCHEMA
    ]
    return pa.Table.from_arrays(arrays, schema=SCHEMA)


def envelope_of_line(line: bytes) -> Envelope:
    """An envelope around its JSON line (as `Envelope.to_json` wrote it), decoding only what precedes
    `data`: the 5 KB payload of a `raw.*` event is copied into its column as it is, never parsed."""
    head = orjson.loads(line[: line.index(_DATA_KEY) - 1] + b"}")
    return Envelope(head["seq"], head["type"], head["timestamp"], head["gameId"], head["source"], json=line)


def table_from_lines(lines: list[bytes]) -> pa.Table:
    """A row group from the envelopes' JSON lines (what the writer thread hands the Parquet worker)."""
    return to_table([envelope_of_line(line) for line in lines])


def envelopes_from_table(table: pa.Table) -> Iterator[Envelope]:
    """Rows back into envelopes (the inverse of `to_table` for the envelope's own fields)."""
    seqs = table.column("seq").to_pylist()
    types = table.column("type").to_pylist()
    stamps = table.column("timestamp").cast(pa.int64()).to_pylist()
    games = table.column("gameId").to_pylist()
    sources = table.column("source").to_pylist()
    datas = table.column("data").to_pylist()
    for seq, type_, stamp, game, source, data in zip(seqs, types, stamps, games, sources, datas):
        yield Envelope(seq, type_, stamp, game, source, orjson.loads(data))


def schema_version(metadata: dict[bytes, bytes] | None) -> int | None:
    raw = (metadata or {}).get(SCHEMA_VERSION_KEY)
    return int(raw) if raw is not None else None
