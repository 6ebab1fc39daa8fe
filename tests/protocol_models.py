"""Test-side views of the contract: the whole envelope as a strict model, and the model a channel's
`data` must satisfy (wildcard channels such as `raw.*` included)."""

from __future__ import annotations

from fnmatch import fnmatchcase
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from core.contracts.channels import CHANNELS, SourceName


class EnvelopeModel(BaseModel):
    model_config = ConfigDict(extra="forbid")
    v: Literal[1]
    seq: int = Field(ge=1)
    type: str
    timestamp: int
    gameId: str | None
    source: SourceName
    data: dict[str, Any]


def model_for(channel: str) -> type[BaseModel] | None:
    if channel in CHANNELS:
        return CHANNELS[channel]
    for pattern, model in CHANNELS.items():
        if "*" in pattern and fnmatchcase(channel, pattern):
            return model
    return None

