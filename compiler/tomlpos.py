"""Where keys and values are written in a TOML text: tomllib parses, but gives no positions.

`scan_positions(text)` maps every key path of a valid TOML document to the offsets
of its name (and of its value, under the path plus "="), so that `filmc.toml`
diagnostics can point at the line and column of what they are about.
"""

from __future__ import annotations

import re
import tomllib

from ..lang.ast import Span

_TOML_POS = re.compile(r"\s*\(at line (\d+), column (\d+)\)\s*$")


def line_col(text: str, start: int, end: int) -> tuple[int, int, int]:
    line_start = text.rfind("\n", 0, start) + 1
    line = text.count("\n", 0, start) + 1
    stop = text.find("\n", start)
    end = min(end, len(text) if stop < 0 else stop)
    return line, start - line_start + 1, max(end, start + 1) - line_start + 1


def error_message(msg: str) -> str:
    """tomllib's error, without the position it appends (the span carries it)."""
    msg = _TOML_POS.sub("", msg).replace(" (at end of document)", "")
    return "invalid TOML: " + msg[:1].lower() + msg[1:]


def error_span(file: str, text: str, msg: str) -> Span:
    """Where tomllib's error `msg` points in `text`."""
    m = _TOML_POS.search(msg)
    if m:
        line, col = int(m[1]), int(m[2])
    else:  # at end of document
        lines = text.split("\n")
        line, col = len(lines), len(lines[-1]) + 1
    return Span(file, line, col, line, col + 1)


def scan_positions(text: str) -> dict[tuple, tuple[int, int]]:
    """Offsets (start, end) of every key path written in valid TOML `text`: a key
    path maps to its name, the path plus "=" to its value.  Table headers and dotted
    keys also give their parents; inline tables are entered, arrays are skipped."""
    return _Scanner(text).run()


class _Scanner:
    def __init__(self, text: str) -> None:
        self.text, self.i = text, 0
        self.out: dict[tuple, tuple[int, int]] = {}

    def run(self) -> dict[tuple, tuple[int, int]]:
        table: tuple = ()
        try:
            while self.skip(newlines=True) < len(self.text):
                if self.text[self.i] == "[":
                    double = self.text.startswith("[[", self.i)
                    self.i += 2 if double else 1
                    self.skip()
                    table = self.key(())
                    self.i = self.text.index("\n", self.i) if "\n" in self.text[self.i:] \
                        else len(self.text)
                else:
                    self.entry(table)
        except (ValueError, IndexError):  # not valid TOML after all: keep what was found
            pass
        return self.out

    def skip(self, newlines: bool = False) -> int:
        t = self.text
        while self.i < len(t):
            c = t[self.i]
            if c in " \t" or (newlines and c in "\r\n"):
                self.i += 1
            elif c == "#":
                while self.i < len(t) and t[self.i] != "\n":
                    self.i += 1
            else:
                break
        return self.i

    def key(self, prefix: tuple) -> tuple:
        """A dotted key; records each part it names, the first writing wins."""
        path = prefix
        while True:
            self.skip()
            start = self.i
            if self.text[self.i] in "\"'":
                end = self.string()
                part = tomllib.loads(f"k = {self.text[start:end]}")["k"]
            else:
                m = re.compile(r"[A-Za-z0-9_-]+").match(self.text, self.i)
                if not m:
                    raise ValueError("no key")
                end, part = m.end(), m.group()
            self.i = end
            path = (*path, part)
            self.out.setdefault(path, (start, end))
            self.skip()
            if self.i < len(self.text) and self.text[self.i] == ".":
                self.i += 1
                continue
            return path

    def entry(self, table: tuple) -> None:
        path = self.key(table)
        if self.text[self.i] != "=":
            raise ValueError("no =")
        self.i += 1
        self.skip()
        self.value(path)

    def value(self, path: tuple) -> None:
        t, start = self.text, self.i
        c = t[start]
        if c in "\"'":
            self.i = self.string()
        elif c == "{":
            self.i += 1
            while self.skip() < len(t) and t[self.i] != "}":
                if t[self.i] == ",":
                    self.i += 1
                    continue
                self.entry(path)
            self.i += 1
        elif c == "[":
            self.i += 1
            while self.skip(newlines=True) < len(t) and t[self.i] != "]":
                if t[self.i] == ",":
                    self.i += 1
                    continue
                self.value((*path, "[]"))
            self.i += 1
        else:
            m = re.compile(r"[^,\]}#\r\n]+").match(t, start)
            self.i = m.end() if m else start + 1
            while self.i > start + 1 and t[self.i - 1] in " \t":
                self.i -= 1
        self.out.setdefault((*path, "="), (start, self.i))

    def string(self) -> int:
        """The end offset of the string starting at self.i (any of the four kinds)."""
        t, i = self.text, self.i
        q = t[i]
        if t.startswith(q * 3, i):
            end = t.index(q * 3, i + 3)
            while t.startswith(q, end + 3):  # up to two quotes may close the content
                end += 1
            if q == '"':
                while _escaped(t, end):
                    end = t.index(q * 3, end + 1)
            return end + 3
        end = t.index(q, i + 1)
        while q == '"' and _escaped(t, end):
            end = t.index(q, end + 1)
        return end + 1


def _escaped(t: str, i: int) -> bool:
    n = 0
    while t[i - 1 - n] == "\\":
        n += 1
    return n % 2 == 1
