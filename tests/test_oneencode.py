"""One encode per frame in the animatic: a shot copies its clip's video when it can.

The local backend renders each clip at the film's size, frame rate and length with the
shots' encoder settings, so the shot step only adds the dialogue and copies the video
(`conform_shot`, `copyable`).  Checked with real ffmpeg on real files: a small film
built offline, whose every shot's video packets are its clip's, byte for byte; and
clips that do not fit (another size, rate or length, B-frames, a colour-tagged
encode) conformed as before, frame-exact, with the same header as a copied shot so
the film still joins by stream copy.
"""

from __future__ import annotations

import os
import subprocess
import sys
from fractions import Fraction
from pathlib import Path

import pytest
from PIL import Image, ImageDraw

from filmc.backends.ffmpeg import MediaError, probe, run, video_duration
from filmc.backends.local.media import (
    conform_shot,
    copyable,
    fraction,
    frame_count,
    render_clip,
    render_speech,
)
from filmc.backends.local.mp4head import video_track

FILM = """\
use std.camera
use std.light

film "Once" {
  language "en"
  aspect 2.4:1
  size 192x80
  fps 23.976
  takes 2
}

character ANA "Ana" {
  look "a tall woman in a red coat"
  voice "warm"
}

location PIER "Pier" {
  look "a wooden pier over grey water"
}

scene one "Morning" EXT PIER DAWN {
  shot a1 2s {
    camera wide eye_level static
    light blue_hour
    cast ANA
    action "Ana walks along the pier."
    last_frame next
  }
  shot a2 1.5s {
    camera close_up low_angle dolly_in
    light golden_hour
    cast ANA
    ANA: "There you are."
  }
  shot a3 37f {
    camera medium eye_level handheld
    first_frame previous
    cast ANA
    ANA: "Come on."
  }
  shot a4 2.5s {
    camera extreme_wide birds_eye crane_up
    light overcast
    seed 11
    action "The pier from above."
  }
}
"""
SHOTS = ("a1", "a2", "a3", "a4")
W, H = 192, 80
FPS = Fraction("23.976")  # as the film says it: 2997/125, not 24000/1001


def description(path: Path) -> bytes:
    """The video's MP4 sample description (the `avc1` entry: size, compressor name,
    `avcC`, pixel aspect) with its bit rates (`btrt`) blanked: what the film's join
    needs to be the same in every shot."""
    data = path.read_bytes()
    at = data.index(b"avc1", data.index(b"stsd")) - 4
    entry = data[at:at + int.from_bytes(data[at:at + 4], "big")]
    rates = entry.find(b"btrt")
    return entry if rates < 0 else entry[:rates + 4] + bytes(12) + entry[rates + 16:]


def video_packets(path: Path) -> list[str]:
    """The MD5 of each video packet as stored (no decoding): equal lists are the same
    encoded frames, and so no second encode."""
    return probe(path, packets=True)["video_md5"]


@pytest.fixture(scope="module")
def built(tmp_path_factory) -> Path:
    project = tmp_path_factory.mktemp("once")
    (project / "once.film").write_text(FILM, encoding="utf-8")
    env = {**os.environ, "NO_COLOR": "1"}
    # The shots and what they need: the film step is tests/test_media.py's, and the
    # FCPXML export cannot yet write a frame rate of 23.976 (interchange.py).
    r = subprocess.run([sys.executable, "-m", "filmc", "build", "--offline",
                        "--select", "+kind:shot", "once.film"], cwd=project, env=env,
                       capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr
    return project / "build" / "once"


def test_every_shot_of_the_animatic_copies_its_clip(built: Path) -> None:
    """Dissolve into the next keyframe, a clip from the last frame of the shot before,
    handheld with a seed, lengths in frames and fractions of a second at 23.976 fps:
    in every case the shot's frames are its clip's, encoded once."""
    for shot in SHOTS:
        clip, made = built / "clips" / f"{shot}.take1.mp4", built / "shots" / f"{shot}.mp4"
        packets = video_packets(clip)
        assert packets and video_packets(made) == packets, shot


def test_copied_shots_are_frame_exact_with_their_dialogue(built: Path) -> None:
    for shot, seconds in zip(SHOTS, (2, 1.5, Fraction(37) / FPS, 2.5)):
        frames = frame_count(seconds, FPS)
        info = probe(built / "shots" / f"{shot}.mp4")
        assert (info["frames"], info["width"], info["height"]) == (frames, W, H), shot
        assert video_duration(built / "shots" / f"{shot}.mp4") == Fraction(frames) / FPS
        # The audio runs from 0 to the end of the last frame (see PRIMING in media.py).
        assert info["audio_duration"] == pytest.approx(float(frames / FPS), abs=1 / 48000 * 1024)
        assert (info["sample_rate"], info["channels"]) == (48000, 2)


def test_the_shots_share_one_header_so_the_film_joins_them(built: Path) -> None:
    tracks = [video_track(built / "shots" / f"{shot}.mp4") for shot in SHOTS]
    assert all(t is not None for t in tracks)
    assert len({(t.config, t.encoder, t.timescale, t.durations) for t in tracks if t}) == 1
    assert len({description(built / "shots" / f"{shot}.mp4") for shot in SHOTS}) == 1


# -- clips that are not the shot: encoded anew -------------------------------------

@pytest.fixture(scope="module")
def work(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("oneencode")


@pytest.fixture(scope="module")
def keyframe(work: Path) -> Path:
    im = Image.new("RGB", (400, 170), (30, 36, 48))
    d = ImageDraw.Draw(im)
    d.ellipse([170, 55, 230, 115], fill=(250, 250, 250))
    d.rectangle([20, 120, 90, 160], fill=(40, 200, 90))
    path = work / "key.png"
    im.save(path)
    return path


@pytest.fixture(scope="module")
def line(work: Path) -> Path:
    return render_speech({"text": "Over here.", "speaker": "ANA"}, work / "line.wav")


def local_clip(keyframe: Path, work: Path, w: int, h: int, fps: object, duration: object) -> Path:
    out = work / f"clip_{w}x{h}_{str(fps).replace('/', '_')}_{duration}.mp4"
    if not out.exists():
        render_clip(keyframe, {"width": w, "height": h, "fps": fps, "duration": duration,
                               "camera": {"motion": "push_in"}, "seed": 3}, out)
    return out


def service_clip(work: Path, name: str, *args: object) -> Path:
    """A clip as a service would send it: testsrc2 at 30 fps, 2 s, with its own settings."""
    out = work / f"{name}.mp4"
    run(["-f", "lavfi", "-i", "testsrc2=size=320x180:rate=30", "-frames:v", 60, "-c:v",
         "libx264", *args, "-y", out], f"encode {name}")
    return out


def conform(clip: Path, work: Path, line: Path, name: str, fps: object = 24,
            duration: object = 2) -> dict:
    """The shot at 192x80, with one line from 0.3 s, and what a user would check of it."""
    out = work / f"{name}.mp4"
    conform_shot(clip, [line], {"width": W, "height": H, "fps": fps, "duration": duration,
                                "lines": [[0.3, 1.2]]}, out)
    info = probe(out, packets=True)
    info["track"], info["description"] = video_track(out), description(out)
    return info


def exact(info: dict, fps: object, duration: object) -> None:
    frames = frame_count(duration, fps)
    assert (info["frames"], info["width"], info["height"], info["cfr"]) == (frames, W, H, True)
    assert fraction(info["fps"]) == fraction(fps)
    seconds = float(frames / fraction(fps))
    assert info["video_duration"] == pytest.approx(seconds, abs=1e-9)
    assert info["audio_duration"] == pytest.approx(seconds, abs=1024 / 48000)
    assert info["pix_fmt"] == "yuv420p" and info["profile"] == "High"


@pytest.fixture(scope="module")
def copied(keyframe: Path, work: Path, line: Path) -> dict:
    """The reference: a shot copied from a clip rendered for it."""
    clip = local_clip(keyframe, work, W, H, 24, 2)
    assert copyable(clip, W, H, Fraction(24), 48)
    info = conform(clip, work, line, "copied")
    assert info["video_md5"] == video_packets(clip)
    return info


@pytest.mark.parametrize(("size", "fps", "duration", "why"), [
    ((320, 134), 24, 2, "another size"),
    ((W, H), 25, 2, "another frame rate"),
    ((W, H), 24, 1.5, "too short: the last frame is held"),
    ((W, H), 24, 3, "too long: it is cut"),
])
def test_a_clip_made_for_something_else_is_encoded_anew(keyframe, work, line, copied, size,
                                                         fps, duration, why) -> None:
    clip = local_clip(keyframe, work, *size, fps, duration)
    assert not copyable(clip, W, H, Fraction(24), 48), why
    info = conform(clip, work, line, f"anew_{size[0]}_{fps}_{duration}")
    exact(info, 24, 2)
    assert info["video_md5"] != video_packets(clip)
    # The same header as a copied shot: the film joins them by stream copy.
    assert info["track"].config == copied["track"].config, why
    assert info["track"].encoder == copied["track"].encoder
    assert info["description"] == copied["description"], why


@pytest.mark.parametrize(("name", "args"), [
    ("bframes", ()),  # x264's defaults: B-frames, another GOP
    ("bt709", ("-bf", "0", "-color_primaries", "bt709", "-color_trc", "bt709",
               "-colorspace", "bt709")),
    ("fullrange", ("-pix_fmt", "yuvj420p")),
])
def test_a_service_clip_is_encoded_anew_with_the_films_header(work, line, copied, name,
                                                              args) -> None:
    clip = service_clip(work, name, *args)
    assert not copyable(clip, W, H, Fraction(24), 48)
    info = conform(clip, work, line, f"service_{name}")
    exact(info, 24, 2)
    assert info["track"].config == copied["track"].config
    assert info["description"] == copied["description"]
    assert not info["track"].reordered


def test_copied_and_encoded_shots_carry_the_same_audio(keyframe, work, line, copied) -> None:
    """Copying the video changes nothing about the dialogue's placement."""
    clip = local_clip(keyframe, work, W, H, 24, 3)
    anew = conform(clip, work, line, "audio_anew")
    assert anew["audio_md5"] == copied["audio_md5"]
    exact(copied, 24, 2)


def test_a_clip_whose_header_says_other_settings_is_encoded_anew(keyframe, work) -> None:
    """Same size, rate and length, but another x264 setting (crf) or a keyframe every
    frame: not what the film's other shots are, so not copied.  The same encode with the
    shots' own settings is."""
    for name, args, same in (("crf", ("-crf", "30"), False), ("allkey", ("-g", "1"), False),
                             ("same", (), True)):
        out = work / f"other_{name}.mp4"
        run(["-f", "lavfi", "-i", f"color=gray:s={W}x{H}:r=24", "-frames:v", 48, "-c:v",
             "libx264", "-preset", "veryfast", "-profile:v", "high", "-pix_fmt", "yuv420p",
             "-bf", "0", "-sc_threshold", "0", "-x264-params", "stitchable=1",
             "-threads", "2", "-g", "48", "-keyint_min", "48", "-video_track_timescale", "10008",
             *args, "-y", out], name)
        assert copyable(out, W, H, Fraction(24), 48) is same, name


def test_what_is_not_an_mp4_is_encoded_anew(work, line) -> None:
    clip = work / "clip.mkv"
    run(["-f", "lavfi", "-i", f"testsrc2=size={W}x{H}:rate=24", "-frames:v", 48, "-c:v",
         "libx264", "-y", clip], "encode a Matroska clip")
    assert video_track(clip) is None and not copyable(clip, W, H, Fraction(24), 48)
    exact(conform(clip, work, line, "from_mkv"), 24, 2)


def test_the_header_reader_agrees_with_ffmpeg(keyframe, work) -> None:
    clip = local_clip(keyframe, work, W, H, "24000/1001", 3)  # 72 frames: two GOPs
    track = video_track(clip)
    info = probe(clip)
    assert track is not None
    assert (track.codec, track.width, track.height, track.frames) == (
        b"avc1", info["width"], info["height"], info["frames"])
    assert Fraction(track.timescale, track.durations[0]) == fraction(info["fps"])
    assert track.sync == (1, 49) and not track.reordered and not track.shifted
    assert track.encoder.startswith(b"x264 - core ") and b"stitchable=1" in track.encoder


def test_a_clip_another_ffmpeg_named_is_copied_under_the_films_name(work, line, copied) -> None:
    """A clip encoded with the shots' settings by an ffmpeg run without bitexact flags
    names the encoder's version in its sample description: still copied (no second
    encode), and the shot's description is the film's, so the film joins it by copy."""
    clip = work / "named.mp4"
    run(["-f", "lavfi", "-i", f"color=gray:s={W}x{H}:r=24", "-frames:v", 48, "-c:v",
         "libx264", "-preset", "veryfast", "-profile:v", "high", "-pix_fmt", "yuv420p",
         "-bf", "0", "-sc_threshold", "0", "-x264-params", "stitchable=1",
         "-threads", "2", "-g", "48", "-keyint_min", "48", "-video_track_timescale", "10008",
         "-y", clip], "encode a clip without bitexact flags")
    track = video_track(clip)
    assert track is not None and track.compressor != copied["track"].compressor
    assert copyable(clip, W, H, Fraction(24), 48)
    info = conform(clip, work, line, "named")
    assert info["video_md5"] == video_packets(clip)  # copied
    assert info["description"] == copied["description"]
    exact(info, 24, 2)


def test_a_copyable_clip_the_join_cannot_read_is_encoded_anew(keyframe, work, line,
                                                              copied) -> None:
    """A clip whose video is the shot's but which carries a sound track with an edit
    list (ffmpeg's AAC hides its encoder delay so): the join refuses it, and the shot
    is encoded anew, frame-exact, with the film's header."""
    clip = local_clip(keyframe, work, W, H, 24, 2)
    sounded = work / "sounded.mp4"
    run(["-i", clip, "-f", "lavfi", "-i", "sine=frequency=300:duration=2", "-map", "0:v",
         "-map", "1:a", "-c:v", "copy", "-c:a", "aac", "-y", sounded], "add a sound track")
    assert copyable(sounded, W, H, Fraction(24), 48)
    info = conform(sounded, work, line, "sounded")
    exact(info, 24, 2)
    assert info["description"] == copied["description"]
    assert info["audio_md5"] == copied["audio_md5"]  # the shot's own sound, not the clip's


def test_a_failed_shot_leaves_nothing_behind(keyframe, work, line, monkeypatch) -> None:
    """A shot that fails, at its sound (a line that is not audio) or after its picture
    was encoded anew (the join refusing it), fails with a message and leaves none of
    the files made on the way (the mixed lines, the sound, the picture)."""
    from filmc.backends.local import mp4join

    clip = local_clip(keyframe, work, 320, 134, 24, 2)  # not the shot's: encoded anew
    folder = work / "failing"
    folder.mkdir()
    bad = folder / "bad.wav"
    bad.write_bytes(b"RIFF not really a wave")
    params = {"width": W, "height": H, "fps": 24, "duration": 2, "lines": [[0.3, 1.2]]}
    with pytest.raises(MediaError):
        conform_shot(clip, [bad], params, folder / "shot.mp4")
    assert sorted(p.name for p in folder.iterdir()) == ["bad.wav"]
    bad.unlink()

    def refuse(*_a: object, **_k: object) -> None:
        raise mp4join.Unjoinable("refused")
    monkeypatch.setattr(mp4join, "join", refuse)
    with pytest.raises(MediaError, match="shot.mp4.*refused"):
        conform_shot(clip, [line], params, folder / "shot.mp4")
    assert list(folder.iterdir()) == []
