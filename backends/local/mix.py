"""The film's soundtrack: dialogue, music, ambience and effects mixed to a loudness.

    mix(dialogue, seconds, cues, loudness, out_dir)  →  Mixed(mix, stems)

`dialogue` is the joined shots' audio (each shot carries its lines); `cues` are
the sound placed in film time: music beds, ambience beds and effects, each a
file with a start (and for a bed, an end).  The mix:

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

The stems are what an editor or a mixer picks up: `dialogue.wav`, `music.wav`,
`effects.wav` (48 kHz, stereo, 16-bit), each as long as the film.  Same inputs,
same bytes: ffmpeg runs with one filter thread and bitexact flags.
"""

from __future__ import annotations

import re
import tempfile
from collections.abc import Sequence
from pathlib import Path

import attrs

from filmc.backends.ffmpeg import MediaError, run
from filmc.lang.steps import FILM_STEMS

__all__ = ["Cue", "Mixed", "mix", "loudness_of", "STEMS", "DEFAULT_LOUDNESS"]

SAMPLE_RATE = 48000
DEFAULT_LOUDNESS = -23.0  # EBU R128 broadcast; -14 is what streaming services play at
STEMS = FILM_STEMS  # the film step's `stems` output, in this order
# Relative levels before the loudness gain: a bed under the voices, effects over the bed.
_LEVEL = {"music": 0.45, "ambience": 0.3, "effect": 0.8}
_DUCK = "threshold=0.02:ratio=8:attack=20:release=400:knee=4"  # -10 dB or so under speech
_CEILING = 0.891  # -1 dBFS
_WAV = ("-ar", str(SAMPLE_RATE), "-ac", "2", "-c:a", "pcm_s16le", "-fflags", "+bitexact",
        "-flags:a", "+bitexact", "-map_metadata", "-1", "-filter_threads", "1")


@attrs.frozen
class Cue:
    """A sound placed in the film: kind is music, ambience or effect."""

    kind: str
    path: Path
    start: float
    end: float | None = None  # a bed's end; an effect plays out (to the film's end at most)


@attrs.frozen
class Mixed:
    mix: Path  # WAV, the film's soundtrack
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


def _bus(labels: list[str], out: str, seconds: float) -> str:
    """Labels summed into one stream exactly `seconds` long."""
    pad = f"apad=whole_dur={seconds:.6f},atrim=end={seconds:.6f}"
    if not labels:
        return (f"anullsrc=r={SAMPLE_RATE}:cl=stereo,atrim=end={seconds:.6f},"
                f"aformat=sample_fmts=fltp[{out}]")
    if len(labels) == 1:
        return f"[{labels[0]}]{pad}[{out}]"
    return (f"{''.join(f'[{x}]' for x in labels)}amix=inputs={len(labels)}:duration=longest:"
            f"normalize=0,{pad}[{out}]")


def mix(dialogue: Path | None, seconds: float, cues: Sequence[Cue], loudness: float,
        out_dir: Path) -> Mixed:
    """The soundtrack and its stems under out_dir: mix.wav, dialogue.wav, music.wav,
    effects.wav."""
    out_dir = Path(out_dir)
    if seconds <= 0:
        raise MediaError("a film of no length has no soundtrack to mix")
    inputs: list[object] = []
    parts: list[str] = []
    if dialogue is not None:
        inputs += ["-i", dialogue]
        # The joined shots' audio by its timestamps (where one shot's last AAC frame
        # overlaps the next shot's first, the overlap is dropped), so it stays in sync.
        parts.append(f"[0:a]aresample={SAMPLE_RATE}:async=1:min_hard_comp=0.01:first_pts=0,"
                     "aformat=sample_fmts=fltp:channel_layouts=stereo,"
                     f"apad=whole_dur={seconds:.6f},atrim=end={seconds:.6f},asplit=2[dlg][key]")
    else:
        parts.append(f"anullsrc=r={SAMPLE_RATE}:cl=stereo,atrim=end={seconds:.6f},"
                     "aformat=sample_fmts=fltp,asplit=2[dlg][key]")
    first = 1 if dialogue is not None else 0
    music: list[str] = []
    effects: list[str] = []
    for i, cue in enumerate(cues):
        inputs += ["-i", cue.path]
        label = f"c{i}"
        parts.append(_place(label, first + i, cue, seconds))
        (music if cue.kind == "music" else effects).append(label)
    parts.append(_bus(music, "bed", seconds))
    parts.append(_bus(effects, "fx", seconds))
    parts.append(f"[bed][key]sidechaincompress={_DUCK},apad=whole_dur={seconds:.6f},"
                 f"atrim=end={seconds:.6f}[mus]")
    parts.append("[dlg]asplit=2[dlg1][dlg2]")
    parts.append("[mus]asplit=2[mus1][mus2]")
    parts.append("[fx]asplit=2[fx1][fx2]")
    parts.append("[dlg2][mus2][fx2]amix=inputs=3:duration=first:normalize=0[sum]")
    with tempfile.TemporaryDirectory(prefix=".filmc-mix-", dir=out_dir) as tmp:
        raw = {name: Path(tmp) / f"{name}.wav" for name in (*STEMS, "sum")}
        f32 = ("-ar", str(SAMPLE_RATE), "-ac", "2", "-c:a", "pcm_f32le", "-fflags", "+bitexact",
               "-flags:a", "+bitexact", "-map_metadata", "-1")
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


def mix_film(joined: Path, seconds: float, cues: Sequence[Cue], loudness: float, out: Path,
             stem_dir: Path) -> Mixed:
    """The joined film (`joined`: its shots' dialogue as its audio) with its soundtrack
    mixed to `loudness`, written to `out` (video, subtitles and chapters copied; the mix
    as AAC), and the stems in `stem_dir`."""
    made = mix(joined, seconds, cues, loudness, stem_dir)
    run(["-i", joined, "-i", made.mix, "-map", "0:v", "-map", "1:a", "-map", "0:s?",
         "-map_metadata", "0", "-map_chapters", "0", "-c:v", "copy", "-c:s", "copy",
         "-c:a", "aac", "-b:a", "192k", "-ar", str(SAMPLE_RATE), "-ac", "2",
         "-fflags", "+bitexact", "-flags:v", "+bitexact", "-flags:a", "+bitexact",
         "-y", out], f"put the mixed soundtrack into `{Path(out).name}`")
    made.mix.unlink()  # it is in the film now; the step declares the film and the stems
    return made
