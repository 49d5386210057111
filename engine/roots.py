"""Which projects use a store, and what each of them needs: `projects/<id>.json`.

Several projects may share one store (`FILMC_STORE`, `[build] store`), and
`filmc gc` of one of them must not take what another needs.  So every build
writes its project's record in the store before it runs a step, and every gc
rewrites its own; a gc keeps what every other record names.

    projects/3f9a….json   one project: its folder, its film, and what it needs
    gc.lock               a gc holds it alone while it decides and deletes; builds
                          (and `filmc take add`) hold it together while they run

    {"version": 1, "root": "/home/me/wolfpack", "film": "wolfpack", "main": "film.film",
     "store": "/home/me/wolfpack/.filmc",
     "sets": {"build": {"t": 1767000000.0, "keys": [...], "digests": [...]},
              "build --offline": {...}, "gc": {...}, "takes": {...}}}

A record holds sets of needs by who wrote them: a build writes the set of its
mode (`build`, `build --offline`: each keeps the other), `filmc take add` adds
to `takes`, and the project's own gc replaces them all with one `gc` set (the
working tree as configured and offline, film.lock and the last commits).  A
set is the step keys the project needs and the object digests it pins
(film.lock's picks and takes).  Records are written as the store writes
everything (a temporary file, fsynced, renamed, the folder fsynced), read and
rewritten under `projects/.lock` (a build and a `take add` of one project may
both add a set): a crash leaves the old record or the new one.

The id is a hash of the project's folder and film, so moving a project makes
a new record; the old one names a folder that is gone, which gc reports (and
drops when asked).  A record names the store it was written in: a store that
was copied (with a copied project) or moved holds records of another store,
which say nothing of who uses this one.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import hashlib
import json
import os
import sys
import tempfile
import time
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path
from typing import Any

import attrs

from .db import disk_error
from .lock import held
from .objects import fsync_dir

VERSION = 1
FOLDER = "projects"
LOCK = "gc.lock"
BUILD, OFFLINE, GC, TAKES = "build", "build --offline", "gc", "takes"


@attrs.frozen
class Needs:
    """What a project needs of a store: step keys, and object digests it pins."""

    keys: frozenset[str] = frozenset()
    digests: frozenset[str] = frozenset()

    def __or__(self, other: Needs) -> Needs:
        return Needs(self.keys | other.keys, self.digests | other.digests)


@attrs.frozen
class Record:
    """One project's record, as read."""

    path: Path  # the record's file
    root: str  # the project's folder
    film: str  # the film's name (its folder under build/)
    main: str  # the main file, relative to `root`
    store: str  # the store it was written in
    sets: Mapping[str, tuple[float, Needs]]  # who wrote it → (when, what)

    @property
    def needs(self) -> Needs:
        out = Needs()
        for _t, needs in self.sets.values():
            out = out | needs
        return out

    @property
    def written(self) -> float:
        return max((t for t, _n in self.sets.values()), default=0.0)

    @property
    def name(self) -> str:
        return f"`{self.root}` (film `{self.film}`)"

    def exists(self) -> bool:
        """Whether the project is still there: its main file in its folder."""
        return (Path(self.root) / self.main).is_file()


@attrs.frozen
class Unreadable:
    """A record that cannot be read: what it needs is unknown."""

    path: Path
    why: str


def project_id(root: Path | str, film: str) -> str:
    return hashlib.sha256(f"{root}\n{film}".encode()).hexdigest()[:24]


def record_path(store: Path, root: Path | str, film: str) -> Path:
    return store / FOLDER / f"{project_id(root, film)}.json"


def needs_of(graph: Any, lock: Any = None) -> Needs:
    """What a compiled film needs: every step's key, and the digests its picks and takes
    pin — of the graph, and of `lock` (compiler.lock.Lock) when given, stale picks and
    shots the film no longer has included (a revert brings them back)."""
    steps = [d["step"] for d in graph._node.values()]
    keys = {step.key for step in steps}
    digests = {step.pin for step in steps if step.pin is not None}
    for picks in graph.graph.get("picks", {}).values():
        for choice in (picks.keyframe, picks.clip):
            if choice.pick is not None:
                keys.add(choice.pick.key)
                digests.add(choice.pick.digest)
    found = Needs(frozenset(keys), frozenset(digests))
    return found if lock is None else found | lock_needs(lock)


def lock_needs(lock: Any) -> Needs:
    """What a film.lock (compiler.lock.Lock) pins: its picks' keys and digests, its takes'
    digests."""
    keys: set[str] = set()
    digests: set[str] = set()
    for entry in lock.shots.values():
        for p in (entry.keyframe, entry.clip):
            if p is not None:
                keys.add(p.key)
                digests.add(p.digest)
        digests |= {t.digest for t in entry.takes}
    return Needs(frozenset(keys), frozenset(digests))


# --- reading ----------------------------------------------------------------------------------


def read_all(store: Path) -> list[Record | Unreadable]:
    """Every project record of the store, in a stable order."""
    folder = store / FOLDER
    try:
        names = sorted(n for n in os.listdir(folder) if n.endswith(".json"))
    except FileNotFoundError:
        return []
    except OSError as e:
        raise disk_error(f"read `{folder}`", e, store) from None
    return [read(folder / n) for n in names]


def read(path: Path) -> Record | Unreadable:
    try:
        data = json.loads(path.read_bytes())
    except FileNotFoundError:
        return Unreadable(path, "it is gone")
    except OSError as e:
        return Unreadable(path, e.strerror or str(e))
    except ValueError as e:
        return Unreadable(path, f"not JSON: {e}")
    if not isinstance(data, dict):
        return Unreadable(path, "not a project record")
    version = data.get("version")
    if version != VERSION:
        return Unreadable(path, f"version {version!r}, where this filmc reads {VERSION}"
                                + (" (a newer filmc wrote it)" if isinstance(version, int)
                                   and version > VERSION else ""))
    root, film, main, store, sets = (data.get(k) for k in ("root", "film", "main", "store",
                                                            "sets"))
    if not (isinstance(root, str) and isinstance(film, str) and isinstance(main, str)
            and isinstance(store, str) and isinstance(sets, dict)):
        return Unreadable(path, "`root`, `film`, `main`, `store` or `sets` is missing")
    out: dict[str, tuple[float, Needs]] = {}
    for label, body in sets.items():
        keys = body.get("keys") if isinstance(body, dict) else None
        digests = body.get("digests") if isinstance(body, dict) else None
        t = body.get("t") if isinstance(body, dict) else None
        if not (isinstance(keys, list) and isinstance(digests, list)
                and isinstance(t, (int, float)) and all(isinstance(k, str) for k in keys)
                and all(isinstance(d, str) for d in digests)):
            return Unreadable(path, f"its set `{label}` is malformed")
        out[label] = (float(t), Needs(frozenset(keys), frozenset(digests)))
    return Record(path, root, film, main, store, out)


# --- writing ----------------------------------------------------------------------------------


def update(store: Path, root: Path, film: str, main: str, label: str, needs: Needs, *,
           replace: bool = False, add: bool = False) -> None:
    """Write the project's record with `needs` as its set `label`: beside its other sets,
    instead of them all (`replace`, what its gc does), or added to what the set already
    holds (`add`)."""
    path = record_path(store, root, film)
    with _writing(store):
        sets: dict[str, tuple[float, Needs]] = {}
        if not replace:
            old = read(path)
            if isinstance(old, Record):
                sets = dict(old.sets)
        if add and label in sets:
            needs = sets[label][1] | needs
        sets[label] = (time.time(), needs)
        doc = {"version": VERSION, "root": str(root), "film": film, "main": main,
               "store": os.path.realpath(store),
               "sets": {k: {"t": t, "keys": sorted(n.keys), "digests": sorted(n.digests)}
                        for k, (t, n) in sorted(sets.items())}}
        _write(store, path, json.dumps(doc, ensure_ascii=False, separators=(",", ":")).encode())


def _writing(store: Path) -> contextlib.AbstractContextManager[None]:
    """One record rewrite at a time in a store (`projects/.lock`, held for milliseconds)."""
    return held(store / FOLDER / ".lock", store)


def drop(record: Record | Unreadable) -> None:
    """Delete a record (a project that is gone, or an unreadable record set aside)."""
    try:
        record.path.unlink(missing_ok=True)
        fsync_dir(record.path.parent)
    except OSError as e:
        raise disk_error(f"delete `{record.path}`", e, record.path.parent) from None


def _write(store: Path, path: Path, data: bytes) -> None:
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp_dir = store / "tmp"
        tmp_dir.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=tmp_dir, prefix="project-")
        try:
            with os.fdopen(fd, "wb") as f:
                f.write(data)
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
        fsync_dir(path.parent)
    except OSError as e:
        raise disk_error(f"write `{path}`", e, store) from None


# --- the store's gc lock ----------------------------------------------------------------------


@contextlib.contextmanager
def store_lock(store: Path, holder: str, shared: bool = False) -> Iterator[None]:
    """The store's gc lock (a `flock`; the kernel drops it when its holder dies, however
    it dies).  A build holds it shared from before it records its needs until it ends,
    `filmc take add` while it stores a take and records it, and a gc exclusively while
    it reads the records, decides and deletes: a gc never deletes under a build of
    another project sharing the store (it waits for the builds, and they for it).
    `holder` ("gc") is written in it for the message of whoever waits."""
    try:
        store.mkdir(parents=True, exist_ok=True)
        fd = os.open(store / LOCK, os.O_RDWR | os.O_CREAT, 0o644)
    except OSError as e:
        raise disk_error(f"create `{store / LOCK}`", e, store) from None
    mode = fcntl.LOCK_SH if shared else fcntl.LOCK_EX
    try:
        try:
            fcntl.flock(fd, mode | fcntl.LOCK_NB)
        except OSError as e:
            if e.errno not in (errno.EAGAIN, errno.EACCES):
                raise disk_error(f"lock `{store / LOCK}`", e, store) from None
            if shared:
                who = os.pread(fd, 64, 0).decode(errors="replace").strip() or "`filmc gc`"
                print(f"filmc: waiting for {who} on the store `{store}` to finish…",
                      file=sys.stderr)
            else:
                print(f"filmc: waiting for the builds that use the store `{store}` to "
                      f"finish…", file=sys.stderr)
            fcntl.flock(fd, mode)
        if not shared:
            with contextlib.suppress(OSError):
                os.ftruncate(fd, 0)
                os.pwrite(fd, f"`filmc {holder}` (pid {os.getpid()})".encode(), 0)
        yield
    finally:
        os.close(fd)


def record_build(store: Path, program: Any) -> None:
    """A build's record: what its film needs, as the set of its mode (offline when every
    step is the local backend's).  The build holds the store's lock, shared."""
    root = Path(program.root).resolve()
    offline = all(name == "local" for name in program.backends) or all(
        d["step"].backend in (None, "local") for d in program.graph._node.values())
    update(store, root, program.name, _main(program, root), OFFLINE if offline else BUILD,
           needs_of(program.graph))


def record_take(store: Path, program: Any, digests: Iterable[str]) -> None:
    """A take the user added (`filmc take add`): pinned before any build names it.  The
    caller holds the store's lock, shared, from before it stored the take."""
    root = Path(program.root).resolve()
    update(store, root, program.name, _main(program, root), TAKES,
           Needs(digests=frozenset(digests)), add=True)


def made_by(program: Any) -> dict[str, str]:
    """What each action a build records says of who made it (`Store.made_by`)."""
    return {"project": str(Path(program.root).resolve()), "film": program.name}


def _main(program: Any, root: Path) -> str:
    lock = Path(program.lock) if program.lock is not None else None
    if lock is None:
        return ""
    main = lock.with_suffix(".film").resolve()
    try:
        return str(main.relative_to(root))
    except ValueError:
        return str(main)

