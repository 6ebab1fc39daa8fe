"""An order whose outcome a SIGKILLed daemon never learned is settled by the run after it, from the
player's account, as a timed-out order is within one run; a retry with its id then returns the settled
record, and nothing is ever sent twice. So is an order the server acked whose own trade the stopped
daemon never saw: filled by the account, or explained, never left bare `acked`.

Real processes: the simulator (which executes the order and drops its ack, or its trade frame, on
demand) and `vectra --daemon` with the `direct` executor, killed between the frame and the ack (or
stopped while it waits for the trade), then started again on the same data directory. Commands go
through the ZeroMQ ROUTER; the outcome is read from what the daemon published and from its recording.
"""

from __future__ import annotations

import json
import signal
import time
import urllib.request
from pathlib import Path
from typing import Any

import pytest
import socketio

from core.client import request
from tests.processes import DaemonProcess, SimProcess
from tests.test_recorder import read_recordings
from tests.test_resume_after_kill import daemons  # noqa: F401 - the fixture
from tests.test_simulator import active_anchor, long_game_seed
from tests.test_zmq import daemon_env, wait_until_serving

pytestmark = [pytest.mark.slow, pytest.mark.timeout(180)]

LONG_GAME_TICKS = 600  # at speed 1 (4 ticks a second), minutes: both runs of the daemon fit in one game
TOKEN = "s3cret"
OUTCOMES = ("order.filled", "order.rejected", "order.timeout", "order.unsettled")


def admin(sim: SimProcess, path: str, body: dict | None = None) -> Any:
    data = json.dumps(body).encode() if body is not None else None
    http = urllib.request.Request(sim.url + path, data=data, headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(http, timeout=5) as reply:
        return json.loads(reply.read())


def run(env: dict[str, str], daemons: list[DaemonProcess], in_game: bool = True) -> DaemonProcess:
    """A daemon serving, with the player's account known and (`in_game`) the game running."""
    daemon = DaemonProcess(env).start()
    daemons.append(daemon)
    wait_until_serving(daemon, env)
    daemon.wait_for(lambda events: (not in_game or any(e["type"] == "game.tick" and e["data"]["phase"] == "ACTIVE"
                                                       for e in events))
                    and any(e["type"] == "player.state" for e in events), timeout=60)
    return daemon


def order(env: dict[str, str], order_id: str) -> dict:
    command = {"action": "order", "kind": "buy", "amount_sol": 0.002, "order_id": order_id, "token": TOKEN}
    return request(command, timeout=10, router=env["VECTRA_ZMQ_ROUTER"])["data"]


def wait_for_sim(sim: SimProcess, event: str, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while not any(entry["event"] == event for entry in admin(sim, "/admin/emitted?since=0")):
        assert time.monotonic() < deadline, f"the simulator never logged {event}"
        time.sleep(0.05)


def live_env(tmp_path: Path, sim: SimProcess) -> dict[str, str]:
    """Timeouts out of reach: what a run leaves unsettled is the next run's to settle, never its own."""
    return {**daemon_env(tmp_path / "data", sim), "VECTRA_ORDERS": "live", "VECTRA_AUTH_TOKEN": TOKEN,
            "VECTRA_ORDER_EXECUTOR": "direct", "VECTRA_FEED_AUTH": '{"player": "bot1"}', "VECTRA_RECORD": "true",
            "VECTRA_ORDER_ACK_TIMEOUT_S": "600", "VECTRA_ORDER_SETTLE_TIMEOUT_S": "600",
            "VECTRA_ORDER_MAX_TICK_AGE_S": "10"}


def buy_then_sigkill(sim: SimProcess, env: dict[str, str], daemons: list[DaemonProcess]) -> dict:
    """A buy the simulator has handled (carried out or refused) with its ack dropped, and the daemon
    SIGKILLed before it could learn anything more; the order's record as the killed run replied."""
    admin(sim, "/admin/acks", {"drop": 1})
    first = run(env, daemons)
    sent = order(env, "crash-1")
    assert sent["state"] == "sent", sent
    wait_for_sim(sim, "ack-dropped/buyOrder")
    first.proc.send_signal(signal.SIGKILL)
    first.proc.wait(timeout=10)
    return sent


def settled_after_restart(env: dict[str, str], daemons: list[DaemonProcess],
                          order_id: str = "crash-1") -> tuple[DaemonProcess, dict]:
    """The restarted daemon, once it published the order's outcome; that one event. It settles on its
    first `playerUpdate`, in whatever phase the game is: the outcome is waited for, not a running game."""
    restarted = run(env, daemons, in_game=False)
    restarted.wait_for(lambda events: any(e["type"] in OUTCOMES for e in events), timeout=60)
    life = [e for e in restarted.events if e["type"].startswith("order.")]
    assert [e["data"]["order_id"] for e in life] == [order_id], life
    return restarted, life[0]


def sent_once_and_recorded(sim: SimProcess, tmp_path: Path, outcome: str, order_id: str = "crash-1") -> None:
    received = [e for e in admin(sim, "/admin/emitted?since=0") if e["event"] == "received/buyOrder"]
    assert len(received) == 1, "sent once, never again"
    rows = read_recordings(tmp_path / "data" / "recordings").to_pylist()
    recorded = [(row["type"], json.loads(row["data"])["order_id"]) for row in rows if row["type"] in OUTCOMES]
    assert recorded == [(outcome, order_id)], recorded


@pytest.mark.parametrize(("cash", "outcome"), [(1.0, "filled"), (0.001, "rejected")], ids=["filled", "insufficient-funds"])
def test_an_order_in_flight_at_a_sigkill_is_settled_after_the_restart(tmp_path, daemons, cash, outcome):  # noqa: F811
    """The simulator carries the buy out (or refuses it: 0.001 SOL cannot pay 0.002) and drops the ack.
    The restarted daemon's first playerUpdate shows the position grown (or unchanged) in the same
    running game: `order.filled` (`order.rejected`, by the server), published, recorded and returned
    to a retry."""
    with SimProcess(speed=1, seed=long_game_seed(LONG_GAME_TICKS), max_ticks=LONG_GAME_TICKS + 100,
                    anchor_ms=active_anchor(1, 100), starting_cash=cash) as sim:
        env = live_env(tmp_path, sim)
        sent = buy_then_sigkill(sim, env, daemons)
        restarted, settled = settled_after_restart(env, daemons)
        assert settled["type"] == f"order.{outcome}", settled
        if outcome == "filled":
            assert settled["data"]["matchedBy"] == "position"
        else:
            assert (settled["data"]["code"], settled["data"]["by"]) == ("server_rejected", "server")
        retry = order(env, "crash-1")
        assert retry["state"] == outcome and retry["frame"] == sent["frame"], retry
        assert restarted.terminate() == 0
        books = admin(sim, "/admin/players/bot1")["lamports"]
        assert (books["positionQty"] > 0) == (outcome == "filled"), books
        sent_once_and_recorded(sim, tmp_path, f"order.{outcome}")


def test_an_order_whose_game_ended_before_the_restart_stays_timeout_and_says_why(tmp_path, daemons):  # noqa: F811
    """The buy filled, then the game rugged while no daemon ran: the force-sale emptied the position,
    so the account can no longer tell. No guessed fill: `order.timeout` with the reason, and a retry
    gets `timeout`."""
    speed, game_ticks = 4, 160  # 10 s: room for a daemon to start and order, then the rug comes
    with SimProcess(speed=speed, seed=long_game_seed(game_ticks), max_ticks=game_ticks,
                    anchor_ms=active_anchor(speed, 100)) as sim:
        env = live_env(tmp_path, sim)
        sent = buy_then_sigkill(sim, env, daemons)
        deadline = time.monotonic() + 90
        while admin(sim, "/admin/state")["games_completed"] < 1:
            assert time.monotonic() < deadline, "the game never ended"
            time.sleep(0.2)
        restarted, settled = settled_after_restart(env, daemons)
        assert settled["type"] == "order.timeout" and "ended" in settled["data"]["reason"], settled
        retry = order(env, "crash-1")
        assert retry["state"] == "timeout" and retry["frame"] == sent["frame"], retry
        assert "ended" in retry["whyUnknown"], retry
        assert restarted.terminate() == 0
        sent_once_and_recorded(sim, tmp_path, "order.timeout")


def buy_acked_without_its_trade_then_stop(sim: SimProcess, env: dict[str, str], daemons: list[DaemonProcess],
                                          tmp_path: Path) -> dict:
    """A buy the simulator carried out and acked with success while its own trade frame was lost: the
    daemon holds it `acked`, waiting for a trade that never comes, when it is stopped (the ordinary
    way). The order's record as that run replied."""
    admin(sim, "/admin/acks", {"drop_trades": 1})
    first = run(env, daemons)
    sent = order(env, "acked-1")
    first.wait_for(lambda events: any(e["type"] == "order.ack" and e["data"]["success"] for e in events))
    assert first.terminate() == 0
    journal = (tmp_path / "data" / "orders" / "journal.jsonl").read_text().splitlines()
    assert json.loads(journal[-1])["state"] == "acked", "the state the restart must not leave as it is"
    return sent


@pytest.mark.parametrize("sold_by_hand", [False, True], ids=["filled", "sold-by-hand"])
def test_an_acked_order_whose_trade_was_never_seen_is_settled_after_a_restart(tmp_path, daemons, sold_by_hand):  # noqa: F811
    """The server said success, so the restarted daemon settles it from the account: the position grew
    in the running game, `order.filled` (`matchedBy: position`). When the player sold everything by
    hand meanwhile, the account shows no change, which for this order is no refusal: it stays `acked`
    and `order.unsettled` says why (also the record's `whyUnknown`, in a retry and in
    `orders_status`)."""
    with SimProcess(speed=1, seed=long_game_seed(LONG_GAME_TICKS), max_ticks=LONG_GAME_TICKS + 100,
                    anchor_ms=active_anchor(1, 100)) as sim:
        env = live_env(tmp_path, sim)
        sent = buy_acked_without_its_trade_then_stop(sim, env, daemons, tmp_path)
        if sold_by_hand:
            with socketio.SimpleClient() as page:
                page.connect(sim.url, auth={"player": "bot1"}, transports=["websocket"])
                assert page.call("sellOrder", {"percentage": 100}, timeout=5) == {"success": True}
            assert admin(sim, "/admin/players/bot1")["lamports"]["positionQty"] == 0
        restarted, settled = settled_after_restart(env, daemons, "acked-1")
        retry = order(env, "acked-1")
        assert retry["frame"] == sent["frame"], retry
        if sold_by_hand:
            assert settled["type"] == "order.unsettled" and "unchanged" in settled["data"]["reason"], settled
            assert retry["state"] == "acked" and retry["whyUnknown"] == settled["data"]["reason"], retry
        else:
            assert settled["type"] == "order.filled" and settled["data"]["matchedBy"] == "position", settled
            assert retry["state"] == "filled", retry
        status = request({"action": "orders_status"}, timeout=10, router=env["VECTRA_ZMQ_ROUTER"])["data"]
        assert [record for record in status["recent"] if record["order_id"] == "acked-1"] == [retry]
        assert restarted.terminate() == 0
        sent_once_and_recorded(sim, tmp_path, settled["type"], "acked-1")
