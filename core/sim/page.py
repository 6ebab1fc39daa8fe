"""The simulator's browser page: what a Chromium under test (or an operator) opens at `/`.

The page connects with the official `socket.io-client`, installed from the npm registry into the
repository's `node_modules` (`npm ci` at the repository root; `package.json` pins it), so the
browser's traffic (long-polling, then the WebSocket upgrade) is exactly what the real site produces
and what the CDP source has to cope with.
"""

from __future__ import annotations

from pathlib import Path

from aiohttp import web

WEB_DIR = Path(__file__).resolve().parent / "web"
CLIENT_BUNDLE = (
    Path(__file__).resolve().parents[2] / "node_modules" / "socket.io-client" / "dist" / "socket.io.min.js"
)


class PageAssetsMissing(RuntimeError):
    """The npm packages of the page are not installed."""


def client_bundle() -> Path:
    if not CLIENT_BUNDLE.is_file():
        raise PageAssetsMissing(
            f"{CLIENT_BUNDLE} is missing: run `npm ci` at the repository root (./start.sh does it)"
        )
    return CLIENT_BUNDLE


def add_page_routes(app: web.Application) -> None:
    """`/` serves the page, `/static/socket.io.min.js` the client; a missing bundle is a 503 that says why."""

    async def index(request: web.Request) -> web.FileResponse:
        return web.FileResponse(WEB_DIR / "index.html")

    async def bundle(request: web.Request) -> web.StreamResponse:
        try:
            return web.FileResponse(client_bundle(), headers={"Content-Type": "application/javascript"})
        except PageAssetsMissing as exc:
            return web.Response(status=503, text=str(exc))

    app.router.add_get("/", index)
    app.router.add_get("/static/socket.io.min.js", bundle)
