"""Subtitles a person can read: the timing rules, then a Chinese film built offline whose
SRT and subtitle track are read back as a viewer's player would read them."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from filmc.backends.local.subtitles import CJK_CPS, LATIN_CPS, MIN_SECONDS, cues, mp4_language


def filmc(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "filmc", *args], cwd=cwd, capture_output=True,
                          text=True, timeout=600, env={**os.environ, "NO_COLOR": "1"})


def _ffmpeg() -> str:
    from filmc.backends.ffmpeg import ffmpeg_exe

    return ffmpeg_exe()


def test_a_short_line_stays_a_second() -> None:
    assert cues([(1.0, 1.3, "Yes.", "ANA")]) == [(1.0, 2.0, "Yes.")]


def test_a_long_line_stays_as_long_as_it_takes_to_read() -> None:
    latin = "The kite is gone, and the string is all that is left."
    ((start, end, _),) = cues([(0.0, 1.5, latin, "BO")])
    read = sum(1 for c in latin if not c.isspace()) / LATIN_CPS
    assert end - start == pytest.approx(read) and read > 2.4
    chinese = "风筝飞走了，只剩下这根线。"  # 11 characters to read (punctuation aside)
    ((start, end, _),) = cues([(0.0, 1.0, chinese, "BO")])
    assert end - start == pytest.approx(11 / CJK_CPS)
    # What is said for longer than it takes to read stays while it is said.
    assert cues([(0.0, 4.0, "Hm.", "BO")]) == [(0.0, 4.0, "Hm.")]


def test_no_cue_overlaps_the_next() -> None:
    long = "A line far too long to read before the next person answers it."
    got = cues([(0.0, 0.5, long, "ANA"), (1.2, 2.0, "And a reply that is long as well.", "BO")])
    assert got[0] == (0.0, 1.2, long)  # shortened to the next one's start
    assert got[1][0] == 1.2


def test_two_speakers_share_an_event_with_a_dash_each() -> None:
    got = cues([(0.0, 0.4, "Now?", "ANA"), (0.5, 0.9, "Now!", "BO"), (3.0, 3.5, "Go.", "ANA")])
    assert got == [(0.0, 1.0, "- Now?\n- Now!"), (3.0, 4.0, "Go.")]
    # One speaker's two quick lines share an event without dashes.
    assert cues([(0.0, 0.4, "Wait.", "BO"), (0.5, 0.9, "Wait!", "BO")]) == \
        [(0.0, 1.0, "Wait.\nWait!")]
    # Never more than two lines: a third quick line gets a cue of its own.
    three = cues([(0.0, 0.3, "One.", "A"), (0.3, 0.6, "Two.", "B"), (0.6, 0.9, "Three.", "A")])
    assert [c[2] for c in three] == ["- One.\n- Two.", "Three."]
    assert three[0][1] == 0.6 and three[1] == (0.6, 1.6, "Three.")


def test_the_last_cue_ends_with_the_film() -> None:
    assert cues([(9.5, 9.8, "Bye.", "ANA")], film_end=10.0) == [(9.5, 10.0, "Bye.")]
    assert MIN_SECONDS == 1.0


def test_language_tags_map_to_the_codes_an_mp4_stores() -> None:
    assert [mp4_language(t) for t in ("zh", "zh-Hans-CN", "en_GB", "ja", "eng", "中文")] == \
        ["zho", "zho", "eng", "jpn", "eng", "zho"]
    assert mp4_language("") is None and mp4_language("klingon") is None


FILM = """\
use std.camera

film "对话" {
  language "zh"
  size 192x80
  fps 24
  takes 1
}

character MEI "林梅" {
  look "a young woman in a blue apron"
}

character YEYE "爷爷" {
  look "an old man with a white beard"
}

location SHOP "作坊" {
  look "a kite maker's workshop"
}

scene shop "作坊" INT SHOP DAY {
  shot s1 1.5s {
    camera close_up eye_level static
    cast MEI, YEYE
    MEI: "回来了？"
    YEYE: "嗯。"
  }
  shot s2 2s {
    camera medium eye_level static
    cast MEI
    MEI: "今天风很大，明天早上再去看风筝吧。"
  }
  shot s3 1.5s {
    camera medium eye_level static
    cast YEYE
    YEYE: "你去吧，我今天要把这只风筝的骨架全部修好再说。"
  }
  shot s4 5s {
    camera wide eye_level static
    action "The workshop at dusk."
  }
}
"""


def _secs(tc: str) -> float:
    h, m, rest = tc.split(":")
    s, ms = rest.split(",")
    return int(h) * 3600 + int(m) * 60 + int(s) + int(ms) / 1000


@pytest.fixture(scope="module")
def dialogue(tmp_path_factory) -> Path:
    project = tmp_path_factory.mktemp("dialogue")
    (project / "film.film").write_text(FILM, encoding="utf-8")
    r = filmc("build", "--offline", "film.film", cwd=project)
    assert r.returncode == 0, r.stderr
    (out,) = (project / "build").iterdir()  # build/<film>/, named after the folder
    return out


def test_the_films_subtitles_can_be_read(dialogue: Path) -> None:
    from filmc.compiler.pipeline import compile_film
    from filmc.engine.lengths import lookup_for

    srt = (dialogue / "film.srt").read_text(encoding="utf-8")
    got = []
    for block in srt.strip().split("\n\n"):
        number, times, *text = block.split("\n")
        a, b = times.split(" --> ")
        got.append((_secs(a), _secs(b), "\n".join(text)))
    assert [c[2] for c in got] == ["- 回来了？\n- 嗯。", "今天风很大，明天早上再去看风筝吧。",
                                   "你去吧，我今天要把这只风筝的骨架全部修好再说。"]
    # When each line is said, from the compiler, timed as the build timed them: by how long
    # each line was said.
    film = compile_film(dialogue.parents[1] / "film.film", offline=True, said=lookup_for).film
    said, t = [], 0.0
    for shot in film.shots:
        said += [(t + float(line.start), t + float(line.end)) for line in shot.lines]
        t += float(shot.duration)
    # Two quick lines of two speakers: one event, from the first line, at least a second.
    assert got[0][0] == pytest.approx(said[0][0], abs=0.002)
    assert got[0][1] - got[0][0] >= MIN_SECONDS - 0.002
    # A line too long to read before the next begins is shortened to its start: no overlap.
    assert got[1][1] == got[2][0] == pytest.approx(said[3][0], abs=0.002)
    assert got[1][1] - got[1][0] < 15 / CJK_CPS  # its 15 characters would take longer
    # The last line is followed by silence: it stays as long as 21 characters take to read.
    assert got[2][1] - got[2][0] == pytest.approx(21 / CJK_CPS, abs=0.002)
    assert got[2][1] - got[2][0] > said[3][1] - said[3][0] + 2
    for (_a, end, _t), (start, _b, _u) in zip(got, got[1:]):
        assert end <= start


def test_the_subtitle_track_carries_the_films_language(dialogue: Path) -> None:
    info = subprocess.run([_ffmpeg(), "-hide_banner", "-i", str(dialogue / "film.mp4")],
                          capture_output=True, text=True).stderr
    assert re.search(r"Stream #0:\d+\S*\(zho\): Subtitle: mov_text", info), info
