"""Facts about this machine that keys hold, remembered from one command to the next.

Every command that computes the animatic's keys needs the version line of the ffmpeg
it runs (`ffmpeg -version`: 0.1–0.4 s for the static build imageio-ffmpeg ships) and a
digest of the panel font (a CJK font of megabytes, read and hashed): the same answers
every time while those files do not change, and together about half a second of every
`plan`, `build` or `diff`.

    remembered("ffmpeg-version", [exe], lambda: run_it(exe))

keeps the answer in the user's cache (`$XDG_CACHE_HOME/filmc/facts.json`) for as long
as each of the files keeps its identity: device, inode, size, and the modification and
change times in nanoseconds.  That is how ccache trusts a compiler (`compiler_check =
mtime`), with the change time besides, which no replacement or edit of a file keeps.
A file that is missing is part of the identity too (a font installed later is noticed).

JSON, not pickle: a fact is a string.  Any failure to read or
write the file is a miss, never an error: the cache only ever saves time.  An answer
that says the tool is missing or broken (`unknown`, `none (...)`) is not kept.
"""

from __future__ import annotations

import contextlib
import functools
import json
import os
import tempfile
from collections.abc import Callable, Iterable
from typing import Any

__all__ = ["remembered", "identity"]

_NAME = "facts.json"


def identity(paths: Iterable[str]) -> list[list[Any]]:
    """Each file as ccache would know it again: [path, device, inode, size, mtime_ns,
    ctime_ns], or [path] for one that is not there."""
    out: list[list[Any]] = []
    for p in paths:
        try:
            st = os.stat(p)
        except OSError:
            out.append([p])
            continue
        out.append([p, st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns])
    return out


def remembered(name: str, files: Iterable[str], compute: Callable[[], str]) -> str:
    """compute()'s answer, from the user's cache while `files` are the files it was worked
    out from; worked out (and kept) otherwise."""
    ident = identity(files)
    facts = _facts()
    found = facts.get(name)
    if isinstance(found, dict) and found.get("files") == ident \
            and isinstance(found.get("value"), str):
        return found["value"]
    value = compute()
    if not _failed(value):
        facts[name] = {"files": ident, "value": value}
        _write(facts)
    return value


def _failed(value: str) -> bool:
    return value == "unknown" or value.startswith("none")


@functools.cache
def _folder() -> str | None:
    from ..lang.paths import user_cache

    found = user_cache()
    return str(found) if found is not None else None


@functools.cache
def _facts() -> dict[str, Any]:
    """The facts file, read once a process (what it learns is added as it goes)."""
    folder = _folder()
    if folder is None:
        return {}
    try:
        with open(os.path.join(folder, _NAME), encoding="utf-8") as f:
            found = json.load(f)
    except (OSError, ValueError):  # absent, half written by a crash, not ours
        return {}
    return found if isinstance(found, dict) else {}


def _write(facts: dict[str, Any]) -> None:
    folder = _folder()
    if folder is None:
        return
    try:
        fd, tmp = tempfile.mkstemp(dir=folder, prefix=".facts-", suffix=".tmp")
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as f:
                json.dump(facts, f, ensure_ascii=False)
            os.replace(tmp, os.path.join(folder, _NAME))
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
            raise
    except Exception:  # a full disk, a read-only home: the facts are worked out again
        return


def forget() -> None:
    """Drop what this process read (tests: another cache folder, or a file changed)."""
    _facts.cache_clear()
    _folder.cache_clear()
