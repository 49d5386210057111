"""`filmc plan`: what a build would run, why, on which backend, at what estimated cost.

    plan = make_plan(compiled, store, selection)   # store: Store.open(root) or None
    print(render_plan(plan, color=False))
    plan_json(plan)                                # the same, as data for tools
    exit_code = 2 if plan.to_run else 0            # the CLI's business

Each step of the graph (or of the selection) gets one status:

    provided   backend None: the user's own files, nothing to run
    cached     its key is in the store's action cache: reused, not run
    new        not cached, and the last build recorded nothing for its node id
    changed    not cached, and the last build recorded another key: `reasons` names
               the fields of `Step.record` that differ (`prompt`, `params.seed`,
               `settings.model`, `backend`, `template`...) and the inputs whose
               keys changed (`input keyframe.hunt.chen.take1`)
    missing    not cached, yet its key is the one the last build recorded: its output
               was removed from the cache (reason: "not in the cache")

new, changed and missing steps are "to run".  With no store (no build yet)
every step is new.

Cost: `config.estimate(kind, backend, seconds)` per step to run, seconds being the
step's `duration` parameter (clips and shots); a step whose backend has no price
for its kind counts as "no price" and is left out of the sum (except on a backend
of type `local`, which is free whatever its table says).

Time: deliberately rough.  Each step to run takes a typical time, by step kind
and backend adapter type (`TYPICAL_SECONDS`: the built-in `local` backend renders
an animatic in well under a second a frame; a remote service takes ~10 s an image
and ~1 min a clip); each backend runs min(its concurrency, [build] concurrency)
steps at once; backends are counted one after another, since a build's stages
(references → keyframes → clips → shots → film) mostly wait on each other.  Pass
another table to `make_plan(..., seconds=...)` to tune it.

Rendering, grouped like the film: references (sheets, plates), then each scene
and shot in film order, then the film and the side outputs.  Steps that will not
run are not listed; a shot that has some counts them (`3 cached`).  So that a
3,000-shot film does not print 20,000 lines, by default:

- a scene whose every step is new (a first build) is one line:
  `+ scene hunt: 10 shots, 66 steps new  $12.40`;
- a shot whose steps to run are all new is one line:
  `+ shot hunt/chen_watches: 9 steps new, 3 cached`;
- a shot with changed or missing steps lists them one per line, with reasons,
  while the whole plan has at most `DETAIL_LIMIT` such steps (an edit); past
  that (e.g. a character's look changed in 1,000 shots) each shot is one line
  with the causes found inside it: `~ shot hunt/chen_watches: 9 changed (prompt)`;
- references past `DETAIL_LIMIT` steps are one line per kind.

`verbose=True` lists every step to run on its own line.
"""

from __future__ import annotations

import json
import math
from collections import Counter
from collections.abc import Iterable, Mapping

import attrs

from .config import LOCAL, ConfigError
from .graph import ALL_KINDS, SIDE_OUTPUTS, Step
from .keys import canonical
from .pipeline import Compiled
from .store import Store

STATUSES = ("new", "changed", "missing", "cached", "provided")
TO_RUN = frozenset({"new", "changed", "missing"})
REFERENCE_KINDS = ("sheet", "plate")
OUTPUT_KINDS = ("film", *SIDE_OUTPUTS)
DETAIL_LIMIT = 60
NOT_CACHED = "not in the cache"

# Typical seconds one step takes, by backend adapter type then step kind; an adapter
# type not listed uses "remote" (a hosted service); a kind not listed uses DEFAULT_SECONDS.
TYPICAL_SECONDS: Mapping[str, Mapping[str, float]] = {
    "local": {"sheet": 0.2, "plate": 0.2, "keyframe": 0.2, "clip": 1.0, "speech": 0.5,
              "shot": 1.0, "film": 5.0, "subtitles": 0.05, "timeline": 0.05,
              "storyboard": 1.0},
    "comfyui": {"sheet": 20.0, "plate": 20.0, "keyframe": 20.0, "clip": 180.0},
    "remote": {"sheet": 10.0, "plate": 10.0, "keyframe": 10.0, "clip": 60.0, "speech": 5.0,
               "shot": 10.0, "film": 60.0},
}
DEFAULT_SECONDS = 10.0

_SYMBOL = {"new": "+", "changed": "~", "missing": "!"}
_COLOR = {"new": "32", "changed": "33", "missing": "36", "header": "1", "dim": "2"}
_CURRENCY_SIGN = {"USD": "$", "EUR": "€", "GBP": "£", "JPY": "¥"}
_RECORD_FIELDS = ("kind", "backend", "settings", "template", "prompt", "params", "inputs",
                  "files")


@attrs.frozen
class PlannedStep:
    id: str
    kind: str
    backend: str | None
    scene: str | None
    shot: str | None
    status: str
    reasons: tuple[str, ...] = ()
    cost: float | None = 0.0  # estimate if run; 0 when it won't run; None: no price
    seconds: float = 0.0  # typical run time (0 when it won't run)

    @property
    def to_run(self) -> bool:
        return self.status in TO_RUN


@attrs.frozen
class Plan:
    steps: tuple[PlannedStep, ...]  # film order: references, shots, film and side outputs
    scenes: tuple[tuple[str, tuple[str, ...]], ...]  # (scene, its shots) in film order
    currency: str
    cost: float  # estimated cost of the steps to run that have a price
    unpriced: int  # steps to run with no price
    seconds: float  # estimated wall time
    had_store: bool  # whether a store was read (False: no build yet)
    selected: bool  # whether a selection restricted the plan

    @property
    def to_run(self) -> int:
        return sum(1 for s in self.steps if s.status in TO_RUN)

    @property
    def counts(self) -> dict[str, int]:
        c = Counter(s.status for s in self.steps)
        return {status: c.get(status, 0) for status in STATUSES}

    @property
    def by_kind_backend(self) -> list[tuple[str, str | None, int]]:
        """(kind, backend, steps to run), in step-kind order then backend name."""
        c = Counter((s.kind, s.backend) for s in self.steps if s.status in TO_RUN)
        order = {k: i for i, k in enumerate(ALL_KINDS)}
        return [(k, b, n) for (k, b), n in
                sorted(c.items(), key=lambda kv: (order.get(kv[0][0], 99), kv[0][0],
                                                  kv[0][1] or ""))]


# --- planning ---------------------------------------------------------------------------


def make_plan(compiled: Compiled, store: Store | None, selection: Iterable[str] | None = None,
              *, seconds: Mapping[str, Mapping[str, float]] = TYPICAL_SECONDS) -> Plan:
    """The plan of a compiled film (`compiled.graph` must be built) against `store`.
    Raises StoreError when the store cannot be read."""
    graph, film, config = compiled.graph, compiled.film, compiled.config
    if graph is None or film is None or config is None:
        raise ValueError("make_plan needs a film compiled to its graph")
    chosen = frozenset(selection) if selection is not None else None
    scene_order = {sc.id: i for i, sc in enumerate(film.scenes)}
    shot_order = {(sh.scene, sh.id): i for i, sh in enumerate(film.shots)}

    steps: list[Step] = []
    for node in graph:
        if chosen is not None and node not in chosen:
            continue
        steps.append(graph._node[node]["step"])
    steps.sort(key=lambda s: _film_order(s, scene_order, shot_order))

    runnable = [s for s in steps if s.backend is not None]
    cached = store.actions_present(s.key for s in runnable) if store is not None else set()
    last = store.last_keys(s.id for s in steps) if store is not None else {}
    differ = [s.id for s in steps if s.id in last and last[s.id] != s.key
              and s.key not in cached]
    old = store.last_records(differ) if store is not None and differ else {}

    planned: list[PlannedStep] = []
    work: Counter[str] = Counter()
    cost, unpriced = 0.0, 0
    for s in steps:
        reasons: tuple[str, ...] = ()
        if s.id in old:
            reasons = record_changes(old[s.id][1], s.record)
        if s.backend is None:
            planned.append(PlannedStep(s.id, s.kind, None, s.scene, s.shot, "provided", reasons))
            continue
        if s.key in cached:
            planned.append(PlannedStep(s.id, s.kind, s.backend, s.scene, s.shot, "cached"))
            continue
        if s.id not in last:
            status = "new"
        elif last[s.id] == s.key:
            status, reasons = "missing", (NOT_CACHED,)
        else:
            status = "changed"
        price = _estimate(config, s)
        if price is None:
            unpriced += 1
        else:
            cost += price
        secs = _typical(config, seconds, s.kind, s.backend)
        work[s.backend] += secs
        planned.append(PlannedStep(s.id, s.kind, s.backend, s.scene, s.shot, status, reasons,
                                   price, secs))

    total = 0.0
    for backend, secs in work.items():
        try:
            conc = config.backend(backend).concurrency
        except ConfigError:
            conc = 1
        total += secs / max(1, min(conc, config.concurrency))
    scenes = tuple((sc.id, tuple(sh.id for sh in sc.shots)) for sc in film.scenes)
    return Plan(tuple(planned), scenes, config.currency, cost, unpriced, total,
                store is not None, chosen is not None)


def _film_order(s: Step, scene_order: dict, shot_order: dict) -> tuple:
    if s.kind in REFERENCE_KINDS:  # sheets, then plates, each in graph order
        return (0, REFERENCE_KINDS.index(s.kind), 0)
    if s.scene is not None:
        return (1, scene_order.get(s.scene, 0), shot_order.get((s.scene, s.shot), 0))
    return (2, 0, 0)  # the film and the side outputs; sort is stable: graph order within


def _estimate(config, s: Step) -> float | None:
    secs = s.params.get("duration") if s.kind in ("clip", "shot") else None
    try:
        price = config.estimate(s.kind, s.backend, float(secs) if secs is not None else None)
        if price is None and config.backend(s.backend).type == LOCAL:
            return 0.0  # the built-in backend runs on this machine: free, priced or not
        return price
    except ConfigError:
        return None


def _typical(config, table: Mapping[str, Mapping[str, float]], kind: str, backend: str) -> float:
    try:
        adapter = config.backend(backend).type
    except ConfigError:
        adapter = backend
    row = table.get(adapter) or table.get("remote") or {}
    return float(row.get(kind, DEFAULT_SECONDS))


def record_changes(old: Mapping, new: Mapping) -> tuple[str, ...]:
    """What differs between a recorded step record and the current one: field names,
    `params.X` / `settings.X` one level down, `input NODE` (added, removed) and
    `file PATH`.  The recorded side is JSON; the current one is normalised to match."""
    new = json.loads(canonical(dict(new)))
    out: list[str] = []
    fields = [*_RECORD_FIELDS, *sorted((old.keys() | new.keys()) - set(_RECORD_FIELDS))]
    for field in fields:
        a, b = old.get(field), new.get(field)
        if a == b:
            continue
        if field in ("inputs", "files") and isinstance(a, dict) and isinstance(b, dict):
            word = "input" if field == "inputs" else "file"
            for name in b:
                if name not in a:
                    out.append(f"{word} {name} added")
                elif a[name] != b[name]:
                    out.append(f"{word} {name}")
            out += [f"{word} {name} removed" for name in a if name not in b]
        elif isinstance(a, dict) and isinstance(b, dict):
            out += [f"{field}.{k}" for k in sorted(a.keys() | b.keys())
                    if k not in a or k not in b or a[k] != b[k]]
        else:
            out.append(field)
    return tuple(out) or ("key",)  # e.g. a new filmc changed how keys are made


# --- rendering ----------------------------------------------------------------------------


def money(amount: float, currency: str) -> str:
    text = f"{amount:.2f}" if amount == 0 or amount >= 0.01 else f"{amount:.4f}"
    sign = _CURRENCY_SIGN.get(currency.upper())
    return f"{sign}{text}" if sign else f"{text} {currency}"


def duration(seconds: float) -> str:
    if seconds < 60:
        return f"~{max(1, math.ceil(seconds))} s"
    if seconds < 3600:
        return f"~{round(seconds / 60)} min"
    return f"~{seconds / 3600:.1f} h"


def summary_line(plan: Plan) -> str:
    if plan.to_run == 0:
        return "No changes: everything is cached."
    c = plan.counts
    parts = ", ".join(f"{n} {k} on {b}" for k, b, n in plan.by_kind_backend)
    cost = money(plan.cost, plan.currency)
    if plan.unpriced:
        cost += f" ({plan.unpriced} step{'s' if plan.unpriced != 1 else ''} "\
                f"{'have' if plan.unpriced != 1 else 'has'} no price)"
    return (f"Plan: {plan.to_run} to run ({parts}), {c['cached']} cached, "
            f"{c['provided']} provided; estimated cost {cost}, time {duration(plan.seconds)}.")


class _Painter:
    def __init__(self, color: bool) -> None:
        self.color = color

    def __call__(self, text: str, what: str) -> str:
        return f"\x1b[{_COLOR[what]}m{text}\x1b[0m" if self.color else text


def render_plan(plan: Plan, color: bool = False, verbose: bool = False) -> str:
    """The plan for people: see the module's docstring for what is listed how."""
    paint = _Painter(color)
    lines: list[str] = []
    detail = verbose or sum(1 for s in plan.steps if s.status in ("changed", "missing")) \
        <= DETAIL_LIMIT

    refs = [s for s in plan.steps if s.kind in REFERENCE_KINDS]
    by_scene: dict[str, dict[str, list[PlannedStep]]] = {}
    outputs: list[PlannedStep] = []
    for s in plan.steps:
        if s.kind in REFERENCE_KINDS:
            continue
        if s.scene is None:
            outputs.append(s)
        else:
            by_scene.setdefault(s.scene, {}).setdefault(s.shot or "", []).append(s)

    if any(s.to_run for s in refs):
        lines.append(paint("references", "header"))
        if verbose or sum(1 for s in refs if s.to_run) <= DETAIL_LIMIT:
            lines += [_step_line(s, plan, paint, "  ") for s in refs if s.to_run]
        else:
            for kind in REFERENCE_KINDS:
                group = [s for s in refs if s.kind == kind]
                if any(s.to_run for s in group):
                    lines.append("  " + _group_line(kind, group, plan, paint))

    for scene, shot_ids in plan.scenes:
        shots = by_scene.get(scene)
        if not shots:
            continue
        every = [s for group in shots.values() for s in group]
        if not any(s.to_run for s in every):
            continue
        if not verbose and all(s.status == "new" for s in every):
            n = sum(1 for sid in shot_ids if sid in shots)
            lines.append(_group_line(f"scene {scene}", every, plan, paint,
                                     f"{n} shot{'s' if n != 1 else ''}, "))
            continue
        lines.append(paint(f"scene {scene}", "header"))
        for shot in shot_ids:
            group = shots.get(shot, [])
            run = [s for s in group if s.to_run]
            if not run:
                continue
            name = f"shot {scene}/{shot}"
            compact = all(s.status == "new" for s in run) or not detail
            if compact and not verbose:
                lines.append("  " + _group_line(name, group, plan, paint))
                continue
            lines.append("  " + paint(name, "header"))
            lines += [_step_line(s, plan, paint, "    ") for s in run]
            n_cached = sum(1 for s in group if s.status == "cached")
            if n_cached:
                lines.append("    " + paint(f"{n_cached} cached", "dim"))

    if any(s.to_run for s in outputs):
        lines.append(paint("film and side outputs", "header"))
        lines += [_step_line(s, plan, paint, "  ") for s in outputs if s.to_run]

    if lines:
        lines.append("")
    lines.append(summary_line(plan))
    return "\n".join(lines) + "\n"


def _step_line(s: PlannedStep, plan: Plan, paint: _Painter, indent: str) -> str:
    why = s.status + (": " + ", ".join(short_reasons(s.reasons)) if s.reasons else "")
    line = f"{indent}{paint(_SYMBOL[s.status], s.status)} {s.id}  ({why}) {s.backend}"
    if s.cost is None:
        line += "  no price"
    elif s.cost:
        line += "  " + money(s.cost, plan.currency)
    return line


def short_reasons(reasons: Iterable[str], inputs: int = 3) -> list[str]:
    """Reasons for one line: every field, and at most `inputs` changed inputs (the film
    of a 3,000-shot film has 3,000 of them); `plan_json` keeps them all."""
    fields = [r for r in reasons if not r.startswith("input ")]
    ins = [r for r in reasons if r.startswith("input ")]
    if len(ins) > inputs:
        ins = [*ins[:inputs - 1], f"{len(ins) - inputs + 1} more inputs"]
    return fields + ins


def _group_line(name: str, group: list[PlannedStep], plan: Plan, paint: _Painter,
                prefix: str = "") -> str:
    """One line for a group of steps: `~ shot hunt/x: 3 changed, 2 new, 1 cached (prompt)`."""
    run = [s for s in group if s.to_run]
    c = Counter(s.status for s in group)
    status = "changed" if c["changed"] else ("missing" if c["missing"] else "new")
    counts = [f"{c[st]} {st}" for st in ("changed", "missing", "new") if c[st]]
    if counts and len(counts) == 1 and status == "new":
        counts = [f"{c['new']} step{'s' if c['new'] != 1 else ''} new"]
    if c["cached"]:
        counts.append(f"{c['cached']} cached")
    inside = {s.id for s in run}
    causes: list[str] = []
    for s in run:
        for r in s.reasons:
            if r.startswith("input ") and r.split(" ")[1] in inside:
                continue  # an effect of another change listed here
            if r not in causes:
                causes.append(r)
    line = f"{paint(_SYMBOL[status], status)} {name}: {prefix}{', '.join(counts)}"
    if causes:
        line += f" ({', '.join(causes[:6])}{', …' if len(causes) > 6 else ''})"
    priced = [s.cost for s in run if s.cost is not None]
    if any(priced):
        line += "  " + money(sum(priced), plan.currency)
    if len(priced) < len(run):
        line += f"  ({len(run) - len(priced)} no price)"
    return line


# --- JSON ---------------------------------------------------------------------------------


def plan_json(plan: Plan) -> dict:
    """The plan for tools: every step (to run or not) and the summary."""
    c = plan.counts
    return {
        "steps": [{"id": s.id, "kind": s.kind, "backend": s.backend, "scene": s.scene,
                   "shot": s.shot, "status": s.status, "reasons": list(s.reasons),
                   "cost": None if s.cost is None else round(s.cost, 6)}
                  for s in plan.steps],
        "summary": {
            "to_run": plan.to_run, **c,
            "by_kind_backend": [{"kind": k, "backend": b, "steps": n}
                                for k, b, n in plan.by_kind_backend],
            "cost": round(plan.cost, 6), "currency": plan.currency, "unpriced": plan.unpriced,
            "seconds": round(plan.seconds, 3), "had_store": plan.had_store,
            "selected": plan.selected,
        },
    }
