"""What a build will run, why, on which backend, at what estimated cost: `decide` and `filmc plan`.

`decide` is the one answer to "what will this build run?": `filmc plan` and
`filmc build` both call it, with the same selection, `--until` and `--force`.

    decision = decide(graph, selection, until, force, history.actions_present)
    plan = make_plan(program, history, selection, until, force)
    print(render_plan(plan, color=False)); plan_json(plan)

A build touches the selected steps (or all of them), cut at `--until`, and
everything they are made from; of those it runs each that is forced or whose
key the action cache does not hold.  (The build may also run a cached step
whose stored output turns out damaged: only hashing it can tell, and the plan
does not hash.)  Each step of the plan gets one status:

    provided   backend None: the user's own files, nothing to run
    cached     its key is in the action cache: reused, not run; or in the team's remote
               cache (`[cache] remote`), which a build reads through (reason: "in the
               shared cache"); likewise a pinned output only the remote cache holds
    new        not cached, and the last build recorded nothing for its step id
    changed    not cached, and the last build recorded another key: `reasons` names
               the fields of `Step.record` that differ (`prompt`, `seed`,
               `adapter.settings`, `backend`, `template`...) and the inputs whose
               keys changed (`input keyframe.hunt.chen.take1`)
    missing    not cached, yet its key is the one the last build recorded: its output
               was removed from the cache (reason: "not in the cache")
    forced     `--force`: run again although cached
    running    a paid job for this key is still running at its service (the journal
               holds it): the build polls it, nothing is paid again

All but provided and cached are "to run".  With no history (no build yet)
every step is new.

Cost: `estimate(step, backends)`, from the backend's price table in filmc.toml
(per output, or per second: of a clip's or shot's `duration`, of the time a line
of dialogue takes to say); a step with no price
counts as "no price" and is left out of the sum (except on a backend of type
`local`, which is free whatever its table says), and a running job costs
nothing more.

Time: rough.  Each step to run takes what steps of its kind took on its backend
in earlier builds (`History.durations`: the median of the most recent seconds the
store recorded, from holding the backend's slot to storing the outputs), else a
typical time by step kind and backend adapter type (`TYPICAL_SECONDS`: the
built-in `local` backend renders an animatic in well under a second a frame; a
remote service takes ~10 s an image and ~1 min a clip); each backend runs
min(its concurrency, [build] concurrency) steps at once; backends are counted one after another, since a build's stages
(references → keyframes → clips → shots → film) mostly wait on each other.

Rendering, grouped like the film: references (sheets, plates), then each scene
(its own steps first: its storyboard pages, music, ambience) and shot in film
order, then the film and the side outputs.  Steps that will not
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

`verbose=True` lists every step to run on its own line.  The plan ends with the
environment variables the backends to run need, and which are unset.
"""

from __future__ import annotations

import json
import math
import os
from collections import Counter
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any, Protocol

import attrs

from ..backends.fit import clip_length
from ..lang.check import speaking_time
from ..lang.steps import KINDS, REFERENCE_KINDS, reaches
from .config import LOCAL
from .graph import Step
from .keys import canonical
from .pipeline import Program

STATUSES = ("new", "changed", "missing", "forced", "running", "cached", "provided", "waiting",
            "lost")
TO_RUN = frozenset({"new", "changed", "missing", "forced", "running"})
DETAIL_LIMIT = 60
NOT_CACHED = "not in the cache"
FORCED = "--force"
RUNNING = "a paid job still running at the service: polled, not paid again"
SHARED = "in the shared cache: reused, not run again"

# Typical seconds one step takes, by backend adapter type then step kind; an adapter
# type not listed uses "remote" (a hosted service); a kind not listed uses DEFAULT_SECONDS.
TYPICAL_SECONDS: Mapping[str, Mapping[str, float]] = {
    "local": {"sheet": 0.2, "plate": 0.2, "keyframe": 0.2, "clip": 1.0, "speech": 0.5,
              "shot": 1.0, "mix": 3.0, "film": 2.0, "subtitles": 0.05, "timeline": 0.05,
              "storyboard": 0.5, "storyboard_index": 0.05, "export": 0.2},
    "comfyui": {"sheet": 20.0, "plate": 20.0, "keyframe": 20.0, "clip": 180.0},
    "remote": {"sheet": 10.0, "plate": 10.0, "keyframe": 10.0, "clip": 60.0, "speech": 5.0,
               "shot": 10.0, "mix": 30.0, "film": 60.0},
}
DEFAULT_SECONDS = 10.0

_SYMBOL = {"new": "+", "changed": "~", "missing": "!", "forced": "*", "running": ">",
           "waiting": "?", "lost": "x"}
_COLOR = {"new": "32", "changed": "33", "missing": "36", "forced": "35", "running": "34",
          "waiting": "33", "lost": "31", "header": "1", "dim": "2"}
_CURRENCY_SIGN = {"USD": "$", "EUR": "€", "GBP": "£", "JPY": "¥"}
_DETAILED = ("changed", "missing", "forced", "running")  # listed with their reasons
_RECORD_FIELDS = ("kind", "backend", "adapter", "template", "prompt", "negative", "seed",
                  "params", "inputs", "files")


class History(Protocol):
    """What earlier builds left: the action cache, the last build, the running jobs."""

    def actions_present(self, keys: Iterable[str]) -> set[str]: ...

    def last_keys(self, nodes: Iterable[str]) -> dict[str, str]: ...

    def last_records(self, nodes: Iterable[str]) -> dict[str, tuple[str, dict]]: ...

    def running(self) -> set[str]: ...

    def objects_present(self, digests: Iterable[str]) -> set[str]: ...

    def fallbacks(self, keys: Iterable[str]) -> dict[str, dict]: ...

    def durations(self) -> Mapping[tuple[str, str], float]: ...

    def shared_actions(self, keys: Iterable[str]) -> set[str]: ...

    def shared_objects(self, digests: Iterable[str]) -> set[str]: ...

    def shared_cache(self) -> SharedCache | None: ...


@attrs.frozen
class SharedCache:
    """The team's remote cache, as the plan read it (`actions_present` counts what it
    holds; `shared_actions` and `shared_objects` say which)."""

    url: str  # as filmc.toml names it (never a credential)
    problem: str | None = None  # why it could not be read: the plan counts the local store


class NoHistory:
    """A project never built."""

    def actions_present(self, keys: Iterable[str]) -> set[str]:
        return set()

    def last_keys(self, nodes: Iterable[str]) -> dict[str, str]:
        return {}

    def last_records(self, nodes: Iterable[str]) -> dict[str, tuple[str, dict]]:
        return {}

    def running(self) -> set[str]:
        return set()

    def objects_present(self, digests: Iterable[str]) -> set[str]:
        return set()

    def fallbacks(self, keys: Iterable[str]) -> dict[str, dict]:
        return {}

    def durations(self) -> Mapping[tuple[str, str], float]:
        return {}

    def shared_actions(self, keys: Iterable[str]) -> set[str]:
        return set()

    def shared_objects(self, digests: Iterable[str]) -> set[str]:
        return set()

    def shared_cache(self) -> SharedCache | None:
        return None


# --- what a build runs -------------------------------------------------------------------


@attrs.frozen
class Decision:
    nodes: tuple[str, ...]  # every step the build touches, in dependency order
    run: frozenset[str]  # those it runs: not cached, or forced
    forced: frozenset[str]
    waiting: frozenset[str] = frozenset()  # those that wait for a pick, and what uses them


def needed(graph: Any, selection: Iterable[str] | None, until: str | None) -> list[str]:
    """The targets (the selection, or every step the film needs: not the candidates a
    pick passed over) whose kind `--until` reaches, and everything they are made from,
    in dependency order."""
    nodes = graph._node
    if selection is None and graph.graph.get("ordered"):
        # The whole film, its steps added after what they are made from: one pass back
        # from the last, a step needed when it is a target or what a needed one is made
        # from (its optional steps are the few looked at twice).
        succ = graph._succ
        need: set[str] = set()
        for n in reversed(nodes):
            data = nodes[n]
            if (not data.get("optional") and (until is None or reaches(data["kind"], until))) \
                    or any(s in need for s in succ[n]):
                need.add(n)
        return list(graph) if len(need) == len(nodes) else [n for n in graph if n in need]
    targets = {n for n in graph.nodes if not nodes[n].get("optional")} if selection is None \
        else set(selection)
    if until is not None:
        targets = {n for n in targets if reaches(nodes[n]["kind"], until)}
    if selection is None and len(targets) == len(nodes):  # every step: what they are made
        return list(graph)  # from is among them
    need = set(targets)
    stack = list(targets)
    pred = graph._pred
    while stack:
        for p in pred[stack.pop()]:
            if p not in need:
                need.add(p)
                stack.append(p)
    return [n for n in graph if n in need]  # steps were added in dependency order


def decide(graph: Any, selection: Iterable[str] | None, until: str | None,
           force: Iterable[str], cached: Callable[[Iterable[str]], set[str]],
           use_first: bool = False) -> Decision:
    """What a build with these options runs: see the module's docstring.  A pinned step
    (a pick) is never run: the store has its output, or the build says it is lost.
    `use_first`: steps that would wait for a pick use the first candidate instead."""
    nodes = needed(graph, selection, until)
    node = graph._node
    steps = [node[n]["step"] for n in nodes]  # (a step's id is its node)
    waiting = frozenset() if use_first else waiting_steps(graph, nodes)
    forced = frozenset(force) & set(nodes) - waiting if force else frozenset()
    forced = frozenset(n for n in forced if node[n]["step"].pin is None)
    # The user's own images (no backend) are asked for too: found, they are reused with
    # the rest, not copied into the store again.
    present = cached(s.key for n, s in zip(nodes, steps) if n not in forced)
    run = frozenset(n for n, s in zip(nodes, steps) if s.backend is not None and s.pin is None
                    and (n in forced or s.key not in present) and n not in waiting)
    return Decision(tuple(nodes), run, forced, waiting)


def waiting_steps(graph: Any, nodes: Sequence[str]) -> frozenset[str]:
    """The steps among `nodes` that wait for a pick, and every one made from them."""
    node = graph._node
    out: set[str] = set()
    if all(node[n]["step"].waits is None for n in nodes):
        return frozenset()
    for n in nodes:  # dependency order: a step's inputs are decided before it
        if node[n]["step"].waits is not None or any(p in out for p in graph._pred[n]):
            out.add(n)
    return frozenset(out)


def estimate(step: Step, backends: Mapping[str, Any], backend: str | None = None) -> float | None:
    """The estimated price of running `step` once (on `backend`, its fallback, where given);
    None when its backend has no price."""
    if step.backend is None:
        return 0.0
    info = backends[backend or step.backend]
    conf = info.config
    price = conf.prices.get(step.kind)
    seconds: float | None = None
    if step.fields.duration is not None:
        # A service that makes fixed lengths bills the length it makes (backends/fit.py).
        caps = info.capabilities(step.kind)
        made = clip_length(step.fields.duration, caps.durations) \
            if caps is not None and caps.durations else step.fields.duration
        seconds = float(made)
    elif step.kind == "speech":  # priced by the second of audio: as long as the line takes
        seconds = speaking_time(step.fields.text)
    found = None if price is None else price.estimate(seconds)
    if found is None and conf.type == LOCAL:
        return 0.0  # the built-in backend runs on this machine: free, priced or not
    return found


# --- planning ---------------------------------------------------------------------------


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
class Need:
    """An environment variable a backend in the plan reads."""

    backend: str
    variable: str
    set: bool


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
    needs: tuple[Need, ...] = ()
    waiting_cost: float = 0.0  # what the steps that wait for picks would cost once picked
    awaiting: tuple[tuple[str, str], ...] = ()  # (shot id, why) of each shot that waits
    # (step id, shot, backend that refused it, backend that made it, cost) of the steps a
    # fallback made in earlier builds
    fell_back: tuple[tuple[str, str, str, str, float], ...] = ()
    shared: SharedCache | None = None  # the remote cache read (None: none configured)

    @property
    def shared_steps(self) -> int:
        """Steps not to run because the remote cache holds them."""
        return sum(1 for s in self.steps if SHARED in s.reasons)

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
        order = {k: i for i, k in enumerate(KINDS)}
        return [(k, b, n) for (k, b), n in
                sorted(c.items(), key=lambda kv: (order.get(kv[0][0], 99), kv[0][0],
                                                  kv[0][1] or ""))]


def make_plan(program: Program, history: History | None, selection: Iterable[str] | None = None,
              *, until: str | None = None, force: Iterable[str] = (),
              environ: Mapping[str, str] | None = None,
              seconds: Mapping[str, Mapping[str, float]] = TYPICAL_SECONDS,
              use_first: bool = False) -> Plan:
    """The plan of a program against what earlier builds left (`history`; None: none)."""
    graph, backends = program.graph, program.backends
    had_store = history is not None
    history = history if history is not None else NoHistory()
    decision = decide(graph, selection, until, force, history.actions_present, use_first)
    order = {(sh.scene, sh.id): i for i, sh in enumerate(program.shots)}
    scene_order: dict[str, int] = {}
    for sh in program.shots:
        scene_order.setdefault(sh.scene, len(scene_order))
    steps: list[Step] = [graph._node[n]["step"] for n in decision.nodes]
    steps.sort(key=lambda s: _film_order(s, scene_order, order))

    last = history.last_keys(s.id for s in steps)
    differ = [s.id for s in steps if s.id in last and last[s.id] != s.key and s.id in decision.run]
    old = history.last_records(differ) if differ else {}
    running = history.running()
    pinned = [s for s in steps if s.pin is not None and s.id not in decision.waiting]
    cached_pins = history.actions_present(s.key for s in pinned if s.backend is not None)
    kept = history.objects_present(s.pin for s in pinned
                                   if s.pin is not None and s.key not in cached_pins)
    # What only the team's remote cache holds: not run, not paid (a build reads through it).
    shared_keys = history.shared_actions(s.key for s in steps if s.backend is not None
                                         and s.id not in decision.run)
    shared_pins = history.shared_objects(s.pin for s in pinned if s.pin in kept)

    # Steps a fallback backend made in an earlier build (kept under their own key).
    made_by = history.fallbacks(s.key for s in steps if s.fallback is not None)
    took = history.durations()
    fell_back: list[tuple[str, str, str, str, float]] = []
    planned: list[PlannedStep] = []
    work: dict[str, float] = {}
    cost, unpriced, later = 0.0, 0, 0.0
    awaiting: dict[tuple[str, str], str] = {}
    for s in steps:
        reasons: tuple[str, ...] = ()
        if s.id in old:
            reasons = record_changes(old[s.id][1], s.record)
        if s.id in decision.waiting:
            why = s.waits or "made from a step that waits for a pick"
            if s.waits is not None and s.scene is not None:
                awaiting.setdefault((s.scene, s.shot or ""), s.waits)
            later += estimate(s, backends) or 0.0
            planned.append(PlannedStep(s.id, s.kind, s.backend, s.scene, s.shot, "waiting",
                                       (why,)))
            continue
        if s.pin is not None and s.key not in cached_pins and s.pin not in kept:
            planned.append(PlannedStep(s.id, s.kind, s.backend, s.scene, s.shot, "lost",
                                       (lost_reason(s.pin, graph.graph.get("lock", "film.lock"),
                                                    history.shared_cache()),)))
            continue
        if s.backend is None:
            planned.append(PlannedStep(s.id, s.kind, None, s.scene, s.shot, "provided", reasons))
            continue
        if s.id not in decision.run:
            fell = made_by.get(s.key)
            far = s.key in shared_keys or (s.pin is not None and s.key not in cached_pins
                                           and s.pin in shared_pins)
            planned.append(PlannedStep(s.id, s.kind, s.backend, s.scene, s.shot, "cached",
                                       ((SHARED,) if far else ())
                                       + ((f"made by `{fell['to']}`: `{fell['from']}` "
                                           f"refused it",) if fell else ())))
            if fell:
                fell_back.append((s.id, s.shot or "", fell["from"], fell["to"],
                                  fell.get("cost") or 0.0))
            continue
        price: float | None
        if s.key in running and s.id not in decision.forced:
            status, reasons, price = "running", (RUNNING,), 0.0
        else:
            if s.id in decision.forced:
                status, reasons = "forced", (FORCED,)
            elif s.id not in last:
                status = "new"
            elif last[s.id] == s.key:
                status, reasons = "missing", (NOT_CACHED,)
            else:
                status = "changed"
            price = estimate(s, backends)
        if price is None:
            unpriced += 1
        else:
            cost += price
        secs = took.get((s.backend, s.kind)) or _typical(backends, seconds, s.kind, s.backend)
        work[s.backend] = work.get(s.backend, 0.0) + secs
        planned.append(PlannedStep(s.id, s.kind, s.backend, s.scene, s.shot, status, reasons,
                                   price, secs))

    total = 0.0
    for backend, secs in work.items():
        conc = backends[backend].config.concurrency
        total += secs / max(1, min(conc, program.concurrency))
    scenes: dict[str, list[str]] = {}
    for sh in program.shots:
        scenes.setdefault(sh.scene, []).append(sh.id)
    return Plan(tuple(planned), tuple((k, tuple(v)) for k, v in scenes.items()),
                program.currency, cost, unpriced, total, had_store, selection is not None,
                needs(backends, work, environ), later,
                tuple((sh, why) for (_sc, sh), why in awaiting.items()), tuple(fell_back),
                history.shared_cache())


def lost_reason(digest: str, lock: str = "film.lock", shared: SharedCache | None = None) -> str:
    where = "the store does not hold" if shared is None or shared.problem is not None else \
        f"neither the store nor the shared cache `{shared.url}` holds"
    return (f"{lock} pins output {digest[:12]}…, which {where}: "
            f"point FILMC_STORE at the store it was built in, or re-pick the shot")


def needs(backends: Mapping[str, Any], used: Iterable[str],
          environ: Mapping[str, str] | None = None) -> tuple[Need, ...]:
    """The environment variables that the backends in `used` read, and whether each is set."""
    env = os.environ if environ is None else environ
    out = []
    for name in sorted(set(used)):
        info = backends[name]
        for secret in info.adapter.secrets:
            var = info.config.secret_envs.get(secret)
            if var:
                out.append(Need(name, var, bool(env.get(var))))
    return tuple(out)


def _film_order(s: Step, scene_order: dict, shot_order: dict) -> tuple:
    if s.kind in REFERENCE_KINDS:  # sheets, then plates, each in graph order
        return (0, REFERENCE_KINDS.index(s.kind), 0)
    if s.scene is not None:
        return (1, scene_order.get(s.scene, 0), shot_order.get((s.scene, s.shot), 0))
    return (2, 0, 0)  # the film and the side outputs; sort is stable: graph order within


def _typical(backends: Mapping[str, Any], table: Mapping[str, Mapping[str, float]], kind: str,
             backend: str) -> float:
    adapter = backends[backend].type
    row = table.get(adapter) or table.get("remote") or {}
    return float(row.get(kind, DEFAULT_SECONDS))


def record_changes(old: Mapping, new: Mapping) -> tuple[str, ...]:
    """What differs between a recorded step record and the current one: field names,
    `params.X` / `adapter.X` one level down, `input NODE` (added, removed) and
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
    c = plan.counts
    waits = ""
    if c["waiting"]:
        n = len(plan.awaiting)
        waits = (f" {c['waiting']} step{'s' if c['waiting'] != 1 else ''} of {n} "
                 f"shot{'s' if n != 1 else ''} wait for picks"
                 + (f" (estimated {money(plan.waiting_cost, plan.currency)} once picked)"
                    if plan.waiting_cost else "") + ".")
    if c["lost"]:
        waits += f" {c['lost']} pinned output{'s are' if c['lost'] != 1 else ' is'} not in the store."
    far = ""
    if plan.shared is not None and plan.shared_steps:
        many = "all" if plan.shared_steps == plan.counts["cached"] else str(plan.shared_steps)
        far = f" ({many} in the shared cache `{plan.shared.url}`)"
    if plan.to_run == 0:
        return f"No changes: everything is cached{far}." + waits if not waits else \
            f"Nothing to run{far}." + waits
    c = plan.counts
    parts = ", ".join(f"{n} {k} on {b}" for k, b, n in plan.by_kind_backend)
    cost = money(plan.cost, plan.currency)
    if plan.unpriced:
        cost += f" ({plan.unpriced} step{'s' if plan.unpriced != 1 else ''} "\
                f"{'have' if plan.unpriced != 1 else 'has'} no price)"
    return (f"Plan: {plan.to_run} to run ({parts}), {c['cached']} cached{far}, "
            f"{c['provided']} provided; estimated cost {cost}, time {duration(plan.seconds)}."
            + waits)


class _Painter:
    def __init__(self, color: bool) -> None:
        self.color = color

    def __call__(self, text: str, what: str) -> str:
        return f"\x1b[{_COLOR[what]}m{text}\x1b[0m" if self.color else text


def render_plan(plan: Plan, color: bool = False, verbose: bool = False) -> str:
    """The plan for people: see the module's docstring for what is listed how."""
    paint = _Painter(color)
    lines: list[str] = []
    detail = verbose or sum(1 for s in plan.steps if s.status in _DETAILED) <= DETAIL_LIMIT

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
        # The scene's own steps (its storyboard pages, its music and ambience), of no shot.
        lines += [_step_line(s, plan, paint, "  ") for s in shots.get("", ()) if s.to_run]
        for shot in shot_ids:
            group = shots.get(shot, [])
            run = [s for s in group if s.to_run]
            if not run:
                continue
            name = f"shot {scene}/{shot}"
            compact = all(s.status not in _DETAILED for s in run) or not detail
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

    lines += pick_lines(plan, paint, verbose)
    if lines:
        lines.append("")
    lines.append(summary_line(plan))
    lines += shared_lines(plan)
    lines += need_lines(plan)
    return "\n".join(lines) + "\n"


def pick_lines(plan: Plan, paint: Any = str, verbose: bool = False) -> list[str]:
    """The shots that wait for a pick, and the pinned outputs the store lacks."""
    out: list[str] = []
    if plan.awaiting:
        waiting = Counter(s.shot for s in plan.steps if s.status == "waiting")
        out.append(paint("awaiting picks", "header"))
        shown = plan.awaiting if verbose else plan.awaiting[:DETAIL_LIMIT]
        for address, why in shown:
            n = waiting.get(address, 0)
            out.append(f"  {paint(_SYMBOL['waiting'], 'waiting')} shot {address}: "
                       f"{why.replace(f' for {address}', '')} "
                       f"({n} step{'s' if n != 1 else ''} wait)")
        if len(plan.awaiting) > len(shown):
            out.append(f"  … and {len(plan.awaiting) - len(shown)} more shots (--verbose lists them)")
        out.append(paint("  pick with `filmc review` or `filmc pick SHOT CANDIDATE`; "
                         "`--use-first` animates the first candidates instead", "dim"))
    lost = [s for s in plan.steps if s.status == "lost"]
    if lost:
        out.append(paint("pinned outputs not in the store", "header"))
        for s in lost if verbose else lost[:DETAIL_LIMIT]:
            out.append(f"  {paint(_SYMBOL['lost'], 'lost')} {s.id}: {s.reasons[0]}")
        if len(lost) > DETAIL_LIMIT and not verbose:
            out.append(f"  … and {len(lost) - DETAIL_LIMIT} more")
    if plan.fell_back:
        cost = money(sum(c for *_x, c in plan.fell_back), plan.currency)
        out.append(paint(f"made by a fallback backend ({cost})", "header"))
        for sid, _shot, refused, made, price in (plan.fell_back if verbose
                                                 else plan.fell_back[:DETAIL_LIMIT]):
            out.append(f"  {sid}: `{refused}` refused it; `{made}` made it "
                       f"({money(price, plan.currency)})")
        if len(plan.fell_back) > DETAIL_LIMIT and not verbose:
            out.append(f"  … and {len(plan.fell_back) - DETAIL_LIMIT} more")
        out.append(paint("  kept under their keys: `--force` asks the first backend again",
                         "dim"))
    return out


def shared_lines(plan: Plan) -> list[str]:
    """The one warning of a plan that could not read the team's remote cache."""
    if plan.shared is None or plan.shared.problem is None:
        return []
    return [f"warning: cannot read the shared cache `{plan.shared.url}` "
            f"({plan.shared.problem}); this plan counts the local store only, so steps "
            f"the team already made may show to run and the cost may be overstated."]


def need_lines(plan: Plan) -> list[str]:
    """`Needs OPENAI_API_KEY (for openai): set.` for each variable the plan's backends read."""
    return [f"Needs `{n.variable}` (for {n.backend}): " + ("set." if n.set else
            f"NOT SET: `export {n.variable}=...` before `filmc build`.") for n in plan.needs]


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
    status = next((st for st in ("changed", "missing", "forced", "running") if c[st]), "new")
    counts = [f"{c[st]} {st}" for st in ("changed", "missing", "forced", "running", "new")
              if c[st]]
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
            "needs": [{"backend": n.backend, "variable": n.variable, "set": n.set}
                      for n in plan.needs],
            "waiting_cost": round(plan.waiting_cost, 6),
            "fell_back": [{"id": i, "shot": sh, "from": a, "to": b, "cost": c}
                          for i, sh, a, b, c in plan.fell_back],
            "awaiting": [{"shot": shot, "why": why} for shot, why in plan.awaiting],
            # Only with `[cache] remote`: the team's remote cache, as the plan read it.
            **({"shared_cache": {"url": plan.shared.url, "read": plan.shared.problem is None,
                                 "problem": plan.shared.problem, "steps": plan.shared_steps}}
               if plan.shared is not None else {}),
        },
    }
