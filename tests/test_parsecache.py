"""Parses kept between runs (lang/parsecache.py): a file whose text did not change is
read from the user's cache, with the same AST and the same diagnostics, and any doubt
about the cache (another user's folder, a damaged file) means parsing again."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from filmc.lang import parsecache, parser
from filmc.lang.diagnostics import Diagnostics


def big_film(n: int = 200, broken: bool = False) -> str:
    shots = "\n".join(f'  shot s{i} {{\n    duration 3s\n    action "She waits, {i}."\n  }}'
                      for i in range(n))
    bad = "\n  shot oops {\n    camra close_up }\n" if broken else ""
    return f'scene one "The steppe" {{\n{shots}\n{bad}}}\n'


@pytest.fixture
def cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    parsecache._folder.cache_clear()
    parser._memo.clear()
    yield tmp_path / "cache" / "filmc" / "parse"
    parsecache._folder.cache_clear()
    parser._memo.clear()


def test_a_second_process_reads_the_parse_from_the_cache(cache: Path, tmp_path: Path) -> None:
    text = big_film()
    assert len(text) >= parsecache.MIN_BYTES
    film = tmp_path / "seq.film"
    film.write_text(text, encoding="utf-8")
    code = ("import sys; from filmc.lang import parser; from filmc.lang.diagnostics import "
            "Diagnostics; d = Diagnostics(); m = parser.parse(open(sys.argv[1]).read(), "
            "sys.argv[1], d); print(len(m.decls[0].shots), len(d.items))")
    env = {**os.environ, "XDG_CACHE_HOME": str(tmp_path / "cache")}
    first = subprocess.run([sys.executable, "-c", code, str(film)], env=env,
                           capture_output=True, text=True, check=True)
    assert first.stdout.split() == ["200", "0"]
    kept = list(cache.glob("*.ast"))
    assert len(kept) == 1
    assert oct(cache.stat().st_mode & 0o777) == "0o700"
    # The second process finds it: with the parser's own parse refused, it still answers.
    refuse = code.replace("import sys;", "import sys; import filmc.lang.parser as P; "
                          "P._parse = lambda *a: sys.exit('parsed again');")
    second = subprocess.run([sys.executable, "-c", refuse, str(film)], env=env,
                            capture_output=True, text=True)
    assert second.returncode == 0, second.stderr
    assert second.stdout.split() == ["200", "0"]


def test_the_cached_parse_equals_a_fresh_one_with_its_diagnostics(cache: Path) -> None:
    text = big_film(broken=True)
    fresh = Diagnostics()
    module = parser._parse(text, "a.film", fresh)
    assert fresh.items, "the film has a syntax error"
    parsecache.save("a.film", text, module, fresh)
    hit = parsecache.load("a.film", text)
    assert hit is not None
    kept_module, kept_diags = hit
    assert kept_module == module and kept_module.path == "a.film"
    assert kept_diags.items == fresh.items
    # Through parse(): the same diagnostics reach the caller's collection.
    parser._memo.clear()
    d = Diagnostics()
    assert parser.parse(text, "a.film", d) == module
    assert d.items == fresh.items


def test_an_edit_or_another_path_misses(cache: Path) -> None:
    text = big_film()
    d = Diagnostics()
    parsecache.save("a.film", text, parser._parse(text, "a.film", d), d)
    assert parsecache.load("a.film", text) is not None
    assert parsecache.load("a.film", text.replace("She waits, 7.", "She runs, 7.")) is None
    assert parsecache.load("b.film", text) is None  # spans name their file


def test_small_files_are_not_kept(cache: Path) -> None:
    text = big_film(2)
    d = Diagnostics()
    parsecache.save("a.film", text, parser._parse(text, "a.film", d), d)
    assert not cache.exists() or not list(cache.glob("*.ast"))


def test_a_damaged_entry_is_a_miss_and_the_parse_is_still_right(cache: Path) -> None:
    text = big_film()
    d = Diagnostics()
    module = parser._parse(text, "a.film", d)
    parsecache.save("a.film", text, module, d)
    (entry,) = cache.glob("*.ast")
    entry.write_bytes(entry.read_bytes()[:100])
    assert parsecache.load("a.film", text) is None
    parser._memo.clear()
    assert parser.parse(text, "a.film", Diagnostics()) == module


def test_a_folder_others_can_write_means_no_cache(cache: Path) -> None:
    cache.mkdir(parents=True)
    os.chmod(cache.parent, 0o777)
    parsecache._folder.cache_clear()
    text = big_film()
    d = Diagnostics()
    parsecache.save("a.film", text, parser._parse(text, "a.film", d), d)
    assert not list(cache.glob("*.ast"))
    assert parsecache.load("a.film", text) is None


def test_trim_deletes_the_least_recently_used_first(cache: Path) -> None:
    cache.mkdir(parents=True)
    for i in range(5):
        f = cache / f"{i}.ast"
        f.write_bytes(b"x" * 1000)
        os.utime(f, (1000 + i, 1000 + i))
    parsecache.trim(cache, limit=2500)
    assert sorted(p.name for p in cache.glob("*.ast")) == ["3.ast", "4.ast"]
