"""Sound: music, ambience and effects in the language, their steps, and the film's mix.

Measured with real ffmpeg, as a person mixing would check: the film's integrated
loudness (EBU R128) against the target in filmc.toml, the music's level under the
dialogue against around it, the stems' lengths, and the same bytes twice.
"""

from __future__ import annotations

import re
from fractions import Fraction
from pathlib import Path

import pytest
from conftest import copy_example
from test_build import FILM, filmc

from filmc.backends.ffmpeg import probe, run
from filmc.backends.local import media, mix, sound
from filmc.compiler.pipeline import compile_film

# The tiny film of test_build.py with sound: a location's ambience, a scene's music, a
# cue from a shot on, and effects.
SOUND_FILM = (FILM
              .replace('  look "a wooden pier over grey water"\n',
                       '  look "a wooden pier over grey water"\n'
                       '  ambience "waves on the pier, gulls"\n')
              .replace('scene one "Morning" EXT PIER DAWN {\n',
                       'scene one "Morning" EXT PIER DAWN {\n  music "hopeful, warm strings"\n')
              .replace('    action "The kite rises over the water."\n',
                       '    action "The kite rises over the water."\n'
                       '    sfx "a gust whooshes" at 0.5s\n    music "tense, low drums" for 4s\n')
              .replace('    cast ANA, BO\n', '    cast ANA, BO\n    sfx "the kite snaps" at 1.5s\n'))
LOUDNESS = -16


def rms_db(path: Path, start: float, end: float) -> float:
    """The RMS level (dBFS) of `path` between two times."""
    err = run(["-i", path, "-af", f"atrim={start}:{end},astats=measure_overall=RMS_level"
               ":measure_perchannel=none", "-f", "null", "-"], "measure",
              loglevel="info").stderr.decode()
    return float(re.findall(r"RMS level dB: (-?[\d.]+|-inf)", err)[-1].replace("-inf", "-200"))


# -- the mix, on its own -----------------------------------------------------------------------

@pytest.fixture(scope="module")
def parts(tmp_path_factory) -> dict[str, Path]:
    d = tmp_path_factory.mktemp("parts")
    line = media.render_speech({"text": "They're circling the herd. We wait until dark.",
                                "speaker": "CHEN", "voice": "a man, calm"}, d / "line.wav")
    # 12 s of dialogue track: silence, the line at 4 s, silence
    run(["-i", line, "-af", "adelay=4000:all=1,apad=whole_dur=12", "-ar", "48000", "-ac", "2",
         "-y", d / "dialogue.wav"], "place the line")
    return {"dialogue": d / "dialogue.wav", "dir": d,
            "music": sound.render_music("tense, low strings", 12, d / "music.wav"),
            "ambience": sound.render_ambience("wind over grass", 12, d / "wind.wav"),
            "effect": sound.render_effect("ice cracks", d / "crack.wav")}


def cues(parts: dict[str, Path]) -> list[mix.Cue]:
    return [mix.Cue("music", parts["music"], 0, 12), mix.Cue("ambience", parts["ambience"], 0, 12),
            mix.Cue("effect", parts["effect"], 9.5)]


@pytest.mark.parametrize("target", [-23.0, -14.0])
def test_the_mix_meets_its_loudness_target(parts, tmp_path, target):
    made = mix.mix(parts["dialogue"], 12.0, cues(parts), target, tmp_path)
    assert abs(mix.loudness_of(made.mix) - target) <= 1.0
    for name in mix.STEMS:
        info = probe(made.stems[name])
        assert info["audio_duration"] == pytest.approx(12.0, abs=0.01)
        assert (info["sample_rate"], info["channels"]) == (48000, 2)


def test_music_ducks_under_the_dialogue(parts, tmp_path):
    made = mix.mix(parts["dialogue"], 12.0, cues(parts), -23.0, tmp_path)
    speech = media.probe(parts["dir"] / "line.wav")["audio_duration"]
    under = rms_db(made.stems["music"], 4.5, 4 + speech - 0.2)
    around = rms_db(made.stems["music"], 0.5, 3.5)
    bare = rms_db(parts["music"], 4.5, 4 + speech - 0.2) - rms_db(parts["music"], 0.5, 3.5)
    assert under - around < bare - 6  # at least 6 dB lower while someone speaks
    assert rms_db(made.stems["effects"], 9.5, 9.8) > rms_db(made.stems["effects"], 8, 9.4) + 3


def test_placeholders_are_deterministic_and_follow_their_words(tmp_path):
    a = sound.render_music("tense drums", 3, tmp_path / "a.wav")
    b = sound.render_music("tense drums", 3, tmp_path / "b.wav")
    assert a.read_bytes() == b.read_bytes()
    assert probe(a)["audio_duration"] == pytest.approx(3.0, abs=0.01)
    assert sound.mood_of("tense, dark strings").minor and not sound.mood_of("hopeful, warm").minor
    assert sound.mood_of("war drums").pulse > 0 == sound.mood_of("gentle piano").pulse
    crack = sound.render_effect("ice cracks", tmp_path / "crack.wav")
    boom = sound.render_effect("a distant boom", tmp_path / "boom.wav")
    assert probe(crack)["audio_duration"] < probe(boom)["audio_duration"]


# -- the language ----------------------------------------------------------------------------

def errors(tmp_path: Path, old: str, new: str) -> list:
    project = copy_example(tmp_path / "wolfpack")
    path = project / "scenes" / "01_hunt.film"
    text = path.read_text(encoding="utf-8")
    assert old in text
    path.write_text(text.replace(old, new, 1), encoding="utf-8")
    return compile_film(project / "film.film", until="ir").diags.errors


CHEN = '    action "Chen raises a pair of old army binoculars, breath held."\n'


@pytest.mark.parametrize(("line", "code", "help"), [
    ('    sfx "ice cracks" at 3s\n', "F0312", "write a time under 3s"),
    ('    music "tense" for 900s\n', "F0314", "write `for 104s` or less"),
    ('    music "tense" for\n', "F0313", 'write `music "tense" for 20s`'),
    ('    music "music/theme.wav"\n', "F0401", "scenes/music` does not exist"),
])
def test_sound_lines_are_checked(tmp_path, line, code, help):
    [e] = errors(tmp_path, CHEN, CHEN + line)
    assert e.code == code and help in (e.help or "")
    assert e.span is not None and e.span.file.endswith("01_hunt.film")


def test_cues_are_placed_in_film_time_and_become_steps(tmp_path):
    project = copy_example(tmp_path / "wolfpack")
    path = project / "scenes" / "01_hunt.film"
    text = path.read_text(encoding="utf-8")
    # the example's hunt has its own music line, and its location STEPPE an ambience
    assert '  music "tense, low strings, sparse drums"\n' in text
    text = text.replace(CHEN, CHEN + '    sfx "binoculars click" at 1.2s\n'
                        '    music "hopeful"\n', 1)
    path.write_text(text, encoding="utf-8")
    out = compile_film(project / "film.film")
    assert not out.diags.errors
    film = out.film
    starts = {}
    t = 0
    for shot in film.shots:
        starts[shot.id] = t
        t += shot.duration
    hunt_end = sum(s.duration for s in film.scenes[0].shots)
    by_kind = {(s.kind, s.shot): s for s in film.sound if s.scene == "hunt"}
    assert by_kind[("music", None)].start == 0
    assert by_kind[("music", None)].end == starts["chen_watches"]  # until the shot's own cue
    assert by_kind[("music", "chen_watches")].end == hunt_end
    assert by_kind[("effect", "chen_watches")].start == starts["chen_watches"] + Fraction(6, 5)
    assert (by_kind[("ambience", None)].start, by_kind[("ambience", None)].end) == (0, hunt_end)
    g = out.graph
    assert {"music.hunt", "music.hunt.chen_watches", "sfx.hunt.ambience",
            "sfx.hunt.chen_watches.1"} <= set(g.nodes)
    mix_step = g.nodes["mix"]["step"]
    assert mix_step.params["loudness"] == -23.0
    assert {p[0] for p in mix_step.params["sound"]} >= {"music.hunt", "sfx.hunt.chen_watches.1"}


# -- the film, built ---------------------------------------------------------------------------

@pytest.fixture(scope="module")
def built(tmp_path_factory) -> Path:
    project = tmp_path_factory.mktemp("sound")
    (project / "tiny.film").write_text(SOUND_FILM, encoding="utf-8")
    (project / "filmc.toml").write_text(f"[sound]\nloudness = {LOUDNESS}\n", encoding="utf-8")
    r = filmc("build", "--offline", "tiny.film", cwd=project)
    assert r.returncode == 0, r.stderr
    return project


def test_the_built_film_is_mixed_to_its_target_with_stems_beside_it(built):
    out = built / "build" / "tiny"
    film = out / "film.mp4"
    assert abs(mix.loudness_of(film) - LOUDNESS) <= 1.0
    length = probe(film)["video_duration"]
    for name in mix.STEMS:
        stem = out / f"film.{name}.wav"
        assert probe(stem)["audio_duration"] == pytest.approx(length, abs=0.02)
        assert rms_db(stem, 0, length) > -60  # each stem has something in it
    # the film keeps its subtitle track (in its language) and its chapters through the mix
    info = run(["-i", film, "-f", "null", "-t", "0", "-"], "read", loglevel="info").stderr.decode()
    assert "(eng): Subtitle: mov_text" in info
    assert len(probe(film)["chapters"]) == 3


def test_editing_an_effect_changes_exactly_its_step_and_the_film(tmp_path):
    project = copy_example(tmp_path / "wolfpack")
    path = project / "scenes" / "01_hunt.film"
    text = path.read_text(encoding="utf-8")
    path.write_text(text.replace(CHEN, CHEN + '    sfx "binoculars click" at 1.2s\n', 1),
                    encoding="utf-8")

    def keys() -> dict[str, str]:
        g = compile_film(project / "film.film").graph
        return {n: d["step"].key for n, d in g.nodes(data=True)}

    before = keys()
    path.write_text(path.read_text(encoding="utf-8").replace("binoculars click", "lens cap pops"),
                    encoding="utf-8")
    after = keys()
    changed = {n for n in before if before[n] != after.get(n)}
    # The OTIO export names the mix's stems: it is made after the mix, and again with it.
    assert changed == {"sfx.hunt.chen_watches.1", "mix", "film", "export.otio"}
    (project / "filmc.toml").write_text((project / "filmc.toml").read_text(encoding="utf-8")
                                        + "\n[sound]\nloudness = -14\n", encoding="utf-8")
    louder = keys()
    assert {n for n in after if after[n] != louder.get(n)} == {"mix", "film", "export.otio"}
