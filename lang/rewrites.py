"""Canonical rewrites of a file's text that keep what it says: for an editor's quick fixes.

`full_width_rewrites(text)` lists, for the full-width punctuation a Chinese input
method types in syntax positions (`，：（）“”｛｝`, the full-width space), the ASCII
that the scanner reads it as (`lang/parser.py`: `FULL_WIDTH`, `FWSTRING`).  The
same characters inside a quoted string or a comment are text and stay.  Applying
every rewrite gives a file that parses to the same AST (spans aside) with no
W0101 warning; `filmc fmt` makes the same change as part of its layout.
"""

from __future__ import annotations

import attrs

from .parser import _PAREN, _SCAN, FULL_WIDTH, _requote


@attrs.frozen
class Rewrite:
    """Replace `old` at 1-based `line`, columns [`col`, `end_col`) (code points), by `new`."""

    line: int
    col: int
    end_col: int
    old: str
    new: str


def full_width_rewrites(text: str) -> list[Rewrite]:
    """Every full-width character that the scanner reads as syntax, with its ASCII."""
    out: list[Rewrite] = []
    pos, line, line_start, n = 0, 1, 0, len(text)
    while pos < n:
        m = _SCAN.match(text, pos)
        if m is None:  # the last alternative matches any character: never
            break
        kind, value, end = m.lastgroup, m.group(), m.end()
        col = pos - line_start + 1
        if kind == "NL":
            line += value.count("\n")
            line_start = pos + value.rfind("\n") + 1
        elif kind == "FWSPACE":
            out += [Rewrite(line, col + i, col + i + 1, c, " ")
                    for i, c in enumerate(value) if c == "\u3000"]
        elif kind == "FWSTRING":
            out.append(Rewrite(line, col, col + len(value), value, _requote(value[1:-1])))
        elif value in ("(", "（"):
            # `（quietly）`: a parenthetical (or an outfit) whose inside is kept as written.
            paren = _PAREN.match(text, pos)
            if paren is not None:
                inner = paren.group()
                end = paren.end()
                for at, ch in ((0, inner[0]), (len(inner) - 1, inner[-1])):
                    if ch in FULL_WIDTH:
                        out.append(Rewrite(line, col + at, col + at + 1, ch, FULL_WIDTH[ch]))
        elif kind == "FWPUNCT":
            out.append(Rewrite(line, col, col + 1, value, FULL_WIDTH[value]))
        pos = end
    return out


def apply(text: str, rewrites: list[Rewrite]) -> str:
    """`text` with `rewrites` (from one scan of it) applied."""
    lines = text.split("\n")
    for r in sorted(rewrites, key=lambda r: (r.line, r.col), reverse=True):
        s = lines[r.line - 1]
        lines[r.line - 1] = s[: r.col - 1] + r.new + s[r.end_col - 1:]
    return "\n".join(lines)
