"""A few fast rows of the chaos matrix (`bench/chaos.py`, docs/RELIABILITY.md), run by the test
command: a real daemon with recording on, against the simulator, watched by the Python client over
ZeroMQ, a resuming WebSocket and a `/health` poller. For each, nothing may be lost silently and
nothing may be declared lost that was delivered.

SIGKILL mid-game is not among them yet: today it loses the last events from the recordings
(issue 14, defect 3), leaves the running game without a `game.end` (defect 4) and the resuming
WebSocket gets a `gap` over the numbers the restart never used. Add it here once those are fixed
(`bench/chaos.py --only vectra-sigkill-mid-game` shows the row).
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from bench import chaos_scenarios  # noqa: F401 - registers the scenarios
from bench.chaos_harness import SCENARIOS, run_scenario, table

pytestmark = [pytest.mark.slow, pytest.mark.timeout(150)]


@pytest.mark.parametrize("name", ["feed-killed", "sub-ws-killed-resumed", "sub-client-killed-resumed",
                                  "sub-zmq-killed-resumed"])
def test_nothing_is_lost_silently_and_nothing_delivered_is_declared_lost(name):
    row = asyncio.run(run_scenario(SCENARIOS[name]))
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
