"""The outside load for the benchmarks: a bare Socket.IO server (python-socketio on aiohttp, no Vectra
code) pouring pre-encoded `gameStateUpdate` frames, in its own process so it does not share the
measured process's interpreter.

    python bench/feed_server.py PORT            # packets on stdin (one a line), poured on connect
    python bench/feed_server.py PORT --paced    # a stamped tick template, poured on GET /pour

Firehose mode (bench_ingest.py) sends what stdin held as fast as it can, to each client that connects.
Paced mode (bench_cost.py) waits for `GET /pour?rate=R&count=N`, then sends N frames to every
connected client at R frames/s and answers with what it managed (`sent`, `seconds`). Each paced frame
carries `tickCount` = its index and `benchSent` = "<index>:<time.time_ns() at send>", spliced into
the pre-encoded text (no encoding per frame), so a subscriber on this host can tell its latency.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time

import orjson

TICK_MARK = 987654321
STAMP_MARK = "@STAMP@"


def leaderboard() -> list[dict]:
    return [{"id": f"did:privy:{i:024d}", "username": f"player{i}", "pnl": 0.01 * i, "level": i,
             "positionQty": 0.5, "avgCost": 1.01, "totalInvested": 0.3} for i in range(28)]


def tick_frame(tick: int, board: list[dict]) -> dict:
    return {
        "gameId": "20261125-bench000000000000", "active": True, "rugged": False, "price": 1 + tick / 1000,
        "tickCount": tick, "cooldownTimer": 0, "allowPreRoundBuys": False, "tradeCount": tick,
        "connectedPlayers": 170, "leaderboard": board,
        "partialPrices": {"startTick": max(0, tick - 4), "endTick": tick,
                          "values": {str(t): 1 + t / 1000 for t in range(max(0, tick - 4), tick + 1)}},
    }


def tick_packet(tick: int, board: list[dict] | None = None) -> str:
    """One Socket.IO event packet of a ~4.9 KB `gameStateUpdate` (the real feed's typical size)."""
    return "2" + orjson.dumps(["gameStateUpdate", tick_frame(tick, board or leaderboard())]).decode()


def stamped_template() -> tuple[str, str, str]:
    """A tick packet cut where its index and its send stamp go: (head, middle, tail)."""
    frame = {"benchSent": STAMP_MARK, **tick_frame(TICK_MARK, leaderboard())}
    frame["tickCount"] = TICK_MARK
    text = "2" + orjson.dumps(["gameStateUpdate", frame]).decode()
    head, rest = text.split(STAMP_MARK)
    middle, tail = rest.split(str(TICK_MARK), 1)
    return head, middle, tail  # the stamp comes first in the frame, tickCount after it


def serve(port: int, paced: bool) -> None:
    import socketio
    from aiohttp import web

    sio = socketio.AsyncServer(async_mode="aiohttp", cors_allowed_origins="*")
    app = web.Application()
    sio.attach(app)
    clients: set[str] = set()
    packets = [] if paced else sys.stdin.read().split("\n")

    @sio.event
    async def connect(sid, environ):
        eio_sid = sio.manager.eio_sid_from_sid(sid, "/")
        clients.add(eio_sid)
        if not paced:
            asyncio.get_running_loop().create_task(firehose(eio_sid))

    @sio.event
    async def disconnect(sid, *args):
        clients.discard(sio.manager.eio_sid_from_sid(sid, "/"))

    async def firehose(eio_sid: str) -> None:
        await asyncio.sleep(0.2)
        for index, packet in enumerate(packets):
            await sio.eio.send(eio_sid, packet)
            if index % 50 == 0:
                await asyncio.sleep(0)

    head, middle, tail = stamped_template()

    async def pour(request: web.Request) -> web.Response:
        rate, count = float(request.query["rate"]), int(request.query["count"])
        began = time.perf_counter()
        index = 0
        while index < count:
            due = min(count, int((time.perf_counter() - began) * rate) + 1)
            while index < due:
                packet = f"{head}{index}:{time.time_ns()}{middle}{index + 1}{tail}"
                for eio_sid in list(clients):
                    await sio.eio.send(eio_sid, packet)
                index += 1
            await asyncio.sleep(max(0.0, began + index / rate - time.perf_counter()))
        return web.json_response({"sent": count, "seconds": time.perf_counter() - began, "clients": len(clients)})

    async def count_clients(request: web.Request) -> web.Response:
        return web.json_response({"clients": len(clients)})

    app.router.add_get("/pour", pour)
    app.router.add_get("/clients", count_clients)
    web.run_app(app, host="127.0.0.1", port=port, print=None)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("port", type=int)
    parser.add_argument("--paced", action="store_true")
    args = parser.parse_args()
    serve(args.port, args.paced)


if __name__ == "__main__":
    main()
