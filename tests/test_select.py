"""`--select` over a small, hand-built step graph: each method, `+`/`@`, set algebra,
and every error a user can make, with its message, position and help."""

from __future__ import annotations

import networkx as nx
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from filmc.compiler.select import (
    Atom,
    Index,
    Selection,
    SelectorError,
    evaluate,
    parse_selector,
    select,
)


def add(g: nx.DiGraph, node: str, kind: str, scene: str | None = None,
        shot: str | None = None, chars: tuple[str, ...] = ()) -> None:
    g.add_node(node, kind=kind, scene=scene, shot=shot, characters=frozenset(chars))


def film_graph() -> nx.DiGraph:
    """Two scenes.  hunt: chen_watches (CHEN; two takes; one line), chen_runs (CHEN,
    MARA; one take).  camp: mara_sleeps (MARA; one take; two lines).  TOLU has a
    sheet but is in no shot."""
    g = nx.DiGraph()
    for c, outfit in (("CHEN", "winter"), ("MARA", "winter"), ("TOLU", "summer")):
        add(g, f"sheet.{c}.{outfit}", "sheet", chars=(c,))
    add(g, "plate.STEPPE.DUSK", "plate")
    add(g, "plate.CAMP.NIGHT", "plate")
    for node in ("film", "subtitles", "timeline", "storyboard"):
        add(g, node, node)
    g.add_edge("timeline", "film")
    g.add_edge("subtitles", "film")
    shots = [("hunt", "chen_watches", ("CHEN",), 2, 1, "plate.STEPPE.DUSK"),
             ("hunt", "chen_runs", ("CHEN", "MARA"), 1, 0, "plate.STEPPE.DUSK"),
             ("camp", "mara_sleeps", ("MARA",), 1, 2, "plate.CAMP.NIGHT")]
    for scene, shot, cast, takes, lines, plate in shots:
        sid = f"shot.{scene}.{shot}"
        add(g, sid, "shot", scene, shot, cast)
        g.add_edge(sid, "timeline")
        for t in range(1, takes + 1):
            kf, clip = f"keyframe.{scene}.{shot}.take{t}", f"clip.{scene}.{shot}.take{t}"
            add(g, kf, "keyframe", scene, shot, cast)
            add(g, clip, "clip", scene, shot, cast)
            g.add_edge(plate, kf)
            for c in cast:
                g.add_edge(f"sheet.{c}.winter", kf)
            g.add_edge(kf, clip)
            g.add_edge(kf, "storyboard")
            g.add_edge(clip, sid)
        for n in range(1, lines + 1):
            sp = f"speech.{scene}.{shot}.{n}"
            add(g, sp, "speech", scene, shot, cast)
            g.add_edge(sp, sid)
            g.add_edge(sp, "subtitles")
    return g


G = film_graph()
WATCHES = {"keyframe.hunt.chen_watches.take1", "keyframe.hunt.chen_watches.take2",
           "clip.hunt.chen_watches.take1", "clip.hunt.chen_watches.take2",
           "speech.hunt.chen_watches.1", "shot.hunt.chen_watches"}
RUNS = {"keyframe.hunt.chen_runs.take1", "clip.hunt.chen_runs.take1", "shot.hunt.chen_runs"}
SLEEPS = {"keyframe.camp.mara_sleeps.take1", "clip.camp.mara_sleeps.take1",
          "speech.camp.mara_sleeps.1", "speech.camp.mara_sleeps.2", "shot.camp.mara_sleeps"}
SINKS = {"film", "subtitles", "timeline", "storyboard"}


# --- methods ---------------------------------------------------------------------------


@pytest.mark.parametrize(("spec", "expected"), [
    ("scene:hunt", WATCHES | RUNS),
    ("scene:camp", SLEEPS),
    ("scene:*", WATCHES | RUNS | SLEEPS),
    ("shot:chen_watches", WATCHES),
    ("shot:chen_*", WATCHES | RUNS),
    ("shot:*_[rs]*", RUNS | SLEEPS),
    ("character:CHEN", WATCHES | RUNS | {"sheet.CHEN.winter"}),
    ("character:MARA", RUNS | SLEEPS | {"sheet.MARA.winter"}),
    ("character:TOLU", {"sheet.TOLU.summer"}),
    ("kind:keyframe", {"keyframe.hunt.chen_watches.take1", "keyframe.hunt.chen_watches.take2",
                       "keyframe.hunt.chen_runs.take1", "keyframe.camp.mara_sleeps.take1"}),
    ("kind:plate", {"plate.STEPPE.DUSK", "plate.CAMP.NIGHT"}),
    ("kind:film", {"film"}),
    ("id:clip.hunt.*", {"clip.hunt.chen_watches.take1", "clip.hunt.chen_watches.take2",
                        "clip.hunt.chen_runs.take1"}),
    ("id:sheet.?ARA.*", {"sheet.MARA.winter"}),
    ("id:film", {"film"}),
])
def test_methods(spec: str, expected: set[str]) -> None:
    assert select(G, spec) == expected


@pytest.mark.parametrize(("spec", "expected"), [
    ("film", {"film"}),  # a node id
    ("shot.hunt.chen_runs", {"shot.hunt.chen_runs"}),  # has a dot: an id glob
    ("speech.*", {"speech.hunt.chen_watches.1", "speech.camp.mara_sleeps.1",
                  "speech.camp.mara_sleeps.2"}),
    ("chen_watches", WATCHES),  # a shot id
    ("camp", SLEEPS),  # a scene
    ("TOLU", {"sheet.TOLU.summer"}),  # a character
])
def test_bare_values(spec: str, expected: set[str]) -> None:
    assert select(G, spec) == expected


# --- ancestors, descendants, @ -----------------------------------------------------------


RUNS_NEEDS = {"keyframe.hunt.chen_runs.take1", "sheet.CHEN.winter", "sheet.MARA.winter",
              "plate.STEPPE.DUSK"}


@pytest.mark.parametrize(("spec", "expected"), [
    ("+shot.hunt.chen_runs", RUNS | RUNS_NEEDS),
    ("+shot:chen_runs", RUNS | RUNS_NEEDS),
    ("1+shot.hunt.chen_runs", {"shot.hunt.chen_runs", "clip.hunt.chen_runs.take1"}),
    ("2+shot.hunt.chen_runs", {"shot.hunt.chen_runs", "clip.hunt.chen_runs.take1",
                               "keyframe.hunt.chen_runs.take1"}),
    ("clip.hunt.chen_runs.take1+", {"clip.hunt.chen_runs.take1", "shot.hunt.chen_runs",
                                    "timeline", "film"}),
    ("clip.hunt.chen_runs.take1+1", {"clip.hunt.chen_runs.take1", "shot.hunt.chen_runs"}),
    ("1+clip.hunt.chen_runs.take1+1", {"keyframe.hunt.chen_runs.take1",
                                       "clip.hunt.chen_runs.take1", "shot.hunt.chen_runs"}),
    ("sheet.TOLU.summer+", {"sheet.TOLU.summer"}),
    ("character:CHEN+", WATCHES | RUNS | {"sheet.CHEN.winter"} | SINKS),
    ("kind:speech+", {"speech.hunt.chen_watches.1", "speech.camp.mara_sleeps.1",
                      "speech.camp.mara_sleeps.2", "shot.hunt.chen_watches",
                      "shot.camp.mara_sleeps", "subtitles", "timeline", "film"}),
    ("+film", set(G) - {"storyboard", "sheet.TOLU.summer"}),
    ("@clip.hunt.chen_runs.take1", set(G) - {"storyboard", "sheet.TOLU.summer"}),
    ("@storyboard", {"storyboard"} | nx.ancestors(G, "storyboard")),
])
def test_graph_operators(spec: str, expected: set[str]) -> None:
    assert select(G, spec) == expected


# --- set algebra ---------------------------------------------------------------------------


def test_union_and_intersection() -> None:
    assert select(G, "scene:hunt,kind:keyframe") == {
        "keyframe.hunt.chen_watches.take1", "keyframe.hunt.chen_watches.take2",
        "keyframe.hunt.chen_runs.take1"}
    assert select(G, "kind:sheet kind:plate") == {
        "sheet.CHEN.winter", "sheet.MARA.winter", "sheet.TOLU.summer",
        "plate.STEPPE.DUSK", "plate.CAMP.NIGHT"}
    # several --select values are a union, like words of one value
    assert select(G, ["shot:chen_runs", "kind:plate"]) == select(G, "shot:chen_runs kind:plate")
    assert select(G, "character:CHEN,character:MARA") == RUNS
    assert select(G, "character:CHEN,character:MARA  camp") == RUNS | SLEEPS
    # an operator binds to its atom, before the intersection
    assert select(G, "+shot:chen_runs,kind:sheet") == {"sheet.CHEN.winter", "sheet.MARA.winter"}
    assert select(G, "scene:camp,kind:clip+") == {"clip.camp.mara_sleeps.take1",
                                                 "shot.camp.mara_sleeps"}


def test_parsed_form_is_data() -> None:
    sel = parse_selector("2+shot:chen_*,kind:clip @film")
    assert sel.terms == (
        (Atom("shot", "chen_*", up=2, source="2+shot:chen_*,kind:clip @film", position=7),
         Atom("kind", "clip", source="2+shot:chen_*,kind:clip @film", position=19)),
        (Atom(None, "film", at=True, source="2+shot:chen_*,kind:clip @film", position=25),),
    )
    assert parse_selector("2+shot:chen_*,kind:clip @film") == sel  # frozen, comparable
    assert hash(sel) == hash(parse_selector("2+shot:chen_*,kind:clip @film"))
    assert parse_selector("shot:x+").terms[0][0].down is None
    assert sel.evaluate(G) == evaluate(G, sel)


def test_a_shot_glob_matching_nothing_is_a_warning() -> None:
    result = evaluate(G, parse_selector("shot:wolf_* kind:film"))
    assert result.nodes == {"film"}
    (w,) = result.warnings
    assert w.message == "no shot matches `wolf_*` (selects nothing)"
    assert (w.position, w.length) == (5, 6)
    result = evaluate(G, parse_selector("shot:chen_wathces"))
    assert result == Selection(frozenset(), result.warnings)
    assert result.warnings[0].help == "did you mean `chen_watches`?"
    assert evaluate(G, parse_selector("id:clip.nowhere.*")).warnings[0].message == (
        "no step id matches `clip.nowhere.*` (selects nothing)")
    assert select(G, "shot:wolf_*") == set()


def test_the_index_follows_the_graph() -> None:
    g = film_graph()
    assert select(g, "kind:film") == {"film"}
    assert Index.of(g) is Index.of(g)
    add(g, "keyframe.camp.extra.take1", "keyframe", "camp", "extra", ("TOLU",))
    assert "keyframe.camp.extra.take1" in select(g, "character:TOLU")
    assert "film" not in g.graph.get("_select_index", {})  # graph.graph stays plain data
    assert g.graph == {}


# --- errors ----------------------------------------------------------------------------


@pytest.mark.parametrize(("spec", "message", "position", "help"), [
    ("scnee:hunt+", "unknown selector method `scnee`", 0, "did you mean `scene`?"),
    ("kind:clip,2+Shot:x", "unknown selector method `Shot`", 12, "did you mean `shot`?"),
    ("frobnicate:x", "unknown selector method `frobnicate`", 0,
     "methods: `scene:`, `shot:`, `character:`, `kind:`, `id:`, `status:`"),
    (":hunt", "missing method before `:`", 0,
     "methods: `scene:`, `shot:`, `character:`, `kind:`, `id:`, `status:`"),
    ("+scene:", "empty value after `scene:`", 7,
     "e.g. `scene:hunt`, `shot:chen_*`, `kind:keyframe`"),
    ("+", "empty value in selector", 0, "e.g. `scene:hunt`, `shot:chen_*`, `kind:keyframe`"),
    ("shot:x+abc", "bad depth `abc`", 7, "a depth is a whole number: `2+shot:x` or `shot:x+2`"),
    ("1.5+shot:x", "bad depth `1.5`", 0, "a depth is a whole number: `2+shot:x` or `shot:x+2`"),
    ("kind:clip 0+shot:x", "a depth of 0 selects nothing more", 10,
     "drop the `+` to select only the nodes themselves"),
    ("a+b+c+d", "too many `+` in `a+b+c+d`", 0, "use `+X`, `X+`, `N+X` or `X+N`"),
    ("@+film", "`@` does not combine with `+`", 0,
     "`@X` already selects X, everything that needs it, and all they need"),
    ("film@", "`@` must come first", 4, "write `@film`"),
    ("kind:keyframes", "unknown step kind `keyframes`", 5, "did you mean `keyframe`?"),
    ("kind:frame", "unknown step kind `frame`", 5,
     "kinds: sheet, plate, keyframe, clip, lastframe, speech, music, sfx, shot, mix, film, subtitles, timeline, storyboard, storyboard_index, export"),
    ("kind:clip,,kind:shot", "empty selector between commas", 9,
     "remove the extra `,` (a comma means *and*)"),
    ("   ", "empty selector", 0, "give a node, e.g. `shot:chen_*` or `character:CHEN+`"),
])
def test_parse_errors(spec: str, message: str, position: int, help: str) -> None:
    with pytest.raises(SelectorError) as info:
        parse_selector(spec)
    err = info.value
    assert (err.message, err.position, err.help, err.source) == (message, position, help, spec)


@pytest.mark.parametrize(("spec", "message", "position", "help"), [
    ("scene:hnut", "unknown scene `hnut`", 6, "did you mean `hunt`?"),
    ("kind:clip scene:desert", "unknown scene `desert`", 16, "no scene in the graph is named so"),
    ("character:chen+", "unknown character `chen`", 10, "did you mean `CHEN`?"),
    ("character:MRAA", "unknown character `MRAA`", 10, "did you mean `MARA`?"),
    ("hnt", "`hnt` is no step, shot, scene or character", 0, "did you mean `hunt`?"),
    ("fillm", "`fillm` is no step, shot, scene or character", 0, "did you mean `film`?"),
    ("keyframe", "`keyframe` is no step, shot, scene or character", 0,
     "did you mean `kind:keyframe`?"),
])
def test_names_the_graph_lacks(spec: str, message: str, position: int, help: str) -> None:
    sel = parse_selector(spec)  # well-formed; only the graph can tell
    with pytest.raises(SelectorError) as info:
        evaluate(G, sel)
    err = info.value
    assert (err.message, err.position, err.help, err.source) == (message, position, help, spec)


def test_errors_point_into_the_value_at_fault() -> None:
    with pytest.raises(SelectorError) as info:
        select(G, ["kind:clip", "+scnee:hunt"])
    assert info.value.source == "+scnee:hunt"
    assert info.value.render() == (
        "error: unknown selector method `scnee`\n"
        "  | +scnee:hunt\n"
        "  |  ^^^^^\n"
        "  = help: did you mean `scene`?")
    w = evaluate(G, parse_selector("kind:film shot:x_*")).warnings[0]
    assert w.render() == (
        "warning: no shot matches `x_*` (selects nothing)\n"
        "  | kind:film shot:x_*\n"
        "  |                ^^^")


# --- properties on random DAGs -------------------------------------------------------------


@st.composite
def dags(draw) -> nx.DiGraph:
    n = draw(st.integers(1, 9))
    g = nx.DiGraph()
    for i in range(n):
        scene = "a" if i == 0 else draw(st.sampled_from(["a", "b", None]))
        add(g, f"n{i}", draw(st.sampled_from(["clip", "shot"])), scene, f"s{i}")
    for i in range(n):
        for j in range(i + 1, n):
            if draw(st.booleans()):
                g.add_edge(f"n{i}", f"n{j}")
    return g


def within(g: nx.DiGraph, start: set[str], depth: int) -> set[str]:
    out = set()
    for s in start:
        out |= set(nx.single_source_shortest_path_length(g, s, cutoff=depth))
    return out


@settings(max_examples=200, deadline=None)
@given(dags(), st.integers(1, 4))
def test_operators_are_ancestors_and_descendants(g: nx.DiGraph, depth: int) -> None:
    a = {n for n, d in g.nodes(data=True) if d["scene"] == "a"}
    clips = {n for n, d in g.nodes(data=True) if d["kind"] == "clip"}
    up = a.union(*(nx.ancestors(g, x) for x in a))
    down = a.union(*(nx.descendants(g, x) for x in a))
    assert select(g, "+scene:a") == up
    assert select(g, "scene:a+") == down
    assert select(g, "+scene:a+") == up | down
    assert select(g, f"{depth}+scene:a") == within(g.reverse(), a, depth)
    assert select(g, f"scene:a+{depth}") == within(g, a, depth)
    assert select(g, "@scene:a") == down.union(*(nx.ancestors(g, x) for x in down))
    assert select(g, "scene:a,kind:clip") == a & clips
    assert select(g, "scene:a kind:clip") == a | clips
    assert select(g, "+scene:a,kind:clip+") == up & (clips.union(
        *(nx.descendants(g, x) for x in clips)))
    assert select(g, "scene:a,kind:clip kind:shot") == (a & clips) | (set(g) - clips)
    assert select(g, "id:n*") == set(g)
