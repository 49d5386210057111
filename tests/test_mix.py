"""The `mix` step: the film's sound, made from what is heard and nothing that is seen.

A camera edit must re-join the film without re-mixing two hours of sound (issue 12's
P2), so the mix depends on the lines' speech and the sound cues alone, and the film
step copies its track in.  Checked as a user would: which keys an edit changes, where
a line is heard (against the shot that carries it, by real ffmpeg), and a built film
whose sound is the mix's, on its loudness target, as long as its picture, with its
stems beside it.
"""

from __future__ import annotations

import array
import math
import shutil
import wave
from fractions import Fraction
from pathlib import Path

import networkx as nx
import pytest
from conftest import copy_example
from test_build import filmc, report
from test_sound import LOUDNESS, SOUND_FILM

from filmc.backends.ffmpeg import probe, run
from filmc.backends.local import media, mix
from filmc.compiler.pipeline import compile_film

CAMERA = "camera close_up ground_level portrait_lens slow_push"
LINE = '"They planned it."'


def graph_of(project: Path) -> nx.DiGraph:
    out = compile_film(project / "film.film")
    assert out.ok, [d.message for d in out.diags.errors]
    return out.graph


def keys(project: Path) -> dict[str, str]:
    return {n: d["step"].key for n, d in graph_of(project).nodes(data=True)}


def edit(project: Path, old: str, new: str) -> None:
    path = project / "scenes" / "01_hunt.film"
    text = path.read_text(encoding="utf-8")
    assert text.count(old) == 1
    path.write_text(text.replace(old, new), encoding="utf-8")


# -- the step and its key ------------------------------------------------------------------------

def test_a_camera_edit_keeps_the_mix_and_a_line_edit_changes_it(tmp_path):
    project = copy_example(tmp_path / "wolfpack")
    base = keys(project)
    edit(project, CAMERA, CAMERA.replace("close_up", "medium"))
    camera = keys(project)
    assert camera["mix"] == base["mix"]  # nothing heard changed: no re-mix
    assert camera["film"] != base["film"]  # the shot is re-joined
    edit(project, LINE, '"They planned all of it."')
    line = keys(project)
    assert line["mix"] != camera["mix"]
    assert line["film"] != camera["film"]  # it carries the new mix


def test_the_mix_hears_lines_and_cues_in_film_time_and_nothing_seen(tmp_path):
    g = graph_of(copy_example(tmp_path / "wolfpack"))
    step = g.nodes["mix"]["step"]
    # Nothing a camera, a light or a pick decides is among what it is made from.
    assert {g.nodes[n]["kind"] for n in nx.ancestors(g, "mix")} == {"speech", "music", "sfx"}
    fps = step.fields.fps
    at = 0
    expected = []
    film = compile_film(copy_example(tmp_path / "again") / "film.film").film
    for shot in film.shots:
        frames = math.floor(shot.duration * fps + Fraction(1, 2))  # as media.frame_count
        begin, end = Fraction(at, 1) / fps, Fraction(at + frames, 1) / fps
        for i, line in enumerate(shot.lines):
            nxt = begin + shot.lines[i + 1].start if i + 1 < len(shot.lines) else end
            expected.append([f"speech.{shot.scene}.{shot.id}.{line.index}",
                             begin + line.start, begin + line.end, nxt])
        at += frames
    assert step.params["lines"] == expected and len(expected) == 12
    # exactly as long as the joined shots: each is a whole number of frames
    assert step.fields.duration == Fraction(at) / fps
    assert step.params["loudness"] == -23.0
    assert "loudness" not in g.nodes["film"]["step"].params


# -- the dialogue track, against what a shot carries -------------------------------------------

def voiced(samples: array.array, window: int) -> list[bool]:
    """Per window of `window` samples, whether it holds sound (over -45 dBFS RMS)."""
    out = []
    for i in range(0, len(samples) - window + 1, window):
        chunk = samples[i:i + window]
        rms = math.sqrt(sum(x * x for x in chunk) / window) / 32768
        out.append(rms > 10 ** (-45 / 20))
    return out


def mono(path: Path) -> array.array:
    raw = run(["-i", path, "-map", "0:a:0", "-ac", "1", "-ar", "48000", "-f", "s16le", "-"],
              "decode", capture_stdout=True).stdout
    return array.array("h", raw)


def test_lines_are_placed_as_their_shot_places_them(tmp_path):
    said = media.render_speech({"text": "They're circling the herd. We wait until dark, and "
                                "then we ride.", "speaker": "CHEN", "voice": "a man, calm"},
                               tmp_path / "long.wav")
    short = media.render_speech({"text": "Now.", "speaker": "BO", "voice": "a boy"},
                                tmp_path / "short.wav")
    length = probe(said)["audio_duration"]
    assert length > 2.5  # longer than its room below: it is said faster and cut
    # A 4 s shot (96 frames at 24 fps): the short line at 0.5 s, running on into the pause;
    # the long one at 1.5 s with 1.5 s of room up to the shot's end.
    lines = [[0.5, 1.0], [1.5, 2.5]]
    shot = media.conform_shot(
        media.render_clip(_still(tmp_path), {"width": 64, "height": 36, "fps": 24,
                                             "duration": 4}, tmp_path / "clip.mp4"),
        [short, said], {"width": 64, "height": 36, "fps": 24, "duration": 4, "lines": lines},
        tmp_path / "shot.mp4")
    # The same shot placed at 10 s of a 20 s film.
    t = Fraction(10)
    track = mix.place_dialogue([
        mix.Line(short, t + Fraction(1, 2), t + 1, t + Fraction(3, 2)),
        mix.Line(said, t + Fraction(3, 2), t + Fraction(5, 2), t + 4)], 20.0,
        tmp_path / "dialogue.wav")
    with wave.open(str(track)) as w:
        assert (w.getnframes(), w.getframerate(), w.getnchannels()) == (20 * 48000, 48000, 1)
    placed = mono(track)
    window = 480  # 10 ms
    ours = voiced(placed[10 * 48000:14 * 48000], window)
    theirs = voiced(mono(shot), window)
    assert len(ours) == len(theirs) == 400
    same = sum(a == b for a, b in zip(ours, theirs))
    assert same >= 0.97 * len(ours), f"{same} of {len(ours)} windows agree"
    assert not any(voiced(placed[:10 * 48000], window))  # silence before the shot
    assert not any(voiced(placed[14 * 48000:], window))  # and after: the long line was cut
    assert any(ours[int(3.8 * 100):390])  # ...at the shot's end, having run to it


def _still(tmp_path: Path) -> Path:
    from PIL import Image

    path = tmp_path / "still.png"
    Image.new("RGB", (64, 36), (90, 120, 150)).save(path)
    return path


# -- the film, built -----------------------------------------------------------------------------

@pytest.fixture(scope="module")
def built(tmp_path_factory) -> Path:
    project = tmp_path_factory.mktemp("mixed")
    (project / "tiny.film").write_text(SOUND_FILM, encoding="utf-8")
    (project / "filmc.toml").write_text(f"[sound]\nloudness = {LOUDNESS}\n", encoding="utf-8")
    r = filmc("build", "--offline", "tiny.film", cwd=project)
    assert r.returncode == 0, r.stderr
    return project


def test_the_films_sound_is_the_mix_on_target_and_as_long_as_the_film(built):
    out = built / "build" / "tiny"
    film = probe(out / "film.mp4", packets=True)
    assert abs(mix.loudness_of(out / "film.mp4") - LOUDNESS) <= 1.0
    assert film["audio_duration"] == pytest.approx(film["video_duration"], abs=1e-3)
    assert (film["sample_rate"], film["channels"]) == (48000, 2)
    for name in mix.STEMS:
        stem = probe(out / f"film.{name}.wav")
        assert stem["audio_duration"] == pytest.approx(film["video_duration"], abs=1e-3)
    steps = {s["id"]: s for s in report(built)["steps"]}
    assert steps["mix"]["status"] == "ran" and len(steps["mix"]["outputs"]) == 4
    # The film's audio packets are the mix step's own AAC track, copied in.
    [audio] = [p for p in (built / ".filmc").rglob(steps["mix"]["outputs"][0]) if p.is_file()]
    track = probe(audio, packets=True)
    assert track["audio_md5"] == film["audio_md5"]
    assert probe(audio)["audio_duration"] == pytest.approx(film["video_duration"], abs=1e-3)


def test_a_camera_edit_rebuilds_the_film_with_the_same_mix(built, tmp_path):
    project = tmp_path / "copy"
    shutil.copytree(built, project, symlinks=True)
    (project / ".filmc" / "noop.json").unlink(missing_ok=True)  # it holds the other folder's paths
    before = probe(project / "build" / "tiny" / "film.mp4", packets=True)
    path = project / "tiny.film"
    text = path.read_text(encoding="utf-8")
    old = "    camera medium_close_up dutch handheld\n"
    assert text.count(old) == 1
    path.write_text(text.replace(old, "    camera close_up dutch handheld\n"), encoding="utf-8")
    r = filmc("build", "--offline", "tiny.film", cwd=project)
    assert r.returncode == 0, r.stderr
    status = {s["id"]: s["status"] for s in report(project)["steps"]}
    assert status["mix"] == "cached" and status["film"] == "ran"
    after = probe(project / "build" / "tiny" / "film.mp4", packets=True)
    assert after["audio_md5"] == before["audio_md5"]  # the same sound, not mixed again
    assert after["video_md5"] != before["video_md5"]
    for name in mix.STEMS:
        assert (project / "build" / "tiny" / f"film.{name}.wav").is_file()
