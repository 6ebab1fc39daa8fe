"""`vectra sim`: the command-line face of the simulator."""

from __future__ import annotations

import argparse
import asyncio
import sys

from core.sim.faults import KINDS
from core.sim.options import SimOptions
from vectra_cli.flags import add_command


def add_sim_parser(subparsers) -> None:
    parser = add_command(
        subparsers,
        "sim",
        "run a local rugs.fun Socket.IO feed simulator",
        description="Serve a deterministic, rugs.fun-shaped Socket.IO feed on loopback, with faults on demand.",
    )
    configure_parser(parser)


def configure_parser(parser: argparse.ArgumentParser) -> None:
    d = SimOptions()
    parser.add_argument("--host", default=d.host, help=f"address to bind (default {d.host})")
    parser.add_argument("--port", type=int, default=d.port, help=f"port to bind, 0 = any (default {d.port})")
    parser.add_argument("--speed", type=float, default=d.speed, help="clock multiplier, 10 = ticks every 25 ms")
    parser.add_argument("--seed", type=int, default=d.seed, help="world seed: same seed + anchor = same games")
    parser.add_argument("--anchor-ms", type=int, default=None,
                        help="epoch ms when game 0 starts (default: now); reuse it to resume a world")
    parser.add_argument("--max-ticks", type=int, default=None, help="force a rug at this tick at the latest")
    parser.add_argument("--trades-per-s", type=float, default=d.trades_per_s, help="mean trade rate (sim time)")
    parser.add_argument("--fault-every-s", type=float, default=None,
                        help="inject a fault this often (wall seconds), cycling through --fault-kinds")
    parser.add_argument("--fault-kinds", default=",".join(d.fault_kinds),
                        help=f"comma-separated kinds for --fault-every-s, among: {','.join(KINDS)}")
    parser.add_argument("--starting-cash", type=float, default=d.starting_cash,
                        help=f"SOL each new player starts with (default {d.starting_cash:g})")
    parser.add_argument("--require-login", action="store_true",
                        help='answer orders of connections without auth {"player": ...} with a failure ack')
    parser.set_defaults(func=run_sim_command)


def run_sim_command(args: argparse.Namespace) -> int:
    options = SimOptions(
        host=args.host,
        port=args.port,
        speed=args.speed,
        seed=args.seed,
        anchor_ms=args.anchor_ms,
        max_ticks=args.max_ticks,
        trades_per_s=args.trades_per_s,
        fault_every_s=args.fault_every_s,
        fault_kinds=tuple(k.strip() for k in args.fault_kinds.split(",") if k.strip()),
        starting_cash=args.starting_cash,
        require_login=args.require_login,
    )
    from core.sim.server import run_simulator  # socketio and aiohttp load only when a simulator runs

    try:
        asyncio.run(run_simulator(options))
    except ValueError as e:
        print(f"vectra sim: {e}", file=sys.stderr)
        return 2
    except OSError as e:
        print(f"vectra sim: cannot listen on {options.host}:{options.port}: {e}; another simulator running? "
              "Choose another port with --port (0: any free port, printed at start)", file=sys.stderr)
        return 1
    return 0
