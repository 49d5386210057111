"""The store: content-addressed objects and the index that maps step keys to them.

Layout (default `<project>/.filmc/`; `FILMC_STORE` overrides it, a path relative
to the project root unless absolute; then a configured path; see `location`):

    .filmc/
      .gitignore         `*`: the store never enters git
      index.db           SQLite, WAL mode: the action cache and the last build
      objects/ab/abcd…   outputs, read-only files named by their sha256
      tmp/               objects being written (same file system: rename is atomic)

Tables:

    actions(key PRIMARY KEY, outputs JSON, meta JSON, created)
        the action cache: a step key → its outputs (object digests, as the
        executor lays them out) and metadata (backend, duration, cost...)
    last_build(node PRIMARY KEY, key, record JSON)
        what the last build recorded per node id: its key and the record the key
        hashes (graph.Step.record), so that `filmc plan` can say what changed

    store = Store.open(root)                  # None when no build made one yet
    store = Store.open(root, create=True)     # the executor
    with store:
        store.actions_present(keys)           # the cached keys among `keys`
        store.record_action(key, {"image": digest}, {"backend": "local", ...})
        store.record_last_build((node, key, record) for ...)

WAL lets `filmc plan` read while a build writes.  Every SQLite or file-system
failure surfaces as `StoreError` (a message and a hint), never a traceback.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import sqlite3
import tempfile
import threading
import time
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path

import attrs

from .keys import canonical
from .noop import store_location

STORE_DIR = ".filmc"
STORE_ENV = "FILMC_STORE"
INDEX = "index.db"
SCHEMA_VERSION = 2
CHUNK = 500  # host parameters per IN (...): well under SQLite's oldest limit of 999

_DIGEST = re.compile(r"[0-9a-f]{64}\Z")
_SCHEMA = """
CREATE TABLE IF NOT EXISTS actions (
    key TEXT PRIMARY KEY,
    outputs TEXT NOT NULL,
    meta TEXT NOT NULL,
    created REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS last_build (
    node TEXT PRIMARY KEY,
    key TEXT NOT NULL,
    record TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS object_stats (
    digest TEXT PRIMARY KEY,
    size INTEGER NOT NULL,
    mtime_ns INTEGER NOT NULL,
    inode INTEGER NOT NULL
);
"""


class StoreError(Exception):
    """The store cannot be read or written: a message, and a hint for the user."""

    def __init__(self, message: str, hint: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint

    def render(self) -> str:
        return f"error: {self.message}" + (f"\n  = help: {self.hint}" if self.hint else "")


@attrs.frozen
class Action:
    key: str
    outputs: object
    meta: dict
    created: float


def location(root: Path, configured: str | os.PathLike | None = None,
             environ: dict | None = None) -> Path:
    """Where the store of the project at `root` lives: `$FILMC_STORE`, else the
    configured path, else `root/.filmc`.  Relative paths are relative to `root`."""
    return store_location(root, configured, environ)


class Store:
    """One open store.  Thread-safe: one connection, one lock around it."""

    def __init__(self, path: Path, db: sqlite3.Connection) -> None:
        self.path = path
        self.db_path = path / INDEX
        self.objects = path / "objects"
        self._db: sqlite3.Connection | None = db
        self._lock = threading.RLock()
        self._stats: dict[str, tuple[int, int, int]] | None = None  # digest → verified stat
        self._pending_stats: list[tuple[str, int, int, int]] = []

    # -- opening and closing ------------------------------------------------------------

    @classmethod
    def open(cls, root: Path, create: bool = False, *, configured: str | None = None,
             environ: dict | None = None) -> Store | None:
        """The store of the project at `root`; None when there is none and not `create`."""
        path = location(Path(root), configured, environ)
        db_path = path / INDEX
        if not create and not db_path.is_file():
            return None
        if create:
            try:
                for sub in (path, path / "objects", path / "tmp"):
                    sub.mkdir(parents=True, exist_ok=True)
                ignore = path / ".gitignore"
                if not ignore.exists():
                    ignore.write_text("# filmc's store: outputs and the build index\n*\n")
            except OSError as e:
                raise StoreError(f"cannot create the store at `{path}`: {e.strerror or e}",
                                 f"check the folder's permissions, or set {STORE_ENV} "
                                 "to another place") from None
        with _errors(db_path):
            db = sqlite3.connect(db_path, timeout=30, isolation_level=None,
                                 check_same_thread=False)
        store = cls(path, db)
        try:
            store._setup()
        except BaseException:
            db.close()
            raise
        return store

    def _setup(self) -> None:
        with self._sql() as db:
            version = db.execute("PRAGMA user_version").fetchone()[0]
            if version > SCHEMA_VERSION:
                raise StoreError(f"the store at `{self.path}` was made by a newer filmc "
                                 f"(index version {version})",
                                 "upgrade filmc, or point FILMC_STORE at another store")
            mode = db.execute("PRAGMA journal_mode=WAL").fetchone()[0]
            if mode.lower() != "wal":
                raise StoreError(f"cannot put `{self.db_path}` in WAL mode (got `{mode}`)",
                                 "keep the store on a local disk, not a network share")
            db.execute("PRAGMA synchronous=NORMAL")  # durable across crashes of filmc in WAL
            if version > 0:  # an existing index: check that it holds what we expect
                db.execute("SELECT key, outputs, meta, created FROM actions LIMIT 0")
                db.execute("SELECT node, key, record FROM last_build LIMIT 0")
            if version < SCHEMA_VERSION:  # a new index, or an older one: add what is missing
                db.execute("BEGIN IMMEDIATE")
                try:
                    for statement in _SCHEMA.split(";"):
                        if statement.strip():
                            db.execute(statement)
                    db.execute(f"PRAGMA user_version={SCHEMA_VERSION}")
                except BaseException:
                    db.execute("ROLLBACK")
                    raise
                db.execute("COMMIT")

    def close(self) -> None:
        with self._lock:
            if self._db is not None:
                if self._pending_stats:
                    with contextlib.suppress(sqlite3.Error, StoreError), self._transaction() as db:
                        self._flush_stats(db)
                self._db.close()
                self._db = None

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    @contextmanager
    def _sql(self) -> Iterator[sqlite3.Connection]:
        with self._lock, _errors(self.db_path):
            if self._db is None:
                raise StoreError("the store is closed", "this is a bug in filmc: please report it")
            yield self._db

    @contextmanager
    def _transaction(self) -> Iterator[sqlite3.Connection]:
        with self._sql() as db:
            db.execute("BEGIN IMMEDIATE")
            try:
                yield db
            except BaseException:
                db.execute("ROLLBACK")
                raise
            db.execute("COMMIT")

    # -- the action cache -----------------------------------------------------------------

    def has_action(self, key: str) -> bool:
        with self._sql() as db:
            return db.execute("SELECT 1 FROM actions WHERE key = ?", (key,)).fetchone() is not None

    def actions_present(self, keys: Iterable[str]) -> set[str]:
        """The keys among `keys` that the action cache holds (chunked IN queries)."""
        found: set[str] = set()
        with self._sql() as db:
            for chunk in _chunks(set(keys)):
                q = f"SELECT key FROM actions WHERE key IN ({','.join('?' * len(chunk))})"
                found.update(row[0] for row in db.execute(q, chunk))
        return found

    def get_action(self, key: str) -> Action | None:
        with self._sql() as db:
            row = db.execute("SELECT key, outputs, meta, created FROM actions WHERE key = ?",
                             (key,)).fetchone()
        if row is None:
            return None
        return Action(row[0], _load(row[1], self.db_path), _load(row[2], self.db_path), row[3])

    def get_actions(self, keys: Iterable[str]) -> dict[str, Action]:
        """The cached actions among `keys`, a few queries for thousands of keys."""
        found: dict[str, Action] = {}
        with self._sql() as db:
            for chunk in _chunks(keys):
                marks = ",".join("?" * len(chunk))
                for k, outputs, meta, created in db.execute(
                        f"SELECT key, outputs, meta, created FROM actions WHERE key IN ({marks})",
                        chunk):
                    found[k] = Action(k, _load(outputs, self.db_path), _load(meta, self.db_path),
                                      created)
        return found

    def record_action(self, key: str, outputs: object, meta: dict | None = None) -> None:
        """Remember that the step with `key` produced `outputs` (object digests)."""
        out_json, meta_json = canonical(outputs), canonical(meta or {})
        with self._transaction() as db:
            db.execute("INSERT OR REPLACE INTO actions (key, outputs, meta, created) "
                       "VALUES (?, ?, ?, ?)", (key, out_json, meta_json, time.time()))

    # -- the last build -------------------------------------------------------------------

    def last_keys(self, nodes: Iterable[str]) -> dict[str, str]:
        """node → the key the last build recorded, for those of `nodes` it recorded."""
        out: dict[str, str] = {}
        with self._sql() as db:
            for chunk in _chunks(set(nodes)):
                q = f"SELECT node, key FROM last_build WHERE node IN ({','.join('?' * len(chunk))})"
                out.update(db.execute(q, chunk))
        return out

    def last_records(self, nodes: Iterable[str]) -> dict[str, tuple[str, dict]]:
        """node → (key, record) as the last build recorded them, for those it recorded."""
        out: dict[str, tuple[str, dict]] = {}
        with self._sql() as db:
            for chunk in _chunks(set(nodes)):
                q = (f"SELECT node, key, record FROM last_build "
                     f"WHERE node IN ({','.join('?' * len(chunk))})")
                rows = db.execute(q, chunk).fetchall()
                out.update((n, (k, _load(r, self.db_path))) for n, k, r in rows)
        return out

    def all_last(self) -> dict[str, tuple[str, dict]]:
        with self._sql() as db:
            rows = db.execute("SELECT node, key, record FROM last_build").fetchall()
        return {n: (k, _load(r, self.db_path)) for n, k, r in rows}

    def record_last_build(self, rows: Iterable[tuple[str, str, dict]], *,
                          replace: bool = False) -> int:
        """Record (node, key, record) rows in one transaction; nodes not in `rows` keep
        what an earlier build recorded unless `replace` (then only `rows` remain).
        Returns how many rows were written."""
        n = 0
        with self._transaction() as db:
            if replace:
                db.execute("DELETE FROM last_build")
            for node, key, record in rows:
                db.execute("INSERT OR REPLACE INTO last_build (node, key, record) VALUES (?, ?, ?)",
                           (node, key, canonical(record)))
                n += 1
        return n

    # -- garbage collection ------------------------------------------------------------------

    def collect(self, keep: set[str], dry_run: bool = False) -> tuple[list[str], list[tuple[str, int]]]:
        """Forget every action whose key is not in `keep`, and delete every object no kept
        action names.  Returns (forgotten keys, [(deleted object digest, bytes)]); with
        `dry_run`, what would go, touching nothing."""
        with self._sql() as db:
            rows = db.execute("SELECT key, outputs FROM actions").fetchall()
        drop = [k for k, _o in rows if k not in keep]
        live = {o["digest"] for k, outputs in rows if k in keep
                for o in _load(outputs, self.db_path) if isinstance(o, dict) and "digest" in o}
        dead: list[tuple[str, int]] = []
        if self.objects.is_dir():
            for sub in sorted(self.objects.iterdir()):
                for obj in sorted(sub.iterdir()) if sub.is_dir() else ():
                    if obj.name not in live:
                        dead.append((obj.name, obj.stat().st_size))
        if dry_run:
            return drop, dead
        with self._transaction() as db:
            for chunk in _chunks(drop):
                marks = ",".join("?" * len(chunk))
                db.execute(f"DELETE FROM actions WHERE key IN ({marks})", chunk)
            for chunk in _chunks([d for d, _n in dead]):
                marks = ",".join("?" * len(chunk))
                db.execute(f"DELETE FROM object_stats WHERE digest IN ({marks})", chunk)
        for digest, _size in dead:
            path = self.object_path(digest)
            with contextlib.suppress(OSError):
                os.chmod(path, 0o644)
                path.unlink()
            if self._stats is not None:
                self._stats.pop(digest, None)
        return drop, dead

    # -- objects ---------------------------------------------------------------------------

    def object_path(self, digest: str) -> Path:
        if not _DIGEST.match(digest):
            raise StoreError(f"`{digest}` is not an object digest",
                             "digests are 64 lowercase hex characters (sha256)")
        return self.objects / digest[:2] / digest

    def has_object(self, digest: str) -> bool:
        return self.object_path(digest).is_file()

    def _install(self, src: Path, digest: str) -> str:
        """Make the fsynced file `src` (content `digest`) the object: renamed into place,
        read-only, the folder entry fsynced; dropped if an intact copy is there already."""
        final = self.object_path(digest)
        if final.is_file() and self.object_ok(digest):
            src.unlink()
            return digest
        final.parent.mkdir(parents=True, exist_ok=True)
        os.chmod(src, 0o444)
        os.replace(src, final)
        _fsync_dir(final.parent)
        self._remember_stat(digest, final.stat())
        return digest

    def take_object(self, src: Path) -> str:
        """Store a file that lives on the store's own disk (a build's work folder) by
        renaming it into place: hashed and fsynced where it is, never copied."""
        try:
            h = hashlib.sha256()
            with open(src, "rb") as f:
                while block := f.read(1 << 20):
                    h.update(block)
                os.fsync(f.fileno())
            return self._install(src, h.hexdigest())
        except OSError as e:
            if e.errno == 18:  # EXDEV: another disk after all
                return self.put_object(src)
            raise StoreError(f"cannot store `{src}` in `{self.objects}`: {e.strerror or e}",
                             "check free disk space and the store folder's permissions") from None

    def put_object(self, src: Path | bytes) -> str:
        """Store a file (or bytes) as a read-only object; return its sha256 digest.
        Written to tmp/, fsynced, then renamed into place: a reader never sees half
        an object, and a crash leaves at worst a stray file in tmp/."""
        tmp_dir = self.path / "tmp"
        try:
            tmp_dir.mkdir(parents=True, exist_ok=True)
            fd, tmp_name = tempfile.mkstemp(dir=tmp_dir, prefix="obj-")
            tmp = Path(tmp_name)
            try:
                h = hashlib.sha256()
                with os.fdopen(fd, "wb") as out:
                    if isinstance(src, (bytes, bytearray, memoryview)):
                        h.update(src)
                        out.write(src)
                    else:
                        with open(src, "rb") as f:
                            while block := f.read(1 << 20):
                                h.update(block)
                                out.write(block)
                    out.flush()
                    os.fsync(out.fileno())
                return self._install(tmp, h.hexdigest())
            except BaseException:
                tmp.unlink(missing_ok=True)
                raise
        except OSError as e:
            what = f"`{src}`" if isinstance(src, Path) else "an output"
            raise StoreError(f"cannot store {what} in `{self.objects}`: {e.strerror or e}",
                             "check free disk space and the store folder's permissions") from None

    def object_ok(self, digest: str) -> bool:
        """Whether an object is intact, cheaply: an object whose size, mtime and inode are
        the ones recorded when it was last verified is trusted (as Bazel's digest cache
        does); any other is hashed again.  A changed or damaged object fails."""
        try:
            st = self.object_path(digest).stat()
        except OSError:
            return False
        if self._stats is None:
            with self._sql() as db:
                self._stats = {d: (size, mtime, ino) for d, size, mtime, ino
                               in db.execute("SELECT digest, size, mtime_ns, inode FROM object_stats")}
        if self._stats.get(digest) == (st.st_size, st.st_mtime_ns, st.st_ino):
            return True
        if not self.verify(digest):
            return False
        self._remember_stat(digest, st)
        return True

    def _remember_stat(self, digest: str, st: os.stat_result) -> None:
        """Note a verified object's stat; written with the next transaction (or at close)."""
        sig = (st.st_size, st.st_mtime_ns, st.st_ino)
        with self._lock:
            self._pending_stats.append((digest, *sig))
        if self._stats is not None:
            self._stats[digest] = sig

    def _flush_stats(self, db: sqlite3.Connection) -> None:
        with self._lock:
            pending, self._pending_stats = self._pending_stats, []
        if pending:
            db.executemany("INSERT OR REPLACE INTO object_stats VALUES (?, ?, ?, ?)", pending)

    def record_step(self, node: str, key: str, record: dict, outputs: object,
                    meta: dict | None = None) -> None:
        """What a build does when a step finishes, in one transaction: the action (key →
        outputs), the node's last-build record, and the stats of the objects it wrote."""
        row = (key, canonical(outputs), canonical(meta or {}), time.time())
        with self._transaction() as db:
            db.execute("INSERT OR REPLACE INTO actions (key, outputs, meta, created) "
                       "VALUES (?, ?, ?, ?)", row)
            db.execute("INSERT OR REPLACE INTO last_build (node, key, record) VALUES (?, ?, ?)",
                       (node, key, canonical(record)))
            self._flush_stats(db)

    def verify(self, digest: str) -> bool:
        """Whether the object exists and its content still hashes to its name."""
        path = self.object_path(digest)
        h = hashlib.sha256()
        try:
            with open(path, "rb") as f:
                while block := f.read(1 << 20):
                    h.update(block)
        except OSError:
            return False
        return h.hexdigest() == digest


# --- helpers ------------------------------------------------------------------------------


def _chunks(items: Iterable[str]) -> Iterator[list[str]]:
    chunk: list[str] = []
    for item in items:
        chunk.append(item)
        if len(chunk) == CHUNK:
            yield chunk
            chunk = []
    if chunk:
        yield chunk


def _load(text: str, db_path: Path) -> object:
    try:
        return json.loads(text)
    except (TypeError, ValueError):
        raise StoreError(f"the store index `{db_path}` holds a damaged entry",
                         _RESET_HINT.format(path=db_path)) from None


_RESET_HINT = ("delete `{path}` (and its -wal and -shm files) to start a fresh index; "
               "the objects stay, but every step will run again")


@contextmanager
def _errors(db_path: Path) -> Iterator[None]:
    """SQLite and OS errors as StoreError, with what to do about them."""
    try:
        yield
    except StoreError:
        raise
    except sqlite3.OperationalError as e:
        msg = str(e)
        if "locked" in msg or "busy" in msg:
            raise StoreError(f"the store index `{db_path}` is busy: {msg}",
                             "another filmc is writing to it; wait for it to finish") from None
        if "no such table" in msg or "no such column" in msg:
            raise StoreError(f"`{db_path}` is not a filmc store index ({msg})",
                             _RESET_HINT.format(path=db_path)) from None
        raise StoreError(f"cannot use the store index `{db_path}`: {msg}",
                         "check free disk space and the store folder's permissions") from None
    except sqlite3.DatabaseError as e:  # "file is not a database", "malformed"...
        raise StoreError(f"the store index `{db_path}` is damaged: {e}",
                         _RESET_HINT.format(path=db_path)) from None
    except OSError as e:
        raise StoreError(f"cannot open the store index `{db_path}`: {e.strerror or e}",
                         "check the store folder's permissions") from None


def _fsync_dir(path: Path) -> None:
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)
