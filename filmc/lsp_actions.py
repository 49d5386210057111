"""The compiler's records as the editor speaks them: diagnostics with their quick fixes,
formatting, and the outline of a file.

Positions: the compiler counts 1-based lines and columns in code points; a client
counts 0-based lines and columns in the code units of the position encoding it
agreed to (UTF-16 unless it offered another).  `Positions` converts, reading each
line's text as the editor holds it.

Quick fixes are read off the diagnostics, never guessed: a `did you mean `X`?`
replaces the name the message quotes; unquoted words are quoted as the help
writes them; `4 sec` becomes what the help says (`4s`); a character's name in a
cast becomes its id; `add `use std.X`` adds the line; and full-width punctuation
(W0101) is written in ASCII wherever the scanner reads it as syntax
(`lang.rewrites`).  Each fix travels in the diagnostic's `data`, so a code action
needs no second compile.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from lsprotocol import types as lsp

from .lang import ast
from .lang.diagnostics import ERROR, Diagnostic
from .lang.rewrites import full_width_rewrites
from .lsp_workspace import Workspace, column, units

_BACKTICKED = re.compile(r"`([^`]+)`")
_DID_YOU_MEAN = re.compile(r"did you mean `([^`]+)`\?\Z")
_QUOTE_IT = re.compile(r"put the words in double quotes: `\S+ (\".*\")`\Z")
_WRITE = re.compile(r"write `([^`\s]+)`\Z")
_BY_ID = re.compile(r"the name of `([^`]+)`, not its id\Z")
_ADD_USE = re.compile(r"add `(use std\.\w+)`\Z")
SOURCE = "filmc"


class Positions:
    """Compiler spans ↔ client positions, for the text the editor holds now."""

    def __init__(self, ws: Workspace, encoding: str) -> None:
        self.ws = ws
        self.encoding = encoding
        self._lines: dict[Path, list[str]] = {}

    def _line(self, path: Path, n: int) -> str:
        lines = self._lines.get(path)
        if lines is None:
            lines = self._lines[path] = (self.ws.text(path) or "").split("\n")
        return lines[n - 1] if 1 <= n <= len(lines) else ""

    def position(self, path: Path, line: int, col: int) -> lsp.Position:
        text = self._line(path, line)
        return lsp.Position(line=max(line - 1, 0),
                            character=units(text[: max(col - 1, 0)], self.encoding))

    def range(self, path: Path, span: ast.Span) -> lsp.Range:
        start = self.position(path, span.line, span.col)
        end = self.position(path, span.end_line, span.end_col)
        if (end.line, end.character) < (start.line, start.character):
            end = start
        return lsp.Range(start=start, end=end)

    def from_client(self, path: Path, pos: lsp.Position) -> tuple[int, int]:
        """(1-based line, 1-based code point column) of a client position."""
        text = self._line(path, pos.line + 1)
        return pos.line + 1, column(text, pos.character, self.encoding) + 1

    def prefix(self, path: Path, pos: lsp.Position) -> str:
        """The text of the position's line before it."""
        line, col = self.from_client(path, pos)
        return self._line(path, line)[: col - 1]

    def whole(self, path: Path) -> lsp.Range:
        """The range of the whole text."""
        text = self.ws.text(path) or ""
        lines = text.split("\n")
        return lsp.Range(start=lsp.Position(line=0, character=0),
                         end=lsp.Position(line=len(lines) - 1,
                                          character=units(lines[-1], self.encoding)))


# --- diagnostics -----------------------------------------------------------------------------------


def to_lsp(d: Diagnostic, path: Path, pos: Positions, files: dict[str, Path]) -> lsp.Diagnostic:
    """A compiler diagnostic as the client shows it: the same code, message and span; the
    help and notes after the message; the labels as related places; its quick fixes in
    `data`."""
    from .lsp_workspace import path_of

    rng = pos.range(path, d.span) if d.span is not None else \
        lsp.Range(start=lsp.Position(line=0, character=0), end=lsp.Position(line=0, character=0))
    text = d.message
    for note in d.notes:
        text += f"\nnote: {note}"
    if d.help:
        text += f"\nhelp: {d.help}"
    related = [lsp.DiagnosticRelatedInformation(
        location=lsp.Location(uri=path_of(lb.span.file, files).as_uri(),
                              range=pos.range(path_of(lb.span.file, files), lb.span)),
        message=lb.message) for lb in d.labels if lb.span.line > 0]
    fixes = quick_fixes(d, path, pos)
    return lsp.Diagnostic(
        range=rng, message=text, code=d.code, source=SOURCE,
        severity=lsp.DiagnosticSeverity.Error if d.severity == ERROR
        else lsp.DiagnosticSeverity.Warning,
        related_information=related or None,
        data={"fixes": fixes} if fixes else None)


def quick_fixes(d: Diagnostic, path: Path, pos: Positions) -> list[dict[str, Any]]:
    """The fixes a diagnostic's own words give, as `{"title", "edits": [{"range", "newText"}]}`
    (plain JSON: they travel in the diagnostic's `data`)."""
    span = d.span
    if span is None:
        return []
    fixes: list[tuple[str, list[tuple[ast.Span, str]]]] = []
    if d.code == "W0101":
        text = pos.ws.text(path) or ""
        edits = [(ast.Span(span.file, r.line, r.col, r.line, r.end_col), r.new)
                 for r in full_width_rewrites(text)]
        if edits:
            fixes.append(("Write the full-width punctuation in ASCII", edits))
    elif span.line == span.end_line:
        line = pos._line(path, span.line)
        inside = line[span.col - 1: span.end_col - 1]
        help = d.help or ""
        m = _DID_YOU_MEAN.search(help)
        if m:
            for wrong in _BACKTICKED.findall(d.message):
                at = inside.find(wrong)
                if at >= 0 and wrong != m.group(1):
                    col = span.col + at
                    new = m.group(1)
                    fixes.append((f"Change to `{new}`", [(ast.Span(span.file, span.line, col,
                                                                   span.line, col + len(wrong)),
                                                          new)]))
                    break
        m = _QUOTE_IT.search(help)
        if m and d.code == "F0302":
            fixes.append(("Put the words in double quotes", [(span, m.group(1))]))
        m = _WRITE.search(help)
        if m and d.code == "F0106":
            fixes.append((f"Write `{m.group(1)}`", [(span, m.group(1))]))
        m = _BY_ID.search(d.label)
        if m and d.code == "F0201":
            fixes.append((f"Write the id `{m.group(1)}`", [(span, m.group(1))]))
        m = _ADD_USE.search(help)
        if m:
            top = _after_uses(pos.ws.module(path), span.file)
            fixes.append((f"Add `{m.group(1)}`", [(top, m.group(1) + "\n")]))
    return [{"title": title, "edits": [{"range": _range_json(pos.range(path, s)), "newText": new}
                                       for s, new in edits]} for title, edits in fixes]


def _after_uses(module: ast.Module | None, file: str) -> ast.Span:
    """Where a new `use` line goes: after the file's last one, else at its top."""
    uses = [d for d in module.decls if isinstance(d, ast.Use)] if module is not None else []
    line = uses[-1].span.line + 1 if uses else 1
    return ast.Span(file, line, 1, line, 1)


def _range_json(r: lsp.Range) -> dict[str, Any]:
    return {"start": {"line": r.start.line, "character": r.start.character},
            "end": {"line": r.end.line, "character": r.end.character}}


def code_actions(uri: str, diagnostics: Iterable[lsp.Diagnostic],
                 known: dict[tuple, lsp.Diagnostic]) -> list[lsp.CodeAction]:
    """The quick fixes of the diagnostics a client sends back (their `data`, else the one
    published with the same code, range and message)."""
    out: list[lsp.CodeAction] = []
    for d in diagnostics:
        data = d.data
        if not data:
            ours = known.get(diagnostic_key(d))
            data = ours.data if ours is not None else None
        if not isinstance(data, dict):
            continue
        for fix in data.get("fixes", ()):
            edits = [lsp.TextEdit(range=_range(e["range"]), new_text=e["newText"])
                     for e in fix["edits"]]
            out.append(lsp.CodeAction(title=fix["title"], kind=lsp.CodeActionKind.QuickFix,
                                      diagnostics=[d], is_preferred=len(out) == 0,
                                      edit=lsp.WorkspaceEdit(changes={uri: edits})))
    return out


def diagnostic_key(d: lsp.Diagnostic) -> tuple:
    r = d.range
    return (d.code, r.start.line, r.start.character, r.end.line, r.end.character, d.message)


def _range(r: dict[str, Any]) -> lsp.Range:
    return lsp.Range(start=lsp.Position(line=r["start"]["line"], character=r["start"]["character"]),
                     end=lsp.Position(line=r["end"]["line"], character=r["end"]["character"]))


# --- the outline ----------------------------------------------------------------------------------


def symbols(module: ast.Module, path: Path, pos: Positions) -> list[lsp.DocumentSymbol]:
    """The file's declarations as an outline: scenes with their shots, characters with their
    outfits, locations with their times of day, presets, the film."""
    def sym(name: str, detail: str, kind: lsp.SymbolKind, node: Any, sel: ast.Span,
            children: list[lsp.DocumentSymbol] | None = None) -> lsp.DocumentSymbol:
        whole = node.span.to(node.close) if getattr(node, "close", None) is not None \
            and node.close.line > 0 else node.span
        return lsp.DocumentSymbol(name=name or "_", detail=detail, kind=kind,
                                  range=pos.range(path, whole), selection_range=pos.range(path, sel),
                                  children=children or None)

    out = []
    for d in module.decls:
        if isinstance(d, ast.Film):
            out.append(sym(d.title.value, "film", lsp.SymbolKind.File, d, d.title.span))
        elif isinstance(d, ast.Character):
            outfits = [sym(ast.value_text(i.values[0]), "outfit", lsp.SymbolKind.Field, i,
                           i.values[0].span) for i in d.items if isinstance(i, (ast.Attr, ast.Block))
                       and i.key.text == "outfit" and i.values]
            out.append(sym(d.id.text, d.name.value if d.name else "character",
                           lsp.SymbolKind.Class, d, d.id.span, outfits))
        elif isinstance(d, ast.Location):
            times = [sym(ast.value_text(i.values[0]), "time of day", lsp.SymbolKind.EnumMember,
                         i, i.values[0].span) for i in d.items
                     if isinstance(i, ast.Block) and i.key.text == "at" and i.values]
            out.append(sym(d.id.text, d.name.value if d.name else "location",
                           lsp.SymbolKind.Struct, d, d.id.span, times))
        elif isinstance(d, ast.Preset):
            out.append(sym(d.id.text, f"{d.kind.text} preset", lsp.SymbolKind.Constant, d,
                           d.id.span))
        elif isinstance(d, ast.Scene):
            shots = [sym(s.id.text, s.duration.text if s.duration else "shot",
                         lsp.SymbolKind.Method, s, s.id.span) for s in d.shots]
            detail = d.title.value if d.title else "scene"
            out.append(sym(d.id.text, detail, lsp.SymbolKind.Namespace, d, d.id.span, shots))
    return out
