"""`vectra chrome launch|status|stop`: the operator's handle on the managed browser.

`launch` attaches to or starts the browser exactly as the daemon would (same profile, same port) and
leaves it running; `status` asks a running daemon first and otherwise looks at the CDP port and the
profile itself; `stop` only ever stops a browser Vectra started (its pid is kept in the data folder).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
from typing import Any

from core.chrome.devtools import DevToolsError, browser_version, list_pages
from core.chrome.manager import ChromeError, ChromeManager, is_our_browser, pid_file, terminate_group
from core.chrome.profile import ProfileInUse, lock_holder
from core.config import Settings
from vectra_cli.flags import REQUESTER, add_command

DAEMON_TIMEOUT_S = 1.0
# The browser it launches or finds, the pid file in DATA_DIR, and the daemon `status` asks first.
CHROME_READS = (
    "chrome_binary", "chrome_profile", "cdp_port", "game_url", "chrome_headless", "cdp_call_timeout_s", "data_dir",
    *REQUESTER,
)


def add_chrome_parser(subparsers) -> None:
    parser = add_command(
        subparsers,
        "chrome",
        "launch, inspect or stop the managed browser",
        CHROME_READS,
        description="Launch, inspect or stop the managed browser (VECTRA_CHROME_PROFILE on VECTRA_CDP_PORT).",
    )
    parser.add_argument("op", choices=("launch", "status", "stop"), help="what to do")
    parser.set_defaults(settings_command=run_chrome_command)


def run_chrome_command(args: argparse.Namespace, settings: Settings) -> int:
    handlers = {"launch": _launch, "status": _status, "stop": _stop}
    return handlers[args.op](settings)


def _print(fields: dict[str, Any]) -> None:
    for key, value in fields.items():
        print(f"{key:<17} {'' if value is None else value}")


def _launch(settings: Settings) -> int:
    manager = ChromeManager(settings)
    try:
        state = asyncio.run(manager.ensure())
    except (ChromeError, ProfileInUse, OSError) as exc:
        print(f"vectra chrome: {exc}", file=sys.stderr)
        return 1
    if state == "attached":
        print(f"a browser already answers on CDP port {settings.cdp_port}: attached, nothing launched")
    else:
        print(f"launched pid {manager.pid} on profile {settings.chrome_profile} (CDP port {settings.cdp_port})")
    return 0


def _status(settings: Settings) -> int:
    from_daemon = _ask_daemon(settings)
    if from_daemon is not None:
        _print({"from": "running daemon", **from_daemon})
        return 0 if from_daemon.get("state") in ("running", "attached") else 1
    return asyncio.run(_status_from_port(settings))


def _ask_daemon(settings: Settings) -> dict[str, Any] | None:
    from core.client import request

    ask: dict[str, Any] = {"action": "chrome", "op": "status"}
    if settings.auth_token is not None:
        ask["token"] = settings.auth_token.get_secret_value()
    try:
        reply = request(ask, DAEMON_TIMEOUT_S, settings=settings)
    except (TimeoutError, OSError):
        return None
    return reply.get("data") if reply.get("type") == "chrome" else None


async def _status_from_port(settings: Settings) -> int:
    timeout = settings.cdp_call_timeout_s
    version = await browser_version(settings.cdp_port, timeout)
    pid = _our_pid(settings)
    holder = lock_holder(settings.chrome_profile)
    fields: dict[str, Any] = {
        "from": f"CDP port {settings.cdp_port} (no daemon answered)",
        "state": ("running" if pid else "attached") if version else "stopped",
        "pid": pid,
        "profile": settings.chrome_profile,
        "profile_lock": f"{holder} ({'live' if holder.alive else 'stale'})" if holder else None,
        "browser": version.get("Browser") if version else None,
    }
    if version:
        try:
            fields["tabs"] = ", ".join(page.get("url", "?") for page in await list_pages(settings.cdp_port, timeout))
        except DevToolsError as exc:
            fields["tabs"] = str(exc)
    _print(fields)
    return 0 if version else 1


def _our_pid(settings: Settings) -> int | None:
    """The pid of the browser a Vectra process launched, if it still runs on our profile."""
    try:
        pid = int(pid_file(settings).read_text().strip())
    except (OSError, ValueError):
        return None
    return pid if is_our_browser(settings, pid) else None


def _stop(settings: Settings) -> int:
    pid = _our_pid(settings)
    if pid is None:
        print(
            f"no browser started by Vectra is running on profile {settings.chrome_profile}; "
            f"a browser on CDP port {settings.cdp_port}, if any, is left alone"
        )
        return 0
    terminate_group(pid)
    try:
        os.remove(pid_file(settings))
    except FileNotFoundError:
        pass
    print(f"stopped the browser Vectra started (pid {pid}); a running daemon with VECTRA_SOURCE=cdp relaunches it")
    return 0
