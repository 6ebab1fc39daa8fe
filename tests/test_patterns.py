"""A client's channel filter (issue 14, point 1): its verdicts stay right as patterns come and go, and
what a change or an event costs does not grow with the patterns a client already holds (counted as
glob matches tried, not timed)."""

from __future__ import annotations

from fnmatch import fnmatchcase

import pytest

from core.contracts import patterns
from core.contracts.patterns import ChannelFilter

CHANNELS = ["game.tick", "game.end", "raw.gameStateUpdate", "player.trade", "sys.start"]


@pytest.fixture
def tries(monkeypatch) -> list[tuple[str, str]]:
    """Every (channel, pattern) glob match the filter tries."""
    tried: list[tuple[str, str]] = []

    def counted(channel: str, pattern: str) -> bool:
        tried.append((channel, pattern))
        return fnmatchcase(channel, pattern)

    monkeypatch.setattr(patterns, "fnmatchcase", counted)
    return tried


def test_verdicts_follow_patterns_added_and_removed():
    wanted = ChannelFilter(["raw.*"])
    assert [wanted(channel) for channel in CHANNELS] == [False, False, True, False, False]
    assert wanted.add(["game.*", "raw.*", "game.t*"]) == ["game.*", "game.t*"]
    assert [wanted(channel) for channel in CHANNELS] == [True, True, True, False, False]
    before = wanted.copy()
    wanted.remove(["game.*"])
    assert [wanted(channel) for channel in CHANNELS] == [True, False, True, False, False]
    wanted.remove(["game.t*", "raw.*"])
    assert not any(wanted(channel) for channel in CHANNELS) and wanted.patterns == []
    assert [before(channel) for channel in CHANNELS] == [True, True, True, False, False], "a copy keeps its own"
    wanted.add(["*"])
    assert all(wanted(channel) for channel in CHANNELS)


def test_an_event_costs_one_lookup_however_many_patterns_are_held(tries):
    held = ChannelFilter(f"x{n}.*" for n in range(6000))
    for _ in range(100):
        for channel in CHANNELS:
            assert not held(channel)
    assert len(tries) == 6000 * len(CHANNELS), "each channel is tried against the patterns once, then remembered"


def test_adding_patterns_costs_the_new_ones_not_the_ones_held(tries):
    held = ChannelFilter(f"x{n}.*" for n in range(6000))
    for channel in CHANNELS:
        held(channel)
    tries.clear()
    added = held.add([f"y{n}.*" for n in range(10)] + [f"x{n}.*" for n in range(6000)])
    assert len(added) == 10
    assert len(tries) == 10 * len(CHANNELS), "only the 10 new patterns are tried, on the channels seen"
    tries.clear()
    held.add(["game.*"])
    assert held("game.tick") and not held("raw.gameStateUpdate")
    assert len(tries) == len(CHANNELS)
