"""The compile memo kept between processes (filmc/memocache.py): a command after an
edit loads what the last one kept, and its compile makes exactly the graph a fresh
compile makes (tests/test_graph_memo.py `same_as_fresh`), putting back what the edit did
not touch.  Then the command line: a build leaves the memo as it exits, the next build
after an edit uses it, and what it built is what a compile without any memo asks for."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import copy_example
from test_graph_memo import edit, same_as_fresh

from filmc import memocache
from filmc.compiler.pipeline import Memo, compile_film
from filmc.lang import parser

FILMC = Path(sys.executable).parent / "filmc"


def across(main: Path, memo: Memo, variant: str = "offline") -> Memo:
    """`memo`, as the last compile left it, written as a command's child writes it and
    loaded back as the next command loads it, with no parse of this process's left."""
    path = memocache._path(main, variant)
    assert path is not None
    memocache._write(path, memo, dict(parser._memo))
    parser._memo.clear()
    return memocache.load(main, variant)


def test_a_memo_from_another_process_gives_the_graph_a_fresh_compile_gives(
        tmp_path: Path) -> None:
    film = copy_example(tmp_path / "wolfpack")
    main, hunt = film / "film.film", film / "scenes" / "01_hunt.film"
    memo = Memo()
    same_as_fresh(main, memo, True)
    shots = memo.graph.made
    memo = across(main, memo)
    same_as_fresh(main, memo, True)
    assert shots > 40 and memo.graph.made == 0 and memo.graph.reused == shots
    assert memo.lower.made == 0 and memo.check.made == 0

    edit(hunt, "camera extreme_close_up eye_level telephoto static",
         "camera extreme_close_up eye_level telephoto slow_push")
    memo = across(main, memo)
    same_as_fresh(main, memo, True)
    assert memo.graph.made == 3 and memo.graph.reused == shots - 3
    assert memo.lower.made == 1 and memo.check.made == 1  # the hunt alone

    # A line of dialogue (the exports' entries of the shot, its speech step), a shot
    # added, a pick in film.lock, a character: each against a fresh compile.
    edit(hunt, "    action \"Chen and Bilgee lie flat",
         "    CHEN: \"There.\"\n    action \"Chen and Bilgee lie flat")
    memo = across(main, memo)
    same_as_fresh(main, memo, True)
    edit(hunt, "  shot gazelles_graze 3s {",
         "  shot new_one 2s {\n    camera wide\n    action \"Wind in the grass.\"\n  }\n\n"
         "  shot gazelles_graze 3s {")
    memo = across(main, memo)
    same_as_fresh(main, memo, True)
    assert memo.graph.made == 3
    (film / "film.lock").write_text(
        'version = 1\n\n[alpha_eyes]\nkeyframe = { pick = "local-2", key = "'
        + "0" * 64 + '", digest = "' + "1" * 64 + '" }\n', encoding="utf-8")
    memo = across(main, memo)
    same_as_fresh(main, memo, True)
    edit(film / "cast.film", "look \"Mongolian herdsman", "look \"tall Mongolian herdsman")
    memo = across(main, memo)
    same_as_fresh(main, memo, True)
    assert memo.graph.reused == 0


def test_a_memo_of_another_filmc_or_damaged_is_not_used(tmp_path: Path) -> None:
    film = copy_example(tmp_path / "wolfpack")
    main = film / "film.film"
    memo = Memo()
    compile_film(main, offline=True, memo=memo)
    assert across(main, memo).graph is not None
    path = memocache._path(main, "offline")
    assert path is not None and path.is_file()
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])  # cut short: a child killed as it wrote
    fresh = memocache.load(main, "offline")
    assert fresh.graph is None
    path.write_bytes(b"filmc-memo 0\n" + data[13:])  # another version's
    assert memocache.load(main, "offline").graph is None
    assert memocache.load(main, "online").graph is None  # another variant's: none kept


def _cli(args: list[str], cwd: Path, cache: Path) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if not k.startswith("FILMC_")}
    env["XDG_CACHE_HOME"] = str(cache)
    return subprocess.run([str(FILMC), *args], cwd=cwd, env=env, capture_output=True,
                          text=True, timeout=600)


def _memo_files(cache: Path) -> list[Path]:
    return sorted((cache / "filmc" / "compile").glob("*.memo"))


def _written(cache: Path, after: float) -> Path:
    """The memo file a command's child wrote after `after` (it does not make the
    command wait)."""
    deadline = time.time() + 60
    while time.time() < deadline:
        found = [p for p in _memo_files(cache) if p.stat().st_mtime >= after]
        if found:
            return found[0]
        time.sleep(0.05)
    pytest.fail("no memo was written")


@pytest.mark.skipif(not hasattr(os, "fork"), reason="no fork: no memo is kept")
def test_a_build_after_an_edit_uses_the_last_builds_memo(tmp_path: Path) -> None:
    film = copy_example(tmp_path / "w")
    cache = tmp_path / "cache"
    start = time.time()
    first = _cli(["build", "--offline", "--quiet"], film, cache)
    assert first.returncode == 0, first.stderr
    memo_file = _written(cache, start)
    edit(film / "scenes" / "01_hunt.film", "camera extreme_close_up eye_level telephoto static",
         "camera extreme_close_up eye_level telephoto slow_push")
    before = memo_file.stat().st_mtime
    again = _cli(["build", "--offline", "--quiet"], film, cache)
    assert again.returncode == 0, again.stderr
    _written(cache, before + 1e-6)  # its own memo, for the next
    assert len(_memo_files(cache)) == 1
    # What it built under the memo's keys is what a compile of no memo asks for.
    plan = _cli(["plan", "--offline", "--json"], film, tmp_path / "no-cache")
    steps = json.loads(plan.stdout)["steps"]
    assert plan.returncode == 0 and steps, \
        [s for s in steps if s["status"] not in ("cached", "provided")][:3]


@pytest.mark.skipif(not hasattr(os, "fork"), reason="no fork: no memo is kept")
def test_a_build_that_said_its_lines_leaves_the_memo_of_its_compile_after(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A first build says the lines, then compiles again to time the dialogue by them
    (with the memo its first compile used): the memo it leaves is that second compile's,
    so the next command, whose store knows the lines, puts every shot back."""
    from filmc.engine.lengths import lookup_for

    film = copy_example(tmp_path / "w")
    cache = tmp_path / "cache"
    start = time.time()
    first = _cli(["build", "--offline", "--quiet"], film, cache)
    assert first.returncode == 0, first.stderr
    _written(cache, start)
    time.sleep(0.5)  # (the child that writes it has renamed it into place)
    monkeypatch.setenv("XDG_CACHE_HOME", str(cache))
    monkeypatch.chdir(film)
    parser._memo.clear()
    memo = memocache.load(film / "film.film", "offline")
    assert memo.graph is not None and memo.graph.calls
    compiled = compile_film(film / "film.film", offline=True, said=lookup_for, memo=memo)
    assert compiled.ok and compiled.graph.graph["retimed"] > 0  # timed by what was said
    assert memo.graph.made == 0 and memo.graph.reused == len(memo.graph.calls)
