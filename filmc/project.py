"""Which film a command is about when none is named, and which files a folder holds.

Like cargo with `Cargo.toml`: from the current folder, walk up to the nearest
folder that holds `filmc.toml`; the project's film is its main file there
(`film.film`, else the one `.film` file with a `film` header). With no
`filmc.toml` anywhere above, the current folder's main file is the film.
Several candidates, or none, is an error that says which and what to do.
"""

from __future__ import annotations

import os
import re
import stat
from pathlib import Path

from .lang.paths import CONFIG_FILE

#: Folders that hold outputs and the store, never sources.
SKIP = frozenset({"build", ".filmc", ".git"})
_HEADER = re.compile(r"^\s*film\s+[\"“]", re.MULTILINE)  # the quote as an input method types it too


class NoFilm(Exception):
    """No one film to use; `message` and `hint` say why and what to do."""

    def __init__(self, message: str, hint: str) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint


def main_files(folder: Path) -> list[Path]:
    """The `.film` files of one folder (not below it) that open a film: `film.film`
    alone when it is there, else every file with a `film "TITLE"` header."""
    if (folder / "film.film").is_file():
        return [folder / "film.film"]
    return [p for p in sorted(folder.glob("*.film")) if is_main(p)]


def is_main(path: Path) -> bool:
    """Whether a `.film` file opens a film: it has a `film "TITLE"` header (a FIFO, a
    device or a folder named `.film` is none: never opened, it could block)."""
    try:
        if not stat.S_ISREG(path.stat().st_mode):
            return False
        with path.open(encoding="utf-8", errors="replace") as f:
            head = f.read(1 << 20)
    except OSError:
        return False
    return _HEADER.search(head) is not None


def find_film(start: Path | None = None) -> Path:
    """The project's main film file, seen from `start` (the current folder); NoFilm if
    there is none or more than one. The path is relative to the current folder."""
    here = (start or Path.cwd()).resolve()
    root = next((d for d in [here, *here.parents] if (d / CONFIG_FILE).is_file()), None)
    folder = root or here
    found = main_files(folder)
    shown = _shown(folder)
    if len(found) == 1:
        return Path(os.path.relpath(found[0]))
    if not found:
        if root is not None:
            raise NoFilm(f"no film in `{shown}`, the project folder (it holds `{CONFIG_FILE}`)",
                         f"a project's main file is `{shown}/film.film`, or the one `.film` "
                         f"file there with a `film \"TITLE\" {{` header; or name the file")
        raise NoFilm(f"no film here: no `{CONFIG_FILE}` in `{shown}` or above, and no "
                     f"`.film` file with a `film` header in it",
                     "name the film's main .film file, or run `filmc init` to start a "
                     "project")
    names = ", ".join(f"`{p.name}`" for p in found)
    raise NoFilm(f"which film? `{shown}` holds {len(found)} films: {names}",
                 f"name one: `filmc COMMAND {Path(os.path.relpath(found[0]))}`")


def _shown(folder: Path) -> str:
    rel = os.path.relpath(folder)
    return rel if len(rel) <= len(str(folder)) else str(folder)


def film_files(folder: Path) -> list[Path]:
    """Every `.film` file under a folder, in path order, outside build outputs and the
    store (`build/`, `.filmc/`) and `.git/`."""
    out: list[Path] = []
    for dirpath, dirnames, filenames in os.walk(folder):
        dirnames[:] = sorted(d for d in dirnames if d not in SKIP)
        out += [Path(dirpath) / n for n in sorted(filenames) if n.endswith(".film")]
    return out
