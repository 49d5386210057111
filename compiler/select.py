"""`--select`: dbt-style node selection, as set algebra over the step graph.

Shared by `filmc plan`, `filmc graph` and `filmc build`.  The text is parsed into a
`Selector` first, so a typo is reported before any graph is looked at:

    selection := term (WHITESPACE term)*      union; several --select values are a union too
    term      := atom ("," atom)*             intersection
    atom      := ["@"] [[N] "+"] [method ":"] value ["+" [N]]

Methods:

    scene:NAME       every step of that scene (NAME may be a glob)
    shot:GLOB        every step of the shots whose id matches (fnmatch: `shot:chen_*`)
    character:NAME   every step whose `characters` holds NAME: each shot showing them
                     and its takes and speech, and their sheets (NAME may be a glob)
    kind:KIND        every step of that kind (`kind:keyframe`)
    id:GLOB          node ids (`id:clip.hunt.*`)
    status:STATUS    every step of the shots whose keyframe or clip pick is STATUS:
                     `unpicked` (several candidates, no pick), `stale` (the pick's
                     candidate changed or is gone), `picked`, `single` (nothing to pick)

A bare value (no method) is, in this order: an `id:` glob if it holds `.`, `*`, `?`
or `[`, or is a node id (`film`, `timeline`); else a shot id; else a scene name;
else a character id.  A bare word that is none of these is an error, with a
did-you-mean over all of them.

`+X` adds everything X needs (ancestors), `X+` everything that needs X
(descendants); `2+X` / `X+2` stop after two edges.  `@X` is X, its descendants,
and everything those need (dbt's `@`), so that all of it can be built.

A scene, character or kind that does not exist is an error (`SelectorError`, with
a did-you-mean); a shot or id glob that matches nothing is only a warning in the
`Selection`, since a saved selector should not break when a shot is cut.
"""

from __future__ import annotations

import fnmatch
import re
import weakref
from collections.abc import Iterable, Sequence

import attrs
import networkx as nx

from ..lang.diagnostics import did_you_mean
from ..lang.steps import KINDS as STEP_KINDS
from .lock import PICK_STATUSES

METHODS = ("scene", "shot", "character", "kind", "id", "status")
KINDS = tuple(STEP_KINDS)
_GLOB = re.compile(r"[*?\[]")
_DEPTH = re.compile(r"\d*")


# --- the parsed form -----------------------------------------------------------------


@attrs.frozen(slots=True)
class Atom:
    """One `[@][N+]method:value[+N]`.  `up`/`down`: 0 = none, None = unlimited."""

    method: str | None  # None: a bare value, resolved against the graph
    value: str
    up: int | None = 0
    down: int | None = 0
    at: bool = False
    source: str = ""  # the --select value this atom came from
    position: int = 0  # 0-based offset of `value` in `source`


@attrs.frozen(slots=True)
class Selector:
    """A union of terms; each term an intersection of atoms."""

    terms: tuple[tuple[Atom, ...], ...]

    def evaluate(self, graph: nx.DiGraph) -> Selection:
        return evaluate(graph, self)


@attrs.frozen(slots=True)
class Selection:
    nodes: frozenset[str]
    warnings: tuple[SelectorWarning, ...] = ()


@attrs.frozen(slots=True)
class SelectorWarning:
    message: str
    source: str
    position: int
    length: int = 1
    help: str | None = None

    def __str__(self) -> str:
        return self.message

    def render(self) -> str:
        return _render("warning", self.message, self.source, self.position, self.length,
                       self.help)


class SelectorError(ValueError):
    """A selector that cannot be parsed or names something the graph lacks.

    `position` is a 0-based offset into `source` (the one --select value at
    fault); `length` how many characters to underline."""

    def __init__(self, message: str, position: int, help: str | None = None, *,
                 source: str = "", length: int = 1) -> None:
        super().__init__(message)
        self.message = message
        self.position = position
        self.help = help
        self.source = source
        self.length = max(1, length)

    def render(self) -> str:
        return _render("error", self.message, self.source, self.position, self.length,
                       self.help)


def _render(severity: str, message: str, source: str, pos: int, length: int,
            help: str | None) -> str:
    out = [f"{severity}: {message}"]
    if source:
        out += [f"  | {source}", "  | " + " " * pos + "^" * length]
    if help:
        out.append(f"  = help: {help}")
    return "\n".join(out)


# --- parsing -------------------------------------------------------------------------


def parse_selector(text: str | Sequence[str]) -> Selector:
    """Parse one --select value, or several (a union).  Raises `SelectorError`."""
    sources = [text] if isinstance(text, str) else list(text)
    terms: list[tuple[Atom, ...]] = []
    for source in sources:
        words = list(re.finditer(r"\S+", source))
        if not words:
            raise SelectorError("empty selector", 0, "give a node, e.g. `shot:chen_*` or "
                                "`character:CHEN+`", source=source)
        for word in words:
            atoms = []
            offset = word.start()
            for piece in word.group().split(","):
                atoms.append(_parse_atom(piece, source, offset))
                offset += len(piece) + 1
            terms.append(tuple(atoms))
    return Selector(tuple(terms))


def _parse_atom(text: str, source: str, start: int) -> Atom:
    def fail(msg: str, at: int, length: int = 1, help: str | None = None) -> SelectorError:
        return SelectorError(msg, start + at, help, source=source, length=length)

    if not text:
        raise fail("empty selector between commas", -1 if start else 0,
                   help="remove the extra `,` (a comma means *and*)")
    at = text.startswith("@")
    body, body_at = (text[1:], 1) if at else (text, 0)
    parts = body.split("+")
    if len(parts) > 3:
        raise fail(f"too many `+` in `{text}`", 0, len(text),
                   "use `+X`, `X+`, `N+X` or `X+N`")
    up: int | None = 0
    down: int | None = 0
    if len(parts) == 3:
        up_text, value, down_text = parts
    elif len(parts) == 2:
        # `2+shot:x` or `shot:x+2`: the side with a method, or else the non-numeric one,
        # is the value.
        left, right = parts
        if ":" in right or (":" not in left and re.fullmatch(r"[\d.\-]*", left) and right):
            up_text, value, down_text = left, right, None
        else:
            up_text, value, down_text = None, left, right
    else:
        up_text, value, down_text = None, body, None
    value_at = body_at + (len(up_text) + 1 if up_text is not None else 0)
    if up_text is not None:
        up = _depth(up_text, fail, body_at)
    if down_text is not None:
        down = _depth(down_text, fail, value_at + len(value) + 1)
    if at and (up_text is not None or down_text is not None):
        raise fail("`@` does not combine with `+`", 0, len(text),
                   "`@X` already selects X, everything that needs it, and all they need")
    if "@" in value:
        raise fail("`@` must come first", value_at + value.index("@"),
                   help=f"write `@{value.replace('@', '')}`")
    method: str | None = None
    if ":" in value:
        method, _, rest = value.partition(":")
        if not method:
            raise fail("missing method before `:`", value_at,
                       help="methods: " + ", ".join(f"`{m}:`" for m in METHODS))
        if method not in METHODS:
            hint = did_you_mean(method, METHODS) or "methods: " + ", ".join(
                f"`{m}:`" for m in METHODS)
            raise fail(f"unknown selector method `{method}`", value_at, len(method), hint)
        value_at += len(method) + 1
        value = rest
    if not value:
        what = f"after `{method}:`" if method else "in selector"
        raise fail(f"empty value {what}", value_at,
                   help="e.g. `scene:hunt`, `shot:chen_*`, `kind:keyframe`")
    if method == "kind" and value not in KINDS:
        hint = did_you_mean(value, KINDS) or "kinds: " + ", ".join(KINDS)
        raise fail(f"unknown step kind `{value}`", value_at, len(value), hint)
    if method == "status" and value not in PICK_STATUSES:
        hint = did_you_mean(value, PICK_STATUSES) or "statuses: " + ", ".join(PICK_STATUSES)
        raise fail(f"unknown pick status `{value}`", value_at, len(value), hint)
    return Atom(method, value, up, down, at, source, start + value_at)


def _depth(text: str, fail, at: int) -> int | None:
    if not text:
        return None
    if not text.isdigit() or not text.isascii():
        raise fail(f"bad depth `{text}`", at, len(text),
                   "a depth is a whole number: `2+shot:x` or `shot:x+2`")
    n = int(text)
    if n == 0:
        raise fail("a depth of 0 selects nothing more", at, len(text),
                   "drop the `+` to select only the nodes themselves")
    return n


# --- the per-graph index -----------------------------------------------------------


class Index:
    """Nodes by kind, scene, shot and character; built once per graph.

    Kept in a weak map beside the graph (not in `graph.graph`, which stays plain
    data to serialise).  It is rebuilt when the node count changes; call
    `Index.forget(graph)` after editing node attributes in place."""

    _cache: weakref.WeakKeyDictionary[nx.DiGraph, Index] = weakref.WeakKeyDictionary()

    def __init__(self, graph: nx.DiGraph) -> None:
        self.size = len(graph)
        self.ids: frozenset[str] = frozenset(graph)
        by_kind: dict[str, set[str]] = {}
        by_scene: dict[str, set[str]] = {}
        by_shot: dict[str, set[str]] = {}
        by_char: dict[str, set[str]] = {}
        for node, data in graph._node.items():
            by_kind.setdefault(data["kind"], set()).add(node)
            scene = data.get("scene")
            if scene is not None:
                by_scene.setdefault(scene, set()).add(node)
            shot = data.get("shot")
            if shot is not None:
                by_shot.setdefault(shot, set()).add(node)
            for c in data.get("characters", ()):
                by_char.setdefault(c, set()).add(node)
        self.by_kind, self.by_scene, self.by_shot, self.by_char = (
            by_kind, by_scene, by_shot, by_char)
        self.by_status: dict[str, set[str]] = {k: set() for k in PICK_STATUSES}
        for p in graph.graph.get("picks", {}).values():
            for status in p.statuses & self.by_status.keys():
                self.by_status[status] |= by_shot.get(p.shot, set())

    @classmethod
    def of(cls, graph: nx.DiGraph) -> Index:
        index = cls._cache.get(graph)
        if index is None or index.size != len(graph):
            index = cls._cache[graph] = cls(graph)
        return index

    @classmethod
    def forget(cls, graph: nx.DiGraph) -> None:
        cls._cache.pop(graph, None)


# --- evaluation ----------------------------------------------------------------------


def select(graph: nx.DiGraph, spec: str | Sequence[str] | Selector) -> set[str]:
    """The node ids `spec` selects.  Raises `SelectorError`; warnings are dropped
    (use `evaluate` to get them)."""
    selector = spec if isinstance(spec, Selector) else parse_selector(spec)
    return set(evaluate(graph, selector).nodes)


def evaluate(graph: nx.DiGraph, selector: Selector) -> Selection:
    index = Index.of(graph)
    warnings: list[SelectorWarning] = []
    result: set[str] = set()
    for term in selector.terms:
        sets = [_atom(graph, index, atom, warnings) for atom in term]
        sets.sort(key=len)
        chosen = sets[0].intersection(*sets[1:]) if len(sets) > 1 else sets[0]
        result |= chosen
    return Selection(frozenset(result), tuple(warnings))


def _atom(graph: nx.DiGraph, index: Index, atom: Atom, warnings: list) -> set[str]:
    base = _base(index, atom, warnings)
    if atom.at:
        down = reach(graph._succ, base)
        return reach(graph._pred, down)
    if atom.up == 0 and atom.down == 0:
        return set(base)
    out = set(base)
    if atom.up != 0:
        out |= reach(graph._pred, base, atom.up)
    if atom.down != 0:
        out |= reach(graph._succ, base, atom.down)
    return out


def reach(adj: dict, start: Iterable[str], depth: int | None = None) -> set[str]:
    """`start` and every node within `depth` steps along `adj` (all when None):
    one breadth-first walk from all of `start` at once, each node visited once."""
    seen = set(start)
    frontier = list(seen)
    level = 0
    while frontier and (depth is None or level < depth):
        nxt: list[str] = []
        for n in frontier:
            new = adj[n].keys() - seen
            if new:
                seen |= new
                nxt.extend(new)
        frontier = nxt
        level += 1
    return seen


def _base(index: Index, atom: Atom, warnings: list) -> set[str] | frozenset[str]:
    method, value = atom.method, atom.value
    if method is None:
        method = _bare_method(index, atom)
    if method == "kind":
        return index.by_kind.get(value, set())
    if method == "status":
        return index.by_status[value]
    if method == "id":
        if not _GLOB.search(value):
            if value in index.ids:
                return {value}
            found: set[str] = set()
        else:
            found = _glob(value, index.ids)
        if not found:
            warnings.append(_warn(atom, f"no step id matches `{value}`", index.ids))
        return found
    table = {"scene": index.by_scene, "shot": index.by_shot, "character": index.by_char}[method]
    names = _glob(value, table) if _GLOB.search(value) else ({value} & table.keys())
    if not names:
        noun = {"scene": "scene", "shot": "shot", "character": "character"}[method]
        if method == "shot" or _GLOB.search(value):
            warnings.append(_warn(atom, f"no {noun} matches `{value}`", table))
            return set()
        raise SelectorError(f"unknown {noun} `{value}`", atom.position,
                            name_hint(value, table) or f"no {noun} in the graph is named so",
                            source=atom.source, length=len(value))
    if len(names) == 1:
        return table[next(iter(names))]
    return set().union(*(table[n] for n in names))


def _bare_method(index: Index, atom: Atom) -> str:
    value = atom.value
    if "." in value or _GLOB.search(value) or value in index.ids:
        return "id"
    for method, table in (("shot", index.by_shot), ("scene", index.by_scene),
                          ("character", index.by_char)):
        if value in table:
            return method
    everything = [*(i for i in index.ids if "." not in i), *index.by_shot, *index.by_scene,
                  *index.by_char]
    hint = name_hint(value, everything)
    if hint is None and value in KINDS:
        hint = f"did you mean `kind:{value}`?"
    raise SelectorError(f"`{value}` is no step, shot, scene or character", atom.position,
                        hint or "use a method to say what it is: `shot:`, `scene:`, "
                        "`character:`, `kind:`, `id:`", source=atom.source, length=len(value))


def name_hint(value: str, names: Iterable[str]) -> str | None:
    """The names `value` may mean: those it begins (`作坊` → `作坊白天`), else those it is
    part of, else the nearest by spelling."""
    names = sorted(set(names))
    low = value.casefold()
    for found in ([n for n in names if n.casefold().startswith(low)],
                  [n for n in names if low in n.casefold()]):
        if len(found) == 1:
            return f"did you mean `{found[0]}`?"
        if found:
            more = f" (and {len(found) - 5} more)" if len(found) > 5 else ""
            return "did you mean one of " + ", ".join(f"`{n}`" for n in found[:5]) + f"?{more}"
    return did_you_mean(value, names)


def _glob(pattern: str, names: Iterable[str]) -> set[str]:
    match = re.compile(fnmatch.translate(pattern)).match
    return {n for n in names if match(n)}


def _warn(atom: Atom, message: str, names: Iterable[str]) -> SelectorWarning:
    hint = None if _GLOB.search(atom.value) else name_hint(atom.value, names)
    return SelectorWarning(message + " (selects nothing)", atom.source, atom.position,
                           len(atom.value), hint)
