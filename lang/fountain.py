"""Fountain screenplays → a screenplay as data: every element of the Fountain syntax, with
its position in the file.

    play = parse_fountain(text, "ferry.fountain", diags)   # None when it has errors

Fountain (fountain.io/syntax) is plain text whose layout is its markup.  This
reads every element of it:

| element | written | here |
| --- | --- | --- |
| title page | `Key: value` lines at the top, values indented on the next lines | `Screenplay.title` |
| scene heading | `INT.`/`EXT.`/`EST.`/`INT./EXT.`/`I/E` …, or forced `.HEADING`; `#1A#` scene number | `Heading` |
| action | any other paragraph; forced `!`; centered `>text<` | `Action` |
| character | an upper-case line before dialogue; `@Name` forced; `(V.O.)`, `(O.S.)`, `(CONT'D)` extensions; `^` dual | `Dialogue` |
| dialogue, parenthetical, lyrics in dialogue | the lines under a cue: `(quietly)`, `~sung` | `Dialogue.parts` |
| transition | an upper-case line ending in `TO:` (and `FADE IN:`, `FADE OUT.`), or forced `>` | `Transition` |
| lyrics | `~` lines | `Lyrics` |
| page break | `===` | `PageBreak` |
| section | `#`, `##`, `###` | `Section` |
| synopsis | `= text` | `Synopsis` |
| note | `[[text]]`, inline or over several lines | `Note` (inline ones also on their element) |
| boneyard | `/* … */` | `Boneyard` |
| emphasis | `*italic*`, `**bold**`, `_underline_`, `\\*` escapes | removed by `plain()` |

Two liberties, both for screenplays not written in English: a heading may start
with the Chinese settings the `.film` language takes (`内`, `外`, `内外`, `内景`…),
and a character cue in a script without letter case (Chinese, Japanese) is a
short line with no sentence punctuation, directly above its dialogue.

Why not a parser from PyPI: each was tried on tests/fountain/every_element.fountain.
`jouvence` (last release 2020) drops the boneyard and leaves notes and scene
numbers in the text; `fountain-parser` (0.1)
misses lyrics, forced action, `I/E` and `INT ` headings, notes over several lines
and speech carried over a two-space line; `fountain` (2016) is unmaintained.
None gives positions, which diagnostics need.

Fountain accepts any text, so the only errors are a boneyard or a note that is
never closed (the rest of the file would vanish into it) and a file that holds
no action or dialogue to make a shot of.
"""

from __future__ import annotations

import re

import attrs

from .ast import Span
from .diagnostics import Diagnostics


@attrs.frozen
class Heading:
    text: str  # as written, without the scene number and the forcing `.`
    setting: str | None  # INT, EXT, INT/EXT, EST, or a Chinese setting as written
    place: str  # what follows the setting, before the time
    time: str | None  # what follows the last ` - `, when there is one
    number: str | None  # `1A` of `#1A#`
    forced: bool
    span: Span


@attrs.frozen
class Action:
    text: str
    span: Span
    forced: bool = False
    centered: bool = False
    notes: tuple[str, ...] = ()  # inline `[[notes]]` taken out of the text


@attrs.frozen
class Part:
    """One piece of a speech: a parenthetical and what follows it."""

    paren: str | None  # `quietly` of `(quietly)`
    text: str
    sung: bool = False  # `~` lyrics inside dialogue


@attrs.frozen
class Dialogue:
    name: str  # the cue, without its extensions, `@` and `^`
    extensions: tuple[str, ...]  # V.O., O.S., CONT'D...
    parts: tuple[Part, ...]
    span: Span
    forced: bool = False
    dual: bool = False  # `^`: spoken at the same time as the dialogue before
    notes: tuple[str, ...] = ()


@attrs.frozen
class Transition:
    text: str
    span: Span
    forced: bool = False


@attrs.frozen
class Lyrics:
    text: str
    span: Span


@attrs.frozen
class PageBreak:
    span: Span


@attrs.frozen
class Section:
    level: int
    text: str
    span: Span


@attrs.frozen
class Synopsis:
    text: str
    span: Span


@attrs.frozen
class Note:
    text: str
    span: Span


@attrs.frozen
class Boneyard:
    text: str
    span: Span


Element = (Heading | Action | Dialogue | Transition | Lyrics | PageBreak | Section | Synopsis
           | Note | Boneyard)


@attrs.frozen
class Screenplay:
    title: tuple[tuple[str, str], ...]  # (key, value) in order; a value's lines joined by \n
    elements: tuple[Element, ...]
    file: str

    def title_value(self, key: str) -> str | None:
        return next((v for k, v in self.title if k.casefold() == key.casefold()), None)


_HEADING = re.compile(r"(?i)(INT\.?/EXT\.?|INT\./EXT|INT/EXT|I/E\.?|INT\.?|EXT\.?|EST\.?)"
                      r"(?=[ .\t])[. \t]*(.*)")
_CHINESE_HEADING = re.compile(r"(内外景|內外景|内外|內外|内景|內景|外景|内|內|外)(?:[ \t　.。、:：]+)(.*)")
_NUMBER = re.compile(r"\s*#([\w.\-]+)#\s*$")
_TITLE_KEY = re.compile(r"([A-Za-z][A-Za-z0-9 _-]*):(.*)")
_EXTENSION = re.compile(r"\s*[(（]([^()（）]*)[)）]")
_TIME_SPLIT = re.compile(r"\s+[-–—]+\s+|\s*——\s*")
# Transitions that do not end in `TO:`, read as the transitions they are.
_FADES = frozenset({"FADE IN:", "FADE OUT.", "FADE OUT:", "FADE TO BLACK.", "CUT TO BLACK."})
_CJK = re.compile(r"[\u3040-\u30ff\u3400-\u9fff\uac00-\ud7af\uf900-\ufaff]")
_CJK_STOPS = set("。！？，；：、…")
_EMPHASIS = re.compile(r"(\*{1,3}|_)(?=\S)(.+?)(?<=\S)\1")
_ESCAPED = re.compile(r"\\([*_\\])")


def plain(text: str) -> str:
    """Text without Fountain's emphasis markup (`*italic*`, `**bold**`, `_underline_`),
    its escapes (`\\*`) made the characters they stand for."""
    protected = _ESCAPED.sub(lambda m: f"\x00{ord(m.group(1))}\x00", text)
    for _ in range(3):  # ***bold italic*** inside _underline_
        protected = _EMPHASIS.sub(lambda m: m.group(2), protected)
    return re.sub(r"\x00(\d+)\x00", lambda m: chr(int(m.group(1))), protected)


class _Reader:
    def __init__(self, text: str, file: str, diags: Diagnostics) -> None:
        self.file = file
        self.diags = diags
        self.lines = text.split("\n")
        self.out: list[Element] = []
        self.inline: dict[int, list[str]] = {}  # line index → notes taken out of it

    def span(self, line: int, col: int = 0, end_line: int | None = None,
             end_col: int | None = None) -> Span:
        """A span over 0-based lines and columns (shown 1-based)."""
        end_line = line if end_line is None else end_line
        if end_col is None:
            end_col = max(col + 1, len(self.lines[end_line]) if end_line < len(self.lines) else 1)
        return Span(self.file, line + 1, col + 1, end_line + 1, end_col + 1)

    # -- what spans lines: the boneyard and notes ----------------------------------------

    def blocks(self, opener: str, closer: str, make: type, code: str, what: str) -> bool:
        """Take every `opener … closer` out of the lines (an element each, or inline notes
        on their line); False after an error."""
        text = "\n".join(self.lines)
        out: list[str] = []
        pos = 0
        while True:
            start = text.find(opener, pos)
            if start < 0:
                out.append(text[pos:])
                break
            end = text.find(closer, start + len(opener))
            line = text.count("\n", 0, start)
            col = start - (text.rfind("\n", 0, start) + 1)
            if end < 0:
                self.diags.error(code, f"this {what} is never closed", self.span(
                    line, col, line, col + len(opener)), f"`{opener}` opens it",
                    help=f"close it with `{closer}`; everything after an unclosed `{opener}` "
                         f"would be left out of the film")
                return False
            body = text[start + len(opener):end]
            before = text[text.rfind("\n", 0, start) + 1:start]
            after_end = text.find("\n", end)
            after = text[end + len(closer):after_end if after_end >= 0 else len(text)]
            own_lines = not before.strip() and not after.strip()
            if make is Note and not own_lines:
                self.inline.setdefault(line, []).append(_squash(body))
            else:
                last_col = end + len(closer) - (text.rfind("\n", 0, end) + 1)
                self.out.append(make(body.strip("\n") if make is Boneyard else _squash(body),
                                     self.span(line, col, text.count("\n", 0, end), last_col)))
            out.append(text[pos:start])
            out.append("\n" * body.count("\n"))  # keep every later line where it was
            pos = end + len(closer)
        self.lines = "".join(out).split("\n")
        return True

    # -- the title page ------------------------------------------------------------------

    def title_page(self) -> tuple[tuple[tuple[str, str], ...], int]:
        lines = self.lines
        i = 0
        while i < len(lines) and not lines[i].strip():
            i += 1
        if i >= len(lines) or not _TITLE_KEY.fullmatch(lines[i].strip()):
            return (), 0
        pairs: list[list[str]] = []
        while i < len(lines) and lines[i].strip():
            raw = lines[i]
            m = _TITLE_KEY.fullmatch(raw.strip())
            if m and not raw[:1].isspace():
                pairs.append([m.group(1).strip(), m.group(2).strip()])
            elif pairs and (raw.startswith(("   ", "\t")) or raw.startswith(" ")):
                value = raw.strip()
                pairs[-1][1] = f"{pairs[-1][1]}\n{value}" if pairs[-1][1] else value
            else:
                break  # not a title page after all: the screenplay starts here
            i += 1
        return tuple((k, v) for k, v in pairs), i

    # -- the body ------------------------------------------------------------------------

    def body(self, start: int) -> None:
        lines = self.lines
        n = len(lines)
        i = start

        def blank(k: int) -> bool:
            return k < 0 or k >= n or not lines[k].strip()

        while i < n:
            raw = lines[i]
            s = raw.strip()
            if not s:
                i += 1
                continue
            before_blank = blank(i - 1) or i == start
            notes = tuple(self.inline.get(i, ()))
            if re.fullmatch(r"={3,}", s):
                self.out.append(PageBreak(self.span(i)))
            elif s.startswith("#"):
                level = len(s) - len(s.lstrip("#"))
                self.out.append(Section(level, s[level:].strip(), self.span(i)))
            elif s.startswith("=") and not s.startswith("=="):
                self.out.append(Synopsis(s[1:].strip(), self.span(i)))
            elif s.startswith("~"):
                k = i
                while k + 1 < n and lines[k + 1].strip().startswith("~"):
                    k += 1
                text = "\n".join(x.strip()[1:].strip() for x in lines[i:k + 1])
                self.out.append(Lyrics(text, self.span(i, 0, k)))
                i = k
            elif s.startswith(">") and s.endswith("<") and len(s) > 1:
                self.out.append(Action(s[1:-1].strip(), self.span(i), centered=True, notes=notes))
            elif s.startswith(">"):
                self.out.append(Transition(s[1:].strip(), self.span(i), forced=True))
            elif before_blank and (h := self.heading(s, i)) is not None:
                self.out.append(h)
            elif before_blank and blank(i + 1) and s.isupper() and (s.endswith("TO:")
                                                                    or s in _FADES):
                self.out.append(Transition(s, self.span(i)))
            elif before_blank and not blank(i + 1) and not s.startswith("!") and _cue(s):
                i = self.dialogue(i)
                continue
            else:
                i = self.action(i)
                continue
            i += 1

    def heading(self, s: str, i: int) -> Heading | None:
        forced = s.startswith(".") and not s.startswith("..")
        text = s[1:].strip() if forced else s
        number = None
        m = _NUMBER.search(text)
        if m:
            number, text = m.group(1), text[:m.start()].rstrip()
        hm = _HEADING.fullmatch(text)
        cm = _CHINESE_HEADING.fullmatch(text) if hm is None else None
        if hm is None and cm is None and not forced:
            return None
        setting, rest = None, text
        if hm is not None:
            setting = hm.group(1).upper().replace(".", "")
            if setting in ("INT/EXT", "I/E"):
                setting = "INT/EXT"
            rest = hm.group(2)
        elif cm is not None:
            setting, rest = cm.group(1), cm.group(2)
        place, time = _split_time(rest.strip(), chinese=cm is not None)
        return Heading(text, setting, place, time, number, forced, self.span(i))

    def dialogue(self, i: int) -> int:
        lines = self.lines
        cue = lines[i].strip()
        forced = cue.startswith("@")
        if forced:
            cue = cue[1:].strip()
        dual = cue.endswith("^")
        if dual:
            cue = cue[:-1].rstrip()
        extensions = tuple(e.strip() for e in _EXTENSION.findall(cue))
        name = _EXTENSION.sub("", cue).strip()
        notes = list(self.inline.get(i, ()))
        parts: list[Part] = []
        paren: str | None = None
        text: list[str] = []
        sung = False
        k = i + 1

        def flush() -> None:
            nonlocal paren, text, sung
            if text:
                parts.append(Part(paren, "\n".join(text), sung))
                paren, text, sung = None, [], False

        while k < len(lines):
            raw = lines[k]
            if not raw.strip() and raw != "  ":
                break  # a blank line ends the speech; two spaces carry it over
            s = raw.strip()
            notes += self.inline.get(k, ())
            if s.startswith(("(", "（")) and s.endswith((")", "）")):
                flush()
                paren = s[1:-1].strip()
            elif s.startswith("~"):
                if text and not sung:
                    flush()
                sung = True
                text.append(s[1:].strip())
            elif s:
                if sung:
                    flush()
                text.append(s)
            k += 1
        flush()
        if not parts and paren is not None:  # only a parenthetical: an unfinished speech
            parts.append(Part(paren, ""))
        self.out.append(Dialogue(name, extensions, tuple(parts), self.span(i, 0, k - 1),
                                 forced, dual, tuple(notes)))
        return k

    def action(self, i: int) -> int:
        lines = self.lines
        k = i
        texts = []
        notes: list[str] = []
        forced = lines[i].strip().startswith("!")
        while k < len(lines) and lines[k].strip():
            s = lines[k].strip()
            if k > i and (s.startswith(("#", "=", "~", ">")) or re.fullmatch(r"={3,}", s)):
                break  # an element that needs no blank line before it
            texts.append(s[1:] if s.startswith("!") else s)
            notes += self.inline.get(k, ())
            k += 1
        self.out.append(Action("\n".join(t.strip() for t in texts), self.span(i, 0, k - 1),
                               forced=forced, notes=tuple(notes)))
        return k


def _cue(s: str) -> bool:
    """Whether a line reads as a character cue: `HAN`, `MEI (O.S.)`, `@McKENZIE`, `HAN ^`,
    or, in a script without letter case, a short line with no sentence punctuation."""
    if s.startswith("@"):
        return len(s) > 1
    name = _EXTENSION.sub("", s.rstrip("^").rstrip()).strip()
    if not name or not any(c.isalpha() for c in name) or any(c.islower() for c in name):
        return False
    if _CJK.search(name):
        return len(name) <= 12 and not (set(name) & _CJK_STOPS)
    return name.isupper() and not name.endswith(("TO:", ":"))


def _split_time(rest: str, chinese: bool) -> tuple[str, str | None]:
    """`HARBOUR PIER - DAWN` → (HARBOUR PIER, DAWN); `院子 黄昏` → (院子, 黄昏)."""
    parts = _TIME_SPLIT.split(rest)
    if len(parts) > 1:
        return " - ".join(p.strip() for p in parts[:-1]).strip(), parts[-1].strip() or None
    if chinese:
        words = re.split(r"[ \t　.。、]+", rest.strip())
        if len(words) > 1:
            return " ".join(words[:-1]), words[-1]
    return rest.strip(), None


def _squash(text: str) -> str:
    """A note's text on one line: its lines joined, blank ones dropped."""
    return " ".join(x.strip() for x in text.split("\n") if x.strip())


def parse_fountain(text: str, file: str, diags: Diagnostics) -> Screenplay | None:
    """The screenplay in `text`; None after an error (reported in `diags`)."""
    text = text.replace("\r\n", "\n").replace("\r", "\n").lstrip("\ufeff")
    reader = _Reader(text, file, diags)
    if not reader.blocks("/*", "*/", Boneyard, "F0902", "boneyard (`/* … */`)"):
        return None
    if not reader.blocks("[[", "]]", Note, "F0903", "note (`[[ … ]]`)"):
        return None
    title, start = reader.title_page()
    reader.body(start)
    elements = sorted(reader.out, key=lambda e: (e.span.line, e.span.col))
    if not any(isinstance(e, Action | Dialogue) and not getattr(e, "centered", False)
               for e in elements):
        diags.error("F0904", "the screenplay has no action or dialogue to make shots from",
                    Span(file, 1, 1, 1, 2), "nothing to make a shot of",
                    help="a Fountain scene starts with a heading such as `INT. KITCHEN - DAY`, "
                         "then its action and dialogue (fountain.io/syntax)")
        return None
    return Screenplay(title, tuple(elements), file)
