"""Completion: what may be written at the cursor, from the film's own names.

The block the cursor is in comes from the parse of the file as it is now (the
parser recovers from the line being typed); what the line needs next comes from
the words before the cursor and the schema (lang/schema.py: each attribute's value
types, in order).  The names come from the film's latest check (`Symbols`): its
characters, each character's outfits (`CHEN(` offers CHEN's), locations and the
times of day they describe, presets by kind (the standard library's that the film
`use`s included), and the backends filmc.toml configures.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

import attrs
from lsprotocol import types as lsp

from .lang import ast, schema
from .lang.check import Symbols
from .lang.loader import std_modules
from .lang.parser import KEYWORDS, SETTINGS

_DECLARATIONS = ("use", "film", "character", "location", "preset", "scene")
_TOKEN = re.compile(r'"(?:[^"\\]|\\.)*"?|“[^”]*”?|[-+]?\d[\w.:]*|#\w*|\w+|[^\s\w]')
_OUTFIT_OF = re.compile(r"(\w+)\s*[(（]\s*\w*$")
_ENUMS: dict[str, tuple[str, ...]] = {
    "step": schema.STEP_KINDS, "motion": schema.MOTIONS, "slot": schema.CAMERA_SLOTS,
    "time": schema.TIMES_OF_DAY, "direction": schema.KEY_DIRECTIONS,
    "framing": schema.FRAMINGS, "being": schema.BEINGS, "previous": ("previous",),
    "next": ("next",),
}
_BACKEND_VALUE = {"backend": 1, "fallback": 1, "candidates": 1}  # key → index of a backend name


@attrs.frozen
class Facts:
    """What completion offers from the film: its symbols and its configured backends."""

    symbols: Symbols | None = None
    backends: tuple[str, ...] = ()


@attrs.frozen
class Where:
    """The block around the cursor: its schema key (None: the top level), and the
    declarations it is inside of."""

    spec: str | None
    character: str | None = None
    location: str | None = None
    shot: ast.Shot | None = None
    scene: ast.Scene | None = None


def where(module: ast.Module, line: int, col: int) -> Where:
    """The innermost block whose body holds (1-based) `line`, `col`."""
    for decl in module.decls:
        if isinstance(decl, ast.Use) or not _inside(decl, line, col):
            continue
        if isinstance(decl, ast.Film):
            return _descend(decl.items, Where("film"), line, col)
        if isinstance(decl, ast.Character):
            return _descend(decl.items, Where("character", character=decl.id.text), line, col)
        if isinstance(decl, ast.Location):
            return _descend(decl.items, Where("location", location=decl.id.text), line, col)
        if isinstance(decl, ast.Preset):
            return _descend(decl.items, Where(f"preset {decl.kind.text}"), line, col)
        if isinstance(decl, ast.Scene):
            return _descend(decl.items, Where("scene", scene=decl), line, col)
    return Where(None)


def _inside(node, line: int, col: int) -> bool:
    close = node.close
    return node.span.line < line and (line < close.line or (line == close.line
                                                            and col <= close.col))


def _descend(items: tuple, here: Where, line: int, col: int) -> Where:
    for item in items:
        if isinstance(item, ast.Shot) and _inside(item, line, col):
            return _descend(item.items, attrs.evolve(here, spec="shot", shot=item), line, col)
        if isinstance(item, ast.Block) and _inside(item, line, col) and here.spec is not None:
            header = schema.BLOCKS[here.spec].blocks.get(item.key.text)
            if header is not None:
                return _descend(item.items, attrs.evolve(here, spec=header.body), line, col)
    return here


# --- what the line needs --------------------------------------------------------------------------


def complete(module: ast.Module, prefix: str, line: int, facts: Facts) -> list[lsp.CompletionItem]:
    """The completions for a cursor at the end of `prefix` (the line's text before it) on
    1-based `line` of the file parsed as `module`."""
    if _in_string_or_comment(prefix):
        return []
    partial = re.search(r"\w*$", prefix)
    done = prefix[: partial.start()] if partial else prefix
    tokens = [t for t in _TOKEN.findall(done) if t not in (",", "，", "、")]
    here = where(module, line, len(prefix) + 1)
    if tokens and tokens[0] in KEYWORDS:
        return _header(tokens, facts)
    if not tokens:
        return _line_starts(here, facts)
    if here.spec is None:
        return []
    m = _OUTFIT_OF.search(prefix)
    if m and tokens[0] == "cast":
        return _outfits(m.group(1), facts)
    if any(t in (":", "：") for t in tokens):
        return []  # a dialogue line: its text is the writer's
    return _values(here.spec, tokens[0], len(tokens) - 1, facts)


def _in_string_or_comment(prefix: str) -> bool:
    rest = _TOKEN.sub(lambda m: " " * len(m.group()) if m.group().startswith(("\"", "“"))
                      and _closed(m.group()) else m.group(), prefix)
    return '"' in rest or "“" in rest or "//" in rest


def _closed(s: str) -> bool:
    if s.startswith("“"):
        return len(s) > 1 and s.endswith("”")
    return len(s) > 1 and s.endswith('"') and not s.endswith('\\"')


def _line_starts(here: Where, facts: Facts) -> list[lsp.CompletionItem]:
    if here.spec is None:
        return [_item(k, lsp.CompletionItemKind.Keyword, "declaration") for k in _DECLARATIONS]
    spec = schema.BLOCKS[here.spec]
    out = [_item(key, lsp.CompletionItemKind.Property, a.doc, sort="1") for key, a in
           spec.attrs.items()]
    out += [_item(key, lsp.CompletionItemKind.Struct, b.doc, sort="1") for key, b in
            spec.blocks.items() if key not in spec.attrs]
    if here.spec == "scene":
        out.append(_item("shot", lsp.CompletionItemKind.Keyword, "a shot: `shot ID 4s {`",
                         sort="0"))
    if spec.dialogue and facts.symbols is not None:
        cast = _cast_of(here)
        for cid, (decl, _f) in facts.symbols.characters.items():
            name = decl.name.value if decl.name else cid
            out.append(_item(cid, lsp.CompletionItemKind.Reference,
                             f"{name} speaks: `{cid}: \"...\"`", insert=f"{cid}: ",
                             sort="0" if cid in cast else "2"))
    return out


def _cast_of(here: Where) -> set[str]:
    cast = None
    if here.shot is not None:
        cast = ast.find_attr(here.shot.items, "cast")
    if cast is None and here.scene is not None:
        cast = ast.find_attr(here.scene.items, "cast")
    if cast is None:
        return set()
    return {v.name.text if isinstance(v, ast.Ref) else ast.value_text(v) for v in cast.values}


def _values(spec_key: str, key: str, index: int, facts: Facts) -> list[lsp.CompletionItem]:
    spec = schema.BLOCKS[spec_key]
    sig = spec.attrs[key].sig if key in spec.attrs else \
        spec.blocks[key].sig if key in spec.blocks else None
    if sig is None:
        return []
    if _BACKEND_VALUE.get(key) == index:
        return [_item(b, lsp.CompletionItemKind.Module, "a backend of filmc.toml")
                for b in facts.backends]
    if index >= len(sig) and not sig[-1].endswith(("+", "*")):
        return []
    kind = sig[min(index, len(sig) - 1)].rstrip("+*?")
    if kind in schema.PRESET_KINDS:
        return _presets(kind, facts)
    if kind == "cast" or (kind == "name" and key == "framing"):
        return _characters(facts)
    if kind in _ENUMS:
        return [_item(v, lsp.CompletionItemKind.EnumMember, f"{kind}") for v in _ENUMS[kind]]
    return []


def _header(tokens: list[str], facts: Facts) -> list[lsp.CompletionItem]:
    """A declaration's header line: `use std.`, `preset KIND`, `scene ID "T" EXT LOC TIME`."""
    kw, rest = tokens[0], tokens[1:]
    if kw == "use" and not rest:
        return [_item(f"std.{m}", lsp.CompletionItemKind.Module, "the standard library")
                for m in std_modules()]
    if kw == "preset" and not rest:
        return [_item(k, lsp.CompletionItemKind.Keyword, "preset kind")
                for k in schema.PRESET_KINDS]
    if kw != "scene" or not rest:
        return []
    words = [t for t in rest[1:] if not t.startswith(('"', "“"))]
    if not words:
        return [_item(s, lsp.CompletionItemKind.Keyword, "scene setting")
                for s in ("INT", "EXT", "INT/EXT")]
    if len(words) == 1 and words[0].upper().rstrip(".") in SETTINGS:
        return _locations(facts)
    if len(words) == 2 and facts.symbols is not None:
        own = facts.symbols.times.get(words[1], {})
        return [_item(t, lsp.CompletionItemKind.EnumMember,
                      f"described in `{words[1]}`" if t in own else "time of day",
                      sort="0" if t in own else "1") for t in schema.TIMES_OF_DAY]
    return []


# --- the film's names ------------------------------------------------------------------------------


def _presets(kind: str, facts: Facts) -> list[lsp.CompletionItem]:
    if facts.symbols is None:
        return []
    out = []
    for name, (decl, f) in facts.symbols.presets.get(kind, {}).items():
        words = _str(decl.items, "prompt")
        where = f.display.replace("<std>/", "std.").removesuffix(".film") \
            if f.role == "std" else f.display
        out.append(_item(name, lsp.CompletionItemKind.Value, f"{kind} preset · {where}",
                         doc=words, sort="0" if f.role != "std" else "1"))
    return out


def _characters(facts: Facts) -> list[lsp.CompletionItem]:
    if facts.symbols is None:
        return []
    out = []
    for cid, (decl, _f) in facts.symbols.characters.items():
        name = decl.name.value if decl.name else cid
        out.append(_item(cid, lsp.CompletionItemKind.Reference, f"character · {name}",
                         doc=_str(decl.items, "look")))
    return out


def _outfits(character: str, facts: Facts) -> list[lsp.CompletionItem]:
    if facts.symbols is None or character not in facts.symbols.characters:
        return []
    decl, _f = facts.symbols.characters[character]
    out = []
    for name in facts.symbols.outfits.get(character, {}):
        out.append(_item(name, lsp.CompletionItemKind.Field, f"outfit of {character}",
                         doc=outfit_look(decl, name)))
    return out


def _locations(facts: Facts) -> list[lsp.CompletionItem]:
    if facts.symbols is None:
        return []
    return [_item(lid, lsp.CompletionItemKind.Reference,
                  f"location · {decl.name.value if decl.name else lid}",
                  doc=_str(decl.items, "look"))
            for lid, (decl, _f) in facts.symbols.locations.items()]


def outfit_look(character: ast.Character, outfit: str) -> str:
    """The words of an outfit: its header's string, else its block's `look`."""
    for item in character.items:
        if isinstance(item, (ast.Attr, ast.Block)) and item.key.text == "outfit" \
                and item.values and ast.value_text(item.values[0]) == outfit:
            words = [v.value for v in item.values[1:] if isinstance(v, ast.Str)]
            if isinstance(item, ast.Block):
                words += [_str(item.items, "look")]
            return " ".join(w for w in words if w)
    return ""


def _str(items: Iterable, key: str) -> str:
    a = ast.find_attr(tuple(items), key)
    if a is None:
        return ""
    return " ".join(v.value for v in a.values if isinstance(v, ast.Str))


def _item(label: str, kind: lsp.CompletionItemKind, detail: str, *, doc: str = "",
          insert: str | None = None, sort: str = "1") -> lsp.CompletionItem:
    return lsp.CompletionItem(
        label=label, kind=kind, detail=detail, insert_text=insert, sort_text=f"{sort}{label}",
        documentation=lsp.MarkupContent(kind=lsp.MarkupKind.Markdown, value=doc) if doc
        else None)
