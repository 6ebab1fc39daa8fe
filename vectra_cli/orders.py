"""`vectra order ...`, `vectra orders halt|resume|status` and `vectra player`: a running daemon's order
desk from the shell, through the same client a bot uses (core.client.Vectra), so a command sent again
after a lost reply is the same order, never a second one.

Exit codes, for scripts: 0 the order was taken (any state but `rejected`) or the command done; 1 the
order was refused or rejected, or the daemon refused the command (the code and message are printed);
2 a usage error (a malformed order included) or no daemon answered.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from typing import Any, Awaitable, Callable

import orjson

from core.config import Settings
from vectra_cli.flags import REQUESTER, add_command

ORDER_KINDS = {"buy": "buy", "sell": "sell", "sidebet": "sidebet", "short-open": "short_open", "short-close": "short_close"}
STAKING = ("buy", "sidebet", "short-open")


def add_order_parsers(subparsers) -> None:
    order = add_command(subparsers, "order", "place one order through a running daemon's order desk", REQUESTER,
                        description=__doc__.split("\n\n")[1].replace("\n", " "))
    kinds = order.add_subparsers(dest="kind", metavar="KIND", required=True)
    for name in ORDER_KINDS:
        kind = kinds.add_parser(name, help=f"a {name} order")
        if name in STAKING:
            kind.add_argument("amount_sol", type=float, metavar="SOL", help="the amount in SOL")
        elif name == "sell":
            kind.add_argument("percent", type=int, metavar="PERCENT", help="how much of the position, 1-100")
        if name == "sidebet":
            kind.add_argument("--x-payout", type=int, default=5, metavar="N", help="the payout multiple (default 5)")
        _common(kind, with_id=True)
    order.set_defaults(settings_command=_order)

    orders = add_command(subparsers, "orders", "halt or resume a running daemon's orders, or show its desk",
                         REQUESTER)
    orders.add_argument("op", choices=("halt", "resume", "status"))
    orders.add_argument("--reason", default=None, metavar="TEXT", help="why (halt only; shown in the log)")
    _common(orders)
    orders.set_defaults(settings_command=_orders)

    player = add_command(subparsers, "player", "show the player's own state (the last player.state)", REQUESTER)
    _common(player)
    player.set_defaults(settings_command=_player)


def _common(parser: argparse.ArgumentParser, *, with_id: bool = False) -> None:
    if with_id:
        parser.add_argument("--id", dest="order_id", default=None, metavar="ID",
                            help="the order id (default: a fresh one); the same id again is the same order")
    parser.add_argument("--json", action="store_true", help="print the daemon's reply data as JSON")
    parser.add_argument("--timeout", type=float, default=5.0, metavar="SECONDS",
                        help="wait this long for each reply (default 5; the request is repeated twice)")


# --- the commands ---------------------------------------------------------------------------------


def _order(args: argparse.Namespace, settings: Settings) -> int:
    fields: dict[str, Any] = {name: getattr(args, name) for name in ("amount_sol", "percent", "x_payout")
                              if hasattr(args, name)}

    async def place(vectra: Any) -> int:
        record = await vectra.order(ORDER_KINDS[args.kind], args.order_id, **fields)
        _show(args, record.data, _describe_order)
        return 1 if record.state == "rejected" else 0

    return _run("order", args, settings, place)


def _orders(args: argparse.Namespace, settings: Settings) -> int:
    if args.reason is not None and args.op != "halt":
        print("vectra orders: --reason goes with halt only", file=sys.stderr)
        return 2

    async def act(vectra: Any) -> int:
        calls = {"halt": lambda: vectra.halt(args.reason), "resume": vectra.resume, "status": vectra.orders}
        _show(args, await calls[args.op](), _describe_desk)
        return 0

    return _run("orders", args, settings, act)


def _player(args: argparse.Namespace, settings: Settings) -> int:
    async def show(vectra: Any) -> int:
        _show(args, await vectra.player(), _describe_player)
        return 0

    return _run("player", args, settings, show)


def _run(name: str, args: argparse.Namespace, settings: Settings, job: Callable[[Any], Awaitable[int]]) -> int:
    """One session with the daemon; what went wrong is one line on stderr and the exit code."""
    from core.client import Refused, Vectra

    async def session() -> int:
        async with Vectra(settings=settings, timeout=args.timeout) as vectra:
            return await job(vectra)

    try:
        return asyncio.run(session())
    except Refused as exc:
        print(f"vectra {name}: refused: {exc.code}: {exc.message}", file=sys.stderr)
        return 2 if exc.code == "bad_order" else 1
    except TimeoutError as exc:
        print(f"vectra {name}: no daemon answered ({exc})", file=sys.stderr)
        return 2


# --- what is printed ------------------------------------------------------------------------------


def _show(args: argparse.Namespace, data: Any, describe: Callable[[Any], str]) -> None:
    print(orjson.dumps(data).decode() if args.json else describe(data))


def _describe_order(record: dict[str, Any]) -> str:
    dry = " (dry run)" if record.get("dryRun") else ""
    line = f"{record['state']}{dry}: {record['kind']} {record['order_id']}"
    if record["state"] == "rejected":
        return f"{line}\n  {record.get('code')} ({record.get('by')}): {record.get('message')}"
    price = record.get("price")
    return line + (f" at {price:g}, tick {record.get('tickIndex')}" if isinstance(price, (int, float)) else "")


def _describe_desk(data: dict[str, Any]) -> str:
    halted = "  HALTED (orders resume lifts it)" if data["halted"] else ""
    problem = f" cannot send: {data['executor_problem']}" if data.get("executor_problem") else ""
    lines = [
        f"orders {data['mode']}{halted}; executor {data['executor']}{problem}",
        "limits " + ", ".join(f"{name} {value}" for name, value in data["limits"].items()),
        f"in flight {data['in_flight_count']}",
    ]
    for record in data.get("recent", [])[-5:]:
        code = f" {record['code']}" if record.get("code") else ""
        lines.append(f"  {record['order_id']} {record['kind']} {record['state']}{code}")
    return "\n".join(lines)


def _describe_player(data: dict[str, Any] | None) -> str:
    if data is None:
        return "no player state yet (not logged in, or no playerUpdate since the daemon started)"
    return "\n".join(f"{key:<14} {'' if value is None else value}" for key, value in data.items())
