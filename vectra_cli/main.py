"""The `vectra` command.

Every setting is also a flag (`VECTRA_HTTP_PORT` is `--http-port`), generated from the settings
model so the two can never disagree. Flags given on the command line override the environment.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from typing import Any, Callable

from core.config import ConfigError, Settings, load_settings, render

SettingsCommand = Callable[[argparse.Namespace, Settings], int]


def _flag(field: str) -> str:
    return "--" + field.replace("_", "-")


def settings_flags() -> argparse.ArgumentParser:
    """A parent parser holding one flag per setting; absent flags leave no attribute."""
    parent = argparse.ArgumentParser(add_help=False)
    group = parent.add_argument_group("settings (override VECTRA_* variables)")
    for field, spec in Settings.model_fields.items():
        kwargs: dict[str, Any] = {"dest": field, "default": argparse.SUPPRESS, "help": spec.description}
        if spec.annotation is bool:
            kwargs["action"] = argparse.BooleanOptionalAction
        group.add_argument(_flag(field), **kwargs)
    return parent


def overrides(args: argparse.Namespace) -> dict[str, Any]:
    return {field: getattr(args, field) for field in Settings.model_fields if hasattr(args, field)}


def _config(args: argparse.Namespace, settings: Settings) -> int:
    print(render(settings, overrides(args)))
    return 0


def _health(args: argparse.Namespace, settings: Settings) -> int:
    from core.broadcast.health_probe import probe

    code, text = probe(settings)
    print(text, file=sys.stdout if code != 2 or text.startswith("{") else sys.stderr)
    return code


def _main_job(args: argparse.Namespace, settings: Settings) -> int:
    from core.runtime import run_daemon, setup_logging

    setup_logging(settings.log_level, as_json=args.log_json)
    if args.daemon:
        return asyncio.run(run_daemon(settings, stdout=args.stdout))
    from vectra_tui.app import run_console

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
    common = settings_flags()
    parser = argparse.ArgumentParser(
        prog="vectra",
        parents=[common],
        description="One rugs.fun connection, republished as a sequenced event stream. "
        "Without a sub-command: the operator console (or, with --daemon, the headless service).",
    )
    parser.add_argument("--daemon", action="store_true", help="run headless until SIGINT/SIGTERM")
    parser.add_argument("--stdout", action="store_true", help="with --daemon: every event as a JSON line on stdout")
    parser.add_argument("--log-json", action="store_true", help="log JSON lines to stderr")
    parser.set_defaults(settings_command=_main_job)
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    config = sub.add_parser("config", parents=[common], help="print the effective configuration and where each value came from")
    config.set_defaults(settings_command=_config)
    health = sub.add_parser("health", parents=[common], help="print /health of a running foundation; exit 0 ok, 1 degraded, 2 down or unreachable")
    health.set_defaults(settings_command=_health)
    tail = sub.add_parser("tail", parents=[common], help="print live events (JSON lines) from a running foundation")
    tail.add_argument("patterns", nargs="*", default=["*"], metavar="PATTERN", help="channel globs, e.g. 'game.*' (default: all)")
    tail.add_argument("--from-seq", type=int, default=None, metavar="N", help="start with every matching event from seq N on")
    tail.set_defaults(settings_command=_tail)
    attach = sub.add_parser("attach", parents=[common], help="open the console for a running daemon (over its /ws)")
    attach.add_argument("url", nargs="?", default=None, metavar="URL", help="the daemon's WebSocket (default: ws://HTTP_HOST:HTTP_PORT/ws)")
    attach.set_defaults(settings_command=_attach)
    from vectra_cli.sim import add_sim_parser
    from vectra_cli.record import add_recorder_parsers
    from vectra_cli.chrome import add_chrome_parser

    add_sim_parser(sub)
    add_recorder_parsers(sub, common)
    add_chrome_parser(sub, common)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
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
