"""Text → AST: a fast scanner, Lark's LALR(1) parser, one inline Transformer.

The grammar lives in `film.lark`.  Lark builds the parse table from it; the
scanner here replaces Lark's lexer because one compiled regular expression is
several times faster on a feature-length film, and it can still be contextual:
it asks the parse table whether a word should be a keyword, a scene setting or
a plain NAME, and whether `(` opens a parenthetical.  The Transformer runs
while parsing (no intermediate tree) and builds `lang.ast` nodes with spans.

Syntax errors become diagnostics in film terms; the parser recovers by
skipping to the end of the line, and closes blocks left open at the end of a
file, so one run reports every syntax error it can.
"""

from __future__ import annotations

import re
import threading
from collections import OrderedDict
from collections.abc import Iterator
from importlib import resources

import lark
from lark import Token, Transformer
from lark.exceptions import UnexpectedCharacters, UnexpectedInput, UnexpectedToken
from lark.lexer import Lexer

from . import ast
from .diagnostics import Diagnostics, Label, suggest
from .paths import user_cache

KEYWORDS = {
    "use": "USE",
    "film": "FILM",
    "character": "CHARACTER",
    "location": "LOCATION",
    "preset": "PRESET",
    "scene": "SCENE",
    "shot": "SHOT",
}
SETTINGS = {"INT": "INT", "EXT": "EXT", "INT/EXT": "INT/EXT", "I/E": "INT/EXT",
            **ast.CHINESE_SETTINGS}

_SCAN = re.compile(
    r"""
    (?P<WS>[ \t]+)
  | (?P<FWSPACE>[\u3000][ \t\u3000]*)
  | (?P<NL>(?://[^\n]*)?(?:\r?\n[ \t]*(?://[^\n]*)?)+)
  | (?P<STRING>"(?:[^"\\\n]|\\[^\n])*")
  | (?P<OPENSTR>"(?:[^"\\\n]|\\[^\n])*\\?)
  | (?P<SLASHED>(?i:INT\.?/EXT|I/E)\.?)
  | (?P<NAME>(?!\d)\w+)
  | (?P<LITERAL>[+-]?\d[\w.:]*)
  | (?P<COLOR>\#\w*)
  | (?P<PUNCT>[{}():,.])
  | (?P<FWSTRING>“[^”\n]*”)
  | (?P<FWPUNCT>[｛｝（）：，、])
  | (?P<BAD>.)
    """,
    re.VERBOSE,
)
# `4 sec`, `2 seconds`, `96 frames`, `3 秒`: a duration written as two words.
_UNIT_WORDS = {"s": "s", "sec": "s", "secs": "s", "second": "s", "seconds": "s", "秒": "s",
               "秒钟": "s", "ms": "ms", "f": "f", "frame": "f", "frames": "f", "帧": "f"}
_SPACED_UNIT = re.compile(r"(\d+(?:\.\d+)?)[ \t]+(" + "|".join(
    sorted(_UNIT_WORDS, key=len, reverse=True)) + r")(?!\w)")
_HEAD_WORDS = re.compile(r"(\w+)(?:[ \t]+(\w+))?")
# A line ending in `{`, or in an empty block `{}` (a declaration that opens one where it
# cannot be is read the same either way: the block around it lacks its `}`).
_OPENS_BLOCK = re.compile(r"[^\n]*[{｛][ \t]*(?:[}｝][ \t]*)?(?://[^\n]*?)?\r?$",
                          re.MULTILINE)
_PAREN = re.compile(r"[(（][^()（）\n]*[)）]")
_COMMENT = re.compile(r"//[^\n]*")
# One value of an attribute line, for the scanner's fast path (`_value_run`).
_RUN_VALUE = re.compile(
    r"""
    (?P<STRING>"(?:[^"\\\n]|\\[^\n])*")
  | (?P<REF>(?P<RA>(?!\d)\w+)[ \t]*\([ \t]*(?P<RB>(?!\d)\w+)[ \t]*\))
  | (?P<NAME>(?!\d)\w+)
  | (?P<LITERAL>[+-]?\d[\w.:]*)
  | (?P<COLOR>\#\w*)
  | (?P<COMMA>,)
    """,
    re.VERBOSE,
)
_VALUE_KINDS = frozenset(("NAME", "STRING", "LITERAL", "COLOR"))
_PUNCT = {"{": "LBRACE", "}": "RBRACE", "(": "LPAR", ")": "RPAR", ":": "COLON",
          ",": "COMMA", ".": "DOT"}
# What a Chinese input method types in syntax positions, read as the ASCII it stands
# for (with a warning: `filmc fmt` writes the ASCII).  Inside a quoted string nothing
# is rewritten; the text between `“` and `”` is kept as written (no escapes).
FULL_WIDTH = {"｛": "{", "｝": "}", "（": "(", "）": ")", "：": ":", "，": ",", "、": ",",
              "“": '"', "”": '"', "\u3000": " "}
_FULL_WIDTH_LABELS = 4  # lines a full-width warning points at besides its first
MAX_VALUES = 256  # values of one attribute (a cast of 256 is a crowd: describe it)
SYNTAX_ERROR_LIMIT = 500  # syntax errors in one file before the parser stops reading it


class _Context:
    """What one parse collects besides the tree."""

    def __init__(self, file: str, diags: Diagnostics) -> None:
        self.file = file
        self.diags = diags
        self.comments: list[ast.Comment] = []
        self.braces: list[Token] = []  # open `{` tokens, innermost last
        # For each `{` (by its offset): where the first word of its line (`shot a 3s {`) is.
        self.brace_heads: dict[int, tuple[int, int]] = {}  # offset, column of the line's first word
        self._words: dict[int, tuple[str, str]] = {}  # `head_words`, by the `{`'s offset
        self.text = ""
        # The first `{` that a `}` seemed, by its indentation, not to close; and the outer
        # `{` it seemed to close instead.
        self.misplaced: tuple[Token, Token] | None = None
        self.popped: Token | None = None  # the `{` the last `}` closed
        self.error_lines: set[int] = set()
        self.full_width: dict[int, list[tuple[int, str]]] = {}  # line → (column, character)
        # Error recovery: the scanner drops the rest of the line, and the block
        # it opens, then ends the line (closing blocks whose `}` it dropped).
        self.skip = False
        self.skip_depth = 0
        self.runs: dict[int, tuple[ast.Value, ...]] = {}  # a VALUES token's offset → its values
        self.stopped = False  # too many syntax errors: the rest of the file is not read

    def head_words(self, brace: Token) -> tuple[str, str]:
        """The first two words of the line a `{` ends (`shot`, `a`), for messages."""
        at = brace.start_pos or 0
        words = self._words.get(at)
        if words is None:
            head = self.brace_heads.get(at)
            m = _HEAD_WORDS.match(self.text, head[0]) if head else None
            words = self._words[at] = (m.group(1), m.group(2) or "") if m else ("", "")
        return words

    def note_full_width(self, line: int, col: int, ch: str) -> None:
        if line not in self.error_lines:
            self.full_width.setdefault(line, []).append((col, ch))

    def warn_full_width(self) -> None:
        """One warning per file that uses full-width punctuation as syntax: at its first
        line, with the next few lines labelled (a scene typed with a Chinese input method
        would otherwise warn on every line)."""
        lines = [(line, found) for line, found in self.full_width.items()
                 if line not in self.error_lines]
        if not lines:
            return
        chars = list(dict.fromkeys(ch for _l, found in lines for _c, ch in found))
        shown = ", ".join(f"`{ch}` as `{FULL_WIDTH[ch]}`" if ch != "\u3000"
                          else "full-width spaces as spaces" for ch in chars)
        (line, found), rest = lines[0], lines[1:]
        col = found[0][0]
        labels = [Label(ast.Span(self.file, ln, f[0][0], ln, f[0][0] + 1), "and here")
                  for ln, f in rest[:_FULL_WIDTH_LABELS]]
        more = len(rest) - _FULL_WIDTH_LABELS
        self.diags.warning(
            "W0101", f"full-width punctuation read as ASCII: {shown}",
            ast.Span(self.file, line, col, line, col + 1), "full-width",
            labels=labels, notes=[f"and on {more} more line{'s' if more > 1 else ''}"]
            if more > 0 else [],
            help="`filmc fmt` rewrites it in ASCII; text inside quotes stays as written")

    def too_many_values(self, line: int, col: int) -> None:
        """A line with more than MAX_VALUES values: the rest of it is skipped, unread."""
        self.error_lines.add(line)
        self.diags.error("F0108", f"more than {MAX_VALUES} values on one line",
                         ast.Span(self.file, line, col, line, col + 1),
                         "the rest of the line is not read",
                         help="a line holds one attribute and its values: put text in one "
                              "quoted string, and split a long list")
        self.skip = True

    def stop(self, line: int) -> None:
        """Read no further: the file has SYNTAX_ERROR_LIMIT syntax errors (as clang stops
        at its `-ferror-limit`), so that a file of 30,000 broken lines is answered at once."""
        self.stopped = True
        self.diags.error("F0107", f"too many syntax errors: stopped reading at line {line}",
                         ast.Span(self.file, line, 1, line, 1), "not read from here",
                         help=f"fix the first errors and check again ({SYNTAX_ERROR_LIMIT:,} "
                              "a file are reported)")

    def span(self, tok: Token) -> ast.Span:
        # The scanner gives every token its positions (Lark types them as optional).
        return ast.Span(self.file, tok.line, tok.column, tok.end_line,  # type: ignore[arg-type]
                        tok.end_column)  # type: ignore[arg-type]


class FilmScanner(Lexer):
    """One-regex scanner that consults the LALR table for contextual words."""

    __future_interface__ = 2

    def __init__(self, lexer_conf) -> None:
        self.ctx: _Context | None = None

    def lex(self, lexer_state, parser_state) -> Iterator[Token]:
        ctx = self.ctx
        assert ctx is not None
        text = lexer_state.text.text
        states = parser_state.parse_conf.parse_table.states
        scan = _SCAN.match
        lc = lexer_state.line_ctr  # the position survives Lark resuming after an error
        pos, line, line_start, n = lc.char_pos, lc.line, lc.line_start_pos, len(text)
        code_line = 0  # the last line a token other than a newline was on
        line_values = 0  # words, strings and numbers on the current line
        first_pos = first_col = 0  # where the current line's first token is
        ctx.text = text
        if ctx.stopped:  # Lark resumes scanning after an error: stay stopped
            return
        while pos < n:
            m = scan(text, pos)
            assert m is not None  # the last alternative matches any character
            kind = m.lastgroup
            value = m.group()
            end = m.end()
            col = pos - line_start + 1
            if kind == "WS":
                pos = end
                continue
            if kind == "FWSPACE":
                ctx.note_full_width(line, col, value[0])
                pos = end
                continue
            if kind == "FWSTRING":
                ctx.note_full_width(line, col, value[0])
                ctx.note_full_width(line, col + len(value) - 1, value[-1])
                kind, value = "STRING", _requote(value[1:-1])
            elif kind == "FWPUNCT":
                ctx.note_full_width(line, col, value)
                kind, value = "PUNCT", FULL_WIDTH[value]
            if kind == "NL":
                if "//" in value:
                    self._comments(value, line, col, line == code_line, ctx)
                nls = value.count("\n")
                tok = Token("_NL", value, pos, line, col, line + nls, end - value.rfind("\n"), end)
                line += nls
                line_start = pos + value.rfind("\n") + 1
                pos = lc.char_pos = end
                lc.line, lc.line_start_pos = line, line_start
                if len(ctx.diags) >= SYNTAX_ERROR_LIMIT:
                    ctx.stop(line)
                    return  # the parser sees the end of the file
                if ctx.skip:
                    if ctx.skip_depth > 0:
                        continue
                    yield from self._end_skip(tok, ctx)
                    continue
                yield tok
                continue
            typ = kind
            if code_line != line:
                first_pos, first_col = pos, col
                line_values = 0
                if ctx.braces and not ctx.skip:
                    if kind == "NAME" and value in KEYWORDS and _OPENS_BLOCK.match(text, end):
                        at = Token("NAME", value, pos, line, col, line, col + end - pos, end)
                        yield from self._close_unclosed(value, at, ctx)
                    elif value == "}" and len(ctx.braces) > 1:
                        self._note_by_indent(col, ctx)
            if (kind in _VALUE_KINDS and not ctx.skip
                    and "VALUES" in states[parser_state.position]):
                run = _value_run(text, pos, line, line_start, ctx)
                if run is not None:  # the whole list of values as one token
                    end, ctx.runs[pos] = run
                    tok = Token("VALUES", text[pos:end], pos, line, col, line, col + end - pos, end)
                    pos = lc.char_pos = end
                    code_line = line
                    yield tok
                    continue
            if kind == "NAME":
                accepts = states[parser_state.position]
                kw = KEYWORDS.get(value)
                if kw is not None and kw in accepts:
                    typ = kw
                elif value.upper() in SETTINGS and "SETTING" in accepts:
                    typ = "SETTING"
                    if text.startswith(".", end):
                        end += 1
                        value += "."
            elif kind == "SLASHED":
                typ = "SETTING"
            elif kind == "LITERAL" and not ctx.skip:
                um = _SPACED_UNIT.match(text, pos)
                if um:  # `4 sec`: one error, and read as the `4s` it means
                    unit = _UNIT_WORDS[um.group(2)]
                    value, end = um.group(1) + unit, um.end()
                    ctx.error_lines.add(line)
                    ctx.diags.error(
                        "F0106", f"`{um.group()}` is not a duration",
                        ast.Span(ctx.file, line, col, line, col + end - pos),
                        "a number and its unit are one word",
                        help=f"write `{value}`")
            elif kind == "PUNCT":
                typ = _PUNCT[value]
                if value == "(" and "PAREN" in states[parser_state.position]:
                    pm = _PAREN.match(text, pos)
                    if pm:
                        typ, value, end = "PAREN", "(" + pm.group()[1:-1] + ")", pm.end()
                        if pm.group()[-1] != ")":
                            ctx.note_full_width(line, col + len(value) - 1, pm.group()[-1])
                elif value == "{":
                    pass
            elif kind == "OPENSTR":
                ctx.diags.error(
                    "F0103", "unterminated string",
                    ast.Span(ctx.file, line, col, line, col + len(value)),
                    "this string has no closing `\"`",
                    help='close the string on the same line: strings cannot span lines '
                         '(write `\\n` for a line break)')
                ctx.error_lines.add(line)
                typ = "STRING"
                value = value + '"'
            elif kind == "BAD" or (kind == "COLOR" and code_line != line and not ctx.skip):
                if line not in ctx.error_lines:
                    ctx.error_lines.add(line)
                    ctx.diags.error("F0102", f"unexpected character `{value[0]}`",
                                    ast.Span(ctx.file, line, col, line, col + 1),
                                    "not part of the .film language",
                                    help=_bad_char_help(value[0]))
                if value[0] == "#":  # a comment in another language's syntax: drop the line
                    end = text.find("\n", pos)
                    end = n if end < 0 else end
                pos = lc.char_pos = end
                if value == ";" and not ctx.skip:  # read as the line break it stands for
                    yield Token("_NL", ";", pos - 1, line, col, line, col + 1, pos)
                continue
            if typ in _VALUE_KINDS and not ctx.skip:
                line_values += 1  # the attribute's name and MAX_VALUES values
                if line_values > MAX_VALUES + 1:
                    ctx.too_many_values(line, col)
            if ctx.skip:
                if typ == "LBRACE":
                    ctx.skip_depth += 1
                elif typ == "RBRACE":
                    ctx.skip_depth -= 1
                pos = lc.char_pos = end
                continue
            tok = Token(typ, value, pos, line, col, line, col + (end - pos), end)  # type: ignore[arg-type]
            if typ == "LBRACE":
                ctx.braces.append(tok)
                ctx.brace_heads[pos] = (first_pos, first_col)
            elif typ == "RBRACE":
                ctx.popped = ctx.braces.pop() if ctx.braces else None
            pos = lc.char_pos = end
            code_line = line
            yield tok

    @staticmethod
    def _close_unclosed(keyword: str, at: Token, ctx: _Context) -> Iterator[Token]:
        """A declaration keyword starts a line inside a block that cannot hold it: the
        block's `}` is missing.  Name that block's `{` once, and close it (and what it
        holds) here, so that what follows parses as written instead of cascading."""
        # Heads are read from the outermost block in, and only as far as needed: a file
        # with thousands of unclosed blocks must not cost a pass over all of them a line.
        braces = ctx.braces
        if keyword == "shot":
            first = next((i for i, b in enumerate(braces) if ctx.head_words(b)[0] == "shot"),
                         None)
            if not first or ctx.head_words(braces[first - 1])[0] != "scene":
                return
            close = len(braces) - first
        elif keyword in _DECL_KEYWORDS:
            close = len(braces)
        else:
            return
        # The block that lacks its `}`: the outermost one closed here (a shot, a scene...).
        brace = braces[-close]
        what = _block_name(ctx.head_words(brace))
        ctx.diags.error("F0104", f"{what} is never closed", ctx.span(brace),
                        "this `{` has no matching `}`",
                        labels=[Label(ctx.span(at), f"`{keyword}` cannot be inside it")],
                        help=f"add a `}}` on a line of its own where {what} ends")
        for _ in range(close):
            ctx.braces.pop()
            yield Token("RBRACE", "}", at.start_pos, at.line, at.column, at.line, at.column,
                        at.start_pos)
            yield Token("_NL", "\n", at.start_pos, at.line, at.column, at.line, at.column,
                        at.start_pos)
        ctx.popped = None

    @staticmethod
    def _note_by_indent(col: int, ctx: _Context) -> None:
        """A `}` that lines up with the outer block's first line, not the inner one's: if
        the file ends with a block open, the writer's indentation says it is the inner one."""
        inner = ctx.brace_heads.get(ctx.braces[-1].start_pos or 0)
        outer = ctx.brace_heads.get(ctx.braces[-2].start_pos or 0)
        if inner and outer and outer[1] == col < inner[1] and ctx.misplaced is None:
            ctx.misplaced = (ctx.braces[-1], ctx.braces[-2])

    @staticmethod
    def _end_skip(nl: Token, ctx: _Context) -> Iterator[Token]:
        """End a skipped line: the newline, then `}` for each block whose `}` was skipped."""
        ctx.skip = False
        yield nl
        while ctx.skip_depth < 0 and ctx.braces:
            ctx.skip_depth += 1
            ctx.braces.pop()
            yield Token("RBRACE", "}", nl.start_pos, nl.line, nl.column, nl.line, nl.column, nl.end_pos)
            yield Token("_NL", "\n", nl.start_pos, nl.line, nl.column, nl.line, nl.column, nl.end_pos)
        ctx.skip_depth = 0

    @staticmethod
    def _comments(value: str, line: int, col: int, after_code: bool, ctx: _Context) -> None:
        for m in _COMMENT.finditer(value):
            before = value[: m.start()]
            nls = before.count("\n")
            c_line = line + nls
            c_col = (col + m.start()) if nls == 0 else (m.start() - before.rfind("\n"))
            span = ast.Span(ctx.file, c_line, c_col, c_line, c_col + len(m.group()))
            ctx.comments.append(ast.Comment(m.group()[2:].rstrip(), nls == 0 and after_code, span))


def _value_run(text: str, pos: int, line: int, line_start: int,
               ctx: _Context) -> tuple[int, tuple[ast.Value, ...]] | None:
    """An attribute's values read in one pass (`cast CHEN(winter), WOLF`): where they
    end and their AST, when the line holds nothing but values up to its end or its
    block's `{`.  Anything else (a stray character, full-width punctuation, `4 sec`, a
    doubled comma, a string with escapes) returns None, and the scanner goes token by token, which says what is
    wrong.  The parser then shifts one token for the whole list, not one a value."""
    file = ctx.file
    values: list[ast.Value] = []
    last = pos  # the end of the last value
    comma = False  # the last thing read was a comma
    n = len(text)
    while True:
        q = last
        while q < n and text[q] in " \t":
            q += 1
        c = text[q] if q < n else "\n"
        if c == "\n" or c == "{" or text.startswith(("//", "\r\n"), q):
            break
        m = _RUN_VALUE.match(text, q)
        if m is None:
            return None
        if len(values) == MAX_VALUES:  # the scanner reports the rest and skips it
            ctx.too_many_values(line, q - line_start + 1)
            return last, tuple(values)
        kind = m.lastgroup
        end = m.end()
        col = q - line_start + 1
        if kind == "COMMA":
            if comma or not values:
                return None
            comma = True
            last = end
            continue
        span = ast.Span(file, line, col, line, col + end - q)
        value: ast.Value
        if kind == "STRING":
            raw = m.group()
            if "\\" in raw:  # its escapes are read (and reported) token by token
                return None
            value = ast.Str(raw[1:-1], span)
        elif kind == "REF":
            a, b = m.start("RA"), m.start("RB")
            name = ast.Name(m.group("RA"), ast.Span(file, line, col, line, col + m.end("RA") - a))
            bcol = b - line_start + 1
            arg = ast.Name(m.group("RB"), ast.Span(file, line, bcol, line, bcol + m.end("RB") - b))
            value = ast.Ref(name, arg, name.span.to(arg.span))
        elif kind == "NAME":
            value = ast.Name(m.group(), span)
        elif kind == "LITERAL":
            if _SPACED_UNIT.match(text, q):
                return None
            value = ast.Literal(m.group(), span)
        else:
            value = ast.Color(m.group(), span)
        values.append(value)
        comma = False
        last = end
    if comma or not values:
        return None
    return last, tuple(values)


def _block_name(words: tuple[str, str]) -> str:
    """`shot `a``, `scene `s``, else `this block`, from the first words of its line."""
    if words[0] == "film":
        return "the `film` block"
    if words[0] in KEYWORDS and words[1]:
        return f"{words[0]} `{words[1]}`"
    return "this block"


def _requote(inner: str) -> str:
    """A full-width quoted text as an ASCII string token, its contents kept literally."""
    return '"' + inner.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _bad_char_help(ch: str) -> str:
    if ch == "#":
        return "comments start with `//`"
    if ch in "“”":
        return 'use straight double quotes `"` around text'
    if ch in "'‘’":
        return 'strings use double quotes: `"like this"`'
    if ch == "=":
        return "write an attribute as its name and values, without `=`: `fps 24`"
    if ch == ";":
        return "put each attribute on its own line instead of separating them with `;`"
    return "remove it, or put it inside a quoted string"


# --- the Transformer ---------------------------------------------------------------


_ESC = {"n": "\n", "t": "\t", "r": "\r", '"': '"', "\\": "\\"}
_ESC_RE = re.compile(r"\\(u\{[0-9A-Fa-f]{1,6}\}|.)")


def _unquote(tok: Token, ctx: _Context) -> str:
    """A string token's text, escapes read (an unknown one is an error)."""
    raw = tok[1:-1]
    if "\\" not in raw:
        return raw

    def repl(m: re.Match) -> str:
        e = m.group(1)
        if e in _ESC:
            return _ESC[e]
        if e.startswith("u{"):
            cp = int(e[2:-1], 16)
            if cp <= 0x10FFFF:
                return chr(cp)
        line = tok.line or 0
        col = (tok.column or 0) + 1 + m.start()
        ctx.diags.error(
            "F0105", f"unknown escape `\\{e}` in a string",
            ast.Span(ctx.file, line, col, line, col + 1 + len(e)),
            help='escapes are `\\"`, `\\\\`, `\\n`, `\\t` and `\\u{hex}` such as `\\u{4E2D}`')
        return e

    return _ESC_RE.sub(repl, raw)


class _Builder(Transformer):
    """Maps each grammar rule straight to its AST node, while parsing."""

    def __init__(self) -> None:
        super().__init__(visit_tokens=False)
        self.ctx: _Context = None  # type: ignore[assignment]  # parse() sets it before use

    # values
    def _to_value(self, tok) -> ast.Value:
        if isinstance(tok, ast.Ref):
            return tok
        span = self.ctx.span(tok)
        t = tok.type
        if t == "NAME":
            return ast.Name(str(tok), span)
        if t == "STRING":
            return ast.Str(self._unquote(tok), span)
        if t == "LITERAL":
            return ast.Literal(str(tok), span)
        return ast.Color(str(tok), span)

    def _name(self, tok: Token) -> ast.Name:
        return ast.Name(str(tok), self.ctx.span(tok))

    def _str(self, tok: Token) -> ast.Str:
        return ast.Str(self._unquote(tok), self.ctx.span(tok))

    def _unquote(self, tok: Token) -> str:
        return _unquote(tok, self.ctx)

    def values(self, children) -> tuple[ast.Value, ...]:
        if len(children) == 1 and isinstance(children[0], Token) and children[0].type == "VALUES":
            return self.ctx.runs.pop(children[0].start_pos or 0)
        return tuple(self._to_value(c) for c in children if not (isinstance(c, Token) and c.type == "COMMA"))

    def ref(self, children) -> ast.Ref:
        name, arg = children[0], children[-1]
        return ast.Ref(self._name(name), self._name(arg), self.ctx.span(name).to(self.ctx.span(arg)))

    # items
    def attr(self, children) -> ast.Attr:
        key = self._name(children[0])
        values = children[1] if len(children) > 1 else ()
        end = values[-1].span if values else key.span
        return ast.Attr(key, values, key.span.to(end))

    def body(self, children):
        return children[0], tuple(children[1:-1]), children[-1]

    scene_body = body

    def block(self, children) -> ast.Block:
        key = self._name(children[0])
        values = children[1] if len(children) == 3 else ()
        _, items, close = children[-1]
        close_span = self.ctx.span(close)
        return ast.Block(key, values, items, key.span.to(close_span), close_span)

    def dialogue(self, children) -> ast.Dialogue:
        speaker = self._name(children[0])
        paren = None
        if len(children) == 3:
            paren = " ".join(children[1][1:-1].split())
        text = self._str(children[-1])
        return ast.Dialogue(speaker, paren, text, speaker.span.to(text.span))

    # declarations
    def _decl_span(self, kw: Token, close: Token) -> tuple[ast.Span, ast.Span]:
        close_span = self.ctx.span(close)
        return self.ctx.span(kw).to(close_span), close_span

    def module_path(self, children) -> tuple[str, Token]:
        return ".".join(str(c) for c in children), children[-1]

    def use(self, children) -> ast.Use:
        kw, target = children
        if isinstance(target, Token):
            span = self.ctx.span(kw).to(self.ctx.span(target))
            return ast.Use(self._unquote(target), True, span)
        path, last = target
        return ast.Use(path, False, self.ctx.span(kw).to(self.ctx.span(last)))

    def film(self, children) -> ast.Film:
        kw, title, (_, items, close) = children
        span, close_span = self._decl_span(kw, close)
        return ast.Film(self._str(title), items, span, close_span)

    def _named(self, cls, children):
        kw, ident = children[0], children[1]
        name = self._str(children[2]) if len(children) == 4 else None
        _, items, close = children[-1]
        span, close_span = self._decl_span(kw, close)
        return cls(self._name(ident), name, items, span, close_span)

    def character(self, children) -> ast.Character:
        return self._named(ast.Character, children)

    def location(self, children) -> ast.Location:
        return self._named(ast.Location, children)

    def preset(self, children) -> ast.Preset:
        kw, kind, ident, (_, items, close) = children
        span, close_span = self._decl_span(kw, close)
        return ast.Preset(self._name(kind), self._name(ident), items, span, close_span)

    def slug(self, children) -> ast.Slug:
        setting = children[0]
        norm = SETTINGS[str(setting).rstrip(".").upper().replace("./", "/")]
        loc = self._name(children[1])
        time = self._name(children[2]) if len(children) == 3 else None
        end = time.span if time else loc.span
        written = str(setting) if str(setting) in ast.CHINESE_SETTINGS else None
        return ast.Slug(norm, loc, time, self.ctx.span(setting).to(end), written)

    def scene(self, children) -> ast.Scene:
        kw, ident = children[0], children[1]
        title = slug = None
        for c in children[2:-1]:
            if isinstance(c, ast.Slug):
                slug = c
            else:
                title = self._str(c)
        _, items, close = children[-1]
        span, close_span = self._decl_span(kw, close)
        return ast.Scene(self._name(ident), title, slug, items, span, close_span)

    def shot(self, children) -> ast.Shot:
        kw, ident = children[0], children[1]
        duration = None
        if len(children) == 4:
            duration = ast.Literal(str(children[2]), self.ctx.span(children[2]))
        _, items, close = children[-1]
        span, close_span = self._decl_span(kw, close)
        return ast.Shot(self._name(ident), duration, items, span, close_span)

    def start(self, children) -> list:
        return children


# --- syntax errors in film terms ------------------------------------------------------

_TERMS = {
    "_NL": "the end of the line",
    "NAME": "a name",
    "STRING": 'a quoted string (`"..."`)',
    "LITERAL": "a number, duration or size",
    "COLOR": "a colour (`#rrggbb`)",
    "PAREN": "a parenthetical like `(quietly)`",
    "SETTING": "`INT`, `EXT` or `INT/EXT` (`内`, `外` or `内外`)",
    "LBRACE": "`{`",
    "RBRACE": "`}`",
    "LPAR": "`(`",
    "RPAR": "`)`",
    "COLON": "`:`",
    "COMMA": "`,`",
    "DOT": "`.`",
    "$END": "the end of the file",
}
_DECL_KEYWORDS = ("use", "film", "character", "location", "preset", "scene")


def _describe(tok: Token) -> str:
    if tok.type == "_NL":
        return "the end of the line"
    if tok.type == "$END":
        return "the end of the file"
    if tok.type == "STRING":
        return "a string"
    return f"`{tok}`"


def _expected(expected: set[str]) -> str:
    exp = set(expected) - {"VALUES"}
    kws = sorted(k for k in exp if k.lower() in KEYWORDS)
    if {"RBRACE", "NAME"} <= exp:
        what = ["an attribute line", "a dialogue line"]
        if "SHOT" in exp:
            what.append("a `shot`")
        what.append("`}` to close the block")
        return ", ".join(what[:-1]) + " or " + what[-1]
    if kws and len(kws) >= 5:
        return "a declaration (`" + "`, `".join(k.lower() for k in kws) + "`)"
    words = [f"`{k.lower()}`" for k in kws]
    words += [_TERMS.get(t, t) for t in sorted(exp - set(kws))]
    if not words:
        return "something else"
    return words[0] if len(words) == 1 else ", ".join(words[:-1]) + " or " + words[-1]


def _syntax_error(ctx: _Context, e: UnexpectedToken, unmatched: bool) -> None:
    if ctx.stopped:
        return  # the file was not read to its end: nothing more to say about it
    tok = e.token
    exp = set(e.expected) - {"VALUES"}  # the scanner's fast path, never a user's word
    if tok.type == "$END":
        if ctx.braces:
            brace = ctx.braces[-1]
            if ctx.misplaced is not None and any(b is ctx.misplaced[1] for b in ctx.braces):
                brace = ctx.misplaced[0]  # that `}` closed the outer block after all
            what = _block_name(ctx.head_words(brace))
            ctx.diags.error("F0104", f"{what} is never closed", ctx.span(brace),
                            "this `{` has no matching `}`",
                            help=f"add a `}}` on a line of its own where {what} ends")
        else:
            ctx.diags.error("F0101", f"unexpected end of file, expected {_expected(exp)}",
                            None if tok.line is None else ctx.span(tok))
        return
    line = tok.line
    if line in ctx.error_lines:
        return
    ctx.error_lines.add(line)
    span = ctx.span(tok)
    help = None
    message = f"unexpected {_describe(tok)}, expected {_expected(exp)}"
    label = ""
    if tok.type == "NAME" and any(k.lower() in KEYWORDS for k in exp):
        cand = suggest(str(tok), [k.lower() for k in exp if k.lower() in KEYWORDS])
        if cand:
            message = f"unknown declaration `{tok}`"
            help = f"did you mean `{cand}`?"
        elif set(k.lower() for k in exp) >= set(_DECL_KEYWORDS):
            message = f"expected a declaration, found `{tok}`"
            help = "a file holds `use`, `film`, `character`, `location`, `preset` and `scene` declarations"
    elif "_NL" in exp and tok.type != "_NL" and tok.type in ("RBRACE", "NAME", "LITERAL", "STRING",
                                                               "LBRACE"):
        if tok.type == "LBRACE" and exp == {"_NL"}:
            label = "a block opens at the end of its line"
        else:
            help = "put one attribute per line; a block's `}` goes on a line of its own"
    elif tok.type == "_NL" and "LBRACE" in exp:
        help = "open the block with `{` at the end of this line"
        span = ast.Span(ctx.file, tok.line, tok.column, tok.line, tok.column + 1)
        message = f"expected {_expected(exp)} before the end of the line"
    elif tok.type == "_NL" and exp == {"_NL"}:
        message = "expected a new line after `{`"
    elif tok.type == "LITERAL" and exp & {"NAME"} and "LITERAL" not in exp:
        help = "names start with a letter or `_`"
    elif tok.type == "_NL" and "STRING" in exp and "COLON" not in exp:
        help = 'text goes in double quotes: `"like this"`'
    if tok.type == "_NL":
        span = ast.Span(ctx.file, tok.line, tok.column, tok.line, tok.column + 1)
    if unmatched:
        message = "unmatched `}`"
        help = "remove it, or open a block with `{` before it"
    ctx.diags.error("F0101", message, span, label, help=help)


# --- the entry point -----------------------------------------------------------------

_lock = threading.Lock()
_parser: lark.Lark | None = None


def _get_parser() -> lark.Lark:
    global _parser
    if _parser is None:
        grammar = resources.files(__package__).joinpath("film.lark").read_text("utf-8")
        _parser = lark.Lark(grammar, parser="lalr", lexer=FilmScanner, transformer=_Builder(),
                            maybe_placeholders=False, cache=_cache_path(grammar))
    return _parser


def _cache_path(grammar: str) -> str | bool:
    """Lark's own grammar cache: loading the parse table takes ~4 ms, building it ~21 ms.

    Lark unpickles the cache, so it lives in `user_cache()`, and a cache file another
    user could write means no cache."""
    import hashlib
    import os

    digest = hashlib.sha256((grammar + lark.__version__).encode()).hexdigest()[:16]
    folder = user_cache()
    if folder is None:
        return False
    path = folder / f"grammar-{digest}.lark-cache"
    try:
        st = os.stat(path)
        if st.st_uid != os.getuid() or st.st_mode & 0o022:
            return False  # another user could plant a pickle here
    except FileNotFoundError:
        pass
    except OSError:
        return False
    return str(path)


_MEMO_BYTES = 64 << 20  # text the parses remembered hold at most (the newest kept)
_memo: OrderedDict[tuple[str, str], tuple[ast.Module, Diagnostics]] = OrderedDict()


def parses_of(modules: list[ast.Module]) -> dict[tuple[str, str], tuple[ast.Module, Diagnostics]]:
    """The parses this process remembers of `modules` (by identity), as `keep_parses`
    takes them back: a compile memo kept between processes holds the very modules it
    was made from (filmc/memocache.py)."""
    wanted = {id(m) for m in modules}
    with _lock:
        return {k: v for k, v in _memo.items() if id(v[0]) in wanted}


def keep_parses(parses: dict[tuple[str, str], tuple[ast.Module, Diagnostics]]) -> None:
    """Remember `parses` (`parses_of` another process's) as if this process had made
    them: the same text of the same file gets the same module back, theirs over one this
    process parsed (the compile memo they come with knows its modules by identity)."""
    with _lock:
        for key, value in parses.items():
            if isinstance(key, tuple) and len(key) == 2:
                _memo[key] = value


def forget_parses() -> None:
    """Forget every parse this process remembers (a process that hands its parses to
    others keeps only those it hands: filmc/memocache.py `hold`)."""
    with _lock:
        _memo.clear()


def parse(text: str, file: str, diags: Diagnostics) -> ast.Module:
    """Parse one file's text; syntax errors go to `diags` and what parsed survives.

    A process remembers its latest parses (the AST is immutable): `filmc fmt` after a
    check, or a language server's next keystroke in another file, reads the same text
    again and gets the same module and diagnostics without parsing it twice.  Between
    processes, the user's cache keeps the parses of large files (lang/parsecache.py):
    after an edit, only the edited file is parsed again."""
    from . import parsecache

    key = (file, text)
    with _lock:
        hit = _memo.get(key)
        if hit is not None:
            _memo.move_to_end(key)
    if hit is None:
        hit = parsecache.load(file, text)
        if hit is None:
            own = Diagnostics()
            module = _parse(text, file, own)
            hit = (module, own)
            parsecache.save(file, text, module, own)
        with _lock:
            _memo[key] = hit
            held = sum(len(t) for _f, t in _memo)
            while held > _MEMO_BYTES and len(_memo) > 1:
                (_f, old_text), _v = _memo.popitem(last=False)
                held -= len(old_text)
    module, found = hit
    diags.extend(found)
    return module


def _parse(text: str, file: str, diags: Diagnostics) -> ast.Module:
    ctx = _Context(file, diags)
    if text.startswith("\ufeff"):
        text = text[1:]
    if not text.endswith("\n"):
        text += "\n"
    with _lock:
        p = _get_parser()
        p.parser.lexer.ctx = ctx
        p.options.transformer.ctx = ctx  # type: ignore[union-attr]
        decls = _run(p, text, ctx)
    ctx.warn_full_width()
    return ast.Module(file, tuple(decls), tuple(ctx.comments))


def _run(p: lark.Lark, text: str, ctx: _Context) -> list:
    def on_error(e: UnexpectedInput) -> bool:
        if not isinstance(e, UnexpectedToken):
            return isinstance(e, UnexpectedCharacters)
        tok = e.token
        unmatched = tok.type == "RBRACE" and ctx.popped is None
        _syntax_error(ctx, e, unmatched)
        if tok.type == "$END":
            return _close_open_blocks(e)
        # The parser dropped `tok`: undo its brace bookkeeping, finish the
        # construct it broke, and skip to the end of the line (or block).
        if tok.type == "LBRACE" and ctx.braces and ctx.braces[-1] is tok:
            ctx.braces.pop()
            ctx.skip_depth = 1
        elif tok.type == "RBRACE" and ctx.popped is not None:
            ctx.braces.append(ctx.popped)
        if not _complete_line(e):
            return False
        if tok.type == "_NL":
            e.interactive_parser.feed_token(tok)
        else:
            ctx.skip = True
        return True

    try:
        return p.parse(text, on_error=on_error)  # type: ignore[return-value]  # the transformer's
    except UnexpectedInput:
        return []


_FILLERS = {"LBRACE": "{", "STRING": '""', "NAME": "_", "LITERAL": "1", "SETTING": "EXT",
            "COLON": ":", "RPAR": ")", "RBRACE": "}"}


def _complete_line(e: UnexpectedToken) -> bool:
    """Feed placeholder tokens until the parser can end the line (`shot a 3s` → `{}`)."""
    ip = e.interactive_parser
    t = e.token
    for _ in range(16):
        acc = _accepts(ip)
        if "_NL" in acc:
            return True
        for typ, val in _FILLERS.items():
            if typ in acc:
                ip.feed_token(Token(typ, val, t.start_pos, t.line, t.column, t.line, t.column, t.end_pos))
                if typ == "LBRACE":
                    ip.feed_token(Token("RBRACE", "}", t.start_pos, t.line, t.column, t.line,
                                        t.column, t.end_pos))
                break
        else:
            return False
    return False


_accepted: dict[tuple[int, ...], frozenset[str]] = {}


def _accepts(ip) -> frozenset[str]:
    """`ip.accepts()`, remembered: what the parser accepts next depends only on its stack
    of states, and Lark finds it by trying every terminal on a copy of the parser (a file
    of 2,000 broken lines would spend most of its parse there)."""
    key = tuple(ip.parser_state.state_stack)
    found = _accepted.get(key)
    if found is None:
        if len(_accepted) > 4096:
            _accepted.clear()
        found = _accepted[key] = frozenset(ip.accepts())
    return found


def _close_open_blocks(e: UnexpectedToken) -> bool:
    """At the end of a file with blocks open, feed `}` and newlines to finish them."""
    ip = e.interactive_parser
    for _ in range(64):
        acc = _accepts(ip)
        if "$END" in acc:
            return True
        for typ, val in (("RBRACE", "}"), ("_NL", "\n")):
            if typ in acc:
                ip.feed_token(Token(typ, val, 0, e.token.line or 1, 1, e.token.line or 1, 2, 0))
                break
        else:
            return False
    return False


__all__ = ["parse", "Label"]
