"""Running the foundation headless (`vectra --daemon`): signals, the `--stdout` sink, the log format.

What the foundation is made of is decided in `core.assembly`, which the console uses too.
"""

from __future__ import annotations

import asyncio
import gc
import logging
import signal
import sys

import orjson

from core.assembly import build_foundation
from core.config import Settings
from core.contracts.envelope import Envelope
from core.datadir_lock import claim_data_dir

log = logging.getLogger(__name__)

SHUTDOWN_GRACE_S = 5.0
STDOUT_BUFFER_LIMIT = 64 * 1024 * 1024


class StdoutSink:
    """`--stdout`: every envelope as one JSON line.

    A pipe (`| jq`) gets a non-blocking transport so a slow reader cannot stall the loop; a regular
    file, which never blocks for long, is written directly.
    """

    def __init__(self) -> None:
        self._transport: asyncio.WriteTransport | None = None
        self._file = None

    async def start(self) -> None:
        loop = asyncio.get_running_loop()
        try:
            self._transport, _ = await loop.connect_write_pipe(asyncio.Protocol, sys.stdout)
        except ValueError:
            self._file = sys.stdout.buffer

    async def stop(self) -> None:
        if self._transport is not None:
            self._transport.close()
        if self._file is not None:
            self._file.flush()

    def deliver(self, envelope: Envelope) -> None:
        line = envelope.to_json() + b"\n"
        if self._file is not None:
            self._file.write(line)
            return
        if self._transport is None or self._transport.is_closing():
            return
        if self._transport.get_write_buffer_size() > STDOUT_BUFFER_LIMIT:
            log.error("stdout reader is not keeping up; closing --stdout")
            self._transport.close()
            return
        self._transport.write(line)


class JsonLogFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry = {
            "ts": round(record.created, 3),
            "level": record.levelname,
            "logger": record.name,
            "msg": record.getMessage(),
        }
        if record.exc_info:
            entry["exc"] = self.formatException(record.exc_info)
        return orjson.dumps(entry).decode()


def setup_logging(level: str, as_json: bool = False) -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(
        JsonLogFormatter() if as_json else logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s")
    )
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    for noisy in ("socketio", "engineio", "aiohttp.access", "websockets"):
        logging.getLogger(noisy).setLevel(max(logging.WARNING, root.level))


def freeze_startup_heap() -> None:
    """Leave what start-up built (modules, settings, the foundation: ~80,000 objects) out of every
    later garbage collection. Each full collection walked them all, 50-90 ms with the loop stopped:
    the largest spikes in feed -> subscriber latency with the recorder on (docs/PERFORMANCE.md)."""
    gc.collect()
    gc.freeze()


async def run_daemon(settings: Settings, *, stdout: bool = False) -> int:
    """Run until SIGINT/SIGTERM, then stop everything within the grace period. The data folder is
    taken first: a second daemon on it stops (`DataDirInUse`) before it binds or writes anything."""
    claim_data_dir(settings.data_dir)
    foundation = build_foundation(settings)
    sink = StdoutSink() if stdout else None
    if sink is not None:
        await sink.start()  # before the foundation, so the first line is `sys.start`
        foundation.bus.subscribe(sink)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    await foundation.start()
    freeze_startup_heap()
    log.info("vectra daemon running (source %s, seq %d, orders %s)", settings.source, foundation.bus.last_seq,
             settings.orders)
    await stop.wait()
    log.info("shutting down")
    try:
        await asyncio.wait_for(foundation.stop(), timeout=SHUTDOWN_GRACE_S)
    except asyncio.TimeoutError:
        log.error("shutdown took longer than %.0f s; exiting anyway", SHUTDOWN_GRACE_S)
        return 1
    finally:
        if sink is not None:
            await sink.stop()
    return 0
