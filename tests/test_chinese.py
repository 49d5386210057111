"""A film written with a Chinese input method, and a part file checked alone.

The Chinese film is tests/errors/full_width.film (its diagnostics are a golden file
too): full-width punctuation in syntax positions, a `外 院子 黄昏` heading and the
Chinese camera presets.  These tests run the real CLI on a copy of it, as a writer
would: check, format, check again, build the animatic's keyframes.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

from conftest import copy_example

from filmc.compiler.pipeline import compile_film
from filmc.lang.diagnostics import Diagnostics, suggest
from filmc.lang.parser import FULL_WIDTH, parse

HERE = Path(__file__).parent
CHINESE = HERE / "errors" / "full_width.film"
# Each Chinese camera preset of std.camera and the English preset it names.
ALIASES = {"特写": "close_up", "近景": "medium_close_up", "中景": "medium", "全景": "full",
           "远景": "wide", "大远景": "extreme_wide", "俯拍": "high_angle", "仰拍": "low_angle",
           "平视": "eye_level", "推": "dolly_in", "拉": "dolly_out", "摇": "pan_right",
           "移": "truck_right", "跟": "tracking", "升": "crane_up", "降": "crane_down"}


def filmc(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "NO_COLOR": "1"}
    return subprocess.run([sys.executable, "-m", "filmc", *args], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=300)


def _outside_strings(text: str) -> str:
    """The text with every ASCII-quoted string removed: what is syntax."""
    return re.sub(r'"(?:[^"\\\n]|\\.)*"', '""', text)


def test_chinese_input_checks_with_a_warning_formats_to_ascii_and_builds(tmp_path: Path) -> None:
    film = tmp_path / "film.film"
    shutil.copy(CHINESE, film)
    before = film.read_text(encoding="utf-8")
    assert any(ch in _outside_strings(before) for ch in FULL_WIDTH)

    r = filmc("check", "film.film", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert r.stderr.count("warning[W0101]") == 1 and "error[" not in r.stderr
    assert 'film.film: "回家": 2 characters, 1 location, 2 scenes, 3 shots, 0:09 runtime' in r.stdout

    r = filmc("fmt", "film.film", cwd=tmp_path)
    assert r.returncode == 0 and "W0101" not in r.stderr, r.stderr
    after = film.read_text(encoding="utf-8")
    syntax = _outside_strings(after)
    assert not [ch for ch in FULL_WIDTH if ch in syntax], syntax
    # What was written inside quotes stays; the headings keep their Chinese words.
    assert 'action "爷爷的眼睛湿了：“好，好。”"' in after
    assert 'action "林梅推开院门，爷爷站在雪里：\\"回来了？\\""' in after
    assert '    爷爷 (轻声): "回来了？"\n' in after
    assert '    cast 爷爷, MEI(冬装)\n' in after
    assert 'scene 回来 "回来" 外 院子 黄昏 {' in after and 'scene 夜里 "夜里" 内 院子 夜 {' in after

    r = filmc("fmt", "--check", "film.film", cwd=tmp_path)
    assert r.returncode == 0, r.stdout + r.stderr
    r = filmc("check", "film.film", cwd=tmp_path)
    assert r.returncode == 0 and r.stderr == "", r.stderr

    r = filmc("build", "--offline", "--until", "keyframe", "film.film", cwd=tmp_path)
    assert r.returncode == 0, r.stdout + r.stderr
    keyframes = sorted(p.name for p in (tmp_path / "build").rglob("keyframes/*.png"))
    assert len(keyframes) == 3, keyframes


def test_formatting_changes_only_the_punctuation() -> None:
    """The same AST before and after `fmt`, spans aside: nothing but the form changed."""
    from golden_files import dump

    from filmc.lang.fmt import format_text

    text = CHINESE.read_text(encoding="utf-8")
    out = format_text(text, "a.film", Diagnostics())
    assert out is not None

    def shape(source: str) -> object:
        d = Diagnostics()
        module = parse(source, "a.film", d)
        assert not d.errors
        return re.sub(r"'\d+:\d+-\d+:\d+'", "", str(dump(module.decls)))

    assert shape(text) == shape(out)
    assert format_text(out, "a.film", Diagnostics()) == out


def test_chinese_scene_headings_mean_int_ext_and_times(tmp_path: Path) -> None:
    film = tmp_path / "film.film"
    shutil.copy(CHINESE, film)
    c = compile_film(film, until="ir")
    assert c.film is not None and not c.diags.errors
    assert [(s.setting, s.location, s.time) for s in c.film.scenes] == [
        ("EXT", "院子", "DUSK"), ("INT", "院子", "NIGHT")]


def _alias_film(tmp: Path, names: list[str]) -> Path:
    shots = "\n".join(f'  shot s{i} 2s {{\n    camera {n}\n    action "a yard in winter"\n  }}\n'
                      for i, n in enumerate(names))
    tmp.mkdir()
    (tmp / "film.film").write_text(
        f'use std.camera\n\nfilm "F" {{\n  fps 24\n}}\n\nscene s "S" {{\n{shots}}}\n',
        encoding="utf-8")
    return tmp / "film.film"


def test_chinese_presets_give_the_keys_of_the_english_ones(tmp_path: Path) -> None:
    graphs = []
    for side, names in (("zh", list(ALIASES)), ("en", list(ALIASES.values()))):
        c = compile_film(_alias_film(tmp_path / side, names))
        assert c.ok and c.graph is not None, [d.message for d in c.diags]
        # (but the OpenTimelineIO export's, whose metadata names the presets as written)
        graphs.append({n: d["step"].key for n, d in c.graph.nodes(data=True)
                       if n != "export.otio"})
    zh, en = graphs
    assert len(zh) > len(ALIASES) and zh == en


def test_a_chinese_preset_fills_the_slot_of_its_english_one(tmp_path: Path) -> None:
    """`camera 特写 wide`: two shot sizes, the same error as `camera close_up wide`."""
    c = compile_film(_alias_film(tmp_path / "f", ["特写 wide"]), until="check")
    assert [d.code for d in c.diags.errors] == ["F0230"]


def test_did_you_mean_crosses_traditional_and_simplified() -> None:
    assert suggest("爺爺", ["爷爷", "MEI"]) == "爷爷"
    assert suggest("爷爷", ["爺爺"]) == "爺爺"
    assert suggest("黃昏", ["DUSK", "黄昏"]) == "黄昏"
    assert suggest("CHNE", ["CHEN"]) == "CHEN"  # and the rest as before
    assert suggest("老狼群", ["小羊羔"]) is None


# --- a part file checked alone ---------------------------------------------------------


def test_a_part_checked_alone_shows_only_its_own_diagnostics(tmp_path: Path) -> None:
    project = copy_example(tmp_path / "wolfpack")
    clean = filmc("check", "scenes/02_yurt.film", cwd=project)
    assert clean.returncode == 0 and clean.stderr == "", clean.stderr
    assert clean.stdout == 'scenes/02_yurt.film: checked as part of `film.film` ("Wolf Pack")\n'

    hunt = project / "scenes" / "01_hunt.film"
    hunt.write_text(hunt.read_text(encoding="utf-8").replace(
        'CHEN (quietly): "They', 'CHNE (quietly): "They'), encoding="utf-8")
    yurt = project / "scenes" / "02_yurt.film"
    yurt.write_text(yurt.read_text(encoding="utf-8").replace("camera close_up", "camera clsoe_up", 1),
                    encoding="utf-8")
    r = filmc("check", "01_hunt.film", cwd=project / "scenes")  # from the part's own folder
    assert r.returncode == 1
    assert re.findall(r"(?m)^(?:error|warning)\[\w+\]: .*$", r.stderr) == [
        "error[F0201]: unknown character `CHNE`"], r.stderr
    assert " --> 01_hunt.film:" in r.stderr
    assert r.stdout == ("01_hunt.film: checked as part of `../film.film` (\"Wolf Pack\"); the film "
                        "has 1 more error in other files (`filmc check ../film.film`)\n")


def test_a_part_of_two_films_says_which_to_check(tmp_path: Path) -> None:
    project = copy_example(tmp_path / "wolfpack")
    main = (project / "film.film").read_text(encoding="utf-8")
    (project / "director.film").write_text(main.replace('"Wolf Pack"', '"Director\'s cut"'),
                                           encoding="utf-8")
    r = filmc("check", "scenes/03_cub.film", cwd=project)
    assert r.returncode == 1
    assert "error[F0411]: `scenes/03_cub.film` is in 2 films: which one to check it in?" in r.stderr
    assert "check it in its film: `filmc check director.film` or `filmc check film.film`" in r.stderr


def test_a_file_no_film_names_is_checked_on_its_own(tmp_path: Path) -> None:
    (tmp_path / "loose.film").write_text('scene s "S" {\n  shot a 3s {\n    action "alone"\n'
                                         '  }\n}\n', encoding="utf-8")
    r = filmc("check", "loose.film", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert r.stdout.startswith("loose.film: (no film header): ")
