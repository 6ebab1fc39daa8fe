"""Vectra itself stopped inside a game (SIGKILL or SIGTERM) and started again on the same data folder:
over both runs each game keeps one `game.start` and one `game.end`, every tick is published or declared,
and the counts cover the whole game."""

from __future__ import annotations

import os
import time
from pathlib import Path

import orjson
import pytest

from tests.processes import DaemonProcess, SimProcess
from tests.test_daemon import ticks_by_game
from tests.test_nats_edge import replay


@pytest.fixture
def long_game_sim():
    # seed 11: the first game runs 400 ticks (10 s), room for two daemons to start in it
    with SimProcess(speed=10, seed=11, max_ticks=400) as process:
        yield process


def active_tick(events: list[dict]) -> tuple[str, int] | None:
    """The game and tick of the last ACTIVE tick published, if any."""
    for event in reversed(events):
        if event["type"] == "game.tick" and event["data"]["phase"] == "ACTIVE":
            return event["gameId"], event["data"]["tickCount"]
    return None


def stopped_inside_a_game(daemon: DaemonProcess, how: str, at_tick: int = 20) -> str:
    daemon.wait_for(lambda evs: (active_tick(evs) or ("", -1))[1] >= at_tick, timeout=60)
    game_id, _ = active_tick(daemon.events)
    if how == "SIGKILL":
        daemon.kill()
    else:
        assert daemon.terminate() == 0
    return game_id


def of_game(events: list[dict], channel: str, game_id: str) -> list[dict]:
    return [event for event in events if event["type"] == channel and event["gameId"] == game_id]


def assert_every_tick_accounted_for(events: list[dict], game_id: str, first: int, last: int) -> list[int]:
    """Every tick from `first` to `last` published once (live or backfilled) or declared on `game.gap`."""
    ticks = ticks_by_game(events)[game_id]
    assert ticks == sorted(set(ticks)), f"ticks of {game_id} repeat or go backwards"
    declared: list[int] = []
    for gap in of_game(events, "game.gap", game_id):
        declared += range(gap["data"]["fromTick"], gap["data"]["toTick"] + 1)
    assert not set(declared) & set(ticks), "a published tick is also declared missing"
    assert sorted(ticks + declared) == list(range(first, last + 1)), f"unexplained hole in {game_id}"
    return ticks


def assert_whole_game(events: list[dict], game_id: str) -> dict:
    """One start, one end, every tick from the start to the end published once or declared, honest counts."""
    starts, ends = of_game(events, "game.start", game_id), of_game(events, "game.end", game_id)
    assert len(starts) == 1, f"{len(starts)} game.start for {game_id}"
    assert len(ends) == 1, f"{len(ends)} game.end for {game_id}"
    start, end = starts[0], ends[0]
    first, final = start["data"]["tick"], end["data"]["finalTick"]
    ticks = assert_every_tick_accounted_for(events, game_id, first, final)
    assert end["data"]["ticksExpected"] == final - first + 1
    assert end["data"]["ticksSeen"] == len(ticks)
    assert end["data"]["backfilledTicks"] == len(
        [e for e in of_game(events, "game.tick", game_id) if e["data"]["backfilled"]]
    )
    return end


def assert_nothing_lost_between_runs(first: DaemonProcess, second: DaemonProcess) -> None:
    """The first run's events were all read: a hole in the checks above is Vectra's, not the pipe's.

    A SIGKILL can cut `--stdout` short (lines still waiting for a busy reader die with the process);
    those events were published all the same, so they must come back from the recordings, which a
    subscriber resuming after them would read, and they join the first run's events."""
    start = second.events[0]
    assert start["type"] == "sys.start"
    previous, seen = start["data"]["previous_last_seq"], first.events[-1]["seq"]
    assert previous >= seen
    if previous > seen:
        replayed = [orjson.loads(reply) for reply in replay(second.env, seen + 1)]
        missing = [event for event in replayed if "v" in event and event["seq"] <= previous]  # events, not notices
        assert [event["seq"] for event in missing] == list(range(seen + 1, previous + 1)), replayed[:5]
        first.events.extend(missing)


@pytest.mark.parametrize("how", ["SIGKILL", "SIGTERM"])
def test_a_restart_inside_a_game_keeps_one_start_and_counts_the_whole_game(long_game_sim, daemon_for, how):
    first = daemon_for(long_game_sim, VECTRA_RECORD="true")
    game_id = stopped_inside_a_game(first, how)
    second = daemon_for(long_game_sim, VECTRA_RECORD="true")
    second.wait_for(lambda evs: of_game(evs, "game.end", game_id), timeout=90)
    assert_nothing_lost_between_runs(first, second)
    events = first.events + second.events
    end = assert_whole_game(events, game_id)
    assert not end["data"]["inferred"]
    assert not any(e["type"] == "game.phase" and e["gameId"] == game_id and e["data"]["to"] == "ACTIVE"
                   for e in second.events), "the restarted run knows the game is already running"
    resumed = ticks_by_game(second.events)[game_id]
    before = ticks_by_game(first.events)[game_id]
    assert resumed and resumed[0] > before[-1], "the second run carried on inside the same game"
    missed = range(before[-1] + 1, resumed[0])
    refilled = of_game(second.events, "game.gap", game_id) + [
        e for e in of_game(second.events, "game.tick", game_id) if e["data"]["backfilled"]
    ]
    assert not missed or refilled, "the ticks missed while Vectra was down are backfilled or declared"


def test_a_restart_between_a_games_cooldown_and_its_run_expects_every_tick_from_zero(daemon_for):
    sim = SimProcess(speed=3, seed=11, max_ticks=700)  # from its start a 5 s cooldown, then 700 ticks
    try:
        first = daemon_for(sim, VECTRA_RECORD="true")  # the recordings back --stdout after a SIGKILL
        first.wait_for(lambda evs: evs)  # up (`sys.start`) and trying its feed: the cooldown is all its to see
        sim.start()
        first.wait_for(lambda evs: any(e["type"] == "game.tick" and e["data"]["phase"] in ("COOLDOWN", "PRESALE")
                                       for e in evs))
        first.kill()
        (game_id,) = {e["gameId"] for e in first.of_type("game.tick")}
        deadline = time.monotonic() + 30
        while (state := sim.state())["phase"] != "ACTIVE" or state["tickCount"] < 10:  # runs while Vectra is down
            assert state["gameId"] == game_id and time.monotonic() < deadline
            time.sleep(0.1)
        second = daemon_for(sim, VECTRA_RECORD="true")
        second.wait_for(lambda evs: len(ticks_by_game(evs)[game_id]) >= 5)
        assert_nothing_lost_between_runs(first, second)
        assert second.terminate() == 0
    finally:
        sim.kill()
    events = first.events + second.events
    (start,) = of_game(events, "game.start", game_id)
    assert not start["data"]["late"], "its cooldown was seen: not a late join, every tick from 0 is expected"
    assert_every_tick_accounted_for(events, game_id, 0, ticks_by_game(events)[game_id][-1])
    assert of_game(events, "game.gap", game_id), "ticks 0 to 4 at least were missed while Vectra was down"


def test_vectra_down_across_a_rug_gives_that_game_its_inferred_end(daemon_for):
    sim = SimProcess(speed=10, seed=11, max_ticks=60).start()
    try:
        first = daemon_for(sim, VECTRA_RECORD="true")  # the recordings back --stdout after a SIGKILL
        game_id = stopped_inside_a_game(first, "SIGKILL", at_tick=3)
        deadline = time.monotonic() + 30
        while sim.state()["gameId"] == game_id:  # the game rugs while Vectra is down
            assert time.monotonic() < deadline, "the simulator's game never ended"
            time.sleep(0.1)
        second = daemon_for(sim, VECTRA_RECORD="true")
        later_games = lambda evs: {e["gameId"] for e in evs if e["type"] == "game.end"} - {game_id}
        second.wait_for(lambda evs: of_game(evs, "game.end", game_id) and later_games(evs), timeout=90)
    finally:
        sim.kill()
    assert_nothing_lost_between_runs(first, second)
    events = first.events + second.events
    end = assert_whole_game(events, game_id)
    assert end["data"]["inferred"]
    (end,) = of_game(second.events, "game.end", game_id)
    started = [e["gameId"] for e in events if e["type"] == "game.start"]
    assert len(started) == len(set(started)), "one game.start per game over both runs"
    for earlier in started[:-1]:
        assert len(of_game(events, "game.end", earlier)) == 1, f"{earlier} started and never ended"


@pytest.mark.parametrize("damage", ["garbage", "truncated"])
def test_a_damaged_game_memory_is_named_once_and_games_start_afresh(long_game_sim, daemon_for, vectra_env, damage):
    first = daemon_for(long_game_sim)
    game_id = stopped_inside_a_game(first, "SIGKILL", at_tick=5)
    path = Path(vectra_env["VECTRA_DATA_DIR"]) / "games.state"
    data = path.read_bytes()
    path.write_bytes(os.urandom(len(data)) if damage == "garbage" else data[:100])
    second = daemon_for(long_game_sim)
    second.wait_for(lambda evs: of_game(evs, "game.start", game_id) and of_game(evs, "game.tick", game_id))
    assert second.terminate() == 0
    lines = [line for line in second.stderr if "games.state" in line]
    assert len(lines) == 1 and "unreadable" in lines[0], second.stderr
    (start,) = of_game(second.events, "game.start", game_id)
    assert start["data"]["late"], "without a memory the game is joined as it was before the file existed"
    assert not any("Traceback" in line for line in second.stderr)
