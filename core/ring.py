"""The resume ring: this run's most recent events, addressable by `seq`, in a bounded, compact memory.

Held as the envelopes' JSON (already serialized once for the transports), in blocks of up to
`BLOCK_EVENTS`: the newest block stays as it is, and each full one is compressed (zstd, through the
pyarrow Vectra already ships) by one thread for the whole process, since compressing ~0.5 MB takes
milliseconds that must not stall the event loop, and Arrow's codec releases the interpreter while it
works. Consecutive ticks are mostly the same text, so a block shrinks several times over.

The ring is bounded twice: past `ring_size` events the oldest event goes, past `ring_max_mb` of memory
the oldest whole block (the ring then holds a little less rather than more). A block still waiting
for the thread counts at its full size, but only pushes packed ones out once the backlog alone fills
the bound: a burst would otherwise empty the ring of blocks about to shrink (memory may then briefly
reach twice the bound). What it no longer holds comes from the recordings (`Requests.replay`).

An envelope is rebuilt on demand (`since`) from its JSON and the few header fields kept beside it,
so the ring keeps no parsed event, no Python object per event beyond one bytes (or none once
compressed), and the garbage collector never walks it.
"""

from __future__ import annotations

import queue
import sys
import threading
from array import array
from collections import deque
from itertools import chain
from typing import Iterator

import pyarrow as pa

from core.contracts.envelope import Envelope

BLOCK_EVENTS = 128
BLOCK_BYTES = 512 * 1024  # a block of large events is sealed sooner
CODEC = pa.Codec("zstd", compression_level=1)
LINE = b"\n"  # orjson escapes every newline inside a string, so lines split cleanly


class Block:
    """Consecutive events from `first_seq`: their JSON lines, or once packed, one compressed blob.

    The packer thread sets `packed` and `raw_bytes` before it clears `lines`, so a reader that finds
    `lines` gone always finds the blob (attribute writes are atomic under the GIL).
    """

    __slots__ = ("first_seq", "types", "stamps", "games", "sources", "lines", "packed", "raw_bytes", "size")

    def __init__(self, first_seq: int) -> None:
        self.first_seq = first_seq
        self.types: list[str] = []
        self.stamps = array("q")
        self.games: list[str | None] = []
        self.sources: list[str] = []
        self.lines: list[bytes] | None = []
        self.packed: bytes | None = None
        self.raw_bytes = 0
        self.size = 0  # what the block occupies now: its raw bytes, then its compressed ones

    def __len__(self) -> int:
        return len(self.types)

    def add(self, envelope: Envelope) -> None:
        blob = envelope.to_json()
        self.types.append(sys.intern(envelope.type))
        self.stamps.append(envelope.timestamp)
        self.games.append(envelope.gameId if envelope.gameId is None else sys.intern(envelope.gameId))
        self.sources.append(envelope.source)
        self.lines.append(blob)
        self.size += len(blob)

    def pack(self) -> None:
        """On the packer thread."""
        blob = LINE.join(self.lines)
        self.raw_bytes = len(blob)
        self.packed = CODEC.compress(blob, asbytes=True)
        self.size = len(self.packed)
        self.lines = None

    def envelopes(self, start: int, stop: int) -> list[Envelope]:
        lines = self.lines
        if lines is None:
            lines = CODEC.decompress(self.packed, self.raw_bytes, asbytes=True).split(LINE)
        first, types, stamps, games, sources = self.first_seq, self.types, self.stamps, self.games, self.sources
        return [
            Envelope(first + i, types[i], stamps[i], games[i], sources[i], json=lines[i]) for i in range(start, stop)
        ]


class Packer:
    """The one thread that compresses sealed blocks, for every ring of the process."""

    _lock = threading.Lock()
    _queue: queue.SimpleQueue[Block] | None = None

    @classmethod
    def submit(cls, block: Block) -> None:
        with cls._lock:
            if cls._queue is None:
                cls._queue = queue.SimpleQueue()
                threading.Thread(target=cls._run, args=(cls._queue,), name="ring-packer", daemon=True).start()
        cls._queue.put(block)

    @staticmethod
    def _run(blocks: queue.SimpleQueue[Block]) -> None:
        while True:
            blocks.get().pack()


class Ring:
    """The most recent envelopes of this run, compact, addressable by `seq` (contiguous within a block:
    an edge's numbers jump where the origin restarted)."""

    def __init__(self, size: int, max_bytes: int) -> None:
        self.size = size
        self.max_bytes = max_bytes
        self._sealed: deque[Block] = deque()
        self._open: Block | None = None
        self._count = 0  # events held
        self._skip = 0  # leading events of the oldest block no longer held (`size` is exact)

    def append(self, envelope: Envelope) -> None:
        block = self._open
        if block is not None and envelope.seq != block.first_seq + len(block):
            self._seal(block)  # an edge follows the origin's numbers across the origin's restarts
            block = None
        if block is None:
            block = self._open = Block(envelope.seq)
        block.add(envelope)
        self._count += 1
        if self._count > self.size:
            self._drop_oldest_event()
        if len(block) >= BLOCK_EVENTS or block.size >= BLOCK_BYTES:
            self._seal(block)

    def clear(self) -> None:
        """Forget every event held: what comes next starts the ring, and a replay from before it reads
        the recordings and names what they lack a `gap` (an edge after a hole in the origin's stream)."""
        self._sealed.clear()
        self._open = None
        self._count = self._skip = 0

    def _oldest(self) -> Block:
        return self._sealed[0] if self._sealed else self._open

    def _drop_oldest_event(self) -> None:
        self._count -= 1
        self._skip += 1
        if self._skip == len(self._oldest()) and self._sealed:
            self._sealed.popleft()
            self._skip = 0

    def _seal(self, block: Block) -> None:
        self._sealed.append(block)
        self._open = None
        Packer.submit(block)
        sealed = self._sealed
        waiting = sum(b.size for b in sealed if b.lines is not None)  # the packer's backlog
        held = sum(b.size for b in sealed)
        while sealed and held > self.max_bytes and self._may_drop(waiting):
            oldest = sealed.popleft()
            self._count -= len(oldest) - self._skip
            self._skip = 0
            held -= oldest.size
            if oldest.lines is not None:
                waiting -= oldest.size

    def _may_drop(self, waiting: int) -> bool:
        """Over the byte bound: the oldest block goes once it is packed (its successors will shrink
        too), or now if the packer's backlog alone fills the bound (a burst it cannot keep up with)."""
        return self._sealed[0].lines is None or waiting > self.max_bytes

    @property
    def first_seq(self) -> int | None:
        oldest = self._oldest()
        return oldest.first_seq + self._skip if oldest is not None and self._count else None

    def since(self, from_seq: int) -> Iterator[Envelope]:
        """Every envelope held now with `seq >= from_seq`, oldest first.

        Lazy, one block at a time: a resume from the start of a full ring decompresses hundreds of
        blocks, which its reader spreads over the loop between its sends instead of in one stall.
        Events appended meanwhile are not included; blocks dropped meanwhile are still read."""
        first = self.first_seq
        if first is None:
            return iter(())
        from_seq = max(from_seq, first)
        blocks = [*self._sealed, *([self._open] if self._open is not None else [])]
        spans = [
            (block, max(0, from_seq - block.first_seq), len(block))
            for block in blocks
            if block.first_seq + len(block) > from_seq
        ]
        return chain.from_iterable(block.envelopes(start, stop) for block, start, stop in spans)
