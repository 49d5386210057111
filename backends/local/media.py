"""The `local` backend's media steps: clip, speech, shot and film, made with ffmpeg.

Each step is a pure function from its input files and parameters to one output
file; same inputs give the same bytes (ffmpeg runs with bitexact flags, a fixed
thread count and no metadata, so nothing varies with the clock or the machine's
core count).

- `render_clip(keyframe, params, out)`: the keyframe animated for exactly
  round(duration x fps) frames, with the camera move drawn as a moving window onto
  the still (zoom → zoompan, pan/truck → sideways, tilt/crane → up/down, handheld →
  jitter, orbit → a drift that arcs in). H.264 in MP4, no audio.
- `last_frame(clip, out)`: a clip's last frame as a PNG (`first_frame previous`).
- `render_speech(params, out)`: a WAV (48 kHz, mono, 16-bit) of the line said by
  eSpeak NG offline (voice.py), in a voice that follows the character's `voice`
  description and in the line's language; as long as eSpeak took to say it.
- `conform_shot(clip, speech, params, out)`: the clip at the film's size, fps and
  exact frame count, with each line's audio placed at its start time (AAC, 48 kHz,
  stereo). Every shot of a film is encoded with the same settings (`VIDEO_ARGS`) and
  has the same header, so the film step can join them without re-encoding.  A clip
  that already is all that (every clip `render_clip` makes for a shot) is copied, not
  encoded again (`copyable`): each frame of the animatic is encoded once.  The shot
  is written by mp4join, its video then its sound, so the film copies each shot's
  video in one piece when the film's own mix replaces the shots' sound.
- `concat_film(shots, chapters, out, subtitles, burn, language, audio)`: the shots joined
  without re-encoding, one chapter per scene, the subtitles as a soft track or burned
  in, the audio the shots' or the film's mix (`audio`).  The shots' payloads are
  copied behind one header built from their sample tables (mp4join.py); shots that
  cannot be joined so, and burned-in subtitles, go through ffmpeg's concat demuxer.
  The subtitle track carries the film's language (`language`, ISO 639-2).
- `write_srt(lines, out)`: SubRip subtitles, UTF-8, from cues timed to be read
  (subtitles.py).
- `probe(path)`: what a user would check about a media file (see `ffmpeg.probe`).
"""

from __future__ import annotations

import functools
import hashlib
import math
import re
import tempfile
import wave
from collections.abc import Sequence
from fractions import Fraction
from pathlib import Path

import ffmpeg  # ffmpeg-python: builds the filter graphs

from filmc.backends.ffmpeg import MediaError, ffmpeg_exe, probe, run, video_duration

from . import mp4head, mp4join, voice

__all__ = ["MediaError", "render_clip", "render_speech", "conform_shot", "concat_film",
           "write_srt", "probe", "VIDEO_ARGS", "AUDIO_ARGS", "SAMPLE_RATE"]

SAMPLE_RATE = 48000
THREADS = 2  # fixed, so that x264's output does not depend on the machine's core count

# The one H.264 setting every clip and shot is encoded with.  `stitchable` keeps
# x264's headers independent of the picture, so shots join by stream copy; no
# B-frames and no scene-cut keyframes keep every shot's GOP the same shape:
# an IDR frame every 2 s from the shot's first frame.
VIDEO_ARGS = ("-c:v", "libx264", "-preset", "veryfast", "-crf", "23", "-profile:v", "high",
              "-pix_fmt", "yuv420p", "-bf", "0", "-sc_threshold", "0",
              "-x264-params", "stitchable=1", "-threads", str(THREADS))
PRIMING = 1024  # samples of encoder delay at the start of an AAC stream (ffmpeg's encoder)
AUDIO_ARGS = ("-c:a", "aac", "-b:a", "128k", "-ar", str(SAMPLE_RATE), "-ac", "2")
_BITEXACT = ("-fflags", "+bitexact", "-flags:v", "+bitexact", "-flags:a", "+bitexact",
             "-map_metadata", "-1", "-map_chapters", "-1", "-filter_threads", "1")


def fraction(value: object) -> Fraction:
    """A duration or frame rate given as a number, a Fraction or a string `"n/d"`."""
    try:
        if isinstance(value, float):
            return Fraction(repr(value))
        return Fraction(value)  # type: ignore[call-overload]  # int, Fraction, "24000/1001"
    except (TypeError, ValueError, ZeroDivisionError) as e:
        raise MediaError(f"`{value!r}` is not a number or a fraction like `24000/1001`") from e


def frame_count(duration: object, fps: object) -> int:
    """round(duration x fps), halves rounded up: the frames a shot of `duration` has."""
    return math.floor(fraction(duration) * fraction(fps) + Fraction(1, 2))


def gop_size(fps: Fraction) -> int:
    """Frames from one keyframe to the next: 2 s."""
    return max(1, round(fps * 2))


def timescale(fps: Fraction) -> int:
    """The MP4 video track's ticks a second: a multiple of the frame rate's numerator,
    so that every frame lasts a whole number of ticks."""
    return fps.numerator * math.ceil(10000 / fps.numerator)


def gop_args(fps: Fraction) -> list[str]:
    """Keyframe interval and MP4 timescale, both functions of the frame rate alone."""
    gop = gop_size(fps)
    return ["-g", str(gop), "-keyint_min", str(gop), "-video_track_timescale",
            str(timescale(fps))]


def _fps_str(fps: Fraction) -> str:
    return f"{fps.numerator}/{fps.denominator}"


def _size(params: dict) -> tuple[int, int]:
    w, h = int(params["width"]), int(params["height"])
    if w <= 0 or h <= 0 or w % 2 or h % 2:
        raise MediaError(f"frame size {w}x{h} must be positive and even (H.264, yuv420p)")
    return w, h


Filter = tuple[str, tuple, dict]  # (name, positional args, named args) of one filter


def _fit(w: int, h: int) -> list[Filter]:
    """Scale to cover w x h and crop the middle: any picture fills the frame, undistorted.

    Full-range pictures (a JPEG, another service's clip) are brought to limited range
    here, so that no frame reaches x264 marked full range (see `_PLAIN`)."""
    return [("scale", (w, h), {"force_original_aspect_ratio": "increase", "flags": "bicubic",
                               "out_range": "tv"}),
            ("crop", (w, h), {}), ("setsar", (1,), {})]


# The last filters before x264, for every clip and shot.  x264 writes a frame's sample
# aspect ratio, range and colour description into the stream's header (SPS, so the
# MP4's `avcC`), and the film is joined by stream copy only where every shot has the
# same header.  So every picture leaves as square pixels, limited range and no colour
# description, whatever it came from: a moving window (whose scale changes the aspect
# ratio), an sRGB-tagged PNG, a full-range JPEG, a BT.709 clip from a service.
_PLAIN: list[Filter] = [("setsar", (1,), {}),
                        ("setparams", (), {"range": "tv", "color_primaries": "unknown",
                                           "color_trc": "unknown", "colorspace": "unknown"})]


def _chain(stream, filters: Sequence[Filter]):
    """Apply filters to an ffmpeg-python stream, in order."""
    for name, args, kwargs in filters:
        stream = stream.filter(name, *args, **kwargs)
    return stream


def graph_args(*streams) -> list[str]:
    """`-i ... -filter_complex GRAPH -map ...` for the given ffmpeg-python streams.

    ffmpeg-python builds the filter graph (and escapes its expressions); the encoder
    settings, the bit-exact flags and the run itself stay ours."""
    args = ffmpeg.output(*streams, "OUT").get_args()
    if args[-1] != "OUT":
        raise MediaError("ffmpeg-python laid out the command in an unexpected way", " ".join(args))
    return args[:-1]


# -- clip ------------------------------------------------------------------------

ZOOM = 0.25       # push/pull/zoom, amount 1: the frame ends 25 % closer (or starts)
MOVE_ZOOM = 0.2   # pan/tilt/truck/crane/orbit: the margin the window travels across
SHAKE_ZOOM = 0.06  # handheld: a small margin to jitter inside
MOTIONS = ("static", "pan_left", "pan_right", "tilt_up", "tilt_down", "push_in", "pull_out",
           "truck_left", "truck_right", "crane_up", "crane_down", "zoom_in", "zoom_out",
           "handheld", "orbit", "tracking")


_YUV420: Filter = ("format", ("yuv420p",), {})
_YUV444: Filter = ("format", ("yuv444p",), {})


def _phases(seed: object, n: int) -> list[float]:
    digest = hashlib.sha256(f"filmc-local-{seed}".encode()).digest()
    return [digest[i] / 255 * 2 * math.pi for i in range(n)]


def camera_window(motion: str, amount: float, w: int, h: int, frames: int, fps: Fraction,
                  seed: object) -> dict[str, str] | None:
    """ffmpeg expressions (in `n`, the frame number) for the camera's window.

    The camera is a window onto the keyframe: `z` is its magnification (1 = the whole
    frame) and `dx`/`dy` move its centre, in pixels of the w x h frame.  A window moving left shows the picture moving right, as a pan left
    does.  None means the frame never changes (static, or amount 0).
    """
    if motion not in MOTIONS:
        raise MediaError(f"unknown camera motion `{motion}`; expected one of {', '.join(MOTIONS)}")
    a = max(0.0, min(float(amount), 3.0))
    if motion == "static" or a == 0:
        return None
    p = f"(n/{max(frames - 1, 1)})"  # 0 at the first frame, 1 at the last
    t = f"(n/{float(fps):.9g})"
    z, dx, dy = "1", "0", "0"

    def margin(zoom: float) -> tuple[float, float]:
        return (w - w / zoom) / 2 * 0.98, (h - h / zoom) / 2 * 0.98

    if motion in ("push_in", "zoom_in"):
        z = f"(1+{ZOOM * a:.6g}*{p})"
    elif motion in ("pull_out", "zoom_out"):
        z = f"(1+{ZOOM * a:.6g}*(1-{p}))"
    elif motion in ("pan_left", "pan_right", "truck_left", "truck_right",
                    "tilt_up", "tilt_down", "crane_up", "crane_down"):
        zoom = 1 + MOVE_ZOOM * a
        mx, my = margin(zoom)
        z = f"{zoom:.6g}"
        sweep = f"(1-2*{p})"  # +1 → -1: the window travels from one side to the other
        if motion in ("pan_left", "truck_left"):
            dx = f"({mx:.6g}*{sweep})"
        elif motion in ("pan_right", "truck_right"):
            dx = f"(-{mx:.6g}*{sweep})"
        elif motion in ("tilt_up", "crane_up"):
            dy = f"({my:.6g}*{sweep})"
        else:
            dy = f"(-{my:.6g}*{sweep})"
    elif motion == "handheld":
        zoom = 1 + SHAKE_ZOOM * min(a, 2.0)
        mx, my = margin(zoom)
        f1, f2, f3, f4 = _phases(seed, 4)
        z = f"{zoom:.6g}"
        dx = f"({mx * 0.55:.6g}*sin(2*PI*0.83*{t}+{f1:.4f})+{mx * 0.35:.6g}*sin(2*PI*2.1*{t}+{f2:.4f}))"
        dy = f"({my * 0.55:.6g}*sin(2*PI*0.61*{t}+{f3:.4f})+{my * 0.35:.6g}*sin(2*PI*1.7*{t}+{f4:.4f}))"
    elif motion == "orbit":
        zoom = 1 + MOVE_ZOOM * min(a, 2.0)
        mx, _ = margin(zoom)
        z = f"({zoom:.6g}+{0.05 * min(a, 2.0):.6g}*{p})"  # arcs in a little as it drifts
        dx = f"(-{mx * 0.8:.6g}*(1-2*{p}))"
    else:  # tracking: a steady sideways drift with a gentle bob of the walking camera
        zoom = 1 + 0.12 * min(a, 2.0)
        mx, my = margin(zoom)
        (f1,) = _phases(seed, 1)
        z = f"{zoom:.6g}"
        dx = f"(-{mx * 0.9:.6g}*(1-2*{p}))"
        dy = f"({my * 0.25:.6g}*sin(2*PI*1.6*{t}+{f1:.4f}))"
    return {"z": z, "dx": dx, "dy": dy}


_FRAME = re.compile(r"\bn\b")  # the frame number in `camera_window`'s expressions


def camera_filter(window: dict[str, str], w: int, h: int,
                  fps: Fraction) -> tuple[list[Filter], list[Filter]]:
    """(filters before the loop, filters per frame) drawing `window` on a w x h picture.

    A fixed magnification (pan, tilt, handheld ...) is scaled once, before the still is
    repeated, and cropped to w x h around the window's centre each frame: a pan costs
    nothing per frame but the crop, and positions are whole pixels of the frame.

    A changing one (zoom, orbit) is drawn by `zoompan`, whose output is w x h in every
    frame: each frame it takes the window's part of the still (iw/z x ih/z, its corner
    at (iw - iw/z)/2 + dx) and scales it to w x h.  Not `scale` with `eval=frame` and a
    `crop`: crop keeps the size its input had in the first frame (ffmpeg 9), so that
    window was off centre, and in a pull-out, whose frames shrink below that size, it
    cut outside the picture: other bytes every run.  The still enters zoompan as 4:4:4,
    where it places the window at whole pixels (at even ones in 4:2:0), and leaves as
    4:2:0.  At 1920x804 that is about 7 ms a frame (the scale and crop took 3 ms), some
    1.1x the whole clip's time with x264's.
    """
    z, dx, dy = window["z"], window["dx"], window["dy"]
    if _FRAME.search(z):  # a changing magnification
        z, dx, dy = (_FRAME.sub("on", e) for e in (z, dx, dy))  # zoompan's name for it
        zoompan: Filter = ("zoompan", (), {"z": z, "x": f"(iw-iw/zoom)/2+{dx}*iw/{w}",
                                           "y": f"(ih-ih/zoom)/2+{dy}*ih/{h}", "d": 1,
                                           "s": f"{w}x{h}", "fps": _fps_str(fps)})
        return [_YUV444], [zoompan, _YUV420]
    x = f"clip((in_w-out_w)/2+{dx}*in_w/{w},0,in_w-out_w)"
    y = f"clip((in_h-out_h)/2+{dy}*in_h/{h},0,in_h-out_h)"
    zoom = float(z)
    sw, sh = 2 * math.ceil(w * zoom / 2), 2 * math.ceil(h * zoom / 2)
    once: list[Filter] = [("scale", (sw, sh), {"flags": "bicubic"}), _YUV420]
    return once, [("crop", (w, h), {"x": x, "y": y})]


def _repeat(frames: int, fps: Fraction) -> list[Filter]:
    """A still read at `fps` (`-framerate`) as `frames` frames, in the time base 1/fps:
    the rate and time base `zoompan` gives its frames, and `xfade` takes two inputs only
    when both have the same."""
    return [("loop", (), {"loop": frames - 1, "size": 1, "start": 0}),
            ("settb", (f"1/({_fps_str(fps)})",), {}), ("setpts", ("N",), {})]


def render_clip(keyframe: Path, params: dict, out: Path, last: Path | None = None) -> Path:
    """Animate the still `keyframe` into `out` (MP4, H.264, no audio); with `last` (a
    still of where the motion ends), the final third dissolves into it.

    params: width, height, duration (seconds), fps (number or "n/d"),
    camera {motion, amount}, seed.  The clip has exactly round(duration x fps) frames.
    """
    w, h = _size(params)
    fps = fraction(params["fps"])
    frames = frame_count(params["duration"], fps)
    if frames < 1:
        raise MediaError(f"a clip of {params['duration']} s at {params['fps']} fps has no frames")
    camera = params.get("camera") or {}
    window = camera_window(str(camera.get("motion", "static")),
                           float(camera.get("amount", 1) or 0), w, h, frames, fps,
                           params.get("seed", 0))
    # Decode and fit the still once, repeat it in memory, then move the window.
    once, each = camera_filter(window, w, h, fps) if window else ([_YUV420], [])
    chain = [*_fit(w, h), *once, *_repeat(frames, fps), *each]
    video = _chain(ffmpeg.input(str(keyframe), framerate=_fps_str(fps)).video, chain)
    if last is not None and frames > 2:
        # A still of the last frame, as long as the clip, dissolving in over its last third.
        end = _chain(ffmpeg.input(str(last), framerate=_fps_str(fps)).video,
                     [*_fit(w, h), _YUV420, *_repeat(frames, fps)])
        seconds = float(frames / fps)
        fade = seconds / 3
        video = ffmpeg.filter([video, end], "xfade", transition="fade", duration=f"{fade:.6f}",
                              offset=f"{seconds - fade:.6f}")
    video = _chain(video, _PLAIN)
    run([*graph_args(video), "-frames:v", frames, "-r", _fps_str(fps),
         *VIDEO_ARGS, *gop_args(fps), *_BITEXACT, "-an", "-y", out],
        f"render the clip `{Path(out).name}` from `{Path(keyframe).name}`")
    return Path(out)


def last_frame(clip: Path, out: Path) -> Path:
    """The last frame of `clip`, as a PNG: where the next shot's clip starts."""
    run(["-sseof", "-1", "-i", clip, "-an", "-update", "1", "-fps_mode", "passthrough", *_BITEXACT,
         "-f", "image2", "-c:v", "png", "-y", out],
        f"take the last frame of `{Path(clip).name}`")
    if not Path(out).is_file():
        raise MediaError(f"`{Path(clip).name}` has no frame to take")
    return Path(out)


# -- speech ----------------------------------------------------------------------

def render_speech(params: dict, out: Path) -> Path:
    """A WAV (48 kHz, mono, 16-bit) of params["text"] said by eSpeak NG (voice.py).

    params: text, speaker, language, voice (the speaker's `voice` and the line's
    direction).  The voice follows the description (`voice.choose`), the language is the
    line's; the WAV is as long as eSpeak took to say it (at least 0.25 s), and the same
    params give the same bytes."""
    text = str(params.get("text", ""))
    try:
        chosen = voice.choose(str(params.get("voice") or ""), str(params.get("speaker") or ""),
                              params.get("language"), text)
        samples, rate = voice.speak(text, chosen)
    except voice.VoiceError as e:
        raise MediaError(str(e)) from e
    samples += bytes(max(0, round(0.25 * rate) - len(samples) // 2) * 2)
    out = Path(out)
    with tempfile.TemporaryDirectory(prefix="filmc-speech-") as tmp:
        raw = Path(tmp) / "espeak.wav"
        with wave.open(str(raw), "wb") as f:
            f.setnchannels(1)
            f.setsampwidth(2)
            f.setframerate(rate)
            f.writeframes(samples)
        run(["-i", raw, "-af", f"aresample={SAMPLE_RATE}", "-ac", "1", "-c:a", "pcm_s16le",
             *_BITEXACT, "-y", out], f"resample the speech `{out.name}`")
    return out


# -- shot ------------------------------------------------------------------------

@functools.cache
def _encoded(w: int, h: int, fps: Fraction, exe: str) -> mp4head.VideoTrack:
    """What one frame encoded by `exe` at w x h and fps with the shots' settings looks
    like: the header every shot of such a film has.  Once per worker process and size."""
    with tempfile.TemporaryDirectory(prefix="filmc-header-") as tmp:
        out = Path(tmp) / "frame.mp4"
        black = _chain(ffmpeg.input(f"color=black:s={w}x{h}:r={_fps_str(fps)}", f="lavfi").video,
                       [("format", ("yuv420p",), {}), *_PLAIN])
        run([*graph_args(black), "-frames:v", 1, *VIDEO_ARGS, *gop_args(fps), *_BITEXACT,
             "-an", "-y", out], f"encode one {w}x{h} frame")
        track = mp4head.video_track(out)
    if track is None:
        raise MediaError(f"ffmpeg wrote a {w}x{h} frame that cannot be read back")
    return track


def copyable(clip: Path, w: int, h: int, fps: Fraction, frames: int) -> bool:
    """Whether the clip's video already is what `conform_shot` would encode, so that the
    shot copies it: H.264 of w x h with exactly `frames` frames at `fps`, none reordered
    and none cut by an edit list, a keyframe every `gop_size` frames from the first,
    and the same header (`avcC`: profile, level, pixel format, square pixels, no colour
    description) and x264 settings and version as a shot encoded here.  The film joins
    its shots by copying their video, which needs every shot's header to be the same
    (the encoder's name in the sample description, which may differ, the shot sets).

    This holds for every clip the local backend renders (`render_clip` encodes at the
    film's size, fps and length with these settings); a service's clip, a user's video
    or a clip made for another size, rate or length is encoded anew."""
    track = mp4head.video_track(clip)
    if track is None or track.codec != b"avc1":
        return False
    want = _encoded(w, h, fps, ffmpeg_exe())
    keys = tuple(range(1, frames + 1, gop_size(fps)))
    return ((track.width, track.height, track.frames) == (w, h, frames)
            and track.timescale == want.timescale and track.durations == want.durations
            and not track.reordered and not track.shifted
            and (track.sync if track.sync is not None else tuple(range(1, frames + 1))) == keys
            and track.config == want.config and bool(track.encoder)
            and track.encoder == want.encoder)


def _seconds(wav: Path) -> Fraction:
    """An audio file's length: a WAV's from its header."""
    try:
        with wave.open(str(wav)) as f:
            return Fraction(f.getnframes(), f.getframerate())
    except (OSError, wave.Error, EOFError):  # another backend's MP3 or FLAC: ask ffmpeg
        return Fraction(str(probe(wav).get("audio_duration") or 0))


def conform_shot(clip: Path, speech: Sequence[Path], params: dict, out: Path) -> Path:
    """The clip at the film's size, fps and exact length, with its dialogue (MP4).

    params: width, height, fps, duration, lines [[start, end], ...] in seconds, one per
    file in `speech`.  A clip that is too short holds its last frame; one too long is
    cut.  Each line starts at its start time and may run on past its end into the pause
    before the next line (or the shot's end); one too long even for that is said faster
    (up to twice as fast) and cut there.  Silence elsewhere.

    A clip that already is the shot's video (`copyable`: every clip the local backend
    renders for it) is copied, and only the audio is encoded; any other is decoded and
    encoded with the shots' settings.  Either way the shot has the same header.
    """
    w, h = _size(params)
    fps = fraction(params["fps"])
    frames = frame_count(params["duration"], fps)
    if frames < 1:
        raise MediaError(f"a shot of {params['duration']} s at {params['fps']} fps has no frames")
    lines = [(fraction(s), fraction(e)) for s, e in params.get("lines", [])]
    if len(lines) != len(speech):
        raise MediaError(f"the shot has {len(lines)} line times but {len(speech)} audio files")
    total = round(Fraction(frames) / fps * SAMPLE_RATE)  # audio exactly as long as the video
    # AAC starts with PRIMING samples of encoder delay.  They stay in the stream as a
    # moment of silence at the start (no edit list to hide them), and the shot's own
    # audio follows them and ends that much sooner, so the track runs from exactly 0
    # to the end of the last frame: shots then join end to end with no overlap.
    body = total - PRIMING
    name = Path(out).name
    wav = Path(out).with_name(Path(out).stem + ".mix.wav")
    aac = Path(out).with_name(Path(out).stem + ".audio.m4a")
    picture = Path(out).with_name(Path(out).stem + ".video.mp4")
    try:
        _shot_sound(speech, lines, frames, fps, body, wav, aac, name)
        # The shot is written by mp4join: its video, then its sound, each in one span of
        # its payload, which the film's join copies in one piece (not a chunk a frame, as
        # ffmpeg's interleaving muxer would leave them); its header built from their
        # tables, as the film's is.
        if copyable(clip, w, h, fps, frames):
            try:  # the clip's video copied, its sample description naming the encoder
                # as an encoded shot's does (an encode without bitexact flags names its
                # version), which the film's join compares
                named = _encoded(w, h, fps, ffmpeg_exe()).compressor
                return mp4join.join([clip], Path(out), audio=aac, compressor=named)
            except mp4join.Unjoinable:
                pass  # a track or layout the join does not take: encode its picture anew
        # Any other clip is encoded anew, alone, into an MP4 the join then reads.
        video = _chain(ffmpeg.input(str(clip)).video, [
            ("setpts", ("PTS-STARTPTS",), {}), *_fit(w, h), ("fps", (_fps_str(fps),), {}),
            ("format", ("yuv420p",), {}), ("tpad", (), {"stop_mode": "clone", "stop": frames}),
            ("trim", (), {"end_frame": frames}), ("setpts", (f"N/({_fps_str(fps)})/TB",), {}),
            *_PLAIN])
        run([*graph_args(video), "-frames:v", frames, "-r", _fps_str(fps), *VIDEO_ARGS,
             *gop_args(fps), "-an", *_BITEXACT, "-y", picture], f"encode the picture of `{name}`")
        try:
            return mp4join.join([picture], Path(out), audio=aac)
        except mp4join.Unjoinable as e:
            raise MediaError(f"cannot write the shot `{name}` from its encoded picture and "
                             f"sound: {e}") from None
    finally:
        for made in (wav, aac, picture):
            made.unlink(missing_ok=True)


def _shot_sound(speech: Sequence[Path], lines: Sequence[tuple[Fraction, Fraction]],
                frames: int, fps: Fraction, body: int, wav: Path, aac: Path,
                name: str) -> None:
    """A shot's sound as `aac` (see `conform_shot`): silence, each line placed, in an MP4
    of AAC without an edit list; `wav` the mixed lines on the way, where there are any."""
    late: Filter = ("asetpts", (f"PTS-STARTPTS+{PRIMING}/({SAMPLE_RATE}*TB)",), {})
    silence = ffmpeg.input(f"anullsrc=r={SAMPLE_RATE}:cl=stereo", f="lavfi").audio
    mixed = [silence.filter("atrim", end_sample=body)]
    for i, (path, (start, end)) in enumerate(zip(speech, lines)):
        at = max(round(start * SAMPLE_RATE) - PRIMING, 0)
        # A line said longer than its time runs on into the pause after it, up to the next
        # line or the shot's end; one that overflows even that is said faster to fit.
        room = lines[i + 1][0] if i + 1 < len(lines) else Fraction(frames) / fps
        length = min(round(max(end, min(start + _seconds(path), room)) * SAMPLE_RATE) - PRIMING,
                     body) - at
        if length <= 0:
            continue
        fade = min(720, length)
        tempo = _seconds(path) / max(room - start, Fraction(1, 100))
        faster: list[Filter] = [("atempo", (f"{min(float(tempo), 2.0):.4f}",), {})] \
            if tempo > 1 else []
        mixed.append(_chain(ffmpeg.input(str(path)).audio, [
            *faster, ("aresample", (SAMPLE_RATE,), {}),
            ("aformat", (), {"sample_fmts": "fltp", "channel_layouts": "stereo"}),
            ("asetpts", ("PTS-STARTPTS",), {}), ("atrim", (), {"end_sample": length}),
            ("afade", (), {"t": "out", "start_sample": length - fade, "nb_samples": fade}),
            ("adelay", (), {"delays": f"{at}S", "all": 1})]))
    if len(mixed) > 1:
        # The lines are mixed to 16-bit PCM first, and the AAC encoded from that one input.
        # Mixed and encoded in one run, the AAC's bits depended on how ffmpeg's threaded
        # inputs happened to reach the mix (float sums that differ in the last bit, which
        # the encoder quantised into another code): one step key, two outputs, depending
        # on the machine's load.  PCM leaves no such difference to the encoder.
        audio = ffmpeg.filter(mixed, "amix", inputs=len(mixed), duration="first", normalize=0)
        audio = _chain(audio, [("atrim", (), {"end_sample": body})])
        run([*graph_args(audio), "-c:a", "pcm_s16le", "-ar", str(SAMPLE_RATE), "-ac", "2",
             "-fflags", "+bitexact", "-flags:a", "+bitexact", "-map_metadata", "-1",
             "-filter_threads", "1", "-y", wav], f"mix the dialogue of `{name}`")
        audio = _chain(ffmpeg.input(str(wav)).audio, [late])
    else:
        audio = _chain(mixed[0], [late])
    # The AAC in a run of its own, from filmc's own samples, with fixed addresses (the
    # encoder's bits vary with them: ffmpeg.run), into an MP4 without an edit list (its
    # packets from 0, the encoder delay in the silence `late` made room for, the last
    # one as long as it is), which the shot then copies beside its video.
    run([*graph_args(audio), *AUDIO_ARGS, "-fflags", "+bitexact", "-flags:a", "+bitexact",
         "-use_editlist", "0", "-y", aac], f"encode the sound of `{name}`",
        fixed_addresses=True)


# -- film ------------------------------------------------------------------------

def _concat_line(path: Path) -> str:
    return "file '" + str(Path(path).resolve()).replace("'", "'\\''") + "'"


def _meta_escape(text: str) -> str:
    return "".join("\\" + c if c in "=;#\\\n" else c for c in text)


def _chapters_file(chapters: Sequence[tuple[str, float]], total: Fraction) -> str:
    body = [";FFMETADATA1"]
    starts = [(str(title), fraction(start)) for title, start in chapters]
    for i, (title, start) in enumerate(starts):
        end = starts[i + 1][1] if i + 1 < len(starts) else total
        body += ["[CHAPTER]", "TIMEBASE=1/1000", f"START={round(start * 1000)}",
                 f"END={round(end * 1000)}", f"title={_meta_escape(title)}"]
    return "\n".join(body) + "\n"


def _filter_path(path: Path) -> str:
    """A file name inside a filtergraph option: escape for the option, then the graph."""
    s = str(Path(path).resolve()).replace("\\", "\\\\").replace(":", "\\:").replace("'", "\\'")
    return s.replace("\\", "\\\\").replace("'", "\\'").replace("[", "\\[").replace(
        "]", "\\]").replace(",", "\\,").replace(";", "\\;")


def concat_film(shots: Sequence[Path], chapters: Sequence[tuple[str, float]], out: Path,
                subtitles: Path | None = None, burn: bool = False,
                language: str | None = None, audio: Path | None = None) -> Path:
    """Join the shots into `out` (MP4) without re-encoding them.

    Shots encoded alike (every shot this backend makes) are joined by mp4join: their
    payloads copied behind one header, `moov` first, with the headers read remembered
    in the user's cache; others, and burned-in subtitles, by ffmpeg's concat demuxer.
    chapters: (title, start seconds) per scene, in order.  subtitles: an SRT file,
    added as a soft subtitle track, or drawn into the picture with `burn=True` (which
    re-encodes the video with the shots' own settings; audio is still copied).
    language: the soft track's ISO 639-2 code ("zho", "eng"), which players show.
    audio: the film's sound (the `mix` step's track, as long as the film), copied in
    place of the shots' own audio.
    """
    if not shots:
        raise MediaError("the film has no shots to join")
    out = Path(out)
    if subtitles is None or not burn:
        # The shots' payloads copied behind one header built from their sample tables
        # (mp4join.py): the I/O of `cat`.  Shots that differ (another backend's, another
        # size) raise Unjoinable, and ffmpeg's concat demuxer joins them instead.
        try:
            return mp4join.join(shots, out, chapters=chapters, subtitles=subtitles,
                                language=language, audio=audio,
                                headers=mp4join.Headers.of_user())
        except mp4join.Unjoinable:
            pass
    total = sum((video_duration(s) for s in shots), Fraction(0))
    with tempfile.TemporaryDirectory(prefix=".filmc-concat-", dir=out.parent) as tmp:
        listing = Path(tmp) / "shots.ffconcat"
        listing.write_text("ffconcat version 1.0\n" + "\n".join(map(_concat_line, shots))
                           + "\n", encoding="utf-8")
        meta = Path(tmp) / "chapters.txt"
        meta.write_text(_chapters_file(chapters, total), encoding="utf-8")
        args: list[object] = ["-f", "concat", "-safe", "0", "-i", listing, "-i", meta]
        maps = ["-map", "0:v", "-map", "0:a?", "-map_metadata", "1", "-map_chapters", "1"]
        if audio is not None:
            args += ["-i", audio]
            maps[3] = f"{args.count('-i') - 1}:a:0"
        if subtitles is not None and burn:
            fps = probe(shots[0])["fps"]
            # libass finds no system font on a bare machine: give it the bundled one,
            # which covers Chinese, Japanese and Korean too.
            fonts = Path(__file__).parent / "fonts"
            style = "FontName=Filmc Panel Sans,FontSize=26,Outline=1.5,Shadow=0,MarginV=36"
            codec = ["-vf", f"subtitles=filename='{_filter_path(subtitles)}':charenc=UTF-8"
                            f":fontsdir='{_filter_path(fonts)}':force_style='{style}'",
                     *VIDEO_ARGS, *gop_args(fraction(fps)), "-c:a", "copy"]
        elif subtitles is not None:
            args += ["-i", subtitles]
            maps += ["-map", f"{args.count('-i') - 1}:s"]
            codec = ["-c:v", "copy", "-c:a", "copy", "-c:s", "mov_text"]
            if language:
                codec += ["-metadata:s:s:0", f"language={language}"]
        else:
            codec = ["-c", "copy"]
        run([*args, *maps, *codec, "-fflags", "+bitexact", "-flags:v", "+bitexact",
             "-flags:a", "+bitexact", "-y", out], f"join {len(shots)} shots into `{out.name}`")
    return out


# -- subtitles -------------------------------------------------------------------

def srt_time(seconds: object) -> str:
    """`HH:MM:SS,mmm`, rounded to the nearest millisecond."""
    ms = math.floor(fraction(seconds) * 1000 + Fraction(1, 2))
    h, ms = divmod(ms, 3_600_000)
    m, ms = divmod(ms, 60_000)
    s, ms = divmod(ms, 1000)
    return f"{h:02d}:{m:02d}:{s:02d},{ms:03d}"


def write_srt(lines: Sequence[tuple[float, float, str]], out: Path) -> Path:
    """SubRip subtitles: one numbered cue per (start, end, text), in the order given."""
    cues = []
    for i, (start, end, text) in enumerate(lines, 1):
        body = "\n".join(x for x in str(text).replace("\r", "").split("\n") if x.strip())
        cues.append(f"{i}\n{srt_time(start)} --> {srt_time(end)}\n{body}\n")
    out = Path(out)
    out.write_text("\n".join(cues), encoding="utf-8", newline="\n")
    return out
