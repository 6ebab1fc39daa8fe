"""The `vectra` command.

`vectra --help` lists the commands first, then the settings by area; each command offers as flags only
the settings it reads (vectra_cli/flags.py). Settings are loaded once, here, for every command.
Command modules are imported by this one, never the reverse.
"""

from __future__ import annotations

import argparse
import sys

from core.config import ConfigError, Settings, load_settings, render
from vectra_cli.chrome import add_chrome_parser
from vectra_cli.daemon import add_output_flags, run_headless
from vectra_cli.flags import (
    EVERY_SETTING,
    HTTP_CLIENT,
    SUBSCRIBER,
    HelpFormatter,
    add_command,
    add_settings,
    command_list,
    overrides,
    refused_secret,
)
from vectra_cli.orders import add_order_parsers
from vectra_cli.record import add_recorder_parsers
from vectra_cli.sim import add_sim_parser

INTRO = """\
One rugs.fun connection, republished as a sequenced event stream. Without a command: the operator
console (with --daemon, the headless service).

commands (`vectra COMMAND --help` shows what each one reads):
{commands}

Settings come from VECTRA_* variables (or .env); a flag overrides its variable. Secrets are never
flags: VECTRA_AUTH_TOKEN comes from the environment, .env or VECTRA_AUTH_TOKEN_FILE."""

# The daemon's address and token, and where the console keeps its log, how it looks and its keys.
ATTACH_READS = (*HTTP_CLIENT, "auth_token_file", "data_dir", "theme", "keymap")


def _config(args: argparse.Namespace, settings: Settings) -> int:
    print(render(settings, overrides(args)))
    return 0


def _health(args: argparse.Namespace, settings: Settings) -> int:
    from core.broadcast.health_probe import probe

    code, text = probe(settings)
    print(text, file=sys.stdout if code != 2 or text.startswith("{") else sys.stderr)
    return code


def _main_job(args: argparse.Namespace, settings: Settings) -> int:
    if args.daemon:
        return run_headless(args, settings)
    from core.runtime import setup_logging
    from vectra_tui.app import run_console

    setup_logging(settings.log_level, as_json=args.log_json)
    return run_console(settings)


def _tail(args: argparse.Namespace, settings: Settings) -> int:
    """Envelopes as JSON lines on stdout; the client's own gap/status reports go to stderr."""
    from core.client import subscribe_blocking

    try:
        events = subscribe_blocking(*args.patterns, from_seq=args.from_seq, settings=settings)
    except ValueError as exc:
        print(f"vectra tail: {exc}", file=sys.stderr)
        return 2
    try:
        for event in events:
            stream = sys.stdout if event.seq is not None else sys.stderr
            stream.buffer.write(event.to_json() + b"\n")
            stream.flush()
    except (KeyboardInterrupt, BrokenPipeError):
        return 0
    return 0


def _attach(args: argparse.Namespace, settings: Settings) -> int:
    """The console for a daemon elsewhere; its own log goes to a file, the screen is the console's."""
    from vectra_tui.app import run_attach

    url = args.url or f"ws://{settings.http_host}:{settings.http_port}/ws"
    token = settings.auth_token.get_secret_value() if settings.auth_token else None
    return run_attach(url, token, settings)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="vectra",
        usage="vectra [-h] [--daemon] [--stdout] [--log-json] [SETTINGS] [COMMAND ...]",
        formatter_class=HelpFormatter,
    )
    parser.add_argument("--daemon", action="store_true", help="run headless until SIGINT/SIGTERM")
    add_output_flags(parser)
    parser.set_defaults(settings_command=_main_job)
    sub = parser.add_subparsers(dest="command", prog="vectra", help=argparse.SUPPRESS)
    config = add_command(sub, "config", "print every setting and where its value came from", EVERY_SETTING)
    config.set_defaults(settings_command=_config)
    health = add_command(
        sub, "health", "print /health of a running daemon; exit 0 ok, 1 degraded, 2 down", HTTP_CLIENT,
        description="Print /health of a running daemon; exit 0 ok, 1 degraded, 2 down or unreachable.",
    )
    health.set_defaults(settings_command=_health)
    tail = add_command(sub, "tail", "print live events (JSON lines) from a running daemon", SUBSCRIBER)
    tail.add_argument("patterns", nargs="*", default=["*"], metavar="PATTERN", help="channel globs, e.g. 'game.*' (default: all)")
    tail.add_argument("--from-seq", type=int, default=None, metavar="N", help="start with every matching event from seq N on")
    tail.set_defaults(settings_command=_tail)
    attach = add_command(sub, "attach", "open the console for a running daemon (over its /ws)", ATTACH_READS)
    attach.add_argument("url", nargs="?", default=None, metavar="URL", help="the daemon's WebSocket (default: ws://HTTP_HOST:HTTP_PORT/ws)")
    attach.set_defaults(settings_command=_attach)
    add_recorder_parsers(sub)
    add_chrome_parser(sub)
    add_sim_parser(sub)
    add_order_parsers(sub)
    add_settings(parser, EVERY_SETTING)
    parser.description = INTRO.format(commands=command_list(sub))
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    refused = refused_secret(argv)
    if refused is not None:
        print(f"vectra: {refused}", file=sys.stderr)
        return 2
    args = build_parser().parse_args(argv)
    if getattr(args, "func", None) is not None:
        return args.func(args)
    try:
        settings = load_settings(overrides(args))
    except ConfigError as exc:
        print(f"vectra: {exc}", file=sys.stderr)
        return 2
    try:
        return args.settings_command(args, settings)
    except ConfigError as exc:  # e.g. a ZeroMQ endpoint that cannot be bound
        print(f"vectra: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
