"""What plugs into the foundation: a component with a life cycle and a section of `/health`, and
the error a command answers with."""

from __future__ import annotations

from typing import Protocol

from core.contracts.envelope import Envelope
from core.contracts.health import Section


class Component(Protocol):
    name: str

    async def start(self) -> None: ...

    async def stop(self) -> None: ...

    def health(self) -> Section | None:
        """This component's section of `/health` (None: nothing to report)."""


class CommandError(Exception):
    """A command that cannot be carried out; `code` is the error reply's code."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


class Subscriber(Protocol):
    def deliver(self, envelope: Envelope) -> None:
        """Take one envelope without blocking. Publish nothing from here (defer it with `call_soon`):
        the bus is still handing this envelope to the subscribers after this one."""
