"""The film's sound, the `mix` step: dialogue, music, ambience and effects mixed to a loudness.

    soundtrack(lines, seconds, cues, loudness, out_dir)  →  Mixed(mix.m4a, stems)
    mix(dialogue, seconds, cues, loudness, out_dir)      →  Mixed(mix.wav, stems)

`lines` are each line's speech placed in film time, as the shot that carries it
places it (media.py `conform_shot`): from its start, running on past its end
into the pause before the next line of its shot (`until`), said faster (up to
twice) when it is longer even than that, cut there.  They are laid end to end
on one dialogue track (`dialogue`: they never overlap, so this is a copy of
samples, not a mix of thousands of inputs).  `cues` are the sound placed in
film time: music beds, ambience beds and effects, each a file with a start (and
for a bed, an end).  The mix:

1. places every cue (trimmed to its end, with short fades, delayed to its start);
2. ducks the music under the dialogue: ffmpeg's `sidechaincompress`, keyed by the
   dialogue, so a bed sits about 10 dB lower while someone speaks and comes back
   between lines;
3. sums dialogue, music and effects (ambience is part of the effects stem) and
   measures the sum's integrated loudness (EBU R128, ffmpeg's `ebur128`);
4. applies one gain to the sum and to every stem, so that the mix meets the
   target (`[sound] loudness` in filmc.toml, in LUFS), with a peak limiter on the
   mix alone (ceiling -1 dBFS); where the limiter takes loudness off (peaky speech
   at a loud target), the mix is measured again and the gain made up, so the stems
   add up to the mix before its limiter.

The step's `audio` is the mix as AAC in an MP4 (`.m4a`: one track, 48 kHz stereo,
exactly as long as the film, which the film step copies in beside the joined
shots); its `stems` are what an editor or a mixer picks up: `dialogue.wav`,
`music.wav`, `effects.wav` (48 kHz, stereo, 16-bit), each as long as the film.
Same inputs, same bytes: ffmpeg runs with one filter thread and bitexact flags.
"""

from __future__ import annotations

import array
import re
import tempfile
import wave
from collections.abc import Sequence
from fractions import Fraction
from pathlib import Path

import attrs

from filmc.backends.ffmpeg import MediaError, probe, run
from filmc.lang.steps import FILM_STEMS

__all__ = ["Cue", "Line", "Mixed", "mix", "soundtrack", "place_dialogue", "loudness_of",
           "STEMS", "DEFAULT_LOUDNESS"]

SAMPLE_RATE = 48000
DEFAULT_LOUDNESS = -23.0  # EBU R128 broadcast; -14 is what streaming services play at
STEMS = FILM_STEMS  # the mix step's `stems` output, in this order
# Relative levels before the loudness gain: a bed under the voices, effects over the bed.
_LEVEL = {"music": 0.45, "ambience": 0.3, "effect": 0.8}
_DUCK = "threshold=0.02:ratio=8:attack=20:release=400:knee=4"  # -10 dB or so under speech
_CEILING = 0.891  # -1 dBFS
_FADE = 720  # samples: a line's last 15 ms fade out, as its shot's do (media.conform_shot)
_BITEXACT = ("-fflags", "+bitexact", "-flags:a", "+bitexact", "-map_metadata", "-1")
_WAV = ("-ar", str(SAMPLE_RATE), "-ac", "2", "-c:a", "pcm_s16le", *_BITEXACT,
        "-filter_threads", "1")


@attrs.frozen
class Cue:
    """A sound placed in the film: kind is music, ambience or effect."""

    kind: str
    path: Path
    start: float
    end: float | None = None  # a bed's end; an effect plays out (to the film's end at most)


@attrs.frozen
class Line:
    """A line's speech placed in the film (seconds): said from `start`, heard at least to
    `end` and at most to `until` (the next line of its shot, or the shot's end)."""

    path: Path
    start: Fraction
    end: Fraction
    until: Fraction


@attrs.frozen
class Mixed:
    mix: Path  # the film's sound: WAV from `mix`, AAC (.m4a) from `soundtrack`
    stems: dict[str, Path]  # dialogue, music, effects
    measured: float  # the sum's integrated loudness before the gain (LUFS)
    gain: float  # dB applied


def loudness_of(path: Path) -> float:
    """Integrated loudness (LUFS) of an audio or video file, by ffmpeg's `ebur128`."""
    err = run(["-i", path, "-map", "0:a:0", "-af", "ebur128=framelog=quiet", "-f", "null", "-"],
              f"measure the loudness of `{Path(path).name}`", loglevel="info").stderr.decode()
    found = re.findall(r"I:\s+(-?[\d.]+|-inf) LUFS", err)
    if not found:
        raise MediaError(f"ffmpeg measured no loudness in `{Path(path).name}`")
    return -70.0 if found[-1] == "-inf" else float(found[-1])


# -- the dialogue track -----------------------------------------------------------------------

def _length(path: Path) -> Fraction:
    """How long a line's audio is: a WAV's from its header, another format's from ffmpeg."""
    try:
        with wave.open(str(path)) as f:
            return Fraction(f.getnframes(), f.getframerate())
    except (OSError, wave.Error, EOFError):  # another backend's MP3 or FLAC
        return Fraction(str(probe(path).get("audio_duration") or 0))


def _samples(path: Path, tempo: Fraction) -> array.array:
    """A line's audio as 48 kHz mono 16-bit samples (little-endian, as WAV and every
    machine filmc runs on), said `tempo` times as fast (at most twice: what is left over
    is cut).  The local backend's own speech is read as it is;
    anything else (another rate, stereo, MP3, a faster tempo) goes through ffmpeg."""
    out = array.array("h")
    if tempo <= 1:
        try:
            with wave.open(str(path)) as f:
                if (f.getnchannels(), f.getsampwidth(), f.getframerate()) == (1, 2, SAMPLE_RATE):
                    out.frombytes(f.readframes(f.getnframes()))
                    return out
        except (OSError, wave.Error, EOFError):
            pass
    faster = [f"atempo={min(float(tempo), 2.0):.4f}"] if tempo > 1 else []
    raw = run(["-i", path, "-af", ",".join([*faster, f"aresample={SAMPLE_RATE}"]), "-ac", "1",
               "-f", "s16le", "-c:a", "pcm_s16le", *_BITEXACT, "-filter_threads", "1", "-"],
              f"read the line `{Path(path).name}`", capture_stdout=True).stdout
    out.frombytes(raw[:len(raw) // 2 * 2])
    return out


def place_dialogue(lines: Sequence[Line], seconds: float, out: Path) -> Path:
    """Every line on one track (WAV, 48 kHz mono 16-bit, exactly `seconds` long), where
    its shot places it: from its start, as long as it is said but at least to its end
    and at most to its `until`; one too long even for that is said faster (up to twice
    as fast) and cut there, its last 15 ms faded out.  Silence elsewhere."""
    total = round(seconds * SAMPLE_RATE)
    zero = bytes(2 * SAMPLE_RATE)
    with wave.open(str(out), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(SAMPLE_RATE)
        pos = 0

        def silence(upto: int) -> None:
            nonlocal pos
            while pos < upto:
                n = min(upto - pos, SAMPLE_RATE)
                w.writeframesraw(zero[:2 * n])
                pos += n

        for line in sorted(lines, key=lambda x: x.start):
            said = _length(line.path)
            at = max(round(line.start * SAMPLE_RATE), pos)  # lines never overlap; be sure
            stop = min(round(max(line.end, min(line.start + said, line.until)) * SAMPLE_RATE),
                       total)
            if stop <= at:
                continue
            tempo = said / max(line.until - line.start, Fraction(1, 100))
            samples = _samples(line.path, tempo)[:stop - at]
            fade = min(_FADE, stop - at)
            for k in range(max(stop - at - fade, 0), len(samples)):
                samples[k] = int(samples[k] * (stop - at - k) / fade)
            silence(at)
            w.writeframesraw(samples.tobytes())
            pos += len(samples)
        silence(total)
    return out


# -- the mix ----------------------------------------------------------------------------------

def _place(label: str, index: int, cue: Cue, seconds: float) -> str:
    start = min(max(cue.start, 0.0), seconds)
    end = min(cue.end if cue.end is not None else seconds, seconds)
    length = max(end - start, 0.01)
    fade = min(0.4 if cue.kind != "effect" else 0.02, length / 4)
    delay = round(start * SAMPLE_RATE)
    return (f"[{index}:a]aresample={SAMPLE_RATE},aformat=sample_fmts=fltp:channel_layouts=stereo,"
            f"asetpts=PTS-STARTPTS,atrim=end={length:.6f},"
            f"afade=t=in:d={fade:.4f},afade=t=out:st={max(length - fade, 0):.6f}:d={fade:.4f},"
            f"volume={_LEVEL[cue.kind]},adelay=delays={delay}S:all=1[{label}]")


def _bus(labels: list[str], out: str, samples: int) -> str:
    """Labels summed into one stream exactly `samples` long."""
    pad = f"apad=whole_len={samples},atrim=end_sample={samples}"
    if not labels:
        return (f"anullsrc=r={SAMPLE_RATE}:cl=stereo,atrim=end_sample={samples},"
                f"aformat=sample_fmts=fltp[{out}]")
    if len(labels) == 1:
        return f"[{labels[0]}]{pad}[{out}]"
    return (f"{''.join(f'[{x}]' for x in labels)}amix=inputs={len(labels)}:duration=longest:"
            f"normalize=0,{pad}[{out}]")


def mix(dialogue: Path | None, seconds: float, cues: Sequence[Cue], loudness: float,
        out_dir: Path) -> Mixed:
    """The soundtrack and its stems under out_dir: mix.wav, dialogue.wav, music.wav,
    effects.wav, each exactly `seconds` long (to the sample).  `dialogue`: the dialogue
    track (`place_dialogue`), None for a film with no lines."""
    out_dir = Path(out_dir)
    if seconds <= 0:
        raise MediaError("a film of no length has no soundtrack to mix")
    n = round(seconds * SAMPLE_RATE)
    inputs: list[object] = []
    parts: list[str] = []
    if dialogue is not None:
        inputs += ["-i", dialogue]
        parts.append(f"[0:a]aresample={SAMPLE_RATE},aformat=sample_fmts=fltp:channel_layouts="
                     f"stereo,apad=whole_len={n},atrim=end_sample={n},asplit=2[dlg][key]")
    else:
        parts.append(f"anullsrc=r={SAMPLE_RATE}:cl=stereo,atrim=end_sample={n},"
                     "aformat=sample_fmts=fltp,asplit=2[dlg][key]")
    first = 1 if dialogue is not None else 0
    music: list[str] = []
    effects: list[str] = []
    for i, cue in enumerate(cues):
        inputs += ["-i", cue.path]
        label = f"c{i}"
        parts.append(_place(label, first + i, cue, seconds))
        (music if cue.kind == "music" else effects).append(label)
    parts.append(_bus(music, "bed", n))
    parts.append(_bus(effects, "fx", n))
    parts.append(f"[bed][key]sidechaincompress={_DUCK},apad=whole_len={n},"
                 f"atrim=end_sample={n}[mus]")
    parts.append("[dlg]asplit=2[dlg1][dlg2]")
    parts.append("[mus]asplit=2[mus1][mus2]")
    parts.append("[fx]asplit=2[fx1][fx2]")
    parts.append("[dlg2][mus2][fx2]amix=inputs=3:duration=first:normalize=0[sum]")
    with tempfile.TemporaryDirectory(prefix=".filmc-mix-", dir=out_dir) as tmp:
        raw = {name: Path(tmp) / f"{name}.wav" for name in (*STEMS, "sum")}
        f32 = ("-ar", str(SAMPLE_RATE), "-ac", "2", "-c:a", "pcm_f32le", *_BITEXACT)
        maps: list[object] = []
        for name, label in (("dialogue", "dlg1"), ("music", "mus1"), ("effects", "fx1"),
                            ("sum", "sum")):
            maps += ["-map", f"[{label}]", *f32, raw[name]]
        run(["-y", *inputs, "-filter_complex", ";".join(parts), "-filter_threads", "1",
             "-filter_complex_threads", "1", *maps], "mix the soundtrack")
        measured = loudness_of(raw["sum"])
        gain = 0.0 if measured <= -60 else loudness - measured  # silence stays silence
        out = out_dir / "mix.wav"
        # The limiter takes some loudness off peaky speech at loud targets (-14): measure
        # the limited mix and make up the difference, a few times at most.
        for _ in range(4):
            run(["-i", raw["sum"], "-af", f"volume={gain:.4f}dB,"
                 f"alimiter=limit={_CEILING}:level=0:attack=5:release=50:asc=1", *_WAV, "-y",
                 out], "write the mix")
            short = loudness - loudness_of(out)
            if measured <= -60 or abs(short) < 0.2:
                break
            gain += short
        stems = {}
        for name in STEMS:
            stems[name] = out_dir / f"{name}.wav"
            run(["-i", raw[name], "-af", f"volume={gain:.4f}dB", *_WAV, "-y", stems[name]],
                f"write the {name} stem")
    return Mixed(out, stems, measured, gain)


def soundtrack(lines: Sequence[Line], seconds: float, cues: Sequence[Cue], loudness: float,
               out_dir: Path) -> Mixed:
    """The `mix` step: the lines laid on the dialogue track, mixed with the cues to
    `loudness`; out_dir/mix.m4a (AAC, one track, 48 kHz stereo, `seconds` long: the MP4's
    edit list hides the encoder's priming and the last frame's padding) and the stems."""
    out_dir = Path(out_dir)
    with tempfile.TemporaryDirectory(prefix=".filmc-dialogue-", dir=out_dir) as tmp:
        dialogue = place_dialogue(lines, seconds, Path(tmp) / "lines.wav") if lines else None
        made = mix(dialogue, seconds, cues, loudness, out_dir)
    audio = out_dir / "mix.m4a"
    run(["-i", made.mix, "-map", "0:a", "-c:a", "aac", "-b:a", "192k", "-ar", str(SAMPLE_RATE),
         "-ac", "2", *_BITEXACT, "-y", audio], "encode the mix",
        fixed_addresses=True)  # filmc's own PCM; the AAC's bits vary with addresses otherwise
    made.mix.unlink()  # the step declares the AAC track and the stems
    return attrs.evolve(made, mix=audio)
