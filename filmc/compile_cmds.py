"""The commands that compile a film to its step graph: `plan`, `graph` and `explain`.

Each compiles with `compiler.pipeline.compile_film`; any diagnostic stops the
command with exit 1 before it prints anything else, so a tool reading
`--format json` never gets half a graph.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from .common import (
    FILE_HELP,
    SELECT_HELP,
    add_build_options,
    build_options,
    compile_or_report,
    selection,
)


def add_parsers(sub: Any) -> None:
    pl = sub.add_parser("plan", help="show what a build would run, why, and what it would cost",
                        description="Compare the film with what earlier builds left: every "
                                    "step `filmc build` would run with the same options, marked "
                                    "new, changed, missing, forced or running, with the reason; "
                                    "then steps by kind and backend, estimated cost and time, "
                                    "and the environment variables the backends need. Exit 0 "
                                    "when nothing would run, 2 when something would, 1 on error.")
    pl.add_argument("file", nargs="?", type=Path, metavar="FILE", help=FILE_HELP)
    add_build_options(pl, "what a build of it runs: it and what it needs")
    pl.add_argument("--json", action="store_true", help="print the plan as JSON for tools")
    pl.add_argument("--verbose", "-v", action="store_true",
                    help="list every step, not one line per new shot or scene")
    pl.set_defaults(run=_plan)

    g = sub.add_parser("graph", help="print the step graph (Graphviz dot or JSON)",
                       description="Compile a film and print its generation step graph.")
    g.add_argument("file", nargs="?", type=Path, metavar="FILE", help=FILE_HELP)
    g.add_argument("--format", choices=("dot", "json"), default="dot")
    g.add_argument("--select", "-s", action="append", default=[], metavar="SELECTOR",
                   help=SELECT_HELP)
    g.set_defaults(run=_graph)

    e = sub.add_parser("explain", help="show every step of a shot: prompts, parameters, keys",
                       description="Show every step of one shot (or of every shot of a "
                                   "scene): its rendered prompt, parameters, inputs and "
                                   "content key.")
    e.add_argument("args", nargs="+", metavar="[FILE] SHOT",
                   help="a shot id, `SCENE/SHOT` (as plan and explain print it) or a scene "
                        "id; " + FILE_HELP)
    e.add_argument("--json", action="store_true", help="print JSON for tools")
    e.set_defaults(run=_explain)


# --- filmc plan ----------------------------------------------------------------------


def _plan(args: argparse.Namespace) -> int:
    from .common import history
    from .compiler.plan import make_plan, plan_json, render_plan
    from .engine.db import StoreError
    from .lang.diagnostics import use_color

    result = compile_or_report(args.file, offline=args.offline, kept=True)
    if result is None:
        return 1
    options = build_options(args, result.graph)
    if isinstance(options, int):
        return options
    chosen, until, force = options
    program = result.program()
    try:
        with history(program) as past:
            plan = make_plan(program, past, chosen, until=until, force=force,
                             use_first=args.use_first)
    except StoreError as e:
        print(e.render(), file=sys.stderr)
        return 1
    if args.json:
        json.dump(plan_json(plan), sys.stdout, ensure_ascii=False, indent=1)
        sys.stdout.write("\n")
    else:
        sys.stdout.write(render_plan(plan, color=use_color(sys.stdout), verbose=args.verbose) + "\n")
    if plan.counts["lost"]:
        return 1  # the build would fail: a pinned output is not in the store
    return 2 if plan.to_run else 0


# --- filmc graph ---------------------------------------------------------------------

_COLORS = {"sheet": "#f4d35e", "plate": "#95d5b2", "keyframe": "#a0c4ff", "clip": "#bdb2ff",
           "speech": "#ffc6ff", "music": "#ffd6a5", "sfx": "#ffd6a5", "mix": "#caffbf",
           "shot": "#ffadad", "film": "#e5e5e5", "subtitles": "#e5e5e5",
           "timeline": "#e5e5e5", "storyboard": "#e5e5e5", "storyboard_index": "#e5e5e5"}


def _graph(args: argparse.Namespace) -> int:
    from .compiler.select import SelectorError

    result = compile_or_report(args.file)
    if result is None:
        return 1
    graph = result.graph
    try:
        nodes = selection(graph, args.select)
    except SelectorError as e:
        print(e.render(), file=sys.stderr)
        return 1
    keep = set(graph.nodes) if nodes is None else set(nodes)
    order = [n for n in graph.nodes if n in keep]
    edges = [(a, b) for a, b in graph.edges if a in keep and b in keep]
    if args.format == "json":
        doc = {"film": result.film.title, "nodes": [_node_json(graph.nodes[n]["step"]) for n in order],
               "edges": [list(e) for e in edges]}
        json.dump(doc, sys.stdout, ensure_ascii=False, indent=1)
        sys.stdout.write("\n")
    else:
        sys.stdout.write(to_dot(graph, order, edges, result.film.title))
    return 0


def _node_json(step) -> dict:
    return {"id": step.id, "kind": step.kind, "backend": step.backend, "scene": step.scene,
            "shot": step.shot, "characters": sorted(step.characters),
            "inputs": [i.step for i in step.inputs], "key": step.key}


def _dot_id(s: str) -> str:
    return '"' + s.replace("\\", "\\\\").replace('"', '\\"') + '"'


def to_dot(graph, order: list[str], edges: list[tuple[str, str]], title: str) -> str:
    """Graphviz DOT: one box per step, coloured by kind, labelled with its backend."""
    lines = [f"digraph {_dot_id(title)} {{", "  rankdir=LR;",
             '  node [shape=box, style="rounded,filled", fontname="Helvetica", fontsize=10];']
    for n in order:
        step = graph.nodes[n]["step"]
        label = _dot_id(n)[:-1] + "\\n" + _dot_id(step.backend or "provided")[1:]  # two lines
        lines.append(f'  {_dot_id(n)} [label={label}, fillcolor="{_COLORS.get(step.kind, "#fff")}"];')
    for a, b in edges:
        lines.append(f"  {_dot_id(a)} -> {_dot_id(b)};")
    lines.append("}")
    return "\n".join(lines) + "\n"


# --- filmc explain -----------------------------------------------------------------------


def _explain(args: argparse.Namespace) -> int:
    from .common import USAGE_ERROR, fail
    from .project import NoFilm, find_film

    if len(args.args) > 2:
        return fail("`filmc explain` takes one shot (or scene), optionally after the film file",
                    "`filmc explain [FILE] SHOT`, `filmc explain [FILE] SCENE/SHOT` or "
                    "`filmc explain [FILE] SCENE`", USAGE_ERROR)
    name = args.args[-1]
    try:
        file = Path(args.args[0]) if len(args.args) == 2 else find_film()
    except NoFilm as e:
        return fail(e.message, e.hint)
    result = compile_or_report(file)
    if result is None:
        return 1
    shots = _shots_named(result.film, name)
    if isinstance(shots, str):
        print(shots, file=sys.stderr)
        return 1
    graph = result.graph
    wanted = {(s.scene, s.id) for s in shots}
    steps = [graph.nodes[n]["step"] for n in graph.nodes
             if (graph.nodes[n]["step"].scene, graph.nodes[n]["shot"]) in wanted]
    refs = sorted({i.step for s in steps for i in s.inputs if graph.nodes[i.step]["shot"] is None})
    if args.json:
        everything = [graph.nodes[r]["step"] for r in refs] + steps
        json.dump([_step_json(s) for s in everything], sys.stdout, ensure_ascii=False, indent=1,
                  default=str)
        sys.stdout.write("\n")
        return 0
    if len(shots) > 1:
        scene = next(s for s in result.film.scenes if s.id == shots[0].scene)
        total = sum(float(s.duration) for s in shots)
        print(f"scene {scene.id} \"{scene.title}\": {len(shots)} shots, {total:g}s")
        for r in refs:
            print()
            print(_describe(graph.nodes[r]["step"]))
    for i, shot in enumerate(shots):
        if i or len(shots) > 1:
            print()
        own = [s for s in steps if s.scene == shot.scene and s.shot == shot.id]
        shared = [] if len(shots) > 1 else [graph.nodes[r]["step"] for r in refs]
        _explain_shot(graph, shot, shared + own)
    return 0


def _shots_named(film: Any, name: str) -> list[Any] | str:
    """The shots `name` means: `SCENE/SHOT`, a shot id, or a scene id (its every shot);
    else the error to print, with a suggestion."""
    from .common import count
    from .compiler.select import name_hint as did_you_mean

    shots = [s for sc in film.scenes for s in sc.shots]
    scene_ids = [sc.id for sc in film.scenes]
    if "/" in name:
        scene, _, shot = name.partition("/")
        found = [s for s in shots if s.scene == scene and s.id == shot]
        if found:
            return found
        if scene not in scene_ids:
            hint = did_you_mean(scene, scene_ids)
            what = f"no scene `{scene}`"
        else:
            hint = did_you_mean(shot, [s.id for s in shots if s.scene == scene])
            what = f"no shot `{shot}` in scene `{scene}`"
        return f"error: {what}" + (f"\n  = help: {hint}" if hint else "") + "\n" + count(1, 0)
    found = [s for s in shots if s.id == name]
    if len(found) == 1:
        return found
    if len(found) > 1:
        named = ", ".join(f"`{s.scene}/{s.id}`" for s in found)
        return (f"error: `{name}` is a shot of {len(found)} scenes: {named}\n"
                f"  = help: name one as SCENE/SHOT, such as `{found[0].scene}/{name}`\n"
                + count(1, 0))
    if name in scene_ids:
        return [s for s in shots if s.scene == name]
    hint = did_you_mean(name, [s.id for s in shots] + scene_ids)
    return (f"error: no shot or scene `{name}`" + (f"\n  = help: {hint}" if hint else "")
            + "\n" + count(1, 0))


def _explain_shot(graph: Any, shot: Any, steps: list[Any]) -> None:
    cast = ", ".join(m.character + (f"({m.outfit})" if m.outfit else "") for m in shot.cast)
    n = sum(k for _b, k in shot.candidates)
    spread = ", ".join(f"{b} {k}" for b, k in shot.candidates)
    made = "from the shot before's last frame" if shot.continues else \
        f"{n} keyframe candidate{'s' if n != 1 else ''} ({spread})"
    print(f"shot {shot.scene}/{shot.id}: {float(shot.duration):g}s, {made}, {shot.takes} clip "
          f"take{'s' if shot.takes != 1 else ''}" + (f", cast {cast}" if cast else ""))
    picks = graph.graph["picks"].get((shot.scene, shot.id))
    if picks is not None:
        for c in (picks.keyframe, picks.clip):
            if c.candidates:
                print(f"  {c.kind}: {c.status}" + (f" ({c.why})" if c.why else "")
                      + (f", using {c.used}" if c.used else ""))
    for step in steps:
        print()
        print(_describe(step))


def _step_json(step: Any) -> dict:
    fields = {k: v for k, v in step.fields.as_dict().items() if v not in (None, "")}
    return {**_node_json(step), "template": step.template, "prompt": step.prompt,
            "fields": fields, "params": step.params,
            "roles": {i.step: i.role for i in step.inputs},
            "files": {f.path: f.digest for f in step.files}}


def _describe(step) -> str:
    out = [f"{step.id}  [{step.kind} on {step.backend or 'your files'}]  key {step.key[:16]}"]
    if step.template:
        out.append(f"  template  {step.template}")
    for i in step.inputs:
        out.append(f"  input     {i.step} as {i.role}  ({step.record['inputs'][i.step][:12]})")
    for f in step.files:
        out.append(f"  file      {f.path}  ({f.digest[:12]})")
    for k, v in step.fields.as_dict().items():
        if v not in (None, "") and k != "prompt":
            out.append(f"  {k:<9} {_show(v)}")
    for k, v in step.params.items():
        out.append(f"  {k:<9} {_show(v)}")
    if step.prompt:
        out.append("  prompt")
        out += [f"    {line}" for line in step.prompt.splitlines()]
    return "\n".join(out)


def _show(v) -> str:
    from fractions import Fraction

    if isinstance(v, Fraction):
        return f"{float(v):g}"
    if isinstance(v, dict):
        return ", ".join(f"{k}={_show(x)}" for k, x in v.items()) or "-"
    if isinstance(v, (list, tuple)):
        return "[" + ", ".join(_show(x) for x in v) + "]"
    return "-" if v is None else str(v)
