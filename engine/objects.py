"""The object store: every output, a read-only file named by its sha256.

    objects/ab/abcd…   the objects
    tmp/               files being written (the same disk, so a rename is atomic)

An object is written to `tmp/`, fsynced, renamed into place and the folder
fsynced: a reader never sees half an object, and a crash leaves at worst a
stray file in `tmp/`.  Build outputs are hard links to objects, never copies.

Checking an object is cheap when nothing touched it: `trusted` compares the
file's size, mtime, inode and mode with the signature recorded when it was last
verified (as Bazel's digest cache does); anything else, a `chmod 000` included,
means hashing it again (`verify`), which the engine does off its event loop.
"""

from __future__ import annotations

import hashlib
import os
import re
import tempfile
from pathlib import Path

Signature = tuple[int, int, int, int]  # size, mtime_ns, inode, mode

_DIGEST = re.compile(r"[0-9a-f]{64}\Z")
_EXDEV = 18


def signature(st: os.stat_result) -> Signature:
    return (st.st_size, st.st_mtime_ns, st.st_ino, st.st_mode)


def is_digest(text: str) -> bool:
    return bool(_DIGEST.match(text))


def hash_file(path: Path | str) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(1 << 20):
            h.update(block)
    return h.hexdigest()


_PATHS_KEPT = 200_000
_paths: dict[str, Path] = {}  # Objects.path's


class Objects:
    """The objects of one store.  `known` maps digests to their verified signatures; the
    store persists it (`fresh` collects what changed since it last did)."""

    def __init__(self, root: Path, known: dict[str, Signature]) -> None:
        self.root = root / "objects"
        self._root = str(self.root)
        self.tmp = root / "tmp"
        self.known = known
        self.fresh: list[tuple[str, Signature]] = []
        self._shards: set[Path] = set()  # shard folders known to exist

    def path(self, digest: str) -> Path:
        """The object's path.  The same Path object for the same object in one process (a
        feature's export names 15,000, at every rebuild of `build --watch`)."""
        where = self.where(digest)
        found = _paths.get(where)
        if found is None:
            if len(_paths) >= _PATHS_KEPT:
                _paths.clear()
            found = _paths[where] = Path(where)
        return found

    def where(self, digest: str) -> str:
        """`path` as a string: a rebuild of a feature film checks tens of thousands of
        objects, and two pathlib joins each cost more than the stat."""
        if not is_digest(digest):
            raise ValueError(f"`{digest}` is not an object digest")
        return f"{self._root}/{digest[:2]}/{digest}"

    def exists(self, digest: str) -> bool:
        return os.path.isfile(self.where(digest))

    # -- checking -------------------------------------------------------------------------

    def trusted(self, digest: str) -> bool | None:
        """True: intact by its signature; False: missing or unreadable; None: it changed
        since it was verified, and must be hashed again (`verify`)."""
        try:
            st = os.stat(self.where(digest))
        except OSError:
            return False
        if self.known.get(digest) == signature(st):
            return True
        return None

    def verify(self, digest: str) -> bool:
        """Hash the object again; remember its signature when it is intact."""
        path = self.path(digest)
        try:
            st = path.stat()
            ok = hash_file(path) == digest
        except OSError:
            return False
        if ok:
            self._remember(digest, st)
        return ok

    def ok(self, digest: str) -> bool:
        t = self.trusted(digest)
        return t if t is not None else self.verify(digest)

    def _remember(self, digest: str, st: os.stat_result) -> None:
        self._remember_sig(digest, signature(st))

    def _remember_sig(self, digest: str, sig: Signature) -> None:
        self.known[digest] = sig
        self.fresh.append((digest, sig))

    # -- writing --------------------------------------------------------------------------

    def take(self, src: Path) -> str:
        """Store a file on the store's own disk (a build's work folder) by renaming it into
        place: hashed, made read-only and fsynced where it is (one open), never copied."""
        h = hashlib.sha256()
        with open(src, "rb") as f:
            while block := f.read(1 << 20):
                h.update(block)
            os.fchmod(f.fileno(), 0o444)
            os.fsync(f.fileno())
            st = os.fstat(f.fileno())
        try:
            return self._install(src, h.hexdigest(), st)
        except OSError as e:
            if e.errno == _EXDEV:  # another disk after all
                return self.put(src)
            raise

    def put(self, src: Path | bytes) -> str:
        """Store a file (or bytes) as an object; its digest."""
        self.tmp.mkdir(parents=True, exist_ok=True)
        fd, name = tempfile.mkstemp(dir=self.tmp, prefix="obj-")
        tmp = Path(name)
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
                os.fchmod(out.fileno(), 0o444)
                os.fsync(out.fileno())
                st = os.fstat(out.fileno())
            return self._install(tmp, h.hexdigest(), st)
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise

    def _install(self, src: Path, digest: str, st: os.stat_result) -> str:
        """Rename the read-only, fsynced file `src` (whose stat is `st`) into place as the
        object `digest`, and fsync the folder entry; drop it when an intact copy is there."""
        final = self.path(digest)
        if self.trusted(digest) or (final.exists() and self.verify(digest)):
            src.unlink()
            return digest
        shard = final.parent
        if shard not in self._shards:
            shard.mkdir(parents=True, exist_ok=True)
            self._shards.add(shard)
        os.replace(src, final)
        fsync_dir(shard)
        self._remember_sig(digest, signature(st))  # a rename keeps size, mtime, inode, mode
        return digest

    def delete(self, digest: str) -> None:
        path = self.path(digest)
        try:
            os.chmod(path, 0o644)
            path.unlink()
        except FileNotFoundError:
            pass
        self.known.pop(digest, None)
        self._shards.discard(path.parent)

    def all(self) -> list[tuple[str, int]]:
        """(digest, size) of every object on disk."""
        out = []
        if self.root.is_dir():
            for sub in sorted(self.root.iterdir()):
                if sub.is_dir():
                    for obj in sorted(sub.iterdir()):
                        if is_digest(obj.name):
                            out.append((obj.name, obj.stat().st_size))
        return out


def fsync_dir(path: Path) -> None:
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
