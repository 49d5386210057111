"""The compile memo kept between commands: a `filmc build` or `plan` after an edit
puts back what the last compile of the same film made of everything the edit did not
touch, as `filmc build --watch` does between its rounds (compiler/pipeline.py `Memo`).
Here, in the command line's stage, and not in the compiler, which has no effects: the
memo is loaded before a command compiles and written by a child process as it ends.

    memo = load(main, variant(offline, burnt))   # the Memo the last command left, or a new one
    result = compile_film(main, memo=memo, ...)
    keep(main, variant(offline, burnt), memo, result.project)   # written as the command ends

The memo and the parses it was made from are one pickle, so that a file whose text
did not change gets back the very module the memo knows (lang/parser.py `_memo`), and
the memo's scenes, shots and steps are found by it as in the process that made them.
What the memo keeps by object identity (`id()`) is keyed again once loaded
(`Memo.loaded`).  Whether a memo's part may be put back is decided by the compile, as
for the watch's: a stale memo costs a compile without it, never a wrong key.

On a 3,000-shot film the pickle is some 50 MB; loading it takes 0.3 s and the compile
that uses it about 0.5 s after a one-shot edit, where a compile without it takes 1.6 s.
Writing it takes longer (0.8 s): the command writes it in a child process as it exits
(`write_kept`, called by the console script), its output closed, so the user does not
wait for it; a command that ends otherwise writes nothing.  Where there is no `fork`,
nothing is kept.

The file is named by the sha256 of `salt()` (filmc's own sources and the versions
that shape what a compile makes: any change of filmc's code misses), the film's main
file and the current folder (diagnostics name files relative to it) and the variant
(offline, burnt subtitles).  It lives in the user's cache (lang/paths.py
`user_cache`: mode 0700 and the user's own, since loading a pickle runs code); the
folder keeps the `KEEP` most recent.  Any failure to read or write it is a miss,
never an error.

The project's server (filmc/server.py) reads the memo ahead (`hold`) and forks each
command: a command whose memo file is still the one held takes it without reading it.
"""

from __future__ import annotations

import contextlib
import functools
import gc
import hashlib
import os
import pickle
import sys
from pathlib import Path
from typing import Any

from .compiler.pipeline import Memo
from .lang.paths import stamp

__all__ = ["load", "keep", "write_kept", "variant", "path_of", "hold", "release", "KEEP"]

KEEP = 4  # memo files the folder keeps, the most recently used
_MAGIC = b"filmc-memo 1\n"
_SOURCES = ("lang", "compiler", "backends", "stdlib")
_kept: list[tuple[Path, Memo, dict]] = []  # what `write_kept` writes as the command ends
_held: dict[str, tuple] = {}  # path → (its stamp, parses, memo): `hold`


@functools.cache
def salt() -> bytes:
    """filmc's own sources (what parses, checks, lowers and keys a film) and the versions
    of what they run on."""
    import importlib

    import jinja2
    import lark
    import networkx

    h = hashlib.sha256()
    h.update(Path(__file__).read_bytes())  # how the memo is written
    for name in _SOURCES:
        folder = Path(importlib.import_module(f"filmc.{name}").__file__ or "").parent
        for path in sorted(folder.rglob("*")):
            if path.suffix in (".py", ".lark", ".j2", ".film", ".toml", ".json") \
                    and "__pycache__" not in path.parts:
                h.update(f"{name}/{path.relative_to(folder)}".encode() + b"\0")
                h.update(path.read_bytes())
    h.update(f"{sys.version} {lark.__version__} {jinja2.__version__} "
             f"{networkx.__version__} {pickle.HIGHEST_PROTOCOL}".encode())
    return h.digest()


def variant(offline: bool, burn_subtitles: bool) -> str:
    """Which compile of a film a memo is of: the options that change its graph."""
    return ("offline" if offline else "online") + (" burnt" if burn_subtitles else "")


def _path(main: Path, variant: str) -> Path | None:
    from .lang.paths import user_cache

    folder = user_cache("compile")
    if folder is None:
        return None
    h = hashlib.sha256(salt())
    try:
        parts = (str(main.resolve()), os.getcwd(), variant)
    except OSError:  # the current folder is gone
        return None
    for part in parts:
        h.update(part.encode("utf-8", "surrogatepass") + b"\0")
    return folder / f"{h.hexdigest()}.memo"


def load(main: Path, variant: str) -> Memo:
    """The memo the last compile of this film (in this variant, from this folder) left,
    its parses handed back to the parser; a new memo when there is none to use."""
    path = _path(main, variant)
    if path is None:
        return Memo()
    held = _held.pop(str(path), None)
    if held is not None and held[0] == stamp(path):  # the server read it (filmc/server.py)
        return held[2]  # and handed its parses to the parser, and marked it used
    found = _read(path)
    if found is None:
        return Memo()
    from .lang.parser import keep_parses

    keep_parses(found[0])
    with contextlib.suppress(OSError):
        os.utime(path)  # recently used: the trim keeps it
    return found[1]


def path_of(main: Path, variant: str) -> Path | None:
    """The memo file of `main`'s compile in `variant`, from the current folder."""
    return _path(main, variant)


def hold(path: Path) -> tuple[int, int, int] | None:
    """Read the memo at `path` now, for the commands this process forks to use without
    reading it (filmc/server.py), as long as the file is the same: its stamp as read
    (lang/paths.py `stamp`), or None when there is none to hold."""
    with contextlib.suppress(OSError):
        os.utime(path)  # recently used (by every command that takes it): the trim keeps it
    at = stamp(path)
    found = _read(path) if at is not None else None
    if found is None:
        _held.pop(str(path), None)
    else:
        _held[str(path)] = (at, *found)
    _parses_held()
    return at if found is not None else None


def release(path: Path) -> None:
    """Forget the memo `hold` read from `path`."""
    _held.pop(str(path), None)
    _parses_held()


def _parses_held() -> None:
    """The parser remembers the parses of the memos held, as `load` would hand them to it
    (once for every command that takes one), and no others: not the memos' before."""
    from .lang.parser import forget_parses, keep_parses

    forget_parses()
    for _at, parses, _memo in _held.values():
        keep_parses(parses)


def _read(path: Path) -> tuple[dict, Memo] | None:
    """The parses and the memo in the file at `path`, or None."""
    from .compiler.graph import fast_pickling

    fast_pickling()  # the memo's classes by their fields: it loads in 0.29 s, not 0.46
    try:
        with open(path, "rb") as f:
            data = f.read()
    except OSError:
        return None
    if not data.startswith(_MAGIC):
        return None
    # A million objects that live as long as the command: out of the cycle collector's
    # reach from the start (pipeline.py `compile_film(keep=True)` freezes what it makes).
    was = gc.isenabled()
    gc.disable()
    try:
        parses, memo = pickle.loads(memoryview(data)[len(_MAGIC):])
        if not isinstance(memo, Memo) or not isinstance(parses, dict):
            return None
        memo.loaded()
    except Exception:  # truncated, another version's: a miss
        return None
    finally:
        gc.freeze()
        if was:
            gc.enable()
    return parses, memo


def keep(main: Path, variant: str, memo: Memo, project: Any) -> None:
    """Write `memo` for the next command as this one ends (`write_kept`), with the
    parses of `project`'s files it was made from."""
    from .lang.parser import parses_of

    path = _path(main, variant)
    if path is not None and hasattr(os, "fork"):
        _kept[:] = [(path, memo, parses_of([f.module for f in project.files]))]


def write_kept(fork: bool = True) -> None:
    """Write the memo `keep` was given, in a child process this one does not wait for:
    its standard streams are /dev/null (a `filmc build | tee` ends with this process),
    and it holds none of the locks, which were released before.  Not `fork`: here, by a
    process that has let its command's caller go (a fork of the server, which said the
    exit code first: filmc/server.py), where a fork would cost more than the writing."""
    if not _kept:
        return
    path, memo, parses = _kept.pop()
    if not fork:
        gc.disable()
        _write(path, memo, parses)
        return
    try:
        pid = os.fork()
    except OSError:
        return
    if pid:
        return
    try:  # the child: its own session, so a Ctrl-C at the terminal is not for it
        os.setsid()
        null = os.open(os.devnull, os.O_RDWR)
        for fd in (0, 1, 2):
            os.dup2(null, fd)
        gc.disable()
        _write(path, memo, parses)
    finally:
        os._exit(0)


def _write(path: Path, memo: Memo, parses: dict) -> None:
    from .lang.paths import keep_pickled

    if keep_pickled(path, (parses, memo), _MAGIC):  # else no memo: the same compile
        _trim(path.parent)


def _trim(folder: Path, keep: int = KEEP) -> None:
    """The `keep` most recently used memo files, the others deleted."""
    from .lang.paths import keep_latest

    keep_latest(folder, ".memo", keep)
