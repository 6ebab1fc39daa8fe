"""The edge's feed (`VECTRA_SOURCE=nats`): a remote Vectra's JetStream stream, republished unchanged.

An edge is a Vectra on another host whose feed is the origin's stream: every message is an origin's
envelope, byte for byte (core/contracts/nats.py), which the bus passes on with the origin's `seq`
(`EventBus.republish`), so local bots, browsers and the recorder see the origin's stream on the usual
endpoints. Each connection starts reading where the edge's own last `seq` + 1 sits in the stream
(`start_position`: a bisection, not a scan), so a restart, SIGKILL included, resumes with no hole and
no duplicate; an ordered consumer (no acks, no state on the server) then follows the stream.

nats-py's own reconnection is off: the `Supervisor` owns the life cycle, as for every source, and
every new connection finds its place again from the edge's last `seq`, whichever server it reaches.
A number the stream no longer holds (aged out, or never sent) is a loss said out loud: a log line,
`/health` (`edge`), and a ring that starts after it, so a replay over it reports a `gap`.
"""

from __future__ import annotations

import asyncio
import logging

import nats
import orjson
from nats.aio.msg import Msg
from nats.errors import Error as NatsError
from nats.js.api import ConsumerConfig, DeliverPolicy
from nats.js.errors import NotFoundError

from core.bus import EventBus
from core.config import Settings, env_name, nats_connect_options, nats_servers
from core.contracts.envelope import Envelope, now_ms
from core.contracts.feed import FeedSink, FeedSource
from core.contracts.health import EdgeHealth
from core.contracts.nats import STREAM, SUBJECTS, servers_in, start_position, without_credentials
from core.supervisor import Policy, Supervisor, Transition

log = logging.getLogger(__name__)


class NatsSource(FeedSource):
    """A feed source, and the supervisor's `Link` for its one NATS connection."""

    name = "nats"

    def __init__(self, sink: FeedSink, settings: Settings, bus: EventBus) -> None:
        super().__init__(sink)
        self.settings, self.bus = settings, bus
        self.url = without_credentials(settings.feed_url)  # what /health, logs and errors show
        self.servers = servers_in(settings.feed_url)
        self.supervisor = Supervisor(self, self._show, Policy.from_settings(settings))
        self._connection: nats.NATS | None = None
        self._subscription = None
        self.health_now = EdgeHealth(stream=STREAM, holes=0, lost=0, last_hole_from=None, last_hole_to=None,
                                     duplicates=0, rejected=0)

    def _show(self, step: Transition) -> None:
        self.report(step.state, step.attempt, step.reason)

    def reconnect_now(self) -> None:
        self.supervisor.wake()

    def health(self) -> EdgeHealth:
        return self.health_now

    async def run(self) -> None:
        if not self.servers or not all(nats_servers(server) for server in self.servers):
            self.report("failed", reason=f"{env_name('feed_url')}={self.url} is not a list of nats:// servers "
                                         "(an edge reads the origin's JetStream stream)")
            return
        await self.supervisor.run()

    # --- the supervisor's Link ------------------------------------------------------------------

    async def open(self) -> None:
        self._connection = connection = await nats.connect(
            **nats_connect_options(self.settings, self.settings.feed_url), disconnected_cb=self._lost,
            error_cb=self._error,
        )
        stream = connection.jetstream()
        try:
            start = await start_position(stream, self.bus.last_seq + 1, missing=NotFoundError)
        except NotFoundError:
            raise ConnectionError(f"no stream {STREAM} on {self.url}: is the origin's bridge publishing there?") from None
        config = ConsumerConfig(deliver_policy=DeliverPolicy.BY_START_SEQUENCE, opt_start_seq=start)
        self._subscription = await stream.subscribe(SUBJECTS, stream=STREAM, ordered_consumer=True, config=config,
                                                    cb=self._on_message)

    async def _on_message(self, message: Msg) -> None:
        """nats-py's one task for the subscription calls this per message, in stream order (a
        callback costs far less per message than iterating `messages`, which waits through a task)."""
        self.supervisor.heard()
        self.take(message.data)

    async def hold(self) -> str:
        """The subscription's callback does the work: only a lost connection or an operator (through
        the supervisor) ends the hold."""
        return await asyncio.get_running_loop().create_future()

    async def close(self) -> None:
        connection, self._connection, self._subscription = self._connection, None, None
        if connection is None or connection.is_closed:
            return
        try:
            async with asyncio.timeout(2):
                await connection.close()
        except (NatsError, OSError, TimeoutError):
            log.debug("closing a dead NATS connection failed", exc_info=True)

    async def _lost(self) -> None:
        self.supervisor.drop("NATS connection lost")

    async def _error(self, exc: Exception) -> None:
        log.warning("NATS: %s", exc)

    # --- what the stream carries ----------------------------------------------------------------

    def take(self, body: bytes) -> None:
        """One stream message: the origin's envelope, passed on as it is; a hole before it is said."""
        envelope = _envelope(body)
        if envelope is None:
            self.health_now.rejected += 1
            log.error("a message of stream %s is not a Vectra envelope, skipped: %.200r", STREAM, body)
            return
        last = self.bus.last_seq
        lost = _lost_before(envelope, last)
        if lost is not None:
            self._hole(*lost)
        if not self.bus.republish(envelope, now_ms()):
            self.health_now.duplicates += 1

    def _hole(self, first: int, last: int) -> None:
        health = self.health_now
        health.holes += 1
        health.lost += last - first + 1
        health.last_hole_from, health.last_hole_to = first, last
        log.error("events %d..%d are not in stream %s any more (or never reached it): lost on this edge", first, last, STREAM)
        self.bus.ring.clear()  # a replay over the hole now reports it as a `gap`


def _envelope(body: bytes) -> Envelope | None:
    """The envelope a message holds, keeping its bytes (what the edge sends on is the origin's JSON)."""
    try:
        head = orjson.loads(body)
        envelope = Envelope(head["seq"], head["type"], head["timestamp"], head.get("gameId"), head["source"], json=body)
    except (orjson.JSONDecodeError, KeyError, TypeError):
        return None
    return envelope if type(envelope.seq) is int and isinstance(envelope.type, str) else None


def _lost_before(envelope: Envelope, last: int) -> tuple[int, int] | None:
    """The numbers between the edge's `last` and this envelope that held events and are not coming:
    none for a fresh edge (it starts where the stream starts) nor for the block an origin's restart
    reserved and never used (its `sys.start` says which)."""
    if last == 0 or envelope.seq <= last + 1:
        return None
    end = envelope.seq - 1
    if envelope.type == "sys.start":
        skipped = envelope.data.get("skipped")
        if isinstance(skipped, dict) and isinstance(skipped.get("from"), int):
            end = min(end, skipped["from"] - 1)
    return (last + 1, end) if end > last else None
