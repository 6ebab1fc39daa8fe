"""`python -m core.sim`: the `sim` sub-command on its own, for use before the main CLI wires it in."""

import argparse
import sys

from core.sim.cli import configure_parser


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m core.sim")
    configure_parser(parser)
    args = parser.parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
