"""Sound in the source: where music cues start and end, and their checks.

    music "sparse erhu, tense"          a scene's bed, or a cue from a shot on
    music "music/theme.wav" for 20s     a file of the project, for an explicit length
    ambience "wind over grass"          a scene's (or a location's) background sound
    sfx "ice cracks" at 2.5s            an effect at a time inside a shot

A music line on a scene starts at the scene's start; on a shot, at the shot's
start.  A cue runs to the next cue's start or the end of its scene, whichever
comes first, unless `for` sets its length (which may carry it into later scenes).
The checker (check.py) and the compiler (compiler/passes.py) both ask this module,
so what `filmc check` accepts is what the build places.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from fractions import Fraction

from . import ast, literals
from .diagnostics import Diagnostics
from .literals import BadLiteral
from .schema import AUDIO_EXTENSIONS

__all__ = ["is_audio_file", "music_starts", "cue_length", "effect_time", "check_music",
           "check_effects"]


def is_audio_file(text: str) -> bool:
    """Whether a music line names a file (`music/theme.wav`) rather than describing music."""
    return text.strip().lower().endswith(AUDIO_EXTENSIONS) and "\n" not in text


def music_starts(scene: ast.Scene, start: Fraction, seconds_of: Callable[[ast.Shot], Fraction]
                 ) -> list[tuple[ast.Attr, Fraction]]:
    """The scene's music lines with their start in film time (`start`: the scene's)."""
    found: list[tuple[ast.Attr, Fraction]] = []
    a = ast.find_attr(scene.items, "music")
    if a is not None:
        found.append((a, start))
    t = start
    for shot in scene.shots:
        a = ast.find_attr(shot.items, "music")
        if a is not None:
            found.append((a, t))
        t += seconds_of(shot)
    return found


def _third_duration(a: ast.Attr, fps: Fraction) -> Fraction | None:
    """The duration written as a line's third value (`for 20s`, `at 2.5s`), or None."""
    if len(a.values) == 3 and isinstance(a.values[2], ast.Literal):
        try:
            return literals.duration(a.values[2].text).at(fps)
        except BadLiteral:
            return None
    return None


def cue_length(a: ast.Attr, fps: Fraction) -> Fraction | None:
    """A music line's `for` length, or None when it has none (or a bad one, reported)."""
    return _third_duration(a, fps)


def effect_time(a: ast.Attr, fps: Fraction) -> Fraction | None:
    """An `sfx` line's time inside its shot, or None when it is malformed (reported)."""
    return _third_duration(a, fps)


def check_music(cues: Sequence[tuple[ast.Attr, Fraction]], runtime: Fraction, fps: Fraction,
                diags: Diagnostics, audio_file: Callable[[ast.Str], None]) -> None:
    """`for` without a length, a cue that runs past the film's end, a missing file."""
    for a, start in cues:
        if not a.values or not isinstance(a.values[0], ast.Str):
            continue
        if is_audio_file(a.values[0].value):
            audio_file(a.values[0])
        if len(a.values) == 2 and isinstance(a.values[1], ast.Name) and a.values[1].text == "for":
            diags.error("F0313", "`for` needs a length", a.values[1].span, "no length after it",
                        help=f'write `music "{a.values[0].value}" for 20s`, or leave `for` out to '
                             "play the cue to the next one or the scene's end")
            continue
        length = cue_length(a, fps)
        if length is None or start + length <= runtime:
            continue
        room = runtime - start
        diags.error("F0314", f"the music cue runs past the film's end by "
                             f"{literals.format_runtime(start + length - runtime)}",
                    a.values[2].span, f"starts at {literals.format_runtime(start)}, "
                                      f"the film ends at {literals.format_runtime(runtime)}",
                    help=f"write `for {_seconds(room)}` or less, or leave `for` out to end the "
                         "cue with its scene")


def check_effects(shot: ast.Shot, seconds: Fraction | None, fps: Fraction,
                  diags: Diagnostics) -> None:
    """An effect at a time the shot does not reach."""
    if seconds is None:
        return
    for a in ast.attrs_of(shot.items):
        if a.key.text != "sfx":
            continue
        at = effect_time(a, fps)
        if at is not None and at >= seconds:
            diags.error("F0312", f"`sfx` at {ast.value_text(a.values[2])} is past the end of shot "
                                 f"`{shot.id.text}`, which lasts {_seconds(seconds)}",
                        a.values[2].span, "after the shot's last frame",
                        help=f"write a time under {_seconds(seconds)} (it counts from the "
                             "shot's start), or put the effect in the shot where it happens")


def _seconds(t: Fraction) -> str:
    """`2.5s`: a length as a duration literal, to the millisecond."""
    text = f"{float(t):.3f}".rstrip("0").rstrip(".")
    return f"{text}s"
