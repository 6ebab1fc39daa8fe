"""The normalizer's game memory, kept across restarts (SIGKILL included) beside the sequence file.

Without it a restart inside a game forgets that the game started, which ticks it published and how many:
the game would get a second `game.start`, its missed ticks would be neither refilled nor declared, and
its `game.end` would count from the restart. The memory changes on every game frame, so it is written
the way the sequence counter is: a store into a shared memory map (the page cache outlives the process
however it dies), never a write call or an fsync on the event loop.

A SIGKILL can land in the middle of a store, so the file holds two slots written in turn, each with a
generation number and a checksum: a torn slot fails its checksum and the other slot, one frame older,
is still whole. Each slot is written *before* the frame's events are published and names the range of
sequence numbers they get, so at the next start the last published `seq` tells which slot matches what
subscribers saw:
- the frame's events were all published: the newest slot is exact;
- the newest slot is torn, or none of its events was published: the kill came before they went out,
  so the older slot is exact;
- the kill came between the frame's events: the older slot (before that frame) is taken, and the line
  logged says that channels of that one frame may repeat;
- anything else (unreadable, from another layout, ahead of the sequence file): no memory, games start
  afresh as they did before this file existed, with one line in the log saying why.
Neither file is fsynced per event: after a power cut (not a process kill) the page cache of both may be
lost, and the memory read back may be older than the last events published.
"""

from __future__ import annotations

import logging
import mmap
import os
import struct
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, TypeVar

import orjson

log = logging.getLogger(__name__)
T = TypeVar("T")

MAGIC = b"VGM1"
HEADER = struct.Struct("<4sQQII")  # magic, generation, first seq of the frame's events, how many, payload length
CHECK = struct.Struct("<I")  # crc32 of header and payload, after them
SLOT_SIZE = 4096
PAYLOAD_MAX = SLOT_SIZE - HEADER.size - CHECK.size
FILE_SIZE = 2 * SLOT_SIZE


@dataclass(frozen=True, slots=True)
class Slot:
    generation: int
    first_seq: int  # the first seq the frame's events got
    count: int  # how many events the frame gave
    memory: Any

    @property
    def last_seq(self) -> int:
        return self.first_seq + self.count - 1


class GameStore:
    """Two checksummed slots in a memory-mapped file; `save` costs one encode and one copy."""

    def __init__(self, path: Path) -> None:
        self.path = path
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            size = os.fstat(fd).st_size
            if size != FILE_SIZE:  # new, or not ours to read: start from zeros, which no slot accepts
                os.ftruncate(fd, 0)
                os.pwrite(fd, bytes(FILE_SIZE), 0)  # real blocks: a full disk fails here, not in a store
            self._map = mmap.mmap(fd, FILE_SIZE)
        finally:
            os.close(fd)
        read = [self._read(index) for index in (0, 1)]
        written_but_unreadable = any(slot is None and self._written(index) for index, slot in enumerate(read))
        self._damaged = written_but_unreadable or 0 < size != FILE_SIZE
        self._slots = sorted((slot for slot in read if slot is not None), key=lambda slot: slot.generation, reverse=True)
        self._generation = self._slots[0].generation if self._slots else 0
        self._refused = False

    def restore(self, last_published_seq: int, resume: Callable[[Any], T]) -> T | None:
        """`resume(memory)` for the memory that matches what subscribers saw up to `last_published_seq`,
        or None when there is none or `resume` refuses it (ValueError); every refusal is logged.

        The verdict is written back as the newest copy at once, so a memory set aside now (older than
        a copy it was preferred to, refused, or none at all) cannot be picked by a later start."""
        memory, resumed = self._matching(last_published_seq), None
        if memory is not None:
            try:
                resumed = resume(memory)
            except ValueError as exc:
                log.warning("game memory in %s is not usable (%s): games start afresh", self.path, exc)
                memory = None
        self.save(memory, last_published_seq + 1, 0)
        return resumed

    def _matching(self, last_published_seq: int) -> Any:
        newest = self._slots[0] if self._slots else None
        if newest is None:
            if self._damaged:
                log.warning("game memory in %s is unreadable (torn or not Vectra's): games start afresh", self.path)
            return None
        if newest.last_seq <= last_published_seq:
            if self._damaged:
                log.warning("game memory: one of the two copies in %s is torn; the other matches the events "
                            "published: resuming from it", self.path)
            return newest.memory
        older = self._slots[1] if len(self._slots) > 1 else None
        if older is not None and older.generation == newest.generation - 1 and older.last_seq <= last_published_seq:
            if newest.first_seq <= last_published_seq:
                log.warning(
                    "game memory: the stop came while one frame's events were going out (seq %d of %d-%d "
                    "published); resuming from the state before that frame: channels of that frame may repeat",
                    last_published_seq, newest.first_seq, newest.last_seq,
                )
            return older.memory  # (else the stop came before any of them went out: exact)
        log.warning(
            "game memory in %s is ahead of the sequence file (events up to seq %d, last published %d): "
            "games start afresh", self.path, newest.last_seq, last_published_seq,
        )
        return None

    def save(self, memory: Any, first_seq: int, count: int) -> None:
        """Record the memory after a frame whose `count` events will get seq `first_seq` onwards.

        A memory that cannot be kept (a game id too long for a slot, a string JSON cannot carry) is
        recorded as none at all: the next start begins afresh rather than from an older memory."""
        try:
            payload = orjson.dumps(memory)
        except orjson.JSONEncodeError:
            payload = b""
        if not payload or len(payload) > PAYLOAD_MAX:
            if not self._refused:
                log.warning("game memory cannot be kept in %s (not JSON, or over %d bytes): a restart inside "
                            "this game will start it afresh", self.path, PAYLOAD_MAX)
                self._refused = True
            payload = b"null"
        self._generation += 1
        offset = (self._generation % 2) * SLOT_SIZE
        record = HEADER.pack(MAGIC, self._generation, first_seq, count, len(payload)) + payload
        self._map[offset : offset + len(record) + CHECK.size] = record + CHECK.pack(zlib.crc32(record))

    def close(self) -> None:
        if not self._map.closed:
            self._map.flush()
            self._map.close()

    def _written(self, index: int) -> bool:
        """Whether a slot holds anything at all (a slot never written is zeros)."""
        return any(self._map[index * SLOT_SIZE : (index + 1) * SLOT_SIZE])

    def _read(self, index: int) -> Slot | None:
        offset = index * SLOT_SIZE
        magic, generation, first_seq, count, length = HEADER.unpack_from(self._map, offset)
        if magic != MAGIC or length > PAYLOAD_MAX or generation % 2 != index:
            return None
        end = offset + HEADER.size + length
        (check,) = CHECK.unpack_from(self._map, end)
        if check != zlib.crc32(self._map[offset:end]):
            return None
        try:
            memory = orjson.loads(self._map[offset + HEADER.size : end])
        except orjson.JSONDecodeError:
            return None
        return Slot(generation, first_seq, count, memory)
