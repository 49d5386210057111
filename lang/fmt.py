"""AST → canonical text: `filmc fmt`.

Like gofmt, the formatter owns layout only.  It never reorders anything and
never changes what a literal, a name or a comment says; it decides
indentation, spacing, blank lines and where comments sit:

* two spaces per nesting level; a declaration or block header on one line,
  ending in `{`; `}` on a line of its own, even for an empty body;
* one space between values, `, ` in lists whose schema asks for commas
  (`cast CHEN(winter), WOLF`); strings re-quoted with canonical escapes; the
  scene setting written as stored (`INT`, `EXT`, `INT/EXT`);
* one blank line between top-level declarations, none between consecutive
  `use` lines; inside a block a run of blank lines becomes one, and there is
  none just after `{` or just before `}`;
* an own-line comment stays on its own line, indented like the item after it;
  a trailing comment stays at the end of its line, two spaces after the code.

Blank lines and comments are placed from source spans (the AST keeps no
whitespace): a gap between two lines that holds no comment was blank.
"""

from __future__ import annotations

from . import ast
from .diagnostics import Diagnostics
from .parser import parse
from .schema import BLOCKS

INDENT = "  "

# Separator policies for the line breaks in a gap between two source lines.
_KEEP = 0  # a blank line if the source had one or more
_NEVER = 1
_ALWAYS = 2


def format_module(module: ast.Module) -> str:
    """The canonical text of one parsed module (empty for an empty file)."""
    return _Printer(module.comments).module(module.decls)


def format_text(text: str, file: str, diags: Diagnostics) -> str | None:
    """Parse and format; None when the file has syntax errors (reported in `diags`).

    A file with syntax errors is never rewritten: what failed to parse would be lost.
    """
    own = Diagnostics()
    module = parse(text, file, own)
    # Full-width punctuation (W0101) is what formatting rewrites: no warning for it here.
    diags.extend(d for d in own if d.code != "W0101")
    if own.errors:
        return None
    deepest = _deepest(module)
    if deepest is not None:
        diags.error("F0120", f"blocks nested more than {MAX_NESTING} deep", deepest,
                    "this block is too deep to format",
                    help="a film nests a few blocks at most (scene, shot, a block inside); "
                         "close the blocks that were meant to end earlier")
        return None
    return format_module(module)


MAX_NESTING = 50  # blocks inside blocks that `fmt` formats (a film uses three or four)


def _deepest(module: ast.Module) -> ast.Span | None:
    """The span of the first block nested past MAX_NESTING, found without recursion."""
    stack: list[tuple[object, int]] = [(d, 1) for d in module.decls]
    while stack:
        node, depth = stack.pop()
        items = getattr(node, "items", None)
        if not items:
            continue
        if depth > MAX_NESTING:
            return getattr(node, "span", None)
        stack.extend((item, depth + 1) for item in items)
    return None


# --- what goes between values ------------------------------------------------------


# For each kind of block, the attributes whose values are written `a, b, c`.
_COMMAS = {
    name: frozenset(key for key, spec in block.attrs.items() if spec.comma)
    for name, block in BLOCKS.items()
}
_NO_COMMAS: frozenset[str] = frozenset()


def _nested_spec(spec: str | None, key: str) -> str | None:
    block = BLOCKS.get(spec) if spec else None
    header = block.blocks.get(key) if block else None
    return header.body if header else None


def _values(values: tuple[ast.Value, ...], comma: bool = False) -> str:
    return (", " if comma else " ").join(map(ast.value_text, values))


def _header(*parts: str) -> str:
    return " ".join(p for p in parts if p) + " {"


# --- the printer ---------------------------------------------------------------------


class _Printer:
    """Emits lines in source order, taking comments from a cursor as it goes."""

    def __init__(self, comments: tuple[ast.Comment, ...]) -> None:
        self.out: list[str] = []
        self.comments = sorted(comments, key=lambda c: (c.span.line, c.span.col))
        self.next = 0  # index of the first comment not yet printed

    # lines

    def _code(self, indent: str, text: str, line: int) -> None:
        """One line of code, with the comment that ended its source line, if any."""
        comments, i = self.comments, self.next
        trailing = []
        while i < len(comments) and comments[i].span.line <= line:
            trailing.append("//" + comments[i].text)
            i += 1
        self.next = i
        if trailing:
            text = "  ".join([text] + trailing)
        self.out.append(indent + text)

    def _gap(self, prev: int, until: int, indent: str, first: int, rest: int,
             last: int | None = None) -> None:
        """The own-line comments between source lines `prev` and `until`, and the
        blank lines around them.  `first` rules the break right after `prev`,
        `rest` the others; `last`, when given, overrides the break before `until`."""
        comments, out = self.comments, self.out
        policy, line = first, prev
        while self.next < len(comments) and comments[self.next].span.line < until:
            c = comments[self.next]
            self.next += 1
            if policy == _ALWAYS or (policy == _KEEP and c.span.line > line + 1):
                out.append("")
            out.append(indent + "//" + c.text)
            policy, line = rest, c.span.line
        if last is not None:
            policy = last
        if policy == _ALWAYS or (policy == _KEEP and until > line + 1):
            out.append("")

    # structure

    def module(self, decls: tuple[ast.Decl, ...]) -> str:
        prev_line, prev_use = 0, None
        for i, decl in enumerate(decls):
            if i == 0:
                self._gap(0, decl.span.line, "", _NEVER, _KEEP)
            elif prev_use and isinstance(decl, ast.Use):
                self._gap(prev_line, decl.span.line, "", _NEVER, _NEVER)
            else:
                self._gap(prev_line, decl.span.line, "", _ALWAYS, _KEEP)
            self._decl(decl)
            prev_use = isinstance(decl, ast.Use)
            prev_line = decl.span.line if isinstance(decl, ast.Use) else decl.close.line
        end = max(prev_line, self.comments[-1].span.line if self.comments else 0) + 1
        self._gap(prev_line, end, "", _NEVER if not decls else _KEEP, _KEEP, _NEVER)
        if self.next < len(self.comments):  # only with spans that do not match the tree
            self.out.extend("//" + c.text for c in self.comments[self.next:])
        if not self.out:
            return ""
        self.out.append("")
        return "\n".join(self.out)

    def _decl(self, decl: ast.Decl) -> None:
        if isinstance(decl, ast.Use):
            target = ast.quote(decl.target) if decl.is_file else decl.target
            self._code("", f"use {target}", decl.span.line)
            return
        if isinstance(decl, ast.Film):
            head, spec = _header("film", ast.quote(decl.title.value)), "film"
        elif isinstance(decl, (ast.Character, ast.Location)):
            kw = "character" if isinstance(decl, ast.Character) else "location"
            name = ast.quote(decl.name.value) if decl.name else ""
            head, spec = _header(kw, decl.id.text, name), kw
        elif isinstance(decl, ast.Preset):
            head = _header("preset", decl.kind.text, decl.id.text)
            spec = f"preset {decl.kind.text}"
        else:
            title = ast.quote(decl.title.value) if decl.title else ""
            slug = ""
            if decl.slug is not None:
                s = decl.slug
                slug = " ".join([s.written or s.setting, s.location.text]
                                + ([s.time.text] if s.time else []))
            head, spec = _header("scene", decl.id.text, title, slug), "scene"
        self._block(head, decl, "", spec)

    def _block(self, head: str, node, indent: str, spec: str | None) -> None:
        """A header line ending in `{`, the body one level in, and the `}` line."""
        open_line = node.span.line
        self._code(indent, head, open_line)
        inner = indent + INDENT
        commas = _COMMAS.get(spec, _NO_COMMAS) if spec else _NO_COMMAS
        prev, first = open_line, _NEVER
        for item in node.items:
            self._gap(prev, item.span.line, inner, first, _KEEP)
            prev = self._item(item, inner, spec, commas)
            first = _KEEP
        close_line = node.close.line
        self._gap(prev, close_line, inner, first, _KEEP, _NEVER)
        self._code(indent, "}", close_line)

    def _item(self, item, indent: str, spec: str | None, commas: frozenset[str]) -> int:
        """Print one item; return the source line it ended on."""
        if isinstance(item, ast.Attr):
            key = item.key.text
            text = key + " " + _values(item.values, key in commas) if item.values else key
            self._code(indent, text, item.span.line)
            return item.span.line
        if isinstance(item, ast.Dialogue):
            paren = f" ({item.paren})" if item.paren is not None else ""
            self._code(indent, f"{item.speaker.text}{paren}: {ast.quote(item.text.value)}",
                       item.span.line)
            return item.span.line
        if isinstance(item, ast.Shot):
            head = _header("shot", item.id.text, item.duration.text if item.duration else "")
            self._block(head, item, indent, "shot")
        else:
            head = _header(item.key.text, _values(item.values))
            self._block(head, item, indent, _nested_spec(spec, item.key.text))
        return item.close.line


__all__ = ["format_module", "format_text"]
