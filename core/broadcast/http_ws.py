"""The HTTP/WebSocket server: `/ws` for subscribers, `/health`, `/metrics`, the web page.

One bus subscriber fans each event out to every client's own queue (`WsSession.offer`), so the
cost on the publishing path is an append per interested client, and one slow client never delays
the others. Compression is off: permessage-deflate measured at 0.4-0.7x the throughput here, and
the feed runs on loopback or a LAN.
"""

from __future__ import annotations

import asyncio
import http
import logging
import os
import socket
from typing import Any

import orjson
from websockets.asyncio.server import Server, ServerConnection, serve
from websockets.exceptions import ConnectionClosed
from websockets.frames import CloseCode
from websockets.http11 import Request, Response

from core.broadcast.http_routes import WS_PATH, HttpRoutes, OriginPolicy, plain
from core.broadcast.requests import Requests, Transport
from core.broadcast.ws_session import WsSession
from core.config import ConfigError
from core.contracts.envelope import Envelope
from core.contracts.health import WebSocketHealth
from core.foundation import Foundation

log = logging.getLogger(__name__)

# websockets closes the connection (1009) above `max_size`; commands between our own limit and
# this one get a `too_large` error reply instead, so only a really abusive message ends the link.
HARD_SIZE_FACTOR = 16
CLOSE_TIMEOUT_S = 3.0  # within the 4 s the foundation gives each component to stop
# The kernel's send buffer per client, fixed instead of autotuned (up to 4 MB on Linux): a client
# that stops reading is then noticed after about this much plus `ws_buffer_bytes`, not megabytes
# later, and still leaves room for 5 MB/s at 50 ms round trip (Linux doubles the value).
KERNEL_SEND_BUFFER = 128 * 1024


class HttpWsServer(Transport):
    name = "http"

    def __init__(self, foundation: Foundation, requests: Requests | None = None) -> None:
        super().__init__(foundation, requests)
        self.sessions: set[WsSession] = set()
        self.routes = HttpRoutes(foundation.health)
        self.port: int | None = None
        self.closed_slow = 0
        self.closed_flood = 0
        self._origins: OriginPolicy | None = None
        self._server: Server | None = None

    # --- Component ------------------------------------------------------------------------------

    async def start(self) -> None:
        host, port = self.settings.http_host, self.settings.http_port
        try:
            self._server = await serve(
                self._serve_client,
                host,
                port,
                process_request=self._process_request,
                compression=None,
                max_size=self.settings.ws_max_message_bytes * HARD_SIZE_FACTOR,
                close_timeout=CLOSE_TIMEOUT_S,
            )
        except OSError as exc:  # a port in use is most often another Vectra: say which setting moves it
            raise ConfigError(
                f"cannot bind HTTP/WebSocket on {host}:{port}: {os.strerror(exc.errno) if exc.errno else exc}; "
                "is another vectra running? "
                "Choose a free port with VECTRA_HTTP_PORT (or VECTRA_HTTP_HOST)"
            ) from None
        self.port = self._server.sockets[0].getsockname()[1]
        self._origins = OriginPolicy(self.settings, self.port)
        self.foundation.bus.subscribe(self)
        self.foundation.bus.on_control(self.deliver_control)
        log.info("HTTP/WebSocket on http://%s:%d (ws at %s)", self.settings.http_host, self.port, WS_PATH)

    async def stop(self) -> None:
        self.foundation.bus.unsubscribe(self)
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()

    def health(self) -> WebSocketHealth:
        return WebSocketHealth(clients=len(self.sessions), closed_slow=self.closed_slow, closed_flood=self.closed_flood)

    # --- fan-out --------------------------------------------------------------------------------

    def deliver(self, envelope: Envelope) -> None:
        for session in self.sessions:
            session.offer(envelope)

    def deliver_control(self, message: dict[str, Any]) -> None:
        """Control messages (`sys.heartbeat`) go to clients whose patterns match their type."""
        kind = str(message.get("type", ""))
        encoded = orjson.dumps(message)
        for session in self.sessions:
            session.offer_control(kind, encoded)

    # --- connections ----------------------------------------------------------------------------

    def _process_request(self, connection: ServerConnection, request: Request) -> Response | None:
        origin = request.headers.get("Origin")
        if self._origins is not None and not self._origins.allows(origin):
            log.info("refused origin %r", origin)
            return plain(http.HTTPStatus.FORBIDDEN, f"origin {origin} is not allowed (VECTRA_HTTP_ALLOWED_ORIGINS)\n")
        hosts = request.headers.get_all("Host")
        host = hosts[0] if len(hosts) == 1 else ", ".join(hosts) or None
        if self._origins is not None and (len(hosts) > 1 or not self._origins.allows_host(host)):
            log.info("refused host %r", host)
            return plain(
                http.HTTPStatus.MISDIRECTED_REQUEST,
                f"host {host} is not served here (DNS rebinding protection); "
                "reach it by IP address or localhost, or list its origin in VECTRA_HTTP_ALLOWED_ORIGINS\n",
            )
        if request.path.split("?", 1)[0] == WS_PATH:
            return None
        return self.routes.respond(request.path)

    async def _serve_client(self, connection: ServerConnection) -> None:
        sock = connection.transport.get_extra_info("socket")
        if sock is not None:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, KERNEL_SEND_BUFFER)
        session = WsSession(
            connection,
            self.requests,
            buffer_bytes=self.settings.ws_buffer_bytes,
            max_message_bytes=self.settings.ws_max_message_bytes,
            max_messages_per_s=self.settings.ws_max_messages_per_s,
            authorized=self._bearer_ok(connection),
            on_closed_slow=self._count_slow,
        )
        self.sessions.add(session)
        writer = asyncio.create_task(session.write(), name="ws-writer")
        closing: asyncio.Task | None = None
        try:
            # Keeps reading while closing: the client's close frame sits behind its last messages.
            async for message in connection:
                if closing is not None:
                    continue
                if session.flooding():
                    self.closed_flood += 1
                    reason = f"flood: more than {self.settings.ws_max_messages_per_s} messages in one second"
                    closing = asyncio.create_task(connection.close(CloseCode.POLICY_VIOLATION, reason))
                    continue
                await session.receive(message)
        except ConnectionClosed:
            pass
        finally:
            self.sessions.discard(session)
            writer.cancel()
            await asyncio.gather(writer, *([closing] if closing else []), return_exceptions=True)

    def _bearer_ok(self, connection: ServerConnection) -> bool:
        """A valid `Authorization: Bearer <token>` at connect time authorizes every command."""
        header = connection.request.headers.get("Authorization", "") if connection.request else ""
        scheme, _, token = header.partition(" ")
        return self.requests.requires_token and scheme.lower() == "bearer" and self.requests.token_ok(token.strip())

    def _count_slow(self) -> None:
        self.closed_slow += 1
