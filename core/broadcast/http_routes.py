"""The plain HTTP side of the HTTP/WebSocket port: origin policy and the GET routes.

websockets serves these from `process_request`, before any WebSocket handshake, so one port
answers browsers (`/`, `/client.js`), monitoring (`/health`, `/metrics`) and subscribers (`/ws`).
"""

from __future__ import annotations

import http
import ipaddress
from importlib import resources
from typing import Callable
from urllib.parse import urlsplit

import orjson
from websockets.datastructures import Headers
from websockets.http11 import Response

from core.broadcast.metrics import metrics_registry, render_metrics
from core.config import Settings, is_loopback
from core.contracts.health import HealthReport

WS_PATH = "/ws"
WEB_FILES = {"/": ("index.html", "text/html; charset=utf-8"), "/client.js": ("client.js", "text/javascript; charset=utf-8")}
PROMETHEUS_TYPE = "text/plain; version=0.0.4; charset=utf-8"


class OriginPolicy:
    """Which browser pages may talk to this port, and under which host names it may be reached.

    Origin: its own, localhost, and the allow-list. Without this, any web page a person visits could
    open `ws://127.0.0.1:<port>/ws` in the background and read the feed (or, with control commands,
    act on it). Requests with no `Origin` come from programs, not pages, and are allowed.

    Host: loopback names, `http_host`, the allow-list's hosts, and any IP address. A page whose own
    name an attacker re-points at 127.0.0.1 (DNS rebinding) is same-origin to itself, so the origin
    check cannot see it; its requests still carry the attacker's name in `Host`. An IP address is
    never such a name, so reaching the service by its address (on a LAN) keeps working.
    """

    def __init__(self, settings: Settings, port: int) -> None:
        listed = {origin.strip().rstrip("/") for origin in settings.http_allowed_origins.split(",") if origin.strip()}
        own = {f"http://{settings.http_host}:{port}", f"http://127.0.0.1:{port}", f"http://localhost:{port}"}
        self.allowed = listed | own
        self.hosts = {settings.http_host.lower()} | {urlsplit(origin).hostname or "" for origin in listed}

    def allows(self, origin: str | None) -> bool:
        if origin is None or origin.rstrip("/") in self.allowed:
            return True
        parts = urlsplit(origin)
        return parts.scheme in ("http", "https") and _local_name(parts.hostname or "")

    def allows_host(self, host_header: str | None) -> bool:
        if host_header is None:  # only browsers rebind, and every browser sends `Host`
            return True
        try:
            host = (urlsplit(f"//{host_header}").hostname or "").rstrip(".")
        except ValueError:  # a malformed port or bracket
            return False
        return host in self.hosts or _local_name(host) or _ip_address(host)


def _local_name(host: str) -> bool:
    return host == "localhost" or host.endswith(".localhost") or (host != "" and is_loopback(host))


def _ip_address(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


class HttpRoutes:
    def __init__(self, health: Callable[[], HealthReport]) -> None:
        self._health = health
        self._registry = metrics_registry(health)
        self._files = {path: (_web_file(name), kind) for path, (name, kind) in WEB_FILES.items()}
        self._routes: dict[str, Callable[[], Response]] = {
            "/health": self.health,
            "/metrics": self.metrics,
            **{path: (lambda path=path: self.web_file(path)) for path in WEB_FILES},
        }

    def respond(self, path: str) -> Response:
        route = self._routes.get(urlsplit(path).path)
        if route is None:
            return plain(http.HTTPStatus.NOT_FOUND, f"no such path; try / /health /metrics /client.js {WS_PATH}\n")
        return route()

    def health(self) -> Response:
        report = self._health()
        status = http.HTTPStatus.SERVICE_UNAVAILABLE if report.status == "down" else http.HTTPStatus.OK
        return response(status, orjson.dumps(report.model_dump(), option=orjson.OPT_INDENT_2), "application/json")

    def metrics(self) -> Response:
        return response(http.HTTPStatus.OK, render_metrics(self._registry), PROMETHEUS_TYPE)

    def web_file(self, path: str) -> Response:
        body, kind = self._files[path]
        return response(http.HTTPStatus.OK, body, kind)


def _web_file(name: str) -> bytes:
    return resources.files("core").joinpath("web", name).read_bytes()


def response(status: http.HTTPStatus, body: bytes, content_type: str) -> Response:
    headers = Headers(
        [
            ("Content-Type", content_type),
            ("Content-Length", str(len(body))),
            ("Cache-Control", "no-store"),
            ("Connection", "close"),
        ]
    )
    return Response(status.value, status.phrase, headers, body)


def plain(status: http.HTTPStatus, text: str) -> Response:
    return response(status, text.encode(), "text/plain; charset=utf-8")
