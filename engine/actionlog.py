"""`actions.log`: the action cache's record of truth, one JSON line per finished step.

The SQLite index beside it is fast to query but can be lost (a zero-byte file,
a damaged disk block, a user who deletes it); every step it knew was paid for,
so the store must never forget one because its index did.  Each finished step
is appended here first, in one `write` to a file opened `O_APPEND`, then
indexed; the index remembers how far into the log it has read, so on opening:

- an index behind the log (a build killed between the two writes) reads the
  tail;
- a missing, empty or damaged index is rebuilt from the whole log.

Lines:

    {"key": K, "outputs": [...], "meta": {...}, "t": 1767000000.0}
    {"forget": [K, ...], "t": ...}              `filmc gc` forgetting keys
    {"used": [K, ...], "t": ...}                a build reusing keys (`gc --older-than`)

A line cut short by a crash is skipped on reading; the next append starts on a
new line.  Appends from two builds sharing a store interleave whole lines, and
whichever build indexes reads every line past the index's offset, its own or
not.  The log is not fsynced per line (a crash of filmc loses nothing: the
lines are in the page cache); the job journal fsyncs it before it writes that a
paid job is over, so after a power cut no job is closed whose outputs are not
recorded.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Iterable, Iterator
from pathlib import Path

NAME = "actions.log"


class ActionLog:
    def __init__(self, path: Path) -> None:
        self.path = path
        self._fd: int | None = None

    def _open(self) -> int:
        if self._fd is None:
            self._fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
            size = os.fstat(self._fd).st_size
            if size:
                with open(self.path, "rb") as f:
                    f.seek(size - 1)
                    if f.read(1) != b"\n":  # a torn last line: end it, so it stays apart
                        os.write(self._fd, b"\n")
        return self._fd

    def append(self, records: Iterable[dict]) -> int:
        """Append records (one write); the log's size after them."""
        now = time.time()
        data = b"".join(json.dumps({**r, "t": now}, ensure_ascii=False, separators=(",", ":"),
                                   sort_keys=True).encode() + b"\n" for r in records)
        fd = self._open()
        view = memoryview(data)
        while view:
            n = os.write(fd, view)
            view = view[n:]
        return os.fstat(fd).st_size

    def sync(self) -> None:
        """Make the lines appended so far durable (the journal calls it before it writes
        that a job is over: a job must never be closed while its outputs' record is not)."""
        if self._fd is not None:
            os.fsync(self._fd)

    def size(self) -> int:
        try:
            return self.path.stat().st_size
        except FileNotFoundError:
            return 0

    def read(self, start: int = 0) -> Iterator[tuple[int, dict]]:
        """(offset after the line, record) of each whole, readable line from `start`."""
        if not self.path.exists():
            return
        with open(self.path, "rb") as f:
            f.seek(start)
            pos = start
            for line in f:
                pos += len(line)
                if not line.endswith(b"\n"):
                    break  # being written, or torn: not a record yet
                try:
                    record = json.loads(line)
                except ValueError:
                    continue
                if isinstance(record, dict):
                    yield pos, record

    def close(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None
