"""The language server's view of the films being edited: what the editor holds, which film
each file belongs to, and the compiler's answers for the text as it is now.

The compiler reads files from disk; an editor holds text that is not saved yet.  An
`OverlayLoader` is the compiler's own `Loader`, reading the editor's text for the
files it holds and the disk for the rest, and parsing each file's text once: a
keystroke in one part of a 3,000-shot film parses that part again and nothing else,
then runs the same `compile_film` as `filmc check` (so the diagnostics are the same
records, with the same codes).

Which film a file is checked in follows `filmc check` (filmc/project.py,
`lang.loader.films_including`): a file with a `film` header is a film; a part is
checked in the film that names it; a file that no film names is checked alone.

Everything here runs on one thread at a time: the server calls `check` and
`compile_graph` on its worker thread with a snapshot of the editor's text, and the
rest on its event loop.
"""

from __future__ import annotations

import os
import stat
import threading
from collections.abc import Mapping
from importlib import resources
from pathlib import Path

import attrs

from .compiler.pipeline import Compiled, compile_film
from .lang import ast
from .lang.diagnostics import Diagnostic, Diagnostics, Sources
from .lang.loader import STD_DISPLAY, Loader, Project, display_path, films_including, std_modules
from .lang.parser import parse
from .lang.paths import MAX_FILE_BYTES, find_root


def normalise(text: str) -> str:
    """An editor's text as the loader reads a file (`read_text`: universal newlines), so
    that lines and columns agree with what the client counts."""
    return text.replace("\r\n", "\n").replace("\r", "\n") if "\r" in text else text


# --- parsing once ------------------------------------------------------------------------------


class ParseCache:
    """Each file's latest text and its parse (module and syntax diagnostics); a new text of a
    file replaces the old one, so the cache holds one parse per file of the films opened."""

    def __init__(self) -> None:
        self._by_path: dict[Path, tuple[str, ast.Module, tuple[Diagnostic, ...]]] = {}
        self._disk: dict[Path, tuple[tuple[int, int, int], str]] = {}
        self._lock = threading.Lock()

    def parse(self, path: Path, display: str, text: str) -> tuple[ast.Module, tuple[Diagnostic, ...]]:
        with self._lock:
            hit = self._by_path.get(path)
        if hit is not None and hit[0] == text and hit[1].path == display:
            return hit[1], hit[2]
        own = Diagnostics()
        module = parse(text, display, own)
        found = tuple(own)
        with self._lock:
            self._by_path[path] = (text, module, found)
        return module, found

    def disk_text(self, path: Path) -> str | None:
        """A regular UTF-8 file's text, read again only when its stat changed; None for
        anything else (the loader then reads it itself and reports the problem)."""
        try:
            st = path.stat()
            if not stat.S_ISREG(st.st_mode) or st.st_size > MAX_FILE_BYTES:
                return None
            sig = (st.st_mtime_ns, st.st_size, st.st_ino)
            with self._lock:
                hit = self._disk.get(path)
            if hit is not None and hit[0] == sig:
                return hit[1]
            text = path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError):
            return None
        with self._lock:
            self._disk[path] = (sig, text)
        return text


class OverlayLoader(Loader):
    """`lang.loader.Loader` reading the editor's text where it has some, and parsing each
    text once (`ParseCache`).  Anything it cannot read is left to the Loader, which
    reports it as `filmc check` does."""

    def __init__(self, diags: Diagnostics, texts: Mapping[Path, str], cache: ParseCache,
                 sources: Sources | None = None) -> None:
        super().__init__(diags, sources)
        self.texts = texts
        self.cache = cache
        for name in std_modules():  # the standard library, parsed once per server
            res = resources.files("filmc.stdlib").joinpath(f"{name}.film")
            path, display = Path(str(res)), f"{STD_DISPLAY}/{name}.film"
            text = cache.disk_text(path)
            if text is not None:
                self.sources.add(display, text)
                self._parsed[path] = cache.parse(path, display, text)[0]

    def _read_uncached(self, path: Path, display: str, at: ast.Span | None) -> ast.Module | None:
        text = self.texts.get(path)
        if text is None:
            text = self.cache.disk_text(path)
        if text is None:
            return super()._read_uncached(path, display, at)
        self.sources.add(display, text)
        module, found = self.cache.parse(path, display, text)
        self.diags.extend(found)
        self._parsed[path] = module
        return module


# --- one compile of one film ---------------------------------------------------------------------


@attrs.define(eq=False)
class FilmCheck:
    """The compiler's answer for one film at one generation of the editor's text."""

    main: Path
    generation: int
    until: str  # "check" or "graph"
    compiled: Compiled
    diagnostics: list[Diagnostic]

    @property
    def project(self) -> Project | None:
        return self.compiled.project

    def files(self) -> dict[str, Path]:
        """display → path of every file of the film (the standard library's included)."""
        project = self.compiled.project
        return {f.display: f.path for f in project.files} if project is not None else {}


def _dedupe(items: list[Diagnostic]) -> list[Diagnostic]:
    """As `filmc check` prints them (filmc/common.py): one of each (code, message, span)."""
    from .common import _dedupe as dedupe

    return list(dedupe(items))


# --- the workspace -----------------------------------------------------------------------------


class Workspace:
    """The editor's text, the films it belongs to, and the latest compile of each film."""

    def __init__(self) -> None:
        self.texts: dict[Path, str] = {}  # what the editor holds, by absolute path
        self.versions: dict[Path, int] = {}
        self.generation = 0  # bumped by every edit, open, close and save
        self.parses = ParseCache()
        self.checks: dict[Path, FilmCheck] = {}  # main file → its latest check
        self.graphs: dict[Path, FilmCheck] = {}  # main file → its latest graph compile
        self._owners: dict[Path, tuple[Path, ...]] = {}
        self._project: tuple[tuple[Path, int], Project | None] | None = None

    # -- the editor's text --------------------------------------------------------------------

    def set_text(self, path: Path, text: str, version: int | None = None) -> None:
        self.texts[path] = normalise(text)
        if version is not None:
            self.versions[path] = version
        self.generation += 1

    def close(self, path: Path) -> None:
        self.texts.pop(path, None)
        self.versions.pop(path, None)
        self.generation += 1

    def saved(self) -> None:
        """A file was written: which film holds which part may have changed on disk."""
        self._owners.clear()
        self.generation += 1

    def snapshot(self) -> dict[Path, str]:
        return dict(self.texts)

    def text(self, path: Path) -> str | None:
        """The file's text as the editor holds it, else as it is on disk."""
        found = self.texts.get(path)
        return found if found is not None else self.parses.disk_text(path)

    def module(self, path: Path) -> ast.Module | None:
        """The parse of the file's current text (syntax errors recovered from)."""
        text = self.text(path)
        if text is None:
            return None
        return self.parses.parse(path, display_path(path), text)[0]

    def line(self, path: Path, n: int) -> str:
        """Line `n` (1-based) of the file's current text; "" past its end."""
        text = self.text(path)
        if text is None:
            return ""
        lines = text.split("\n")
        return lines[n - 1] if 1 <= n <= len(lines) else ""

    # -- which film ----------------------------------------------------------------------------

    def films_of(self, path: Path) -> tuple[Path, ...]:
        """The main files of the films `path` is checked in: itself when it has a `film`
        header, else the films that name it as a part or `use` it (the ones already
        loaded first), else itself, checked alone."""
        module = self.module(path)
        if module is not None and any(isinstance(d, ast.Film) for d in module.decls):
            return (path,)
        known = tuple(main for main, c in list(self.checks.items()) if main != path and c.project
                      is not None and any(f.path == path and f.role != "std"
                                          for f in c.project.files))
        if known:
            return known
        if path not in self._owners:
            self._owners[path] = self._project_film(path) or tuple(
                m for m in films_including(path) if self._is_main(m)) or (path,)
        return self._owners[path]

    def _project_film(self, path: Path) -> tuple[Path, ...]:
        """The project's own film (filmc/project.py), when it holds `path`: found by loading
        it, which parses what its check will parse anyway."""
        from .project import main_files

        for main in main_files(find_root(path)):
            project = OverlayLoader(Diagnostics(), self.texts, self.parses).load(main)
            if project is not None and any(f.path == path for f in project.files):
                return (main,)
        return ()

    def _is_main(self, path: Path) -> bool:
        module = self.module(path)
        return module is not None and any(isinstance(d, ast.Film) for d in module.decls)

    # -- compiling (on the worker thread) ------------------------------------------------------

    def compile(self, main: Path, texts: Mapping[Path, str], generation: int,
                until: str = "check") -> FilmCheck:
        """`compile_film` of the film at `main` over the editor's text: the same stages, the
        same diagnostics as `filmc check` (`until="graph"`: as `filmc check` with a lock, and
        what a hover needs of a shot: its prompt, its plan)."""
        from .engine.lengths import lookup_for  # a hover's plan, as `filmc plan` sees it

        diags = Diagnostics()
        loader = OverlayLoader(diags, texts, self.parses)
        compiled = compile_film(main, until=until, diags=diags, loader=loader,
                                said=lookup_for if until == "graph" else None)
        return FilmCheck(main, generation, until, compiled, _dedupe(diags.sorted()))

    def record(self, result: FilmCheck) -> None:
        """Keep a compile's result (on the event loop, after the worker returns)."""
        if result.until == "graph":
            old = self.graphs.get(result.main)
            if old is None or old.generation <= result.generation:
                self.graphs[result.main] = result
        old = self.checks.get(result.main)
        if old is None or old.generation <= result.generation:
            self.checks[result.main] = result

    def current_graph(self, main: Path) -> FilmCheck | None:
        """The graph compile of the film for the text as it is now, if there is one."""
        found = self.graphs.get(main)
        return found if found is not None and found.generation == self.generation else None

    # -- a fresh load (no check) for navigation -------------------------------------------------

    def project(self, main: Path) -> Project | None:
        """The film's files as the editor holds them, loaded (not checked): cheap once parsed."""
        cached = self._project
        if cached is not None and cached[0] == (main, self.generation):
            return cached[1]
        loader = OverlayLoader(Diagnostics(), self.texts, self.parses)
        found = loader.load(main)
        self._project = ((main, self.generation), found)
        return found


def path_of(display: str, files: Mapping[str, Path]) -> Path:
    """The file a diagnostic's span names: a file of the film, else relative to here."""
    found = files.get(display)
    if found is not None:
        return found
    return Path(os.path.normpath(Path.cwd() / display))


# --- positions: the compiler's columns and the client's --------------------------------------------

UTF8, UTF16, UTF32 = "utf-8", "utf-16", "utf-32"


def units(text: str, encoding: str) -> int:
    """How many code units of the client's encoding `text` takes."""
    if encoding == UTF32 or text.isascii():
        return len(text)
    if encoding == UTF8:
        return len(text.encode("utf-8", "surrogatepass"))
    return len(text.encode("utf-16-le", "surrogatepass")) // 2


def column(line: str, count: int, encoding: str) -> int:
    """The code point index of the column `count` code units into `line`."""
    if encoding == UTF32 or line.isascii():
        return min(count, len(line))
    used = 0
    for i, c in enumerate(line):
        if used >= count:
            return i
        used += units(c, encoding)
    return len(line)
