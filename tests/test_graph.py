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
COMFY_SHOTS = {"hunt.pack_closes_in", "hunt.gazelle_chase", "white_storm.horses_panic",
               "white_storm.ice_breaks"}


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
    g = compiled(EXAMPLES / name).graph
    compare(HERE / "golden_graph" / f"{name}.graph.json", to_json(graph_json(g)), bless)


def test_graph_is_a_dag(wolfpack: Compiled) -> None:
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
        if d["kind"] in ("keyframe", "clip", "speech", "shot"):
            assert d["scene"] and d["shot"] and n.split(".")[1:3] == [d["scene"], d["shot"]]
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


def test_takes_make_a_keyframe_and_a_clip_each(wolfpack: Compiled) -> None:
    g = wolfpack.graph
    takes = {}
    for shot in wolfpack.film.shots:
        base = f"{shot.scene}.{shot.id}"
        takes[base] = shot.takes
        for kind in ("keyframe", "clip"):
            have = sorted(n for n in g if n.startswith(f"{kind}.{base}.take"))
            assert have == sorted(f"{kind}.{base}.take{t}" for t in range(1, shot.takes + 1))
        for t in range(1, shot.takes + 1):
            assert g.nodes[f"clip.{base}.take{t}"]["step"].inputs == (
                InputRef(f"keyframe.{base}.take{t}", S.FIRST_FRAME),)
        speech = tuple(InputRef(f"speech.{base}.{line.index}", S.SPEECH,
                                Tags(start=line.start, end=line.end)) for line in shot.lines)
        assert g.nodes[f"shot.{base}"]["step"].inputs == (
            InputRef(f"clip.{base}.take1", S.CLIP), *speech)
        keyframe = g.nodes[f"keyframe.{base}.take1"]["step"]
        cast = [(i.tags.character, i.tags.outfit) for i in keyframe.inputs if i.role == S.CHARACTER]
        assert cast == [(m.character, m.outfit) for m in shot.cast]
    # film default 2, scene default 3 (white_storm), a shot's own line wins
    assert takes["hunt.chen_watches"] == 4 and takes["hunt.steppe_vista"] == 2
    assert takes["white_storm.blizzard_front"] == 3 and takes["white_storm.horses_panic"] == 6
    assert [i.step for i in g.nodes["film"]["step"].inputs] == [
        *(f"shot.{s.scene}.{s.id}" for s in wolfpack.film.shots), "subtitles"]
    assert [(i.step, i.role) for i in g.nodes["storyboard"]["step"].inputs] == [
        (f"keyframe.{s.scene}.{s.id}.take1", S.PANEL) for s in wolfpack.film.shots]


def test_a_backend_override_moves_only_that_step_kind(wolfpack: Compiled) -> None:
    overridden = set()
    default = {"keyframe": "openai", "speech": "openai"}  # the example's [steps]
    for n, step in steps(wolfpack).items():
        where = f"{step.scene}.{step.shot}"
        if step.kind == "keyframe" and where in COMFY_SHOTS:
            assert step.backend == "comfyui", n
            overridden.add(where)
        elif step.backend is not None:
            assert step.backend == default.get(step.kind, "local"), n
    assert overridden == COMFY_SHOTS


def test_user_reference_files_make_provided_steps(wolfpack: Compiled) -> None:
    provided = {n: s for n, s in steps(wolfpack).items() if s.backend is None}
    assert {n: [f.path for f in s.files] for n, s in provided.items()} == {
        "sheet.ALPHA": ["refs/lead_wolf.png"],
        "sheet.CHEN.winter": ["refs/chen_winter.png"],
        "plate.STEPPE.NIGHT": ["refs/steppe_night.png"],
    }
    for s in provided.values():
        assert s.params == {}
        assert s.template is None and s.prompt == "" and s.inputs == ()
        assert s.record["files"] == {f.path: f.digest for f in s.files}
    # a generated sheet still reads the character's own images as references
    student = wolfpack.graph.nodes["sheet.CHEN.student"]["step"]
    assert student.backend == "local" and [f.path for f in student.files] == ["refs/chen_front.png"]


def test_prompts_hold_looks_not_display_names(wolfpack: Compiled) -> None:
    film = wolfpack.film
    for shot in film.shots:
        for t in range(1, shot.takes + 1):
            for kind in ("keyframe", "clip"):
                step = wolfpack.graph.nodes[f"{kind}.{shot.scene}.{shot.id}.take{t}"]["step"]
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
                    assert c.look in step.prompt
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
