"""The foundation service: one feed in, one sequenced event stream out.

The console (`vectra`) and the daemon (`vectra --daemon`) run this same object. Everything around
the stream (broadcast servers, the recorder, the browser manager) plugs in as a `Component`, and
everything an operator can do goes through `command()`, so every front end offers the same verbs.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any, Awaitable, Callable, Iterable

from core import __version__
from core.bus import EventBus
from core.config import Settings
from core.dedup import FrameDeduplicator
from core.contracts.envelope import now_ms
from core.contracts.feed import FeedEvent
from core.contracts.health import (
    Connection,
    HealthReport,
    Latency,
    Pipeline,
    RecordingHealth,
    Section,
    SourceConnection,
    Status,
    Subscribers,
)
from core.contracts.history import History
from core.contracts.recordings import recordings_dir
from core.framing import EIO_MESSAGE, FrameError, PacketDecoder, unwrap_event
from core.normalizer import Normalizer, error_draft, verbatim_draft
from core.gamestore import GameStore
from core.ring import Ring
from core.seqstore import SeqStore
from core.contracts.component import Component
from core.contracts.feed import FeedSource
from core.contracts.requests import ACTIONS, Request

log = logging.getLogger(__name__)

RAW_PREVIEW_CHARS = 2000
CommandHandler = Callable[[Any], Awaitable[dict[str, Any]]]  # takes its action's model (contracts.requests)


def preview(message: str | bytes) -> str:
    if isinstance(message, (bytes, bytearray)):
        return f"<{len(message)} binary bytes: {bytes(message[:32]).hex()}>"
    if len(message) > RAW_PREVIEW_CHARS:
        return message[:RAW_PREVIEW_CHARS] + f"... <{len(message)} chars>"
    return message


class Foundation:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.seqstore = SeqStore(settings.data_dir / "seq.state")
        self.bus = EventBus(self.seqstore, Ring(settings.ring_size, int(settings.ring_max_mb * 1024 * 1024)))
        self.gamestore = self._open_gamestore()
        self.normalizer = self._resume_games()
        self.sources: list[FeedSource] = []
        self.components: list[Component] = []
        self.connections: dict[str, dict[str, Any]] = {}
        self.commands: dict[str, CommandHandler] = {"reconnect": self._reconnect}
        self.history: History | None = None  # events older than the ring (the recorder's)
        self._decoders: dict[str, PacketDecoder] = {}
        self._sent_decoders: dict[str, PacketDecoder] = {}  # the page's own frames: their own binary state
        self.dedup = FrameDeduplicator(settings.dedup_window_s) if len(settings.sources) > 1 else None
        self._tasks: list[asyncio.Task] = []
        self._stopped = asyncio.Event()
        self.started_monotonic = time.monotonic()

    # --- assembly -------------------------------------------------------------------------------

    def add_source(self, source: FeedSource) -> None:
        self.sources.append(source)
        self._decoders[source.name] = PacketDecoder(self.settings.max_frame_bytes)
        self._sent_decoders[source.name] = PacketDecoder(self.settings.max_frame_bytes)
        self.connections[source.name] = _new_connection(getattr(source, "url", None))

    def add_component(self, component: Component) -> None:
        self.components.append(component)

    def add_command(self, action: str, handler: CommandHandler) -> None:
        """Register an operator verb; its request model (contracts.requests) says whether it needs the token."""
        if action not in ACTIONS:
            raise ValueError(f"no request model for action {action!r} in core/contracts/requests.py")
        self.commands[action] = handler

    def _open_gamestore(self) -> GameStore | None:
        """Game memory is kept for live feeds only: a replay plays games of another time, from the start."""
        path = self.settings.data_dir / "games.state"
        if "replay" in self.settings.sources:
            path.unlink(missing_ok=True)  # the games it remembers are no longer the last ones published
            return None
        try:
            return GameStore(path)
        except OSError as exc:
            log.warning("game memory %s cannot be opened (%s): a restart inside a game will start it afresh", path, exc)
            return None

    def _resume_games(self) -> Normalizer:
        """The game rules carry on where the last run left them, so a restart inside a game keeps it whole."""
        if self.gamestore is None:
            return Normalizer()
        normalizer = self.gamestore.restore(self.seqstore.resume.previous_last_seq, Normalizer.resumed)
        if normalizer is None:
            return Normalizer()
        if normalizer.game is not None:
            log.info("resuming inside game %s (%s)", normalizer.game.game_id, normalizer.game.phase)
        return normalizer

    @property
    def primary_source(self) -> str:
        return self.settings.sources[0]

    # --- life cycle -----------------------------------------------------------------------------

    async def start(self) -> None:
        """`sys.start` is the first event of every run, so components start after it."""
        resume = self.seqstore.resume
        skipped = {"from": resume.skipped[0], "to": resume.skipped[1]} if resume.skipped else None
        self.bus.publish(
            "sys.start",
            {
                "previous_last_seq": resume.previous_last_seq,
                "skipped": skipped,
                "version": __version__,
                "sources": list(self.settings.sources),
            },
            source=self.primary_source,
        )
        for component in self.components:
            await component.start()
        for source in self.sources:
            self._tasks.append(asyncio.create_task(source.run(), name=f"source:{source.name}"))
        self._tasks.append(asyncio.create_task(self._heartbeats(), name="heartbeat"))

    async def _heartbeats(self) -> None:
        """`sys.heartbeat` every `heartbeat_s` through `bus.control()`: every transport forwards the
        same message, after the events it counts, so a subscriber holding fewer than `last_seq` knows
        it lost some even on a quiet channel."""
        while True:
            await asyncio.sleep(self.settings.heartbeat_s)
            self.bus.control(
                {
                    "type": "sys.heartbeat",
                    "last_seq": self.bus.last_seq,
                    "first_seq": self.bus.ring.first_seq,
                    "ts": now_ms(),
                    "uptime_s": round(time.monotonic() - self.started_monotonic, 1),
                }
            )

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._tasks.clear()
        for component in reversed(self.components):
            try:
                await asyncio.wait_for(component.stop(), timeout=4)
            except Exception:
                log.exception("stopping %s failed", component.name)
        self.seqstore.close()
        if self.gamestore is not None:
            self.gamestore.close()
        self._stopped.set()

    # --- the sink the sources report to ---------------------------------------------------------

    def frame(self, source: str, message: str | bytes, received_ms: int) -> None:
        try:
            packet = self._decoders[source].feed(message)
            if packet is None:
                return
            if packet.kind == "event":
                self.event(source, unwrap_event(packet), received_ms)
            elif packet.kind == "ack":
                args = packet.data if isinstance(packet.data, list) else [packet.data]
                self.bus.publish(
                    "raw.ack",
                    {"ackId": packet.ack_id, "args": args},
                    source=source,
                    received_ms=received_ms,
                )
        except FrameError as exc:
            self._error(source, exc.code, exc.message, preview(message), received_ms)

    def sent(self, source: str, message: str | bytes, sent_ms: int) -> None:
        """`sent.<event>`: what the page asked of the server (orders placed by hand included), with the
        frame as its WebSocket carried it. Other packets it sends (connect, acks) carry no order."""
        try:
            packet = self._sent_decoders[source].feed(message)
            if packet is None or packet.kind != "event":
                return
            draft = verbatim_draft("sent", unwrap_event(packet))
        except FrameError as exc:
            self._error(source, exc.code, f"a frame the page sent: {exc.message}", preview(message), sent_ms)
            return
        if isinstance(message, str):
            draft.data["frame"] = EIO_MESSAGE + message
        self.bus.publish(draft.type, draft.data, source=source, game_id=draft.gameId, received_ms=sent_ms)

    def event(self, source: str, event: FeedEvent, received_ms: int) -> None:
        if self.dedup is not None and not self.dedup.admit(source, event):
            return  # the other source already delivered this frame
        drafts = self.normalizer.normalize(event, received_ms)
        if self.gamestore is not None and (memory := self.normalizer.changed_memory()) is not None:
            self.gamestore.save(memory, self.bus.last_seq + 1, len(drafts))  # before: see core/gamestore.py
        self.bus.publish_drafts(drafts, source=source, received_ms=received_ms)

    def forget_games(self) -> None:
        """Apply the game rules afresh: a replay starting over plays games that are already over."""
        self.normalizer = Normalizer()

    def status(self, source: str, state: str, *, url: str | None, attempt: int = 0, reason: str | None = None) -> None:
        entry = self.connections.setdefault(source, _new_connection(url))
        if state == "connected":
            entry["connects"] += 1
            entry["connected_since"] = now_ms()
        else:
            entry["connected_since"] = None
        entry.update(state=state, url=url, attempt=attempt, reason=reason)
        log.log(
            logging.WARNING if state == "failed" else logging.INFO,
            "%s %s %s (attempt %d)%s", source, state, url, attempt, f": {reason}" if reason else "",
        )
        for decoders in (self._decoders, self._sent_decoders):
            decoder = decoders.get(source)
            if decoder is not None:
                decoder.reset()
        self.bus.publish(
            "connection.status",
            {"state": state, "source": source, "url": url, "attempt": attempt, "reason": reason},
            source=source,
        )

    def _error(self, source: str, code: str, message: str, raw: str | None, received_ms: int) -> None:
        draft = error_draft(code, message, raw)
        self.bus.publish(draft.type, draft.data, source=source, received_ms=received_ms)

    # --- operator verbs -------------------------------------------------------------------------

    async def command(self, request: Request) -> dict[str, Any]:
        """Run a parsed command (`Requests` checked that this foundation serves its action)."""
        return await self.commands[request.action](request)

    async def _reconnect(self, request: Request) -> dict[str, Any]:
        for source in self.sources:
            source.reconnect_now()
        return {"type": "reconnecting", "sources": [source.name for source in self.sources]}

    # --- what the outside sees ------------------------------------------------------------------

    def snapshot(self) -> dict[str, Any]:
        """What a late joiner needs: last tick, current game and phase, the player's own state,
        connection, last seq."""
        game = self.normalizer.game
        last_tick = self.bus.last_by_type.get("game.tick")
        player = self.bus.last_by_type.get("player.state")
        if self.bus.relaying:  # an edge normalizes nothing: the game is the one the origin's last tick names
            game_id = last_tick.gameId if last_tick else None
            phase = last_tick.data.get("phase") if last_tick else None
        else:
            game_id, phase = (game.game_id if game else None), self.normalizer.phase
        return {
            "type": "snapshot",
            "seq": self.bus.last_seq,
            "gameId": game_id,
            "phase": phase,
            "last_tick": last_tick.as_dict() if last_tick else None,
            "player": player.data if player else None,
            "connection": {name: _public(entry).model_dump() for name, entry in self.connections.items()},
        }

    def health(self) -> HealthReport:
        sections = {section.report_key: section for section in self._sections()}
        stats = self.bus.stats
        now = now_ms()
        connection = self._connection(now)
        recording = sections.pop("recording", None) or RecordingHealth.absent(str(recordings_dir(self.settings.data_dir)))
        websocket, zmq = sections.get("websocket"), sections.get("zmq")
        return HealthReport(
            status=self._status(connection, recording, sections.values()),
            source=self.settings.source,
            connection=connection,
            latency_ms=Latency(feed_rtt=None, pipeline=Pipeline(**stats.latency_ms())),
            events_total=stats.events_total,
            events_per_s=stats.events_per_s(),
            events_by_family=dict(stats.by_family),
            seq=self.bus.last_seq,
            subscribers=Subscribers(
                ws=websocket.clients if websocket is not None else 0, zmq=zmq.subscribers if zmq is not None else 0
            ),
            recording=recording,
            uptime_s=round(time.monotonic() - self.started_monotonic, 1),
            **sections,
        )

    def _sections(self) -> list[Section]:
        sections = [part.health() for part in [*self.components, *self.sources]]
        return [section for section in sections if section is not None]

    def _connection(self, now: int) -> Connection:
        primary = self.connections.get(self.primary_source, {})
        last_event, last_frame = self.bus.stats.last_event_ms, self.bus.stats.last_frame_ms
        return Connection(
            state=primary.get("state"),
            url=primary.get("url"),
            connected_since=primary.get("connected_since"),
            reconnects=sum(_reconnects(entry) for entry in self.connections.values()),
            last_event_ts=last_event,
            last_event_age_ms=now - last_event if last_event is not None else None,
            last_frame_ts=last_frame,
            last_frame_age_ms=now - last_frame if last_frame is not None else None,
            sources={name: _public(entry) for name, entry in self.connections.items()},
        )

    def _status(self, connection: Connection, recording: RecordingHealth, sections: Iterable[Section]) -> Status:
        """`down` without a connected source; `ok` only when every source is connected, the feed
        itself spoke lately (Vectra's own events prove nothing about it), recording works and no
        component says it degrades the service (the NATS bridge far behind)."""
        connected = [link.state == "connected" for link in connection.sources.values()]
        age = connection.last_frame_age_ms
        fresh = age is not None and age < self.settings.health_stale_s * 1000
        if not any(connected):
            return "down"
        if all(connected) and fresh and recording.state != "failed" and not any(s.degrades() for s in sections):
            return "ok"
        return "degraded"

    async def wait_stopped(self) -> None:
        await self._stopped.wait()


def _new_connection(url: str | None) -> dict[str, Any]:
    return {"state": "disconnected", "url": url, "attempt": 0, "reason": None, "connected_since": None, "connects": 0}


def _reconnects(entry: dict[str, Any]) -> int:
    return max(0, entry["connects"] - 1)


def _public(entry: dict[str, Any]) -> SourceConnection:
    return SourceConnection(**{key: value for key, value in entry.items() if key != "connects"}, reconnects=_reconnects(entry))
