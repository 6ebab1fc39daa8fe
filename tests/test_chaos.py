"""The fast rows of the chaos matrix (`bench/chaos.py`, docs/RELIABILITY.md), run by the test
command: a real daemon with recording on, against the simulator, watched by the Python client over
ZeroMQ, a resuming WebSocket and a `/health` poller. For each, nothing may be lost silently, nothing
may be declared lost that was delivered, and the scenario's own check of issue 14 must hold: Vectra
SIGKILLed and restarted inside a game and in cooldown, a full disk at the first start (root only: it
mounts a tmpfs), and the attacks that once stalled or fooled the daemon. The slower rows (browser,
feed faults, slow subscribers, the other attacks) stay in the matrix command.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from bench import chaos_scenarios  # noqa: F401 - registers the scenarios
from bench.chaos_harness import SCENARIOS, run_scenario, table

pytestmark = [pytest.mark.slow, pytest.mark.timeout(150)]


ROWS = [
    "feed-killed", "sub-ws-killed-resumed", "sub-client-killed-resumed", "sub-zmq-killed-resumed",
    "vectra-sigkill-mid-game", "vectra-sigkill-mid-cooldown", "disk-full-at-start",
    "attack-many-patterns", "attack-zmq-never-reads", "attack-from-seq-2^64", "attack-duplicate-keys",
    "attack-host-header",
]


@pytest.mark.parametrize("name", ROWS)
def test_nothing_is_lost_silently_and_nothing_delivered_is_declared_lost(name):
    row = asyncio.run(run_scenario(SCENARIOS[name]))
    if row.check.startswith("skipped"):
        pytest.skip(row.check)
    assert row.check == "ok", table([row])
    assert row.published > 500, table([row])
    assert row.lost_silently == 0, table([row])
    assert row.false_alarms == 0, table([row])


def test_the_harness_sees_a_loss_when_there_is_one():
    """The measure can fail: a subscriber that misses events nobody declared is counted."""
    from bench.chaos_harness import Stack, View

    stack = Stack("self-check", Path("/nonexistent"))
    for seq in (1, 2, 3):
        stack.watchers.keep({"seq": seq, "type": "raw.x", "gameId": None, "data": {}, "timestamp": 0})
    stack.views.append(View("partial", {1, 3}))
    stack.views.append(View("declared", {1}, [(2, 3)]))
    stack.views.append(View("cried wolf", {1, 2, 3}, [(2, 2)]))
    lost, alarms = stack.account(published={1, 2, 3}, cutoff=3, extra_views=[])
    assert lost == {"partial": 1}
    assert list(alarms) == ["cried wolf gap 2-2 of delivered events"]


def test_the_harness_sees_a_false_game_alarm_and_a_game_left_open():
    """The game measures can fail: a `game.gap` after its game's end, a second `game.start`, a tick
    neither published nor declared, a `game.end` expecting fewer ticks than the game had (2 of 0..2),
    and a game that never ends while the next one runs are counted."""
    from bench.chaos_harness import Stack

    stack = Stack("self-check", Path("/nonexistent"))
    game = [("game.start", "a", {"tick": 0}), ("game.tick", "a", {"phase": "ACTIVE", "tickCount": 0}),
            ("game.tick", "a", {"phase": "ACTIVE", "tickCount": 2}), ("game.start", "a", {"tick": 2}),
            ("game.end", "a", {"finalTick": 2, "inferred": False, "ticksExpected": 2, "ticksSeen": 2}),
            ("game.gap", "a", {"fromTick": 3, "toTick": 3}),
            ("game.start", "b", {"tick": 0}), ("game.start", "c", {"tick": 0})]
    for seq, (kind, game_id, data) in enumerate(game, start=1):
        stack.watchers.keep({"seq": seq, "type": kind, "gameId": game_id, "data": data, "timestamp": 0})
    lost, alarms, declared = stack._games(cutoff=len(game))
    assert lost == {"game ticks": 1, "game.end counts that hide missing ticks": 1, "game without game.end": 1}
    assert +alarms == {"second game.start": 1, "game.gap after game.end": 1}
    assert declared == 1


def test_the_harness_sees_health_ok_on_a_silent_feed():
    """One episode of `/health` saying `ok` long after the last feed frame is one false alarm."""
    from bench.chaos_harness import HEALTH_MARGIN_S, HEALTH_STALE_S, Stack

    stack = Stack("self-check", Path("/nonexistent"))
    stack.watchers.keep({"seq": 1, "type": "raw.gameStateUpdate", "gameId": None, "data": {}, "timestamp": 100_000})
    late = 100 + HEALTH_STALE_S + HEALTH_MARGIN_S + 1
    stack.watchers.health += [(100.5, "ok", "recording"), (late, "ok", "recording"), (late + 0.25, "ok", "recording"),
                              (late + 0.5, "degraded", "failed"), (late + 0.75, "ok", "failed")]
    assert stack._health_alarms() == {"health ok while the feed was silent": 2, "health ok while recording failed": 1}
