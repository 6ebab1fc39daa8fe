"""Orders as a bot sees them: from the client's call to the frame reaching the game server, and to
`order.ack`, for each executor, p50/p99, against the simulator.

    .venv/bin/python bench/bench_orders.py                      # 200 orders per executor, a few minutes
    .venv/bin/python bench/bench_orders.py --quick              # 20 orders per executor
    .venv/bin/python bench/bench_orders.py --executor direct --orders 500
    .venv/bin/python bench/bench_orders.py --executor page --stages   # and where the time goes

`page` and `click` need /usr/bin/chromium and the page's npm packages (`npm ci`); without them their
rows say so. Three processes, as in use, for each executor in turn: a fresh simulator (`vectra sim`,
speed 1, a few ticks into a game that lasts over 1,000 ticks), the daemon (`vectra --daemon`, orders
`live` with a token, unverified shapes allowed, the rate and per-game limits raised so the run is
allowed; `direct` logs in through VECTRA_FEED_AUTH, `page` and `click` drive the managed headless
Chromium on the simulator's `/?player=...` page with VECTRA_SOURCE=cdp) and the bot: this process,
with the project's `Vectra` client, subscribed to `order.*`.

The bot alternates `buy(0.001)` and `sell(100)`, so the books never run dry, one order at a time: it
waits for the order's outcome, then a short pause, then the next. Four warm-up orders are not counted.
An order Vectra refuses for a passing reason (`phase` or `no_position` after a rug in the middle of
the run, `feed_stale`, ...) is counted apart, not timed, and the bot tries again half a second later;
so is one the server refuses (failing ack) or never acknowledges. The run goes on until the number of
orders asked for has been timed.

One order's moments, all on this host's wall clock (epoch ms, the same clock in every process):
  call    just before the bot calls `vectra.buy()` / `vectra.sell()`
  wire    the simulator receives the frame (its `/admin/emitted` entry `received/<event>`, `ts_ms`)
  s.ack   the simulator lets the ack go (`ack/<event>`, `ts_ms`, taken as its handler returns it)
  ack     the bot has the ack: `order.ack` arrives on its subscription, or the order's reply already
          says `acked` / `filled`, whichever comes first
Printed: call->wire, call->ack, the simulator's own ack time (wire->s.ack) and what Vectra adds to it
(call->ack minus wire->s.ack, per order: the client, the daemon, the executor and, for `page` and
`click`, the browser, both ways). The targets are on that last figure at p99; they are reported as met
or not met, never asserted. The machine's load average is printed with the table: on a shared,
loaded machine the figures vary from run to run.

`--stages` also prints where the time goes, p50/p99 of each stage over the timed orders. The daemon's
own moments come from the `timing` of the order's `order.ack` (the desk received the request, its
checks passed and `order.request` is out, the journal record is durable, the executor returned, the
desk took the ack up); the stages run call -> received -> checked -> durable -> wire -> s.ack ->
acked -> ack and add up to call->ack. The executor's own return (durable -> sent) is shown aside:
with `page` the frame is on the wire before the DevTools call answers.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from core.chrome.manager import is_our_browser, pid_file, terminate_group  # noqa: E402
from core.client import Vectra, new_order_id  # noqa: E402
from core.config import Settings  # noqa: E402
from core.sim.world import COOLDOWN_MS, TICK_MS, World  # noqa: E402
from tests.conftest import free_port  # noqa: E402
from tests.processes import VECTRA, SimProcess  # noqa: E402

EXECUTORS = ("direct", "page", "click")
TARGET_MS = {"direct": 5.0, "page": 5.0, "click": 150.0}  # what Vectra may add to the server's ack time, p99
CHROMIUM = Path("/usr/bin/chromium")
NODE_CLIENT = REPO / "node_modules" / "socket.io-client" / "dist" / "socket.io.min.js"
ORDERS = 200
QUICK_ORDERS = 20
WARMUP_ORDERS = 4
BUY_SOL = 0.001  # one press of +0.001 for `click`
LONG_GAME_TICKS = 1000  # at speed 1, over four minutes of an open game
SPEED = 1
PAUSE_S = 0.05  # between an order's outcome and the next call
OUTCOME_WAIT_S = 8.0  # longer than the desk's ack timeout (3 s), after which `order.timeout` comes
READY_WAIT_S = 90.0  # the daemon up, its executor able to send (Chromium launched, page loaded)
# Refusals that pass (a rug, a page reloading, an order still unsettled): wait, count, go on; any
# other refusal (a limit, the kill switch) means the run is set up wrong and stops it.
PASSING = {"phase", "no_position", "feed_stale", "no_executor", "in_flight"}
MAX_PLACED = 3  # times the orders asked for, before a run that cannot time enough gives up
TOKEN = "bench-orders-token"
EVENTS = {"buy": "buyOrder", "sell": "sellOrder"}


def long_game_seed() -> int:
    """The first seed whose first game lasts LONG_GAME_TICKS ticks at least."""
    return next(seed for seed in range(1, 100_000) if World(seed, 0).game(0).rug_tick >= LONG_GAME_TICKS)


def get_json(url: str) -> Any:
    with urllib.request.urlopen(url, timeout=5) as reply:
        return json.loads(reply.read())


# --- the processes --------------------------------------------------------------------------------


class Daemon:
    """`vectra --daemon` for one executor, on its own ports, data folder and (for page/click) browser
    profile; its log goes to a file, shown when something fails."""

    def __init__(self, executor: str, sim: SimProcess, workdir: Path) -> None:
        self.player = f"bench-{executor}"
        self.data_dir = workdir / f"data-{executor}"
        self.profile = workdir / f"profile-{executor}"
        self.log = workdir / f"daemon-{executor}.log"
        self.pub = f"tcp://127.0.0.1:{free_port()}"
        self.router = f"tcp://127.0.0.1:{free_port()}"
        env = {
            "VECTRA_DATA_DIR": str(self.data_dir),
            "VECTRA_HTTP_PORT": str(free_port()),
            "VECTRA_ZMQ_PUB": self.pub,
            "VECTRA_ZMQ_ROUTER": self.router,
            "VECTRA_CDP_PORT": str(free_port()),
            "VECTRA_FEED_URL": sim.url,
            "VECTRA_AUTH_TOKEN": TOKEN,
            "VECTRA_ORDERS": "live",
            "VECTRA_ORDERS_UNVERIFIED": "true",  # `sellOrder` was never captured from the real site
            "VECTRA_ORDER_EXECUTOR": executor,
            "VECTRA_ORDER_MAX_PER_MINUTE": "100000",
            "VECTRA_ORDER_MAX_SOL_PER_GAME": "1000",
            "VECTRA_ORDER_MAX_TICK_AGE_S": "5",  # a loaded machine may hold a tick back a while
        }
        if executor == "direct":
            env |= {"VECTRA_SOURCE": "socketio", "VECTRA_FEED_AUTH": json.dumps({"player": self.player})}
        else:
            env |= {
                "VECTRA_SOURCE": "cdp",
                "VECTRA_GAME_URL": f"{sim.url}/?player={self.player}",
                "VECTRA_CDP_SOCKET_MATCH": f"127.0.0.1:{sim.port}/socket.io",
                "VECTRA_CHROME_HEADLESS": "true",
                "VECTRA_CHROME_PROFILE": str(self.profile),
                "VECTRA_CDP_SILENCE_RELOAD_S": "30",
            }
        inherited = {key: value for key, value in os.environ.items() if not key.startswith("VECTRA_")}
        self.env = {**inherited, **env}
        self.proc: subprocess.Popen | None = None

    def start(self) -> "Daemon":
        with self.log.open("w") as log:
            self.proc = subprocess.Popen([*VECTRA, "--daemon"], cwd=REPO, env=self.env, stdout=subprocess.DEVNULL,
                                         stderr=log)
        return self

    def log_tail(self, lines: int = 15) -> str:
        return "".join(self.log.read_text(errors="replace").splitlines(keepends=True)[-lines:])

    def stop(self) -> None:
        """SIGTERM (the daemon stops the browser it launched), SIGKILL after a grace; a browser left
        behind by a killed daemon is stopped through the pid file the daemon wrote."""
        if self.proc is None:
            return
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=10)
        browser = pid_file(Settings(data_dir=self.data_dir, chrome_profile=self.profile))
        if browser.is_file():
            pid = int(browser.read_text().strip() or 0)
            if pid and is_our_browser(Settings(data_dir=self.data_dir, chrome_profile=self.profile), pid):
                terminate_group(pid)


def long_game_simulator(seed: int) -> SimProcess:
    """A fresh simulator a few ticks into its first game, which lasts LONG_GAME_TICKS at least."""
    anchor = int(time.time() * 1000) - (COOLDOWN_MS + 4 * TICK_MS) // SPEED
    return SimProcess(speed=SPEED, seed=seed, max_ticks=LONG_GAME_TICKS * 4, anchor_ms=anchor).start()


# --- the bot --------------------------------------------------------------------------------------


class Outcomes:
    """The `order.*` channels as the bot receives them: the first of `order.ack`, `order.rejected`,
    `order.timeout` for each order, stamped on arrival."""

    FINAL = ("order.ack", "order.rejected", "order.timeout")

    def __init__(self, vectra: Vectra) -> None:
        self._waiting: dict[str, asyncio.Future[tuple[str, float, dict[str, Any]]]] = {}
        self._task = asyncio.create_task(self._collect(vectra.subscribe("order.*", dead_after_s=30)))

    def expect(self, order_id: str) -> asyncio.Future[tuple[str, float, dict[str, Any]]]:
        future = asyncio.get_running_loop().create_future()
        self._waiting[order_id] = future
        return future

    async def _collect(self, subscription: Any) -> None:
        async for event in subscription:
            if event.type not in self.FINAL:
                continue
            future = self._waiting.pop(event.data.get("order_id"), None)
            if future is not None and not future.done():
                future.set_result((event.type, time.time() * 1000, event.data))

    async def close(self) -> None:
        self._task.cancel()
        await asyncio.gather(self._task, return_exceptions=True)


# (label, from moment, to moment): one order's stages, in order; all but the last (aside) add up to call->ack
STAGES = (
    ("bot -> desk (client, ZeroMQ, request parsing)", "call", "received"),
    ("checks, order.request published", "received", "checked"),
    ("journal record durable (write + fsync)", "checked", "durable"),
    ("executor -> frame at the simulator", "durable", "wire"),
    ("simulator: trade frames, then the ack", "wire", "s.ack"),
    ("ack -> desk (transport, feed decoding, bus)", "s.ack", "acked"),
    ("order.ack -> bot (bus, ZeroMQ, client)", "acked", "ack"),
    ("aside: executor returned (durable -> sent)", "durable", "sent"),
)
DAEMON_MOMENTS = ("received", "checked", "durable", "sent", "acked")


@dataclass
class Timing:
    call_to_wire: float
    call_to_ack: float
    sim_ack: float
    moments: dict[str, float] | None = None  # call, wire, s.ack, ack and the daemon's own, when it gave them

    @property
    def added(self) -> float:
        return self.call_to_ack - self.sim_ack


@dataclass
class Run:
    executor: str
    timings: list[Timing] = field(default_factory=list)
    apart: Counter = field(default_factory=Counter)  # orders not timed, by why
    problem: str | None = None
    skipped: str | None = None  # this machine cannot run this executor


class Bot:
    """Places the orders one at a time and times each against the simulator's log."""

    def __init__(self, vectra: Vectra, outcomes: Outcomes, sim: SimProcess, player: str, run: Run) -> None:
        self.vectra, self.outcomes, self.sim, self.player, self.run = vectra, outcomes, sim, player, run
        self.log_seen = 0
        self.holding = False  # a buy went through and nothing sold it since

    async def place(self, timed: bool) -> None:
        kind = "sell" if self.holding else "buy"
        order_id = new_order_id()
        outcome = self.outcomes.expect(order_id)
        call = time.time() * 1000
        if kind == "buy":
            record = await self.vectra.buy(BUY_SOL, order_id=order_id)
        else:
            record = await self.vectra.sell(100, order_id=order_id)
        replied = time.time() * 1000
        if record.state == "rejected" and record.data.get("by") == "vectra":
            self._count(timed, f"refused: {record.code}")
            if record.code == "no_position":
                self.holding = False  # the rug sold it
            if record.code not in PASSING:
                raise RuntimeError(f"{kind} refused by Vectra: {record.code}: {record.message}")
            await asyncio.sleep(0.5)
            return
        try:
            channel, seen, data = await asyncio.wait_for(outcome, OUTCOME_WAIT_S)
        except TimeoutError:
            channel, seen, data = "none", 0.0, {}
        acked = seen
        daemon = data.get("timing") if channel == "order.ack" else None
        if record.state in ("acked", "filled"):
            acked = min(seen, replied) if channel == "order.ack" else replied
            channel, data = "order.ack", {"success": True}
        entries = await self._new_log_entries()
        if channel != "order.ack":
            self._count(timed, "no ack" if channel in ("none", "order.timeout") else channel)
            return
        if data.get("success") is not True:
            self._count(timed, "refused by the server")
            return
        self.holding = kind == "buy"
        event = EVENTS[kind]
        wire = [e["ts_ms"] for e in entries if e["event"] == f"received/{event}" and e["player"] == self.player]
        sim_ack = [e["ts_ms"] for e in entries if e["event"] == f"ack/{event}" and e["player"] == self.player]
        if not wire or not sim_ack:
            self._count(timed, "not in the simulator's log")
            return
        if timed:  # the latest entries are this order's: an earlier, unacknowledged one came before
            moments = None
            if isinstance(daemon, dict) and all(isinstance(daemon.get(key), (int, float)) for key in DAEMON_MOMENTS):
                moments = {**{key: daemon[key] for key in DAEMON_MOMENTS},
                           "call": call, "wire": wire[-1], "s.ack": sim_ack[-1], "ack": acked}
            self.run.timings.append(Timing(wire[-1] - call, acked - call, sim_ack[-1] - wire[-1], moments))

    def _count(self, timed: bool, why: str) -> None:
        if timed:
            self.run.apart[why] += 1

    async def _new_log_entries(self) -> list[dict[str, Any]]:
        entries = await asyncio.to_thread(get_json, f"{self.sim.url}/admin/emitted?since={self.log_seen}")
        if entries:
            self.log_seen = entries[-1]["n"]
        return entries


async def until_ready(vectra: Vectra, daemon: Daemon) -> None:
    """The daemon answers and its executor can send now."""
    deadline = time.monotonic() + READY_WAIT_S
    problem = "the daemon does not answer"
    while time.monotonic() < deadline:
        if daemon.proc is not None and daemon.proc.poll() is not None:
            raise RuntimeError(f"the daemon exited ({daemon.proc.returncode}):\n{daemon.log_tail()}")
        try:
            problem = (await vectra.orders())["executor_problem"]
        except TimeoutError:
            problem = "the daemon does not answer"
        if problem is None:
            return
        await asyncio.sleep(0.3)
    raise RuntimeError(f"not ready after {READY_WAIT_S:g} s: {problem}\n{daemon.log_tail()}")


async def measure(executor: str, orders: int, seed: int, workdir: Path) -> Run:
    run = Run(executor)
    if executor != "direct" and not (CHROMIUM.exists() and NODE_CLIENT.exists()):
        run.skipped = "needs /usr/bin/chromium and `npm ci`"
        return run
    sim = long_game_simulator(seed)
    daemon = Daemon(executor, sim, workdir).start()
    try:
        async with Vectra(pub=daemon.pub, router=daemon.router, token=TOKEN, timeout=10, attempts=1) as vectra:
            await until_ready(vectra, daemon)
            outcomes = Outcomes(vectra)
            await asyncio.sleep(0.5)  # the subscription is live before the first order
            bot = Bot(vectra, outcomes, sim, daemon.player, run)
            for _ in range(WARMUP_ORDERS):
                await bot.place(timed=False)
                await asyncio.sleep(PAUSE_S)
            for _ in range(orders * MAX_PLACED):
                if len(run.timings) >= orders:
                    break
                await bot.place(timed=True)
                await asyncio.sleep(PAUSE_S)
            await outcomes.close()
            if len(run.timings) < orders:
                run.problem = f"only {len(run.timings)} of {orders} orders timed in {orders * MAX_PLACED} tries"
    except (RuntimeError, TimeoutError) as exc:
        run.problem = f"{type(exc).__name__}: {exc}"
    finally:
        await asyncio.to_thread(daemon.stop)
        sim.kill()
    return run


# --- the table ------------------------------------------------------------------------------------


def p50_p99(values: list[float]) -> tuple[float, float]:
    if len(values) == 1:
        return values[0], values[0]
    cuts = statistics.quantiles(values, n=100, method="inclusive")
    return cuts[49], cuts[98]


HEADER = (f"{'executor':<9} {'timed':>5}   {'call->wire':>13}   {'call->ack':>13}   {'server ack':>13}   "
          f"{'Vectra adds':>13}   {'target p99':>10}")
SUBHEADER = f"{'':<9} {'':>5}   {'p50':>6} {'p99':>6}   {'p50':>6} {'p99':>6}   {'p50':>6} {'p99':>6}   {'p50':>6} {'p99':>6}"


def row(run: Run) -> str:
    target = TARGET_MS[run.executor]
    if run.skipped:
        return f"{run.executor:<9} {0:>5}   skipped: {run.skipped}"
    if not run.timings:
        return f"{run.executor:<9} {0:>5}   no order timed: {run.problem or 'see the orders not timed below'}"
    columns = [
        [t.call_to_wire for t in run.timings],
        [t.call_to_ack for t in run.timings],
        [t.sim_ack for t in run.timings],
        [t.added for t in run.timings],
    ]
    figures = "   ".join(f"{p50:6.1f} {p99:6.1f}" for p50, p99 in map(p50_p99, columns))
    verdict = "met" if p50_p99(columns[-1])[1] < target else "not met"
    return f"{run.executor:<9} {len(run.timings):>5}   {figures}   {'< ' + format(target, 'g') + ' ms':>10}   {verdict}"


def stage_table(run: Run) -> list[str]:
    """p50/p99 of each stage (ms) over the orders whose `order.ack` carried the daemon's moments."""
    timed = [t.moments for t in run.timings if t.moments is not None]
    if not timed:
        return [f"{run.executor}: no stage timing (no order.ack carried `timing`)"]
    lines = [f"{run.executor}: stages over {len(timed)} orders (ms)", f"  {'stage':<46} {'p50':>6} {'p99':>6}"]
    for label, start, end in STAGES:
        p50, p99 = p50_p99([moments[end] - moments[start] for moments in timed])
        lines.append(f"  {label:<46} {p50:6.2f} {p99:6.2f}")
    return lines


def load_line() -> str:
    one, five, fifteen = os.getloadavg()
    return f"load average {one:.2f} {five:.2f} {fifteen:.2f} on {os.cpu_count()} cores"


async def main(executors: list[str], orders: int, stages: bool = False) -> int:
    seed = long_game_seed()
    runs = []
    with tempfile.TemporaryDirectory(prefix="bench-orders-") as folder:
        for executor in executors:
            print(f"{executor}: {orders} orders ...", file=sys.stderr, flush=True)
            runs.append(await measure(executor, orders, seed, Path(folder)))
    print(f"orders against the simulator (speed {SPEED}, seed {seed}): {orders} timed per executor after "
          f"{WARMUP_ORDERS} warm-up, buy {BUY_SOL:g} SOL / sell 100 % in turn; ms, wall clock")
    print(load_line())
    print(HEADER)
    print(SUBHEADER)
    for run in runs:
        print(row(run))
    for run in runs:
        if run.apart:
            print(f"{run.executor}: not timed: " + ", ".join(f"{why} {count}" for why, count in sorted(run.apart.items())))
        if run.problem and run.timings:
            print(f"{run.executor}: stopped early: {run.problem}")
    if stages:
        for run in runs:
            if run.timings:
                print("\n".join(stage_table(run)))
    return 0 if all(run.timings or run.skipped for run in runs) else 1


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--orders", type=int, default=ORDERS, help=f"orders timed per executor (default {ORDERS})")
    parser.add_argument("--quick", action="store_true", help=f"{QUICK_ORDERS} orders per executor")
    parser.add_argument("--executor", action="append", choices=EXECUTORS,
                        help="only this executor (repeat for several; default: all three)")
    parser.add_argument("--stages", action="store_true", help="also print where the time goes, stage by stage")
    args = parser.parse_args(argv)
    if args.orders < 1:
        parser.error("--orders must be at least 1")
    if args.quick:
        args.orders = QUICK_ORDERS
    return args


if __name__ == "__main__":
    arguments = parse_args()
    sys.exit(asyncio.run(main(arguments.executor or list(EXECUTORS), arguments.orders, arguments.stages)))
