"""A subscriber resuming after Vectra was SIGKILLed and restarted hears of real losses only.

A restart starts after the block of numbers the killed run had reserved; the numbers it never used
(`sys.start.data.skipped`) held no event, so a replay must not call them a `gap`: the browser client
(core/web/client.js) passes every `gap` to `onGap` and would report a loss where there was none.
Events older than anything the daemon still holds are a real loss and keep their `gap`.
Real processes: the simulator, `vectra --daemon`, a WebSocket and a ZeroMQ DEALER on 127.0.0.1.
"""

from __future__ import annotations

import asyncio
import signal

import orjson
import pytest
import zmq
import zmq.asyncio
from websockets.asyncio.client import connect as ws_connect

from tests.processes import DaemonProcess
from tests.test_zmq import daemon_env, sim, wait_until_serving  # noqa: F401 - sim: the simulator fixture

pytestmark = [pytest.mark.slow, pytest.mark.timeout(120)]


@pytest.fixture
def daemons():
    started: list[DaemonProcess] = []
    yield started
    for daemon in started:
        daemon.kill()


def run(env: dict[str, str], daemons: list[DaemonProcess], events: int) -> DaemonProcess:
    daemon = DaemonProcess(env).start()
    daemons.append(daemon)
    wait_until_serving(daemon, env)
    daemon.wait_for(lambda published: len(published) > events)
    return daemon


def sigkill(daemon: DaemonProcess) -> None:
    daemon.proc.send_signal(signal.SIGKILL)
    daemon.proc.wait(timeout=10)


async def ws_replay(env: dict[str, str], from_seq: int, until_seq: int) -> list[dict]:
    """`subscribe` to `*` with `from_seq`: every message up to the event `until_seq`."""
    got: list[dict] = []
    async with ws_connect(f"ws://127.0.0.1:{env['VECTRA_HTTP_PORT']}/ws", max_size=None) as ws:
        await ws.send(orjson.dumps({"action": "subscribe", "channels": ["*"], "from_seq": from_seq}).decode())
        while not got or got[-1].get("seq", 0) < until_seq or "v" not in got[-1]:
            got.append(orjson.loads(await asyncio.wait_for(ws.recv(), 10)))
    return [message for message in got if message.get("type") != "subscribed"]


async def zmq_replay(env: dict[str, str], from_seq: int) -> list[dict]:
    """`replay` on the ROUTER: every reply up to `replay.end` (excluded)."""
    context = zmq.asyncio.Context()
    dealer = context.socket(zmq.DEALER)
    dealer.setsockopt(zmq.LINGER, 0)
    dealer.connect(env["VECTRA_ZMQ_ROUTER"])
    try:
        await dealer.send(orjson.dumps({"action": "replay", "from_seq": from_seq}))
        replies: list[dict] = []
        while not replies or replies[-1].get("type") not in ("replay.end", "error"):
            replies.append(orjson.loads(await asyncio.wait_for(dealer.recv(), 10)))
        assert replies[-1]["type"] == "replay.end", replies[-1]
        return replies[:-1]
    finally:
        dealer.close()
        context.term()


def gaps(messages: list[dict]) -> list[tuple[int, int]]:
    return [(m["from_seq"], m["to_seq"]) for m in messages if m.get("type") == "gap"]


async def test_a_resume_across_a_sigkill_gets_no_gap_for_numbers_never_used_and_one_for_a_real_loss(sim, tmp_path, daemons):
    """Recording off: the killed run's events are held nowhere after the restart (a real loss),
    the block its restart skipped held nothing."""
    env = daemon_env(tmp_path / "data", sim)
    sigkill(run(env, daemons, 80))
    restarted = run(env, daemons, 5)
    start = restarted.events[0]
    assert start["type"] == "sys.start"
    previous, skipped = start["data"]["previous_last_seq"], start["data"]["skipped"]
    assert skipped == {"from": previous + 1, "to": start["seq"] - 1}, "SIGKILL leaves a reserved block unused"
    until = restarted.events[3]["seq"]
    for replay in (await ws_replay(env, previous + 1, until), await zmq_replay(env, previous + 1)):
        assert gaps(replay) == [], "the skipped block is not a loss"
        assert replay[0]["seq"] == start["seq"] and replay[0]["type"] == "sys.start"
    for replay in (await ws_replay(env, 1, until), await zmq_replay(env, 1)):
        assert gaps(replay) == [(1, previous)], "the killed run's events are lost, and said so"
        assert replay[1]["seq"] == start["seq"]


async def test_a_resume_from_the_recordings_across_two_sigkills_holds_every_event_and_no_gap(sim, tmp_path, daemons):
    """Recording on: two killed runs, then a third; a replay from 1 reads the first two from the
    recordings, across both skipped blocks (one announced by a `sys.start` in the recordings, one
    by this run's), and gets every event any run published, with no gap."""
    env = {**daemon_env(tmp_path / "data", sim), "VECTRA_RECORD": "true"}
    sigkill(run(env, daemons, 80))
    sigkill(run(env, daemons, 80))
    latest = run(env, daemons, 5)
    starts = [daemon.events[0] for daemon in daemons]
    assert all(start["data"]["skipped"] for start in starts[1:])
    until = latest.events[3]["seq"]
    published = {event["seq"] for daemon in daemons for event in daemon.events if event["seq"] <= until}
    for replay in (await ws_replay(env, 1, until), await zmq_replay(env, 1)):
        assert gaps(replay) == []
        received = {message["seq"] for message in replay if message["seq"] <= until}
        assert received >= published, f"missing {sorted(published - received)[:10]}"
