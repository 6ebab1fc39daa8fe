"""The order path attacked as an outsider would: a real `vectra --daemon` placing live orders on the
simulator through its `direct` executor, hit over raw WebSocket and ZeroMQ connections with malformed
orders, reused ids, bursts from several peers at once, a kill switch in the middle of a burst and a
SIGKILL in the middle of an order, a full disk. What counts is what reached the simulator (its
`/admin/emitted`).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import signal
import subprocess
import urllib.request
from typing import Any

import orjson
import pytest
import zmq
import zmq.asyncio
from websockets.asyncio.client import connect

from core.client import Vectra
from tests.processes import REPO, VECTRA, health
from tests.test_orders_client import LIVE, TOKEN, sim, wire_count  # noqa: F401 - `sim` is a fixture

pytestmark = pytest.mark.timeout(180)

PEERS = 5


@pytest.fixture
def start_daemon(sim, daemon_for, monkeypatch):  # noqa: F811 - the imported fixture
    """Start (again) a live daemon logged in to the simulator as `bot`, with these extra settings."""
    monkeypatch.setenv("VECTRA_AUTH_TOKEN", TOKEN)

    def start(**extra: str):
        daemon = daemon_for(sim, **LIVE, **extra)
        daemon.wait_for(lambda events: any(e["type"] == "game.tick" and e["data"]["phase"] == "ACTIVE" for e in events))
        return daemon

    return start


def buy(order_id: str, amount: float = 0.001, **extra: Any) -> dict[str, Any]:
    return {"action": "order", "kind": "buy", "amount_sol": amount, "order_id": order_id, "token": TOKEN, **extra}


class Peer:
    """One client of the daemon, over the WebSocket or a ZeroMQ DEALER of its own."""

    def __init__(self, env: dict[str, str], transport: str) -> None:
        self.env, self.transport = env, transport

    async def __aenter__(self) -> "Peer":
        if self.transport == "ws":
            self._ws = await connect(f"ws://127.0.0.1:{self.env['VECTRA_HTTP_PORT']}/ws", max_size=None)
        else:
            self._zmq = zmq.asyncio.Context.instance().socket(zmq.DEALER)
            self._zmq.setsockopt(zmq.LINGER, 0)
            self._zmq.connect(self.env["VECTRA_ZMQ_ROUTER"])
        self._lock = asyncio.Lock()  # one request at a time per peer: replies come back in turn
        return self

    async def __aexit__(self, *exc: Any) -> None:
        if self.transport == "ws":
            await self._ws.close()
        else:
            self._zmq.close()

    async def ask(self, request: dict[str, Any] | str) -> dict[str, Any]:
        text = request if isinstance(request, str) else json.dumps(request)
        async with self._lock:
            if self.transport == "ws":
                await self._ws.send(text)
                while True:
                    message = json.loads(await asyncio.wait_for(self._ws.recv(), timeout=30))
                    if "v" not in message:
                        return message
            await self._zmq.send(text.encode())
            return orjson.loads((await asyncio.wait_for(self._zmq.recv_multipart(), timeout=30))[-1])


    async def burst(self, requests: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """Send every request at once, then wait for every reply (matched by `id`), in the order asked."""
        ids = [f"{self.transport}-{id(self)}-{number}" for number in range(len(requests))]
        async with self._lock:
            for request_id, request in zip(ids, requests):
                text = json.dumps({**request, "id": request_id})
                await (self._ws.send(text) if self.transport == "ws" else self._zmq.send(text.encode()))
            replies: dict[str, dict[str, Any]] = {}
            while len(replies) < len(ids):
                if self.transport == "ws":
                    message = json.loads(await asyncio.wait_for(self._ws.recv(), timeout=30))
                else:
                    message = orjson.loads((await asyncio.wait_for(self._zmq.recv_multipart(), timeout=30))[-1])
                if "v" not in message:
                    replies[message["id"]] = message
        return [replies[request_id] for request_id in ids]


async def replayed(env: dict[str, str], channels: list[str]) -> list[dict[str, Any]]:
    """Every recorded event of these channels, from the first, as the ROUTER replays them."""
    async with Peer(env, "zmq") as router:
        await router._zmq.send(json.dumps({"action": "replay", "from_seq": 1, "channels": channels}).encode())
        events = []
        while True:
            message = orjson.loads((await asyncio.wait_for(router._zmq.recv_multipart(), timeout=30))[-1])
            if message.get("type") == "replay.end":
                return events
            if "seq" in message and "v" in message:
                events.append(message)


def answered(daemon, records: list[dict[str, Any]]) -> None:  # noqa: ANN001 - DaemonProcess
    """Wait until the server answered every order these records show on the wire: frames of one
    connection arrive in order, so then the simulator has received every frame that was sent."""
    sent = {record["order_id"] for record in records if record["state"] not in ("requested", "rejected")}
    daemon.wait_for(lambda events: sent <= {e["data"]["order_id"] for e in events
                                            if e["type"] in ("order.ack", "order.timeout")})


def peers(env: dict[str, str], count: int) -> list[Peer]:
    """`count` clients, WebSocket and ZeroMQ in turn."""
    return [Peer(env, "ws" if number % 2 == 0 else "zmq") for number in range(count)]


async def test_malformed_orders_name_the_field_send_nothing_and_the_daemon_carries_on(sim, start_daemon):  # noqa: F811
    daemon = start_daemon()
    bad = [  # the order's fields as JSON text (`@` is a fresh order id), and the field the error must name
        ('"kind": "buy", "order_id": "@", "amount_sol": true', "amount_sol"),  # once a 1 SOL buy
        ('"kind": "buy", "order_id": "@", "amount_sol": "0.002"', "amount_sol"),
        ('"kind": "buy", "order_id": "@", "amount_sol": 1e-30', "amount_sol"),  # below one lamport
        ('"kind": "buy", "order_id": "@", "amount_sol": 0.0020000001', "amount_sol"),  # finer than a lamport
        ('"kind": "buy", "order_id": "@", "amount_sol": 0', "amount_sol"),
        ('"kind": "buy", "order_id": "@", "amount_sol": -0.001', "amount_sol"),
        ('"kind": "buy", "order_id": "@", "amount_sol": 1e999', "amount_sol"),  # Infinity, as JSON can write it
        ('"kind": "buy", "order_id": "@", "amount_sol": ' + "9" * 400, "amount_sol"),
        ('"kind": "sell", "order_id": "@", "percent": true', "percent"),  # once a 1 % sell
        ('"kind": "sell", "order_id": "@", "percent": "50"', "percent"),
        ('"kind": "sell", "order_id": "@", "percent": 50.5', "percent"),
        ('"kind": "sell", "order_id": "@", "percent": 0', "percent"),
        ('"kind": "sell", "order_id": "@", "percent": 101', "percent"),
        ('"kind": "sell", "order_id": "@", "percent": -1', "percent"),
        ('"kind": "sidebet", "order_id": "@", "amount_sol": 0.001, "x_payout": ' + "1" * 30, "x_payout"),
        ('"kind": "buy", "order_id": "@", "amount_sol": 0.001, "price": 2', "price"),
        ('"kind": "teleport", "order_id": "@"', "kind"),
        ('"kind": "buy", "amount_sol": 0.001', "order_id"),
        ('"kind": "buy", "order_id": 7, "amount_sol": 0.001', "order_id"),
        ('"kind": "buy", "order_id": "' + "x" * 10_000 + '", "amount_sol": 0.001', "order_id"),
        ('"kind": "buy", "order_id": "\\u00e9t\\u00e9", "amount_sol": 0.001', "order_id"),
    ]
    async with Peer(daemon.env, "ws") as ws, Peer(daemon.env, "zmq") as router:
        for number, (fields, named) in enumerate(bad):
            for peer in (ws, router):
                text = f'{{"action": "order", "token": "{TOKEN}", {fields.replace("@", f"bad-{number}")}}}'
                reply = await peer.ask(text)
                assert reply["type"] == "error" and reply["data"]["code"] == "bad_order", (fields[:80], reply)
                assert reply["data"]["message"].startswith(named), (fields[:80], reply)
        # Nothing of them reached the wire or the channels; the daemon is healthy and still takes orders.
        assert health(daemon.env)["status"] in ("ok", "degraded")
        good = await ws.ask(buy("good-1"))
        assert good["type"] == "order" and good["data"]["state"] in ("sent", "acked", "filled"), good
        answered(daemon, [good["data"]])
        # Twice the same bad id gets the same error: a malformed request reserves nothing.
        assert (await router.ask({**buy("bad-0"), "amount_sol": True}))["data"]["code"] == "bad_order"
    assert await wire_count(sim, "buyOrder") == 1
    assert await wire_count(sim, "sellOrder") == await wire_count(sim, "requestSidebet") == 0
    orders = [e for e in daemon.events if e["type"].startswith("order.")]
    assert {e["data"]["order_id"] for e in orders} == {"good-1"}


async def test_another_order_under_a_used_id_is_refused_and_a_retry_is_answered(sim, start_daemon):  # noqa: F811
    daemon = start_daemon()
    async with Peer(daemon.env, "ws") as ws, Peer(daemon.env, "zmq") as router:
        first = await ws.ask(buy("reused-1", amount=0.001))
        assert first["type"] == "order", first
        for peer, other in ((ws, buy("reused-1", amount=0.009)), (router, {**buy("reused-1"), "kind": "sidebet"}),
                            (router, {"action": "order", "kind": "sell", "percent": 100, "order_id": "reused-1",
                                      "token": TOKEN})):
            reply = await peer.ask(other)
            assert reply["type"] == "error" and reply["data"]["code"] == "order_id_reused", reply
            assert "reused-1" in reply["data"]["message"]
        again = await router.ask(buy("reused-1", amount=0.001))  # the same order again: a safe retry
        assert again["type"] == "order" and again["data"]["created_ms"] == first["data"]["created_ms"]
    answered(daemon, [first["data"]])
    assert await wire_count(sim, "buyOrder") == 1
    assert await wire_count(sim, "requestSidebet") == await wire_count(sim, "sellOrder") == 0


async def test_the_same_order_id_fifty_times_at_once_from_five_peers_is_one_frame(sim, start_daemon):  # noqa: F811
    daemon = start_daemon()
    async with contextlib.AsyncExitStack() as stack:
        clients = [await stack.enter_async_context(peer) for peer in peers(daemon.env, PEERS)]
        replies = await asyncio.gather(*(client.burst([buy("fifty-as-one")] * 10) for client in clients))
    records = [reply["data"] for per_peer in replies for reply in per_peer]
    assert len(records) == 50 and all(reply["type"] == "order" for per_peer in replies for reply in per_peer)
    assert len({record["created_ms"] for record in records}) == 1
    answered(daemon, records)
    assert await wire_count(sim, "buyOrder") == 1
    assert [e["data"]["order_id"] for e in daemon.of_type("order.request")] == ["fifty-as-one"]


@pytest.mark.parametrize(("limit", "code"), [({"VECTRA_ORDER_MAX_PER_MINUTE": "7"}, "limit_rate"),
                                             ({"VECTRA_ORDER_MAX_SOL_PER_GAME": "0.007"}, "limit_game_sol")])
async def test_fifty_orders_at_once_from_five_peers_never_pass_a_limit(sim, start_daemon, limit, code):  # noqa: F811
    daemon = start_daemon(VECTRA_ORDER_MAX_IN_FLIGHT="100", **{"VECTRA_ORDER_MAX_PER_MINUTE": "100", **limit})
    async with contextlib.AsyncExitStack() as stack:
        clients = [await stack.enter_async_context(peer) for peer in peers(daemon.env, PEERS)]
        replies = await asyncio.gather(*(
            client.burst([buy(f"p{number}-{order}") for order in range(10)]) for number, client in enumerate(clients)
        ))
    records = [reply["data"] for per_peer in replies for reply in per_peer]
    refused = [record for record in records if record["state"] == "rejected"]
    assert {record["code"] for record in refused} == {code}, refused
    assert len(records) - len(refused) == 7
    answered(daemon, records)
    assert await wire_count(sim, "buyOrder") == 7
    assert health(daemon.env)["status"] in ("ok", "degraded")


HALT_ROUNDS = 10
BURST = 16  # orders in flight at once, one per connection, when the kill switch comes


async def test_the_kill_switch_stops_orders_between_their_checks_and_the_wire(sim, start_daemon):  # noqa: F811
    """Orders pass their checks, then wait for their record to be durable before they go out. A halt
    in that moment once answered `halted: true` while those orders still went out after it. Now its
    reply lists none left undecided, and every order stopped on the way is refused and never sent.
    Rounds repeat until one catches an order on its way (most do at the first)."""
    daemon = start_daemon(VECTRA_ORDER_MAX_IN_FLIGHT="100", VECTRA_ORDER_MAX_PER_MINUTE="1000",
                          VECTRA_ORDER_MAX_SOL_PER_GAME="10")
    stopped_on_the_way: list[str] = []
    placed: list[dict[str, Any]] = []
    async with contextlib.AsyncExitStack() as stack:
        clients = [await stack.enter_async_context(Peer(daemon.env, "ws")) for _ in range(BURST)]
        operator = await stack.enter_async_context(Peer(daemon.env, "zmq"))
        for round_number in range(HALT_ROUNDS):
            ids = [f"r{round_number}-{number}" for number in range(BURST)]
            orders = [asyncio.create_task(client.ask(buy(order_id))) for client, order_id in zip(clients, ids)]
            await asyncio.sleep(0)  # every order is written to its socket before the halt
            halted = await operator.ask({"action": "orders_halt", "reason": "audit", "token": TOKEN})
            assert halted["data"]["halted"] is True, halted
            undecided = [r["order_id"] for r in halted["data"]["recent"] if r["order_id"] in ids and r["state"] == "requested"]
            assert undecided == [], f"the halt was answered while {undecided} could still go out"
            records = [reply["data"] for reply in await asyncio.gather(*orders)]
            placed += records
            stopped_on_the_way += [r["order_id"] for r in records if r.get("code") == "halted" and "frame" in r]
            assert (await operator.ask({"action": "orders_resume", "token": TOKEN}))["data"]["halted"] is False
            if stopped_on_the_way:
                break
    assert stopped_on_the_way, f"no round of {HALT_ROUNDS} caught an order between its checks and the wire"
    assert {r["state"] for r in placed} <= {"sent", "acked", "filled", "rejected"}
    assert {r["code"] for r in placed if r["state"] == "rejected"} == {"halted"}
    answered(daemon, placed)
    went_out = [r for r in placed if r["state"] != "rejected"]
    assert await wire_count(sim, "buyOrder") == len(went_out)
    for order_id in stopped_on_the_way:  # its life is on the channels: accepted, then refused, never sent
        life = [e["type"] for e in daemon.events if e["type"].startswith("order.") and e["data"]["order_id"] == order_id]
        assert life == ["order.request", "order.rejected"], (order_id, life)


ORDER_EVENTS = ("buyOrder", "sellOrder", "requestSidebet", "shortOpen", "shortClose")
EVERY_KIND = [{"kind": "buy", "amount_sol": 0.001}, {"kind": "sell", "percent": 100},
              {"kind": "sidebet", "amount_sol": 0.001}, {"kind": "short_open", "amount_sol": 0.001},
              {"kind": "short_close"}]


async def frames_at_sim(sim) -> int:  # noqa: ANN001, F811 - the simulator process
    return sum([await wire_count(sim, event) for event in ORDER_EVENTS])


async def test_with_no_order_settings_no_path_sends_an_order(sim, daemon_for, monkeypatch):  # noqa: F811
    """A daemon logged in to the simulator (it could trade) with no order setting at all: every
    transport, the client, the command line and every kind is refused `orders_off`, and recorded."""
    monkeypatch.setenv("VECTRA_AUTH_TOKEN", TOKEN)
    daemon = daemon_for(sim, VECTRA_FEED_AUTH='{"player": "bot"}')
    daemon.wait_for(lambda events: any(e["type"] == "game.tick" and e["data"]["phase"] == "ACTIVE" for e in events))
    tried = []
    async with Peer(daemon.env, "ws") as ws, Peer(daemon.env, "zmq") as router:
        for number, fields in enumerate(EVERY_KIND):
            for peer in (ws, router):
                order_id = f"off-{peer.transport}-{number}"
                reply = await peer.ask({"action": "order", "order_id": order_id, "token": TOKEN, **fields})
                assert (reply["data"]["state"], reply["data"]["code"]) == ("rejected", "orders_off"), reply
                tried.append(order_id)
    async with Vectra() as vectra:
        record = await vectra.buy(0.001, order_id="off-client")
        assert (record.state, record.code) == ("rejected", "orders_off")
        tried.append("off-client")
    cli = await asyncio.to_thread(subprocess.run, [*VECTRA, "order", "buy", "0.001", "--id", "off-cli"], cwd=REPO,
                                  capture_output=True, text=True, timeout=60, env=daemon.env)
    assert cli.returncode == 1 and "orders_off" in cli.stdout, (cli.stdout, cli.stderr)
    tried.append("off-cli")
    daemon.wait_for(lambda events: set(tried) <= {e["data"]["order_id"] for e in events if e["type"] == "order.rejected"})
    assert {e["type"] for e in daemon.events if e["type"].startswith("order.")} == {"order.rejected"}
    assert await frames_at_sim(sim) == 0


async def test_without_the_right_token_nothing_is_ordered_halted_or_resumed(sim, start_daemon):  # noqa: F811
    daemon = start_daemon()
    ws_url = f"ws://127.0.0.1:{daemon.env['VECTRA_HTTP_PORT']}/ws"
    async with Peer(daemon.env, "ws") as ws, Peer(daemon.env, "zmq") as router:
        assert (await router.ask({"action": "orders_halt", "token": TOKEN}))["data"]["halted"] is True
        wrong_tokens = [{}, {"token": ""}, {"token": "wrong"}, {"token": TOKEN.upper()}, {"token": TOKEN + " "},
                        {"auth": TOKEN}, {"Token": TOKEN}, {"data": {"token": TOKEN}}]
        for peer in (ws, router):
            for wrong in wrong_tokens:
                for request in ({**buy("no-token"), **{"token": None}, **wrong}, {"action": "orders_resume", **wrong}):
                    request = {key: value for key, value in request.items() if value is not None}
                    reply = await peer.ask(request)
                    assert reply["type"] == "error" and reply["data"]["code"] == "unauthorized", (request, reply)
            for request in ({**buy("no-token"), "token": 123}, {"action": "orders_resume", "token": [TOKEN]}):
                reply = await peer.ask(request)
                assert reply["type"] == "error" and reply["data"]["code"] == "bad_request", (request, reply)
        for header in ("Bearer wrong", "Bearer ", f"Basic {TOKEN}", TOKEN):
            async with connect(ws_url, additional_headers={"Authorization": header}) as bearer:
                await bearer.send(json.dumps({"action": "orders_resume"}))
                reply = json.loads(await asyncio.wait_for(bearer.recv(), timeout=10))
                assert reply["data"]["code"] == "unauthorized", (header, reply)
        status = await router.ask({"action": "orders_status"})
        assert status["data"]["halted"] is True  # still: no one lifted it
    assert await frames_at_sim(sim) == 0
    assert not [e for e in daemon.events if e["type"].startswith("order.")]


async def test_a_sigkill_between_the_frame_and_its_ack_never_sends_it_again_and_the_halt_holds(
    sim, start_daemon  # noqa: F811
):
    await asyncio.to_thread(post, f"{sim.url}/admin/acks", {"drop": 1})
    daemon = start_daemon(VECTRA_RECORD="true")
    async with Peer(daemon.env, "ws") as ws:
        first = (await ws.ask(buy("killed-1")))["data"]
        assert first["state"] == "sent", first
        assert (await ws.ask({"action": "orders_halt", "reason": "before the crash", "token": TOKEN}))["data"]["halted"]
    daemon.proc.send_signal(signal.SIGKILL)
    daemon.proc.wait(timeout=10)
    restarted = start_daemon(VECTRA_RECORD="true")
    # The restart settles it from the player's account (tests/test_orders_restart.py), halted or not:
    # settling sends nothing. Its one outcome event, then every retry gets the record as settled.
    outcomes = {"order.filled", "order.rejected", "order.timeout"}
    await asyncio.to_thread(restarted.wait_for, lambda events: any(
        e["type"] in outcomes and e["data"]["order_id"] == "killed-1" for e in events))
    settled = [e["type"] for e in restarted.events if e["type"].startswith("order.")]
    assert len(settled) == 1 and settled[0] in outcomes, settled
    async with Peer(restarted.env, "ws") as ws, Peer(restarted.env, "zmq") as router:
        for peer in (ws, router):  # the retry of a bot that never got its answer
            again = (await peer.ask(buy("killed-1")))["data"]
            assert again["state"] == settled[0].removeprefix("order.") and again["frame"] == first["frame"], again
        after = (await ws.ask(buy("after-crash")))["data"]
        assert (after["state"], after["code"]) == ("rejected", "halted"), after
        assert (await router.ask({"action": "orders_resume"}))["data"]["code"] == "unauthorized"
        assert (await router.ask({"action": "orders_status"}))["data"]["halted"] is True
    assert await wire_count(sim, "buyOrder") == 1
    # What was recorded before the kill is still there to replay: the order left, then came the restart.
    life = [e["type"] for e in await replayed(restarted.env, ["order.*"]) if e["data"]["order_id"] == "killed-1"]
    assert life[:2] == ["order.request", "order.sent"], life


def post(url: str, body: dict[str, Any]) -> Any:
    request = urllib.request.Request(url, data=json.dumps(body).encode(), headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=5) as reply:
        return json.loads(reply.read())


def fill(folder) -> None:  # noqa: ANN001 - a Path
    """Write a file until the file system is full."""
    with open(folder / "filler", "wb", buffering=0) as filler:
        with contextlib.suppress(OSError):
            while True:
                filler.write(b"\0" * 4096)


async def test_an_order_whose_record_cannot_be_written_is_refused_and_the_desk_goes_on(
    sim, start_daemon, tiny_disk  # noqa: F811
):
    """A full disk once made the order an `internal` error whose id stayed `requested` for good and
    whose kind stayed in flight, so every later order of that kind was refused until a restart; and a
    line cut short by it glued itself to the next, which a restart then forgot."""
    data_dir = tiny_disk / "data"
    daemon = start_daemon(VECTRA_DATA_DIR=str(data_dir), VECTRA_ORDER_MAX_IN_FLIGHT="100")
    went_out: list[dict[str, Any]] = []
    async with Peer(daemon.env, "ws") as ws:
        went_out.append((await ws.ask(buy("room-0")))["data"])  # the journal has begun a page
        await asyncio.to_thread(fill, tiny_disk)
        for number in range(40):  # the journal's last page still has room for a few lines
            full = await ws.ask(buy(f"full-{number}"))
            assert full["type"] == "order", full
            if full["data"]["state"] == "rejected":
                break
            went_out.append(full["data"])
        assert (full["data"]["state"], full["data"]["code"]) == ("rejected", "not_durable"), full
        assert (await ws.ask(buy(full["data"]["order_id"])))["data"]["code"] == "not_durable"  # a retry: the same
        assert health(daemon.env)["status"] in ("ok", "degraded")
        answered(daemon, went_out)
        (tiny_disk / "filler").unlink()
        await asyncio.to_thread(post, f"{sim.url}/admin/acks", {"drop": 1})  # its record stays at its first line
        after = (await ws.ask(buy("room-1")))["data"]
        assert after["state"] == "sent", after
        went_out.append(after)
    refused_id = full["data"]["order_id"]
    life = [e["type"] for e in daemon.events if e["type"].startswith("order.") and e["data"]["order_id"] == refused_id]
    assert life == ["order.request", "order.rejected"]
    daemon.proc.send_signal(signal.SIGKILL)
    daemon.proc.wait(timeout=10)
    restarted = start_daemon(VECTRA_DATA_DIR=str(data_dir))
    async with Peer(restarted.env, "zmq") as router:
        for record in went_out:  # every id that went out is still known: never sent again
            again = (await router.ask(buy(record["order_id"])))["data"]
            assert again["created_ms"] == record["created_ms"], again
    assert await wire_count(sim, "buyOrder") == len(went_out)


@pytest.mark.parametrize("tail", [b'{"order_id": "cut", "ki', b'{"order_id": "whole-but-no-newline", "state": "sent"}'])
async def test_a_journal_line_a_crash_cut_short_never_swallows_the_next_one(tmp_path, tail):
    from core.orders.journal import OrderJournal

    journal = OrderJournal(tmp_path / "orders")
    await journal.append({"order_id": "before", "state": "filled"})
    await journal.close()
    with journal.path.open("ab") as file:
        file.write(tail)
    records, _ = await asyncio.to_thread(journal.load)
    await journal.append({"order_id": "after", "state": "sent"})
    await journal.close()
    reloaded, _ = await asyncio.to_thread(journal.load)
    assert set(reloaded) == set(records) | {"after"} and "before" in reloaded


@pytest.mark.parametrize(("limit", "code"), [({"VECTRA_ORDER_MAX_PER_MINUTE": "3"}, "limit_rate"),
                                             ({"VECTRA_ORDER_MAX_SOL_PER_GAME": "0.003"}, "limit_game_sol")])
async def test_a_restart_hands_out_no_fresh_minute_and_no_fresh_game_budget(sim, start_daemon, limit, code):  # noqa: F811
    """The rate and per-game counts lived in memory only: a restart (or a crash loop) inside one game
    and one minute let as much through again."""
    settings = {"VECTRA_ORDER_MAX_IN_FLIGHT": "100", "VECTRA_ORDER_MAX_PER_MINUTE": "100", **limit}
    daemon = start_daemon(**settings)
    async with Peer(daemon.env, "ws") as ws:
        records = [(await ws.ask(buy(f"before-{number}")))["data"] for number in range(3)]
    assert all(record["state"] in ("sent", "acked", "filled") for record in records), records
    game = records[0]["gameId"]
    assert game and all(record["gameId"] == game for record in records)
    answered(daemon, records)
    assert daemon.terminate() == 0
    restarted = start_daemon(**settings)
    async with Peer(restarted.env, "ws") as ws:
        after = (await ws.ask(buy("after-restart")))["data"]
    assert after["gameId"] == game, "the same game goes on"
    assert (after["state"], after["code"]) == ("rejected", code), after
    assert await wire_count(sim, "buyOrder") == 3


async def test_a_halt_that_cannot_be_written_holds_now_and_says_it_would_not_survive_a_restart(
    sim, start_daemon, tiny_disk  # noqa: F811
):
    data_dir = tiny_disk / "data"
    daemon = start_daemon(VECTRA_DATA_DIR=str(data_dir))
    async with Peer(daemon.env, "zmq") as router:
        await asyncio.to_thread(fill, tiny_disk)
        halted = await router.ask({"action": "orders_halt", "reason": "full disk", "token": TOKEN})
        assert halted["type"] == "error" and halted["data"]["code"] == "not_durable", halted
        assert "restart" in halted["data"]["message"]
        refused = (await router.ask(buy("while-halted")))["data"]
        assert (refused["state"], refused["code"]) == ("rejected", "halted"), refused
        (tiny_disk / "filler").unlink()
        assert (await router.ask({"action": "orders_halt", "token": TOKEN}))["data"]["halted"] is True
    assert daemon.terminate() == 0
    restarted = start_daemon(VECTRA_DATA_DIR=str(data_dir))
    async with Peer(restarted.env, "zmq") as router:
        assert (await router.ask({"action": "orders_status"}))["data"]["halted"] is True
    assert await wire_count(sim, "buyOrder") == 0
