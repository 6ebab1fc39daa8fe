"""The chaos matrix of issue 14, as a command: a real daemon against the simulator through every
scenario, one row each (measures defined in docs/RELIABILITY.md).

    .venv/bin/python bench/chaos.py                  # every scenario this machine can run
    .venv/bin/python bench/chaos.py --list
    .venv/bin/python bench/chaos.py --only feed-killed,vectra-sigkill-mid-game
    .venv/bin/python bench/chaos.py --quick          # the few fast ones (the test marker's subset)
    .venv/bin/python bench/chaos.py --soak 10        # compressed soak: an hour of games in 10 minutes

Exit status: 0 when every row has lost silently == 0, false alarms == 0 and its check ok (or
skipped), 1 otherwise.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench import chaos_scenarios  # noqa: E402, F401 - registers the scenarios
from bench.chaos_harness import SCENARIOS, Row, table  # noqa: E402
from bench.soak import soak  # noqa: E402


def healthy(row: Row) -> bool:
    return row.lost_silently == 0 and row.false_alarms == 0 and (row.check == "ok" or row.check.startswith("skipped"))


async def run(names: list[str]) -> list[Row]:
    from bench.chaos_harness import run_scenario

    rows = []
    for name in names:
        began = time.monotonic()
        row = await run_scenario(SCENARIOS[name])
        rows.append(row)
        print(f"{name}: {time.monotonic() - began:.0f} s; " + " | ".join(row.cells()[1:]), file=sys.stderr, flush=True)
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--list", action="store_true", help="list the scenarios and exit")
    parser.add_argument("--only", default="", metavar="NAME[,NAME]", help="run only these scenarios")
    parser.add_argument("--quick", action="store_true", help="only the fast subset")
    parser.add_argument("--soak", type=float, default=None, metavar="MINUTES", help="run the compressed soak instead")
    args = parser.parse_args(argv)
    if args.list:
        for name, item in SCENARIOS.items():
            print(f"{name}{'  (quick)' if item.quick else ''}")
        return 0
    if args.soak is not None:
        return asyncio.run(soak(args.soak))
    names = [name for name in args.only.split(",") if name] or list(SCENARIOS)
    unknown = [name for name in names if name not in SCENARIOS]
    if unknown:
        parser.error(f"unknown scenario(s): {', '.join(unknown)}; see --list")
    if args.quick:
        names = [name for name in names if SCENARIOS[name].quick]
    rows = asyncio.run(run(names))
    print(table(rows))
    return 0 if all(healthy(row) for row in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
