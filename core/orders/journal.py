"""What the desk must not forget across a restart: every order id with its latest record, and the
kill switch.

An order's record is appended (and fsynced) before its frame is sent, so an order id that reached
the wire is known after any crash and is never sent again. A line cut short by a crash is skipped.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any

import orjson

log = logging.getLogger(__name__)


class OrderJournal:
    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.path = folder / "journal.jsonl"
        self.halt_path = folder / "halted"

    def load(self) -> tuple[dict[str, dict[str, Any]], bool]:
        """The latest record of every order id, and whether orders are halted."""
        records: dict[str, dict[str, Any]] = {}
        if self.path.is_file():
            with self.path.open("rb") as lines:
                for number, line in enumerate(lines, 1):
                    try:
                        record = orjson.loads(line)
                        records[record["order_id"]] = record
                    except (orjson.JSONDecodeError, KeyError, TypeError):
                        log.warning("%s line %d is not a record (cut short by a crash?); skipped", self.path, number)
        return records, self.halt_path.is_file()

    def append(self, record: dict[str, Any]) -> None:
        """Blocking: call it in a worker thread."""
        self.folder.mkdir(parents=True, exist_ok=True)
        with self.path.open("ab") as out:
            out.write(orjson.dumps(record) + b"\n")
            out.flush()
            os.fsync(out.fileno())

    def set_halted(self, halted: bool, reason: str) -> None:
        """Blocking: call it in a worker thread."""
        self.folder.mkdir(parents=True, exist_ok=True)
        if not halted:
            self.halt_path.unlink(missing_ok=True)
            return
        temporary = self.halt_path.with_suffix(".tmp")
        temporary.write_bytes(orjson.dumps({"reason": reason}))
        with temporary.open("rb") as handle:
            os.fsync(handle.fileno())
        temporary.replace(self.halt_path)
