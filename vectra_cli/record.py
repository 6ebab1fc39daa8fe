"""`vectra record [on|off|status]` (talks to a running daemon) and `vectra replay PATH` (runs one)."""

from __future__ import annotations

import argparse
import sys
import time
from typing import Any

import orjson

from core.config import Settings
from vectra_cli.daemon import add_output_flags, run_headless
from vectra_cli.flags import REQUESTER, add_command, settings_of


def add_recorder_parsers(subparsers) -> None:
    record = add_command(
        subparsers, "record", "switch recording of a running daemon on or off, or show it", REQUESTER,
        description="Switch recording of a running daemon on or off, or show it; exit 0 done, 1 refused by the "
                    "daemon (its message is printed), 2 no daemon answered (as `vectra order` and `vectra health`).",
    )
    record.add_argument("state", nargs="?", default="status", choices=("on", "off", "status"),
                        help="switch recording on or off; status (the default) only shows it")
    record.add_argument("--json", action="store_true", help="print the status object as JSON")
    record.set_defaults(settings_command=_record)

    replay = add_command(
        subparsers,
        "replay",
        "run the daemon with recordings as the feed",
        # the replay area is this command's own arguments; a headless daemon has no console to theme
        (*settings_of("broadcast", "serving", "recording"), "data_dir", "log_level"),
        description="Short for `VECTRA_SOURCE=replay VECTRA_REPLAY_PATH=PATH vectra --daemon`.",
    )
    replay.add_argument("replay_path", metavar="PATH", help="a recording file or a folder of recordings")
    replay.add_argument("--speed", dest="replay_speed", type=float, default=argparse.SUPPRESS, metavar="NUMBER",
                        help="1 = real time (default), 10 = ten times faster, 0 = as fast as possible")
    replay.add_argument("--game", dest="replay_game", default=argparse.SUPPRESS, metavar="ID", help="replay only this game id")
    replay.add_argument("--loop", dest="replay_loop", action="store_true", default=argparse.SUPPRESS,
                        help="start again from the beginning when the replay ends")
    add_output_flags(replay)
    replay.set_defaults(settings_command=run_headless, source="replay")  # applied like a flag: it wins


def describe_status(data: dict[str, Any]) -> str:
    since = data.get("since")
    when = time.strftime(" since %Y-%m-%d %H:%M:%SZ", time.gmtime(since / 1000)) if since else ""
    line = f"recording {'on' if data['on'] else 'off'} ({data['state']}): {data['path']}, {data['rows']} rows, {data['bytes']} bytes{when}"
    return line + (f"\n  {data['reason']}" if data.get("reason") else "")


def _record(args: argparse.Namespace, settings: Settings) -> int:
    from core.client import request

    payload: dict[str, Any] = (
        {"action": "record_status"} if args.state == "status" else {"action": "record", "on": args.state == "on"}
    )
    if settings.auth_token is not None:
        payload["token"] = settings.auth_token.get_secret_value()
    try:
        reply = request(payload, settings=settings)
    except TimeoutError as exc:
        print(f"vectra record: no daemon answered ({exc})", file=sys.stderr)
        return 2
    if reply.get("type") == "error":
        print(f"vectra record: {reply.get('data', {}).get('message')}", file=sys.stderr)
        return 1
    data = reply["data"]
    print(orjson.dumps(data).decode() if args.json else describe_status(data))
    return 0
