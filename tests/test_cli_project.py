"""The command line as a script and a person use it: the project's film found from any
folder in it, folders as arguments, exit codes a script can trust, `fmt --diff` and CRLF,
`explain SCENE/SHOT` and scenes, selector suggestions, and what `gc` says it forgets."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import copy_example

USAGE = 64


def filmc(*args: str, cwd: Path, store: Path | None = None) -> subprocess.CompletedProcess:
    env = dict(os.environ, NO_COLOR="1")
    if store is not None:
        env["FILMC_STORE"] = str(store)
    return subprocess.run([sys.executable, "-m", "filmc", *args], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=300)


@pytest.fixture
def project(tmp_path: Path) -> Path:
    r = filmc("init", "proj", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    return tmp_path / "proj"


# --- which film -----------------------------------------------------------------------------


def test_commands_find_the_film_from_a_subfolder(project: Path) -> None:
    deep = project / "scenes" / "notes"
    deep.mkdir()
    r = filmc("check", cwd=deep)
    assert r.returncode == 0, r.stderr
    assert r.stdout == f'{project / "film.film"}: "Proj": 1 character, 1 location, 1 scene, ' \
                       f"3 shots, 0:10 runtime\n"
    r = filmc("plan", "--offline", cwd=deep, store=project / ".filmc")
    assert r.returncode == 2 and "Plan: 23 to run" in r.stdout  # 2: work to do
    r = filmc("explain", "anna_calls", cwd=deep)
    assert r.returncode == 0 and r.stdout.startswith("shot opening/anna_calls: 3s")
    r = filmc("graph", "--format", "json", cwd=deep)
    assert r.returncode == 0 and '"film": "Proj"' in r.stdout


def test_the_nearest_filmc_toml_decides_and_ambiguity_is_said(project: Path) -> None:
    # A second film in the project folder, and no film.film: which one is not guessed.
    (project / "film.film").rename(project / "harbour.film")
    (project / "teaser.film").write_text('use "cast.film"\n\nfilm "Teaser" {\n}\n')
    r = filmc("check", cwd=project / "scenes")
    assert r.returncode == 1 and "Traceback" not in r.stderr
    assert r.stderr == ("error: which film? `..` holds 2 films: `harbour.film`, `teaser.film`\n"
                        "  = help: name one: `filmc COMMAND ../harbour.film`\n")
    # A nested project with its own filmc.toml is its own project.
    inner = project / "teaser"
    filmc("init", "teaser", cwd=project)
    r = filmc("check", cwd=inner / "scenes")
    assert r.returncode == 0 and '"Teaser"' in r.stdout, r.stderr


def test_no_film_anywhere_is_an_error_that_says_what_to_do(tmp_path: Path) -> None:
    for args in (["check"], ["plan"], ["build", "--offline"], ["fmt"], ["explain", "x"],
                 ["gc", "-n"], ["lock"]):
        r = filmc(*args, cwd=tmp_path)
        assert r.returncode == 1, (args, r.stderr)
        assert r.stderr.startswith("error: no film here: no `filmc.toml` in `.` or above"), args
        assert "`filmc init`" in r.stderr


def test_check_and_fmt_take_folders(tmp_path: Path) -> None:
    films = tmp_path / "films"
    films.mkdir()
    assert filmc("init", "a", cwd=films).returncode == 0
    assert filmc("init", "b", cwd=films).returncode == 0
    # Outputs and the store are never read as sources.
    for junk in ("a/build/x.film", "a/.filmc/y.film"):
        (films / junk).parent.mkdir(parents=True, exist_ok=True)
        (films / junk).write_text("this is not a film {")
    (films / "b" / "scenes" / "01_opening.film").write_text(
        (films / "b" / "scenes" / "01_opening.film").read_text().replace("  cast ANNA", "cast ANNA"))
    r = filmc("check", "films", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert r.stdout.splitlines() == [
        'films/a/film.film: "A": 1 character, 1 location, 1 scene, 3 shots, 0:10 runtime',
        'films/b/film.film: "B": 1 character, 1 location, 1 scene, 3 shots, 0:10 runtime']
    r = filmc("fmt", "--check", "films", cwd=tmp_path)
    assert (r.returncode, r.stdout) == (1, "would reformat films/b/scenes/01_opening.film\n")
    r = filmc("fmt", ".", cwd=films / "b")
    assert (r.returncode, r.stdout) == (0, "formatted scenes/01_opening.film\n")
    assert filmc("fmt", "--check", "films", cwd=tmp_path).returncode == 0
    # A part no film includes is still checked: its errors are not hidden.
    (films / "a" / "scenes" / "stray.film").write_text("scene stray EXT NOWHERE DAY {\n}\n")
    r = filmc("check", "films/a", cwd=tmp_path)
    assert r.returncode == 1 and "stray.film" in r.stderr


# --- exit codes ---------------------------------------------------------------------------


@pytest.mark.parametrize("args", [
    ["plan", "--bogus"], ["plan", "--until", "nowhere"], ["build", "--max-cost", "lots"],
    ["chek"], [], ["take"], ["fmt", "--diffs"], ["check", "--format", "yaml"],
])
def test_a_usage_error_is_64_never_plans_2(args: list[str], tmp_path: Path) -> None:
    r = filmc(*args, cwd=tmp_path)
    assert r.returncode == USAGE, (args, r.returncode, r.stderr)
    assert "error:" in r.stderr and "--help" in r.stderr and "Traceback" not in r.stderr


def test_the_makefile_idiom_no_longer_passes_a_typo(project: Path) -> None:
    """`filmc plan ... || [ $? -eq 2 ]` accepts work to do and rejects a misspelt option."""
    ok = subprocess.run(f"{sys.executable} -m filmc plan --offline || [ $? -eq 2 ]",
                        shell=True, cwd=project, capture_output=True)
    bad = subprocess.run(f"{sys.executable} -m filmc plan --ofline || [ $? -eq 2 ]",
                         shell=True, cwd=project, capture_output=True)
    assert ok.returncode == 0 and bad.returncode != 0


# --- fmt ----------------------------------------------------------------------------------


def test_fmt_check_diff_shows_a_unified_diff_and_changes_nothing(project: Path) -> None:
    cast = project / "cast.film"
    before = cast.read_text().replace('  voice "warm, quick"', 'voice    "warm, quick"')
    cast.write_text(before)
    r = filmc("fmt", "--check", "--diff", cwd=project)
    assert r.returncode == 1
    assert r.stdout == ("--- a/cast.film\n+++ b/cast.film\n@@ -5,7 +5,7 @@\n \n"
                        ' character ANNA "Anna" {\n'
                        '   look "woman in her thirties, short dark hair, green raincoat"\n'
                        '-voice    "warm, quick"\n+  voice "warm, quick"\n }\n \n'
                        ' location HARBOUR "The harbour" {\n')
    assert r.stderr == "would reformat cast.film\n"
    assert cast.read_text() == before


def test_fmt_normalises_crlf(project: Path) -> None:
    part = project / "scenes" / "01_opening.film"
    lf = part.read_bytes()
    part.write_bytes(lf.replace(b"\n", b"\r\n"))
    r = filmc("fmt", "--check", "--diff", cwd=project)
    assert r.returncode == 1 and "would reformat scenes/01_opening.film" in r.stderr
    assert "\n-// Scene 1: one scene, three shots. Add a scene as a new file here and a\\r\n" \
        in r.stdout
    assert "\n+// Scene 1: one scene, three shots. Add a scene as a new file here and a\n" \
        in r.stdout
    r = filmc("fmt", cwd=project)
    assert r.returncode == 0 and r.stdout == "formatted scenes/01_opening.film\n"
    assert part.read_bytes() == lf


# --- explain, select, gc ----------------------------------------------------------------------


def test_explain_scene_slash_shot_and_a_scene(tmp_path: Path) -> None:
    film = copy_example(tmp_path / "w") / "film.film"
    plain = filmc("explain", str(film), "chen_watches", cwd=tmp_path)
    slashed = filmc("explain", str(film), "hunt/chen_watches", cwd=tmp_path)
    assert slashed.returncode == 0 and slashed.stdout == plain.stdout
    r = filmc("explain", str(film), "yurt/chen_watches", cwd=tmp_path)
    assert r.returncode == 1 and "no scene `yurt`" in r.stderr and "`yurt_talk`" in r.stderr
    r = filmc("explain", str(film), "hunt/chen_wathces", cwd=tmp_path)
    assert r.returncode == 1 and "did you mean `chen_watches`?" in r.stderr
    r = filmc("explain", str(film), "yurt_talk", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert r.stdout.startswith('scene yurt_talk "Bilgee\'s Yurt": 6 shots, 26s\n')
    shots = [line.split(":")[0] for line in r.stdout.splitlines() if line.startswith("shot ")]
    assert shots == ["shot yurt_talk/tea_pour", "shot yurt_talk/at_the_stove",
                     "shot yurt_talk/bilgee_answers", "shot yurt_talk/chen_listens",
                     "shot yurt_talk/big_life", "shot yurt_talk/smoke_hole"]
    assert r.stdout.count("\nplate.YURT.NIGHT  [plate on") == 1  # shared inputs: once


def test_unknown_scene_suggests_the_scene_it_begins(project: Path) -> None:
    part = project / "scenes" / "02_workshop.film"
    part.write_text("use std.camera\n\nscene 作坊白天 \"作坊\" INT HARBOUR DAY {\n"
                    "  shot 开门 2s {\n    camera wide\n    action \"门开了。\"\n  }\n}\n")
    main = project / "film.film"
    main.write_text(main.read_text().replace('  part "scenes/01_opening.film"\n',
                                             '  part "scenes/01_opening.film"\n'
                                             '  part "scenes/02_workshop.film"\n'))
    r = filmc("plan", "--offline", "--select", "scene:作坊", cwd=project)
    assert r.returncode == 1, r.stderr
    assert "unknown scene `作坊`" in r.stderr and "did you mean `作坊白天`?" in r.stderr
    r = filmc("plan", "--offline", "--select", "scene:作坊白天", cwd=project)
    assert r.returncode == 2, r.stderr


def test_gc_lists_the_steps_and_shots_it_forgets(project: Path) -> None:
    store = project / ".filmc"
    assert filmc("build", "--offline", "-q", cwd=project, store=store).returncode == 0
    part = project / "scenes" / "01_opening.film"
    part.write_text(part.read_text().replace("Is anyone here?", "Hello?"))
    assert filmc("build", "--offline", "-q", cwd=project, store=store).returncode == 0
    r = filmc("gc", "--dry-run", cwd=project, store=store)
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    # The line's speech, its shot, the mix, the film, the subtitles, and the exports that
    # hold the dialogue (not the EDL: it holds the picture alone); the SRT export is the
    # subtitles' very bytes, one object for two steps.
    assert [line.split()[:3] for line in lines] == [
        ["would", "forget", f"export.{f}"] for f in ("fcpxml", "otio", "srt")] + [
        ["would", "forget", "film"], ["would", "forget", "mix"],
        ["would", "forget", "shot.opening.anna_calls"],
        ["would", "forget", "speech.opening.anna_calls.1"], ["would", "forget", "subtitles"]]
    assert "speech on local, " in lines[6]
    assert "in 1 shot: opening/anna_calls" in r.stderr
    # (the mix's old track and dialogue stem; its music and effects stems are the new mix's)
    assert "would forget 8 cached steps, would delete 8 objects" in r.stderr
    assert "a dry run: nothing changed" in r.stderr
    r = filmc("gc", cwd=project, store=store)
    assert r.stdout.replace("forgot", "would forget") == "\n".join(lines) + "\n"
    assert "forgot 8 cached steps, deleted 8 objects" in r.stderr
    r = filmc("gc", "-n", cwd=project, store=store)
    assert r.stdout == "" and "would forget 0 cached steps" in r.stderr
