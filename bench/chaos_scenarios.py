"""The scenarios of the chaos matrix (issue 14), each a small function over `bench/chaos_harness.py`.

A scenario gets a started-or-not `Stack`, does one kind of damage, calls `stack.fault_over()` when the
damage stops, and uses `stack.fail(...)` for behaviour the issue requires that did not hold (a check
beyond the common measures). Every scenario is bounded in time (its `timeout_s`) and traffic.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import orjson
import zmq
import zmq.asyncio
from websockets.asyncio.client import connect as ws_connect

from core.client import request, subscribe
from tests.processes import DaemonProcess

from bench.chaos_harness import (
    REPO,
    Stack,
    View,
    can_mount,
    http_get,
    scenario,
    tmpfs,
    watch_with_websocket,
)

CHROMIUM = Path("/usr/bin/chromium")
PAGE_CLIENT = REPO / "node_modules" / "socket.io-client" / "dist" / "socket.io.min.js"


# --- feed --------------------------------------------------------------------------------------------


async def feed_fault_and_back(stack: Stack, body: dict[str, Any], lasts_s: float = 0, in_game: bool = False,
                              reconnects: bool = False) -> dict:
    """One simulator fault (during a running game if `in_game`), lasting `lasts_s`, then 4 s of normal
    feed. A fault that reached no client, or (`reconnects`) after which the daemon never reconnected,
    fails the check: the row would otherwise prove nothing. Returns the simulator's state at the fault."""
    await stack.start()
    if in_game:
        await stack.wait_phase(("ACTIVE",))
    before = await reconnect_count(stack)
    at_fault = await stack.sim_state()
    reply = await stack.fault(**body)
    if not reply.get("clients"):
        stack.fail(f"the {body['kind']} fault reached no client")
    await asyncio.sleep(lasts_s)
    stack.fault_over()
    await asyncio.sleep(4)
    if reconnects and await reconnect_count(stack) == before:
        stack.fail(f"the daemon never reconnected after the {body['kind']} fault")
    return at_fault


async def reconnect_count(stack: Stack) -> int:
    """The feed connection's reconnects so far, as `/health` counts them."""
    return orjson.loads((await asyncio.to_thread(http_get, stack.http_url + "/health"))[1])["connection"]["reconnects"]


@scenario("feed-killed", quick=True)
async def feed_killed(stack: Stack) -> None:
    await stack.start()
    await asyncio.to_thread(stack.sim.kill)
    await asyncio.sleep(2)
    before = await reconnect_count(stack)
    await asyncio.to_thread(stack.sim.start)  # same port, seed and anchor: the same world goes on
    stack.fault_over()
    await asyncio.sleep(4)
    if await reconnect_count(stack) == before:
        stack.fail("the daemon never reconnected to the restarted simulator")


@scenario("feed-silent")
async def feed_silent(stack: Stack) -> None:
    await feed_fault_and_back(stack, {"kind": "silence", "seconds": 6}, 6, reconnects=True)


def bad_frame(kind: str, **body: Any):
    async def run(stack: Stack) -> None:
        await feed_fault_and_back(stack, {"kind": kind, **body})
        errors = [e for e in stack.watchers.events.values() if e["type"] == "error"]
        if not errors:
            stack.fail(f"no `error` event for the {kind} frame")

    return run


for _kind, _body in (("malformed", {}), ("truncated", {}), ("binary", {}), ("oversized", {"bytes": 2_000_000})):
    scenario(f"feed-{_kind}")(bad_frame(_kind, **_body))


@scenario("feed-duplicates")
async def feed_duplicates(stack: Stack) -> None:
    await feed_fault_and_back(stack, {"kind": "duplicate", "count": 50})


@scenario("feed-reorder")
async def feed_reorder(stack: Stack) -> None:
    await feed_fault_and_back(stack, {"kind": "reorder", "count": 5}, in_game=True)


@scenario("feed-reconnect-in-game")
async def feed_reconnect_in_game(stack: Stack) -> None:
    await feed_fault_and_back(stack, {"kind": "drop", "seconds": 0.3}, 0.3, in_game=True, reconnects=True)


@scenario("feed-long-disconnect-rug")
async def feed_long_disconnect_rug(stack: Stack) -> None:
    """Games here last ~3 s: the game running at the drop rugs unseen, and the next one runs unseen."""
    at_fault = await feed_fault_and_back(stack, {"kind": "drop", "seconds": 5}, 5, in_game=True, reconnects=True)
    ends = [e for e in stack.watchers.events.values() if e["type"] == "game.end" and e["gameId"] == at_fault["gameId"]]
    if (await stack.sim_state())["gameId"] == at_fault["gameId"]:
        stack.fail("no rug happened while the feed was away")
    elif len(ends) != 1:
        stack.fail(f"the game running at the drop got {len(ends)} game.end")


# --- browser (CDP source) ------------------------------------------------------------------------------


def browser_available() -> str | None:
    if not CHROMIUM.exists():
        return "no /usr/bin/chromium"
    if not PAGE_CLIENT.exists():
        return "no node_modules (npm ci) for the simulator's page"
    return None


async def chrome_pid(stack: Stack) -> int:
    status, body = await asyncio.to_thread(http_get, stack.http_url + "/health")
    return int(orjson.loads(body)["chrome"]["pid"])


async def game_tab(stack: Stack) -> dict:
    from core.chrome.devtools import list_pages

    pages = await list_pages(int(stack.env["VECTRA_CDP_PORT"]), 5)
    return next(page for page in pages if page["url"].startswith("http"))


async def call_on_tab(stack: Stack, method: str) -> None:
    import pychrome

    from core.chrome.pychrome_tab import QuietTab

    tab = QuietTab(**await game_tab(stack))
    await asyncio.to_thread(tab.start)
    try:
        with contextlib.suppress(pychrome.PyChromeException):
            await asyncio.to_thread(tab.call_method, method, _timeout=1)
    finally:
        await asyncio.to_thread(tab.stop)


async def browser_fault(stack: Stack, damage) -> None:
    from core.chrome.manager import terminate_group

    await stack.start(wait_events=300)
    first = await chrome_pid(stack)
    stack.cleanups.append(lambda: terminate_group(first, grace_s=0))
    mark = max(stack.watchers.events)
    await damage(stack, first)
    stack.fault_over()
    await stack.wait_for(lambda: sum(1 for seq, e in stack.watchers.events.items()
                                     if seq > mark and e["type"] == "raw.gameStateUpdate") >= 100,
                         40, "browser frames again")
    with contextlib.suppress(Exception):
        later = await chrome_pid(stack)
        stack.cleanups.append(lambda: terminate_group(later, grace_s=0))


async def kill_chromium(stack: Stack, pid: int) -> None:
    from core.chrome.manager import terminate_group

    await asyncio.to_thread(terminate_group, pid, 0)


async def crash_renderer(stack: Stack, pid: int) -> None:
    await call_on_tab(stack, "Page.crash")


async def close_tab(stack: Stack, pid: int) -> None:
    from core.chrome.devtools import close_page

    await close_page(int(stack.env["VECTRA_CDP_PORT"]), (await game_tab(stack))["id"], 5)


async def reload_page(stack: Stack, pid: int) -> None:
    await call_on_tab(stack, "Page.reload")


for _name, _damage in (("killed", kill_chromium), ("renderer-crashed", crash_renderer),
                       ("tab-closed", close_tab), ("page-reloaded", reload_page)):
    scenario(f"browser-{_name}", needs=browser_available, cdp=True, speed=4, max_ticks=40)(
        lambda stack, damage=_damage: browser_fault(stack, damage))


# --- subscribers ----------------------------------------------------------------------------------------


async def watch_with_zmq_socket(stack: Stack, view: View, from_seq: int = 1, stop_after: int | None = None) -> None:
    """A bare SUB socket that resumes as the protocol says: replay from the ROUTER, then live."""
    context = zmq.asyncio.Context.instance()
    sub = context.socket(zmq.SUB)
    dealer = context.socket(zmq.DEALER)
    try:
        sub.setsockopt(zmq.SUBSCRIBE, b"")
        sub.connect(stack.env["VECTRA_ZMQ_PUB"])
        dealer.connect(stack.env["VECTRA_ZMQ_ROUTER"])
        await asyncio.sleep(0.3)  # the subscription reaches the PUB before the replay is asked for
        await dealer.send(orjson.dumps({"action": "replay", "from_seq": from_seq}))
        while True:
            reply = orjson.loads((await dealer.recv_multipart())[-1])
            if reply.get("type") == "gap":
                view.declared.append((reply["from_seq"], reply["to_seq"]))
            elif reply.get("type") == "replay.end":
                break
            elif isinstance(reply.get("seq"), int):
                view.seqs.add(reply["seq"])
                stack.watchers.keep(reply)
            else:
                raise RuntimeError(f"replay refused: {reply}")
        while stop_after is None or len(view.seqs) < stop_after:
            channel, body = await sub.recv_multipart()
            if channel == b"sys.heartbeat":
                continue
            envelope = orjson.loads(body)
            view.seqs.add(envelope["seq"])
            stack.watchers.keep(envelope)
    finally:
        sub.close(linger=0)
        dealer.close(linger=0)


async def kill_and_resume(stack: Stack, watcher, name: str) -> None:
    """A subscriber stops abruptly after some events, stays away 2 s, resumes from its last seq + 1."""
    await stack.start()
    view = stack.watch(watcher, name, stop_after=300)
    await stack.wait_for(lambda: len(view.seqs) >= 300, 30, f"{name} to get 300 events")
    await asyncio.sleep(2)
    resumed_at = time.monotonic()
    target = await asyncio.to_thread(stack.last_seq)
    stack.watchers.start(watcher(stack, view, from_seq=view.high() + 1))
    await stack.wait_for(lambda: view.high() >= target, 20, f"{name} to catch up")
    stack.recovery_override = time.monotonic() - resumed_at
    await asyncio.sleep(1)


@scenario("sub-zmq-killed-resumed")
async def zmq_killed(stack: Stack) -> None:
    await kill_and_resume(stack, watch_with_zmq_socket, "zmq socket")


@scenario("sub-ws-killed-resumed", quick=True)
async def ws_killed(stack: Stack) -> None:
    await kill_and_resume(stack, watch_with_websocket, "ws resumed")


async def watch_with_tail(stack: Stack, view: View, from_seq: int = 1, stop_after: int | None = None) -> None:
    """`vectra tail --from-seq N` (the Python client as its own process), SIGKILLed after
    `stop_after` events."""
    args = [sys.executable, "-m", "vectra_cli", "tail", "--from-seq", str(from_seq)]
    process = subprocess.Popen(args, cwd=REPO, env={**os.environ, **stack.env},
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    stack.cleanups.append(process.kill)

    def read_reports() -> None:
        for line in process.stderr:
            with contextlib.suppress(ValueError):
                report = orjson.loads(line)
                if report.get("type") == "client.gap":
                    view.declared.append((report["data"]["from_seq"], report["data"]["to_seq"]))

    threading.Thread(target=read_reports, daemon=True).start()
    try:
        while stop_after is None or len(view.seqs) < stop_after:
            line = await asyncio.to_thread(process.stdout.readline)
            if not line:
                return
            envelope = orjson.loads(line)
            view.seqs.add(envelope["seq"])
            stack.watchers.keep(envelope)
    finally:
        process.kill()
        process.wait()


@scenario("sub-client-killed-resumed", quick=True)
async def tail_killed(stack: Stack) -> None:
    await kill_and_resume(stack, watch_with_tail, "vectra tail")


async def slow_websocket(stack: Stack, view: View, from_seq: int = 1) -> None:
    """Reads one message every 2 ms and resumes whenever the daemon closes it for being too slow."""
    next_seq = from_seq
    while True:
        with contextlib.suppress(Exception):
            async with ws_connect(stack.ws_url, max_size=None, open_timeout=3, max_queue=1) as ws:
                await ws.send(orjson.dumps({"action": "subscribe", "channels": ["*"], "from_seq": next_seq}).decode())
                async for message in ws:
                    item = orjson.loads(message)
                    if item.get("type") == "gap":
                        view.declared.append((item["from_seq"], item["to_seq"]))
                    elif isinstance(item.get("seq"), int) and "v" in item:
                        view.seqs.add(item["seq"])
                        next_seq = max(next_seq, item["seq"] + 1)
                    await asyncio.sleep(0.002)
        stack.note_once("the slow WebSocket was closed and resumed")
        await asyncio.sleep(0.2)


async def slow_client(stack: Stack, view: View, from_seq: int = 1) -> None:
    """The Python client with a queue of 100 live messages, its caller taking 2 ms per event: ZeroMQ
    drops what does not fit and the client must replay it."""
    subscription = subscribe(from_seq=from_seq, pub=stack.env["VECTRA_ZMQ_PUB"], router=stack.env["VECTRA_ZMQ_ROUTER"],
                             dead_after_s=3.0, queue_limit=100)
    async for item in subscription:
        if item.type == "client.gap":
            view.declared.append((item.data["from_seq"], item.data["to_seq"]))
        elif item.seq is not None:
            view.seqs.add(item.seq)
        await asyncio.sleep(0.002)


@scenario("sub-slow", env={"VECTRA_WS_BUFFER_BYTES": "262144"}, speed=20)
async def slow_subscribers(stack: Stack) -> None:
    await stack.start()
    stack.watch(slow_websocket, "slow ws")
    stack.watch(slow_client, "slow client")
    await asyncio.sleep(10)
    stack.fault_over()


@scenario("sub-never-reading")
async def never_reading(stack: Stack) -> None:
    await stack.start()
    context = zmq.Context.instance()
    stuck = context.socket(zmq.SUB)
    stuck.setsockopt(zmq.RCVHWM, 1)
    stuck.setsockopt(zmq.RCVBUF, 4096)
    stuck.setsockopt(zmq.SUBSCRIBE, b"")
    stuck.connect(stack.env["VECTRA_ZMQ_PUB"])
    stack.cleanups.append(lambda: stuck.close(linger=0))
    idle = socket.create_connection(("127.0.0.1", int(stack.env["VECTRA_HTTP_PORT"])))
    idle.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    stack.cleanups.append(idle.close)
    idle.sendall(b"GET /ws HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                 b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n")
    subscribe_frame = masked_text(orjson.dumps({"action": "subscribe", "channels": ["*"], "from_seq": 1}))
    idle.sendall(subscribe_frame)
    await asyncio.sleep(12)
    stack.fault_over()
    await asyncio.sleep(2)


def masked_text(payload: bytes) -> bytes:
    """One client-to-server WebSocket text frame (mask of zeros), written by hand so that the
    client can be made to never read."""
    header = bytes([0x81])
    if len(payload) < 126:
        header += bytes([0x80 | len(payload)])
    elif len(payload) < 65536:
        header += bytes([0x80 | 126]) + len(payload).to_bytes(2, "big")
    else:
        header += bytes([0x80 | 127]) + len(payload).to_bytes(8, "big")
    return header + b"\0\0\0\0" + payload


# --- Vectra itself ----------------------------------------------------------------------------------------


def restart(how: signal.Signals, phases: tuple[str, ...]):
    async def run(stack: Stack) -> None:
        await stack.start()
        await stack.wait_phase(phases)
        code = await stack.stop_daemon(how)
        if how == signal.SIGTERM and code != 0:
            stack.fail(f"SIGTERM exit code {code}")
        await asyncio.sleep(1)
        restarted = await stack.start_daemon()
        stack.fault_over()
        back = time.monotonic()  # then 4 s of feed, as after the other faults, holding a whole game
        await stack.wait_for(lambda: whole_game_after(stack, restarted), 30, "a whole game after the restart")
        await asyncio.sleep(max(0.0, back + 4 - time.monotonic()))

    return run


def whole_game_after(stack: Stack, daemon: DaemonProcess) -> bool:
    """The watchers hold the `game.end` of a game `daemon` saw from its tick 0: the restarted daemon
    played one whole game, and the game the stop cut into, older, must have its end by then (the
    verdict counts a game left open while a later one ran)."""
    if not daemon.events:
        return False
    since = daemon.events[0]["seq"]  # its sys.start
    events = [event for seq, event in list(stack.watchers.events.items()) if seq > since]
    whole = {event["gameId"] for event in events if event["type"] == "game.start" and event["data"]["tick"] == 0}
    return any(event["type"] == "game.end" and event["gameId"] in whole for event in events)


for _signal in (signal.SIGTERM, signal.SIGKILL):
    for _where, _phases in (("mid-game", ("ACTIVE",)), ("mid-cooldown", ("COOLDOWN", "PRESALE"))):
        scenario(f"vectra-{_signal.name.lower()}-{_where}", quick=(_signal, _where) == (signal.SIGKILL, "mid-game"))(
            restart(_signal, _phases))


# --- disk ---------------------------------------------------------------------------------------------------


def fill(directory: Path) -> Path:
    filler = directory / "filler"
    subprocess.run(["dd", "if=/dev/zero", f"of={filler}", "bs=64k"], capture_output=True)
    return filler


@scenario("disk-full-at-start", needs=can_mount)
async def disk_full_at_start(stack: Stack) -> None:
    mount = tmpfs(stack, "8m")
    stack.data_dir = mount / "data"
    stack.env["VECTRA_DATA_DIR"] = str(stack.data_dir)
    filler = fill(mount)
    await asyncio.to_thread(stack.sim.start)
    try:
        await stack.start_daemon()
        stack.fail("the daemon started on a full disk")
    except RuntimeError as exc:
        if "exited 2" not in str(exc):
            stack.fail(str(exc).replace("exited -7", "killed by SIGBUS")[:160])
    filler.unlink()
    await stack.start()
    stack.fault_over()
    await asyncio.sleep(3)


@scenario("disk-full-while-recording", needs=can_mount)
async def disk_full_while_recording(stack: Stack) -> None:
    mount = tmpfs(stack, "64m")
    stack.data_dir = mount / "data"
    stack.env["VECTRA_DATA_DIR"] = str(stack.data_dir)
    await stack.start()
    filler = fill(mount)
    await stack.wait_for(lambda: any(e["type"] == "error" and e["data"].get("code") == "record_failed"
                                     for e in stack.watchers.events.values()), 30, "record_failed")
    await asyncio.sleep(3)
    filler.unlink()
    stack.fault_over()
    await stack.wait_for(lambda: stack.watchers.health and stack.watchers.health[-1][2] == "recording", 30,
                         "recording again")
    await asyncio.sleep(2)


# --- attacks ------------------------------------------------------------------------------------------------


PING = orjson.dumps({"action": "ping"})


async def ws_exchange(stack: Stack, *messages: bytes | str, headers: dict | None = None, wait_s: float = 3,
                      until_pong: bool = False) -> list[dict]:
    """Send messages on a fresh WebSocket, return the non-event replies until `wait_s` of quiet, or
    (`until_pong`, the last message being a `ping`) until the first `pong`: a connection's commands
    are answered in the order sent, so every reply to the messages before it came first."""
    replies: list[dict] = []
    async with ws_connect(stack.ws_url, max_size=None, additional_headers=headers or {}) as ws:
        for message in messages:
            await ws.send(message.decode() if isinstance(message, bytes) else message)  # commands are text
        with contextlib.suppress(asyncio.TimeoutError, Exception):
            while not (until_pong and replies and replies[-1].get("type") == "pong"):
                item = orjson.loads(await asyncio.wait_for(ws.recv(), wait_s))
                if "v" not in item:
                    replies.append(item)
    return replies


async def attack(stack: Stack, body) -> None:
    await stack.start()
    await body(stack)
    stack.fault_over()
    await asyncio.sleep(4)


def attack_scenario(name: str, **options: Any):
    def register(body):
        scenario(name, **options)(lambda stack: attack(stack, body))
        return body

    return register


@attack_scenario("attack-many-patterns", timeout_s=400)
async def many_patterns(stack: Stack) -> None:
    """Defect 1: eight subscribes of 6,000 distinct patterns on one WebSocket; each must be refused
    (`too_many_patterns`), and the daemon must answer that connection's `ping` behind them and a
    ROUTER `ping` within 5 s of the first (waiting up to 5 min to say how long it was held)."""
    messages = [orjson.dumps({"action": "subscribe", "channels": [f"x{batch}.{n}" for n in range(6000)]}).decode()
                for batch in range(8)]
    before = time.monotonic()
    replies: list[dict] = []
    with contextlib.suppress(Exception):
        async with ws_connect(stack.ws_url, max_size=None) as ws:
            for message in messages:
                await ws.send(message)
            await ws.send('{"action":"ping"}')
            async with asyncio.timeout(300):
                while not replies or replies[-1].get("type") != "pong":
                    item = orjson.loads(await ws.recv())
                    if "v" not in item:
                        replies.append(item)
    await asyncio.to_thread(stack.last_seq, 300)
    held = time.monotonic() - before
    if held > 5:
        stack.fail(f"the subscribes held the daemon {held:.0f} s")
    codes = [reply["data"].get("code") if reply.get("type") == "error" else reply.get("type") for reply in replies]
    if codes != ["too_many_patterns"] * 8 + ["pong"]:
        stack.fail(f"the subscribes and the ping behind them were answered {codes[:10]}")


@attack_scenario("attack-zmq-never-reads")
async def zmq_never_reads(stack: Stack) -> None:
    """Defect 2: one DEALER that never reads keeps 64+ replays in progress (asking again whenever one
    ends); another peer's ping must still be answered."""
    context = zmq.Context.instance()
    stuck = context.socket(zmq.DEALER)
    stuck.setsockopt(zmq.RCVHWM, 1)
    stuck.setsockopt(zmq.RCVBUF, 4096)
    stuck.connect(stack.env["VECTRA_ZMQ_ROUTER"])
    stack.cleanups.append(lambda: stuck.close(linger=0))
    replay = orjson.dumps({"action": "replay", "from_seq": 1})
    for _ in range(80):
        stuck.send(replay)
    refused = 0
    for _ in range(10):
        await asyncio.sleep(0.4)
        for _ in range(4):
            with contextlib.suppress(zmq.Again):
                stuck.send(replay, flags=zmq.NOBLOCK)
        reply = await asyncio.to_thread(request, {"action": "ping"}, 5, router=stack.env["VECTRA_ZMQ_ROUTER"])
        refused += reply.get("type") != "pong"
    if refused:
        stack.fail(f"{refused}/10 pings of another peer refused")


@attack_scenario("attack-from-seq-2^64")
async def from_seq_near_2_64(stack: Stack) -> None:
    """Defect 6: `from_seq` between 2^63+1 and 2^64-1."""
    huge = 2**64 - 1
    reply = await asyncio.to_thread(request, {"action": "replay", "from_seq": huge}, 5,
                                    router=stack.env["VECTRA_ZMQ_ROUTER"])
    code = reply.get("data", {}).get("code") if reply.get("type") == "error" else reply.get("type")
    if code != "bad_request":
        stack.fail(f"zmq replay from 2^64-1 answered {code}")
    replies = await ws_exchange(stack, orjson.dumps({"action": "subscribe", "channels": ["x"], "from_seq": huge}),
                                PING, until_pong=True)
    kinds = [r.get("type") if r.get("type") != "error" else r["data"]["code"] for r in replies]
    if "pong" not in kinds or "bad_request" not in kinds:
        stack.fail(f"ws subscribe from 2^64-1 then ping got {kinds}")


@attack_scenario("attack-duplicate-keys")
async def duplicate_keys(stack: Stack) -> None:
    """Defect 9: `{"action":"ping","action":"reconnect"}` must be refused, not run as a reconnect."""
    raw = '{"action":"ping","action":"reconnect"}'
    replies = await ws_exchange(stack, raw, PING, until_pong=True)
    if not replies or replies[0].get("type") != "error":
        stack.fail(f"ws: duplicate keys answered {replies[:1]}")
    context = zmq.Context.instance()
    dealer = context.socket(zmq.DEALER)
    dealer.connect(stack.env["VECTRA_ZMQ_ROUTER"])
    dealer.send(raw.encode())
    ready = await asyncio.to_thread(dealer.poll, 5000)
    reply = orjson.loads(dealer.recv_multipart()[-1]) if ready else {}
    dealer.close(linger=0)
    if reply.get("type") != "error":
        stack.fail(f"zmq: duplicate keys answered {reply.get('type')}")


@attack_scenario("attack-host-header")
async def host_header(stack: Stack) -> None:
    """Defect 9: DNS rebinding, `Host: evil.example` must not be served."""
    status, _ = await asyncio.to_thread(http_get, stack.http_url + "/health", {"Host": "evil.example"})
    if status < 400:
        stack.fail(f"Host: evil.example served with HTTP {status}")


@attack_scenario("attack-flood")
async def flood(stack: Stack) -> None:
    closed = None
    async with ws_connect(stack.ws_url, max_queue=None) as ws:  # buffer every reply: only the flood counts
        with contextlib.suppress(Exception):
            for _ in range(2000):
                await ws.send('{"action":"ping"}')
            await asyncio.wait_for(ws.wait_closed(), 5)
        closed = ws.close_code
    if closed != 1008:
        stack.fail(f"flood not closed with 1008 (got {closed})")


@attack_scenario("attack-500-connections")
async def five_hundred(stack: Stack) -> None:
    sockets = []
    try:
        for _ in range(500):
            sockets.append(await ws_connect(stack.ws_url, open_timeout=10))
        status, _ = await asyncio.to_thread(http_get, stack.http_url + "/health", None, 5)
        if status != 200:
            stack.fail(f"/health answered {status} with 500 clients")
        await asyncio.sleep(2)
    finally:
        await asyncio.gather(*(ws.close() for ws in sockets), return_exceptions=True)


@attack_scenario("attack-oversized-json")
async def oversized(stack: Stack) -> None:
    big = orjson.dumps({"action": "ping", "pad": "x" * 100_000})
    replies = await ws_exchange(stack, big)
    if not replies or replies[0].get("data", {}).get("code") != "too_large":
        stack.fail(f"100 KB command answered {replies[:1]}")
    with contextlib.suppress(Exception):
        await ws_exchange(stack, b'{"action":"ping","pad":"' + b"x" * 2_000_000 + b'"}')
    context = zmq.Context.instance()
    dealer = context.socket(zmq.DEALER)
    dealer.connect(stack.env["VECTRA_ZMQ_ROUTER"])
    dealer.send(big)
    ready = await asyncio.to_thread(dealer.poll, 5000)
    reply = orjson.loads(dealer.recv_multipart()[-1]) if ready else {}
    dealer.close(linger=0)
    if reply.get("data", {}).get("code") != "too_large":
        stack.fail(f"zmq 100 KB request answered {reply}")


@attack_scenario("attack-nested-json")
async def nested(stack: Stack) -> None:
    deep = b'{"action":"ping","x":' + b"[" * 30000 + b"]" * 30000 + b"}"
    replies = await ws_exchange(stack, deep, PING)
    kinds = [r.get("type") for r in replies]
    if "pong" not in kinds:
        stack.fail(f"after deeply nested JSON: {kinds}")


@attack_scenario("attack-hostile-origin")
async def hostile_origin(stack: Stack) -> None:
    try:
        await ws_exchange(stack, b'{"action":"ping"}', headers={"Origin": "https://evil.example"}, wait_s=1)
        stack.fail("a WebSocket from https://evil.example was accepted")
    except Exception as exc:  # noqa: BLE001 - the refusal is the expected outcome
        if "403" not in str(exc):
            stack.fail(f"hostile origin: {exc}")
    status, _ = await asyncio.to_thread(http_get, stack.http_url + "/health", {"Origin": "https://evil.example"})
    if status != 403:
        stack.fail(f"/health with a hostile Origin answered {status}")


@attack_scenario("attack-slowloris")
async def slowloris(stack: Stack) -> None:
    port = int(stack.env["VECTRA_HTTP_PORT"])
    held = []
    for _ in range(200):
        conn = socket.create_connection(("127.0.0.1", port))
        conn.sendall(b"GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\n")
        held.append(conn)
    stack.cleanups.append(lambda: [conn.close() for conn in held])
    worst = 0.0
    for _ in range(10):
        for conn in held:
            with contextlib.suppress(OSError):
                conn.sendall(b"X-a: b\r\n")
        before = time.monotonic()
        status, _ = await asyncio.to_thread(http_get, stack.http_url + "/health", None, 5)
        worst = max(worst, time.monotonic() - before)
        if status not in (200, 503):
            stack.fail(f"/health answered {status} under slowloris")
            break
        await asyncio.sleep(1)
    for conn in held:
        conn.close()
    if worst > 2:
        stack.note(f"/health took up to {worst:.1f} s under slowloris")


def raw_http(port: int, path: str) -> tuple[int, bytes]:
    """One GET with this exact request target (no client-side normalisation of `..` or `%2e`)."""
    with socket.create_connection(("127.0.0.1", port), timeout=5) as conn:
        conn.sendall(f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nConnection: close\r\n\r\n".encode())
        reply = b""
        while chunk := conn.recv(65536):
            reply += chunk
    return int(reply.split(b" ", 2)[1]), reply


TRAVERSALS = ("/../../../../etc/passwd", "/%2e%2e/%2e%2e/%2e%2e/etc/passwd", "/..%2f..%2f..%2fetc%2fpasswd",
              "/client.js/../../../pyproject.toml", "//etc/passwd", "/..\\..\\..\\etc\\passwd",
              "/%252e%252e/%252e%252e/etc/passwd")


@attack_scenario("attack-path-traversal")
async def path_traversal(stack: Stack) -> None:
    """Requests for files outside what the daemon serves: each refused, no file's content in any reply."""
    port = int(stack.env["VECTRA_HTTP_PORT"])
    for path in TRAVERSALS:
        status, reply = await asyncio.to_thread(raw_http, port, path)
        if status < 400 or b"root:" in reply or b"[project]" in reply:
            stack.fail(f"GET {path} answered {status}")


@attack_scenario("attack-wrong-token", env={"VECTRA_AUTH_TOKEN": "the-right-token-7f3a"})
async def wrong_token(stack: Stack) -> None:
    """200 guessed tokens for a control command (`reconnect`) on each transport, in batches of 50 (under
    the WebSocket flood limit and a ZeroMQ peer's 64 requests in flight, so that each guess is
    answered): every one refused `unauthorized`, none runs (the feed connection never restarts)."""
    before = await reconnect_count(stack)
    guesses = [{"action": "reconnect", "token": f"the-right-token-{n:04x}", "id": n} for n in range(200)]
    guesses[0] = {"action": "reconnect", "id": 0}  # no token at all
    batches = [guesses[first:first + 50] for first in range(0, len(guesses), 50)]
    ws_codes: list = []
    for batch in batches:
        replies = await ws_exchange(stack, *(orjson.dumps(guess) for guess in batch), wait_s=2)
        ws_codes += [reply.get("data", {}).get("code") for reply in replies]
    if ws_codes != ["unauthorized"] * len(guesses):
        stack.fail(f"ws: {len(ws_codes)} replies to {len(guesses)} guesses, codes {sorted(set(map(str, ws_codes)))}")
    context = zmq.asyncio.Context.instance()
    dealer = context.socket(zmq.DEALER)
    dealer.connect(stack.env["VECTRA_ZMQ_ROUTER"])
    zmq_codes: list = []
    try:
        for batch in batches:
            for guess in batch:
                await dealer.send(orjson.dumps(guess))
            for _ in batch:
                reply = orjson.loads((await asyncio.wait_for(dealer.recv_multipart(), 10))[-1])
                zmq_codes.append(reply.get("data", {}).get("code"))
    except asyncio.TimeoutError:
        pass
    finally:
        dealer.close(linger=0)
    if zmq_codes != ["unauthorized"] * len(guesses):
        stack.fail(f"zmq: {len(zmq_codes)} replies to {len(guesses)} guesses, codes {sorted(set(map(str, zmq_codes)))}")
    if (after := await reconnect_count(stack)) != before:
        stack.fail(f"the feed connection was restarted {after - before} time(s)")


MALFORMED = (b"not json", b"{", b"[1, 2, 3]", b'"ping"', b'{"action": 5}', b'{"action": "ping", "x": NaN}',
             b"\xff\xfe\x00\x01", b"", b'{"action": "replay", "from_seq": "one"}', b'{"action": "subscribe"}')


@attack_scenario("attack-malformed-json")
async def malformed_json(stack: Stack) -> None:
    """Malformed requests on every transport (text and binary WebSocket frames, ZeroMQ messages): each
    gets its own error reply, and the same connection still answers `ping` after them."""
    async with ws_connect(stack.ws_url, max_size=None) as ws:
        for message in MALFORMED:
            await ws.send(message if message.startswith(b"\xff") else message.decode())
        await ws.send('{"action":"ping"}')
        replies: list[dict] = []
        with contextlib.suppress(asyncio.TimeoutError):
            while not replies or replies[-1].get("type") != "pong":
                item = orjson.loads(await asyncio.wait_for(ws.recv(), 10))
                if "v" not in item:
                    replies.append(item)
    kinds = [reply.get("type") for reply in replies]
    if kinds != ["error"] * len(MALFORMED) + ["pong"]:
        stack.fail(f"ws: malformed requests then ping answered {kinds}")
    context = zmq.asyncio.Context.instance()
    dealer = context.socket(zmq.DEALER)
    dealer.connect(stack.env["VECTRA_ZMQ_ROUTER"])
    try:
        for message in MALFORMED:
            await dealer.send(message)
        await dealer.send_multipart([b"extra frame", b'{"action": "ping"'])  # a request split in two
        await dealer.send(b'{"action":"ping"}')
        kinds = []
        with contextlib.suppress(asyncio.TimeoutError):
            while not kinds or kinds[-1] != "pong":
                kinds.append(orjson.loads((await asyncio.wait_for(dealer.recv_multipart(), 10))[-1]).get("type"))
    finally:
        dealer.close(linger=0)
    if kinds != ["error"] * (len(MALFORMED) + 1) + ["pong"]:
        stack.fail(f"zmq: malformed requests then ping answered {kinds}")
