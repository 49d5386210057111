"""The project's own build state, always in `<project>/.filmc/` (wherever the store is):

    lock          one build of the project at a time (engine/lock.py)
    journal.log   paid jobs in flight (engine/journal.py)
    noop.json     the stat manifest of the last successful build (engine/noop.py)
    state.db      SQLite: the last build per step id, and what each backend was sent

    last_build(node PRIMARY KEY, key, record, labels)
                                                   what `filmc plan` compares against
    uploads(scope, digest, value)                  reference images a service already has

Unlike the store, this is about one project on one machine: node ids are the
project's, and an upload cache answers for the servers this machine talks to.
Losing it costs nothing paid for: `plan` says "new" instead of "changed", and
a reference image is uploaded again.
"""

from __future__ import annotations

import hashlib
import json
import sqlite3
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from ..compiler.keys import Spliced, canonical
from .db import Database, StoreError, chunks, connect, disk_error

DIR = ".filmc"
NAME = "state.db"
VERSION = 2
_SCHEMA = """
CREATE TABLE IF NOT EXISTS last_build (node TEXT PRIMARY KEY, key TEXT NOT NULL,
                                       record TEXT NOT NULL, labels TEXT NOT NULL DEFAULT '');
CREATE TABLE IF NOT EXISTS uploads (scope TEXT NOT NULL, digest TEXT NOT NULL,
                                    value TEXT NOT NULL, PRIMARY KEY (scope, digest));
"""


def state_dir(root: Path) -> Path:
    return root / DIR


def _set_up(db: sqlite3.Connection) -> None:
    """The tables, as this version has them, in one transaction: a process killed
    half-way, or two opening an older file at once, leave it as it was or done.  A
    version 1 file gains each row's labels (empty: the next build writes them); any
    other version starts over (nothing here was paid for)."""
    db.execute("BEGIN IMMEDIATE")
    try:
        version = db.execute("PRAGMA user_version").fetchone()[0]
        if version not in (1, VERSION):
            db.execute("DROP TABLE IF EXISTS last_build")
            db.execute("DROP TABLE IF EXISTS uploads")
        for statement in filter(str.strip, _SCHEMA.split(";")):
            db.execute(statement)
        if version == 1 and "labels" not in {
                row[1] for row in db.execute("PRAGMA table_info(last_build)")}:
            db.execute("ALTER TABLE last_build ADD COLUMN labels TEXT NOT NULL DEFAULT ''")
        if version != VERSION:
            db.execute(f"PRAGMA user_version={VERSION}")
        db.execute("COMMIT")
    except BaseException:
        db.execute("ROLLBACK")
        raise


class State(Database):
    what = "the build state"
    damaged = "delete `{path}`: it only remembers what the last build did"

    def __init__(self, path: Path, db: sqlite3.Connection) -> None:
        super().__init__(path / NAME, db)
        self.path = path

    @classmethod
    def open(cls, root: Path, create: bool = False) -> State | None:
        path = state_dir(root)
        db_path = path / NAME
        if not create and not db_path.is_file():
            return None
        try:
            path.mkdir(parents=True, exist_ok=True)
            ignore = path / ".gitignore"
            if not ignore.exists():
                ignore.write_text("# filmc's build state and store\n*\n")
        except OSError as e:
            raise disk_error(f"create `{path}`", e, path) from None
        try:
            db = connect(db_path)
            db.execute("PRAGMA journal_mode=WAL")
            db.execute("PRAGMA synchronous=NORMAL")
            _set_up(db)
        except sqlite3.OperationalError as e:  # read-only, full, locked: say where
            raise StoreError(f"cannot use `{db_path}`: {e}",
                             f"make `{path}` writable, and check its disk's free space") from None
        except sqlite3.DatabaseError:
            # Not a database any more.  Nothing here was paid for: start over.
            try:
                db_path.unlink(missing_ok=True)
                db = connect(db_path)
                _set_up(db)
            except (OSError, sqlite3.Error) as e:
                raise StoreError(f"cannot replace the damaged `{db_path}`: {e}",
                                 f"delete `{db_path}` by hand") from None
        return cls(path, db)

    def __enter__(self) -> State:
        return self

    # -- the last build ------------------------------------------------------------------

    def last_keys(self, nodes: Iterable[str]) -> dict[str, str]:
        out: dict[str, str] = {}
        with self.sql() as db:
            for chunk in chunks(set(nodes)):
                q = f"SELECT node, key FROM last_build WHERE node IN ({','.join('?' * len(chunk))})"
                out.update(db.execute(q, chunk))
        return out

    def last_records(self, nodes: Iterable[str]) -> dict[str, tuple[str, dict]]:
        out: dict[str, tuple[str, dict]] = {}
        with self.sql() as db:
            for chunk in chunks(set(nodes)):
                q = (f"SELECT node, key, record FROM last_build "
                     f"WHERE node IN ({','.join('?' * len(chunk))})")
                out.update((n, (k, json.loads(r))) for n, k, r in db.execute(q, chunk))
        return out

    def record_last(self, rows: Iterable[tuple[str, str, dict]],
                    spliced: Mapping[str, Spliced] | None = None) -> None:
        """(node, key, record) rows, in one transaction.  A row recorded already (the same
        key and labels: a step reused as it was) is not written again: a feature film's
        rebuild reuses thousands, and writing each one's record out as JSON was most of
        this.  The labels, what a record holds beside its key (its backend's name, its
        inputs' ids, its files' paths), are kept in a column of their own, so that
        telling is a comparison of strings, not a parse of every record.  `spliced`: by
        node, parts of its record encoded before (compiler/keys.py `canonical`): an
        export's record is its whole cut."""
        labelled = [(n, k, r, _labels(r)) for n, k, r in rows]
        kept: set[tuple[str, str, str]] = set()
        with self.sql() as db:
            for chunk in chunks(n for n, _k, _r, _l in labelled):
                q = (f"SELECT node, key, labels FROM last_build "
                     f"WHERE node IN ({','.join('?' * len(chunk))})")
                kept.update(db.execute(q, chunk))
        parts = spliced or {}
        fresh = [(n, k, canonical(r, parts.get(n)), labels) for n, k, r, labels in labelled
                 if (n, k, labels) not in kept]
        if not fresh:
            return
        with self.transaction() as db:
            db.executemany("INSERT OR REPLACE INTO last_build (node, key, record, labels) "
                           "VALUES (?, ?, ?, ?)", fresh)

    # -- the upload cache (backends.protocol.UploadCache) ------------------------------------

    def get(self, scope: str, digest: str) -> Any:
        with self.sql() as db:
            row = db.execute("SELECT value FROM uploads WHERE scope = ? AND digest = ?",
                             (scope, digest)).fetchone()
        return json.loads(row[0]) if row else None

    def put(self, scope: str, digest: str, value: Any) -> None:
        with self.sql() as db:
            db.execute("INSERT OR REPLACE INTO uploads VALUES (?, ?, ?)",
                       (scope, digest, json.dumps(value)))


_LONG_LABELS = 256  # labels longer than this are kept as their digest


def _labels(record: dict) -> str:
    """What a record holds that its key does not (its backend's name, its inputs' ids,
    its files' paths), as a string to compare: equal strings, equal labels (in another
    order they differ, and the row is written again, which is all that costs).  Long
    ones by their sha256: the film's and an export's name every shot's steps (1.5 MB for
    a feature's OTIO), read back and compared at every build."""
    text = repr((record.get("backend"), record.get("inputs", {}), record.get("files", {})))
    if len(text) <= _LONG_LABELS:
        return text
    return "sha256:" + hashlib.sha256(text.encode()).hexdigest()

