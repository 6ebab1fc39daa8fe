"""Every setting of Vectra, with its default, in one place.

Business logic receives a `Settings` object and never spells a path, host or port itself. Values come
from, in rising priority: the defaults below, a `.env` file in the working directory, the environment
(`VECTRA_*`), and command-line flags (passed in as `overrides`).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Literal

from dotenv import dotenv_values
from pydantic import Field, SecretStr, ValidationError, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

ENV_PREFIX = "VECTRA_"
SOURCES = ("socketio", "cdp", "replay")
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
    max_frame_bytes: int = Field(
        4 * 1024 * 1024, gt=0, description="Frames above this size are rejected with an `error` event."
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
    ring_size: int = Field(
        100_000, ge=1000, description="Events kept in memory for resume (`from_seq`) and replay."
    )
    auth_token: SecretStr | None = Field(
        None, description="When set, control commands must carry it; required off loopback."
    )

    # --- recording ------------------------------------------------------------------------------
    record: bool = Field(False, description="Record every event to Parquet from start-up.")

    # --- browser (CDP source) -------------------------------------------------------------------
    chrome_binary: str | None = Field(
        None, description="Browser executable; empty means auto-detect chromium / google-chrome on PATH."
    )
    chrome_profile: Path = Field(
        Path("~/.gamebot/chrome_profiles/rugs_bot"),
        description="The dedicated `rugs_bot` profile (`--user-data-dir`); `~` is expanded.",
    )
    cdp_port: int = Field(9222, ge=1, le=65535, description="Chrome remote-debugging port.")

    # --- operator -------------------------------------------------------------------------------
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"] = Field(
        "INFO", description="Log level of the stderr log."
    )

    @field_validator("source")
    @classmethod
    def _known_sources(cls, value: str) -> str:
        names = [part.strip().lower() for part in value.split(",") if part.strip()]
        unknown = [name for name in names if name not in SOURCES]
        if not names or unknown:
            raise ValueError(f"accepted: {', '.join(SOURCES)} (or a comma-separated list of them)")
        return ",".join(dict.fromkeys(names))

    @field_validator("data_dir", "chrome_profile")
    @classmethod
    def _expand_home(cls, value: Path) -> Path:
        return Path(os.path.expanduser(str(value)))

    @field_validator("log_level", mode="before")
    @classmethod
    def _upper_level(cls, value: Any) -> Any:
        return value.upper() if isinstance(value, str) else value

    @property
    def sources(self) -> tuple[str, ...]:
        return tuple(self.source.split(","))


class ConfigError(Exception):
    """A setting has a value Vectra cannot use; the message is one line for the operator."""


def env_name(field: str) -> str:
    return ENV_PREFIX + field.upper()


def load_settings(overrides: dict[str, Any] | None = None) -> Settings:
    """Build the settings, turning a validation failure into one readable `ConfigError`."""
    given = {key: value for key, value in (overrides or {}).items() if value is not None}
    try:
        return Settings(**given)
    except ValidationError as exc:
        raise ConfigError(_describe(exc)) from None


def _describe(exc: ValidationError) -> str:
    first = exc.errors()[0]
    field = str(first["loc"][0]) if first["loc"] else "?"
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
