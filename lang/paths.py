"""The project folder, found without importing the parser (the no-op build needs it fast),
and the one rule for what a path written in a film may name."""

from __future__ import annotations

import os
from pathlib import Path

CONFIG_FILE = "filmc.toml"


def find_root(main: Path) -> Path:
    """The nearest folder above the main film file that holds `filmc.toml`, else its own
    (in the source tree in use: the working tree or a revision)."""
    from .tree import current

    tree = current()
    for folder in [main.parent, *main.parent.parents]:
        if tree.is_file(folder / CONFIG_FILE):
            return folder
    return main.parent


def film_name(main: Path, root: Path) -> str:
    """A film's name, as its outputs are named (`build/<name>/`): the project folder's
    name for a main file called `film.film`, else the main file's stem."""
    return root.name if main.stem == "film" else main.stem


def stamp(path: str | os.PathLike[str]) -> tuple[int, int, int] | None:
    """A file's size, modification time and inode (None: it is not there): what tells
    that a file was written since, cheaply (the no-op build, `build --watch`, the review
    page, each over the files a film reads)."""
    try:
        st = os.stat(path)
    except OSError:
        return None
    return (st.st_size, st.st_mtime_ns, st.st_ino)


def user_cache(sub: str | None = None) -> Path | None:
    """filmc's folder in the user's cache (`$XDG_CACHE_HOME/filmc`, else
    `~/.cache/filmc`), or a folder `sub` in it; None when it cannot be made safe.

    What is kept there is unpickled (Lark's parse table, parses: lang/parsecache.py),
    so it must be a folder of the user's own, mode 0700, never a predictable name in
    the shared temp folder: a folder another user could write means no cache.  (Here,
    not beside the parser, so that a render worker asks without importing Lark.)"""

    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    folder = Path(base) / "filmc"
    try:
        for f in (folder, folder / sub) if sub else (folder,):
            os.makedirs(f, mode=0o700, exist_ok=True)
            st = os.stat(f)
            if st.st_uid != os.getuid() or st.st_mode & 0o077:
                return None
    except OSError:
        return None
    return folder / sub if sub else folder


def keep_pickled(path: Path, value: object, head: bytes = b"") -> bool:
    """Write `value`'s pickle (after `head`) to `path` in the user's cache, whole or not at
    all: into a temporary file beside it, renamed over it.  False when it could not be (a
    full disk, a read-only home): what the cache keeps only ever saves time."""
    import contextlib
    import pickle
    import tempfile

    try:
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-")
        try:
            with os.fdopen(fd, "wb") as f:
                f.write(head)
                pickle.dump(value, f, protocol=pickle.HIGHEST_PROTOCOL)
            os.replace(tmp, path)
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
            raise
    except Exception:
        return False
    return True


def keep_latest(folder: Path, suffix: str, keep: int) -> None:
    """Of the files of `folder` named `*suffix`, the `keep` most recently used (modified)
    are kept, the others deleted: a cache folder's trim."""
    import contextlib

    try:
        found = sorted(((e.stat().st_mtime, e.path) for e in os.scandir(folder)
                        if e.name.endswith(suffix)), reverse=True)
    except OSError:
        return
    for _t, old in found[keep:]:
        with contextlib.suppress(OSError):
            os.unlink(old)


# --- paths written in a film: `use "..."`, `part "..."`, `ref "..."` -----------------------

MAX_NAME_BYTES = 255  # one file or folder name (the limit of common file systems)
MAX_PATH_BYTES = 1024  # a whole path as written
MAX_FILE_BYTES = 16 << 20  # one .film file (a 3,000-shot film is about 1 MB in all)


class PathProblem(Exception):
    """Why a path written in a film cannot name a project file: a diagnostic's parts."""

    def __init__(self, code: str, message: str, label: str = "", help: str | None = None) -> None:
        super().__init__(message)
        self.code, self.message, self.label, self.help = code, message, label, help


def shown(text: str, limit: int = 60) -> str:
    """`text` for a message: control characters escaped, cut to `limit` characters."""
    text = "".join(c if c.isprintable() else repr(c)[1:-1] for c in text[: limit + 1])
    return text if len(text) <= limit else text[: limit - 1] + "…"


def check_name(rel: str, what: str) -> None:
    """Raise `PathProblem` when `rel` cannot be a file name at all: a control character
    (a NUL byte included) or a name longer than file systems allow."""
    if any(not c.isprintable() for c in rel):
        raise PathProblem("F0401", f"{what} path `{shown(rel)}` holds a control character",
                          "not a file name", help="remove it: file names are printable text")
    encoded = rel.encode("utf-8", "surrogatepass")
    if len(encoded) > MAX_PATH_BYTES or any(
            len(part.encode("utf-8", "surrogatepass")) > MAX_NAME_BYTES for part in rel.split("/")):
        raise PathProblem("F0401", f"{what} path `{shown(rel)}` is too long", "too long",
                          help=f"names of files and folders go up to {MAX_NAME_BYTES} bytes, "
                               f"a path up to {MAX_PATH_BYTES}")


def check_target(path: Path, root: Path, rel: str, what: str) -> None:
    """Raise `PathProblem` unless `path` (normalised, inside `root`) stays inside the project
    once every link on the way is followed, and is a regular file or missing (a missing file
    is the caller's to report, with its own hint): never a folder, a FIFO or a device."""
    from .tree import current

    tree = current()
    real = tree.realpath(path)
    if not _within(real, tree.realpath(root)):
        raise PathProblem("F0404", f"{what} path `{shown(rel)}` leads out of the project folder "
                          "through a link", "a link to a file outside the project",
                          help="copy the file into the project folder instead of linking to it")
    try:
        entry = tree.entry(real)
    except OSError as e:
        raise PathProblem("F0401", f"cannot read `{shown(rel)}`: "
                          f"{(e.strerror or str(e)).lower()}") from None
    if entry is None:
        return
    if entry.kind == "dir":
        raise PathProblem("F0401", f"`{shown(rel)}` is a folder, not a file", "a folder",
                          help="name a file inside it")
    if entry.kind != "file":
        raise PathProblem("F0401", f"`{shown(rel)}` is not a regular file",
                          "a device, FIFO or socket",
                          help="name an ordinary file inside the project folder")


def _within(path: Path, root: Path) -> bool:
    try:
        path.relative_to(root)
    except ValueError:
        return False
    return True
