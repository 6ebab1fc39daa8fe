"""Parquet column building and writing, in a process of its own.

Turning a thousand envelopes into Arrow columns is Python work (6-15 ms a row group) and, on the
writer thread, it held the interpreter lock while the event loop waited to send: +46 ms p99 at
1,000 frames/s with the recorder on (docs/PERFORMANCE.md). Here the writer thread hands each row
group over as the envelopes' JSON lines, already serialized for the log, and waits for the reply
in a pipe read, which holds no lock. Everything else (the log, what is safe when, rotation,
recovery, retries) stays on the writer thread, so the files and their guarantees do not change:
the process only ever writes the `*.parquet.partial` file it was told to, and a file it has not
finished is one recovery rebuilds from the log, as after any crash.

One request at a time, each a frame of one byte (the verb) and a length; every request gets one
reply, `ok` with the file's size or `error` with what went wrong, raised again in the writer
thread as the same `OSError` (a full disk says "No space left" either way). The process ends when
its pipe closes, so it never outlives the daemon, even a killed one; it ignores SIGINT and SIGTERM,
which a terminal or a service manager may send the whole group: the daemon closes its file first.
It runs at a lower scheduling priority than the daemon: where cores are few (the daemon beside a
browser and bots), building columns competes with the live path for CPU, and only the live path has
subscribers waiting (p50 at 1,000 frames/s with the recorder on: 2.5-5.3 ms at equal priority,
0.8-1.3 ms below it, same loaded machine).
"""

from __future__ import annotations

import fcntl
import os
import signal
import struct
import subprocess
import sys
from pathlib import Path
from typing import BinaryIO, Protocol

import orjson
import pyarrow.parquet as pq

import core
from core.recorder.schema import DICTIONARY_COLUMNS, SCHEMA, STATISTICS_COLUMNS, table_from_lines

OPEN, ROWS, FINISH, ABANDON = b"o", b"r", b"f", b"a"
OK, ERROR = b"k", b"e"
HEADER = struct.Struct("!cQ")
STOP_WAIT_S = 10.0
NICENESS = 10  # below the daemon: on a small machine a row group's columns wait, a subscriber does not
PIPE_BYTES = 1024 * 1024


class ParquetWorkerError(Exception):
    """The worker failed in a way that is not an `OSError`, or ended."""


class RowFile(Protocol):
    """One Parquet file being written: row groups of envelope JSON lines, then its end."""

    def write(self, lines: list[bytes]) -> int: ...  # the file's size so far
    def finish(self) -> int: ...  # footer written, fsynced, closed: its size
    def abandon(self) -> None: ...


class ParquetFile:
    """A Parquet file written here, in this process (the worker's, or a test's and a tool's)."""

    def __init__(self, partial: Path) -> None:
        self._file = open(partial, "wb")
        try:
            self._writer = pq.ParquetWriter(
                self._file, SCHEMA, compression="zstd",
                use_dictionary=DICTIONARY_COLUMNS, write_statistics=STATISTICS_COLUMNS,
            )
        except Exception:
            self._file.close()
            raise

    def write(self, lines: list[bytes]) -> int:
        self._writer.write_table(table_from_lines(lines), row_group_size=len(lines))
        return self._file.tell()

    def finish(self) -> int:
        self._writer.close()
        self._file.flush()
        os.fsync(self._file.fileno())
        size = self._file.tell()
        self._file.close()
        return size

    def abandon(self) -> None:
        for release in (self._writer.close, self._file.close):
            try:
                release()
            except Exception:
                pass


# --- the pipe --------------------------------------------------------------------------------------


def send(stream: BinaryIO, verb: bytes, payload: bytes = b"") -> None:
    for part in (HEADER.pack(verb, len(payload)), payload):
        view = memoryview(part)
        while view:
            view = view[stream.write(view) :]


def receive(stream: BinaryIO) -> tuple[bytes, bytes]:
    verb, size = HEADER.unpack(read_exactly(stream, HEADER.size))
    return verb, read_exactly(stream, size)


def read_exactly(stream: BinaryIO, size: int) -> bytes:
    chunks, left = [], size
    while left:
        chunk = stream.read(left)
        if not chunk:
            raise EOFError("the pipe closed")
        chunks.append(chunk)
        left -= len(chunk)
    return b"".join(chunks)


def _error_reply(exc: Exception) -> bytes:
    errno = exc.errno if isinstance(exc, OSError) else None
    return orjson.dumps({"type": type(exc).__name__, "errno": errno, "message": str(exc),
                         "strerror": getattr(exc, "strerror", None), "filename": getattr(exc, "filename", None)})


def _raise_reply(payload: bytes) -> None:
    error = orjson.loads(payload)
    if error["errno"] is not None:
        raise OSError(error["errno"], error["strerror"] or error["message"], error["filename"])
    raise ParquetWorkerError(f"{error['type']}: {error['message']}")


# --- the writer thread's side ----------------------------------------------------------------------


class ParquetWorker:
    """The worker process, started when the first file is opened and again after it ended."""

    def __init__(self) -> None:
        self._process: subprocess.Popen | None = None

    def open(self, partial: Path) -> RowFile:
        self.call(OPEN, os.fsencode(partial))
        return _RemoteFile(self)

    def call(self, verb: bytes, payload: bytes = b"") -> int:
        """One request and its reply: the file's size, or the worker's error raised here."""
        process = self._process
        if process is None or process.poll() is not None:
            if verb != OPEN:  # a new process would know no file: the one that ended held it
                raise self._ended(process)
            process = self._start()
        try:
            send(process.stdin, verb, payload)
            status, reply = receive(process.stdout)
        except (OSError, EOFError, ValueError) as exc:
            raise self._ended(process) from exc
        if status == ERROR:
            _raise_reply(reply)
        return int(reply)

    def _ended(self, process: subprocess.Popen | None) -> ParquetWorkerError:
        self.close()
        code = process.poll() if process is not None else None
        return ParquetWorkerError(f"the Parquet worker process ended (exit code {code})")

    def _start(self) -> subprocess.Popen:
        self.close()
        root = str(Path(core.__file__).resolve().parent.parent)
        env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [root, os.environ.get("PYTHONPATH")]))}
        self._process = subprocess.Popen(
            [sys.executable, "-m", __name__], stdin=subprocess.PIPE, stdout=subprocess.PIPE, bufsize=0, env=env,
        )
        try:  # fewer, larger writes per row group (Linux; the default is 64 KB)
            fcntl.fcntl(self._process.stdin.fileno(), fcntl.F_SETPIPE_SZ, PIPE_BYTES)
        except (AttributeError, OSError):
            pass
        return self._process

    def close(self) -> None:
        """End the process: its pipe closes, it exits (an unfinished file is recovery's, from the log)."""
        process, self._process = self._process, None
        if process is None:
            return
        process.stdin.close()
        try:
            process.wait(STOP_WAIT_S)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        process.stdout.close()


class _RemoteFile:
    def __init__(self, worker: ParquetWorker) -> None:
        self._worker = worker

    def write(self, lines: list[bytes]) -> int:
        return self._worker.call(ROWS, b"\n".join(lines))

    def finish(self) -> int:
        return self._worker.call(FINISH)

    def abandon(self) -> None:
        try:
            self._worker.call(ABANDON)
        except Exception:
            pass


# --- the worker process ----------------------------------------------------------------------------


def serve(requests: BinaryIO, replies: BinaryIO) -> None:
    """Answer requests until the pipe closes; what was not finished stays a partial file."""
    current: ParquetFile | None = None
    while True:
        try:
            verb, payload = receive(requests)
        except EOFError:
            if current is not None:
                current.abandon()
            return
        try:
            size = 0
            if verb == OPEN:
                if current is not None:
                    current.abandon()
                current = None
                current = ParquetFile(Path(os.fsdecode(payload)))
            elif verb == ROWS:
                if current is None:
                    raise ValueError("rows for no open file")
                size = current.write(payload.split(b"\n"))
            elif verb == FINISH:
                file, current = current, None
                if file is None:
                    raise ValueError("no open file to finish")
                size = file.finish()
            elif verb == ABANDON:
                file, current = current, None
                if file is not None:
                    file.abandon()
            else:
                raise ValueError(f"unknown request {verb!r}")
            send(replies, OK, str(size).encode())
        except Exception as exc:
            send(replies, ERROR, _error_reply(exc))


def main() -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    os.nice(NICENESS)
    replies = os.dup(1)
    os.dup2(2, 1)  # a stray print of any library goes to stderr, never into the replies
    with open(0, "rb", buffering=0, closefd=False) as requests, open(replies, "wb", buffering=0) as out:
        serve(requests, out)


if __name__ == "__main__":
    main()
