"""The film's sound, from the source to the step graph.

    place_sound(project, scenes, fps)  →  (ir.Sound, ...)       the pass (passes.py)
    add_sound(builder, film)           →  (InputRef, ...), cues  the steps (graph.py)

Where cues start and end is lang/cues.py's rule, applied here in film time:
a scene's `music` from the scene's start, a shot's from the shot's start, each to
the next cue or the scene's end unless `for` sets its length; a scene's
`ambience` (or its location's) over the scene; an `sfx` at its time in its shot,
playing out (cut at the film's end).

A described cue is a `music` step, an effect or an ambience an `sfx` step, on the
backend the shot (or the scene's first shot) names for that kind.  A cue given as
a file is a step with no backend: its output is the file.

    add_mix(builder, film, loudness)   →  the `mix` step's node id   (graph.py)

The `mix` step takes them all, with each one's kind and place in its `sound`
parameter, and every line's speech, placed in film time as the shot that carries
it places it (backends/local/media.py `conform_shot`): from its start, running on
past its end into the pause before the next line of its shot, or its shot's end.
It mixes them to the film's loudness.  It hears no picture: no clip or shot is an
input, so a camera edit keeps its key, and the film step only joins the shots
with it.  Shots start on frame boundaries (their frame count is round(duration x
fps), halves up, as the local renderer conforms them), so the mix is exactly as
long as the joined film, and each line lies where its shot carries it.
"""

from __future__ import annotations

import os
from fractions import Fraction
from pathlib import Path
from typing import Any

from ..lang import ast
from ..lang import steps as S
from ..lang.cues import cue_length, effect_time, is_audio_file
from ..lang.loader import Project
from ..lang.steps import Fields, InputRef, StepId, Tags
from ..lang.tree import current as current_tree
from . import ir

__all__ = ["place_sound", "add_sound", "add_mix", "DEFAULT_LOUDNESS"]

DEFAULT_LOUDNESS = -23.0  # LUFS: EBU R128 for broadcast (`[sound] loudness` in filmc.toml)

_ROLES = {"music": S.MUSIC, "ambience": S.AMBIENCE, "effect": S.EFFECT}


def _text(a: ast.Attr | None) -> str:
    return a.values[0].value if a is not None and a.values and isinstance(a.values[0], ast.Str) \
        else ""


def place_sound(project: Project, scenes: tuple[ir.Scene, ...], fps: Fraction,
                location_items: dict[str, Any]) -> tuple[ir.Sound, ...]:
    """Every cue, ambience and effect of the film, in film order."""
    runtime = sum((s.duration for sc in scenes for s in sc.shots), Fraction(0))
    found: list[ir.Sound] = []
    t = Fraction(0)
    for (scene_ast, _f), scene in zip(project.scenes, scenes):
        if not scene.shots:
            continue
        start, end = t, t + sum((s.duration for s in scene.shots), Fraction(0))
        first = scene.shots[0]
        cues: list[tuple[ast.Attr, Fraction, ir.Shot | None]] = []
        a = ast.find_attr(scene_ast.items, "music")
        if a is not None:
            cues.append((a, start, None))
        at = start
        for shot_ast, shot in zip(scene_ast.shots, scene.shots):
            a = ast.find_attr(shot_ast.items, "music")
            if a is not None:
                cues.append((a, at, shot))
            n = 0
            for e in ast.attrs_of(shot_ast.items):
                when = effect_time(e, fps) if e.key.text == "sfx" else None
                if when is None:
                    continue
                n += 1
                found.append(ir.Sound("effect", scene.id, shot.id, n, _text(e), at + when,
                                      runtime, shot.backend("sfx")))
            at += shot.duration
        for i, (a, begin, from_shot) in enumerate(cues):
            length = cue_length(a, fps)
            stop = begin + length if length is not None else \
                (cues[i + 1][1] if i + 1 < len(cues) else end)
            stop = min(stop, runtime)
            if stop <= begin:  # a scene's cue that its first shot's own replaces
                continue
            text = _text(a)
            file = _file(a, project) if is_audio_file(text) else None
            found.append(ir.Sound("music", scene.id, from_shot.id if from_shot else None, 0,
                                  text, begin, stop, (from_shot or first).backend("music"), file))
        amb = _text(ast.find_attr(scene_ast.items, "ambience")) or \
            _text(ast.find_attr(location_items.get(scene.location or "", ()), "ambience"))
        if amb:
            found.append(ir.Sound("ambience", scene.id, None, 0, amb, start, end,
                                  first.backend("sfx")))
        t = end
    return tuple(sorted(found, key=lambda s: (s.start, s.kind, s.shot or "", s.index)))


def _file(a: ast.Attr, project: Project) -> ir.RefFile:
    """The file a music line names, relative to the file the line is in (as `ref`)."""
    base = next((f.path.parent for f in project.files if f.display == a.span.file),
                project.root)
    path = Path(os.path.normpath(base / a.values[0].value))  # type: ignore[union-attr]
    return ir.RefFile(path.relative_to(project.root).as_posix(), current_tree().digest(path))


def add_sound(builder: Any, film: ir.Film) -> tuple[tuple[InputRef, ...], list[list[Any]]]:
    """The film's sound steps, added to the graph: the mix step's inputs, and its `sound`
    parameter ([step id, kind, start, end] for each, in film time)."""
    inputs: list[InputRef] = []
    placed: list[list[Any]] = []
    for s in film.sound:
        length = s.end - s.start
        if s.kind == "music":
            sid = StepId.music(s.scene, s.shot)
            if s.file is not None:
                node = builder.add(sid, None, files=(s.file,))
            else:
                node = builder.add(sid, s.backend, fields=Fields(prompt=s.description,
                                                                 duration=length))
        elif s.kind == "ambience":
            node = builder.add(StepId.ambience(s.scene), s.backend,
                               fields=Fields(prompt=s.description, duration=length),
                               params={"bed": True})
        else:
            assert s.shot is not None
            node = builder.add(StepId.effect(s.scene, s.shot, s.index), s.backend,
                               fields=Fields(prompt=s.description), params={"bed": False})
        inputs.append(InputRef(node, _ROLES[s.kind], Tags(start=s.start, end=s.end)))
        placed.append([node, s.kind, s.start, s.end])
    return tuple(inputs), placed


def add_mix(builder: Any, film: ir.Film, loudness: float) -> str:
    """The `mix` step, added to the graph with the cue steps it takes: its inputs are every
    line's speech (already in the graph: each shot's own) and the cues, nothing that is
    seen.  Its `lines` parameter is [speech step, start, end, until] for each line in film
    time: `until` is where it may run on to, the next line of its shot or the shot's end."""
    fps = film.fps
    speech: list[InputRef] = []
    lines: list[list[Any]] = []
    at = 0  # the shot's first frame in the film
    # The frames a shot has: round(duration x fps), halves rounded up, the rule the local
    # renderer conforms shots by (backends/local/media.py `frame_count`), in integers:
    # floor((2 x duration x fps + 1) / 2) (a feature's 3,000 shots, no Fraction each).
    fn, fd = fps.numerator, fps.denominator
    for shot in film.shots:
        d = shot.duration
        n = (2 * d.numerator * fn + d.denominator * fd) // (2 * d.denominator * fd)
        if not shot.lines:
            at += n
            continue
        begin, stop = Fraction(at) / fps, Fraction(at + n) / fps
        for i, line in enumerate(shot.lines):
            node = str(StepId.speech(shot.scene, shot.id, line.index))
            start, end = begin + line.start, min(begin + line.end, stop)
            until = begin + shot.lines[i + 1].start if i + 1 < len(shot.lines) else stop
            speech.append(InputRef(node, S.SPEECH, Tags(start=start, end=end)))
            lines.append([node, start, end, min(until, stop)])
        at += n
    cues, placed = add_sound(builder, film)
    return builder.add(StepId("mix"), builder.choose("mix"),
                       fields=Fields(fps=fps, duration=Fraction(at) / fps),
                       params={"lines": lines, "sound": placed, "loudness": loudness},
                       inputs=(*speech, *cues))
