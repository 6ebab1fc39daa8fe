"""Connection supervision shared by every long-lived link (feed sources, the browser, the console's
remote connection).

Each link only knows how to open itself, follow its peer while it is up and close again; the
`Supervisor` owns the life cycle around that, once for all of them: connect, hold, say how it is
going, back off with jitter after a failure, reconnect forever, cut the wait short when an operator
asks, and declare a peer dead when it has been silent too long (a connection can stay open while
nothing flows through it). cryptofeed's connection handler is the model of the idea.

Waits use `asyncio.wait`/`asyncio.timeout`, never `wait_for`: on Python 3.11 `wait_for` can swallow
the cancellation that shutdown sends, and the daemon would hang on Ctrl-C.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import time
from dataclasses import dataclass
from typing import Callable, Hashable, Protocol

from core.config import Settings

# The states a supervised link goes through; they are `connection.status` states (docs/PROTOCOL.md).
CONNECTING, RECONNECTING, FAILED, CONNECTED, DISCONNECTED = (
    "connecting", "reconnecting", "failed", "connected", "disconnected",
)
RECONNECT_REQUESTED = "reconnect requested"


def backoff_delay(attempt: int, initial: float, cap: float) -> float:
    """Exponential backoff with jitter over the upper half, so many clients do not stampede."""
    ceiling = min(cap, initial * (2 ** max(0, attempt - 1)))
    return ceiling * (0.5 + random.random() / 2)


class Link(Protocol):
    """One kind of connection, as the supervisor drives it."""

    async def open(self) -> None:
        """Connect once; raise when the attempt fails."""

    async def hold(self) -> str:
        """Follow the open connection until it ends on its own; return why it ended."""

    async def close(self) -> None:
        """Let go of whatever `open` made, whether it succeeded or not; never raise."""


@dataclass(frozen=True, slots=True)
class Transition:
    """One step of a supervised link; `retry_in_s` is the pause before the next attempt."""

    state: str
    attempt: int
    reason: str | None = None
    retry_in_s: float | None = None


@dataclass(frozen=True, slots=True)
class Policy:
    """How a link is retried: the backoff's first step and cap, how long a peer may stay silent before
    it counts as dead (None: the link's own hold decides), how long a link must hold for its backoff to
    start over, and whether a lost link pauses (jittered, like a first failure) before the next try."""

    initial_s: float
    max_s: float
    stale_after_s: float | None = None
    stable_after_s: float = 0.0
    pause_after_loss: bool = True

    @classmethod
    def from_settings(cls, settings: Settings, **choices) -> "Policy":
        """The operator's reconnect settings (`VECTRA_RECONNECT_INITIAL_S`, `VECTRA_RECONNECT_MAX_S`)."""
        return cls(settings.reconnect_initial_s, settings.reconnect_max_s, **choices)


class ChangeGate:
    """Lets a state through only when it differs from the last one let through, so a status is
    published once per change however often the code that knows it repeats it."""

    def __init__(self, shown: Hashable | None = None) -> None:
        self.last = shown

    def changed(self, state: Hashable) -> bool:
        if state == self.last:
            return False
        self.last = state
        return True


class Supervisor:
    """Keeps one `Link` up forever; every step goes to `on_change` as a `Transition`.

    `attempt` counts tries since the link last held: after a failed try the next waits
    `backoff_delay(attempt)`; a link that held `policy.stable_after_s` starts counting afresh. A lost
    link is tried again after a short jittered pause (`policy.pause_after_loss`), or at once when
    `wake` ended it. Exceptions of the `retry_on` types end an attempt or a hold; any other is a bug
    and propagates.
    """

    def __init__(
        self,
        link: Link,
        on_change: Callable[[Transition], None],
        policy: Policy,
        retry_on: tuple[type[BaseException], ...] = (Exception,),
        describe: Callable[[BaseException], str] = lambda exc: str(exc) or type(exc).__name__,
    ) -> None:
        self.link, self.on_change, self.policy = link, on_change, policy
        self.retry_on, self.describe = retry_on, describe
        self._ended = asyncio.Event()  # the hold must end: dropped or woken
        self._woken = asyncio.Event()  # the operator asked: the backoff must end too
        self._end_reason: str | None = None
        self._at_once = False
        self._heard_at = time.monotonic()

    # --- what the link and its owner tell the supervisor ------------------------------------------

    def heard(self) -> None:
        """The peer said something: it is alive."""
        self._heard_at = time.monotonic()

    def drop(self, reason: str) -> None:
        """The connection ended (a library's disconnect callback): end the hold."""
        if not self._ended.is_set():
            self._end_reason = reason
            self._ended.set()

    def wake(self, reason: str = RECONNECT_REQUESTED) -> None:
        """Drop the connection, or cut the backoff short, and connect again at once."""
        self._at_once = True
        self._woken.set()
        self.drop(reason)

    # --- the loop ---------------------------------------------------------------------------------

    async def run(self) -> None:
        attempt = 0
        reason: str | None = None
        while True:
            attempt += 1
            self._ended.clear()
            self._woken.clear()
            self._end_reason, self._at_once = None, False
            self.on_change(Transition(CONNECTING if reason is None else RECONNECTING, attempt, reason))
            try:
                await self.link.open()
            except asyncio.CancelledError:
                await self.link.close()
                raise
            except self.retry_on as exc:
                reason = self.describe(exc)
                await self.link.close()
                delay = self._delay(attempt)
                self.on_change(Transition(FAILED, attempt, reason, delay))
                await self._pause(delay)
                continue
            self.on_change(Transition(CONNECTED, attempt))
            up_since = time.monotonic()
            try:
                reason = await self._hold()
            except self.retry_on as exc:
                reason = self.describe(exc)
            finally:
                await self.link.close()
            held = attempt
            if time.monotonic() - up_since >= self.policy.stable_after_s:
                attempt = 0
            delay = self._delay(max(1, attempt)) if self.policy.pause_after_loss else 0.0
            self.on_change(Transition(DISCONNECTED, held, reason, delay))
            await self._pause(delay)

    def _delay(self, attempt: int) -> float:
        return 0.0 if self._at_once else backoff_delay(attempt, self.policy.initial_s, self.policy.max_s)

    async def _hold(self) -> str:
        """The link's own hold, raced against `drop`/`wake` and against the silence watchdog."""
        self._heard_at = time.monotonic()
        holding = asyncio.create_task(self.link.hold())
        ended = asyncio.create_task(self._ended.wait())
        try:
            while True:
                stale_after = self.policy.stale_after_s
                timeout = None if stale_after is None else max(0.05, stale_after - (time.monotonic() - self._heard_at))
                done, _ = await asyncio.wait({holding, ended}, timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
                if holding in done:
                    return holding.result()
                if ended in done:
                    return self._end_reason or "connection lost"
                if time.monotonic() - self._heard_at >= stale_after:
                    return f"no frame for {stale_after:g} s"
        finally:
            for task in (holding, ended):
                task.cancel()
            await asyncio.gather(holding, ended, return_exceptions=True)

    async def _pause(self, seconds: float) -> None:
        """Back off, but wake at once for an operator's request."""
        if seconds <= 0:
            return
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(seconds):
                await self._woken.wait()
