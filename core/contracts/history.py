"""Where events older than the memory ring come from (the recorder provides it)."""

from __future__ import annotations

from typing import Iterator, Protocol

from core.contracts.envelope import Envelope


class History(Protocol):
    """Older events than the memory ring holds (the recorder provides this)."""

    def read_range(self, first_seq: int, last_seq: int) -> Iterator[Envelope]:
        """Envelopes with first_seq <= seq <= last_seq that are on disk, in seq order."""
