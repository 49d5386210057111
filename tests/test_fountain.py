"""`filmc import`: Fountain screenplays read element by element, and the project written
from one checked, formatted and built as a user would.

tests/fountain/every_element.fountain holds every element of the Fountain syntax
(fountain.io/syntax); chinese.fountain a screenplay in Chinese, with the language's
Chinese scene headings; the unclosed_* files the two mistakes Fountain can make.
"""

from __future__ import annotations

import contextlib
import io
import os
import subprocess
import sys
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from filmc.backends.ffmpeg import probe
from filmc.cli import main
from filmc.lang import fountain as F
from filmc.lang.breakdown import breakdown
from filmc.lang.diagnostics import Diagnostics

HERE = Path(__file__).parent / "fountain"
EVERY = HERE / "every_element.fountain"
CHINESE = HERE / "chinese.fountain"


def run(*args: str, cwd: Path) -> tuple[int, str, str]:
    """`filmc ARGS` in-process, in `cwd`: (exit code, stdout, stderr)."""
    out, err = io.StringIO(), io.StringIO()
    before = os.getcwd()
    os.chdir(cwd)
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            code = main(list(args))
    finally:
        os.chdir(before)
    return code, out.getvalue(), err.getvalue()


def parse(path: Path) -> F.Screenplay:
    diags = Diagnostics()
    play = F.parse_fountain(path.read_text(encoding="utf-8"), path.name, diags)
    assert play is not None and not diags.items, [d.message for d in diags]
    return play


def test_every_element_of_the_spec_is_read() -> None:
    play = parse(EVERY)
    assert play.title == (
        ("Title", "_**THE LAST FERRY**_\nacross the strait"), ("Credit", "Written by"),
        ("Author", "Mei Lin"), ("Source", "Story by Mei Lin and Tom Hale"),
        ("Draft date", "1 March 2025"), ("Contact", "Mei Lin\nmei@example.com"),
        ("Notes", "A test of every element of Fountain."))
    els = play.elements
    kinds = [type(e).__name__ for e in els]
    assert kinds[:8] == ["Boneyard", "Section", "Synopsis", "Section", "Section", "Transition",
                         "Heading", "Synopsis"]
    bone = els[0]
    assert "EXT. OLD QUARRY - DAY" in bone.text and (bone.span.line, bone.span.end_line) == (13, 18)
    assert [(e.level, e.text) for e in els if isinstance(e, F.Section)] == [
        (1, "ACT ONE"), (2, "The pier"), (3, "Dawn")]
    heads = [e for e in els if isinstance(e, F.Heading)]
    assert [(h.setting, h.place, h.time, h.number, h.forced) for h in heads] == [
        ("EXT", "HARBOUR PIER", "DAWN", "1", False),
        ("INT", "FERRY CABIN", "CONTINUOUS", "1A", False),
        ("INT/EXT", "FERRY DECK", "NIGHT", None, False),
        (None, "FLASHBACK", "THE STRAIT, THIRTY YEARS AGO", None, True),
        ("INT/EXT", "HAN'S TRUCK", "SUNSET", None, False),
        ("EST", "THE WHOLE ISLAND", "MORNING", None, False),
        ("EXT", "HARBOUR PIER", "NIGHT", None, False),
        ("INT", "HAN'S HOUSE", "NIGHT", "12", False)]
    actions = [e for e in els if isinstance(e, F.Action)]
    assert actions[0].notes == ("Find a real pier with pilings.",)  # an inline note
    assert actions[2].forced and actions[2].text == "THE BELL ON THE FERRY RINGS ONCE."
    assert "A cramped cabin, one lamp swinging.\nRain drums on the roof." in \
        [a.text for a in actions]  # line breaks kept
    centered = [a for a in actions if a.centered]
    assert [a.text for a in centered] == ["THE END OF THE BEGINNING"]
    speeches = [e for e in els if isinstance(e, F.Dialogue)]
    han = speeches[0]
    assert han.name == "HAN" and [(p.paren, p.text, p.sung) for p in han.parts] == [
        ("to himself", "Nobody today either.", False), ("beat", "Nobody ever.", False),
        (None, "Row, old man, row.", True)]
    assert [(d.name, d.extensions, d.forced, d.dual) for d in speeches[1:]] == [
        ("MEI", ("O.S.",), False, False), ("HAN", ("CONT'D",), False, False),
        ("MEI", (), False, False), ("HAN", (), False, False), ("MEI", (), False, True),
        ("McKENZIE", (), True, False), ("HAN", ("V.O.",), False, False)]
    vo = speeches[-1]  # two spaces on a line carry the speech over it
    assert vo.parts[0].text == "I've carried the dead across this strait.\n" \
                               "And the living, who were worse."
    assert [(t.text, t.forced) for t in els if isinstance(t, F.Transition)] == [
        ("FADE IN:", False), ("CUT TO:", False), ("SMASH CUT TO:", True), ("FADE OUT.", True)]
    lyrics = [e for e in els if isinstance(e, F.Lyrics)]
    assert [x.text for x in lyrics] == ["The sea is wide and I am small,\n"
                                        "and nobody comes back at all."]
    assert sum(isinstance(e, F.PageBreak) for e in els) == 1
    notes = [e for e in els if isinstance(e, F.Note)]
    assert [n.text for n in notes] == ["This note spans lines. It is kept as a comment."]
    assert (notes[0].span.line, notes[0].span.end_line) == (89, 94)
    assert [s.text for s in els if isinstance(s, F.Synopsis)] == [
        "The ferryman waits for a passenger who never comes.",
        "Establish the pier and the ferry."]


def test_emphasis_is_removed_and_escapes_kept() -> None:
    assert F.plain("Mei stands at the rail, *soaked*, **shaking**, _alone_.") == \
        "Mei stands at the rail, soaked, shaking, alone."
    assert F.plain("***all of it*** and _**both**_") == "all of it and both"
    assert F.plain(r"The island from above. \*Not\* a dream, 5 * 3.") == \
        "The island from above. *Not* a dream, 5 * 3."


def test_the_import_checks_and_formats_clean_and_says_what_it_found(tmp_path: Path) -> None:
    code, out, err = run("import", str(EVERY), "-o", "ferry", cwd=tmp_path)
    assert code == 0, err
    assert "8 scenes" in out
    project = tmp_path / "ferry"
    code, out, err = run("check", "ferry/film.film", cwd=tmp_path)
    assert (code, err) == (0, "")  # not an error, not a warning
    assert '"THE LAST FERRY across the strait": 3 characters, 6 locations, 8 scenes, 12 shots' \
        in out
    assert run("fmt", "--check", "ferry", cwd=tmp_path)[0] == 0
    assert {p.name for p in project.iterdir()} == {"film.film", "cast.film", "scenes",
                                                   "filmc.toml", ".gitignore"}
    cast = (project / "cast.film").read_text(encoding="utf-8")
    assert 'character HAN "Han" {\n  look "OLD HAN, seventies, coils a rope with slow, ' \
           'certain hands."\n}' in cast
    assert 'character McKENZIE "McKENZIE"' in cast  # forced with `@`: its case kept
    assert cast.count("location HARBOUR_PIER ") == 1  # two headings, one place
    assert 'location HANS_TRUCK "Han\'s Truck"' in cast
    film = (project / "film.film").read_text(encoding="utf-8")
    assert 'film "THE LAST FERRY across the strait" {' in film
    assert 'note "Author: Mei Lin"' in film and 'note "Contact: Mei Lin; mei@example.com"' in film
    scenes = sorted((project / "scenes").iterdir())
    one = scenes[0].read_text(encoding="utf-8")
    assert 'scene sc1 "EXT. HARBOUR PIER - DAWN" EXT HARBOUR_PIER DAWN {' in one
    assert "// # ACT ONE" in one and "// ### Dawn" in one and "// A scene nobody will shoot." in one
    assert 'note "Establish the pier and the ferry."' in one  # the scene's synopsis
    assert "// note: Find a real pier with pilings." in one
    assert '    HAN (to himself): "Nobody today either."\n    HAN (beat): "Nobody ever."\n' \
           '    HAN (sung): "Row, old man, row."\n    MEI (O.S.): "Wait! Please wait!"' in one
    assert "cast HAN\n" in one  # MEI is off screen (O.S.): heard, not in frame
    assert 'note "dual dialogue: HAN and MEI speak at once"' in one
    assert 'McKENZIE (shouting from the shore): "You\'ll never make it across in this!"' in one
    assert 'HAN: "The last ferry left an hour ago."' in one  # CONT'D dropped
    two = scenes[1].read_text(encoding="utf-8")
    assert two.startswith('scene sc1A "INT. FERRY CABIN - CONTINUOUS" INT FERRY_CABIN CONTINUOUS')
    assert 'HAN (V.O.): "I\'ve carried the dead across this strait. And the living' in two
    assert 'note "lyrics: The sea is wide and I am small, / and nobody comes back at all."' in two
    assert 'note "centered: THE END OF THE BEGINNING"' in two and "// === (page break)" in two
    texts = [p.read_text(encoding="utf-8") for p in scenes]
    assert 'action "Mei stands at the rail, soaked, shaking, alone."' in texts[2]
    assert 'note "transition: SMASH CUT TO:"' in texts[2]
    assert texts[3].startswith('scene s04 "FLASHBACK - THE STRAIT, THIRTY YEARS AGO" {')
    assert 'INT/EXT HANS_TRUCK SUNSET' in texts[4]
    assert 'EXT THE_WHOLE_ISLAND MORNING' in texts[5] and 'note "establishing (EST.)"' in texts[5]
    assert 'action "The island from above. *Not* a dream."' in texts[5]
    assert texts[7].startswith('scene sc12 "INT HAN\'S HOUSE - NIGHT" INT HANS_HOUSE NIGHT')
    assert 'note "transition: FADE OUT."' in texts[7]
    code, _out, err = run("import", str(EVERY), "-o", "ferry", cwd=tmp_path)
    assert code == 1 and "already holds a project" in err  # never writes over a project


def test_durations_cover_what_is_said_and_done(tmp_path: Path) -> None:
    from filmc.compiler.pipeline import compile_film
    from filmc.lang.check import speaking_time

    assert run("import", str(EVERY), "-o", "ferry", cwd=tmp_path)[0] == 0
    film = compile_film(tmp_path / "ferry" / "film.film", until="ir").film
    assert film is not None
    for shot in film.shots:
        said = sum(speaking_time(line.text) for line in shot.lines)
        assert shot.duration >= max(2, said) and shot.duration * 2 == int(shot.duration * 2)
    long = {s.id: s.duration for s in film.shots}
    assert long["sc1_4"] > long["sc1_1"] >= 3  # five lines take longer than one beat


def test_a_chinese_screenplay_imports_with_its_own_headings(tmp_path: Path) -> None:
    code, _out, err = run("import", str(CHINESE), cwd=tmp_path)  # ./chinese by default
    assert code == 0, err
    code, out, err = run("check", "chinese/film.film", cwd=tmp_path)
    assert (code, err) == (0, "") and '"回家": 2 characters, 2 locations, 4 scenes' in out
    assert run("fmt", "--check", "chinese", cwd=tmp_path)[0] == 0
    texts = [p.read_text(encoding="utf-8") for p in sorted((tmp_path / "chinese" /
                                                             "scenes").iterdir())]
    assert texts[0].startswith('scene s01 "外 院子 黄昏" 外 院子 黄昏 {')
    assert '林梅 (轻声): "爷爷，我回来了。"' in texts[0]  # full-width parenthetical
    assert '爷爷: "回来了？好，好。"' in texts[0]  # lines joined without a space
    assert "cast 林梅, 爷爷" in texts[0]
    assert texts[1].startswith('scene s02 "内 厨房 夜" 内 厨房 夜 {')
    assert "    cast\n" in texts[1] and '林梅 (O.S.): "饭好了吗？"' in texts[1]
    assert '外景 院子 DAWN {' in texts[2]  # 清晨: a time the language writes in English
    assert 'EXT 院子 DAY {' in texts[3]
    film = (tmp_path / "chinese" / "film.film").read_text(encoding="utf-8")
    assert 'language "zh"' in film and 'film "回家"' in film


@pytest.mark.parametrize("name,code,where,label", [
    ("unclosed_boneyard.fountain", "F0902", "7:1", "`/*` opens it"),
    ("unclosed_note.fountain", "F0903", "3:9", "`[[` opens it"),
])
def test_an_unclosed_block_is_an_error_at_its_opening(tmp_path: Path, name: str, code: str,
                                                      where: str, label: str) -> None:
    (tmp_path / name).write_bytes((HERE / name).read_bytes())
    rc, _out, err = run("import", name, cwd=tmp_path)
    assert rc == 1
    assert f"error[{code}]" in err and f"--> {name}:{where}" in err and label in err
    assert "= help: close it with" in err and "Traceback" not in err
    assert not any(tmp_path.glob("*/film.film"))  # nothing written


def test_what_is_no_screenplay_is_said_so(tmp_path: Path) -> None:
    (tmp_path / "title.fountain").write_text("Title: Only a title\nAuthor: Nobody\n")
    rc, _out, err = run("import", "title.fountain", cwd=tmp_path)
    assert rc == 1 and "error[F0904]" in err and "--> title.fountain:1:1" in err
    (tmp_path / "latin1.fountain").write_bytes("INT. CAFÉ - DAY\n\nCoffee.\n".encode("latin-1"))
    rc, _out, err = run("import", "latin1.fountain", cwd=tmp_path)
    assert rc == 1 and "is not UTF-8 text (line 1)" in err and "save the screenplay as UTF-8" in err
    rc, _out, err = run("import", "missing.fountain", cwd=tmp_path)
    assert rc == 1 and "no screenplay at `missing.fountain`" in err
    with pytest.raises(SystemExit) as usage:  # a usage error: the screenplay is required
        run("import", cwd=tmp_path)
    assert usage.value.code == 64


def test_an_imported_screenplay_builds_offline(tmp_path: Path) -> None:
    """The screenplay with every element of Fountain, as it is imported: an animatic."""
    assert run("import", str(EVERY), "-o", "ferry", cwd=tmp_path)[0] == 0
    r = subprocess.run([sys.executable, "-m", "filmc", "build", "--offline", "-q",
                        "film.film"], cwd=tmp_path / "ferry", capture_output=True, text=True,
                       timeout=600, env={**os.environ, "NO_COLOR": "1"})
    assert r.returncode == 0, r.stderr
    film = probe(tmp_path / "ferry" / "build" / "ferry" / "film.mp4")
    assert film["frames"] == 49 * 24 and (film["width"], film["height"]) == (1280, 720)
    assert len(list((tmp_path / "ferry" / "build" / "ferry" / "shots").iterdir())) == 12


text_of_lines = st.lists(st.one_of(
    st.sampled_from(["", "  ", "INT. HOUSE - DAY", "EXT HOUSE", ".FORCED", "内 院子 夜", "HAN",
                     "@林梅", "MEI (V.O.) ^", "(quietly)", "~la la", "> CUT TO:", "CUT TO:",
                     ">centered<", "===", "# Act", "= synopsis", "[[note]]", "/* bone */",
                     "Title: T", "    indented", "!FORCED ACTION", "Some action here.",
                     "*bold* _u_ \\*", "#1A#", "INT. ROOM - DAY #2#", "（轻声）"]),
    st.text(max_size=30)), max_size=25).map("\n".join)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(text_of_lines)
def test_any_text_is_a_screenplay_or_a_diagnostic_and_its_breakdown_parses(text: str) -> None:
    """Never a crash: a diagnostic, or a screenplay whose breakdown is `.film` text that
    parses and is formatted (breakdown() raises if it is not)."""
    diags = Diagnostics()
    play = F.parse_fountain(text, "any.fountain", diags)
    if play is None:
        assert diags.errors
        return
    files = breakdown(play)
    assert "film.film" in files and "cast.film" in files
