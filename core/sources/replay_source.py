"""Recordings played back as a live feed (`VECTRA_SOURCE=replay`).

Only the recorded `raw.*` frames are played; they go through the same decoder and normalizer as live
frames, so every derived channel is produced again exactly as it was, now with `source: "replay"`.
Parquet is read in a worker thread, one batch at a time, so the event loop only paces and emits.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

import orjson
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from core.config import Settings
from core.contracts.envelope import now_ms
from core.contracts.feed import FeedEvent, FeedSink, FeedSource
from core.contracts.recordings import closed_files

log = logging.getLogger(__name__)

READ_BATCH_ROWS = 2000
YIELD_EVERY = 500
_COLUMNS = ["seq", "type", "timestamp", "data"]


@dataclass(slots=True)
class RecordedFrame:
    timestamp: int
    type: str
    data: dict[str, Any]


def game_bounds(files: list[Path], game_id: str) -> tuple[int, int] | None:
    """The `seq` range of a game's raw frames across the recordings (None: not recorded)."""
    low = high = None
    for path in files:
        table = pq.read_table(path, columns=["seq", "type", "gameId"])
        mask = pc.and_(pc.equal(table["gameId"], game_id), pc.starts_with(table["type"].cast(pa.string()), "raw."))
        seqs = table.filter(mask)["seq"]
        if len(seqs):
            bounds = pc.min_max(seqs)
            low = bounds["min"].as_py() if low is None else min(low, bounds["min"].as_py())
            high = bounds["max"].as_py() if high is None else max(high, bounds["max"].as_py())
    return (low, high) if low is not None else None


def read_frames(files: list[Path], bounds: tuple[int, int] | None) -> Iterator[list[RecordedFrame]]:
    """The raw frames of the recordings in `seq` order, a batch at a time (runs in a thread)."""
    for path in files:
        for batch in pq.ParquetFile(path).iter_batches(batch_size=READ_BATCH_ROWS, columns=_COLUMNS):
            seqs = batch.column("seq").to_pylist()
            types = batch.column("type").to_pylist()
            stamps = batch.column("timestamp").cast(pa.int64()).to_pylist()
            datas = batch.column("data").to_pylist()
            frames = [
                RecordedFrame(stamp, type_, orjson.loads(data))
                for seq, type_, stamp, data in zip(seqs, types, stamps, datas)
                if type_.startswith("raw.") and (bounds is None or bounds[0] <= seq <= bounds[1])
            ]
            if frames:
                yield frames


class ReplaySource(FeedSource):
    name = "replay"

    def __init__(self, sink: FeedSink, settings: Settings) -> None:
        super().__init__(sink)
        self.settings = settings
        self.path = settings.replay_path
        self.url = str(self.path) if self.path is not None else None
        self._restart = False
        self._passes = 0

    def reconnect_now(self) -> None:
        """For a replay, reconnecting means starting again from the beginning."""
        self._restart = True

    async def run(self) -> None:
        if self.path is None:
            self.report("failed", reason="no recording to replay: set VECTRA_REPLAY_PATH")
            return
        while True:
            self.report("connecting")
            try:
                files = await asyncio.to_thread(closed_files, self.path)
                if not files:
                    self.report("failed", reason=f"no recordings at {self.path}")
                    return
                bounds = None
                if self.settings.replay_game:
                    bounds = await asyncio.to_thread(game_bounds, files, self.settings.replay_game)
                    if bounds is None:
                        self.report("failed", reason=f"game {self.settings.replay_game} is not in {self.path}")
                        return
                self.report("connected")
                finished = await self._play(files, bounds)
            except (OSError, pa.ArrowException, ValueError) as exc:
                log.exception("replay of %s failed", self.path)
                self.report("failed", reason=f"cannot read {self.path}: {exc}")
                return
            if finished and not self.settings.replay_loop:
                self.report("disconnected", reason="replay finished")
                return

    async def _play(self, files: list[Path], bounds: tuple[int, int] | None) -> bool:
        """Emit every frame on the recorded schedule; False when a restart cut it short."""
        if self._passes:
            self.sink.forget_games()
        self._restart = False
        self._passes += 1
        loop = asyncio.get_running_loop()
        speed = self.settings.replay_speed
        batches = read_frames(files, bounds)
        first_ts: int | None = None
        start = loop.time()
        emitted = 0
        while (batch := await asyncio.to_thread(next, batches, None)) is not None:
            for frame in batch:
                if self._restart:
                    return False
                if first_ts is None:
                    first_ts = frame.timestamp
                if speed > 0:
                    delay = start + (frame.timestamp - first_ts) / 1000 / speed - loop.time()
                    if delay > 0:
                        await asyncio.sleep(delay)
                elif emitted % YIELD_EVERY == 0:
                    await asyncio.sleep(0)
                self._emit(frame)
                emitted += 1
        return True

    def _emit(self, frame: RecordedFrame) -> None:
        data = frame.data
        if frame.type == "raw.ack":
            packet = f"3{data.get('ackId')}{orjson.dumps(data.get('args') or []).decode()}"
            self.sink.frame(self.name, packet, now_ms())
            return
        event = FeedEvent(
            name=frame.type.removeprefix("raw."),
            payload=data.get("payload"),
            trace=data.get("trace"),
            extra_args=data.get("args") or [],
            ack_id=data.get("ackId"),
            namespace=data.get("namespace", "/"),
        )
        self.sink.event(self.name, event, now_ms())
