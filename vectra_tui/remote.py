"""The console's port onto a daemon elsewhere (`vectra attach URL`), over the daemon's `/ws`.

One WebSocket carries everything: the subscription to every channel (for the log, the game panel and
the rates), a `health` request once a second (for the rest), and the operator's commands. The
daemon answers requests in order, one reply each, so command replies are matched to commands
first-in first-out; events are told apart by their envelope fields, and the replies to the
console's own requests by their type. When the daemon cannot be reached the
console keeps its last picture, says so, and keeps retrying (the `Supervisor` keeps the connection
up: this port is its `Link`).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import deque
from typing import Any

import orjson
import websockets
from pydantic import ValidationError

from core.contracts.envelope import Envelope, now_ms
from core.contracts.health import HealthReport
from core.contracts.requests import ACTIONS, RequestError, error_reply, validate_request
from core.supervisor import Policy, Supervisor, Transition
from vectra_tui.digest import EventDigest
from vectra_tui.health_view import console_snapshot
from vectra_tui.view import ConsoleSnapshot

log = logging.getLogger(__name__)

HEALTH_EVERY_S = 1.0
COMMAND_TIMEOUT_S = 5.0
RETRY_INITIAL_S = 0.5
RETRY_MAX_S = 5.0
MAX_MESSAGE_BYTES = 16 * 1024 * 1024
# Messages that never answer a command: control messages, and the replies to the console's own
# subscribe and health requests (which are used as they come, not awaited).
NOT_A_COMMAND_REPLY = frozenset({"sys.heartbeat", "gap", "subscribed", "health"})


class RemoteFoundation:
    def __init__(self, url: str, token: str | None = None) -> None:
        self.url = url
        self.token = token
        self.digest = EventDigest(time.monotonic)
        self._health: HealthReport | None = None
        self._unreachable: str | None = f"connecting to {url}"
        self._socket: websockets.ClientConnection | None = None
        self._connection: websockets.ClientConnection | None = None
        self._pending: deque[asyncio.Future] = deque()
        self._task: asyncio.Task | None = None
        self.supervisor = Supervisor(
            self, self._show, Policy(RETRY_INITIAL_S, RETRY_MAX_S),
            retry_on=(OSError, asyncio.TimeoutError, websockets.WebSocketException),
        )

    async def start(self) -> None:
        self._task = asyncio.create_task(self.supervisor.run(), name="attach")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    def snapshot(self) -> ConsoleSnapshot:
        report = self._health
        if report is not None and self._unreachable is not None:  # what the daemon said last may no longer hold
            connection = report.connection.model_copy(update={"state": None})
            report = report.model_copy(update={"status": "down", "connection": connection})
        return console_snapshot(
            report, self.digest, mode=f"attached to {self.url}", taken_at_ms=now_ms(), unreachable=self._unreachable
        )

    async def command(self, action: str, **params: Any) -> dict[str, Any]:
        """Checked here with the daemon's own request model: a malformed command is never sent."""
        try:
            parsed = validate_request({"action": action, **params, "token": self.token or None}, ACTIONS)
        except RequestError as exc:
            return exc.reply()
        request = parsed.model_dump(exclude_none=True)
        if self._socket is None:
            return error_reply("unreachable", self._unreachable or f"not connected to {self.url}")
        reply = asyncio.get_running_loop().create_future()
        try:
            await self._send(request, reply)
            return await asyncio.wait_for(reply, COMMAND_TIMEOUT_S)
        except (asyncio.TimeoutError, websockets.WebSocketException, OSError) as exc:
            return error_reply("unreachable", f"{action}: no reply from {self.url} ({exc or 'timeout'})")

    # --- the connection -------------------------------------------------------------------------

    async def open(self) -> None:
        headers = {"Authorization": f"Bearer {self.token}"} if self.token else None
        self._connection = await websockets.connect(
            self.url, additional_headers=headers, max_size=MAX_MESSAGE_BYTES, open_timeout=5
        )

    async def hold(self) -> str:
        socket = self._connection
        assert socket is not None, "hold without a connection"
        await self._attached(socket)
        return f"closed the connection ({socket.close_code}: {socket.close_reason or 'no reason'})"

    async def close(self) -> None:
        socket, self._connection = self._connection, None
        if socket is not None:
            with contextlib.suppress(OSError, websockets.WebSocketException):
                await socket.close()

    def _show(self, step: Transition) -> None:
        """Only the ends matter here: the console shows the daemon unreachable until it answers again."""
        if step.retry_in_s is None:
            return
        self._unreachable = f"daemon unreachable, retrying in {step.retry_in_s:.1f} s: {self.url} {step.reason}"
        log.warning("%s", self._unreachable)

    async def _attached(self, socket: websockets.ClientConnection) -> None:
        self._socket = socket
        poller = asyncio.create_task(self._poll_health())
        try:
            await self._send({"action": "subscribe", "channels": ["*"]}, None)
            self._unreachable = None
            async for message in socket:
                self._receive(message)
        except websockets.ConnectionClosed:
            pass
        finally:
            self._socket = None
            poller.cancel()
            while self._pending:
                waiting = self._pending.popleft()
                if not waiting.done():
                    waiting.set_exception(websockets.ConnectionClosedError(None, None))

    async def _poll_health(self) -> None:
        while True:
            await self._send({"action": "health"}, None)
            await asyncio.sleep(HEALTH_EVERY_S)

    async def _send(self, request: dict[str, Any], reply: asyncio.Future | None) -> None:
        """Send a request; a command passes the future its reply will be put in."""
        if self._socket is None:
            raise websockets.ConnectionClosedError(None, None)
        if reply is not None:
            self._pending.append(reply)
        await self._socket.send(orjson.dumps(request).decode())

    def _receive(self, message: str | bytes) -> None:
        try:
            parsed = orjson.loads(message)
        except orjson.JSONDecodeError:
            log.warning("ignoring a message from %s that is not JSON", self.url)
            return
        if not isinstance(parsed, dict):
            return
        if "v" in parsed and "seq" in parsed:
            self.digest.deliver(Envelope.from_dict(parsed))
            return
        kind = parsed.get("type")
        if kind == "health":
            self._take_health(parsed.get("data"))
        if kind in NOT_A_COMMAND_REPLY or not self._pending:
            return
        waiting = self._pending.popleft()
        if not waiting.done():  # a command that timed out still takes its (late) reply out of line
            waiting.set_result(parsed)

    def _take_health(self, data: Any) -> None:
        try:
            self._health = HealthReport.model_validate(data)
        except ValidationError as exc:
            log.warning("ignoring a health report from %s that does not fit the contract: %s", self.url, exc)
