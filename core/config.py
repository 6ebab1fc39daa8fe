"""Every setting of Vectra, with its default, in one place.

Business logic receives a `Settings` object and never spells a path, host or port itself. Values come
from, in rising priority: the defaults below, a `.env` file in the working directory, the environment
(`VECTRA_*`), and command-line flags (passed in as `overrides`).
"""

from __future__ import annotations

import ipaddress
import os
from pathlib import Path
from typing import Any, Literal, get_args

from dotenv import dotenv_values
from pydantic import Field, SecretStr, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from core.contracts.channels import SourceName

ENV_PREFIX = "VECTRA_"
SOURCES: tuple[str, ...] = get_args(SourceName)
LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix=ENV_PREFIX, env_file=".env", extra="ignore", validate_default=True
    )

    # --- the feed -------------------------------------------------------------------------------
    source: str = Field(
        "socketio",
        description="Where frames come from: `socketio`, `cdp` or `replay`; `cdp,socketio` runs both.",
    )
    feed_url: str = Field(
        "https://backend.rugs.fun?frontend-version=1.0",
        description="Socket.IO endpoint of the game backend (direct source).",
    )
    feed_origin: str = Field(
        "https://rugs.fun", description="`Origin` header the direct source sends, as the site does."
    )
    reconnect_initial_s: float = Field(
        0.5, gt=0, description="First reconnect delay; doubles on each failure, with jitter."
    )
    reconnect_max_s: float = Field(30.0, gt=0, description="Cap of the reconnect delay.")
    stale_after_s: float = Field(
        10.0, gt=0, description="No frame for this long counts as a dead feed: reconnect."
    )
    connect_timeout_s: float = Field(10.0, gt=0, description="Give up one connect attempt after this.")
    dedup_window_s: float = Field(
        30.0,
        gt=0,
        description="With two sources: how long a frame seen on one is remembered, to drop the other's copy.",
    )
    max_frame_bytes: int = Field(
        1024 * 1024,
        gt=0,
        description="Frames above this size are rejected with an `error` event (real frames: up to ~272 KB).",
    )

    # --- where things live ----------------------------------------------------------------------
    data_dir: Path = Field(
        Path("~/.local/share/vectra"),
        description="State (sequence counter) and recordings; `~` is expanded.",
    )

    # --- downstream -----------------------------------------------------------------------------
    http_host: str = Field("127.0.0.1", description="Address of the HTTP/WebSocket server.")
    http_port: int = Field(8765, ge=0, le=65535, description="Port of the HTTP/WebSocket server.")
    zmq_pub: str = Field("tcp://127.0.0.1:5556", description="ZeroMQ PUB endpoint (events).")
    zmq_router: str = Field(
        "tcp://127.0.0.1:5557", description="ZeroMQ ROUTER endpoint (replay, snapshot, commands)."
    )
    zmq_pub_hwm: int = Field(
        10_000,
        ge=100,
        description="Messages queued per ZeroMQ subscriber (about 5 s at 2,000 events/s, at most ~50 MB "
        "of 5 KB ticks); a subscriber further behind loses messages and recovers them by replay.",
    )
    zmq_router_hwm: int = Field(
        1_000,
        ge=10,
        description="Replies queued per ZeroMQ ROUTER peer; a replay waits (up to 10 s) while its reader is this far behind.",
    )
    heartbeat_s: float = Field(
        1.0, gt=0, le=10, description="Interval of `sys.heartbeat` (ZeroMQ and WebSocket); subscribers call the foundation dead after several missed ones."
    )
    ring_size: int = Field(
        100_000, ge=1000, description="Events kept in memory for resume (`from_seq`) and replay."
    )
    auth_token: SecretStr | None = Field(
        None, description="When set, control commands must carry it; required off loopback."
    )
    http_allowed_origins: str = Field(
        "",
        description="Browser origins allowed on HTTP/WebSocket besides the service's own and localhost "
        "(comma-separated, e.g. `https://dash.example`); other origins get HTTP 403.",
    )
    ws_buffer_bytes: int = Field(
        16 * 1024 * 1024,
        ge=64 * 1024,
        description="Bytes queued for one WebSocket client before it counts as too slow and is closed (1008).",
    )
    ws_max_message_bytes: int = Field(
        64 * 1024, ge=1024, description="Largest WebSocket command accepted; larger ones get a `too_large` error."
    )
    ws_max_messages_per_s: int = Field(
        100, ge=1, description="More commands than this in one second from one WebSocket client closes it (flood)."
    )
    health_stale_s: float = Field(
        2.0, gt=0, description="`/health` says `degraded` when the feed is connected but silent this long."
    )

    # --- recording ------------------------------------------------------------------------------
    record: bool = Field(False, description="Record every event to Parquet from start-up.")
    record_flush_s: float = Field(
        1.0, gt=0, description="The recorder's write-ahead log is flushed and fsynced at least this often."
    )
    record_rotate_mb: float = Field(
        256.0, gt=0, description="A recording file is closed and a new one begun at this size (and every hour)."
    )
    record_buffer_events: int = Field(
        100_000,
        ge=1000,
        description="Events the recorder may hold in memory before it reports `behind` on `recording.status`.",
    )
    record_buffer_cap: int = Field(
        1_000_000,
        ge=1000,
        description="Hard cap of the recorder's memory buffer: beyond it events go unrecorded and it reports `failed`.",
    )
    record_retry_s: float = Field(
        3.0, gt=0, description="After a disk error the recorder tries again this often."
    )
    replay_path: Path | None = Field(
        None, description="With `VECTRA_SOURCE=replay`: a recording file or a folder of recordings to play back."
    )
    replay_speed: float = Field(
        1.0, ge=0, description="Replay pace: 1 = real time, 10 = ten times faster, 0 = as fast as possible."
    )
    replay_game: str | None = Field(None, description="Replay only this game id (empty: everything).")
    replay_loop: bool = Field(False, description="Start the replay again from the beginning when it ends.")

    # --- browser (CDP source) -------------------------------------------------------------------
    chrome_binary: str | None = Field(
        None, description="Browser executable; empty means auto-detect chromium / google-chrome on PATH."
    )
    chrome_profile: Path = Field(
        Path("~/.gamebot/chrome_profiles/rugs_bot"),
        description="The dedicated `rugs_bot` profile (`--user-data-dir`); `~` is expanded.",
    )
    cdp_port: int = Field(9222, ge=1, le=65535, description="Chrome remote-debugging port.")
    game_url: str = Field(
        "https://rugs.fun", description="Page the managed browser opens (and reopens after a crash)."
    )
    chrome_headless: bool = Field(
        False, description="Run the managed browser headless (servers); headed lets a person unlock the wallet."
    )
    cdp_socket_match: str = Field(
        "backend.rugs.fun/socket.io",
        description="The CDP source follows the page's WebSocket whose URL contains this text.",
    )
    cdp_silence_reload_s: float = Field(
        15.0, gt=0, description="CDP source: no game frame for this long reloads the page (watchdog)."
    )
    cdp_call_timeout_s: float = Field(
        5.0, gt=0, description="Timeout of every single DevTools call and /json request."
    )

    # --- orders: the click executor presses these (CSS selectors; the real page's are not known) --
    click_amount_input: str = Field(
        "#amount-input", description="Click executor: the amount field (read back before the order button is pressed)."
    )
    click_amount_clear: str = Field('[data-amount="clear"]', description="Click executor: the button that clears the amount (X).")
    click_amount_add: str = Field(
        '[data-amount-add="{step}"]',
        description="Click executor: the +1 / +0.1 / +0.01 / +0.001 buttons; `{step}` becomes 1, 0.1, 0.01 or 0.001.",
    )
    click_sell_percent: str = Field(
        '[data-sell-percent="{percent}"]',
        description="Click executor: the sell percentage buttons; `{percent}` becomes 10, 25, 50 or 100.",
    )
    click_buy: str = Field('[data-order="buy"]', description="Click executor: the BUY button.")
    click_sell: str = Field('[data-order="sell"]', description="Click executor: the SELL button (sells the selected percentage).")
    click_sidebet: str = Field('[data-order="sidebet"]', description="Click executor: the SIDEBET button (bets the amount, 5x).")

    # --- operator -------------------------------------------------------------------------------
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"] = Field(
        "INFO", description="Log level of the stderr log."
    )
    theme: str = Field(
        "dark", description="Console colour theme: the name of a `themes/*.tcss` file (`dark`, `light`)."
    )

    @field_validator("source")
    @classmethod
    def _known_sources(cls, value: str) -> str:
        names = [part.strip().lower() for part in value.split(",") if part.strip()]
        unknown = [name for name in names if name not in SOURCES]
        if not names or unknown:
            raise ValueError(f"accepted: {', '.join(SOURCES)} (or a comma-separated list of them)")
        return ",".join(dict.fromkeys(names))

    @field_validator("data_dir", "chrome_profile", "replay_path")
    @classmethod
    def _expand_home(cls, value: Path | None) -> Path | None:
        return None if value is None else Path(os.path.expanduser(str(value)))

    @field_validator("log_level", mode="before")
    @classmethod
    def _upper_level(cls, value: Any) -> Any:
        return value.upper() if isinstance(value, str) else value

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

    @property
    def sources(self) -> tuple[str, ...]:
        return tuple(self.source.split(","))


class ConfigError(Exception):
    """A setting has a value Vectra cannot use; the message is one line for the operator."""


def env_name(field: str) -> str:
    return ENV_PREFIX + field.upper()


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
        elif name in {key.upper() for key in os.environ}:
            found[field] = "environment"
        elif name in dotenv:
            found[field] = ".env"
        else:
            found[field] = "default"
    return found


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
            shown = str(value)
        lines.append(f"{env_name(field):<28} {shown:<48} ({where[field]})")
    return "\n".join(lines)
