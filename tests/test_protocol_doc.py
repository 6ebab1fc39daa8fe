"""docs/PROTOCOL.md and the code say the same thing: every channel documented, every example valid."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Literal, get_origin

import pytest

from core.contracts.channels import CHANNELS
from core.contracts.fields import TYPED_CHANNELS
from tests.protocol_models import EnvelopeModel, model_for

REPO = Path(__file__).resolve().parent.parent
DOC = (REPO / "docs" / "PROTOCOL.md").read_text()


def channel_sections() -> dict[str, str]:
    body = DOC.split("\n## Channels", 1)[1].split("\n## ", 1)[0]
    parts = re.split(r"^### `([^`]+)`\s*$", body, flags=re.M)
    return dict(zip(parts[1::2], parts[2::2]))


def examples(section: str) -> list[dict]:
    return [json.loads(block) for block in re.findall(r"```json\n(.*?)\n```", section, flags=re.S)]


def test_every_channel_in_the_code_is_documented_and_nothing_else():
    assert set(channel_sections()) == set(CHANNELS)


@pytest.mark.parametrize("channel", sorted(CHANNELS))
def test_every_documented_example_validates(channel):
    found = examples(channel_sections()[channel])
    assert found, f"{channel} has no JSON example"
    for envelope in found:
        EnvelopeModel.model_validate(envelope)
        assert model_for(envelope["type"]) is CHANNELS[channel], f"example of {channel} has type {envelope['type']}"
        CHANNELS[channel].model_validate(envelope["data"])


def test_every_channel_name_written_in_the_code_is_catalogued():
    literal = re.compile(r'(?:Draft|publish)\(\s*"([a-z]+\.[a-zA-Z_.]+)"')
    emitted = {name for path in (REPO / "core").rglob("*.py") for name in literal.findall(path.read_text())}
    assert emitted, "the scan found no channel names: the pattern is stale"
    assert {name for name in emitted if model_for(name) is None} == set()


DOC_TYPE_NAMES = {int: "int", float: "number", bool: "bool", str: "string"}


@pytest.mark.parametrize("channel", sorted(TYPED_CHANNELS))
def test_the_field_table_of_a_typed_channel_is_its_documented_table(channel):
    """Name, type and nullability of every field, in order, as PROTOCOL.md's table lists them."""
    rows = re.findall(r"^\| `([^`]+)` \| ([^|]+?(?: \\\| null)?) \|", channel_sections()[channel], flags=re.M)

    def documented(field) -> str:
        name = "string" if get_origin(field.type) is Literal else DOC_TYPE_NAMES[field.type]
        return name + (" \\| null" if field.nullable else "")

    assert rows == [(field.name, documented(field)) for field in TYPED_CHANNELS[channel]]
    assert list(CHANNELS[channel].model_fields) == [field.name for field in TYPED_CHANNELS[channel]]
