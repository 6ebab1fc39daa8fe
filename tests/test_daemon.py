"""The daemon against the simulator over loopback: whole games, a feed that dies, frames that are broken."""

from __future__ import annotations

import signal
import time
from collections import defaultdict

import pytest

from tests.protocol_models import EnvelopeModel, model_for
from tests.processes import DaemonProcess, SimProcess


@pytest.fixture(scope="module")
def sim():
    """One simulator for the tests that each start their own daemon on it; a fault one of them
    injects is over when it ends (a frame sent, a refusal waited out, a silence ended)."""
    with SimProcess(speed=20, seed=11, max_ticks=30) as process:
        yield process


def games_ended(events: list[dict]) -> int:
    return sum(1 for event in events if event["type"] == "game.end")


def assert_seq_contiguous(events: list[dict]) -> None:
    seqs = [event["seq"] for event in events]
    assert seqs == list(range(seqs[0], seqs[0] + len(seqs))), "seq must grow by exactly one"


def ticks_by_game(events: list[dict]) -> dict[str, list[int]]:
    ticks: dict[str, list[int]] = defaultdict(list)
    for event in events:
        if event["type"] == "game.tick" and event["data"]["phase"] in ("ACTIVE", "RUGGED"):
            ticks[event["gameId"]].append(event["data"]["tickCount"])
    return ticks


def test_full_game_cycles_are_sequenced_and_whole(sim, daemon_for):
    daemon = daemon_for(sim)
    events = daemon.wait_for(lambda evs: games_ended(evs) >= 3, timeout=90)
    assert daemon.terminate() == 0
    assert events[0]["type"] == "sys.start" and events[0]["seq"] == 1
    assert_seq_contiguous(daemon.events)
    starts = [e["gameId"] for e in events if e["type"] == "game.start"]
    ends = [e["gameId"] for e in events if e["type"] == "game.end"]
    assert len(starts) == len(set(starts)) and len(ends) == len(set(ends)), "one start and one end per game"
    for game_id in ends[1:]:
        ticks = ticks_by_game(events)[game_id]
        assert ticks == list(range(len(ticks))), f"ticks of {game_id} are not contiguous from 0"
        end = next(e for e in events if e["type"] == "game.end" and e["gameId"] == game_id)
        assert end["data"]["ticksSeen"] == end["data"]["ticksExpected"] == ticks[-1] + 1
        assert not end["data"]["inferred"]
    phases = [(e["data"]["from"], e["data"]["to"]) for e in events if e["type"] == "game.phase"]
    allowed = {(None, "COOLDOWN"), (None, "PRESALE"), (None, "ACTIVE"), (None, "RUGGED"), ("COOLDOWN", "PRESALE"),
               ("PRESALE", "ACTIVE"), ("ACTIVE", "RUGGED"), ("RUGGED", "COOLDOWN")}
    assert set(phases) <= allowed
    assert any(e["type"] == "player.trade" for e in events)
    assert {e["source"] for e in events} == {"socketio"}
    for event in events:
        EnvelopeModel.model_validate(event)
        model = model_for(event["type"])
        assert model is not None, f"{event['type']} is emitted but not documented"
        model.model_validate(event["data"])


def test_simulator_killed_mid_game_and_restarted(daemon_for):
    # seed 11: the first game runs 400 ticks (10 s), room for a daemon and a restarted simulator in it
    sim = SimProcess(speed=10, seed=11, max_ticks=400).start()
    try:
        _kill_and_restart_mid_game(sim, daemon_for(sim))
    finally:
        sim.kill()


def _kill_and_restart_mid_game(sim: SimProcess, daemon: DaemonProcess) -> None:
    daemon.wait_for(lambda evs: any(e["type"] == "game.tick" and e["data"]["phase"] == "ACTIVE"
                                    and (e["data"]["tickCount"] or 0) >= 3 for e in evs))
    sim.kill()
    daemon.wait_for(lambda evs: evs[-1]["type"] == "connection.status" and evs[-1]["data"]["state"] == "failed")
    time.sleep(0.5)
    sim.start()  # same port, seed and anchor: the same game, some ticks later
    daemon.wait_for(lambda evs: sum(e["type"] == "connection.status" and e["data"]["state"] == "connected" for e in evs) >= 2)
    daemon.wait_for(lambda evs: len(ticks_by_game(evs)) >= 1 and games_ended(evs) >= 1, timeout=90)
    states = [e["data"]["state"] for e in daemon.of_type("connection.status")]
    assert states[:2] == ["connecting", "connected"]
    assert "disconnected" in states and states.count("connected") >= 2
    after_drop = states[states.index("disconnected"):]
    assert set(after_drop) <= {"disconnected", "reconnecting", "failed", "connected"}
    gaps = daemon.of_type("game.gap")
    backfilled = [e for e in daemon.of_type("game.tick") if e["data"]["backfilled"]]
    assert gaps and backfilled, "missed ticks come back as backfilled ticks, the rest as an explicit game.gap"
    for game_id, ticks in ticks_by_game(daemon.events).items():
        covered = set(ticks)
        for gap in (g for g in gaps if g["gameId"] == game_id):
            covered |= set(range(gap["data"]["fromTick"], gap["data"]["toTick"] + 1))
        assert sorted(ticks) == ticks, f"ticks of {game_id} out of order"
        assert covered == set(range(min(covered), max(covered) + 1)), f"unexplained hole in {game_id}"
    assert_seq_contiguous(daemon.events)
    assert daemon.proc.poll() is None


@pytest.mark.parametrize("kind, code", [("malformed", "bad_json"), ("truncated", "bad_json"),
                                        ("binary", "unexpected_binary"), ("oversized", "frame_too_large")])
def test_broken_frames_become_error_events_and_the_stream_goes_on(sim, daemon_for, kind, code):
    daemon = daemon_for(sim, VECTRA_MAX_FRAME_BYTES="400000")
    daemon.wait_for(lambda evs: any(e["type"] == "game.tick" for e in evs))
    body = {"kind": kind, "bytes": 600_000} if kind == "oversized" else {"kind": kind}
    sim.fault(**body)
    events = daemon.wait_for(lambda evs: any(e["type"] == "error" for e in evs))
    error = next(e for e in events if e["type"] == "error")
    assert error["data"]["code"] == code and error["data"]["raw"]
    seq = error["seq"]
    daemon.wait_for(lambda evs: any(e["type"] == "game.tick" and e["seq"] > seq for e in evs))
    assert [e["data"]["state"] for e in daemon.of_type("connection.status")] == ["connecting", "connected"]


def test_restart_continues_the_sequence_and_announces_it(sim, daemon_for):
    first = daemon_for(sim)
    first.wait_for(lambda evs: len(evs) > 50)
    assert first.terminate() == 0
    last_seq = first.events[-1]["seq"]
    second = daemon_for(sim)
    events = second.wait_for(lambda evs: len(evs) > 5)
    start = events[0]
    assert start["type"] == "sys.start" and start["seq"] == last_seq + 1
    assert start["data"]["previous_last_seq"] == last_seq and start["data"]["skipped"] is None


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
def test_sigterm_and_ctrl_c_exit_cleanly_within_five_seconds(sim, daemon_for, signum):
    daemon = daemon_for(sim)
    daemon.wait_for(lambda evs: any(e["type"] == "game.tick" for e in evs))
    began = time.monotonic()
    daemon.proc.send_signal(signum)
    assert daemon.proc.wait(timeout=10) == 0, "".join(daemon.stderr[-5:])
    assert time.monotonic() - began < 5
    assert not any("Traceback" in line for line in daemon.stderr)


@pytest.mark.parametrize("fault, reason", [({"kind": "drop", "seconds": 1}, "server disconnected"),
                                           ({"kind": "silence", "seconds": 4}, "no frame for 2 s")])
def test_server_disconnect_and_silence_lead_to_a_reconnect(sim, daemon_for, fault, reason):
    daemon = daemon_for(sim)
    daemon.wait_for(lambda evs: any(e["type"] == "game.tick" for e in evs))
    sim.fault(**fault)
    connected = lambda evs: [e for e in evs if e["type"] == "connection.status" and e["data"]["state"] == "connected"]
    daemon.wait_for(lambda evs: len(connected(evs)) >= 2, timeout=30)
    if fault["kind"] == "silence":
        sim.fault(kind="silence", seconds=0)  # given up on and reconnected: the feed may speak again
    (dropped,) = [e for e in daemon.of_type("connection.status") if e["data"]["state"] == "disconnected"]
    assert dropped["data"]["reason"].startswith(reason)
    seq = connected(daemon.events)[-1]["seq"]
    daemon.wait_for(lambda evs: any(e["type"] == "game.tick" and e["seq"] > seq for e in evs))


def test_sigkill_then_restart_never_reuses_a_seq_and_names_the_unused_ones(sim, daemon_for):
    first = daemon_for(sim)
    first.wait_for(lambda evs: len(evs) > 30)
    first.kill()
    last_seq = first.events[-1]["seq"]
    second = daemon_for(sim)
    start = second.wait_for(lambda evs: len(evs) > 1)[0]
    assert start["type"] == "sys.start"
    assert start["data"]["previous_last_seq"] >= last_seq
    skipped = start["data"]["skipped"]
    assert skipped["from"] == start["data"]["previous_last_seq"] + 1 and skipped["to"] == start["seq"] - 1
