"""The `.film` abstract syntax tree.

Frozen attrs classes, tuples not lists.  Every node carries a `span` that takes
no part in equality or hashing, so two trees compare equal when they say the
same thing, wherever it was written (the formatter's equivalence test relies on
this).

The tree mirrors the grammar: declarations are typed (`Film`, `Character`,
`Shot`, ...), and their bodies are ordered tuples of generic items (`Attr`,
`Dialogue`, `Block`).  What each attribute means is decided by `lang.schema`
and checked by `lang.check`; the compiler reads the same items.
"""

from __future__ import annotations

import unicodedata
from collections.abc import Iterator
from typing import Any

import attrs


@attrs.frozen(slots=True)
class Span:
    """A source range: 1-based line and column, end column exclusive."""

    file: str
    line: int
    col: int
    end_line: int
    end_col: int

    def to(self, other: Span) -> Span:
        """The span from the start of this one to the end of `other`."""
        return Span(self.file, self.line, self.col, other.end_line, other.end_col)

    def __str__(self) -> str:
        return f"{self.file}:{self.line}:{self.col}"


NO_SPAN = Span("<none>", 0, 0, 0, 0)


def _span() -> Any:  # an attrs field: a Span, excluded from equality
    return attrs.field(eq=False, repr=False, default=NO_SPAN)


# --- values ------------------------------------------------------------------


@attrs.frozen(slots=True)
class Name:
    """An identifier: an id, a keyword-like value, a preset name."""

    text: str
    span: Span = _span()


@attrs.frozen(slots=True)
class Str:
    """A quoted string, escapes already decoded."""

    value: str
    span: Span = _span()


@attrs.frozen(slots=True)
class Literal:
    """A number-like word (`4s`, `0:04`, `96f`, `35mm`, `1920x1080`, `2.39:1`, `24`).

    Kept as written; `lang.literals` reads it as the type an attribute expects.
    """

    text: str
    span: Span = _span()


@attrs.frozen(slots=True)
class Color:
    """A colour literal such as `#f4a259`."""

    text: str
    span: Span = _span()


@attrs.frozen(slots=True)
class Ref:
    """`NAME(ARG)`: a character with an outfit in a cast list."""

    name: Name
    arg: Name
    span: Span = _span()


Value = Name | Str | Literal | Color | Ref


# --- items inside a block ------------------------------------------------------


@attrs.frozen(slots=True)
class Attr:
    """One attribute line: `camera close_up low_angle 85mm`."""

    key: Name
    values: tuple[Value, ...]
    span: Span = _span()


@attrs.frozen(slots=True)
class Dialogue:
    """`SPEAKER (parenthetical): "text"`."""

    speaker: Name
    paren: str | None
    text: Str
    span: Span = _span()


@attrs.frozen(slots=True)
class Block:
    """A nested block: `outfit winter "sheepskin coat" { ... }`, `at NIGHT { ... }`."""

    key: Name
    values: tuple[Value, ...]
    items: tuple[Item, ...]
    span: Span = _span()
    close: Span = _span()


Item = Attr | Dialogue | Block


# --- declarations ----------------------------------------------------------------


@attrs.frozen(slots=True)
class Use:
    """`use std.camera` (a stdlib module) or `use "cast.film"` (a project file)."""

    target: str
    is_file: bool
    span: Span = _span()


@attrs.frozen(slots=True)
class Film:
    title: Str
    items: tuple[Item, ...]
    span: Span = _span()
    close: Span = _span()


@attrs.frozen(slots=True)
class Character:
    id: Name
    name: Str | None
    items: tuple[Item, ...]
    span: Span = _span()
    close: Span = _span()


@attrs.frozen(slots=True)
class Location:
    id: Name
    name: Str | None
    items: tuple[Item, ...]
    span: Span = _span()
    close: Span = _span()


@attrs.frozen(slots=True)
class Preset:
    """`preset camera close_up { ... }`: a named bundle of attributes."""

    kind: Name
    id: Name
    items: tuple[Item, ...]
    span: Span = _span()
    close: Span = _span()


# Chinese scene headings (`外 院子 黄昏`): the setting and time words a Chinese
# screenplay uses, and what they mean (traditional forms too).
CHINESE_SETTINGS = {"内": "INT", "內": "INT", "外": "EXT", "内外": "INT/EXT", "內外": "INT/EXT",
                    "内景": "INT", "內景": "INT", "外景": "EXT", "内外景": "INT/EXT",
                    "內外景": "INT/EXT"}
CHINESE_TIMES = {"日": "DAY", "夜": "NIGHT", "黄昏": "DUSK", "黃昏": "DUSK", "黎明": "DAWN"}


@attrs.frozen(slots=True)
class Slug:
    """The scene heading: `EXT STEPPE DUSK`, or `外 院子 黄昏`."""

    setting: str  # "INT", "EXT" or "INT/EXT"
    location: Name
    time: Name | None
    span: Span = _span()
    written: str | None = None  # the setting as written when it is Chinese (`外`), for fmt

    @property
    def time_of_day(self) -> str | None:
        """The time as the compiler reads it: `黄昏` is `DUSK`."""
        if self.time is None:
            return None
        return CHINESE_TIMES.get(self.time.text, self.time.text)


@attrs.frozen(slots=True)
class Shot:
    id: Name
    duration: Literal | None
    items: tuple[Item, ...]
    span: Span = _span()
    close: Span = _span()


@attrs.frozen(slots=True)
class Scene:
    id: Name
    title: Str | None
    slug: Slug | None
    items: tuple[Item | Shot, ...]
    span: Span = _span()
    close: Span = _span()

    @property
    def shots(self) -> tuple[Shot, ...]:
        return tuple(i for i in self.items if isinstance(i, Shot))


Decl = Use | Film | Character | Location | Preset | Scene


@attrs.frozen(slots=True)
class Comment:
    """A `//` comment; `trailing` when it ends a line that has code on it."""

    text: str
    trailing: bool
    span: Span = _span()


@attrs.frozen(slots=True)
class Module:
    """One parsed `.film` file."""

    path: str = attrs.field(eq=False)
    decls: tuple[Decl, ...]
    comments: tuple[Comment, ...]


# --- helpers ---------------------------------------------------------------------


def attrs_of(items: tuple[Item | Shot, ...]) -> Iterator[Attr]:
    """The plain attribute lines of a body, in order."""
    for item in items:
        if isinstance(item, Attr):
            yield item


def find_attr(items: tuple[Item | Shot, ...], key: str) -> Attr | None:
    """The first attribute named `key`, or None."""
    for item in items:
        if isinstance(item, Attr) and item.key.text == key:
            return item
    return None


def value_text(value: Value) -> str:
    """How a value is written in source (strings quoted)."""
    if isinstance(value, Str):
        return quote(value.value)
    if isinstance(value, Ref):
        return f"{value.name.text}({value.arg.text})"
    return value.text


_ESCAPES = {"\\": "\\\\", '"': '\\"', "\n": "\\n", "\t": "\\t", "\r": "\\r"}


def quote(s: str) -> str:
    """A string literal that reads back as `s`; invisible characters are written `\\u{..}`."""
    return '"' + "".join(_escape(c) for c in s) + '"'


def _escape(c: str) -> str:
    if c in _ESCAPES:
        return _ESCAPES[c]
    if c.isprintable() or unicodedata.category(c) == "Zs":  # keep spaces such as U+3000
        return c
    return f"\\u{{{ord(c):x}}}"
