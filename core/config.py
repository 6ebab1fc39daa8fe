"""Every setting of Vectra, with its default, in one place.

Business logic receives a `Settings` object and never spells a path, host or port itself. Values come
from, in rising priority: the defaults below, a `.env` file in the working directory, the environment
(`VECTRA_*`), and command-line flags (passed in as `overrides`).
"""

from __future__ import annotations

import ipaddress
import json
import os
import re
from pathlib import Path
from typing import Any, Literal, get_args
from urllib.parse import urlsplit

from dotenv import dotenv_values
from pydantic import Field, SecretStr, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from core.contracts.channels import SourceName
from core.contracts.nats import servers_in

ENV_PREFIX = "VECTRA_"
SOURCES: tuple[str, ...] = get_args(SourceName)

# Every setting belongs to one area, declared next to it (`json_schema_extra`): the command line groups
# its flags by area and offers each sub-command only the settings it reads.
AREAS: dict[str, str] = {
    "feed": "where frames come from and how the connection is kept",
    "broadcast": "where the daemon serves, and where its clients find it",
    "serving": "what the daemon keeps for subscribers, and the limits it holds them to",
    "recording": "Parquet recordings",
    "replay": "recordings played back as the feed",
    "browser": "the managed browser (CDP source)",
    "orders": "orders from bots: the mode, the executor and the limits",
    "nats": "the NATS JetStream bridge and the servers an edge reads from",
    "operator": "state folder, logging and the console",
}
FEED = {"area": "feed"}
BROADCAST = {"area": "broadcast"}
SERVING = {"area": "serving"}
RECORDING = {"area": "recording"}
REPLAY = {"area": "replay"}
BROWSER = {"area": "browser"}
ORDERS = {"area": "orders"}
NATS = {"area": "nats"}
OPERATOR = {"area": "operator"}


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix=ENV_PREFIX, env_file=".env", extra="ignore", validate_default=True
    )

    # --- the feed -------------------------------------------------------------------------------
    source: str = Field(
        "socketio",
        description="Where frames come from: `socketio`, `cdp` or `replay`; `cdp,socketio` runs both; `nats` (alone): "
        "an edge, which republishes a remote Vectra's JetStream stream read from `VECTRA_FEED_URL`.",
        json_schema_extra=FEED,
    )
    feed_url: str = Field(
        "https://backend.rugs.fun?frontend-version=1.0",
        description="Socket.IO endpoint of the game backend (direct source); for an edge (`nats`), the origin's NATS "
        "server(s), e.g. `nats://10.0.0.5:4222` (comma-separated for a cluster).",
        json_schema_extra=FEED,
    )
    feed_origin: str = Field(
        "https://rugs.fun", description="`Origin` header the direct source sends, as the site does.",
        json_schema_extra=FEED,
    )
    reconnect_initial_s: float = Field(
        0.5, gt=0, description="First reconnect delay; doubles on each failure, with jitter.",
        json_schema_extra=FEED,
    )
    reconnect_max_s: float = Field(30.0, gt=0, description="Cap of the reconnect delay.", json_schema_extra=FEED)
    stale_after_s: float = Field(
        10.0, gt=0, description="No frame for this long counts as a dead feed: reconnect.",
        json_schema_extra=FEED,
    )
    connect_timeout_s: float = Field(
        10.0, gt=0, description="Give up one connect attempt after this.", json_schema_extra=FEED
    )
    dedup_window_s: float = Field(
        30.0,
        gt=0,
        description="With two sources: how long a frame seen on one is remembered, to drop the other's copy.",
        json_schema_extra=FEED,
    )
    max_frame_bytes: int = Field(
        1024 * 1024,
        gt=0,
        description="Frames above this size are rejected with an `error` event (real frames: up to ~272 KB).",
        json_schema_extra=FEED,
    )

    # --- where things live ----------------------------------------------------------------------
    data_dir: Path = Field(
        Path("~/.local/share/vectra"),
        description="State (sequence counter) and recordings; `~` is expanded. One daemon, console or replay at a time.",
        json_schema_extra=OPERATOR,
    )

    # --- downstream -----------------------------------------------------------------------------
    http_host: str = Field(
        "127.0.0.1", description="Address of the HTTP/WebSocket server.", json_schema_extra=BROADCAST
    )
    http_port: int = Field(
        8765, ge=0, le=65535, description="Port of the HTTP/WebSocket server.", json_schema_extra=BROADCAST
    )
    zmq_pub: str = Field(
        "tcp://127.0.0.1:5556", description="ZeroMQ PUB endpoint (events).", json_schema_extra=BROADCAST
    )
    zmq_router: str = Field(
        "tcp://127.0.0.1:5557", description="ZeroMQ ROUTER endpoint (replay, snapshot, commands).",
        json_schema_extra=BROADCAST,
    )
    zmq_pub_hwm: int = Field(
        10_000,
        ge=100,
        description="Messages queued per ZeroMQ subscriber (about 5 s at 2,000 events/s, at most ~50 MB "
        "of 5 KB ticks); a subscriber further behind loses messages and recovers them by replay.",
        json_schema_extra=SERVING,
    )
    zmq_router_hwm: int = Field(
        1_000,
        ge=10,
        description="Replies queued per ZeroMQ ROUTER peer; a replay waits (up to 10 s) while its reader is this far behind.",
        json_schema_extra=SERVING,
    )
    heartbeat_s: float = Field(
        1.0, gt=0, le=10, description="Interval of `sys.heartbeat` (ZeroMQ and WebSocket); subscribers call the foundation dead after several missed ones.",
        json_schema_extra=BROADCAST,
    )
    ring_size: int = Field(
        100_000, ge=1000, description="Events kept in memory for resume (`from_seq`) and replay.",
        json_schema_extra=SERVING,
    )
    ring_max_mb: float = Field(
        32.0, gt=0, description="Memory the resume ring may hold (compressed blocks of events); the oldest go "
        "first when it or `ring_size` is reached, and are then read from the recordings.",
        json_schema_extra=SERVING,
    )
    auth_token: SecretStr | None = Field(
        None, description="When set, control commands must carry it; required off loopback.",
        json_schema_extra=BROADCAST,
    )
    auth_token_file: Path | None = Field(
        None,
        description="A file holding the value of VECTRA_AUTH_TOKEN (surrounding whitespace ignored); secrets "
        "are never flags, since every user of the machine can read a command line.",
        json_schema_extra=BROADCAST,
    )
    http_allowed_origins: str = Field(
        "",
        description="Browser origins allowed on HTTP/WebSocket besides the service's own and localhost "
        "(comma-separated, e.g. `https://dash.example`); other origins get HTTP 403.",
        json_schema_extra=SERVING,
    )
    ws_buffer_bytes: int = Field(
        16 * 1024 * 1024,
        ge=64 * 1024,
        description="Bytes queued for one WebSocket client before it counts as too slow and is closed (1008).",
        json_schema_extra=SERVING,
    )
    ws_max_message_bytes: int = Field(
        64 * 1024, ge=1024, description="Largest WebSocket command accepted; larger ones get a `too_large` error.",
        json_schema_extra=SERVING,
    )
    ws_max_messages_per_s: int = Field(
        100, ge=1, description="More commands than this in one second from one WebSocket client closes it (flood).",
        json_schema_extra=SERVING,
    )
    max_patterns: int = Field(
        256,
        ge=1,
        le=100_000,
        description="Channel patterns one WebSocket client may hold (and add within one second), and one "
        "ZeroMQ `replay` may carry; more get a `too_many_patterns` error.",
        json_schema_extra=SERVING,
    )
    health_stale_s: float = Field(
        2.0, gt=0, description="`/health` says `degraded` when the feed is connected but silent this long.",
        json_schema_extra=SERVING,
    )

    # --- recording ------------------------------------------------------------------------------
    record: bool = Field(
        False, description="Record every event to Parquet from start-up.", json_schema_extra=RECORDING
    )
    record_flush_s: float = Field(
        1.0, gt=0, description="The recorder's write-ahead log is flushed and fsynced at least this often.",
        json_schema_extra=RECORDING,
    )
    record_rotate_mb: float = Field(
        256.0, gt=0, description="A recording file is closed and a new one begun at this size (and every hour).",
        json_schema_extra=RECORDING,
    )
    record_buffer_events: int = Field(
        100_000,
        ge=1000,
        description="Events the recorder may hold in memory before it reports `behind` on `recording.status`.",
        json_schema_extra=RECORDING,
    )
    record_buffer_cap: int = Field(
        1_000_000,
        ge=1000,
        description="Hard cap of the recorder's memory buffer: beyond it events go unrecorded and it reports `failed`.",
        json_schema_extra=RECORDING,
    )
    record_retry_s: float = Field(
        3.0, gt=0, description="After a disk error the recorder tries again this often.",
        json_schema_extra=RECORDING,
    )
    replay_path: Path | None = Field(
        None, description="With `VECTRA_SOURCE=replay`: a recording file or a folder of recordings to play back.",
        json_schema_extra=REPLAY,
    )
    replay_speed: float = Field(
        1.0, ge=0, description="Replay pace: 1 = real time, 10 = ten times faster, 0 = as fast as possible.",
        json_schema_extra=REPLAY,
    )
    replay_game: str | None = Field(
        None, description="Replay only this game id (empty: everything).", json_schema_extra=REPLAY
    )
    replay_loop: bool = Field(
        False, description="Start the replay again from the beginning when it ends.", json_schema_extra=REPLAY
    )

    # --- browser (CDP source) -------------------------------------------------------------------
    chrome_binary: str | None = Field(
        None, description="Browser executable; empty means auto-detect chromium / google-chrome on PATH.",
        json_schema_extra=BROWSER,
    )
    chrome_profile: Path = Field(
        Path("~/.gamebot/chrome_profiles/rugs_bot"),
        description="The dedicated `rugs_bot` profile (`--user-data-dir`); `~` is expanded.",
        json_schema_extra=BROWSER,
    )
    cdp_port: int = Field(
        9222, ge=1, le=65535, description="Chrome remote-debugging port.", json_schema_extra=BROWSER
    )
    game_url: str = Field(
        "https://rugs.fun", description="Page the managed browser opens (and reopens after a crash).",
        json_schema_extra=BROWSER,
    )
    chrome_headless: bool = Field(
        False, description="Run the managed browser headless (servers); headed lets a person unlock the wallet.",
        json_schema_extra=BROWSER,
    )
    cdp_socket_match: str = Field(
        "backend.rugs.fun/socket.io",
        description="The CDP source follows the page's WebSocket whose URL contains this text.",
        json_schema_extra=BROWSER,
    )
    cdp_silence_reload_s: float = Field(
        15.0, gt=0, description="CDP source: no game frame for this long reloads the page (watchdog).",
        json_schema_extra=BROWSER,
    )
    cdp_call_timeout_s: float = Field(
        5.0, gt=0, description="Timeout of every single DevTools call and /json request.",
        json_schema_extra=BROWSER,
    )

    # --- orders ---------------------------------------------------------------------------------
    orders: Literal["off", "dry-run", "live"] = Field(
        "off",
        description="Orders from bots: `off` refuses every order, `dry-run` runs every check and publishes the "
        "whole life with `dryRun: true` but sends nothing, `live` sends (needs VECTRA_AUTH_TOKEN).",
        json_schema_extra=ORDERS,
    )
    order_executor: Literal["auto", "page", "click", "direct"] = Field(
        "auto",
        description="How orders reach the game: `page` (the browser page's own socket), `click` (its buttons), "
        "`direct` (Vectra's own Socket.IO connection); `auto`: `page` when the sources include `cdp`, else `direct`.",
        json_schema_extra=ORDERS,
    )
    orders_unverified: bool = Field(
        False, description="In `live` mode, also send order kinds whose frame shape was never captured from the real site.",
        json_schema_extra=ORDERS,
    )
    order_max_sol: float = Field(0.01, gt=0, description="Most SOL one order may stake.", json_schema_extra=ORDERS)
    order_max_sol_per_game: float = Field(0.05, gt=0, description="Most SOL all orders of one game may stake together.", json_schema_extra=ORDERS)
    order_max_per_minute: int = Field(20, ge=1, description="Most orders accepted in any 60 seconds.", json_schema_extra=ORDERS)
    order_max_tick_age_s: float = Field(
        2.0, gt=0, description="No order while Vectra's last `game.tick` is older than this (silent or stale feed).",
        json_schema_extra=ORDERS,
    )
    order_max_in_flight: int = Field(
        1, ge=1, description="Orders of one kind that may wait for their outcome at the same time.",
        json_schema_extra=ORDERS,
    )
    order_ack_timeout_s: float = Field(
        3.0, gt=0, description="No ack this long after sending: `order.timeout`, the outcome is settled by the next "
        "`playerUpdate`. Also how long after a successful ack its trade is still waited for before the player's "
        "account may settle it (`order.unsettled`).",
        json_schema_extra=ORDERS,
    )
    order_settle_timeout_s: float = Field(
        10.0, gt=0, description="An order still unsettled this long after sending stops counting as in flight; one "
        "acked without its trade that the account has not shown filled by then gets `order.unsettled`.",
        json_schema_extra=ORDERS,
    )
    feed_auth: SecretStr | None = Field(
        None,
        description='JSON object the direct source sends as Socket.IO `auth`, e.g. `{"player": "bot"}` for the '
        "simulator (empty: none).",
        json_schema_extra=FEED,
    )

    nats_url: str = Field(
        "", description="NATS server(s) the bridge publishes every event to, as JetStream stream `VECTRA` "
        "(comma-separated for a cluster, e.g. `nats://10.0.0.5:4222`); empty: no bridge.",
        json_schema_extra=NATS,
    )
    nats_user: str = Field("", description="NATS user name (bridge, edge and client); empty: none.", json_schema_extra=NATS)
    nats_password: SecretStr | None = Field(None, description="NATS password for `nats_user`.", json_schema_extra=NATS)
    nats_max_age_h: float = Field(
        24.0, ge=0, description="Stream `VECTRA` keeps an event this many hours (0: no age limit); set at every start.",
        json_schema_extra=NATS,
    )
    nats_max_mb: int = Field(
        1024, ge=0, description="Stream `VECTRA` drops its oldest events past this size in MB (0: no size limit).",
        json_schema_extra=NATS,
    )
    nats_replicas: int = Field(
        1, ge=1, le=5, description="Copies of stream `VECTRA` in a NATS cluster (1 for a single server, 3 for a cluster).",
        json_schema_extra=NATS,
    )
    nats_backlog_degraded: int = Field(
        10_000, ge=1, description="`/health` is `degraded` while more events than this wait for JetStream's ack.",
        json_schema_extra=NATS,
    )

    # the click executor presses these (CSS selectors; defaults: the simulator's page)
    click_amount_input: str = Field(
        "#amount-input", description="Click executor: the amount field (read back before the order button is pressed).",
        json_schema_extra=ORDERS,
    )
    click_amount_clear: str = Field(
        '[data-amount="clear"]', description="Click executor: the button that clears the amount (X).",
        json_schema_extra=ORDERS,
    )
    click_amount_add: str = Field(
        '[data-amount-add="{step}"]',
        description="Click executor: the +1 / +0.1 / +0.01 / +0.001 buttons; `{step}` becomes 1, 0.1, 0.01 or 0.001.",
        json_schema_extra=ORDERS,
    )
    click_sell_percent: str = Field(
        '[data-sell-percent="{percent}"]',
        description="Click executor: the sell percentage buttons; `{percent}` becomes 10, 25, 50 or 100.",
        json_schema_extra=ORDERS,
    )
    click_buy: str = Field('[data-order="buy"]', description="Click executor: the BUY button.", json_schema_extra=ORDERS)
    click_sell: str = Field(
        '[data-order="sell"]', description="Click executor: the SELL button (sells the selected percentage).",
        json_schema_extra=ORDERS,
    )
    click_sidebet: str = Field(
        '[data-order="sidebet"]', description="Click executor: the SIDEBET button (bets the amount, 5x).",
        json_schema_extra=ORDERS,
    )

    # --- operator -------------------------------------------------------------------------------
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"] = Field(
        "INFO", description="Log level of the stderr log.",
        json_schema_extra=OPERATOR,
    )
    theme: str = Field(
        "dark",
        description="Console colour theme: the name of a theme registered in the `themes` package.",
        json_schema_extra=OPERATOR,
    )
    keymap: str = Field(
        "",
        description="Console keys remapped by binding id, e.g. `record=ctrl+r,quit=ctrl+q,f10` "
        "(a key without `id=` adds one more key to the id before it); the ids are listed in docs/CONFIG.md.",
        json_schema_extra=OPERATOR,
    )

    @field_validator("source")
    @classmethod
    def _known_sources(cls, value: str) -> str:
        names = [part.strip().lower() for part in value.split(",") if part.strip()]
        unknown = [name for name in names if name not in SOURCES]
        if not names or unknown:
            raise ValueError(f"accepted: {', '.join(SOURCES)} (or a comma-separated list of them)")
        return ",".join(dict.fromkeys(names))

    @model_validator(mode="after")
    def _edge_alone_and_not_its_own_feed(self) -> "Settings":
        """An edge republishes the origin's numbers: a second source would number events of its own in
        the same space, and a bridge to the servers it reads from would feed its stream into itself."""
        if "nats" not in self.sources:
            return self
        if len(self.sources) > 1:
            raise ValueError(f"{env_name('source')}=nats (an edge) runs alone, not with {self.source}")
        shared = nats_servers(self.nats_url) & nats_servers(self.feed_url)
        if shared:
            raise ValueError(
                f"{env_name('nats_url')} points at {', '.join(sorted(shared))}, the servers this edge reads from "
                f"({env_name('feed_url')}): it would publish its stream into itself; give the edge no bridge "
                "or another NATS"
            )
        return self

    @field_validator("data_dir", "chrome_profile", "replay_path", "auth_token_file")
    @classmethod
    def _expand_home(cls, value: Path | None) -> Path | None:
        return None if value is None else Path(os.path.expanduser(str(value)))

    @field_validator("log_level", mode="before")
    @classmethod
    def _upper_level(cls, value: Any) -> Any:
        return value.upper() if isinstance(value, str) else value

    @model_validator(mode="after")
    def _token_from_file(self) -> "Settings":
        path = self.auth_token_file
        if path is None:
            return self
        if self.auth_token is not None:
            raise ValueError(f"set {env_name('auth_token')} or {env_name('auth_token_file')}, not both")
        try:
            token = path.read_text().strip()
        except (OSError, UnicodeDecodeError) as exc:
            raise ValueError(f"{env_name('auth_token_file')}={path}: cannot read the token ({exc})") from None
        if not token:
            raise ValueError(f"{env_name('auth_token_file')}={path} is empty: it must hold the token")
        self.auth_token = SecretStr(token)
        return self

    @model_validator(mode="after")
    def _token_off_loopback(self) -> "Settings":
        if self.auth_token is not None:
            return self
        for field in ("http_host", "zmq_pub", "zmq_router"):
            if not is_loopback(getattr(self, field)):
                raise ValueError(
                    f"{env_name(field)}={getattr(self, field)} is not a loopback address: "
                    f"set {env_name('auth_token')} to serve beyond this machine"
                )
        return self

    @field_validator("auth_token")
    @classmethod
    def _token_not_blank(cls, value: SecretStr | None) -> SecretStr | None:
        """A blank token would be a token every client knows: live orders and a non-loopback bind
        would start with every control command open. Refused, like an empty VECTRA_AUTH_TOKEN_FILE."""
        if value is not None and not value.get_secret_value().strip():
            raise ValueError("is empty: set a token, or leave it unset to serve only this machine without one")
        return value

    @field_validator("feed_auth")
    @classmethod
    def _auth_object(cls, value: SecretStr | None) -> SecretStr | None:
        if value is None or not value.get_secret_value().strip():
            return None
        try:
            parsed = json.loads(value.get_secret_value())
        except ValueError:
            parsed = None
        if not isinstance(parsed, dict):
            raise ValueError('accepted: a JSON object, e.g. {"player": "bot"}')
        return value

    @model_validator(mode="after")
    def _live_orders_need_token_and_source(self) -> "Settings":
        if self.orders != "live":
            return self
        if self.auth_token is None:
            raise ValueError(f"{env_name('orders')}=live needs {env_name('auth_token')}: set a token before sending real orders")
        needed = {"direct": "socketio", "page": "cdp", "click": "cdp"}[self.order_executor_name]
        if needed not in self.sources:
            raise ValueError(
                f"{env_name('orders')}=live: the {self.order_executor_name} executor needs the {needed} source "
                f"({env_name('source')}={self.source} cannot place orders)"
            )
        return self

    @property
    def order_executor_name(self) -> str:
        """The executor in use: `auto` resolved against the sources."""
        if self.order_executor != "auto":
            return self.order_executor
        return "page" if "cdp" in self.sources else "direct"

    @property
    def feed_auth_object(self) -> dict[str, Any] | None:
        return json.loads(self.feed_auth.get_secret_value()) if self.feed_auth is not None else None

    @property
    def sources(self) -> tuple[str, ...]:
        return tuple(self.source.split(","))


class ConfigError(Exception):
    """A setting has a value Vectra cannot use; the message is one line for the operator."""


def env_name(field: str) -> str:
    return ENV_PREFIX + field.upper()


def area_of(field: str) -> str:
    """The area a setting belongs to (see AREAS)."""
    extra = Settings.model_fields[field].json_schema_extra
    return extra["area"] if isinstance(extra, dict) else ""


def is_loopback(address: str) -> bool:
    """Whether a host (`127.0.0.1`) or ZeroMQ endpoint (`tcp://127.0.0.1:5556`, `ipc://...`)
    is reachable from this machine only."""
    scheme, _, rest = address.rpartition("://")
    if scheme in ("ipc", "inproc"):
        return True
    host = rest.rsplit(":", 1)[0] if scheme else rest
    host = host.strip("[]").lower()
    if host in ("localhost", "lo"):
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


NATS_PINGS_BEFORE_DEAD = 2


def nats_connect_options(settings: Settings, urls: str) -> dict[str, Any]:
    """`nats.connect` options for a connection a `Supervisor` owns (the bridge's, the edge's): the
    servers of `urls` in the order given, each tried at once, then fail, so that the supervisor backs
    off and `/health` says why. nats-py's defaults would retry a dead server 60 times, 2 s apart,
    before the next one, even with reconnection off (and `max_reconnect_attempts=0` is no limit at
    all). Its first try is not counted as a reconnect: the list is gone through twice, which a refused
    port answers at once. A server silent for `stale_after_s` (two unanswered pings) is dead."""
    password = settings.nats_password
    return {
        "servers": servers_in(urls), "user": settings.nats_user or None,
        "password": password.get_secret_value() if password is not None else None,
        "allow_reconnect": False, "dont_randomize": True, "max_reconnect_attempts": 1, "reconnect_time_wait": 0,
        "connect_timeout": settings.connect_timeout_s,
        "ping_interval": max(1, int(settings.stale_after_s / NATS_PINGS_BEFORE_DEAD)),
        "max_outstanding_pings": NATS_PINGS_BEFORE_DEAD,
    }


def nats_servers(urls: str) -> set[str]:
    """The `host:port` of every `nats://` (or `tls://`) server in a comma-separated list, default port
    4222 and `localhost` as 127.0.0.1, so that two spellings of one server compare equal."""
    found = set()
    for url in servers_in(urls):
        parts = urlsplit(url)
        if parts.scheme.lower() not in ("nats", "tls") or not parts.hostname:
            continue
        try:
            port = parts.port or 4222
        except ValueError:
            continue
        found.add(f"{'127.0.0.1' if parts.hostname == 'localhost' else parts.hostname}:{port}")
    return found


def load_settings(overrides: dict[str, Any] | None = None) -> Settings:
    """Build the settings, turning a validation failure into one readable `ConfigError`."""
    given = {key: value for key, value in (overrides or {}).items() if value is not None}
    try:
        return Settings(**given)
    except ValidationError as exc:
        raise ConfigError(_describe(exc)) from None


def _describe(exc: ValidationError) -> str:
    first = exc.errors()[0]
    if not first["loc"]:
        return first["msg"].removeprefix("Value error, ")
    field = str(first["loc"][0])
    spec = Settings.model_fields.get(field)
    message = first["msg"].removeprefix("Value error, ")
    if spec is not None and "Literal" in str(spec.annotation):
        message = "accepted: " + ", ".join(getattr(spec.annotation, "__args__", ()))
    elif spec is not None and spec.annotation in (int, float):
        kind = "an integer" if spec.annotation is int else "a number"
        message = f"accepted: {kind}" + "".join(_bounds(spec.metadata))
    elif spec is not None and spec.annotation is bool:
        message = "accepted: true, false, 1, 0, yes, no, on, off"
    return f"invalid {env_name(field)}={first.get('input')!r}: {message}"


def _bounds(metadata: list[Any]) -> list[str]:
    words = {"ge": ">=", "gt": ">", "le": "<=", "lt": "<"}
    return [
        f" {words[name]} {getattr(rule, name)}"
        for rule in metadata
        for name in words
        if getattr(rule, name, None) is not None
    ]


def origins(settings: Settings, overrides: dict[str, Any] | None = None) -> dict[str, str]:
    """Where each effective value came from: `flag`, `environment`, `.env` or `default`."""
    flags = {key for key, value in (overrides or {}).items() if value is not None}
    dotenv = {key.upper() for key in dotenv_values(".env")} if Path(".env").is_file() else set()
    found = {}
    for field in Settings.model_fields:
        name = env_name(field)
        if field in flags:
            found[field] = "flag"
        elif field == "auth_token" and settings.auth_token_file is not None:
            found[field] = "file"
        elif name in {key.upper() for key in os.environ}:
            found[field] = "environment"
        elif name in dotenv:
            found[field] = ".env"
        else:
            found[field] = "default"
    return found


URL_PASSWORD = re.compile(r"(://[^/:@\s]*:)[^/@\s]*@")  # `nats://user:password@host`: the password part


def render(settings: Settings, overrides: dict[str, Any] | None = None) -> str:
    """The effective configuration as aligned lines, secrets masked."""
    where = origins(settings, overrides)
    lines = []
    for field in Settings.model_fields:
        value = getattr(settings, field)
        if isinstance(value, SecretStr):
            shown = "********"
        elif value is None:
            shown = ""
        else:
            shown = URL_PASSWORD.sub(r"\1********@", str(value))
        lines.append(f"{env_name(field):<28} {shown:<48} ({where[field]})")
    return "\n".join(lines)
