"""The project's own build state, always in `<project>/.filmc/` (wherever the store is):

    lock          one build of the project at a time (engine/lock.py)
    journal.log   paid jobs in flight (engine/journal.py)
    noop.json     the stat manifest of the last successful build (engine/noop.py)
    state.db      SQLite: the last build per step id, and what each backend was sent

    last_build(node PRIMARY KEY, key, record)      what `filmc plan` compares against
    uploads(scope, digest, value)                  reference images a service already has

Unlike the store, this is about one project on one machine: node ids are the
project's, and an upload cache answers for the servers this machine talks to.
Losing it costs nothing paid for: `plan` says "new" instead of "changed", and
a reference image is uploaded again.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from ..compiler.keys import canonical
from .db import Database, StoreError, chunks, connect, disk_error

DIR = ".filmc"
NAME = "state.db"
VERSION = 1
_SCHEMA = """
CREATE TABLE IF NOT EXISTS last_build (node TEXT PRIMARY KEY, key TEXT NOT NULL,
                                       record TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS uploads (scope TEXT NOT NULL, digest TEXT NOT NULL,
                                    value TEXT NOT NULL, PRIMARY KEY (scope, digest));
"""


def state_dir(root: Path) -> Path:
    return root / DIR


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
            if db.execute("PRAGMA user_version").fetchone()[0] != VERSION:
                db.executescript("DROP TABLE IF EXISTS last_build; DROP TABLE IF EXISTS uploads;"
                                 + _SCHEMA + f"PRAGMA user_version={VERSION};")
            else:
                db.executescript(_SCHEMA)
        except sqlite3.OperationalError as e:  # read-only, full, locked: say where
            raise StoreError(f"cannot use `{db_path}`: {e}",
                             f"make `{path}` writable, and check its disk's free space") from None
        except sqlite3.DatabaseError:
            # Not a database any more.  Nothing here was paid for: start over.
            try:
                db_path.unlink(missing_ok=True)
                db = connect(db_path)
                db.executescript(_SCHEMA + f"PRAGMA user_version={VERSION};")
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

    def record_last(self, rows: Iterable[tuple[str, str, dict]]) -> None:
        """(node, key, record) rows, in one transaction.  A row recorded already (the same
        key, backend, inputs and files: a step reused as it was) is not written again: a
        feature film's rebuild reuses thousands, and writing each one's record out as
        JSON was most of this."""
        rows = list(rows)
        kept: set[str] = set()
        with self.sql() as db:
            for chunk in chunks(n for n, _k, _r in rows):
                q = (f"SELECT node, key, json_extract(record, '$.backend'), "
                     f"json_extract(record, '$.inputs'), json_extract(record, '$.files') "
                     f"FROM last_build WHERE node IN ({','.join('?' * len(chunk))})")
                kept.update(f"{n}\0{k}\0{b}\0{i}\0{f}" for n, k, b, i, f in db.execute(q, chunk))
        fresh = [(n, k, r) for n, k, r in rows if not _recorded(kept, n, k, r)]
        if not fresh:
            return
        with self.transaction() as db:
            db.executemany("INSERT OR REPLACE INTO last_build VALUES (?, ?, ?)",
                           [(n, k, canonical(r)) for n, k, r in fresh])

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


def _recorded(kept: set[str], node: str, key: str, record: dict) -> bool:
    """Whether `record` is in `kept` as record_last read it back: the labels a key does not
    hold (backend name, input ids, file paths) compared as SQLite's json_extract writes
    them, which for what `canonical` wrote is `canonical` again."""
    backend = record.get("backend")
    return (f"{node}\0{key}\0{backend}\0{canonical(record.get('inputs', {}))}\0"
            f"{canonical(record.get('files', {}))}") in kept

