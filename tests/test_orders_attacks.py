"""The order path attacked as an outsider would: a real `vectra --daemon` placing live orders on the
simulator through its `direct` executor, hit over raw WebSocket and ZeroMQ connections with malformed
orders, reused ids, bursts from several peers at once, a kill switch in the middle of a burst and a
SIGKILL in the middle of an order. What counts is what reached the simulator (its `/admin/emitted`).
"""

from __future__ import annotations

import asyncio
import json
import signal
from typing import Any

import orjson
import pytest
import zmq
import zmq.asyncio
from websockets.asyncio.client import connect

from tests.processes import health
from tests.test_orders_client import LIVE, TOKEN, get, sim, wire_count  # noqa: F401 - `sim` is a fixture

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


async def emitted(sim) -> list[dict]:  # noqa: ANN001, F811 - the simulator process
    return await asyncio.to_thread(get, f"{sim.url}/admin/emitted")


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
    assert await wire_count(sim, "buyOrder") == 1
    assert await wire_count(sim, "requestSidebet") == await wire_count(sim, "sellOrder") == 0
