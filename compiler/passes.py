"""AST → IR: pure passes, listed in order in `PASSES`.

Each pass takes the lowering state and returns a new one (`attrs.evolve`), so a
test or a tool can stop after any of them.  Input is a checked project (the
front end reported nothing fatal); output is `ir.Film`.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from fractions import Fraction
from pathlib import Path

import attrs

from ..lang import ast, literals, schema
from ..lang.check import Checked, speaking_time
from ..lang.loader import Project
from ..lang.tree import current as current_tree
from . import ir

# (step kind, the shot's `backend` override or None) → backend name
BackendChooser = Callable[[str, "str | None"], str]


FallbackChooser = Callable[[str, str, "str | None"], "str | None"]  # kind, backend, override


def no_fallback(kind: str, backend: str, override: str | None) -> str | None:
    return None


def default_chooser(kind: str, override: str | None) -> str:
    return override or "local"


@attrs.define(eq=False)
class LowerMemo:
    """What a process that compiles the same film again keeps of its last lowering, so that
    the scenes of the files that did not change are not lowered again.

    The parses of unchanged files are the same objects from one compile to the next
    (lang/parser.py remembers them by text), so a scene is known unchanged by identity.
    A scene's shots read nothing but their scene, the film's block and the declarations
    of the other files (presets, locations): the *context* is every module that holds
    anything but scenes, by identity, with filmc.toml as loaded (the backends the last
    passes choose) and the frame rate.  Any change there, and everything is lowered
    again.  A scene moved in the film keeps its shots, renumbered.  The later passes
    (dialogue timing, backends) are remembered by the identity of the shot they take."""

    context: tuple = ()
    scenes: dict[int, tuple[ast.Scene, int, ir.Scene]] = attrs.field(factory=dict)
    shots: dict[tuple[str, int], tuple[ir.Shot, ir.Shot]] = attrs.field(factory=dict)
    reused: int = 0  # scenes the last lowering put back
    made: int = 0

    def loaded(self) -> None:
        """Keyed again by the scenes' and shots' ids, once unpickled
        (filmc/memocache.py)."""
        self.scenes = {id(v[0]): v for v in self.scenes.values()}
        self.shots = {(k[0], id(v[0])): v for k, v in self.shots.items()}


@attrs.frozen
class State:
    project: Project = attrs.field(eq=False)
    checked: Checked = attrs.field(eq=False)
    choose: BackendChooser = attrs.field(eq=False, default=default_chooser)
    fallback: FallbackChooser = attrs.field(eq=False, default=no_fallback)
    presets: dict = attrs.field(factory=dict, eq=False)  # kind → name → preset items
    memo: dict = attrs.field(factory=dict, eq=False)  # equal camera/light/style lines resolve once
    characters: tuple[ir.Character, ...] = ()
    locations: tuple[ir.Location, ...] = ()
    scenes: tuple[ir.Scene, ...] = ()
    sound: tuple[ir.Sound, ...] = ()
    # What the last compile of this process lowered (None: nothing kept), and this one's
    lowered: LowerMemo | None = attrs.field(default=None, eq=False)
    kept: LowerMemo | None = attrs.field(default=None, eq=False)


# --- pass 1: characters and locations ---------------------------------------------------


def lower_entities(st: State) -> State:
    sym = st.checked.symbols
    root = st.project.root
    chars = []
    for cid, (decl, f) in sym.characters.items():
        outfits = []
        for item in decl.items:
            if isinstance(item, (ast.Attr, ast.Block)) and item.key.text == "outfit" and item.values:
                name = item.values[0].text  # type: ignore[union-attr]
                look = _str_value(item.values[1]) if len(item.values) > 1 else ""
                body = item.items if isinstance(item, ast.Block) else ()
                look = look or _text(body, "look")
                outfits.append(ir.Outfit(name, look, _refs(body, f.path.parent, root)))
        chars.append(ir.Character(cid, decl.name.value if decl.name else cid, _text(decl.items, "look"),
                                  _text(decl.items, "voice"), _refs(decl.items, f.path.parent, root),
                                  tuple(outfits), _tags(decl.items), _kind(decl.items)))
    locs = []
    for lid, (place, f) in sym.locations.items():
        times = tuple(
            ir.TimeOfDay(item.values[0].text, _text(item.items, "look"),  # type: ignore[union-attr]
                         _refs(item.items, f.path.parent, root))
            for item in place.items
            if isinstance(item, ast.Block) and item.key.text == "at" and item.values)
        locs.append(ir.Location(lid, place.name.value if place.name else lid,
                                _text(place.items, "look"), _refs(place.items, f.path.parent, root),
                                times))
    presets = {kind: {name: p.items for name, (p, _f) in table.items()}
               for kind, table in sym.presets.items()}
    return attrs.evolve(st, characters=tuple(chars), locations=tuple(locs), presets=presets)


# --- pass 2: scenes and shots, defaults flowing film → scene → shot -------------------------


def lower_scenes(st: State) -> State:
    film = st.project.film
    film_items = film.items if film else ()
    fps = st.checked.fps
    film_level = _Level(film_items)
    scenes = []
    number = 0
    last, kept = st.lowered, st.kept
    for scene, _f in st.project.scenes:
        if last is not None and kept is not None:
            found = last.scenes.get(id(scene))
            if found is not None and found[0] is scene:
                lowered = found[2]
                if found[1] != number:  # the scene moved: its shots renumbered
                    lowered = attrs.evolve(lowered, shots=tuple(
                        attrs.evolve(shot, number=number + i)
                        for i, shot in enumerate(lowered.shots, 1)))
                kept.scenes[id(scene)] = (scene, number, lowered)
                kept.reused += 1
                scenes.append(lowered)
                number += len(lowered.shots)
                continue
        start = number
        loc_id = scene.slug.location.text if scene.slug else None
        time = scene.slug.time_of_day if scene.slug else None  # `黄昏` is DUSK
        loc_decl = st.checked.symbols.locations.get(loc_id or "", (None, None))[0]
        loc_items = loc_decl.items if loc_decl else ()
        at_items = _at_items(loc_items, time)
        scene_level = _Level(scene.items)
        levels = (film_level, scene_level)  # farthest first
        light_levels = (film_level, _Level(loc_items), _Level(at_items), scene_level)
        shots = []
        for shot in scene.shots:
            number += 1
            own = _Level(shot.items)
            chain = (*levels, own)
            light_chain = (*light_levels, own)
            duration = _duration(shot, chain, fps)
            cast = _nearest(chain[1:], "cast")
            shots.append(ir.Shot(
                id=shot.id.text, scene=scene.id.text, number=number, duration=duration,
                camera=_camera(st, _nearest(chain, "camera")),
                light=_look(st, "light", _nearest(light_chain, "light")),
                style=_look(st, "style", _nearest(chain, "style")),
                cast=tuple(ir.CastMember(v.name.text, v.arg.text) if isinstance(v, ast.Ref)
                           else ir.CastMember(v.text, None)  # type: ignore[union-attr]
                           for v in (cast.values if cast else ())),
                action=_text(shot.items, "action"),
                negative=_str_value(_first(_nearest(chain, "negative"))),
                candidates=_candidates(chain),
                takes=int(_literal(_nearest(chain, "takes"), 1)),
                seed=_seed(_nearest(chain, "seed")),
                backends=_backend_overrides(chain),
                fallbacks=_backend_overrides(chain, "fallback"),
                lines=tuple(_lines(shot)),
                language=_str_value(_first(_nearest(chain, "language"))) or None,
                location=loc_id, time=time,
                framing=tuple((a.values[0].text, a.values[1].text)  # type: ignore[union-attr]
                              for a in ast.attrs_of(shot.items)
                              if a.key.text == "framing" and len(a.values) == 2),
                continues=ast.find_attr(shot.items, "first_frame") is not None,
                ends_on_next=ast.find_attr(shot.items, "last_frame") is not None,
                tags=_tags(shot.items), notes=tuple(_all_text(shot.items, "note")),
            ))
        lowered = ir.Scene(scene.id.text, scene.title.value if scene.title else scene.id.text,
                           scene.slug.setting if scene.slug else None, loc_id, time, tuple(shots))
        if kept is not None:
            kept.scenes[id(scene)] = (scene, start, lowered)
            kept.made += 1
        scenes.append(lowered)
    return attrs.evolve(st, scenes=tuple(scenes))


def _each_shot(st: State, name: str, lower: Callable[[ir.Shot], ir.Shot]) -> State:
    """`lower` over every shot, or what it gave last time for the same shot object."""
    last, kept = st.lowered, st.kept
    scenes = []
    for scene in st.scenes:
        shots = []
        for shot in scene.shots:
            found = last.shots.get((name, id(shot))) if last is not None else None
            if found is not None and found[0] is shot:
                out = found[1]
            else:
                out = lower(shot)
            if kept is not None:
                kept.shots[(name, id(shot))] = (shot, out)
            shots.append(out)
        scenes.append(attrs.evolve(scene, shots=tuple(shots)))
    return attrs.evolve(st, scenes=tuple(scenes))


# --- pass 3: dialogue timing inside each shot ---------------------------------------------------


def time_dialogue(st: State) -> State:
    """Spread each shot's lines over it (`time_lines`), by the estimated speaking time."""
    return _each_shot(st, "dialogue", lambda shot: time_lines(shot) if shot.lines else shot)


def time_lines(shot: ir.Shot, said: Mapping[int, Fraction] | None = None) -> ir.Shot:
    """Spread a shot's lines over it: equal pauses around lines said at their length;
    lines that cannot fit are squeezed to share the shot evenly.  A line's length is
    `said[line.index]` where known (the real length of its speech, once made:
    engine/lengths.py), else the estimate for its words."""
    said = said or {}
    need = [said.get(line.index)
            or Fraction(round(speaking_time(line.text) * 1000), 1000) or Fraction(1, 2)
            for line in shot.lines]
    total = sum(need)
    if total >= shot.duration:
        need = [shot.duration * n / total for n in need]
        gap = Fraction(0)
    else:
        gap = (shot.duration - total) / (len(need) + 1)
    t = Fraction(0)
    lines = []
    for line, n in zip(shot.lines, need):
        t += gap
        lines.append(attrs.evolve(line, start=t, end=t + n, language=shot.language))
        t += n
    return attrs.evolve(shot, lines=tuple(lines))


# --- pass 4: the backend of every step kind of every shot -------------------------------------


def choose_backends(st: State) -> State:
    def choose(shot: ir.Shot) -> ir.Shot:
        overrides = dict(shot.backends)
        chosen = tuple((k, st.choose(k, overrides.get(k))) for k in schema.STEP_KINDS)
        # Each `candidates` line's backend, the shot's keyframe backend when it names
        # none; lines that come to the same backend add up (offline: all on `local`).
        counts: dict[str, int] = {}
        for name, n in shot.candidates:
            backend = st.choose("keyframe", name or overrides.get("keyframe"))
            counts[backend] = counts.get(backend, 0) + n
        said = dict(shot.fallbacks)
        fallbacks = tuple((k, f) for k, b in chosen
                          if (f := st.fallback(k, b, said.get(k))) is not None)
        return attrs.evolve(shot, backends=chosen, candidates=tuple(counts.items()),
                            fallbacks=fallbacks)

    return _each_shot(st, "backends", choose)


# --- pass 5: music, ambience and effects in film time (compiler/sound.py) -------------------


def place_sound(st: State) -> State:
    from .sound import place_sound as place

    locations = {lid: decl.items for lid, (decl, _f) in st.checked.symbols.locations.items()}
    return attrs.evolve(st, sound=place(st.project, st.scenes, st.checked.fps, locations))


PASSES: tuple[tuple[str, Callable[[State], State]], ...] = (
    ("entities", lower_entities),
    ("scenes", lower_scenes),
    ("dialogue", time_dialogue),
    ("backends", choose_backends),
    ("sound", place_sound),
)


def lower(project: Project, checked: Checked, choose: BackendChooser = default_chooser,
          stop_after: str | None = None,
          fallback: FallbackChooser = no_fallback, memo: LowerMemo | None = None,
          choices: object = None) -> ir.Film:
    """`memo`: what the last lowering in this process kept (LowerMemo), updated for the
    next; `choices`: what decides `choose` and `fallback` (filmc.toml as loaded, and
    whether offline), compared by value with the memo's."""
    last = kept = None
    if memo is not None:
        context = (choices, checked.fps, *project.shared_modules())
        same = len(context) == len(memo.context) and context[:2] == memo.context[:2] and all(
            a is b for a, b in zip(context[2:], memo.context[2:]))
        last = attrs.evolve(memo) if same else None
        memo.context, memo.scenes, memo.shots, memo.reused, memo.made = context, {}, {}, 0, 0
        kept = memo
    st = State(project, checked, choose, fallback, lowered=last, kept=kept)
    for name, run in PASSES:
        st = run(st)
        if name == stop_after:
            break
    film = project.film
    w, h = (literals.size(_first(ast.find_attr(film.items, "size")).text)  # type: ignore[union-attr]
            if film and ast.find_attr(film.items, "size") else (1920, 1080))
    lang_attr = ast.find_attr(film.items, "language") if film else None
    style = _look(st, "style", ast.find_attr(film.items, "style") if film else None)
    return ir.Film(film.title.value if film else project.main.display, w, h, checked.fps,
                   _str_value(_first(lang_attr)) or None, style, st.characters, st.locations,
                   st.scenes, st.sound)


# --- helpers ----------------------------------------------------------------------------------


def _first(a: ast.Attr | None) -> ast.Value | None:
    return a.values[0] if a is not None and a.values else None


def _str_value(v) -> str:
    return v.value if isinstance(v, ast.Str) else ""


def _text(items, key: str) -> str:
    return _str_value(_first(ast.find_attr(items, key)))


def _all_text(items, key: str) -> list[str]:
    return [_str_value(a.values[0]) for a in ast.attrs_of(items) if a.key.text == key and a.values]


def _kind(items) -> str:
    """A character's `kind` (person, animal, creature); a person when not given."""
    v = _first(ast.find_attr(items, "kind"))
    return v.text if isinstance(v, ast.Name) else "person"


def _tags(items) -> tuple[str, ...]:
    a = ast.find_attr(items, "tags")
    return tuple(v.value if isinstance(v, ast.Str) else v.text for v in a.values) if a else ()  # type: ignore[union-attr]


class _Level:
    """One level's attribute lines (the film's, a scene's, a shot's...), indexed once: a
    scene's body holds its shots, and looking each shot's defaults up by walking it made
    lowering a scene quadratic in its shots."""

    __slots__ = ("lines", "first")

    def __init__(self, items: tuple) -> None:
        self.lines: list[ast.Attr] = [a for a in items if isinstance(a, ast.Attr)]
        self.first: dict[str, ast.Attr] = {}
        for a in self.lines:
            self.first.setdefault(a.key.text, a)


def _nearest(levels: tuple[_Level, ...], key: str) -> ast.Attr | None:
    """The attribute from the nearest level that sets it (levels run farthest first)."""
    for level in reversed(levels):
        a = level.first.get(key)
        if a is not None:
            return a
    return None


def _literal(a: ast.Attr | None, default: int) -> Fraction:
    v = _first(a)
    return literals.number(v.text) if isinstance(v, ast.Literal) else Fraction(default)


def _seed(a: ast.Attr | None) -> int | None:
    v = _first(a)
    return literals.integer(v.text) if isinstance(v, ast.Literal) else None


def _duration(shot: ast.Shot, chain, fps: Fraction) -> Fraction:
    if shot.duration is not None:
        return literals.duration(shot.duration.text).at(fps)
    a = _nearest(chain[:-1], "duration")
    return literals.duration(_first(a).text).at(fps) if a else Fraction(0)  # type: ignore[union-attr]


def _candidates(chain: tuple[_Level, ...]) -> tuple[tuple[str | None, int], ...]:
    """The `candidates` lines of the nearest level that has any (a shot's lines replace
    its scene's, whole); one candidate on the keyframe backend when no level has one."""
    for level in reversed(chain):
        lines = [a for a in level.lines if a.key.text == "candidates" and a.values]
        if lines:
            return tuple((a.values[1].text if len(a.values) > 1 else None,  # type: ignore[union-attr]
                          int(literals.integer(a.values[0].text)))  # type: ignore[union-attr]
                         for a in lines)
    return ((None, 1),)


def _backend_overrides(chain: tuple[_Level, ...], key: str = "backend") -> tuple[tuple[str, str], ...]:
    """`backend STEP NAME` (or `fallback STEP NAME`) lines, nearest level winning per step
    kind."""
    out: dict[str, str] = {}
    for level in chain:
        for a in level.lines:
            if a.key.text == key and len(a.values) == 2:
                out[a.values[0].text] = a.values[1].text  # type: ignore[union-attr]
    return tuple(sorted(out.items()))


def _at_items(loc_items, time: str | None):
    for item in loc_items:
        if isinstance(item, ast.Block) and item.key.text == "at" and item.values \
                and item.values[0].text == time:  # type: ignore[union-attr]
            return item.items
    return ()


def _lines(shot: ast.Shot):
    n = 0
    for item in shot.items:
        if isinstance(item, ast.Dialogue):
            n += 1
            yield ir.Line(n, item.speaker.text, item.paren, item.text.value, Fraction(0), Fraction(0), None)


def _refs(items, base: Path, root: Path) -> tuple[ir.RefFile, ...]:
    out = []
    for a in ast.attrs_of(items):
        if a.key.text == "ref" and a.values and isinstance(a.values[0], ast.Str):
            path = Path(os.path.normpath(base / a.values[0].value))
            out.append(ir.RefFile(path.relative_to(root).as_posix(), file_digest(path)))
    return tuple(out)


def file_digest(path: Path) -> str:
    """sha256 of a file's bytes, from the source tree in use (lang/tree.py: memoised in
    the working tree by the file's inode, size, mtime and ctime)."""
    return current_tree().digest(path)


# --- presets → looks ------------------------------------------------------------------------------

_CAMERA_PARAMS = ("scale", "tilt", "roll", "overhead", "amount")


def _expand(st: State, kind: str, name: str, seen: frozenset = frozenset()) -> list[tuple[str, object]]:
    """A preset as a flat list of (attribute, value) in order, bundles first."""
    items = st.presets.get(kind, {}).get(name)
    if items is None or name in seen:
        return []
    out: list[tuple[str, object]] = []
    for a in ast.attrs_of(items):
        key = a.key.text
        if key == kind:  # a bundle: `camera a b`, `light a b`
            for v in a.values:
                if isinstance(v, ast.Name):
                    out += _expand(st, kind, v.text, seen | {name})
                else:
                    out.append(("value", v))
        else:
            out.append((key, a.values))
    return out


def _look(st: State, kind: str, a: ast.Attr | None) -> ir.Look:
    key = (kind, a.values if a else ())
    found = st.memo.get(key)
    if found is None:
        found = st.memo[key] = _make_look(st, kind, a)
    return found


def _make_look(st: State, kind: str, a: ast.Attr | None) -> ir.Look:
    words: list[str] = []
    negative: list[str] = []
    presets: list[str] = []
    params: dict[str, object] = {}
    for v in a.values if a else ():
        if isinstance(v, ast.Str):
            words.append(v.value)
            continue
        if isinstance(v, ast.Name):
            presets.append(v.text)
            for key, vals in _expand(st, kind, v.text):
                _merge(key, vals, words, negative, params)
    return ir.Look(tuple(words), tuple(negative), tuple(presets), tuple(sorted(params.items())))


def _merge(key: str, vals, words: list, negative: list, params: dict) -> None:
    if key == "value":
        if isinstance(vals, ast.Str):
            words.append(vals.value)
        return
    if key == "prompt":
        words.append(vals[0].value)
    elif key == "negative":
        negative.append(vals[0].value)
    elif key == "palette":
        params["palette"] = tuple(v.text.lower() for v in vals)
    elif key in ("key", "motion", "slot"):
        params[key] = vals[0].text
    elif key == "lens":
        params["lens_mm"] = float(literals.lens(vals[0].text))
    elif key != "note" and vals and isinstance(vals[0], ast.Literal):
        params[key] = float(literals.number(vals[0].text))


def _slot_presets(st: State, name: str, seen: frozenset) -> dict[str, tuple[str, str]]:
    """slot → (preset name, its prompt) for a camera preset, looking inside bundles."""
    items = st.presets.get("camera", {}).get(name)
    if items is None or name in seen:
        return {}
    out: dict[str, tuple[str, str]] = {}
    inc = ast.find_attr(items, "camera")
    for v in inc.values if inc else ():
        if isinstance(v, ast.Name):
            out.update(_slot_presets(st, v.text, seen | {name}))
    slot = _first(ast.find_attr(items, "slot"))
    if isinstance(slot, ast.Name):
        out[slot.text] = (name, _text(items, "prompt"))
    return out


def _camera(st: State, a: ast.Attr | None) -> ir.Camera:
    key = ("camera", a.values if a else ())
    found = st.memo.get(key)
    if found is None:
        found = st.memo[key] = _make_camera(st, a)
    return found


def _make_camera(st: State, a: ast.Attr | None) -> ir.Camera:
    slots: dict[str, str] = {}
    words: list[str] = []
    negative: list[str] = []
    params: dict[str, object] = {}
    presets: list[str] = []
    lens: Fraction | None = None
    movement_words = ""
    for v in a.values if a else ():
        if isinstance(v, ast.Str):
            words.append(v.value)
        elif isinstance(v, ast.Literal):
            lens = literals.lens(v.text)
            words.append(f"{v.text} lens")
        elif isinstance(v, ast.Name):
            presets.append(v.text)
            for key, vals in _expand(st, "camera", v.text):
                _merge(key, vals, words, negative, params)
            for slot, (name, prompt) in _slot_presets(st, v.text, frozenset()).items():
                slots[slot] = name
                if slot == "movement":
                    movement_words = prompt
    params.pop("slot", None)
    if lens is None and "lens_mm" in params:
        lens = Fraction(params["lens_mm"]).limit_denominator(1000)  # type: ignore[call-overload]
    look = ir.Look(tuple(words), tuple(negative), tuple(presets), tuple(sorted(params.items())))
    return ir.Camera(slots.get("size"), slots.get("angle"), lens, slots.get("movement"), look,
                     movement_words)
