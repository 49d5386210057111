"""The local backend's media steps, run with real ffmpeg on real files.

Each test checks what a user would: frame counts, sizes, durations, which way the
picture moves, that shots join without re-encoding, subtitle time codes.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
from PIL import Image, ImageChops, ImageDraw, ImageStat

from filmc.backends.ffmpeg import MediaError, ffmpeg_exe, probe, run, video_duration
from filmc.backends.local import voice
from filmc.backends.local.media import (
    AUDIO_ARGS,
    concat_film,
    conform_shot,
    render_clip,
    render_speech,
    srt_time,
    write_srt,
)
from filmc.lang.check import speaking_time

W, H = 320, 134


@pytest.fixture(scope="module")
def work(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("media")


@pytest.fixture(scope="module")
def keyframe(work: Path) -> Path:
    """A 640x268 test card: a bright disc in the middle, stripes that show motion."""
    im = Image.new("RGB", (640, 268), (20, 24, 32))
    d = ImageDraw.Draw(im)
    for x in range(0, 640, 32):
        d.rectangle([x, 0, x + 15, 40], fill=(200, 60 + x // 4, 40))
    d.ellipse([280, 94, 360, 174], fill=(250, 250, 250))
    d.rectangle([40, 200, 120, 250], fill=(40, 200, 90))
    path = work / "key.png"
    im.save(path)
    return path


def clip(keyframe: Path, work: Path, motion: str, duration: object = 2, fps: object = 24,
         **camera) -> Path:
    out = work / f"clip_{motion}_{str(duration).replace('/', '_')}_{str(fps).replace('/', '_')}.mp4"
    if not out.exists():
        render_clip(keyframe, {"width": W, "height": H, "duration": duration, "fps": fps,
                               "camera": {"motion": motion, **camera}, "seed": 7}, out)
    return out


def frame(video: Path, index: int, work: Path) -> Image.Image:
    """Frame `index` of `video` as a greyscale Pillow image."""
    png = work / f"{video.stem}_{index}.png"
    subprocess.run([ffmpeg_exe(), "-nostdin", "-loglevel", "error", "-i", str(video), "-vf",
                    f"select=eq(n\\,{index})", "-frames:v", "1", "-y", str(png)], check=True)
    return Image.open(png).convert("L")


def centroid_x(im: Image.Image, threshold: int = 240) -> float:
    """Mean x of the near-white pixels (the disc)."""
    xs = [i % im.width for i, v in enumerate(im.tobytes()) if v >= threshold]
    return sum(xs) / len(xs)


def bright_area(im: Image.Image) -> int:
    return sum(1 for v in im.tobytes() if v >= 240)


def framemd5(path: Path, stream: str = "0:v") -> list[str]:
    """The MD5 of each decoded frame."""
    out = subprocess.run([ffmpeg_exe(), "-nostdin", "-loglevel", "error", "-i", str(path),
                          "-map", stream, "-f", "framemd5", "-"], capture_output=True, text=True,
                         check=True).stdout
    return [line.rsplit(",", 1)[1].strip() for line in out.splitlines()
            if line and not line.startswith("#")]


def h264(path: Path) -> bytes:
    """The video as an Annex B elementary stream (copied, not decoded)."""
    return subprocess.run([ffmpeg_exe(), "-nostdin", "-loglevel", "error", "-i", str(path),
                           "-map", "0:v", "-c", "copy", "-f", "h264", "-"], capture_output=True,
                          check=True).stdout


# -- clips -------------------------------------------------------------------------

@pytest.mark.parametrize("duration,fps,frames", [(2, 24, 48), ("5/2", 24, 60),
                                                 (1.3, "24000/1001", 31), ("7/4", 25, 44)])
def test_clip_has_exact_frames_size_and_fps(keyframe, work, duration, fps, frames):
    info = probe(clip(keyframe, work, "push_in", duration, fps))
    assert info["frames"] == frames
    assert (info["width"], info["height"]) == (W, H)
    assert info["fps"] == str(fps) and info["cfr"]
    assert (info["codec"], info["pix_fmt"]) == ("h264", "yuv420p")


def test_push_in_grows_the_centre(keyframe, work):
    video = clip(keyframe, work, "push_in", amount=1)
    first, last = frame(video, 0, work), frame(video, 47, work)
    assert bright_area(last) > bright_area(first) * 1.3
    pull = clip(keyframe, work, "pull_out")
    assert bright_area(frame(pull, 47, work)) < bright_area(frame(pull, 0, work)) / 1.3


@pytest.mark.parametrize("motion,sign", [("pan_left", 1), ("pan_right", -1),
                                         ("truck_left", 1), ("truck_right", -1)])
def test_pans_move_the_picture_the_right_way(keyframe, work, motion, sign):
    """A pan left turns the camera left: what it sees slides to the right."""
    video = clip(keyframe, work, motion)
    shift = centroid_x(frame(video, 47, work)) - centroid_x(frame(video, 0, work))
    assert sign * shift > 10


def test_tilt_moves_the_picture_vertically(keyframe, work):
    video = clip(keyframe, work, "tilt_up")
    a, b = frame(video, 0, work), frame(video, 47, work)
    rows = [sum(1 for x in range(im.width) if im.getpixel((x, y)) >= 240)
            for im in (a, b) for y in range(im.height)]
    top_a = next(y for y in range(H) if rows[y])
    top_b = next(y for y in range(H) if rows[H + y])
    assert top_b > top_a + 5  # tilting up, the disc sinks in the frame


def diff(a: Image.Image, b: Image.Image) -> float:
    return ImageStat.Stat(ImageChops.difference(a, b)).mean[0]


def test_static_holds_still(keyframe, work):
    """The same picture in every frame; only the encoder's first refinements differ."""
    video = clip(keyframe, work, "static")
    assert diff(frame(video, 0, work), frame(video, 47, work)) < 0.5
    assert len(set(framemd5(video)[10:])) == 1
    pan = clip(keyframe, work, "pan_left")
    assert diff(frame(pan, 0, work), frame(pan, 47, work)) > 5


def test_handheld_jitters(keyframe, work):
    video = clip(keyframe, work, "handheld")
    xs = [centroid_x(frame(video, i, work)) for i in (0, 8, 16, 24, 32, 40)]
    steps = [b - a for a, b in zip(xs, xs[1:])]
    assert max(xs) - min(xs) > 1.5
    assert max(abs(s) for s in steps) < 12  # a tremor, not a pan
    assert len(set(framemd5(video))) > 24


def test_unknown_motion_is_a_media_error(keyframe, work):
    with pytest.raises(MediaError, match="unknown camera motion `spin`"):
        clip(keyframe, work, "spin")


def test_clip_is_deterministic(keyframe, work):
    a = clip(keyframe, work, "orbit")
    b = work / "orbit_again.mp4"
    render_clip(keyframe, {"width": W, "height": H, "duration": 2, "fps": 24,
                           "camera": {"motion": "orbit"}, "seed": 7}, b)
    assert a.read_bytes() == b.read_bytes()


# -- speech and shots --------------------------------------------------------------

@pytest.mark.parametrize(("text", "language", "spoken"), [
    ("They're circling the herd.", "en", "en-us"), ("狼群在包围羊群。", "zh", "cmn"),
    ("狼群在包围羊群。", None, "cmn")])
def test_speech_is_said_in_its_language_as_long_as_espeak_said_it(work, text, language, spoken):
    params = {"text": text, "speaker": "CHEN", "language": language, "voice": "calm, low"}
    out = render_speech(params, work / f"speech_{len(text)}_{language}.wav")
    chosen = voice.choose("calm, low", "CHEN", language, text)
    assert chosen.name.startswith(spoken + "+")
    samples, rate = voice.speak(text, chosen)
    info = probe(out)
    assert info["sample_rate"] == 48000
    assert info["audio_duration"] == pytest.approx(len(samples) / 2 / rate, abs=1e-3)
    assert info["audio_duration"] > 0.5 * speaking_time(text)  # words, not a blip
    loud = run(["-i", out, "-af", "volumedetect", "-f", "null", "-"], "measure",
               loglevel="info").stderr.decode()
    assert float(loud.split("max_volume:")[1].split()[0]) > -20  # said, not silent


@pytest.fixture(scope="module")
def shots(keyframe, work) -> list[Path]:
    line = render_speech({"text": "They're circling the herd.", "speaker": "CHEN"},
                         work / "line.wav")
    made = []
    for i, (motion, duration, lines) in enumerate([("push_in", 3, [["7/10", "23/10"]]),
                                                   ("pan_left", "7/4", []),
                                                   ("handheld", 2.5, [[0.2, 1.8]])]):
        out = work / f"shot{i}.mp4"
        conform_shot(clip(keyframe, work, motion), [line] * len(lines),
                     {"width": W, "height": H, "fps": 24, "duration": duration,
                      "lines": lines}, out)
        made.append(out)
    return made


def test_shot_is_frame_exact_with_stereo_48k_audio(shots):
    for path, frames in zip(shots, (72, 42, 60)):
        info = probe(path)
        assert info["frames"] == frames
        assert info["video_duration"] == pytest.approx(frames / 24, abs=1e-9)
        assert abs(info["audio_duration"] - frames / 24) < 1 / 24
        assert (info["sample_rate"], info["channels"]) == (48000, 2)
        assert video_duration(path) * 24 == frames


def test_shot_stretches_a_short_clip(keyframe, work):
    out = work / "long_shot.mp4"
    conform_shot(clip(keyframe, work, "push_in"), [],
                 {"width": 160, "height": 66, "fps": 24, "duration": 3, "lines": []}, out)
    info = probe(out)
    assert (info["frames"], info["width"], info["height"]) == (72, 160, 66)
    first, last, held = (frame(out, i, work) for i in (0, 47, 71))
    assert diff(last, held) < 2.5 < 5 < diff(first, last)  # the clip's last frame is held


def test_all_shots_share_codec_parameters(shots):
    keep = lambda d: {k: v for k, v in d.items() if "duration" not in k and k != "frames"}  # noqa: E731
    infos = [keep(probe(p)) for p in shots]
    assert infos[0] == infos[1] == infos[2]


def test_shot_is_deterministic(shots, keyframe, work):
    again = work / "shot0_again.mp4"
    line = work / "line.wav"
    conform_shot(clip(keyframe, work, "push_in"), [line],
                 {"width": W, "height": H, "fps": 24, "duration": 3,
                  "lines": [["7/10", "23/10"]]}, again)
    assert again.read_bytes() == shots[0].read_bytes()


def test_the_aac_of_filmc_s_own_samples_is_the_same_every_run(work):
    """ffmpeg's AAC encoder writes, for some sounds, one of two streams from run to run
    (its bits depend on where its buffers lie): tests/media/dialogue_mix.flac, the mixed
    dialogue of a shot of the 3,000-shot benchmark film, gave two in ten runs, so a
    shot's step made on a cluster's worker and here differed.  The shot's and the mix's
    AAC are encoded with fixed addresses (ffmpeg.run `fixed_addresses`), which gives
    one stream, whatever the paths and the environment."""
    source = Path(__file__).parent / "media" / "dialogue_mix.flac"
    made = set()
    for i in range(8):
        out = work / f"aac-{i}-{'x' * i}.m4a"  # paths of other lengths, too
        run(["-i", source, *AUDIO_ARGS, "-fflags", "+bitexact", "-flags:a", "+bitexact",
             "-vn", "-y", out], "encode", fixed_addresses=True)
        made.add(tuple(framemd5(out, "0:a")))
    assert len(made) == 1


def test_line_audio_starts_at_its_time(shots, work):
    """Silence before the line's start, sound after it (decoded to 16-bit PCM)."""
    pcm = subprocess.run([ffmpeg_exe(), "-nostdin", "-loglevel", "error", "-i", str(shots[0]),
                          "-map", "0:a", "-ac", "1", "-f", "s16le", "-"], capture_output=True,
                         check=True).stdout
    samples = memoryview(pcm).cast("h")
    loud = lambda a, b: max(abs(v) for v in samples[int(a * 48000):int(b * 48000)])  # noqa: E731
    assert loud(0.05, 0.65) < 50
    assert loud(0.75, 2.2) > 500
    assert loud(2.4, 3.0) < 50


# -- film and subtitles ------------------------------------------------------------

def test_film_joins_shots_by_stream_copy_with_chapters(shots, work):
    srt = write_srt([(0.7, 2.3, "They're circling the herd."), (4.95, 6.55, "狼来了")],
                    work / "film.srt")
    out = concat_film(shots, [("序幕 Prologue", 0), ("Scene 2", 3)], work / "film.mp4",
                      subtitles=srt)
    info = probe(out, packets=True)
    assert info["frames"] == 72 + 42 + 60
    assert abs(info["duration"] - (3 + 1.75 + 2.5)) < 1 / 24
    assert info["chapters"] == [("序幕 Prologue", 0.0, 3.0), ("Scene 2", 3.0, 7.25)]
    meta = subprocess.run([ffmpeg_exe(), "-nostdin", "-loglevel", "error", "-i", str(out),
                           "-f", "ffmetadata", "-"], capture_output=True, check=True).stdout
    assert "title=序幕 Prologue" in meta.decode("utf-8") and meta.count(b"[CHAPTER]") == 2
    # Stream copy: the film's H.264 stream is the shots' streams, byte for byte.
    assert h264(out) == b"".join(h264(p) for p in shots)
    assert info["audio_md5"] == [h for p in shots for h in probe(p, packets=True)["audio_md5"]]
    # And every frame decodes as it did in its shot (the shots' headers agree).
    assert framemd5(out) == [h for p in shots for h in framemd5(p)]


def test_film_can_burn_in_subtitles(shots, work):
    srt = write_srt([(0.0, 2.0, "Burned")], work / "burn.srt")
    out = concat_film(shots[:2], [("One", 0)], work / "burned.mp4", subtitles=srt, burn=True)
    info = probe(out)
    assert info["frames"] == 72 + 42 and info["codec"] == "h264"


def test_srt_time_codes(work):
    out = write_srt([(0.7, 2.3, "Hello."), ("3661/1000", 3725.4996, "两行\n字幕"),
                     (0, "1/3", "x")], work / "t.srt")
    assert out.read_text(encoding="utf-8") == (
        "1\n00:00:00,700 --> 00:00:02,300\nHello.\n\n"
        "2\n00:00:03,661 --> 01:02:05,500\n两行\n字幕\n\n"
        "3\n00:00:00,000 --> 00:00:00,333\nx\n")
    assert srt_time(59.9995) == "00:01:00,000"


def test_failures_carry_ffmpeg_words(work):
    bad = work / "not_an_image.png"
    bad.write_bytes(b"nope")
    with pytest.raises(MediaError) as e:
        render_clip(bad, {"width": W, "height": H, "duration": 1, "fps": 24}, work / "x.mp4")
    assert "could not render the clip `x.mp4` from `not_an_image.png`" in e.value.message
    assert e.value.command_tail.startswith("$ ") and "libx264" in e.value.command_tail


def test_probe_and_header_agree(shots):
    assert [float(video_duration(p)) for p in shots] == [probe(p)["video_duration"]
                                                         for p in shots]
