"""What changed between two versions of a film, in the film's own terms.

`filmc diff` compiles two revisions (lang/tree.py) and compares them here: shots added,
removed, moved or renamed; each changed shot's fields (`camera.lens 35mm → 85mm`,
`cast +CHEN(winter)`, a dialogue line); characters, outfits and locations changed, each
with the shots it affects; picks changed in film.lock; and the consequence: the steps
the new version needs that the old one did not (their keys moved), by kind and
backend, with what they would cost.  `filmc log SHOT` uses the same comparison for one
shot across commits.  Nothing here reads files or the store: the caller says which
step keys are already stored.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from fractions import Fraction
from typing import Any

import attrs

from . import ir
from .plan import estimate, money

ADDED, REMOVED, CHANGED, MOVED, RENAMED = "added", "removed", "changed", "moved", "renamed"
_MARK = {ADDED: "+", REMOVED: "-", CHANGED: "~", MOVED: ">", RENAMED: "="}


@attrs.frozen
class FieldChange:
    """One field of a shot, character or location: `camera.lens 35mm → 85mm`; a list
    field (cast, candidates, tags) says what joined and what left."""

    field: str
    old: str | None = None
    new: str | None = None
    added: tuple[str, ...] = ()
    removed: tuple[str, ...] = ()

    def text(self) -> str:
        if self.added or self.removed:
            return f"{self.field} " + " ".join([*(f"+{a}" for a in self.added),
                                                 *(f"-{r}" for r in self.removed)])
        if self.old is None:
            return f"{self.field} + {self.new}"
        if self.new is None:
            return f"{self.field} - {self.old}"
        return f"{self.field} {self.old} → {self.new}"

    def to_json(self) -> dict:
        return attrs.asdict(self)


@attrs.frozen
class Rebuild:
    """The steps of one kind on one backend that the new version needs anew."""

    kind: str
    backend: str
    steps: int
    stored: int  # of them, already in the store (they cost nothing)
    cost: float | None  # of the rest; None when a backend has no price

    def to_json(self) -> dict:
        return attrs.asdict(self)


@attrs.frozen
class ShotChange:
    shot: str  # its id in the new version (the old one when removed)
    scene: str
    status: str  # added, removed, changed, moved or renamed
    fields: tuple[FieldChange, ...] = ()
    because: tuple[str, ...] = ()  # changes elsewhere that reach it: "CHEN's outfit winter"
    old_shot: str | None = None  # renamed from
    old_scene: str | None = None  # moved from
    steps: int = 0  # steps it needs anew
    cost: float | None = 0.0

    @property
    def address(self) -> str:
        return f"{self.scene}/{self.shot}"

    def to_json(self) -> dict:
        out = attrs.asdict(self, recurse=False)
        out["fields"] = [f.to_json() for f in self.fields]
        out["because"] = list(self.because)
        return out


@attrs.frozen
class EntityChange:
    """A character, an outfit, a location or the film's own settings."""

    kind: str  # character, outfit, location, film
    id: str  # CHEN, CHEN(winter), STEPPE, film
    status: str
    fields: tuple[FieldChange, ...] = ()
    shots: tuple[str, ...] = ()  # the shots it appears in (the new version's)

    def to_json(self) -> dict:
        out = attrs.asdict(self, recurse=False)
        out["fields"] = [f.to_json() for f in self.fields]
        out["shots"] = list(self.shots)
        return out


@attrs.frozen
class PickChange:
    shot: str
    kind: str  # keyframe or clip
    old: str | None
    new: str | None

    def text(self) -> str:
        return f"{self.kind} {self.old or '(none)'} → {self.new or '(none)'}"

    def to_json(self) -> dict:
        return attrs.asdict(self)


@attrs.frozen
class FilmDiff:
    old_label: str
    new_label: str
    shots: tuple[ShotChange, ...]
    entities: tuple[EntityChange, ...]
    picks: tuple[PickChange, ...]
    rebuild: tuple[Rebuild, ...]
    currency: str

    @property
    def steps(self) -> int:
        return sum(r.steps for r in self.rebuild)

    @property
    def cost(self) -> float | None:
        costs = [r.cost for r in self.rebuild]
        return None if any(c is None for c in costs) else sum(c for c in costs if c is not None)

    @property
    def empty(self) -> bool:
        return not (self.shots or self.entities or self.picks or self.rebuild)

    def to_json(self) -> dict:
        return {"old": self.old_label, "new": self.new_label, "currency": self.currency,
                "shots": [s.to_json() for s in self.shots],
                "entities": [e.to_json() for e in self.entities],
                "picks": [p.to_json() for p in self.picks],
                "rebuild": [r.to_json() for r in self.rebuild],
                "steps": self.steps, "cost": self.cost}


# --- one version's fields, flat ---------------------------------------------------------------


def _secs(d: Fraction) -> str:
    return f"{float(d):g}s"


def _look(look: ir.Look) -> str | None:
    words = [*look.presets, *(w for w in look.words if w not in look.presets)]
    return " ".join(words) or None


def shot_fields(s: ir.Shot) -> dict[str, Any]:
    """A shot as `field → value` (a string, or a tuple for a list field), the way a
    film-maker names its parts."""
    cam = s.camera
    out: dict[str, Any] = {
        "duration": _secs(s.duration),
        "camera.size": cam.size, "camera.angle": cam.angle,
        "camera.lens": f"{float(cam.lens_mm):g}mm" if cam.lens_mm is not None else None,
        "camera.movement": cam.movement,
        "camera": tuple(cam.look.presets),
        "camera.words": " ".join(cam.look.words) or None,
        "light": _look(s.light), "style": _look(s.style),
        "location": s.location, "time": s.time,
        "cast": tuple(f"{c.character}({c.outfit})" if c.outfit else c.character
                      for c in s.cast),
        "action": s.action or None, "negative": s.negative or None,
        "candidates": tuple(f"{n} {b or 'default'}" for b, n in s.candidates),
        "takes": str(s.takes), "seed": None if s.seed is None else str(s.seed),
        "language": s.language,
        "framing": tuple(f"{c} {f}" for c, f in s.framing),
        "first_frame": "previous" if s.continues else None,
        "last_frame": "next" if s.ends_on_next else None,
        "tags": tuple(s.tags),
    }
    for kind, backend in s.backends:
        out[f"backend.{kind}"] = backend
    for kind, backend in s.fallbacks:
        out[f"fallback.{kind}"] = backend
    for line in s.lines:
        paren = f" ({line.paren})" if line.paren else ""
        out[f"line {line.index}"] = f'{line.speaker}{paren}: "{line.text}"'
    return out


def compare_fields(old: Mapping[str, Any], new: Mapping[str, Any]) -> tuple[FieldChange, ...]:
    changes = []
    for name in list(old) + [n for n in new if n not in old]:
        a, b = old.get(name), new.get(name)
        if a == b:
            continue
        if name.endswith(".words") and old.get(name[:-6]) != new.get(name[:-6]):
            continue  # the presets changed, and their words with them: said once, by name
        if isinstance(a, tuple) or isinstance(b, tuple):
            a, b = a or (), b or ()
            changes.append(FieldChange(name, added=tuple(x for x in b if x not in a),
                                       removed=tuple(x for x in a if x not in b))
                           if set(a) != set(b) else
                           FieldChange(name, ", ".join(a), ", ".join(b)))
        else:
            changes.append(FieldChange(name, None if a is None else str(a),
                                       None if b is None else str(b)))
    return tuple(changes)


def _refs(refs: Iterable[ir.RefFile]) -> tuple[str, ...]:
    return tuple(f"{r.path}@{r.digest[:8]}" for r in refs)


def character_fields(c: ir.Character) -> dict[str, Any]:
    return {"name": c.name, "look": c.look, "voice": c.voice, "kind": c.kind,
            "ref": _refs(c.refs), "outfits": tuple(o.name for o in c.outfits)}


def outfit_fields(o: ir.Outfit) -> dict[str, Any]:
    return {"look": o.look, "ref": _refs(o.refs)}


def location_fields(loc: ir.Location) -> dict[str, Any]:
    out: dict[str, Any] = {"name": loc.name, "look": loc.look, "ref": _refs(loc.refs),
                           "times": tuple(t.time for t in loc.times)}
    for t in loc.times:
        out[f"{t.time}.look"] = t.look
        out[f"{t.time}.ref"] = _refs(t.refs)
    return out


def film_fields(f: ir.Film) -> dict[str, Any]:
    return {"size": f"{f.width}x{f.height}", "fps": f"{float(f.fps):g}",
            "language": f.language, "style": _look(f.style)}


# --- the comparison ---------------------------------------------------------------------------


def _shots(film: ir.Film | None) -> dict[str, ir.Shot]:
    return {s.id: s for sc in (film.scenes if film else ()) for s in sc.shots}


def _moved(old: list[str], new: list[str]) -> set[str]:
    """The shots (in both) that changed place: those outside a longest common
    subsequence of the two orders, so that one insertion moves nothing."""
    common = set(old) & set(new)
    a = [x for x in old if x in common]
    b = [x for x in new if x in common]
    pos = {x: i for i, x in enumerate(a)}
    seq = [pos[x] for x in b]
    # longest increasing subsequence of `seq`, patience sorting
    import bisect

    tails: list[int] = []
    tails_at: list[int] = []
    prev = [-1] * len(seq)
    for i, v in enumerate(seq):
        j = bisect.bisect_left(tails, v)
        if j == len(tails):
            tails.append(v)
            tails_at.append(i)
        else:
            tails[j] = v
            tails_at[j] = i
        prev[i] = tails_at[j - 1] if j > 0 else -1
    keep: set[str] = set()
    k = tails_at[-1] if tails_at else -1
    while k >= 0:
        keep.add(b[k])
        k = prev[k]
    return common - keep


def _step_shots(graph: Any) -> dict[str, str | None]:
    return {n: d["step"].sid.shot for n, d in graph.nodes(data=True)} if graph is not None else {}


def compare(old: Any, new: Any, old_label: str, new_label: str,
            stored: Iterable[str] = ()) -> FilmDiff:
    """Two compiled versions (compiler.pipeline.Compiled, to the graph) → their FilmDiff.
    `stored`: step keys the store holds already (they are rebuilt for nothing)."""
    stored = set(stored)
    old_shots, new_shots = _shots(old.film), _shots(new.film)
    film_new, film_old = new.film, old.film

    # Which shots each character, outfit and location reaches (in the new version).
    wearing: dict[str, list[str]] = {}
    at: dict[str, list[str]] = {}
    for s in new_shots.values():
        for c in s.cast:
            wearing.setdefault(c.character, []).append(s.id)
            if c.outfit:
                wearing.setdefault(f"{c.character}({c.outfit})", []).append(s.id)
        if s.location:
            at.setdefault(s.location, []).append(s.id)

    entities: list[EntityChange] = []
    because: dict[str, list[str]] = {}

    def entity(kind: str, ident: str, a: dict | None, b: dict | None, reach: list[str]) -> None:
        status = ADDED if a is None else REMOVED if b is None else CHANGED
        fields = compare_fields(a or {}, b or {}) if a is not None and b is not None else ()
        if status == CHANGED and not fields:
            return
        entities.append(EntityChange(kind, ident, status, fields, tuple(reach)))
        if status == CHANGED:
            what = {"character": f"{ident}'s look", "outfit": f"{ident}'s outfit",
                    "location": f"location {ident}"}.get(kind, ident)
            for shot in reach:
                because.setdefault(shot, []).append(what)

    if film_old is not None and film_new is not None:
        a_chars = {c.id: c for c in film_old.characters}
        b_chars = {c.id: c for c in film_new.characters}
        for cid in [*a_chars, *(c for c in b_chars if c not in a_chars)]:
            ca, cb = a_chars.get(cid), b_chars.get(cid)
            entity("character", cid, None if ca is None else character_fields(ca),
                   None if cb is None else character_fields(cb), wearing.get(cid, []))
            if ca is not None and cb is not None:
                oa = {o.name: o for o in ca.outfits}
                ob = {o.name: o for o in cb.outfits}
                for name in [*oa, *(n for n in ob if n not in oa)]:
                    ident = f"{cid}({name})"
                    entity("outfit", ident, None if name not in oa else outfit_fields(oa[name]),
                           None if name not in ob else outfit_fields(ob[name]),
                           wearing.get(ident, []))
        a_locs = {loc.id: loc for loc in film_old.locations}
        b_locs = {loc.id: loc for loc in film_new.locations}
        for lid in [*a_locs, *(x for x in b_locs if x not in a_locs)]:
            la, lb = a_locs.get(lid), b_locs.get(lid)
            entity("location", lid, None if la is None else location_fields(la),
                   None if lb is None else location_fields(lb), at.get(lid, []))
        fa, fb = film_fields(film_old), film_fields(film_new)
        if fa != fb:
            entities.append(EntityChange("film", "film", CHANGED, compare_fields(fa, fb),
                                         tuple(new_shots)))

    # Steps the new version needs that the old one did not.
    old_keys = {d["step"].key for _n, d in old.graph.nodes(data=True)} \
        if old.graph is not None else set()
    rows: dict[tuple[str, str], list] = {}
    per_shot: dict[str, list] = {}
    if new.graph is not None:
        for _n, d in new.graph.nodes(data=True):
            step = d["step"]
            if step.key in old_keys:
                continue
            backend = step.backend or "(your file)"
            cost: float | None = 0.0
            if step.key not in stored and step.pin is None:
                cost = estimate(step, new.backends or {})
            row = rows.setdefault((step.kind, backend), [0, 0, 0.0])
            row[0] += 1
            if step.key in stored or step.pin is not None:
                row[1] += 1
            row[2] = None if row[2] is None or cost is None else row[2] + cost
            if step.sid.shot:
                mine = per_shot.setdefault(step.sid.shot, [0, 0.0])
                mine[0] += 1
                mine[1] = None if mine[1] is None or cost is None else mine[1] + cost
    order = {k: i for i, k in enumerate(("sheet", "plate", "keyframe", "clip", "lastframe",
                                         "speech", "shot"))}
    rebuild = tuple(Rebuild(k, b, n, st, c) for (k, b), (n, st, c) in
                    sorted(rows.items(), key=lambda kv: (order.get(kv[0][0], 99), kv[0])))

    # Shots.
    changes: list[ShotChange] = []
    removed = [i for i in old_shots if i not in new_shots]
    added = [i for i in new_shots if i not in old_shots]
    renamed: dict[str, str] = {}  # new id → old id
    for nid in added:
        fb = shot_fields(new_shots[nid])
        for oid in removed:
            if oid not in renamed.values() and shot_fields(old_shots[oid]) == fb:
                renamed[nid] = oid
                break
    moved = _moved([i for i in old_shots if i in new_shots or i in renamed.values()],
                   [renamed.get(i, i) for i in new_shots
                    if i in old_shots or i in renamed])
    for sid, s in new_shots.items():
        steps, cost = per_shot.get(sid, (0, 0.0))
        why = tuple(dict.fromkeys(because.get(sid, ())))
        if sid in renamed:
            o = old_shots[renamed[sid]]
            changes.append(ShotChange(sid, s.scene, RENAMED, (), why, old_shot=o.id,
                                      old_scene=o.scene if o.scene != s.scene else None,
                                      steps=steps, cost=cost))
            continue
        if sid not in old_shots:
            changes.append(ShotChange(sid, s.scene, ADDED, (), why, steps=steps, cost=cost))
            continue
        o = old_shots[sid]
        fields = compare_fields(shot_fields(o), shot_fields(s))
        was_moved = sid in moved or o.scene != s.scene
        if fields or why or was_moved or steps:
            status = MOVED if was_moved and not fields and not why else CHANGED
            changes.append(ShotChange(sid, s.scene, status, fields, why,
                                      old_scene=o.scene if o.scene != s.scene else None,
                                      steps=steps, cost=cost))
    for oid in removed:
        if oid not in renamed.values():
            changes.append(ShotChange(oid, old_shots[oid].scene, REMOVED))

    # Picks.
    picks: list[PickChange] = []
    a_lock = old.lock.shots if old.lock is not None else {}
    b_lock = new.lock.shots if new.lock is not None else {}
    for shot in sorted(set(a_lock) | set(b_lock)):
        la, lb = a_lock.get(shot), b_lock.get(shot)
        for kind in ("keyframe", "clip"):
            pa = getattr(la, kind, None) if la is not None else None
            pb = getattr(lb, kind, None) if lb is not None else None
            if (pa and (pa.name, pa.digest)) != (pb and (pb.name, pb.digest)):
                picks.append(PickChange(shot, kind, pa.name if pa else None,
                                        pb.name if pb else None))

    return FilmDiff(old_label, new_label, tuple(changes), tuple(entities), tuple(picks), rebuild,
                    getattr(new.config, "currency", "USD"))


# --- text ---------------------------------------------------------------------------------------


def _cost(amount: float | None, currency: str) -> str:
    if amount is None:
        return "cost unknown"
    return "free" if amount == 0 else money(amount, currency)


def render_text(d: FilmDiff, paint: Any = None) -> str:
    """The terminal form: shots, then what else changed, then what it costs."""
    p = paint or (lambda _style, text: text)
    out = [p("bold", f"filmc diff {d.old_label} → {d.new_label}")]
    if d.empty:
        out.append("no change to the film")
        return "\n".join(out)
    if d.shots:
        out += ["", p("bold", "shots")]
        for s in d.shots:
            head = f"  {_MARK[s.status]} {s.address}"
            style = {ADDED: "green", REMOVED: "red"}.get(s.status, "yellow")
            extra = []
            if s.status == RENAMED:
                extra.append(f"renamed from {s.old_shot}")
            if s.old_scene:
                extra.append(f"moved from scene {s.old_scene}")
            elif s.status == MOVED:
                extra.append("moved")
            if s.steps:
                extra.append(f"{s.steps} step{'s' if s.steps != 1 else ''}, "
                             f"{_cost(s.cost, d.currency)}")
            out.append(p(style, head) + (f"  ({'; '.join(extra)})" if extra else ""))
            for f in s.fields:
                out.append(f"      {f.text()}")
            for why in s.because:
                out.append(f"      via {why}")
    if d.entities:
        out += ["", p("bold", "characters, outfits, locations")]
        for e in d.entities:
            shots = f"  ({len(e.shots)} shot{'s' if len(e.shots) != 1 else ''}: " \
                    f"{', '.join(e.shots[:6])}{' …' if len(e.shots) > 6 else ''})" \
                if e.shots and e.kind != "film" else ""
            out.append(f"  {_MARK[e.status]} {e.kind} {e.id}{shots}")
            for f in e.fields:
                out.append(f"      {f.text()}")
    if d.picks:
        out += ["", p("bold", "picks (film.lock)")]
        for pc in d.picks:
            out.append(f"  ~ {pc.shot}  {pc.text()}")
    out += ["", p("bold", f"to rebuild: {d.steps} step{'s' if d.steps != 1 else ''}, "
                          f"{_cost(d.cost, d.currency)}")]
    if d.rebuild:
        width = max(len(f"{r.kind} on {r.backend}") for r in d.rebuild)
        for r in d.rebuild:
            stored = f" ({r.stored} stored)" if r.stored else ""
            out.append(f"  {f'{r.kind} on {r.backend}':<{width}}  {r.steps:>4} "
                       f"step{'s' if r.steps != 1 else ' '}  {_cost(r.cost, d.currency)}{stored}")
    return "\n".join(out)


def render_stat(d: FilmDiff) -> str:
    """One line a changed shot, then the total."""
    lines = []
    width = max((len(s.address) for s in d.shots), default=0)
    for s in d.shots:
        what = ", ".join(f.field for f in s.fields) or ", ".join(s.because) or s.status
        if s.status in (ADDED, REMOVED, RENAMED, MOVED):
            what = s.status if not s.fields else f"{s.status}: {what}"
        lines.append(f"{_MARK[s.status]} {s.address:<{width}}  {what}  "
                     f"[{s.steps} step{'s' if s.steps != 1 else ''}, "
                     f"{_cost(s.cost, d.currency)}]")
    lines.append(f"{len(d.shots)} shot{'s' if len(d.shots) != 1 else ''} changed, "
                 f"{d.steps} step{'s' if d.steps != 1 else ''} to rebuild, "
                 f"{_cost(d.cost, d.currency)}")
    return "\n".join(lines)
