"""Parses kept between runs: a file whose text did not change is not parsed again.

A feature film is dozens of files, and an edit touches one: the next `filmc build`,
`plan` or `check` reads every other file's AST from here instead of parsing it
(unpickling is about three times faster than parsing, with the fast reducers below).

    hit = load(file, text)          # (module, its Diagnostics) or None
    save(file, text, module, diags)

The key is the sha256 of the file's path and text and of `salt()`: the sources of the
parser, the AST, the diagnostics and the grammar, Lark's and Python's versions, so any
change to what a parse produces misses.  A path is in the key because the AST's spans
name their file.

Where: `$XDG_CACHE_HOME/filmc/parse/` (else `~/.cache/filmc/parse/`), the folder of the
grammar's own cache (paths.py `user_cache`): mode 0700 and owned by the user, because
loading a pickle runs code, so a folder another user could write means no cache.
Small files are not kept (parsing them costs less than the file system); the folder is
trimmed to `LIMIT` bytes, oldest first.  Any failure to read or write the cache is a
miss, never an error: the cache only ever saves time.
"""

from __future__ import annotations

import contextlib
import copyreg
import functools
import hashlib
import os
import pickle
import sys
from pathlib import Path
from typing import Any

import attrs

from . import ast, diagnostics
from .diagnostics import Diagnostics

__all__ = ["load", "save", "MIN_BYTES", "LIMIT"]

MIN_BYTES = 8 << 10  # texts shorter than this parse faster than their pickle loads
LIMIT = 256 << 20  # the folder's size, trimmed oldest first
_TRIM_EVERY = 32  # writes between two looks at the folder's size
_writes = 0


@functools.cache
def salt() -> bytes:
    """What else decides a parse: this module's neighbours' code, the grammar, versions."""
    import lark

    h = hashlib.sha256()
    here = Path(__file__).parent
    for name in ("parser.py", "ast.py", "diagnostics.py", "film.lark", "parsecache.py"):
        with open(here / name, "rb") as f:
            h.update(f.read())
    h.update(f"{lark.__version__} {sys.version} {pickle.HIGHEST_PROTOCOL}".encode())
    return h.digest()


@functools.cache
def _folder() -> Path | None:
    from .paths import user_cache

    found = user_cache("parse")
    if found is not None:
        fast_pickling()
    return found


def _path(folder: Path, file: str, text: str) -> Path:
    h = hashlib.sha256(salt())
    h.update(file.encode("utf-8", "surrogatepass") + b"\0")
    h.update(text.encode("utf-8", "surrogatepass"))
    return folder / f"{h.hexdigest()}.ast"


def load(file: str, text: str) -> tuple[ast.Module, Diagnostics] | None:
    if len(text) < MIN_BYTES:
        return None
    folder = _folder()
    if folder is None:
        return None
    path = _path(folder, file, text)
    try:
        with open(path, "rb") as f:
            module, found = pickle.load(f)
        os.utime(path)  # recently used: the trim keeps it
    except Exception:  # absent, truncated, from another filmc: a miss
        return None
    if not isinstance(module, ast.Module) or module.path != file \
            or not isinstance(found, Diagnostics):
        return None
    return module, found


def save(file: str, text: str, module: ast.Module, found: Diagnostics) -> None:
    global _writes
    if len(text) < MIN_BYTES:
        return
    folder = _folder()
    if folder is None:
        return
    from .paths import keep_pickled

    if not keep_pickled(_path(folder, file, text), (module, found)):
        return  # a full disk, a read-only home: no cache, same parse
    _writes += 1
    if _writes % _TRIM_EVERY == 1:
        trim(folder)


def trim(folder: Path, limit: int = LIMIT) -> None:
    """Delete the least recently used parses until the folder holds at most `limit` bytes."""
    try:
        entries = []
        with os.scandir(folder) as it:
            for e in it:
                if e.name.endswith(".ast"):
                    st = e.stat()
                    entries.append((st.st_mtime, st.st_size, e.path))
    except OSError:
        return
    total = sum(size for _t, size, _p in entries)
    for _t, size, path in sorted(entries):
        if total <= limit:
            break
        with contextlib.suppress(OSError):
            os.unlink(path)
        total -= size


@functools.cache
def fast_pickling(*modules: Any, derived: tuple[type, ...] = ()) -> None:
    """Pickle the AST's frozen attrs classes (and those of `modules`: the compile memo's,
    filmc/memocache.py) as `cls(*fields)`: attrs' own state protocol sets each slot
    through `object.__setattr__`, which made loading a 3,000-shot film's ASTs about 1.5
    times slower.  A class with a field `__init__` does not take is left as it is, but
    for those `derived`, which make such fields from the others (a step id, its text)."""
    for mod in (ast, diagnostics, *modules):
        for cls in vars(mod).values():
            if not (isinstance(cls, type) and attrs.has(cls) and cls.__module__ == mod.__name__
                    and cls.__setattr__.__name__ == "_frozen_setattrs"):
                continue
            fields = attrs.fields(cls)
            if all(a.init for a in fields) or cls in derived:
                names = tuple(a.name for a in fields if a.init)
                copyreg.pickle(cls, functools.partial(_reduce, cls, names))


def _reduce(cls: type, names: tuple[str, ...], obj: Any) -> tuple[type, tuple]:
    return cls, tuple(getattr(obj, n) for n in names)
