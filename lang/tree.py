"""Where a film's sources are read from: the working tree, or a git revision.

Every file the compiler reads (the `.film` files, `filmc.toml`, `film.lock`, templates,
reference images and the files backend settings name) goes through the source tree in
use, so that `filmc diff HEAD~3` compiles an old revision in memory, without a checkout
and without touching the working tree.  `GitTree` reads a commit with `git ls-tree` and
one `git cat-file --batch` process; paths outside the repository (the standard
library's own files) still come from the file system.  A diagnostic about a file of a
revision names it `REV:path`.

The tree in use is a context variable (`using(tree)`), so the stages keep their
signatures and a thread or an asyncio task can read another revision.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import posixpath
import stat
import subprocess
from collections.abc import Iterator
from contextvars import ContextVar
from pathlib import Path

import attrs


@attrs.frozen
class Entry:
    """What a path is, once links are followed: "file", "dir" or "other" (a FIFO, a device)."""

    kind: str
    size: int = 0


class TreeError(Exception):
    """A revision that cannot be read: a message and a hint, for a diagnostic."""

    def __init__(self, message: str, hint: str | None = None) -> None:
        super().__init__(message)
        self.message, self.hint = message, hint


class WorkTree:
    """The files on disk: what every command reads unless told a revision."""

    label: str | None = None

    def __init__(self) -> None:
        self._digests: dict[tuple[str, int, int, int, int], str] = {}

    def entry(self, path: Path) -> Entry | None:
        """What `path` is, links followed; None when it does not exist."""
        try:
            st = os.stat(path)
        except (FileNotFoundError, NotADirectoryError):
            return None
        if stat.S_ISREG(st.st_mode):
            return Entry("file", st.st_size)
        return Entry("dir" if stat.S_ISDIR(st.st_mode) else "other")

    def lexists(self, path: Path) -> bool:
        return os.path.lexists(path)

    def is_file(self, path: Path) -> bool:
        try:
            e = self.entry(path)
        except OSError:
            return False
        return e is not None and e.kind == "file"

    def is_dir(self, path: Path) -> bool:
        try:
            e = self.entry(path)
        except OSError:
            return False
        return e is not None and e.kind == "dir"

    def read_bytes(self, path: Path) -> bytes:
        with open(path, "rb") as f:
            return f.read()

    def listdir(self, path: Path) -> list[str]:
        return sorted(os.listdir(path))

    def realpath(self, path: Path) -> Path:
        return Path(os.path.realpath(path))

    def digest(self, path: Path) -> str:
        """sha256 of a file's bytes, memoised per (path, inode, size, mtime, ctime).  The
        ctime matters: `cp -p`, unpacking an archive or `touch -r` can give new bytes of
        the same size the old mtime, never the old ctime."""
        st = os.stat(path)
        k = (str(path), st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns)
        if k not in self._digests:
            h = hashlib.sha256()
            with open(path, "rb") as f:
                for chunk in iter(lambda: f.read(1 << 20), b""):
                    h.update(chunk)
            self._digests[k] = h.hexdigest()
        return self._digests[k]

    def shown(self, path: Path, display: str) -> str:
        """How a diagnostic names `path` (`display` is its name in the working tree)."""
        return display


WORK = WorkTree()
MAX_LINKS = 40  # links followed in one path, as the kernel's ELOOP limit


class GitTree(WorkTree):
    """One commit of a git repository, read without a checkout."""

    def __init__(self, repo: Path, rev: str) -> None:
        super().__init__()
        self.repo = Path(os.path.realpath(repo))
        self.label = rev
        self.commit = _git(self.repo, "rev-parse", "--verify", "--quiet", f"{rev}^{{commit}}",
                           error=f"`{rev}` is not a commit of this repository",
                           hint="name a commit, a branch or a tag: `HEAD`, `HEAD~1`, `main`, "
                                "a hash (`git log --oneline` lists them)").strip()
        self.files: dict[str, tuple[str, str, int]] = {}  # path → (mode, blob, size)
        self.dirs: set[str] = {""}
        out = _git(self.repo, "ls-tree", "-r", "-z", "-l", "--full-tree", self.commit)
        for line in out.split("\0"):
            if not line:
                continue
            meta, name = line.split("\t", 1)
            mode, kind, blob, size = meta.split(None, 3)
            if kind != "blob":
                continue  # a submodule: not part of this repository's files
            self.files[name] = (mode, blob, int(size) if size.strip().isdigit() else 0)
            parent = posixpath.dirname(name)
            while parent not in self.dirs:
                self.dirs.add(parent)
                parent = posixpath.dirname(parent)
        self._blobs: dict[str, bytes] = {}
        self._cat: subprocess.Popen | None = None

    # -- paths -------------------------------------------------------------------------------

    def _rel(self, path: Path) -> str | None:
        """`path` relative to the repository, or None when it lies outside it."""
        p = os.path.normpath(os.path.join(os.getcwd(), path))
        repo = str(self.repo)
        if p == repo:
            return ""
        if not p.startswith(repo + os.sep):
            real = os.path.realpath(os.path.dirname(p))  # the working tree reached by a link
            if real != repo and not real.startswith(repo + os.sep):
                return None
            p = os.path.join(real, os.path.basename(p))
        return os.path.relpath(p, repo).replace(os.sep, "/")

    def _resolve(self, rel: str) -> str | None:
        """`rel` with every link in it followed inside the commit; None when a link leads
        out of the repository (the path is then the working tree's business)."""
        parts = [p for p in rel.split("/") if p]
        done: list[str] = []
        hops = 0
        while parts:
            part = parts.pop(0)
            if part == "..":
                if not done:
                    return None
                done.pop()
                continue
            cur = "/".join([*done, part])
            meta = self.files.get(cur)
            if meta is not None and meta[0] == "120000":
                hops += 1
                if hops > MAX_LINKS:
                    raise OSError(40, "Too many levels of symbolic links")
                target = self._blob(meta[1]).decode("utf-8", "surrogateescape")
                if target.startswith("/"):
                    return None
                parts = [p for p in target.split("/") if p and p != "."] + parts
                continue
            done.append(part)
        return "/".join(done)

    def realpath(self, path: Path) -> Path:
        rel = self._rel(path)
        if rel is None:
            return super().realpath(path)
        resolved = self._resolve(rel)
        if resolved is None:
            return Path("/")  # out of the repository: never inside a project
        return self.repo / resolved if resolved else self.repo

    def entry(self, path: Path) -> Entry | None:
        rel = self._rel(path)
        if rel is None:
            return super().entry(path)
        resolved = self._resolve(rel)
        if resolved is None:
            return Entry("other")
        meta = self.files.get(resolved)
        if meta is not None:
            return Entry("file", meta[2])
        return Entry("dir") if resolved in self.dirs else None

    def lexists(self, path: Path) -> bool:
        rel = self._rel(path)
        if rel is None:
            return super().lexists(path)
        return rel in self.files or rel in self.dirs

    def read_bytes(self, path: Path) -> bytes:
        rel = self._rel(path)
        if rel is None:
            return super().read_bytes(path)
        resolved = self._resolve(rel)
        meta = self.files.get(resolved) if resolved is not None else None
        if meta is None:
            if resolved in self.dirs:
                raise IsADirectoryError(21, "Is a directory", str(path))
            raise FileNotFoundError(2, f"No such file in {self.label}", str(path))
        return self._blob(meta[1])

    def listdir(self, path: Path) -> list[str]:
        rel = self._rel(path)
        if rel is None:
            return super().listdir(path)
        resolved = self._resolve(rel)
        if resolved is None or resolved not in self.dirs:
            raise FileNotFoundError(2, f"No such folder in {self.label}", str(path))
        prefix = resolved + "/" if resolved else ""
        names = {n[len(prefix):].split("/", 1)[0] for n in (*self.files, *self.dirs)
                 if n.startswith(prefix) and n != resolved}
        return sorted(n for n in names if n)

    def digest(self, path: Path) -> str:
        rel = self._rel(path)
        if rel is None:
            return super().digest(path)
        return hashlib.sha256(self.read_bytes(path)).hexdigest()

    def shown(self, path: Path, display: str) -> str:
        rel = self._rel(path)
        return display if rel is None else f"{self.label}:{rel}"

    # -- blobs -------------------------------------------------------------------------------

    def _blob(self, blob: str) -> bytes:
        data = self._blobs.get(blob)
        if data is None:
            data = self._blobs[blob] = self._cat_file(blob)
        return data

    def _cat_file(self, blob: str) -> bytes:
        if self._cat is None:
            self._cat = subprocess.Popen(["git", "cat-file", "--batch"], cwd=self.repo,
                                         stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                         stderr=subprocess.DEVNULL)
        assert self._cat.stdin is not None and self._cat.stdout is not None
        self._cat.stdin.write(blob.encode() + b"\n")
        self._cat.stdin.flush()
        header = self._cat.stdout.readline().split()
        if len(header) != 3:
            raise OSError(5, f"git cannot read object {blob}")
        size = int(header[2])
        data = self._cat.stdout.read(size)
        self._cat.stdout.read(1)  # the newline after the object
        return data

    def close(self) -> None:
        if self._cat is not None:
            with contextlib.suppress(OSError):
                self._cat.stdin.close()  # type: ignore[union-attr]
            self._cat.wait()
            self._cat = None

    def __enter__(self) -> GitTree:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _git(repo: Path, *args: str, error: str | None = None, hint: str | None = None) -> str:
    try:
        r = subprocess.run(["git", *args], cwd=repo, capture_output=True, text=True,
                           errors="surrogateescape")
    except FileNotFoundError:
        raise TreeError("git is not installed", "install git to read other revisions") from None
    if r.returncode != 0:
        said = r.stderr.strip().splitlines()
        raise TreeError(error or f"git {args[0]} failed: {said[-1] if said else r.returncode}",
                        hint)
    return r.stdout


def repo_root(folder: Path) -> Path:
    """The top of the git repository that holds `folder` (TreeError when there is none)."""
    out = _git(folder, "rev-parse", "--show-toplevel",
               error=f"`{folder}` is not in a git repository",
               hint="`git init` and commit the film to compare revisions")
    return Path(out.strip())


_current: ContextVar[WorkTree] = ContextVar("filmc_source_tree", default=WORK)


def current() -> WorkTree:
    """The source tree the compiler reads from now."""
    return _current.get()


@contextlib.contextmanager
def using(tree: WorkTree) -> Iterator[WorkTree]:
    """Read every source from `tree` inside the block."""
    token = _current.set(tree)
    try:
        yield tree
    finally:
        _current.reset(token)
