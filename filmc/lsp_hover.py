"""Hover: what the compiler knows about the id under the cursor, as Markdown.

- a shot: its place in the film, duration, cast, camera and light; what `filmc plan`
  says of it (cached, will run, awaiting a pick) with the estimated cost; and the
  rendered prompt of the keyframe its clips start from, as `filmc explain` shows it;
- a preset: its words (the prompt and negative words it adds, and those of the
  presets it bundles), its slot and where it is defined;
- a character: its name, look, voice, outfits and reference images; an outfit its
  words and images; a location its look, light, times of day and images;
- a scene: its heading and shots; an attribute name: what the schema says of it.

The shot's answer needs the step graph (compiled for the text as it is now) and the
project's store, read as `filmc plan` reads it.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Any

from .lang import ast, schema
from .lang.steps import StepId
from .lsp_complete import outfit_look
from .lsp_index import Index, Occurrence, Symbol

_STATUS_WORDS = {"new": "new", "changed": "changed", "missing": "not in the store",
                 "forced": "forced", "running": "running at its service"}


def _words(items: tuple, key: str) -> str:
    a = ast.find_attr(items, key)
    return "" if a is None else " ".join(v.value for v in a.values if isinstance(v, ast.Str))


def _values(items: tuple, key: str) -> str:
    a = ast.find_attr(items, key)
    return "" if a is None else " ".join(ast.value_text(v) for v in a.values)


def _image_lines(items: tuple, base: Path) -> list[str]:
    """Each `ref "..."` of a block as a link and a thumbnail (clients that show Markdown
    images show it; the path is there for the rest)."""
    out = []
    for a in ast.attrs_of(items):
        if a.key.text == "ref" and a.values and isinstance(a.values[0], ast.Str):
            rel = a.values[0].value
            uri = (base / rel).resolve().as_uri()
            out.append(f"- [`{rel}`]({uri})  \n  ![{rel}]({uri})")
    return out


# --- declarations -------------------------------------------------------------------------------


def character(decl: ast.Character, base: Path) -> str:
    name = f' "{decl.name.value}"' if decl.name else ""
    out = [f"**character** `{decl.id.text}`{name}"]
    kind = _values(decl.items, "kind")
    if kind:
        out[0] += f" · {kind}"
    look = _words(decl.items, "look")
    if look:
        out += ["", look]
    voice = _words(decl.items, "voice")
    if voice:
        out += ["", f"voice: {voice}"]
    outfits = [i for i in decl.items if isinstance(i, (ast.Attr, ast.Block))
               and i.key.text == "outfit" and i.values]
    if outfits:
        out += ["", "outfits:"]
        for o in outfits:
            oname = ast.value_text(o.values[0])
            out.append(f"- `{oname}`: {outfit_look(decl, oname)}")
            if isinstance(o, ast.Block):
                out += ["  " + line for line in _image_lines(o.items, base)]
    images = _image_lines(decl.items, base)
    if images:
        out += ["", "references:", *images]
    return "\n".join(out)


def outfit(item: ast.Attr | ast.Block, decl: ast.Character, base: Path) -> str:
    name = ast.value_text(item.values[0])
    out = [f"**outfit** `{name}` of `{decl.id.text}`", "", outfit_look(decl, name)]
    if isinstance(item, ast.Block):
        images = _image_lines(item.items, base)
        if images:
            out += ["", "references:", *images]
    return "\n".join(out)


def location(decl: ast.Location, base: Path) -> str:
    name = f' "{decl.name.value}"' if decl.name else ""
    out = [f"**location** `{decl.id.text}`{name}", "", _words(decl.items, "look")]
    light = _values(decl.items, "light")
    if light:
        out += ["", f"light: {light}"]
    for b in decl.items:
        if isinstance(b, ast.Block) and b.key.text == "at" and b.values:
            out.append(f"- at `{ast.value_text(b.values[0])}`: {_words(b.items, 'look')}"
                       + (f" · light {_values(b.items, 'light')}"
                          if ast.find_attr(b.items, 'light') else ""))
    images = _image_lines(decl.items, base)
    if images:
        out += ["", "references:", *images]
    return "\n".join(out)


def preset(decl: ast.Preset, index: Index, where: str) -> str:
    kind = decl.kind.text
    slot = _values(decl.items, "slot")
    out = [f"**{kind} preset** `{decl.id.text}`" + (f" · {slot}" if slot else "")
           + f" · {where}"]
    words = _words(decl.items, "prompt")
    if words:
        out += ["", words]
    lens = _values(decl.items, "lens")
    if lens:
        out.append(f"lens {lens}")
    negative = _words(decl.items, "negative")
    if negative:
        out += ["", f"negative: {negative}"]
    bundle = ast.find_attr(decl.items, kind)
    if bundle is not None:
        out += ["", "bundles:"]
        for v in bundle.values:
            text = ast.value_text(v)
            inner = index.definitions(Symbol("preset", text, kind)) \
                if isinstance(v, ast.Name) else []
            node = inner[0].node if inner else None
            said = _words(node.items, "prompt") if isinstance(node, ast.Preset) else ""
            out.append(f"- `{text}`" + (f": {said}" if said else ""))
    return "\n".join(out)


def scene(decl: ast.Scene) -> str:
    title = f' "{decl.title.value}"' if decl.title else ""
    out = [f"**scene** `{decl.id.text}`{title}"]
    if decl.slug is not None:
        s = decl.slug
        out += ["", " ".join([s.written or s.setting, s.location.text]
                             + ([s.time.text] if s.time else []))]
    n = len(decl.shots)
    out += ["", f"{n} shot{'s' if n != 1 else ''}"]
    return "\n".join(out)


def attribute(spec_key: str, key: str) -> str | None:
    spec = schema.BLOCKS.get(spec_key)
    if spec is None:
        return None
    a = spec.attrs.get(key) or spec.blocks.get(key)
    if a is None:
        return None
    return f"**{key}** ({spec.name}) · {' '.join(a.sig)}\n\n{a.doc}"


def declaration(occ: Occurrence, index: Index) -> str | None:
    """The hover of a character, outfit, location, preset or scene (not a shot)."""
    defs = [occ] if occ.definition else index.definitions(occ.symbol)
    if not defs:
        return f"{occ.symbol.describe()} is not defined in this film"
    d = defs[0]
    base = d.path.parent
    if isinstance(d.node, ast.Character):
        return character(d.node, base)
    if isinstance(d.node, (ast.Attr, ast.Block)) and isinstance(d.parent, ast.Character):
        return outfit(d.node, d.parent, base)
    if isinstance(d.node, ast.Location):
        return location(d.node, base)
    if isinstance(d.node, ast.Preset):
        where = d.file.display.replace("<std>/", "std.").removesuffix(".film") \
            if d.file.role == "std" else f"`{d.file.display}:{d.span.line}`"
        return preset(d.node, index, where)
    if isinstance(d.node, ast.Scene):
        return scene(d.node)
    return None


# --- shots ------------------------------------------------------------------------------------


def shot_header(shot: ast.Shot, scene_decl: ast.Scene | None) -> list[str]:
    """What the source says of a shot, for when the film does not compile."""
    where = f" · scene `{scene_decl.id.text}`" if scene_decl is not None else ""
    dur = f" · {shot.duration.text}" if shot.duration else ""
    out = [f"**shot** `{shot.id.text}`{where}{dur}"]
    cast = _values(shot.items, "cast")
    if cast:
        out += ["", f"cast: {cast}"]
    return out


def shot(shot_decl: ast.Shot, scene_decl: ast.Scene, compiled: Any, history: Any) -> str:
    """The shot as the compiler sees it: `compiled` is a graph compile of its film
    (compiler.pipeline.Compiled), `history` what earlier builds left (engine.history)."""
    from .compiler.plan import make_plan, money

    if compiled is None or compiled.graph is None:
        errors = len(compiled.diags.errors) if compiled is not None else 0
        return "\n".join(shot_header(shot_decl, scene_decl) + [
            "", f"_The film has {errors} error{'s' if errors != 1 else ''}: its prompt and "
                "cost show once they are fixed._"])
    program = compiled.program()
    sc, sid = scene_decl.id.text, shot_decl.id.text
    info = next((s for s in program.shots if s.scene == sc and s.id == sid), None)
    if info is None:
        return "\n".join(shot_header(shot_decl, scene_decl))
    graph = compiled.graph
    own = [n for n, d in graph.nodes(data=True) if d["step"].scene == sc and d["step"].shot == sid]
    plan = make_plan(program, history, own)
    out = [f"**shot** `{sc}/{sid}` · {float(info.duration):g}s · shot {info.number} of "
           f"{len(program.shots)}"]
    if info.place:
        out[0] += f" · {info.place}"
    if info.cast:
        out += ["", "cast: " + ", ".join(f"`{c}`" + (f" ({o})" if o else "")
                                        + (f", {f}" if f != "figure" else "")
                                        for c, o, f in info.cast)]
    lowered = next((s for scn in compiled.film.scenes for s in scn.shots
                    if s.scene == sc and s.id == sid), None)
    camera = lowered.camera.look.presets if lowered is not None else ()
    light = lowered.light.presets if lowered is not None else ()
    looks = [f"camera {' '.join(camera)}" if camera else "",
             f"light {' '.join(light)}" if light else ""]
    if any(looks):
        out += ["", " · ".join(x for x in looks if x)]
    spread = ", ".join(f"{b} {n}" for b, n in info.candidates)
    out += ["", f"keyframe candidates: {spread or 'none (continues the shot before)'} · "
                f"{info.takes} clip take{'s' if info.takes != 1 else ''}"]
    out += ["", _status(plan, money)]
    picks = graph.graph.get("picks", {}).get((sc, sid))
    if picks is not None and picks.keyframe.candidates:
        k = picks.keyframe
        out.append(f"keyframe pick: {k.status}" + (f" ({k.why})" if k.why else "")
                   + (f", using `{k.used}`" if k.used else ""))
    used = picks.keyframe.used if picks is not None else None
    node = str(StepId.keyframe(sc, sid, used)) if used else None
    if node is not None and node in graph:
        step = graph.nodes[node]["step"]
        out += ["", f"**keyframe prompt** (`{node}` on `{step.backend or 'your files'}`):",
                "", "```text", step.prompt.strip(), "```"]
        if step.fields.negative:
            out += ["", f"negative: {step.fields.negative}"]
    elif info.candidates == ():
        out += ["", "_No keyframe of its own: its clip starts from the last frame of the shot "
                    "before._"]
    return "\n".join(out)


def _status(plan: Any, money: Any) -> str:
    """What `filmc plan` says of the shot: cached, what will run and what it costs, and what
    awaits a pick."""
    statuses = Counter(s.status for s in plan.steps)
    lines = []
    if statuses["lost"]:
        lines.append(f"**status: a pinned output is not in the store** ({statuses['lost']} "
                     "step(s)): `filmc plan` says which")
    if plan.to_run:
        cost = money(plan.cost, plan.currency)
        if plan.unpriced:
            cost += f" ({plan.unpriced} step{'s' if plan.unpriced != 1 else ''} with no price)"
        kinds = ", ".join(f"{n} {k} on {b}" for k, b, n in plan.by_kind_backend)
        reasons = Counter(_STATUS_WORDS.get(s.status, s.status) for s in plan.steps if s.to_run)
        words = ", ".join(f"{n} {w}" for w, n in reasons.items())
        lines.append(f"**status: will run** {plan.to_run} step{'s' if plan.to_run != 1 else ''}"
                     f" ({kinds}; {words}) · estimated **{cost}**")
    if statuses["waiting"]:
        why = plan.awaiting[0][1] if plan.awaiting else "a pick"
        n = statuses["waiting"]
        lines.append(f"**status: awaiting pick** ({why}): {n} step{'s' if n != 1 else ''} "
                     f"wait, estimated {money(plan.waiting_cost, plan.currency)} once picked · "
                     "`filmc review` or `filmc pick`")
    if not lines:
        lines.append("**status: cached** · every step of this shot is in the store · "
                     "nothing to pay")
    return "  \n".join(lines)
