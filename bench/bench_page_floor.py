"""The floor under the `page` executor: what Chrome and DevTools alone add to an order, with no Vectra.

    .venv/bin/python bench/bench_page_floor.py [--orders 200]     # needs /usr/bin/chromium and `npm ci`

The `page` executor's target (issue 10) is under 5 ms added to the game server's own ack time at
p99. This measures how much of that budget the browser takes before any of Vectra's own hops (the
bot's request, the checks, the journal, the reply): a bare DevTools client, `websockets` on an
asyncio loop of its own in this process (no pychrome threads), drives headless Chromium (launched by
Vectra's own `ChromeManager`, with its flags) on the simulator's page (a separate process) exactly as
the executor does: Vectra's socket handle script added before the page loads, one `Runtime.evaluate`
that writes the order frame on the page's socket, and the ack read from `Network.webSocketFrameReceived`.

Printed, p50/p99 over the timed orders (ms):
  evaluate -> ack read   from the call to the ack's DevTools event read by this client
  simulator wire -> ack  the simulator's own time (its `/admin/emitted` log, same host clock)
  browser adds           the first minus the second, per order: what `page` cannot go below
  Chrome stamp -> read   from Chrome's own timestamp on the ack's event to this client reading it
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import websockets

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.bench_orders import get_json, long_game_seed, p50_p99  # noqa: E402
from core.chrome.devtools import list_pages  # noqa: E402
from core.chrome.manager import ChromeManager  # noqa: E402
from core.config import Settings  # noqa: E402
from core.orders.executors.page import HANDLE, HANDLE_SCRIPT  # noqa: E402
from tests.conftest import free_port  # noqa: E402
from tests.processes import SimProcess  # noqa: E402

PLAYER = "floor"
WARMUP_ORDERS = 20
FIRST_ACK_ID = 900_000_001
SEND = "((text) => { window[%s].socket.send(text); return true; })" % json.dumps(HANDLE)
READY = "Boolean(window[%s] && window[%s].ready)" % (json.dumps(HANDLE), json.dumps(HANDLE))


class DevTools:
    """One DevTools session on one page: calls answered by id, events queued with their read time."""

    def __init__(self, socket: websockets.ClientConnection) -> None:
        self.socket = socket
        self.events: asyncio.Queue[tuple[float, dict[str, Any]]] = asyncio.Queue()
        self._ids = itertools.count(1)
        self._waiting: dict[int, asyncio.Future[dict[str, Any]]] = {}
        self._reader = asyncio.create_task(self._read())

    async def _read(self) -> None:
        async for text in self.socket:
            read_at = time.monotonic()
            message = json.loads(text)
            if "id" in message:
                self._waiting.pop(message["id"]).set_result(message)
            else:
                self.events.put_nowait((read_at, message))

    async def call(self, method: str, **params: Any) -> dict[str, Any]:
        number = next(self._ids)
        self._waiting[number] = answer = asyncio.get_running_loop().create_future()
        await self.socket.send(json.dumps({"id": number, "method": method, "params": params}))
        return await answer

    async def evaluate(self, expression: str) -> Any:
        reply = await self.call("Runtime.evaluate", expression=expression, returnByValue=True)
        return reply["result"]["result"].get("value")

    async def ack(self, ack_id: int) -> tuple[float, float]:
        """(read at, Chrome's stamp), both on the monotonic clock, of the ack with this id."""
        prefix = f"43{ack_id}"
        while True:
            read_at, event = await self.events.get()
            if event.get("method") != "Network.webSocketFrameReceived":
                continue
            if event["params"]["response"]["payloadData"].startswith(prefix):
                return read_at, event["params"]["timestamp"]


def order_frame(n: int, ack_id: int) -> str:
    """Buys and sells in turn, so the books never run dry: the captured frame shape."""
    trace = {"__trace": True, "traceparent": f"00-{n:032x}-{n:016x}-01"}
    args = ["buyOrder", trace, {"amount": 0.001}] if n % 2 == 0 else ["sellOrder", trace, {"percentage": 100}]
    return f"42{ack_id}{json.dumps(args)}"


def simulator_time(sim: SimProcess) -> float | None:
    """The simulator's own wire -> ack of the latest order (ms), from its log."""
    entries = get_json(f"{sim.url}/admin/emitted")
    ours = [e for e in entries if e.get("player") == PLAYER and e["event"].startswith(("received/", "ack/"))]
    if len(ours) < 2 or not ours[-2]["event"].startswith("received/") or not ours[-1]["event"].startswith("ack/"):
        return None
    return ours[-1]["ts_ms"] - ours[-2]["ts_ms"]


async def open_page(port: int, sim: SimProcess) -> DevTools:
    target = (await list_pages(port, 5))[0]
    tools = DevTools(await websockets.connect(target["webSocketDebuggerUrl"], max_size=None, compression=None))
    await tools.call("Page.enable")
    await tools.call("Network.enable")
    names = {"handle": json.dumps(HANDLE), "match": json.dumps("socket.io")}
    await tools.call("Page.addScriptToEvaluateOnNewDocument", source=HANDLE_SCRIPT % names)
    await tools.call("Page.navigate", url=f"{sim.url}/?player={PLAYER}")
    for _ in range(200):
        if await tools.evaluate(READY):
            return tools
        await asyncio.sleep(0.1)
    raise SystemExit("the simulator's page never connected its socket")


async def measure(orders: int) -> dict[str, list[float]]:
    figures: dict[str, list[float]] = {"evaluate -> ack read": [], "simulator wire -> ack": [],
                                       "browser adds": [], "Chrome stamp -> read": []}
    with SimProcess(speed=1, seed=long_game_seed(), max_ticks=3000) as sim, \
            tempfile.TemporaryDirectory() as workdir:
        settings = Settings(data_dir=Path(workdir) / "data", chrome_profile=Path(workdir) / "profile",
                            cdp_port=free_port(), chrome_headless=True, game_url="about:blank")
        chrome = ChromeManager(settings)
        if await chrome.ensure() != "running":
            raise SystemExit(f"chromium did not start: {chrome.status()}")
        try:
            tools = await open_page(settings.cdp_port, sim)
            for n in range(WARMUP_ORDERS + orders):
                ack_id = FIRST_ACK_ID + n
                began = time.monotonic()
                await tools.evaluate(f"({SEND})({json.dumps(order_frame(n, ack_id))})")
                read_at, stamped = await tools.ack(ack_id)
                server = simulator_time(sim)
                if n >= WARMUP_ORDERS and server is not None:
                    total = (read_at - began) * 1000
                    figures["evaluate -> ack read"].append(total)
                    figures["simulator wire -> ack"].append(server)
                    figures["browser adds"].append(total - server)
                    figures["Chrome stamp -> read"].append((read_at - stamped) * 1000)
                await asyncio.sleep(0.05)
            await tools.socket.close()
        finally:
            await chrome.stop()
    return figures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--orders", type=int, default=200, help="timed orders (after %d of warm-up)" % WARMUP_ORDERS)
    args = parser.parse_args()
    load = " ".join(f"{value:.2f}" for value in os.getloadavg())
    figures = asyncio.run(measure(args.orders))
    print(f"load average {load}; {len(figures['browser adds'])} timed orders (ms)")
    print(f"{'':24} {'p50':>6} {'p99':>6}")
    for label, values in figures.items():
        p50, p99 = p50_p99(values)
        print(f"{label:24} {p50:6.2f} {p99:6.2f}")
    _, p99 = p50_p99(figures["browser adds"])
    print(f"the `page` target is under 5 ms added at p99: the browser alone adds {p99:.2f} ms at p99 "
          f"({'within' if p99 < 5 else 'over'} it before any of Vectra's own hops)")


if __name__ == "__main__":
    main()
