"""Settings as flags, grouped by area, so that each command offers only the settings it reads.

Every setting but a secret is also a flag (`VECTRA_HTTP_PORT` is `--http-port`), generated from the
settings model so the two can never disagree; a flag given on the command line overrides the
environment. The area of each setting is declared beside it in core/config.py and heads its group in
the help; a command names the settings it reads when it is registered (`settings_of(area)` for every
setting of an area, as a daemon reads them). Secrets are never flags: any user of the machine can read
a process's command line.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any, Iterable, get_args

from pydantic import SecretStr

from core.config import AREAS, Settings, area_of, env_name



def settings_of(*areas: str) -> tuple[str, ...]:
    """Every setting of these areas, in the model's order."""
    return tuple(field for field in Settings.model_fields if area_of(field) in areas)


EVERY_SETTING = settings_of(*AREAS)
# What a command that only talks to a running daemon reads to find it, by the way it talks to it.
HTTP_CLIENT = ("http_host", "http_port")
REQUESTER = ("zmq_router", "auth_token_file")  # one request to the ROUTER, with the token if there is one
SUBSCRIBER = ("zmq_pub", "zmq_router", "heartbeat_s")  # the stream, replayed from the ROUTER after a gap


class HelpFormatter(argparse.RawDescriptionHelpFormatter):
    """Keeps the usage line to a command's own arguments: its settings are listed below, by area."""

    def add_usage(self, usage: Any, actions: Iterable[argparse.Action], groups: Any, prefix: Any = None) -> None:
        own = [action for action in actions if not is_setting_flag(action)]
        super().add_usage(usage, own, groups, prefix)


def flag(field: str) -> str:
    return "--" + field.replace("_", "-")


def is_setting_flag(action: argparse.Action) -> bool:
    return action.dest in Settings.model_fields and flag(action.dest) in action.option_strings


def is_secret(field: str) -> bool:
    annotation = Settings.model_fields[field].annotation
    return annotation is SecretStr or SecretStr in get_args(annotation)


def add_settings(parser: argparse.ArgumentParser, reads: Iterable[str]) -> None:
    """The flags of the settings `reads` names, one group per area; an absent flag leaves no attribute,
    so the environment applies."""
    wanted = set(reads)
    unknown = wanted - Settings.model_fields.keys()
    if unknown:
        raise ValueError(f"no such settings: {', '.join(sorted(unknown))}")
    for area, about in AREAS.items():
        fields = [field for field in Settings.model_fields if field in wanted and area_of(field) == area]
        if not fields:
            continue
        group = parser.add_argument_group(f"{area} settings", about)
        for field in fields:
            spec = Settings.model_fields[field]
            if is_secret(field):
                continue
            kwargs: dict[str, Any] = {"dest": field, "default": argparse.SUPPRESS, "help": spec.description}
            if spec.annotation is bool:
                kwargs["action"] = argparse.BooleanOptionalAction
            else:
                kwargs["metavar"] = _metavar(field, spec.annotation)
            group.add_argument(flag(field), **kwargs)


def _metavar(field: str, annotation: Any) -> str:
    """A short name for a flag's value, so its help stays on the flag's line."""
    if field.endswith("_s"):
        return "SECONDS"
    kinds = {int: "N", float: "NUMBER", Path: "PATH"}
    return next((kinds[kind] for kind in (annotation, *get_args(annotation)) if kind in kinds), "TEXT")


def add_command(
    subparsers: Any, name: str, summary: str, reads: Iterable[str] = (), **kwargs: Any
) -> argparse.ArgumentParser:
    """A sub-command with the flags of the settings it reads; `summary` is its one line in `vectra --help`."""
    kwargs.setdefault("description", summary)
    parser = subparsers.add_parser(name, help=summary, formatter_class=HelpFormatter, **kwargs)
    parser.set_defaults(summary=summary)
    add_settings(parser, reads)
    return parser


def command_list(subparsers: Any) -> str:
    """The sub-commands, one line each, for the top of `vectra --help`."""
    width = max(len(name) for name in subparsers.choices)
    return "\n".join(
        f"  {name:<{width}}  {parser.get_default('summary')}" for name, parser in subparsers.choices.items()
    )


def overrides(args: argparse.Namespace) -> dict[str, Any]:
    """The settings given on the command line (flags, and the arguments a command maps onto settings)."""
    return {field: getattr(args, field) for field in Settings.model_fields if hasattr(args, field)}


def refused_secret(argv: Iterable[str]) -> str | None:
    """Why a secret given as a flag is refused, naming the variables to use instead; None if none is given."""
    secrets = {flag(field): field for field in Settings.model_fields if is_secret(field)}
    for arg in argv:
        if arg == "--":
            return None
        name = arg.split("=", 1)[0]
        given = [secret for secret in secrets if len(name) > 2 and secret.startswith(name)]  # argparse takes prefixes
        if given:
            field = secrets[given[0]]
            instead = [env_name(each) for each in (field, field + "_file") if each in Settings.model_fields]
            return (
                f"{name} is not accepted: a secret on the command line is visible in the process list; "
                f"set {' or '.join(instead)} (in the environment or .env) instead"
            )
    return None
