"""Diagnostics as data, rendered for people (rustc/Elm style) and for tools (JSON).

A `Diagnostic` is a record: code, severity, message, primary span, secondary
labels, help.  Every stage appends to a `Diagnostics` collection and carries
on, so one run reports all it found.  `render_text` needs the source text, which
a `Sources` map keeps for every file a run read.
"""

from __future__ import annotations

import functools
import json
import os
import sys
from collections import Counter
from collections.abc import Iterable, Iterator, Sequence

import attrs

from .ast import Span

ERROR = "error"
WARNING = "warning"


@attrs.frozen(slots=True)
class Label:
    span: Span
    message: str


@attrs.frozen(slots=True)
class Diagnostic:
    code: str
    severity: str
    message: str
    span: Span | None
    label: str = ""
    labels: tuple[Label, ...] = ()
    help: str | None = None
    notes: tuple[str, ...] = ()

    def to_json(self) -> dict:
        out: dict = {"code": self.code, "severity": self.severity, "message": self.message}
        if self.span is not None:
            out.update(_span_json(self.span))
        if self.label:
            out["label"] = self.label
        out["labels"] = [{"message": lb.message, **_span_json(lb.span)} for lb in self.labels]
        out["help"] = self.help
        out["notes"] = list(self.notes)
        return out


def _span_json(span: Span) -> dict:
    return {
        "file": span.file,
        "line": span.line,
        "col": span.col,
        "end_line": span.end_line,
        "end_col": span.end_col,
    }


KEEP_PER_FILE = 1000  # diagnostics kept for one file; the rest are only counted
TOO_MANY = "F0100"  # the one diagnostic that stands for those counted


class Diagnostics:
    """An ordered collection that every stage appends to.

    It keeps at most KEEP_PER_FILE diagnostics for one file and counts the rest, so
    that a file of 20,000 broken lines is answered in bounded memory: `sorted()` ends
    that file's list with one F0100 saying how many more there were, and the counts
    (`error_count`, `warning_count`) include them."""

    def __init__(self) -> None:
        self.items: list[Diagnostic] = []
        self._kept: Counter = Counter()  # file → diagnostics kept
        self.dropped: Counter = Counter()  # (file, severity) → diagnostics only counted

    def add(self, d: Diagnostic) -> None:
        file = d.span.file if d.span is not None else ""
        if self._kept[file] >= KEEP_PER_FILE:
            self.dropped[(file, d.severity)] += 1
            return
        self._kept[file] += 1
        self.items.append(d)

    def error(self, code: str, message: str, span: Span | None, label: str = "", *,
              labels: Sequence[Label] = (), help: str | None = None,
              notes: Sequence[str] = ()) -> None:
        if self._full(span, ERROR):
            return
        self.add(Diagnostic(code, ERROR, message, span, label, tuple(labels), help,
                            tuple(notes)))

    def warning(self, code: str, message: str, span: Span | None, label: str = "", *,
                labels: Sequence[Label] = (), help: str | None = None,
                notes: Sequence[str] = ()) -> None:
        if self._full(span, WARNING):
            return
        self.add(Diagnostic(code, WARNING, message, span, label, tuple(labels), help,
                            tuple(notes)))

    def _full(self, span: Span | None, severity: str) -> bool:
        """Whether the span's file has all the diagnostics it keeps (this one is counted)."""
        file = span.file if span is not None else ""
        if self._kept[file] < KEEP_PER_FILE:
            return False
        self.dropped[(file, severity)] += 1
        return True

    def extend(self, other: Iterable[Diagnostic]) -> None:
        for d in other:
            self.add(d)
        if isinstance(other, Diagnostics):
            self.dropped.update(other.dropped)

    def __iter__(self) -> Iterator[Diagnostic]:
        return iter(self.items)

    def __len__(self) -> int:
        return len(self.items)

    @property
    def errors(self) -> list[Diagnostic]:
        return [d for d in self.items if d.severity == ERROR]

    @property
    def warnings(self) -> list[Diagnostic]:
        return [d for d in self.items if d.severity == WARNING]

    @property
    def error_count(self) -> int:
        """Every error found, those only counted included."""
        dropped = sum(n for (_f, sev), n in self.dropped.items() if sev == ERROR)
        return len(self.errors) + dropped

    @property
    def warning_count(self) -> int:
        dropped = sum(n for (_f, sev), n in self.dropped.items() if sev == WARNING)
        return len(self.warnings) + dropped

    def sorted(self) -> list[Diagnostic]:
        """In source order (file, line, column), stable for equal positions; each file
        whose diagnostics were too many to keep ends with one F0100 that counts them."""
        def key(d: Diagnostic) -> tuple:
            s = d.span
            return (s.file, s.line, s.col) if s else ("", 0, 0)
        out = sorted(self.items, key=key)
        for file in sorted({f for f, _sev in self.dropped}):
            errors, warnings = self.dropped[(file, ERROR)], self.dropped[(file, WARNING)]
            parts = [f"{n:,} {word}{'s' if n != 1 else ''}"
                     for n, word in ((errors, "error"), (warnings, "warning")) if n]
            where = f"`{file}`" if file else "this run"
            d = Diagnostic(TOO_MANY, ERROR if errors else WARNING,
                           f"too many diagnostics: {' and '.join(parts)} more in {where} "
                           f"were counted, not kept",
                           None, help=f"fix the first ones: {KEEP_PER_FILE:,} a file are kept")
            at = max((i for i, x in enumerate(out) if x.span is not None and x.span.file == file),
                     default=len(out) - 1)
            out.insert(at + 1, d)
        return out


# --- did you mean ------------------------------------------------------------------


def edit_distance(a: str, b: str, limit: int) -> int:
    """Optimal-string-alignment distance (a transposition counts 1), cut off above `limit`."""
    if abs(len(a) - len(b)) > limit:
        return limit + 1
    prev2: list[int] = []
    prev = list(range(len(b) + 1))
    for i, ca in enumerate(a, 1):
        cur = [i] + [0] * len(b)
        for j, cb in enumerate(b, 1):
            cost = 0 if ca == cb else 1
            v = min(prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + cost)
            if i > 1 and j > 1 and ca == b[j - 2] and a[i - 2] == cb:
                v = min(v, prev2[j - 2] + 1)
            cur[j] = v
        if min(cur) > limit:
            return limit + 1
        prev2, prev = prev, cur
    return prev[-1]


def suggest(name: str, candidates: Iterable[str]) -> str | None:
    """The nearest candidate: same letters ignoring case (and, for Chinese, traditional
    or simplified), else within 1 edit for short names (up to 4 characters) or 2 for
    longer ones.  Remembered: a file that repeats one wrong name 5,000 times pays once."""
    return _suggest(name, tuple(candidates))


@functools.lru_cache(maxsize=4096)
def _suggest(name: str, candidates: tuple[str, ...]) -> str | None:
    limit = 1 if len(name) <= 4 else 2
    best: tuple[int, str] | None = None
    han = _has_han(name)
    lowered = simplified(name.lower()) if han else name.lower()
    for cand in candidates:
        if cand == name:
            continue
        other = simplified(cand.lower()) if han and _has_han(cand) else cand.lower()
        d = 0 if other == lowered else edit_distance(lowered, other, limit)
        if d <= limit and (best is None or (d, cand) < best):
            best = (d, cand)
    return best[1] if best else None


def _has_han(s: str) -> bool:
    return any("\u2e80" <= c <= "\u9fff" or "\uf900" <= c <= "\ufaff" or c >= "\U00020000"
               for c in s)


_t2s = None


def simplified(s: str) -> str:
    """Chinese text in simplified characters (`爺爺` → `爷爷`), by OpenCC's tables.

    Loaded on first use (about 0.1 s), so a run without a Chinese near-miss never pays."""
    global _t2s
    if not _has_han(s):
        return s
    if _t2s is None:
        import opencc

        _t2s = opencc.OpenCC("t2s")
    return _t2s.convert(s)


def did_you_mean(name: str, candidates: Iterable[str]) -> str | None:
    cand = suggest(name, candidates)
    return f"did you mean `{cand}`?" if cand else None


# --- sources ---------------------------------------------------------------------


class Sources:
    """The text of every file a run read, for rendering snippets."""

    def __init__(self) -> None:
        self._text: dict[str, str] = {}
        self._lines: dict[str, list[str]] = {}

    def add(self, file: str, text: str) -> None:
        self._text[file] = text
        self._lines.pop(file, None)

    def line(self, file: str, n: int) -> str | None:
        lines = self._lines.get(file)
        if lines is None:
            text = self._text.get(file)
            if text is None:
                return None
            lines = self._lines[file] = text.split("\n")
        if 1 <= n <= len(lines):
            return lines[n - 1].rstrip("\r")
        return None


# --- rendering ---------------------------------------------------------------------


def use_color(stream) -> bool:
    if os.environ.get("NO_COLOR"):
        return False
    if os.environ.get("FORCE_COLOR"):
        return True
    return hasattr(stream, "isatty") and stream.isatty()


class _Style:
    def __init__(self, on: bool) -> None:
        self.on = on

    def __call__(self, code: str, text: str) -> str:
        return f"\x1b[{code}m{text}\x1b[0m" if self.on and text else text


def _display_width(s: str) -> int:
    """Terminal columns: East Asian wide and full-width characters take two."""
    import unicodedata

    return sum(2 if unicodedata.east_asian_width(c) in "WF" else 1 for c in s)


# What one run prints stays readable (and linear in the input) whatever the input: a long
# source line is shown as a window around the first mark on it, long messages are cut,
# and past a few diagnostics on one line (or many in one file) the rest are counted, not
# printed.  `--format json` lists every diagnostic in full.
MAX_SHOWN_LINE = 120  # characters of a source line shown around its first mark
MAX_MESSAGE = 300  # characters of a message, label or help
MAX_SAME = 3  # errors of one code printed for one source line
MAX_PER_LINE = 20  # diagnostics printed for one source line
MAX_PER_FILE = 100  # diagnostics printed for one file


# A control character in a shown source line (a NUL byte) is printed as its picture: `␀`.
_CONTROL_PICTURES = {c: 0x2400 + c for c in range(32)} | {0x7F: 0x2421}


def _cap(text: str, limit: int = MAX_MESSAGE) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _window(text: str, col: int) -> tuple[str, int, int]:
    """The part of a long line shown around column `col` (1-based): its text (a cut marked
    `…`), and the 0-based slice `text[lo:hi]` it shows."""
    if len(text) <= MAX_SHOWN_LINE:
        return text, 0, len(text)
    lo = max(0, min(col - 1 - MAX_SHOWN_LINE // 3, len(text) - MAX_SHOWN_LINE))
    hi = lo + MAX_SHOWN_LINE
    return ("…" if lo else "") + text[lo:hi] + ("…" if hi < len(text) else ""), lo, hi


def render_text(diag: Diagnostic, sources: Sources, color: bool = False) -> str:
    st = _Style(color)
    sev_color = "1;31" if diag.severity == ERROR else "1;33"
    out = [st(sev_color, f"{diag.severity}[{diag.code}]") + st("1", f": {_cap(diag.message)}")]
    spans = [s for s in [diag.span] + [lb.span for lb in diag.labels] if s is not None]
    width = max((len(str(s.line)) for s in spans), default=1)
    pad = " " * width
    blue = "1;34"
    if diag.span is not None:
        out.append(f"{pad}{st(blue, '-->')} {diag.span}")
        snippets = [(diag.span, diag.label, "^", sev_color)]
        snippets += [(lb.span, lb.message, "-", blue) for lb in diag.labels]
        first = diag.span.file
        snippets.sort(key=lambda s: (s[0].file != first, s[0].file, s[0].line, s[0].col))
        out.append(f"{pad} {st(blue, '|')}")
        last_file, last_line, lo, hi = diag.span.file, 0, 0, 0
        for span, message, mark, mcol in snippets:
            message = _cap(message)
            if span.file != last_file:
                out.append(f"{pad}{st(blue, ':::')} {span}")
                out.append(f"{pad} {st(blue, '|')}")
                last_file, last_line = span.file, 0
            text = sources.line(span.file, span.line)
            if text is None:
                if message:
                    out.append(f"{pad} {st(blue, '=')} {message} ({span})")
                continue
            if span.line != last_line:  # marks on one line share its source text
                shown, lo, hi = _window(text, span.col)
                shown = shown.expandtabs(4).translate(_CONTROL_PICTURES)
                out.append(st(blue, f"{span.line:>{width}} |") + f" {shown}")
                last_line = span.line
            col = min(max(span.col - 1, lo), hi)
            end_col = span.end_col - 1 if span.end_line == span.line else len(text)
            end_col = min(max(end_col, col), hi)
            start = (1 if lo else 0) + _display_width(text[lo:col].expandtabs(4))
            n = max(1, _display_width(text[col:end_col].expandtabs(4)))
            under = " " * start + st(mcol, mark * n + (f" {message}" if message else ""))
            out.append(f"{pad} {st(blue, '|')} {under}")
        out.append(f"{pad} {st(blue, '|')}")
    for note in diag.notes:
        out.append(f"{pad} {st(blue, '=')} {st('1', 'note')}: {_cap(note)}")
    if diag.help:
        out.append(f"{pad} {st(blue, '=')} {st('1', 'help')}: {_cap(diag.help)}")
    return "\n".join(out)


def render_all(diags: Sequence[Diagnostic], sources: Sources, color: bool = False) -> str:
    """Every diagnostic as text, but at most MAX_SAME errors of one code and MAX_PER_LINE
    diagnostics in all for one source line, and MAX_PER_FILE for one file: the rest are
    counted after the last one shown.  (A line of 2,000 unknown names is 2,000 errors of
    one code; the warnings of what backends cannot honour for one shot are several
    warnings on its line, each worth reading.)"""
    blocks: list[str] = []
    shown: Counter = Counter()
    hidden: Counter = Counter()
    last: dict[tuple, int] = {}  # (file, line) or (file,) → index of its last block shown
    for d in diags:
        file = d.span.file if d.span else ""
        line_key = (file, d.span.line) if d.span else None
        same = (*line_key, d.code) if line_key is not None and d.severity == "error" else None
        if line_key is not None and (shown[line_key] >= MAX_PER_LINE
                                     or (same is not None and shown[same] >= MAX_SAME)):
            hidden[line_key] += 1
            continue
        if file and shown[(file,)] >= MAX_PER_FILE:
            hidden[(file,)] += 1
            continue
        blocks.append(render_text(d, sources, color))
        if same is not None:
            shown[same] += 1
        for key in (line_key, (file,)):
            if key is not None:
                shown[key] += 1
                last[key] = len(blocks) - 1
    for key, n in hidden.items():
        where = "on this line" if len(key) == 2 else f"in `{key[0]}`"
        more = "diagnostic" if n == 1 else "diagnostics"
        blocks[last[key]] += f"\n... and {n} more {more} {where} (`--format json` lists them)"
    return "\n\n".join(blocks)


def render_json(diags: Sequence[Diagnostic]) -> str:
    return json.dumps([d.to_json() for d in diags], ensure_ascii=False, indent=2)


def print_diagnostics(diags: Sequence[Diagnostic], sources: Sources, fmt: str = "text",
                      stream=None) -> None:
    stream = stream or sys.stderr
    if fmt == "json":
        stream.write(render_json(diags) + "\n")
    elif diags:
        stream.write(render_all(diags, sources, use_color(stream)) + "\n\n")
