"""The step graph of the example film: a golden file of every node, edge and key
(`pytest --bless` rewrites it; keys change whenever key-relevant code does, so review
the diff), and the structure every other command relies on."""

from __future__ import annotations

from pathlib import Path

import networkx as nx
import pytest
from conftest import copy_example
from golden_files import compare, to_json

from filmc.compiler.graph import Step
from filmc.compiler.pipeline import Compiled, compile_film
from filmc.lang import steps as S
from filmc.lang.diagnostics import render_text
from filmc.lang.steps import InputRef, StepId, Tags

HERE = Path(__file__).parent
EXAMPLES = HERE.parent / "examples"
WOLFPACK = EXAMPLES / "wolfpack"
COMFY_SHOTS = {"hunt.pack_closes_in", "hunt.chen_watches", "hunt.gazelle_chase",
               "white_storm.horses_panic", "white_storm.ice_breaks"}


def compiled(project: Path = WOLFPACK) -> Compiled:
    c = compile_film(project / "film.film")
    assert c.ok, [f"{d.code}: {d.message}" for d in c.diags.errors]
    assert c.graph is not None and c.film is not None
    return c


@pytest.fixture(scope="module")
def wolfpack() -> Compiled:
    return compiled()


def steps(c: Compiled) -> dict[str, Step]:
    return {n: d["step"] for n, d in c.graph.nodes(data=True)}


def graph_json(g: nx.DiGraph) -> dict:
    nodes = []
    for n in sorted(g):
        d = g.nodes[n]
        step = d["step"]
        nodes.append({"id": n, "kind": d["kind"], "backend": step.backend, "scene": d["scene"],
                      "shot": d["shot"], "characters": sorted(d["characters"]),
                      "inputs": [[i.step, i.role] for i in step.inputs], "key": step.key})
    return {"nodes": nodes, "edges": sorted([u, v] for u, v in g.edges)}


@pytest.mark.parametrize("name", ["wolfpack"])
def test_graph_golden(name: str, bless: bool, monkeypatch: pytest.MonkeyPatch) -> None:
    # The animatic's keys hold this machine's ffmpeg version: the golden file must not.
    monkeypatch.setattr("filmc.backends.local.adapter.ffmpeg_version", lambda: "ffmpeg (test)")
    # ...and the exports' keys the versions of OpenTimelineIO and its adapters installed.
    monkeypatch.setattr("filmc.backends.local.interchange.versions", lambda: {"otio": "test"})
    g = compiled(EXAMPLES / name).graph
    compare(HERE / "golden_graph" / f"{name}.graph.json", to_json(graph_json(g)), bless)


def test_graph_is_a_dag(wolfpack: Compiled) -> None:
    assert nx.is_directed_acyclic_graph(wolfpack.graph)


def test_a_step_inserted_out_of_order_is_known(wolfpack: Compiled) -> None:
    """The graph is checked for cycles only when a step was added before what it is made
    from: `_insert` says so, and otherwise makes what networkx's calls make."""
    from filmc.compiler.graph import _insert

    g, ref = nx.DiGraph(), nx.DiGraph()
    assert _insert(g, "a", {"kind": "sheet"}, [])
    assert _insert(g, "b", {"kind": "keyframe"}, ["a"])
    ref.add_node("a", kind="sheet")
    ref.add_node("b", kind="keyframe")
    ref.add_edge("a", "b")
    assert nx.utils.graphs_equal(g, ref)
    assert not _insert(g, "c", {"kind": "clip"}, ["d"])  # made from a step not there yet
    assert not _insert(g, "a", {"kind": "sheet"}, ["b"])  # added again: a cycle now
    assert not nx.is_directed_acyclic_graph(g)
    assert nx.is_directed_acyclic_graph(wolfpack.graph)


def test_every_node_has_the_attribute_contract(wolfpack: Compiled) -> None:
    for n, d in wolfpack.graph.nodes(data=True):
        step = d["step"]
        assert isinstance(step, Step)
        assert step.id == n
        assert d["kind"] == step.kind and d["kind"] in S.KINDS
        assert isinstance(step.sid, StepId) and str(step.sid) == n
        assert (d["scene"], d["shot"]) == (step.scene, step.shot)
        assert isinstance(d["characters"], frozenset) and d["characters"] == step.characters
        assert len(step.key) == 64 and int(step.key, 16) >= 0
        if d["kind"] in ("keyframe", "clip", "lastframe", "speech", "shot"):
            assert d["scene"] and d["shot"] and n.split(".")[1:3] == [d["scene"], d["shot"]]
        elif d["kind"] == "storyboard":  # a scene's own: storyboard.hunt
            assert d["scene"] and d["shot"] is None and n == f"storyboard.{d['scene']}"
        elif d["kind"] in ("music", "sfx"):  # a scene's own (music.hunt) or a shot's
            assert d["scene"] and n.split(".")[1] == d["scene"]
            assert d["shot"] is None or n.split(".")[2] == d["shot"]
        else:
            assert d["scene"] is None and d["shot"] is None


def test_every_input_exists_and_edges_are_the_inputs(wolfpack: Compiled) -> None:
    g = wolfpack.graph
    edges = set()
    for n, step in steps(wolfpack).items():
        for i in step.inputs:
            assert i.step in g, f"{n} reads {i.step}, which is not a step"
            assert i.role in S.ROLES
            edges.add((i.step, n))
        assert step.record["inputs"] == {i.step: g.nodes[i.step]["step"].key
                                         for i in step.inputs}
    assert edges == set(g.edges)


def candidate_names(shot) -> list[str]:
    return [f"{b}-{i}" for b, n in shot.candidates for i in range(1, n + 1)]


def expected_refs(film, shot) -> list[tuple[str, str | None]]:
    """Each cast member's face sheet and outfit sheet, as its framing shows them."""
    out: list[tuple[str, str | None]] = []
    for m in shot.cast:
        framing = shot.framed(m.character)
        if framing in ("silhouette", "voice"):
            continue
        if m.outfit is None:
            out.append((m.character, None))
        elif framing in ("hands", "back"):
            out.append((m.character, m.outfit))
        else:
            out += [(m.character, None), (m.character, m.outfit)]
    return out


def test_candidates_on_their_backends_and_takes_from_the_used_one(wolfpack: Compiled) -> None:
    g = wolfpack.graph
    for shot in wolfpack.film.shots:
        base = f"{shot.scene}.{shot.id}"
        names = candidate_names(shot)
        assert [n for n in g if n.startswith(f"keyframe.{base}.")] == \
            [f"keyframe.{base}.{x}" for x in names]
        for x in names:
            assert g.nodes[f"keyframe.{base}.{x}"]["step"].backend == x.rsplit("-", 1)[0]
        assert [n for n in g if n.startswith(f"clip.{base}.")] == \
            [f"clip.{base}.take{t}" for t in range(1, shot.takes + 1)]
        picks = g.graph["picks"][(shot.scene, shot.id)]
        assert picks.keyframe.used == names[0] and picks.clip.used == "take1"
        for t in range(1, shot.takes + 1):  # every take from the one keyframe used
            assert g.nodes[f"clip.{base}.take{t}"]["step"].inputs == (
                InputRef(f"keyframe.{base}.{names[0]}", S.FIRST_FRAME),)
        speech = tuple(InputRef(f"speech.{base}.{line.index}", S.SPEECH,
                                Tags(start=line.start, end=line.end)) for line in shot.lines)
        assert g.nodes[f"shot.{base}"]["step"].inputs == (
            InputRef(f"clip.{base}.take1", S.CLIP), *speech)
        for x in names:
            keyframe = g.nodes[f"keyframe.{base}.{x}"]["step"]
            cast = [(i.tags.character, i.tags.outfit) for i in keyframe.inputs
                    if i.role == S.CHARACTER]
            assert cast == expected_refs(wolfpack.film, shot)
    shots = {f"{s.scene}.{s.id}": s for s in wolfpack.film.shots}
    # film default 2, scene default 3 (white_storm), a shot's own lines win, whole
    assert shots["hunt.steppe_vista"].candidates == (("openai", 2),)
    assert shots["hunt.chen_watches"].candidates == (("openai", 2), ("comfyui", 2))
    assert shots["hunt.chen_watches"].takes == 2 and shots["hunt.steppe_vista"].takes == 1
    assert shots["hunt.gazelle_chase"].candidates == (("comfyui", 4), ("openai", 2))
    assert shots["white_storm.blizzard_front"].candidates == (("openai", 3),)
    assert shots["white_storm.horses_panic"].candidates == (("comfyui", 6),)
    assert [i.step for i in g.nodes["film"]["step"].inputs] == [
        *(f"shot.{s.scene}.{s.id}" for s in wolfpack.film.shots), "subtitles", "mix"]
    # The mix hears every line and the sound, in film order (each scene's ambience, from
    # its location, and music), and nothing that is seen.
    assert [i.step for i in g.nodes["mix"]["step"].inputs] == [
        *(f"speech.{s.scene}.{s.id}.{line.index}" for s in wolfpack.film.shots
          for line in s.lines),
        "sfx.hunt.ambience", "music.hunt", "sfx.yurt_talk.ambience", "sfx.cub.ambience",
        "sfx.white_storm.ambience", "music.white_storm", "sfx.white_storm.ice_breaks.1"]
    # One storyboard step a scene, over that scene's panels only, labelled by shot; the
    # index names every scene's pages.
    for scene in wolfpack.film.scenes:
        board = g.nodes[f"storyboard.{scene.id}"]["step"]
        assert [(i.step, i.role, i.tags.label) for i in board.inputs] == [
            (f"keyframe.{s.scene}.{s.id}.{candidate_names(s)[0]}", S.PANEL, s.id)
            for s in scene.shots]
        assert board.params["scene"]["title"] == scene.title
    assert [(i.step, i.role) for i in g.nodes["storyboard_index"]["step"].inputs] == [
        (f"storyboard.{scene.id}", S.PAGES) for scene in wolfpack.film.scenes]
    assert [row[1:] for row in g.nodes["storyboard_index"]["step"].params["scenes"]] == [
        [scene.id, n, scene.title, len(scene.shots)]
        for n, scene in enumerate(wolfpack.film.scenes, 1)]


def test_candidates_have_distinct_seeds_where_the_backend_takes_one(wolfpack: Compiled) -> None:
    g = wolfpack.graph
    # hunt sets `seed 1967`: comfyui takes seeds, each candidate its own
    seeds = [g.nodes[f"keyframe.hunt.gazelle_chase.comfyui-{i}"]["step"].fields.seed
             for i in range(1, 5)]
    assert seeds == [1967, 1968, 1969, 1970]
    # the storm sets no seed: comfyui still gets distinct, repeatable ones
    assert [g.nodes[f"keyframe.white_storm.horses_panic.comfyui-{i}"]["step"].fields.seed
            for i in range(1, 7)] == [1, 2, 3, 4, 5, 6]
    # openai takes no seed: none is invented for it (and no warning for one nobody asked)
    assert g.nodes["keyframe.white_storm.blizzard_front.openai-2"]["step"].fields.seed is None
    # clip takes are seeded the same way
    assert [g.nodes[f"clip.hunt.chen_watches.take{t}"]["step"].fields.seed
            for t in (1, 2)] == [1967, 1968]


def test_a_hands_insert_carries_no_face(wolfpack: Compiled) -> None:
    film = wolfpack.film
    gama = film.character("GAMA")
    step = wolfpack.graph.nodes["keyframe.cub.小狼.openai-1"]["step"]
    assert gama.look not in step.prompt and "no face" in step.prompt
    assert gama.outfit("herding_robe").look in step.prompt
    assert [i.step for i in step.inputs if i.role == S.CHARACTER] == ["sheet.GAMA.herding_robe"]
    # the next shot shows her face: both her sheets
    close = wolfpack.graph.nodes["keyframe.cub.gama_holds_cub.openai-1"]["step"]
    assert gama.look in close.prompt
    assert [i.step for i in close.inputs if i.role == S.CHARACTER] == [
        "sheet.GAMA", "sheet.GAMA.herding_robe"]


def test_a_backend_override_moves_only_that_step_kind(wolfpack: Compiled) -> None:
    overridden = set()
    default = {"keyframe": "openai", "speech": "openai"}  # the example's [steps]
    for n, step in steps(wolfpack).items():
        where = f"{step.scene}.{step.shot}"
        if step.kind == "keyframe" and step.backend is not None:
            assert step.backend == step.sid.candidate.rsplit("-", 1)[0], n
            if step.backend == "comfyui":
                overridden.add(where)
        elif step.backend is not None:
            assert step.backend == default.get(step.kind, "local"), n
    assert overridden == COMFY_SHOTS


def test_user_reference_files_make_provided_steps(wolfpack: Compiled) -> None:
    provided = {n: s for n, s in steps(wolfpack).items() if s.backend is None}
    assert {n: [f.path for f in s.files] for n, s in provided.items()} == {
        "sheet.ALPHA": ["refs/lead_wolf.png"],
        "sheet.CHEN": ["refs/chen_front.png"],
        "sheet.BILGEE": ["refs/bilgee_front.png"],
        "sheet.GAMA": ["refs/gama_front.png"],
        "sheet.CHEN.winter": ["refs/chen_winter.png"],
        "plate.STEPPE.NIGHT": ["refs/steppe_night.png"],
    }
    for s in provided.values():
        assert s.params == {}
        assert s.template is None and s.prompt == "" and s.inputs == ()
        assert s.record["files"] == {f.path: f.digest for f in s.files}
    # an outfit's generated sheet is made from the character's own sheet
    student = wolfpack.graph.nodes["sheet.CHEN.student"]["step"]
    assert student.backend == "local" and student.files == ()
    assert student.inputs == (InputRef("sheet.CHEN", S.CHARACTER, Tags("CHEN")),)


def test_prompts_hold_looks_not_display_names(wolfpack: Compiled) -> None:
    film = wolfpack.film
    for shot in film.shots:
        made = [("keyframe", x) for x in candidate_names(shot)]
        made += [("clip", f"take{t}") for t in range(1, shot.takes + 1)]
        for kind, name in made:
            step = wolfpack.graph.nodes[f"{kind}.{shot.scene}.{shot.id}.{name}"]["step"]
            assert shot.action in step.prompt
            # what the user wrote in the action may name anyone; the rest is ours
            rest = step.prompt.replace(shot.action, "")
            for c in film.characters:
                if c.name != c.id:
                    assert c.name not in rest, f"{step.id} names {c.name}"
            if kind == "clip":
                continue
            for m in shot.cast:
                c = film.character(m.character)
                assert (c.look in step.prompt) == (shot.framed(m.character) in ("face", "figure"))
                outfit = c.outfit(m.outfit)
                assert outfit is None or outfit.look in step.prompt
    sheet = wolfpack.graph.nodes["sheet.GAMA.herding_robe"]["step"]
    gama = film.character("GAMA")
    assert gama.look in sheet.prompt and gama.outfit("herding_robe").look in sheet.prompt
    assert gama.name not in sheet.prompt


@pytest.mark.parametrize("source, message", [
    ("{{ shot.action }}\n{{ shot.mood }}\n", "mood"),
    ("{{ shot.action }}\n{{ lighting | join(', ') }}\n", "lighting"),
    ("{{ shot.action }}\n{% if cast %}\n", "syntax error"),
    ("{{ shot.action }}\n{{ 1 / 0 }}\n", "division by zero"),
    ("{{ shot.action }}\n{{ style + 1 }}\n", "can only concatenate"),
])
def test_a_bad_project_template_is_a_diagnostic(tmp_path: Path, source: str,
                                                message: str) -> None:
    project = copy_example(tmp_path / "wolfpack")
    (project / "templates").mkdir()
    (project / "templates/keyframe.j2").write_text(source, encoding="utf-8")
    c = compile_film(project / "film.film")
    assert c.graph is None
    [d] = c.diags.errors
    assert d.code == "F0601"
    assert "templates/keyframe.j2" in d.message and message in d.message
    assert d.span is not None and d.span.file == "templates/keyframe.j2" and d.span.line == 2
    assert "error[F0601]" in render_text(d, c.sources)
