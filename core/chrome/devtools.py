"""The DevTools HTTP endpoints (`/json/...`) of a browser, each call bounded by a timeout.

The manager, the CDP source and `vectra chrome status` all ask the same questions ("does a browser
answer on this port?", "which pages does it have?"), so they ask them here.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import quote

import aiohttp


class DevToolsError(Exception):
    """The browser did not answer, or answered something unusable."""


def devtools_url(port: int) -> str:
    return f"http://127.0.0.1:{port}"


async def _request(method: str, port: int, path: str, timeout: float) -> Any:
    try:
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=timeout)) as session:
            async with session.request(method, devtools_url(port) + path) as response:
                if response.status != 200:
                    raise DevToolsError(f"{method} {path} on port {port}: HTTP {response.status}")
                return await response.json(content_type=None)
    except (aiohttp.ClientError, TimeoutError, ValueError) as exc:
        raise DevToolsError(f"no browser answers on port {port} ({type(exc).__name__})") from None


async def browser_version(port: int, timeout: float) -> dict[str, Any] | None:
    """`/json/version` of the browser on `port`, or None when nothing answers there."""
    try:
        version = await _request("GET", port, "/json/version", timeout)
    except DevToolsError:
        return None
    return version if isinstance(version, dict) and "webSocketDebuggerUrl" in version else None


async def list_pages(port: int, timeout: float) -> list[dict[str, Any]]:
    """The browser's page targets (tabs), as `/json/list` describes them."""
    targets = await _request("GET", port, "/json/list", timeout)
    if not isinstance(targets, list):
        raise DevToolsError(f"/json/list on port {port} is not a list")
    return [target for target in targets if isinstance(target, dict) and target.get("type") == "page"]


async def open_page(port: int, url: str, timeout: float) -> dict[str, Any]:
    target = await _request("PUT", port, "/json/new?" + quote(url, safe=":/?&=%#"), timeout)
    if not isinstance(target, dict) or "webSocketDebuggerUrl" not in target:
        raise DevToolsError(f"/json/new on port {port} returned no debuggable page")
    return target


async def close_page(port: int, target_id: str, timeout: float) -> None:
    try:
        await _request("GET", port, f"/json/close/{target_id}", timeout)
    except DevToolsError:
        pass  # `/json/close` answers with text, not JSON; the tab is gone either way


def game_page(pages: list[dict[str, Any]], game_url: str) -> dict[str, Any] | None:
    """The debuggable tab showing the game (its URL starts with `game_url`), if any."""
    game = game_url.rstrip("/")
    return next(
        (page for page in pages if page.get("webSocketDebuggerUrl") and page.get("url", "").startswith(game)),
        None,
    )
