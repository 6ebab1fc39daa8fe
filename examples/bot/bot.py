"""A downstream bot: joins a running Vectra with the client library and acts on the game's events.

It prints one line per finished game and per trade, the way a real bot would feed its strategy. Run it
anywhere the client library is installed (`pip install vectra-*.whl`), or as compose.yaml's `bot`
service. VECTRA_ZMQ_PUB / VECTRA_ZMQ_ROUTER say where the daemon is, as for every `vectra` command.
"""

from __future__ import annotations

import asyncio
import sys

from core.client import subscribe


async def main() -> None:
    async for event in subscribe("game.*", "player.trade"):
        if event.seq is None:  # the client's own status: the daemon down or back, events lost for good
            print(f"status {event.type} {event.data}", file=sys.stderr, flush=True)
        elif event.type == "game.end":
            print(f"seq {event.seq} game {event.gameId} ended: {event.data}", flush=True)
        elif event.type == "player.trade":
            print(f"seq {event.seq} trade {event.data}", flush=True)


if __name__ == "__main__":
    asyncio.run(main())
