"""The store: the object store and the action cache, shareable between projects.

Layout (default `<project>/.filmc/`; `FILMC_STORE`, then `[build] store` in
filmc.toml, move it; see `location`):

    .gitignore     `*`: the store never enters git
    objects/       outputs, read-only, named by their sha256 (engine/objects.py)
    actions.log    every finished step: key → outputs, cost (engine/actionlog.py)
    index.db       SQLite (WAL): the log indexed, and the objects' verified signatures
    projects/      which projects use the store, and what each needs (engine/roots.py)
    tmp/           files being written

    with Store.open(path, create=True) as store:
        store.get_actions(keys)             # key → Action, a few queries for thousands
        store.record_action(key, outputs, meta)
        store.objects.ok(digest)

The index is derived: an index that is missing, empty, damaged or older than
this filmc is rebuilt from `actions.log` when the store opens (`notes` says
so), and one that is behind the log reads its tail.  Every SQLite or file
system failure is a `StoreError` (a message naming the place, and what to do).
"""

from __future__ import annotations

import contextlib
import json
import os
import sqlite3
import statistics
import time
from collections.abc import Collection, Iterable, Mapping
from pathlib import Path
from typing import Any

import attrs

from ..compiler.keys import canonical
from .actionlog import NAME as LOG_NAME
from .actionlog import ActionLog
from .db import Database, StoreError, chunks, connect, disk_error
from .objects import Objects, Signature

INDEX = "index.db"
SCHEMA_VERSION = 3
INDEX_BATCH = 256  # actions indexed per transaction at most
INDEX_EVERY = 0.5  # seconds an action waits to be indexed at most
DURATION_SAMPLES = 50  # the latest steps of a backend and kind whose median `plan` uses

_SCHEMA = """
CREATE TABLE actions (key TEXT PRIMARY KEY, outputs TEXT NOT NULL, meta TEXT NOT NULL,
                      created REAL NOT NULL);
CREATE TABLE object_stats (digest TEXT PRIMARY KEY, size INTEGER NOT NULL,
                           mtime_ns INTEGER NOT NULL, inode INTEGER NOT NULL,
                           mode INTEGER NOT NULL);
CREATE TABLE meta (name TEXT PRIMARY KEY, value);
"""
# When a build last reused each action (`filmc gc --older-than`): from the log's `used` lines.
# Created where missing, so an index of an earlier filmc gains it without a rebuild.
_USED = "CREATE TABLE IF NOT EXISTS used (key TEXT PRIMARY KEY, t REAL NOT NULL)"
TOUCH_EVERY = 3600.0  # seconds: a reuse is logged when the last one recorded is older


@attrs.frozen
class Action:
    key: str
    outputs: tuple[dict, ...]  # {"output": name, "digest": d, "ext": ".png"}, declared order
    meta: dict  # backend, type, kind, seconds, cost, cost_source, remote, project, film


@attrs.frozen
class Cached:
    """One action as `filmc gc` weighs it: what it is, what it names, when it was last of use."""

    key: str
    outputs: tuple[dict, ...]
    meta: dict
    created: float  # when it was recorded
    used: float  # when a build last reused it (at least `created`)

    @property
    def digests(self) -> tuple[str, ...]:
        return tuple(o["digest"] for o in self.outputs if isinstance(o, dict) and "digest" in o)


class Store(Database):
    """One open store; its methods are safe to call from worker threads."""

    what = "the store index"
    damaged = f"delete `{{path}}`: it is rebuilt from {LOG_NAME}"

    def __init__(self, path: Path, db: sqlite3.Connection, known: dict[str, Signature]) -> None:
        super().__init__(path / INDEX, db)
        self.path = path
        self.objects = Objects(path, known)
        self.log = ActionLog(path / LOG_NAME)
        self.notes: list[str] = []  # what opening the store had to repair
        self._unindexed = 0  # actions logged since the index last caught up
        self._indexed_at = time.monotonic()
        # Which project's build records actions (`{"project": root, "film": name}`, merged
        # into each action's meta): what `filmc gc` of another project sharing the store
        # reads to know whose steps it would forget.
        self.made_by: dict[str, str] = {}

    # -- opening ----------------------------------------------------------------------------

    @classmethod
    def open(cls, path: Path, create: bool = False, objects: bool = True) -> Store | None:
        """The store at `path`; None when there is none and not `create`.  `objects`: what
        is known of each object file (`Objects.known`, which checks it before it is
        used) is read too; a lookup of actions alone does without (10 ms a feature)."""
        db_path = path / INDEX
        if not create and not db_path.exists() and not (path / LOG_NAME).exists():
            return None
        if create:
            try:
                for sub in (path, path / "objects", path / "tmp"):
                    sub.mkdir(parents=True, exist_ok=True)
                ignore = path / ".gitignore"
                if not ignore.exists():
                    ignore.write_text("# filmc's store: outputs and the build index\n*\n")
            except OSError as e:
                raise disk_error(f"create the store at `{path}`", e, path) from None
        notes = []
        try:
            db = _connect(db_path)
        except _Damaged as e:
            notes.append(_set_aside(db_path, str(e)))
            db = _connect(db_path)
        store = cls(path, db, {})
        store.notes = notes
        try:
            store._catch_up(opening=True)
            if not objects:
                return store
            with store.sql() as c:
                store.objects.known.update(
                    (d, (s, m, i, mode)) for d, s, m, i, mode in
                    c.execute("SELECT digest, size, mtime_ns, inode, mode FROM object_stats"))
        except BaseException:
            store.close()
            raise
        return store

    def _catch_up(self, opening: bool = False) -> None:
        """Index what the log holds beyond the index's offset — this build's lines and any
        another build sharing the store appended — with the objects' fresh signatures, in
        one transaction; the offset advances over exactly what was read."""
        where = str(self.path)
        try:
            with self.transaction() as db:
                db.execute(_USED)
                row = db.execute("SELECT value FROM meta WHERE name = 'log_offset'").fetchone()
                offset = int(row[0]) if row else 0
                follow = _following(where, offset)
                if self.log.size() < offset:  # shorter than the index remembers: replaced
                    offset = 0
                    follow.clear()
                count, read_to = 0, offset
                for after, record in self.log.read(offset):
                    count += self._apply(db, record, follow)
                    read_to = after
                if read_to != offset:
                    db.execute("INSERT OR REPLACE INTO meta VALUES ('log_offset', ?)",
                               (read_to,))
                self._flush_stats(db)
        except BaseException:
            _followed.pop(where, None)  # not indexed after all
            raise
        _followed[where] = (read_to, follow)
        if opening and offset == 0 and count:
            self.notes.append(f"rebuilt the store index from {LOG_NAME}: {count} cached steps")

    @staticmethod
    def _apply(db: sqlite3.Connection, record: dict, follow: dict[str, Action]) -> int:
        if "forget" in record:
            for chunk in chunks(record["forget"]):
                marks = ",".join("?" * len(chunk))
                db.execute(f"DELETE FROM actions WHERE key IN ({marks})", chunk)
                db.execute(f"DELETE FROM used WHERE key IN ({marks})", chunk)
                for key in chunk:
                    follow.pop(key, None)
            return 0
        if isinstance(record.get("used"), list):
            t = record.get("t") or time.time()
            db.executemany("INSERT INTO used VALUES (?, ?) ON CONFLICT(key) DO UPDATE "
                           "SET t = max(t, excluded.t)",
                           [(k, t) for k in record["used"] if isinstance(k, str)])
            return 0
        if "key" in record and isinstance(record.get("outputs"), list):
            db.execute("INSERT OR REPLACE INTO actions VALUES (?, ?, ?, ?)",
                       (record["key"], canonical(record["outputs"]),
                        canonical(record.get("meta") or {}), record.get("t") or time.time()))
            follow.pop(record["key"], None)  # asked for again, as the index now has it
            return 1
        return 0

    def close(self) -> None:
        with self._lock:
            if self._db is not None:
                with contextlib.suppress(sqlite3.Error, StoreError):
                    self.flush_index()
            super().close()
            self.log.close()

    def __enter__(self) -> Store:
        return self

    # -- the action cache ---------------------------------------------------------------------

    def get_actions(self, keys: Iterable[str]) -> dict[str, Action]:
        """The actions of `keys` the store holds.  (Their records decoded once a process:
        `_decoded`; and the actions this process found, not asked for again while the index
        is where this process left it: `_followed`.)"""
        global _decoded
        self.flush_index()
        found: dict[str, Action] = {}
        seen, kept = _decoded, {}
        with self.sql() as db:
            row = db.execute("SELECT value FROM meta WHERE name = 'log_offset'").fetchone()
            follow = _following(str(self.path), int(row[0]) if row else 0)
            ask = set()
            for k in keys:
                action = follow.get(k)
                if action is None:
                    ask.add(k)
                else:
                    found[k] = action
            for chunk in chunks(ask):
                marks = ",".join("?" * len(chunk))
                for row in db.execute(
                        f"SELECT key, outputs, meta FROM actions WHERE key IN ({marks})", chunk):
                    action = seen.get(row)
                    if action is None:
                        k, outputs, meta = row
                        action = Action(k, tuple(_load(outputs, self.db_path)),
                                        _load(meta, self.db_path))
                    found[row[0]] = kept[row] = follow[row[0]] = action
        if len(seen) + len(kept) > _DECODED_MAX:  # bounded: the latest read's alone
            _decoded = kept
        else:
            seen.update(kept)
        return found

    def follow_all(self) -> int:
        """Every action the index holds, kept as this process's own (`_followed`, at the
        index's offset), and when each was last used where that was lately (`_recent`): a
        process whose forks run the builds (filmc/server.py) reads them while it waits, and
        a fork's build asks the index for none of them (as long as nothing was indexed
        since), nor when they were used.  How many there are."""
        self.flush_index()
        lately = time.time() - TOUCH_EVERY
        recent = _recent.setdefault(str(self.path), {})
        with self.sql() as db:
            row = db.execute("SELECT value FROM meta WHERE name = 'log_offset'").fetchone()
            follow = _following(str(self.path), int(row[0]) if row else 0)
            for k, outputs, meta, last in db.execute(
                    "SELECT a.key, a.outputs, a.meta, max(a.created, coalesce(u.t, 0)) "
                    "FROM actions a LEFT JOIN used u ON u.key = a.key"):
                if k not in follow:
                    follow[k] = Action(k, tuple(_load(outputs, self.db_path)),
                                       _load(meta, self.db_path))
                if last >= lately:  # and what was used lately: `touch` need not ask
                    recent[k] = last
        return len(follow)

    def actions_present(self, keys: Iterable[str]) -> set[str]:
        self.flush_index()
        found: set[str] = set()
        with self.sql() as db:
            for chunk in chunks(set(keys)):
                q = f"SELECT key FROM actions WHERE key IN ({','.join('?' * len(chunk))})"
                found.update(row[0] for row in db.execute(q, chunk))
        return found

    def durations(self, recent: int = DURATION_SAMPLES) -> dict[tuple[str, str], float]:
        """(backend, step kind) → the median of the seconds its `recent` latest steps
        took (what `plan` estimates time from)."""
        self.flush_index()
        samples: dict[tuple[str, str], list[float]] = {}
        with self.sql() as db:
            for backend, kind, secs in db.execute(
                    "SELECT json_extract(meta, '$.backend'), json_extract(meta, '$.kind'), "
                    "json_extract(meta, '$.seconds') FROM actions "
                    "WHERE json_extract(meta, '$.seconds') IS NOT NULL ORDER BY created DESC"):
                got = samples.setdefault((str(backend), str(kind)), [])
                if len(got) < recent and isinstance(secs, (int, float)):
                    got.append(float(secs))
        return {k: statistics.median(v) for k, v in samples.items() if v}

    def record_action(self, key: str, outputs: list[dict], meta: dict) -> None:
        """A finished step: appended to the log (its record from now on: a build killed a
        moment later keeps it), then indexed, with the objects' signatures, in batches of
        one transaction (the index catches up with the log when the store next opens).
        Its objects must already be in place."""
        record = {"key": key, "outputs": outputs, "meta": {**meta, **self.made_by},
                  "t": time.time()}
        try:
            self.log.append([record])
        except OSError as e:
            raise disk_error(f"write `{self.log.path}`", e, self.path) from None
        self._unindexed += 1
        if self._unindexed >= INDEX_BATCH or \
                time.monotonic() - self._indexed_at > INDEX_EVERY:
            self.flush_index()

    def touch(self, keys: Iterable[str]) -> int:
        """Remember that a build reused these actions now (`filmc gc --older-than` keeps
        what was of use lately): one log line for those whose last recorded use (or
        record) is older than TOUCH_EVERY, so that a build a minute does not grow the
        log.  How many were logged.  What this process already knows was used within
        TOUCH_EVERY (`_recent`: a `build --watch` reuses the same 14,000 every round) is
        not asked of the index again."""
        self.flush_index()
        now = time.time()
        recent = _recent.setdefault(str(self.path), {})
        ask = [k for k in set(keys) if recent.get(k, 0.0) < now - TOUCH_EVERY]
        stale: list[str] = []
        with self.sql() as db:
            for chunk in chunks(ask):
                marks = ",".join("?" * len(chunk))
                for k, last in db.execute(
                        f"SELECT a.key, max(a.created, coalesce(u.t, 0)) FROM actions a "
                        f"LEFT JOIN used u ON u.key = a.key WHERE a.key IN ({marks})", chunk):
                    if last < now - TOUCH_EVERY:
                        stale.append(k)
                    else:
                        recent[k] = last
        if stale:
            try:
                self.log.append([{"used": sorted(stale)}])
            except OSError as e:
                raise disk_error(f"write `{self.log.path}`", e, self.path) from None
            self._catch_up()
            recent.update(dict.fromkeys(stale, now))
        return len(stale)

    def inventory(self) -> list[Cached]:
        """Every action the store holds, with when it was recorded and last reused."""
        self.flush_index()
        with self.sql() as db:
            rows = db.execute("SELECT a.key, a.outputs, a.meta, a.created, "
                              "max(a.created, coalesce(u.t, 0)) FROM actions a "
                              "LEFT JOIN used u ON u.key = a.key").fetchall()
        return [Cached(k, tuple(_load(o, self.db_path)), _load(m, self.db_path), created, used)
                for k, o, m, created, used in rows]

    def flush_index(self) -> None:
        """Bring the index up to the log (and the objects' signatures up to date)."""
        with self._lock:
            if not self._unindexed and not self.objects.fresh:
                return
            self._unindexed = 0
            self._indexed_at = time.monotonic()
            self._catch_up()

    def _flush_stats(self, db: sqlite3.Connection) -> None:
        fresh, self.objects.fresh = self.objects.fresh, []
        if fresh:
            db.executemany("INSERT OR REPLACE INTO object_stats VALUES (?, ?, ?, ?, ?)",
                           [(d, *sig) for d, sig in fresh])

    # -- garbage collection -----------------------------------------------------------------

    def collect(self, keep: set[str] | frozenset[str], dry_run: bool = False,
                pinned: Iterable[str] = (), since: float | None = None,
                forget: Collection[str] | None = None,
                ) -> tuple[list[str], list[tuple[str, int]]]:
        """Forget every action whose key is not in `keep` (and, given `forget`, is in it)
        and delete every object no remaining action names and `pinned` (film.lock's
        digests) does not hold — and, given `since` (a time), whose file is older than
        it: (forgotten keys, [(deleted digest, bytes)]); `dry_run` touches nothing."""
        self.flush_index()
        with self.sql() as db:
            rows = db.execute("SELECT key, outputs FROM actions").fetchall()
        drop = [k for k, _o in rows if k not in keep and (forget is None or k in forget)]
        dropped = set(drop)
        live = {o["digest"] for k, outputs in rows if k not in dropped
                for o in _load(outputs, self.db_path) if isinstance(o, dict) and "digest" in o}
        live |= set(pinned)
        try:
            dead = [(d, n) for d, n in self.objects.all() if d not in live]
            if since is not None:
                dead = [(d, n) for d, n in dead if _mtime(self.objects.path(d)) < since]
        except OSError as e:
            raise disk_error(f"read `{self.objects.root}`", e, self.path) from None
        if dry_run:
            return drop, dead
        if drop:
            try:
                self.log.append([{"forget": drop}])
            except OSError as e:
                raise disk_error(f"write `{self.log.path}`", e, self.path) from None
            self._catch_up()
        with self.transaction() as db:
            for chunk in chunks([d for d, _n in dead]):
                db.execute(f"DELETE FROM object_stats WHERE digest IN "
                           f"({','.join('?' * len(chunk))})", chunk)
        for digest, _size in dead:
            try:
                self.objects.delete(digest)
            except OSError as e:
                raise disk_error(f"delete `{self.objects.path(digest)}`", e, self.path) from None
        return drop, dead


# --- helpers --------------------------------------------------------------------------------


class _Damaged(Exception):
    pass


def _connect(db_path: Path) -> sqlite3.Connection:
    """Open the index, creating its tables; _Damaged when the file is not a usable index."""
    try:
        db = connect(db_path)
    except sqlite3.Error as e:
        raise _Damaged(str(e)) from None
    try:
        version = db.execute("PRAGMA user_version").fetchone()[0]
        if version > SCHEMA_VERSION:
            db.close()
            raise StoreError(f"the store at `{db_path.parent}` was made by a newer filmc "
                             f"(index version {version})",
                             "upgrade filmc, or point FILMC_STORE at another store")
        if version not in (0, SCHEMA_VERSION):
            raise _Damaged(f"an index of an older filmc (version {version})")
        mode = db.execute("PRAGMA journal_mode=WAL").fetchone()[0]
        if mode.lower() != "wal":
            db.close()
            raise StoreError(f"cannot put `{db_path}` in WAL mode (got `{mode}`)",
                             "keep the store on a local disk, not a network share")
        db.execute("PRAGMA synchronous=NORMAL")  # durable across crashes of filmc, in WAL
        if version == 0:
            db.execute("BEGIN IMMEDIATE")
            if db.execute("SELECT count(*) FROM sqlite_master").fetchone()[0]:
                db.execute("ROLLBACK")
                raise _Damaged("not a filmc store index")
            for statement in _SCHEMA.split(";"):
                if statement.strip():
                    db.execute(statement)
            db.execute(f"PRAGMA user_version={SCHEMA_VERSION}")
            db.execute("COMMIT")
        else:
            db.execute("SELECT key, outputs, meta, created FROM actions LIMIT 0")
            db.execute("SELECT digest, size, mtime_ns, inode, mode FROM object_stats LIMIT 0")
        return db
    except sqlite3.DatabaseError as e:  # "file is not a database", "malformed", no table
        db.close()
        raise _Damaged(str(e)) from None
    except _Damaged:
        db.close()
        raise


def _set_aside(db_path: Path, why: str) -> str:
    """Move a damaged index out of the way; it is rebuilt from the action log."""
    stamp = time.strftime("%Y%m%d-%H%M%S")
    for suffix in ("", "-wal", "-shm"):
        p = db_path.with_name(db_path.name + suffix)
        if p.exists():
            try:
                os.replace(p, p.with_name(f"{p.name}.damaged-{stamp}"))
            except OSError as e:
                raise disk_error(f"move the damaged index `{p}` aside", e, db_path.parent) from None
    return f"the store index `{db_path}` could not be used ({why}); it was set aside and is " \
           f"rebuilt from {LOG_NAME}"


def _mtime(path: Path) -> float:
    try:
        return path.stat().st_mtime
    except FileNotFoundError:
        return 0.0


# The actions `get_actions` read last, by their rows as stored (key, outputs, meta): a
# process that builds again (`filmc build --watch`) reads the same ~15,000 records of a
# feature each time, several times a build, and decoding their JSON again was two thirds
# of reading them.  Keyed by the stored text itself, so never stale (a record replaced
# under its key is a new entry; the old one goes when the memo is full).  (Their outputs
# and meta are read, never changed, by every caller.)
_decoded: dict[tuple[str, str, str], Action] = {}
# store path → key → when this process last knew it used (Store.touch)
_recent: dict[str, dict[str, float]] = {}
# store path → (the index's log offset, the actions this process found in it at that
# offset): while the index stays there (no other process indexed anything: a watch
# between builds), those are not asked for again.  Only what is found is kept; a line
# this process indexes drops its key (asked again), and any other offset starts afresh.
_followed: dict[str, tuple[int, dict[str, Action]]] = {}


def _following(where: str, offset: int) -> dict[str, Action]:
    """The actions this process knows of the store at `where` whose index is at `offset`."""
    entry = _followed.get(where)
    if entry is None or entry[0] != offset:
        entry = _followed[where] = (offset, {})
    return entry[1]
_DECODED_MAX = 60_000  # records: a feature's ~15,000 several times over


def _load(text: str, db_path: Path) -> Any:
    try:
        return json.loads(text)
    except (TypeError, ValueError):
        raise StoreError(f"the store index `{db_path}` holds a damaged entry",
                         f"delete `{db_path}`: it is rebuilt from {LOG_NAME}") from None


STORE_ENV = "FILMC_STORE"


def location(root: Path, configured: str | os.PathLike | None = None,
             environ: Mapping[str, str] | None = None) -> Path:
    """Where the store of the project at `root` lives: `$FILMC_STORE`, else the path
    filmc.toml configures (`[build] store`), else `root/.filmc`; relative to `root`."""
    chosen = (os.environ if environ is None else environ).get(STORE_ENV, "") or configured
    if not chosen:
        return root / ".filmc"
    path = Path(chosen).expanduser()
    return path if path.is_absolute() else root / path
