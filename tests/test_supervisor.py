"""The supervisor against real TCP servers on 127.0.0.1: a peer that goes silent is declared dead and
connected to again, a refused connection backs off more and more, an operator's wake skips the wait,
a server's goodbye leads to a reconnect, and cancelling never hangs."""

from __future__ import annotations

import asyncio
import contextlib
from typing import AsyncIterator, Callable

import pytest

from core.supervisor import Policy, Supervisor, Transition
from tests.conftest import free_port

pytestmark = pytest.mark.timeout(30)


class LineLink:
    """A real TCP client: every line from the server is a sign of life; the server closing ends the hold."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.supervisor: Supervisor | None = None
        self.writer: asyncio.StreamWriter | None = None
        self.reader: asyncio.StreamReader | None = None
        self.closed = 0

    async def open(self) -> None:
        self.reader, self.writer = await asyncio.open_connection("127.0.0.1", self.port)

    async def hold(self) -> str:
        assert self.reader is not None and self.supervisor is not None
        while await self.reader.readline():
            self.supervisor.heard()
        return "server closed the connection"

    async def close(self) -> None:
        self.closed += 1
        writer, self.writer = self.writer, None
        if writer is not None:
            writer.close()
            with contextlib.suppress(OSError):
                await writer.wait_closed()


class Server:
    """A real TCP server whose behaviour per connection the test chooses."""

    def __init__(self, handle: Callable, port: int | None = None) -> None:
        self.port = port or free_port()
        self.handle = handle
        self.connections = 0
        self.server: asyncio.Server | None = None

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        try:
            await self.handle(reader, writer)
        finally:
            writer.close()

    async def __aenter__(self) -> "Server":
        self.server = await asyncio.start_server(self._serve, "127.0.0.1", self.port)
        return self

    async def __aexit__(self, *exc) -> None:
        assert self.server is not None
        self.server.close()


async def talk_forever(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    with contextlib.suppress(OSError):
        while True:
            writer.write(b"tick\n")
            await writer.drain()
            await asyncio.sleep(0.02)


async def talk_then_fall_silent(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    writer.write(b"hello\n")
    await writer.drain()
    await reader.read()  # holds the connection open, saying nothing, until the client goes


async def say_goodbye(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    writer.write(b"bye\n")
    await writer.drain()


@contextlib.asynccontextmanager
async def supervised(link: LineLink, **options) -> AsyncIterator[list[Transition]]:
    steps: list[Transition] = []
    link.supervisor = Supervisor(link, steps.append, Policy(**{"initial_s": 0.05, "max_s": 0.2, **options}))
    task = asyncio.create_task(link.supervisor.run())
    try:
        yield steps
    finally:
        task.cancel()
        async with asyncio.timeout(5):  # cancelling must never hang
            await asyncio.gather(task, return_exceptions=True)
        assert task.cancelled()


async def until(condition: Callable[[], bool], what: str, timeout: float = 10) -> None:
    async with asyncio.timeout(timeout):
        while not condition():
            await asyncio.sleep(0.01)


def states(steps: list[Transition]) -> list[str]:
    return [step.state for step in steps]


async def run_until(handle: Callable, enough: Callable[[list[str]], bool], **options) -> tuple[list[Transition], Server]:
    """Supervise a link to a server that handles each connection with `handle`, until `enough` states."""
    async with Server(handle) as server:
        link = LineLink(server.port)
        async with supervised(link, **options) as steps:
            await until(lambda: enough(states(steps)), f"enough states with {handle.__name__}")
    return steps, server


async def test_a_silent_peer_is_declared_dead_and_connected_to_again():
    steps, server = await run_until(talk_then_fall_silent, lambda seen: seen.count("connected") >= 2, stale_after_s=0.3)
    dropped = [step for step in steps if step.state == "disconnected"]
    assert dropped[0].reason == "no frame for 0.3 s"
    assert states(steps)[:4] == ["connecting", "connected", "disconnected", "reconnecting"]
    assert server.connections >= 2


async def test_a_talking_peer_is_never_declared_dead():
    async with Server(talk_forever) as server:
        link = LineLink(server.port)
        async with supervised(link, stale_after_s=0.3) as steps:
            await asyncio.sleep(1.0)  # more than three silences' worth of ticks
            assert states(steps) == ["connecting", "connected"]


async def test_a_refused_connection_backs_off_more_each_time_up_to_the_cap():
    link = LineLink(free_port())  # nothing listens there
    async with supervised(link, initial_s=0.01, max_s=0.08) as steps:
        await until(lambda: states(steps).count("failed") >= 6, "six failed attempts")
    failed = [step for step in steps if step.state == "failed"]
    assert [step.attempt for step in failed[:6]] == [1, 2, 3, 4, 5, 6]
    assert all(step.reason for step in failed)
    for step in failed:  # jittered over the upper half of a ceiling that doubles, then stays at the cap
        ceiling = min(0.08, 0.01 * 2 ** (step.attempt - 1))
        assert ceiling / 2 <= step.retry_in_s <= ceiling
    assert failed[3].retry_in_s > failed[0].retry_in_s
    assert states(steps)[:3] == ["connecting", "failed", "reconnecting"]


async def test_an_operators_wake_cuts_the_backoff_short():
    port = free_port()
    link = LineLink(port)
    async with supervised(link, initial_s=60, max_s=60) as steps:
        await until(lambda: "failed" in states(steps), "the first failure")
        assert steps[-1].retry_in_s >= 30  # without a wake, the next attempt is half a minute away
        async with Server(talk_forever, port):
            link.supervisor.wake()
            await until(lambda: "connected" in states(steps), "the woken attempt to connect", timeout=10)
    assert states(steps)[:4] == ["connecting", "failed", "reconnecting", "connected"]


async def test_an_operators_wake_drops_a_live_connection_and_reconnects_at_once():
    async with Server(talk_forever) as server:
        link = LineLink(server.port)
        async with supervised(link, initial_s=60, max_s=60) as steps:
            await until(lambda: "connected" in states(steps), "a connection")
            link.supervisor.wake()
            await until(lambda: states(steps).count("connected") >= 2, "the reconnection", timeout=10)
    dropped = next(step for step in steps if step.state == "disconnected")
    assert (dropped.reason, dropped.retry_in_s) == ("reconnect requested", 0.0)
    assert link.closed >= 1 and server.connections >= 2


async def test_a_server_goodbye_leads_to_a_reconnect_after_a_short_pause():
    steps, _ = await run_until(say_goodbye, lambda seen: seen.count("connected") >= 3)
    dropped = [step for step in steps if step.state == "disconnected"]
    assert dropped[0].reason == "server closed the connection" and dropped[0].attempt == 1
    assert 0 < dropped[0].retry_in_s <= 0.05
    reconnecting = [step for step in steps if step.state == "reconnecting"]
    assert reconnecting[0].attempt == 1 and reconnecting[0].reason == "server closed the connection"


async def test_a_drop_from_a_library_callback_ends_the_hold():
    async with Server(talk_forever) as server:
        link = LineLink(server.port)
        async with supervised(link) as steps:
            await until(lambda: "connected" in states(steps), "a connection")
            link.supervisor.drop("server disconnected (transport close)")
            await until(lambda: states(steps).count("connected") >= 2, "the reconnection")
    dropped = next(step for step in steps if step.state == "disconnected")
    assert dropped.reason == "server disconnected (transport close)" and dropped.retry_in_s > 0


async def test_cancelling_during_a_hold_closes_the_link():
    async with Server(talk_forever) as server:
        link = LineLink(server.port)
        async with supervised(link) as steps:
            await until(lambda: "connected" in states(steps), "a connection")
    assert link.closed == 1 and link.writer is None


async def test_a_link_held_long_enough_starts_its_backoff_over_and_a_short_one_does_not():
    steps, _ = await run_until(say_goodbye, lambda seen: seen.count("disconnected") >= 3, stable_after_s=3600)
    dropped = [step for step in steps if step.state == "disconnected"]
    assert [step.attempt for step in dropped[:3]] == [1, 2, 3], "a flapping peer keeps counting"
