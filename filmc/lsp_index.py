"""Where each id of a film is defined and used: go to definition, find references, rename.

An `Index` walks the AST of every file of a film once (the standard library's too)
and records each occurrence of a character, outfit, location, preset, scene or shot
id with its span, as a definition or a use.  The places that use an id are the ones
the checker reads as references (lang/check.py, lang/schema.py): a `cast` line
(`CHEN(winter)`: the character and its outfit), `framing CHEN ...`, a dialogue
speaker, a scene heading's location, and every `camera`, `light` and `style` value
that names a preset (in a film, scene, shot, location, time of day or a preset
bundle).

`rename` turns an id's occurrences into edits, with the two places outside `.film`
files that name ids: a shot's table in `film.lock` (its picks follow the shot) and a
character's key in a backend's `voices` table of `filmc.toml`.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import attrs

from .compiler.lock import _key as toml_key
from .compiler.lock import lock_path
from .compiler.tomlpos import line_col, scan_positions
from .lang import ast
from .lang.loader import Project, SourceFile
from .lang.parser import KEYWORDS
from .lang.paths import CONFIG_FILE
from .lang.schema import PRESET_KINDS

CHARACTER, OUTFIT, LOCATION, PRESET, SCENE, SHOT = (
    "character", "outfit", "location", "preset", "scene", "shot")
_NAME = re.compile(r"(?!\d)\w+\Z")


@attrs.frozen
class Symbol:
    """An id: its kind, its name, and what it belongs to (an outfit's character, a preset's
    kind: `camera`, `light` or `style`)."""

    kind: str
    name: str
    owner: str = ""

    def describe(self) -> str:
        if self.kind == OUTFIT:
            return f"outfit `{self.name}` of `{self.owner}`"
        if self.kind == PRESET:
            return f"{self.owner} preset `{self.name}`"
        return f"{self.kind} `{self.name}`"


@attrs.frozen
class Occurrence:
    symbol: Symbol
    span: ast.Span
    definition: bool
    file: SourceFile = attrs.field(eq=False)
    # A definition's declaration (a Character, a Shot, an outfit's line...), and what holds
    # it (a shot's scene, an outfit's character).
    node: object = attrs.field(default=None, eq=False)
    parent: object = attrs.field(default=None, eq=False)

    @property
    def path(self) -> Path:
        return self.file.path


class Index:
    """Every occurrence of every id of one film, by symbol and by line."""

    def __init__(self, project: Project) -> None:
        self.project = project
        self.occurrences: list[Occurrence] = []
        self.by_symbol: dict[Symbol, list[Occurrence]] = {}
        self._by_line: dict[tuple[str, int], list[Occurrence]] = {}
        for f in project.files:
            self._file(f)
        for occ in self.occurrences:
            self.by_symbol.setdefault(occ.symbol, []).append(occ)
            self._by_line.setdefault((occ.span.file, occ.span.line), []).append(occ)

    # -- lookups ----------------------------------------------------------------------------------

    def at(self, display: str, line: int, col: int) -> Occurrence | None:
        """The occurrence under 1-based (`line`, `col`), the column just after a word too."""
        for occ in self._by_line.get((display, line), ()):
            if occ.span.col <= col <= occ.span.end_col:
                return occ
        return None

    def on_line(self, display: str, line: int) -> list[Occurrence]:
        return list(self._by_line.get((display, line), ()))

    def definitions(self, symbol: Symbol) -> list[Occurrence]:
        return [o for o in self.by_symbol.get(symbol, ()) if o.definition]

    def uses(self, symbol: Symbol) -> list[Occurrence]:
        return list(self.by_symbol.get(symbol, ()))

    # -- the walk -------------------------------------------------------------------------------

    def _add(self, f: SourceFile, kind: str, name: ast.Name, definition: bool,
             owner: str = "", node: object = None, parent: object = None) -> None:
        self.occurrences.append(Occurrence(Symbol(kind, name.text, owner), name.span,
                                           definition, f, node, parent))

    def _file(self, f: SourceFile) -> None:
        for decl in f.module.decls:
            if isinstance(decl, ast.Character):
                self._add(f, CHARACTER, decl.id, True, node=decl)
                self._items(f, decl.items, decl)
            elif isinstance(decl, ast.Location):
                self._add(f, LOCATION, decl.id, True, node=decl)
                self._items(f, decl.items)
            elif isinstance(decl, ast.Preset):
                self._add(f, PRESET, decl.id, True, decl.kind.text, node=decl)
                self._items(f, decl.items)
            elif isinstance(decl, ast.Film):
                self._items(f, decl.items)
            elif isinstance(decl, ast.Scene):
                self._add(f, SCENE, decl.id, True, node=decl)
                if decl.slug is not None:
                    self._add(f, LOCATION, decl.slug.location, False)
                self._items(f, decl.items, scene=decl)

    def _items(self, f: SourceFile, items: tuple, character: ast.Character | None = None,
               scene: ast.Scene | None = None) -> None:
        for item in items:
            if isinstance(item, ast.Shot):
                self._add(f, SHOT, item.id, True, node=item, parent=scene)
                self._items(f, item.items)
            elif isinstance(item, ast.Dialogue):
                self._add(f, CHARACTER, item.speaker, False)
            elif isinstance(item, (ast.Attr, ast.Block)):
                self._values(f, item, character)
                if isinstance(item, ast.Block):
                    self._items(f, item.items, character)

    def _values(self, f: SourceFile, item: ast.Attr | ast.Block,
                character: ast.Character | None) -> None:
        key, values = item.key.text, item.values
        if key == "outfit" and character is not None:
            if values and isinstance(values[0], ast.Name):
                self._add(f, OUTFIT, values[0], True, character.id.text, node=item,
                          parent=character)
        elif key in PRESET_KINDS:
            for v in values:
                if isinstance(v, ast.Name):
                    self._add(f, PRESET, v, False, key)
        elif key == "cast":
            for v in values:
                if isinstance(v, ast.Name):
                    self._add(f, CHARACTER, v, False)
                elif isinstance(v, ast.Ref):
                    self._add(f, CHARACTER, v.name, False)
                    self._add(f, OUTFIT, v.arg, False, v.name.text)
        elif key == "framing" and values and isinstance(values[0], ast.Name):
            self._add(f, CHARACTER, values[0], False)


# --- rename -------------------------------------------------------------------------------------


@attrs.frozen
class Edit:
    """Replace the text at `span` (1-based, end exclusive, code points) of `path` by `new`."""

    path: Path
    span: ast.Span
    new: str


class RenameError(Exception):
    """Why an id cannot be renamed so: a message for the user."""


def rename(index: Index, symbol: Symbol, new: str) -> list[Edit]:
    """Every edit that renames `symbol` to `new` across the film, or RenameError."""
    defs = index.definitions(symbol)
    if not defs:
        raise RenameError(f"{symbol.describe()} is not defined in this film: nothing to rename")
    std = [d for d in defs if d.file.role == "std"]
    if std:
        raise RenameError(f"{symbol.describe()} comes from the standard library "
                          f"(`{std[0].file.display}`): define a preset of your own instead")
    if not _NAME.match(new):
        raise RenameError(f"`{new}` is not a name: a name starts with a letter or `_` and "
                          "holds letters, digits and `_`")
    if new in KEYWORDS:
        raise RenameError(f"`{new}` is a keyword of the language: choose another name")
    taken = Symbol(symbol.kind, new, symbol.owner)
    if new != symbol.name and index.definitions(taken):
        where = index.definitions(taken)[0]
        raise RenameError(f"{taken.describe()} exists already (`{where.file.display}:"
                          f"{where.span.line}`): ids of one kind are unique in a film")
    edits = [Edit(o.path, o.span, new) for o in index.uses(symbol)]
    root = index.project.root
    if symbol.kind == SHOT:
        edits += _toml_keys(lock_path(index.project.main.path), lambda p: p == (symbol.name,),
                            new)
    elif symbol.kind == CHARACTER:
        edits += _toml_keys(root / CONFIG_FILE, lambda p: len(p) == 4 and p[0] == "backends"
                            and p[2] == "voices" and p[3] == symbol.name, new)
    return edits


def _toml_keys(path: Path, wanted, new: str) -> Iterator[Edit]:
    """Edits renaming the keys of a TOML file whose path `wanted` accepts (a shot's table of
    film.lock, a character's voice in filmc.toml)."""
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError):
        return
    for key_path, (start, end) in scan_positions(text).items():
        if key_path[-1] != "=" and wanted(key_path):
            line, col, end_col = line_col(text, start, end)
            yield Edit(path, ast.Span(str(path), line, col, line, end_col), toml_key(new))
