"""The headless daemon, as `vectra --daemon` and `vectra replay` both run it."""

from __future__ import annotations

import argparse
import asyncio

from core.config import Settings


def add_output_flags(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--stdout", action="store_true", help="headless: every event as a JSON line on stdout")
    parser.add_argument("--log-json", action="store_true", help="log JSON lines to stderr")


def run_headless(args: argparse.Namespace, settings: Settings) -> int:
    from core.runtime import run_daemon, setup_logging

    setup_logging(settings.log_level, as_json=args.log_json)
    return asyncio.run(run_daemon(settings, stdout=args.stdout))
