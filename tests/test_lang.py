"""The front end piece by piece, and `filmc check` / `filmc fmt` as a user runs them."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from fractions import Fraction
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from filmc.lang import ast, literals
from filmc.lang.check import check, speaking_time
from filmc.lang.diagnostics import Diagnostics, edit_distance, suggest
from filmc.lang.loader import Loader
from filmc.lang.parser import parse

ROOT = Path(__file__).resolve().parents[1]
EXAMPLE = ROOT / "examples" / "wolfpack" / "film.film"


def filmc(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess:
    env = dict(os.environ, NO_COLOR="1")
    return subprocess.run([sys.executable, "-m", "filmc", *args], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=120)


def write(folder: Path, files: dict[str, str]) -> None:
    for name, text in files.items():
        path = folder / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")


# --- strings and literals ----------------------------------------------------------


@given(st.text(max_size=40))
def test_quote_reads_back(s: str) -> None:
    diags = Diagnostics()
    module = parse(f"film {ast.quote(s)} {{\n}}\n", "t.film", diags)
    assert not diags.errors
    assert module.decls[0].title.value == s
    assert "\n" not in ast.quote(s)


@pytest.mark.parametrize("text,seconds", [
    ("4s", Fraction(4)), ("1.5s", Fraction(3, 2)), ("500ms", Fraction(1, 2)),
    ("0:04", Fraction(4)), ("1:02.5", Fraction(125, 2)), ("1:00:00", Fraction(3600)),
    ("96f", Fraction(4)),
])
def test_durations(text: str, seconds: Fraction) -> None:
    assert literals.duration(text).at(Fraction(24)) == seconds


@pytest.mark.parametrize("text", ["0s", "4", "4x", "0:60", "2.5f", "1:2", "s"])
def test_bad_durations(text: str) -> None:
    with pytest.raises(literals.BadLiteral) as e:
        literals.duration(text)
    assert e.value.message


def test_sizes_ratios_lenses_colors() -> None:
    assert literals.size("1920x804") == (1920, 804)
    assert literals.ratio("2.39:1") == Fraction(239, 100)
    assert literals.lens("35mm") == 35
    assert literals.color("#f4a259") == (0xF4, 0xA2, 0x59)
    assert literals.color("#fff") == (255, 255, 255)
    for bad, fn in [("1921x1080", literals.size), ("10x10", literals.size), ("0:1", literals.ratio),
                    ("35", literals.lens), ("#ggg", literals.color)]:
        with pytest.raises(literals.BadLiteral):
            fn(bad)


def test_runtime_format() -> None:
    assert literals.format_runtime(Fraction(9, 2)) == "0:04.5"
    assert literals.format_runtime(125) == "2:05"
    assert literals.format_runtime(3725) == "1:02:05"


# --- suggestions --------------------------------------------------------------------


def test_edit_distance_and_suggestions() -> None:
    assert edit_distance("clse_up", "close_up", 2) == 1
    assert edit_distance("golden_hour", "golden_houer", 2) == 1  # a transposition is one edit
    assert suggest("clse_up", ["close_up", "wide"]) == "close_up"
    assert suggest("chen", ["CHEN"]) == "CHEN"
    assert suggest("xyz", ["close_up"]) is None
    assert suggest("abc", ["abd", "xbc"]) == "abd"  # ties: alphabetical, stable
    assert suggest("ab", ["cd"]) is None  # short names allow one edit only


def test_speaking_time_counts_words_and_cjk() -> None:
    assert speaking_time("one two three four five") == pytest.approx(2.0)
    assert speaking_time("狼来了") == pytest.approx(3 / 4.5)


# --- loading ----------------------------------------------------------------------------


def load(folder: Path, main: str = "film.film"):
    diags = Diagnostics()
    project = Loader(diags).load(folder / main)
    checked = check(project, diags) if project else None
    return project, checked, diags


def test_parts_give_scene_order_and_ids_are_global(tmp_path: Path) -> None:
    write(tmp_path, {
        "film.film": 'use "cast.film"\n\nfilm "F" {\n  part "seq/b.film"\n  part "seq/a.film"\n}\n\n'
                     'scene first "First" {\n  shot s1 1s {\n  }\n}\n',
        "cast.film": 'character CHEN "Chen" {\n}\n',
        "seq/a.film": 'scene in_a "A" {\n  shot s3 2s {\n    cast CHEN\n  }\n}\n',
        "seq/b.film": 'scene in_b "B" {\n  shot s2 3s {\n    cast CHEN\n  }\n}\n',
    })
    project, checked, diags = load(tmp_path)
    assert not diags.items, [d.message for d in diags]
    assert [s.id.text for s, _ in project.scenes] == ["first", "in_b", "in_a"]
    assert checked.summary.shots == 3 and checked.summary.runtime == 6
    assert [f.role for f in project.files].count("part") == 2


def test_same_shot_id_in_two_parts_names_both_files(tmp_path: Path) -> None:
    write(tmp_path, {
        "film.film": 'film "F" {\n  part "a.film"\n  part "b.film"\n}\n',
        "a.film": 'scene a "A" {\n  shot same 1s {\n  }\n}\n',
        "b.film": 'scene b "B" {\n  shot same 1s {\n  }\n}\n',
    })
    _, _, diags = load(tmp_path)
    (d,) = diags.errors
    assert d.code == "F0210" and d.span.file.endswith("b.film")
    assert d.labels[0].span.file.endswith("a.film")


def test_filmc_toml_widens_the_project_folder(tmp_path: Path) -> None:
    write(tmp_path, {
        "filmc.toml": "",
        "shared/ref.png": "",
        "films/one/film.film": 'character A "A" {\n  ref "../../shared/ref.png"\n}\n',
    })
    _, _, diags = load(tmp_path / "films" / "one")
    assert [d.code for d in diags] == ["F0402"]  # inside the project now; just not an image


# --- the command line -------------------------------------------------------------------


def test_check_example_is_clean() -> None:
    r = filmc("check", "--strict", str(EXAMPLE))
    assert r.returncode == 0, r.stderr
    assert r.stderr == ""
    assert "shots" in r.stdout and "runtime" in r.stdout


def test_check_exit_codes_and_strict(tmp_path: Path) -> None:
    write(tmp_path, {"w.film": 'character A "A" {\n}\n\nscene s "S" {\n  shot x 1s {\n'
                               '    A: "Hello there."\n  }\n}\n',
                     "e.film": 'scene s "S" {\n  shot x 0s {\n  }\n}\n'})
    assert filmc("check", "w.film", cwd=tmp_path).returncode == 0  # a warning only
    assert filmc("check", "--strict", "w.film", cwd=tmp_path).returncode == 1
    r = filmc("check", "e.film", cwd=tmp_path)
    assert r.returncode == 1 and "error[F0301]" in r.stderr and "e.film:2:10" in r.stderr


def test_check_json(tmp_path: Path) -> None:
    write(tmp_path, {"e.film": 'use std.camera\n\nscene s "S" {\n  shot x 1s {\n'
                               '    camera clse_up\n  }\n}\n'})
    r = filmc("check", "--format", "json", "e.film", cwd=tmp_path)
    assert r.returncode == 1
    (d,) = json.loads(r.stdout)
    assert d["code"] == "F0204" and d["severity"] == "error"
    assert (d["file"], d["line"], d["col"], d["end_col"]) == ("e.film", 5, 12, 19)
    assert d["help"] == "did you mean `close_up`?"


@pytest.mark.parametrize("content", [b"\xff\xfe\x00garbage", b"", b"\x00\x01\x02", b"film"])
def test_no_traceback_for_odd_files(tmp_path: Path, content: bytes) -> None:
    (tmp_path / "odd.film").write_bytes(content)
    for args in (["check", "odd.film"], ["fmt", "--check", "odd.film"]):
        r = filmc(*args, cwd=tmp_path)
        assert "Traceback" not in r.stderr
        assert r.returncode in (0, 1)


def test_no_traceback_for_missing_and_folder(tmp_path: Path) -> None:
    (tmp_path / "dir.film").mkdir()
    r = filmc("check", "missing.film", cwd=tmp_path)
    assert r.returncode == 1 and "Traceback" not in r.stderr and "F0401" in r.stderr
    # a folder is checked as the films in it: this one holds none
    r = filmc("check", "dir.film", cwd=tmp_path)
    assert r.returncode == 1 and "Traceback" not in r.stderr
    assert "no `.film` files in `dir.film`" in r.stderr


def test_fmt_rewrites_and_check_mode(tmp_path: Path) -> None:
    messy = 'film "F" {\n      fps 24   // rate\n\n\n\n  size 1920x1080\n}\n'
    write(tmp_path, {"a.film": messy})
    r = filmc("fmt", "--check", "a.film", cwd=tmp_path)
    assert r.returncode == 1 and "would reformat a.film" in r.stdout
    assert (tmp_path / "a.film").read_text() == messy  # --check changes nothing
    assert filmc("fmt", "a.film", cwd=tmp_path).returncode == 0
    tidy = (tmp_path / "a.film").read_text()
    assert tidy == 'film "F" {\n  fps 24  // rate\n\n  size 1920x1080\n}\n'
    assert filmc("fmt", "--check", "a.film", cwd=tmp_path).returncode == 0


def test_fmt_never_rewrites_a_file_with_syntax_errors(tmp_path: Path) -> None:
    broken = 'film "F" {\n  fps 24\n'
    write(tmp_path, {"b.film": broken})
    r = filmc("fmt", "b.film", cwd=tmp_path)
    assert r.returncode == 1 and "F0104" in r.stderr
    assert (tmp_path / "b.film").read_text() == broken


def test_debug_flag_is_accepted() -> None:
    r = filmc("--debug", "check", str(EXAMPLE))
    assert r.returncode == 0


def test_the_parse_table_cache_is_private(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Lark unpickles its cache: it must live in a folder only this user can write, never
    under a predictable name in the shared temp folder."""
    from filmc.lang.parser import _cache_path

    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    path = _cache_path("grammar")
    assert isinstance(path, str) and path.startswith(str(tmp_path / "cache" / "filmc"))
    assert os.stat(tmp_path / "cache" / "filmc").st_mode & 0o777 == 0o700
    os.chmod(tmp_path / "cache" / "filmc", 0o777)  # someone opened it up: no cache then
    assert _cache_path("grammar") is False
    os.chmod(tmp_path / "cache" / "filmc", 0o700)
    Path(path).write_bytes(b"")
    os.chmod(path, 0o666)  # a cache file others may write is not read either
    assert _cache_path("grammar") is False
