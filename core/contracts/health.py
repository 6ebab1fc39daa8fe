"""The `/health` report as types: the one shape `/health`, `/metrics`, `vectra health`, the `health`
request, `vectra attach` and the console all read.

The foundation fills the core figures; every component contributes its own section (`Section`
subclasses name the report field they fill), so a plug-in cannot put a key anywhere else and a reader
never digs through a dict. `docs/PROTOCOL.md` documents every field (a test holds the two together).
Unknown keys are ignored when parsing, so an older console still reads a newer daemon's report.
"""

from __future__ import annotations

from typing import ClassVar, Literal

from pydantic import BaseModel

from core.contracts.channels import ChromeStatus, LinkState, RecordingStatus

Status = Literal["ok", "degraded", "down"]


class SourceConnection(BaseModel):
    state: LinkState
    url: str | None
    attempt: int
    reason: str | None
    connected_since: int | None
    reconnects: int


class Connection(BaseModel):
    """The primary source's connection, freshness, and every source under `sources`."""

    state: LinkState | None
    url: str | None
    connected_since: int | None
    reconnects: int
    last_event_ts: int | None
    last_event_age_ms: int | None
    last_frame_ts: int | None
    last_frame_age_ms: int | None
    sources: dict[str, SourceConnection]


class Pipeline(BaseModel):
    p50: float | None
    p99: float | None


class Latency(BaseModel):
    feed_rtt: float | None
    pipeline: Pipeline


class Subscribers(BaseModel):
    ws: int
    zmq: int


class Section(BaseModel):
    """A component's part of the report; `report_key` is the `HealthReport` field it fills."""

    report_key: ClassVar[str]

    def degrades(self) -> bool:
        """True while this component keeps the whole report from `ok` (it is then `degraded`)."""
        return False


class ZmqHealth(Section):
    report_key: ClassVar[str] = "zmq"
    pub: str
    router: str
    subscribers: int
    topics: list[str]
    pub_hwm: int
    router_hwm: int
    requests: int
    replays: int
    replayed_events: int
    replies_abandoned: int


class WebSocketHealth(Section):
    report_key: ClassVar[str] = "websocket"
    clients: int
    closed_slow: int
    closed_flood: int


class RecordingHealth(RecordingStatus, Section):
    """The `recording.status` data."""

    report_key: ClassVar[str] = "recording"

    @classmethod
    def absent(cls, folder: str) -> RecordingHealth:
        """What a foundation without a recorder reports: nothing recorded, nothing going on."""
        return cls(
            on=False, state="stopped", path=folder, rows=0, bytes=0, wal_bytes=0, since=None, reason=None, buffered=0
        )


class ChromeHealth(ChromeStatus, Section):
    """The `chrome.status` data."""

    report_key: ClassVar[str] = "chrome"


class OrderLimits(BaseModel):
    max_sol: float
    max_sol_per_game: float
    max_per_minute: int
    max_tick_age_s: float
    max_in_flight: int


class OrdersHealth(Section):
    """The order desk: what `orders_status` also answers, without the order lists."""

    report_key: ClassVar[str] = "orders"
    mode: Literal["off", "dry-run", "live"]
    halted: bool
    executor: str
    executor_problem: str | None
    in_flight_count: int
    limits: OrderLimits


class EdgeHealth(Section):
    """An edge (`VECTRA_SOURCE=nats`): what it could not republish from the origin's stream."""

    report_key: ClassVar[str] = "edge"
    stream: str
    holes: int
    lost: int
    last_hole_from: int | None
    last_hole_to: int | None
    duplicates: int
    rejected: int


class NatsHealth(Section):
    """The JetStream bridge: how far JetStream has acknowledged the stream, and what waits for it.

    `backlog` counts the events published on the bus that JetStream has not acknowledged yet (numbers
    a restart skipped are not events); the bridge reads them back from the ring or the recordings, so
    a backlog costs no memory. `degraded` once it passes `VECTRA_NATS_BACKLOG_DEGRADED`."""

    report_key: ClassVar[str] = "nats"
    state: LinkState
    url: str
    stream: str
    acked_seq: int | None
    backlog: int
    degraded: bool
    last_error: str | None

    def degrades(self) -> bool:
        return self.degraded


class HealthReport(BaseModel):
    status: Status
    source: str
    connection: Connection
    latency_ms: Latency
    events_total: int
    events_per_s: float
    events_by_family: dict[str, int]
    seq: int
    subscribers: Subscribers
    recording: RecordingHealth
    chrome: ChromeHealth | None = None  # null without a managed browser
    uptime_s: float
    zmq: ZmqHealth | None = None  # the sections of components this foundation may run without
    websocket: WebSocketHealth | None = None
    orders: OrdersHealth | None = None
    nats: NatsHealth | None = None
    edge: EdgeHealth | None = None  # null unless the source is `nats`
