"""Loading a film: the main file, the files it `use`s, and its `part`s, in order.

Rules (docs/language.md says the same to users):
- every path written in a `.film` file is relative to the file that writes it;
- `use std.NAME` loads the standard library module `stdlib/NAME.film`;
  `use "path.film"` loads a project file; each file is loaded once, and
  everything loaded is visible everywhere in the film (ids are global);
- the main file's `film { part "..." }` lines name the files that hold the
  rest of the scenes; the film's scenes are the main file's, then each part's,
  in the order the parts are listed;
- a file `use`d for its definitions may not hold scenes, a part may not hold a
  `film` header, and an import cycle is an error that names the cycle;
- the project directory is the nearest folder above the main file that holds a
  `filmc.toml`, or else the main file's folder; no path may leave it.
"""

from __future__ import annotations

import os
import stat
import time
from importlib import resources
from pathlib import Path

import attrs

from . import ast
from .diagnostics import Diagnostics, Label, Sources, did_you_mean
from .parser import parse
from .paths import CONFIG_FILE, MAX_FILE_BYTES, PathProblem, check_name, check_target, find_root
from .tree import current as current_tree

STD_PREFIX = "std"
STD_DISPLAY = "<std>"


@attrs.define(eq=False)
class SourceFile:
    path: Path  # absolute, normalised (not resolved through links)
    display: str  # how diagnostics name it
    module: ast.Module
    role: str  # "main" | "use" | "part" | "std"


@attrs.define(eq=False)
class Project:
    """Everything one film is made of, in load order."""

    root: Path
    main: SourceFile
    files: list[SourceFile]
    film: ast.Film | None
    scenes: list[tuple[ast.Scene, SourceFile]]

    def decls(self):
        """(declaration, file) for every declaration of every loaded file."""
        for f in self.files:
            for d in f.module.decls:
                yield d, f

    def shared_modules(self) -> list[ast.Module]:
        """The modules a scene's check and lowering may read besides the scene itself:
        every one that declares anything but scenes and `use` lines (the film's block,
        presets, characters, locations, the stdlib; a file `use`d is one of them).  A
        process that compiles the film again keeps what it made of a scene while these
        and the scene are the same objects (the parses of unchanged files are)."""
        return [f.module for f in self.files
                if not all(isinstance(d, (ast.Scene, ast.Use)) for d in f.module.decls)]


def display_path(path: Path) -> str:
    """How messages name a file: relative to the current folder when below it; in a
    revision, `REV:path` (relative to the repository)."""
    try:
        rel = os.path.relpath(path)
    except ValueError:
        rel = str(path)
    shown = str(path) if rel.startswith("..") else rel
    return current_tree().shown(path, shown)


def std_modules() -> list[str]:
    return sorted(
        p.name[:-5] for p in resources.files("filmc.stdlib").iterdir() if p.name.endswith(".film")
    )


class Loader:
    """Loads films, parsing each file once per run (shared by several roots)."""

    def __init__(self, diags: Diagnostics, sources: Sources | None = None) -> None:
        self.diags = diags
        self.sources = sources or Sources()
        self._parsed: dict[Path, ast.Module | None] = {}
        self.read_seconds = 0.0  # reading and parsing, for `filmc check --timings`

    # -- reading -----------------------------------------------------------------

    def _read(self, path: Path, display: str, at: ast.Span | None) -> ast.Module | None:
        if path in self._parsed:
            return self._parsed[path]
        started = time.perf_counter()
        try:
            return self._read_uncached(path, display, at)
        finally:
            self.read_seconds += time.perf_counter() - started

    def _read_uncached(self, path: Path, display: str, at: ast.Span | None) -> ast.Module | None:
        module: ast.Module | None = None
        tree = current_tree()
        try:
            entry = tree.entry(path)
            if entry is None:
                raise FileNotFoundError(2, "No such file or directory", str(path))
            if entry.kind == "dir":
                raise IsADirectoryError
            if entry.kind != "file" or entry.size > MAX_FILE_BYTES:
                problem = (f"is larger than {MAX_FILE_BYTES >> 20} MB" if entry.kind == "file"
                           else "is not a regular file (a device, FIFO or socket)")
                self.diags.error("F0401", f"`{display}` {problem}", at,
                                 help="a film is made of ordinary text files of a reasonable size")
                self._parsed[path] = None
                return None
            text = tree.read_bytes(path).decode("utf-8")
            if "\r" in text:  # as `read_text` reads it: universal newlines
                text = text.replace("\r\n", "\n").replace("\r", "\n")
        except UnicodeDecodeError as e:
            self.diags.error("F0407", f"`{display}` is not UTF-8 text", at,
                             help=f"save the file as UTF-8 (byte {e.start} is not valid UTF-8)")
        except IsADirectoryError:
            self.diags.error("F0401", f"`{display}` is a folder, not a .film file", at)
        except OSError as e:
            self.diags.error("F0401", f"cannot read `{display}`: {(e.strerror or str(e)).lower()}", at,
                             help=self._missing_help(path))
        else:
            self.sources.add(display, text)
            module = parse(text, display, self.diags)
        self._parsed[path] = module
        return module

    @staticmethod
    def _missing_help(path: Path) -> str | None:
        try:
            siblings = [n for n in current_tree().listdir(path.parent) if n.endswith(".film")]
        except OSError:
            return None
        guess = did_you_mean(path.name, siblings)
        return guess

    def _read_std(self, name: str, at: ast.Span) -> tuple[Path, str, ast.Module | None] | None:
        available = std_modules()
        if name not in available:
            guess = did_you_mean(name, available)
            self.diags.error(
                "F0406", f"unknown standard library module `std.{name}`", at,
                help=guess.replace("`", "`std.", 1) if guess else
                "the standard library has " + ", ".join(f"`std.{m}`" for m in available))
            return None
        res = resources.files("filmc.stdlib").joinpath(f"{name}.film")
        display = f"{STD_DISPLAY}/{name}.film"
        path = Path(str(res))
        if path not in self._parsed:
            started = time.perf_counter()
            text = res.read_text(encoding="utf-8")
            self.sources.add(display, text)
            self._parsed[path] = parse(text, display, self.diags)
            self.read_seconds += time.perf_counter() - started
        return path, display, self._parsed[path]

    # -- resolving -------------------------------------------------------------------

    def _resolve(self, rel: str, base: Path, root: Path, at: ast.Span, what: str) -> Path | None:
        if not rel:
            self.diags.error("F0401", f"empty {what} path", at)
            return None
        if os.path.isabs(rel) or rel.startswith("~"):
            self.diags.error("F0403", f"{what} path `{rel}` is absolute", at,
                             "absolute paths break on every other machine",
                             help="write the path relative to this file")
            return None
        try:
            check_name(rel, what)
        except PathProblem as e:
            self.diags.error(e.code, e.message, at, e.label, help=e.help)
            return None
        path = Path(os.path.normpath(base / rel))
        if not _inside(path, root):
            self.diags.error("F0404", f"{what} path `{rel}` leaves the project folder", at,
                             f"this resolves outside `{display_path(root)}`",
                             help="keep every file of a film inside its project folder "
                                  "(a `filmc.toml` marks a larger project folder)")
            return None
        try:
            check_target(path, root, rel, what)
        except PathProblem as e:
            self.diags.error(e.code, e.message, at, e.label, help=e.help)
            return None
        return path

    # -- loading a film ------------------------------------------------------------

    def load(self, main: Path) -> Project | None:
        main = Path(os.path.normpath(Path.cwd() / main))
        root = find_root(main)
        display = display_path(main)
        module = self._read(main, display, None)
        if module is None:
            return None
        main_file = SourceFile(main, display, module, "main")
        files: list[SourceFile] = []
        loaded: dict[Path, SourceFile] = {}
        self._visit(main_file, files, loaded, [main], root)
        film = self._film(main_file)
        scenes = [(d, main_file) for d in module.decls if isinstance(d, ast.Scene)]
        if film is not None:
            for part in ast.attrs_of(film.items):
                if part.key.text != "part" or len(part.values) != 1 or not isinstance(part.values[0], ast.Str):
                    continue
                scenes += self._load_part(part, main_file, files, loaded, root)
        for f in files:
            if f.role == "use" and f.path != main:
                for d in f.module.decls:
                    if isinstance(d, ast.Scene):
                        self.diags.error(
                            "F0408", f"scene `{d.id.text}` is in a file loaded with `use`", d.id.span,
                            help="`use` loads definitions; name a file that holds scenes as a "
                                 "`part` of the film instead")
        return Project(root, main_file, files, film, scenes)

    def _film(self, main: SourceFile) -> ast.Film | None:
        films = [d for d in main.module.decls if isinstance(d, ast.Film)]
        for extra in films[1:]:
            self.diags.error("F0210", "a second `film` header", extra.title.span,
                             labels=[Label(films[0].title.span, "the film is declared here")],
                             help="a film has one header; remove this one")
        return films[0] if films else None

    def _load_part(self, part: ast.Attr, main: SourceFile, files: list[SourceFile],
                   loaded: dict[Path, SourceFile], root: Path) -> list:
        rel = part.values[0]
        assert isinstance(rel, ast.Str)
        path = self._resolve(rel.value, main.path.parent, root, rel.span, "part")
        if path is None:
            return []
        if path in loaded or path == main.path:
            what = "the main file" if path == main.path else f"already loaded as `{loaded[path].role}`"
            self.diags.error("F0409", f"`{rel.value}` is {what}", rel.span,
                             help="each file is either the main file, a part or a `use`d file, once")
            return []
        module = self._read(path, display_path(path), rel.span)
        if module is None:
            return []
        sf = SourceFile(path, display_path(path), module, "part")
        for d in module.decls:
            if isinstance(d, ast.Film):
                self.diags.error("F0410", "a part cannot have its own `film` header", d.title.span,
                                 labels=[Label(rel.span, "named as a part here")],
                                 help="keep the header in the main file only")
        self._visit(sf, files, loaded, [main.path, path], root)
        return [(d, sf) for d in module.decls if isinstance(d, ast.Scene)]

    def _visit(self, sf: SourceFile, files: list[SourceFile], loaded: dict[Path, SourceFile],
               stack: list[Path], root: Path) -> None:
        """Load what `sf` uses (depth first, so definitions precede their users), then `sf`."""
        loaded[sf.path] = sf
        for decl in sf.module.decls:
            if not isinstance(decl, ast.Use):
                continue
            if not decl.is_file:
                self._use_std(decl, files, loaded)
                continue
            path = self._resolve(decl.target, sf.path.parent, root, decl.span, "`use`")
            if path is None:
                continue
            if path in stack:
                cycle = stack[stack.index(path):] + [path]
                self.diags.error(
                    "F0405", "import cycle: " + " --> ".join(display_path(p) for p in cycle),
                    decl.span, "this `use` closes the cycle",
                    help="move what both files need into a third file that both `use`")
                continue
            if path in loaded:
                continue
            module = self._read(path, display_path(path), decl.span)
            if module is None:
                continue
            child = SourceFile(path, display_path(path), module, "use")
            self._visit(child, files, loaded, stack + [path], root)
        files.append(sf)

    def _use_std(self, decl: ast.Use, files: list[SourceFile], loaded: dict[Path, SourceFile]) -> None:
        parts = decl.target.split(".")
        if parts[0] != STD_PREFIX or len(parts) != 2:
            self.diags.error("F0406", f"unknown module `{decl.target}`", decl.span,
                             help=f'standard modules are `std.NAME`; load a project file by '
                                  f'path: `use "{parts[-1]}.film"`')
            return
        found = self._read_std(parts[1], decl.span)
        if found is None:
            return
        path, display, module = found
        if path in loaded or module is None:
            return
        self._visit(SourceFile(path, display, module, "std"), files, loaded, [path], path.parent)


# --- which film a part belongs to ---------------------------------------------------

_SKIP_DIRS = frozenset({"build", ".filmc", ".git"})
MAX_FILM_FILES = 2000  # .film files a search for a part's film reads, at most


def films_including(part: Path) -> list[Path]:
    """The main files of the films that name `part` as a `part` (or `use` it).

    What an editor's "check this file" needs: a part checked alone lacks the film's
    characters and presets.  The film's main file lies inside its project folder
    and the part inside that folder too, so the search reads the `.film` files of
    the nearest folder above `part` that holds `filmc.toml` (and the folders below
    it), else of each folder from the part's own up to a `.git` folder or the top."""
    part = Path(os.path.normpath(Path.cwd() / part))
    candidates: list[Path] = []
    ancestors = list(part.parents)
    toml = next((d for d in ancestors if (d / CONFIG_FILE).is_file()), None)
    if toml is not None:
        for dirpath, dirnames, filenames in os.walk(toml):
            dirnames[:] = sorted(d for d in dirnames if d not in _SKIP_DIRS)
            candidates += [Path(dirpath) / n for n in sorted(filenames) if n.endswith(".film")]
            if len(candidates) > MAX_FILM_FILES:
                break
    else:
        for d in ancestors:
            try:
                candidates += sorted(p for p in d.glob("*.film") if p.is_file())
            except OSError:
                break
            if (d / ".git").exists():
                break
    found = []
    for main in candidates[:MAX_FILM_FILES]:
        if main != part and part in _named_by(main):
            found.append(main)
    return found


def _named_by(main: Path) -> set[Path]:
    """The files a main file's `film` block names as parts, and the files it `use`s."""
    try:
        if not stat.S_ISREG(main.stat().st_mode):  # a FIFO or a device would block the read
            return set()
        with main.open(encoding="utf-8", errors="replace") as f:
            text = f.read(1 << 20)
    except OSError:
        return set()
    if "part" not in text and "use" not in text:  # names no other file: no need to parse
        return set()
    module = parse(text, str(main), Diagnostics())
    names = [d.target for d in module.decls if isinstance(d, ast.Use) and d.is_file]
    for d in module.decls:
        if isinstance(d, ast.Film):
            names += [a.values[0].value for a in ast.attrs_of(d.items) if a.key.text == "part"
                      and len(a.values) == 1 and isinstance(a.values[0], ast.Str)]
    return {Path(os.path.normpath(main.parent / n)) for n in names if n and "\0" not in n}


def _inside(path: Path, root: Path) -> bool:
    try:
        path.relative_to(root)
    except ValueError:
        return False
    return True
