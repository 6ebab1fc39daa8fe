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


def _main_job(args: argparse.Namespace, settings: Settings) -> int:
    from core.runtime import run_daemon, setup_logging

    setup_logging(settings.log_level, as_json=args.log_json)
    if args.daemon:
        return asyncio.run(run_daemon(settings, stdout=args.stdout))
    from vectra_tui.app import run_console

    return run_console(settings)


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
    from core.sim.cli import add_sim_parser

    add_sim_parser(sub)
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
    return args.settings_command(args, settings)


if __name__ == "__main__":
    sys.exit(main())
