"""docs/PROTOCOL.md and the code say the same thing: every channel and every `/health` field documented,
every example valid, and a real daemon's `/health` is the documented model."""

from __future__ import annotations

import json
import re
import urllib.request
from pathlib import Path
from typing import Literal, get_args, get_origin

import pytest
from pydantic import BaseModel

from core.contracts.channels import CHANNELS, Passthrough
from core.contracts.fields import TYPED_CHANNELS
from core.contracts.health import HealthReport, Section
from tests.processes import SimProcess
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


# --- `/health`: the HealthReport model and its documentation --------------------------------------

HEALTH_MARKER, METRICS_MARKER = "**`GET /health`.**", "**`GET /metrics`**"


def health_section() -> str:
    return DOC.split(HEALTH_MARKER, 1)[1].split(METRICS_MARKER, 1)[0]


def table_fields(section: str) -> set[str]:
    """The first column of every table row in `section` (`<anything>` normalized to `<name>`)."""
    return {re.sub(r"<[^>]+>", "<name>", name) for name in re.findall(r"^\| `([^`]+)` \|", section, flags=re.M)}


def nested(annotation: object) -> tuple[str, type[BaseModel] | None] | None:
    """(path step, model or None) of a field that holds a model (directly or optionally) or a dict by name."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return "", annotation
    if get_origin(annotation) is dict:
        found = nested(get_args(annotation)[1])
        return ".<name>" + (found[0] if found else ""), found[1] if found else None
    for arg in get_args(annotation):
        found = nested(arg)
        if found:
            return found
    return None


def channel_of(model: type[BaseModel] | None) -> str | None:
    """The channel whose data a report section is (`recording` is `recording.status`'s data)."""
    if model is None:
        return None
    return next((name for name, data in CHANNELS.items() if data is not Passthrough and issubclass(model, data)), None)


def model_fields(model: type[BaseModel], prefix: str = "") -> set[str]:
    """Every field path of `model`; a section that is a channel's data stops here (its channel documents it)."""
    paths = set()
    for name, field in model.model_fields.items():
        path = prefix + name
        paths.add(path)
        inner = nested(field.annotation)
        if inner is None or channel_of(inner[1]) is not None:
            continue
        step, held = inner
        if step:
            paths.add(path + step)
        if held is not None:
            paths |= model_fields(held, path + step + ".")
    return paths


def report_sections() -> dict[str, str]:
    """Field of the report -> the channel its data belongs to."""
    found = {}
    for name, field in HealthReport.model_fields.items():
        inner = nested(field.annotation)
        if inner is not None and channel_of(inner[1]) is not None:
            found[name] = channel_of(inner[1])
    return found


def test_every_health_field_is_documented_and_nothing_else():
    assert table_fields(health_section()) == model_fields(HealthReport)


@pytest.mark.parametrize("field, channel", sorted(report_sections().items()))
def test_health_sections_that_are_channel_data_are_documented_with_their_channel(field, channel):
    assert f"the `{channel}` data" in health_section(), f"/health's {field} row must point to {channel}"
    assert table_fields(channel_sections()[channel]) == set(CHANNELS[channel].model_fields)


def sections(base: type[Section] = Section) -> list[type[Section]]:
    return [found for cls in base.__subclasses__() for found in (cls, *sections(cls))]


@pytest.mark.parametrize("section", sections(), ids=lambda cls: cls.__name__)
def test_every_components_section_fills_a_report_field_of_its_own_type(section):
    """The report ignores unknown keys (an older reader, a newer daemon), so a section naming a
    field the report does not have would vanish from `/health` without a word."""
    field = HealthReport.model_fields.get(section.report_key)
    assert field is not None, f"{section.__name__}.report_key {section.report_key!r} is no HealthReport field"
    assert section is field.annotation or section in get_args(field.annotation)


def test_the_documented_health_report_validates():
    found = examples(health_section())
    assert len(found) == 1
    assert HealthReport.model_validate(found[0]).model_dump(mode="json") == found[0]


def paths_in(value: object, prefix: str = "") -> set[str]:
    """Every key path of a JSON object, keys under an object keyed by name as `<name>`."""
    if not isinstance(value, dict):
        return set()
    paths = set()
    by_name = prefix.rstrip(".") in {"connection.sources", "events_by_family"}
    for key, inner in value.items():
        path = prefix + ("<name>" if by_name else key)
        paths |= {path} | paths_in(inner, path + ".")
    return paths


@pytest.mark.timeout(60)
def test_a_real_daemons_health_is_the_documented_model(daemon_for):
    sim = SimProcess(speed=20, seed=3, max_ticks=40).start()
    try:
        daemon = daemon_for(sim, VECTRA_RECORD="true")
        daemon.wait_for(lambda events: any(event["type"] == "game.tick" for event in events))
        with urllib.request.urlopen(f"http://127.0.0.1:{daemon.env['VECTRA_HTTP_PORT']}/health", timeout=5) as reply:
            body = json.loads(reply.read())
    finally:
        sim.kill()
    report = HealthReport.model_validate(body)
    assert report.model_dump(mode="json") == body
    sections = report_sections()
    produced = {path for path in paths_in(body) if path.split(".", 1)[0] not in sections or "." not in path}
    assert produced <= model_fields(HealthReport), "the daemon reports fields the model does not know"
    for field, channel in sections.items():
        if body[field] is not None:
            CHANNELS[channel].model_validate(body[field])


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
