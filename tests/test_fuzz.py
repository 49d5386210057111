"""Fuzzing the front end: any input gives diagnostics or a tree, never an exception.

Two sources of input: random text over the characters `.film` files are made
of, and random mutations (deletions, duplications, insertions of tokens,
swapped lines) of the real example, stdlib and golden files.  Each input goes
through everything `filmc check` and `filmc fmt` do: load, parse, check,
render the diagnostics as text and JSON, and format.  A watchdog turns a hang
into a failure.
"""

from __future__ import annotations

import contextlib
import signal
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from filmc.lang.check import check
from filmc.lang.diagnostics import Diagnostics, render_all, render_json
from filmc.lang.fmt import format_text
from filmc.lang.loader import Loader
from filmc.lang.parser import parse

ROOT = Path(__file__).resolve().parents[1]
CORPUS = sorted(
    p for pattern in ("examples/**/*.film", "stdlib/*.film", "tests/golden/*.film",
                      "tests/errors/*.film")
    for p in ROOT.glob(pattern)
)
ALPHABET = st.sampled_from(
    list('abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_ \t\n{}():,."#/\\;=-+*x')
    + ["\r\n", "狼", "嘎", "é", "\u200b", "\ufeff", "\x00", "//", "INT/EXT"]
)
TOKENS = st.sampled_from([
    "{", "}", "\n", "shot", "scene", "film", "use", "character", "location", "preset", "camera",
    "cast", "CHEN(winter)", '"text"', '"', "4s", "0:04", "96f", "1920x1080", "2.39:1", "35mm",
    "#f4a259", "(quietly)", ":", ",", "EXT", "NIGHT", "// c", "std.camera", "ref", '"refs/x.png"',
    "outfit", "at", "takes 0", "-1", "\\", "狼", " ",
])


@contextlib.contextmanager
def watchdog(seconds: int = 10):
    def fire(signum, frame):
        raise TimeoutError("the front end did not finish: a hang")

    old = signal.signal(signal.SIGALRM, fire)
    signal.alarm(seconds)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, old)


def run_everything(text: str, folder: Path) -> None:
    main = folder / "film.film"
    main.write_text(text, encoding="utf-8", errors="surrogatepass")
    with watchdog():
        diags = Diagnostics()
        loader = Loader(diags)
        project = loader.load(main)
        if project is not None:
            check(project, diags)
        render_all(diags.sorted(), loader.sources)
        render_json(diags.sorted())
        fdiags = Diagnostics()
        out = format_text(text, "film.film", fdiags)
        if out is not None:
            # what the formatter writes parses to the same tree
            again = Diagnostics()
            assert parse(out, "film.film", again).decls == parse(text, "film.film", Diagnostics()).decls
            assert not again.errors


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.lists(ALPHABET, max_size=300).map("".join))
def test_random_text(tmp_path: Path, text: str) -> None:
    run_everything(text, tmp_path)


@st.composite
def mutated(draw) -> str:
    source = draw(st.sampled_from(CORPUS)).read_text(encoding="utf-8")
    lines = source.split("\n")
    for _ in range(draw(st.integers(1, 4))):
        op = draw(st.sampled_from(["delete", "dup", "insert", "swap", "cut"]))
        i = draw(st.integers(0, max(0, len(lines) - 1)))
        if op == "delete" and lines:
            del lines[i]
        elif op == "dup" and lines:
            lines.insert(i, lines[i])
        elif op == "swap" and len(lines) > 1:
            j = draw(st.integers(0, len(lines) - 1))
            lines[i], lines[j] = lines[j], lines[i]
        elif op == "insert":
            line = lines[i] if lines else ""
            k = draw(st.integers(0, len(line)))
            lines[i:i + 1] = [line[:k] + draw(TOKENS) + line[k:]]
        elif op == "cut" and lines:
            line = lines[i]
            a = draw(st.integers(0, len(line)))
            b = draw(st.integers(a, len(line)))
            lines[i] = line[:a] + line[b:]
    return "\n".join(lines)


@settings(max_examples=250, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(mutated())
def test_mutated_files(tmp_path: Path, text: str) -> None:
    run_everything(text, tmp_path)


def test_corpus_is_not_empty() -> None:
    assert len(CORPUS) >= 5
