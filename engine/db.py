"""What the store's index and the project's state share: one SQLite connection, used
from the event loop and worker threads alike, whose every failure is a `StoreError`
that names the file and says what to do.

    class Index(Database): ...
    with self.sql() as db: ...              # the connection, under the lock
    with self.transaction() as db: ...      # BEGIN IMMEDIATE ... COMMIT (or ROLLBACK)
    for chunk in chunks(keys): ...          # IN (...) lists SQLite accepts
"""

from __future__ import annotations

import errno
import sqlite3
import threading
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path

CHUNK = 500  # host parameters per IN (...): well under SQLite's oldest limit of 999


class StoreError(Exception):
    """The store cannot be read or written: a message, and a hint for the user."""

    def __init__(self, message: str, hint: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint

    def render(self) -> str:
        return f"error: {self.message}" + (f"\n  = help: {self.hint}" if self.hint else "")


def disk_error(what: str, e: OSError, place: Path) -> StoreError:
    """A file system failure as a StoreError that names the place and what to do."""
    reason = e.strerror or str(e)
    if e.errno == errno.ENOSPC:
        hint = f"free disk space on the disk of `{place}`, then build again: finished steps are kept"
    elif e.errno in (errno.EACCES, errno.EPERM, errno.EROFS):
        hint = f"make `{place}` writable (or set FILMC_STORE to a folder you can write)"
    else:
        hint = f"check `{place}`: its disk, free space and permissions"
    return StoreError(f"cannot {what}: {reason}", hint)


def connect(path: Path) -> sqlite3.Connection:
    """A connection in autocommit mode (transactions are explicit), usable from threads."""
    return sqlite3.connect(path, timeout=30, isolation_level=None, check_same_thread=False)


def chunks(items: Iterable[str]) -> Iterator[list[str]]:
    chunk: list[str] = []
    for item in items:
        chunk.append(item)
        if len(chunk) == CHUNK:
            yield chunk
            chunk = []
    if chunk:
        yield chunk


class Database:
    """One open SQLite file: `what` names it in messages ("the store index"), `damaged`
    says what to do when it is no longer a database."""

    what = "the database"
    damaged = "delete it"

    def __init__(self, db_path: Path, db: sqlite3.Connection) -> None:
        self.db_path = db_path
        self._db: sqlite3.Connection | None = db
        self._lock = threading.RLock()

    def close(self) -> None:
        with self._lock:
            if self._db is not None:
                self._db.close()
                self._db = None

    def __enter__(self) -> Database:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @contextmanager
    def sql(self) -> Iterator[sqlite3.Connection]:
        with self._lock, self._errors():
            if self._db is None:
                raise StoreError(f"{self.what} is closed", "this is a bug in filmc: please "
                                                            "report it")
            yield self._db

    @contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        with self.sql() as db:
            db.execute("BEGIN IMMEDIATE")
            try:
                yield db
            except BaseException:
                db.execute("ROLLBACK")
                raise
            db.execute("COMMIT")

    @contextmanager
    def _errors(self) -> Iterator[None]:
        """SQLite and OS errors as StoreError, with what to do about them."""
        path, what = self.db_path, self.what
        try:
            yield
        except StoreError:
            raise
        except sqlite3.OperationalError as e:
            msg = str(e)
            if "locked" in msg or "busy" in msg:
                raise StoreError(f"{what} `{path}` is busy: {msg}",
                                 "another filmc is writing to it; wait for it to finish") from None
            if "readonly" in msg or "read-only" in msg:
                raise StoreError(f"cannot write {what} `{path}`: it is read-only",
                                 f"make `{path.parent}` writable") from None
            if "disk is full" in msg or "disk I/O" in msg:
                raise StoreError(f"cannot write {what} `{path}`: {msg}",
                                 f"free disk space on the disk of `{path.parent}`") from None
            raise StoreError(f"cannot use {what} `{path}`: {msg}",
                             f"check free disk space and the permissions of `{path.parent}`"
                             ) from None
        except sqlite3.DatabaseError as e:
            raise StoreError(f"{what} `{path}` is damaged: {e}",
                             self.damaged.format(path=path)) from None
        except OSError as e:
            raise disk_error(f"use {what} `{path}`", e, path.parent) from None
