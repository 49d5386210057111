"""What a backend cannot do, said before anything is spent.

- `check_kinds`: a `backend STEP NAME` line whose backend cannot make STEP is an
  error at that line (a plan that would fail at the service is no plan).
- `check_capabilities`: a shot that asks for what its backend cannot honour —
  a seed, a negative prompt, more reference images than it takes, a first
  frame, a clip length it cannot make, a frame size it does not make — is a
  warning.  Nothing is dropped silently: the warning says which backend, which
  field and which shots (one warning per backend and field, pointing at the
  first shot, so a feature with a seed on every shot gets one line, not 3,000).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from ..backends.fit import aspect_ratio, clip_length, nearest_size, seconds_text
from ..lang import ast
from ..lang import steps as S
from ..lang.diagnostics import Diagnostics
from ..lang.loader import Project
from .backends import BackendInfo, makers_help

SHOW = 4  # shots named in one warning


def check_kinds(project: Project, infos: Mapping[str, BackendInfo], diags: Diagnostics,
                offline: bool) -> None:
    if offline:
        return
    from .pipeline import backend_lines

    for a in backend_lines(project):
        kind, name = a.values
        if not (isinstance(kind, ast.Name) and isinstance(name, ast.Name)):
            continue
        info = infos.get(name.text)
        if info is not None and kind.text in S.KINDS and info.capabilities(kind.text) is None:
            diags.error("F0514", f"backend `{name.text}` ({info.type}) cannot make "
                                 f"`{kind.text}` steps", name.span, "assigned here",
                        help=makers_help(kind.text, infos))


def shot_spans(project: Project) -> dict[tuple[str, str], ast.Span]:
    return {(scene.id.text, shot.id.text): shot.id.span
            for scene, _f in project.scenes for shot in scene.items if isinstance(shot, ast.Shot)}


def check_capabilities(project: Project, graph: Any, infos: Mapping[str, BackendInfo],
                       diags: Diagnostics, memo: Any = None) -> None:
    """`memo`: the GraphMemo of a process that compiles again: a step the graph put back
    (the same object, made under the same backends) has the problems it had."""
    problems: dict[tuple[str, str, str, str], list[tuple[str, str]]] = {}
    last = memo.problems if memo is not None else {}
    kept: dict[int, tuple[Any, list[tuple[str, str]]]] = {}

    def note(backend: str, kind: str, what: tuple[str, str], scene: str | None,
             shot: str | None) -> None:
        shots = problems.setdefault((backend, kind, *what), [])
        if scene is not None and shot is not None and (scene, shot) not in shots:
            shots.append((scene, shot))

    for _n, data in graph.nodes(data=True):
        step = data["step"]
        if step.backend is None:
            continue
        hit = last.get(id(step))
        if hit is not None and hit[0] is step:
            found = hit[1]
        else:
            caps = infos[step.backend].capabilities(step.kind)
            found = [] if caps is None else list(_unhonoured(caps, step.fields, step))
        if memo is not None:
            kept[id(step)] = (step, found)
        for problem in found:
            note(step.backend, step.kind, problem, step.scene, step.shot)
    if memo is not None:
        memo.problems = kept

    spans = shot_spans(project)
    for (backend, kind, what, help), shots in problems.items():
        info = infos[backend]
        named = ", ".join(f"`{sc}/{sh}`" for sc, sh in shots[:SHOW])
        more = f" and {len(shots) - SHOW} more" if len(shots) > SHOW else ""
        where = f" in shot{'s' if len(shots) != 1 else ''} {named}{more}" if shots else ""
        diags.warning("F0701", f"backend `{backend}` ({info.type}) cannot honour {what} "
                               f"for `{kind}` steps{where}",
                      spans.get(shots[0]) if shots else None, "this shot", help=help)


_OTHER = "give these shots another backend with `backend STEP NAME`, or accept it"


def _unhonoured(caps: Any, f: S.Fields, step: Any) -> Iterable[tuple[str, str]]:
    """(what cannot be honoured, what to do) for one step."""
    if f.seed is not None and not caps.seed:
        yield "a seed", f"its results vary from run to run; {_OTHER}"
    if caps.prompt_chars is not None and f.prompt \
            and len(f.prompt.encode("utf-16-le")) // 2 > caps.prompt_chars:
        yield (f"a prompt of more than {caps.prompt_chars} characters",
               "it reads no further: the end of the prompt is cut; shorten the shot's action "
               "or its presets' words")
    if f.negative and not caps.negative:
        yield "a negative prompt", f"say what to avoid in the prompt instead; {_OTHER}"
    refs = sum(1 for i in step.inputs if i.role in (S.CHARACTER, S.LOCATION, S.REFERENCE))
    refs += len(step.files)
    if caps.references is not None and refs > caps.references:
        yield (f"{refs} reference images (it takes {caps.references})",
               f"a workflow uses the first {caps.references} (characters first, then the "
               f"location) and a service may refuse the step; {_OTHER}")
    if any(i.role == S.FIRST_FRAME for i in step.inputs) and not caps.first_frame:
        yield "a first frame", f"it makes clips from text alone; {_OTHER}"
    if any(i.role == S.LAST_FRAME for i in step.inputs) and not caps.last_frame:
        yield ("a last frame (`last_frame next`)",
               f"the clip ends wherever the service takes it, not on the next shot's "
               f"keyframe; {_OTHER}")
    if f.duration is not None and caps.durations is not None and f.duration not in caps.durations:
        allowed = _spoken([f"{seconds_text(d)}" for d in sorted(caps.durations)]) + " s"
        made = clip_length(f.duration, caps.durations)
        then = (f"generated at {seconds_text(made)} s and cut to {seconds_text(f.duration)} s "
                f"by the shot step" if made > f.duration else
                f"generated at {seconds_text(made)} s, its last frame held for the other "
                f"{seconds_text(f.duration - made)} s by the shot step")
        yield f"a length of {seconds_text(f.duration)} s", f"it makes {allowed}: {then}"
    if f.width and f.height and caps.sizes is not None and (f.width, f.height) not in caps.sizes:
        made_size = ", ".join(f"{w}x{h}" for w, h in caps.sizes)
        w, h = nearest_size(f.width, f.height, caps.sizes)
        yield (f"the size {f.width}x{f.height}",
               f"it makes {made_size}: generated at {w}x{h}, then scaled and cropped to the "
               f"film's frame")
    elif f.width and f.height and caps.aspect_ratios is not None \
            and not any(_same_shape(r, f.width, f.height) for r in caps.aspect_ratios):
        ratio = aspect_ratio(f.width, f.height, caps.aspect_ratios)
        yield (f"the frame {f.width}x{f.height}",
               f"it makes {_spoken(list(caps.aspect_ratios))}: generated at {ratio}, then "
               f"scaled and cropped to the film's frame")


def _spoken(items: list[str]) -> str:
    """`4, 6 or 8`."""
    return items[0] if len(items) == 1 else ", ".join(items[:-1]) + " or " + items[-1]


def _same_shape(ratio: str, width: int, height: int) -> bool:
    w, _, h = ratio.partition(":")
    try:
        return abs(float(w) / float(h) - width / height) < 0.01
    except (ValueError, ZeroDivisionError):
        return False
