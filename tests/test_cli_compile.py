"""`filmc graph` and `filmc explain` as a user runs them, on the example film."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pydot
import pytest
from conftest import copy_example

ROOT = Path(__file__).resolve().parents[1]
EXAMPLE = ROOT / "examples" / "wolfpack"


def filmc(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess:
    env = dict(os.environ, NO_COLOR="1")
    return subprocess.run([sys.executable, "-m", "filmc", *args], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=120)


def test_graph_dot_is_graphviz_syntax() -> None:
    r = filmc("graph", str(EXAMPLE / "film.film"))
    assert r.returncode == 0, r.stderr
    (g,) = pydot.graph_from_dot_data(r.stdout)
    names = {n.get_name().strip('"') for n in g.get_nodes()} - {"node"}
    assert "film" in names and "keyframe.hunt.chen_watches.comfyui-2" in names
    edges = {(e.get_source().strip('"'), e.get_destination().strip('"')) for e in g.get_edges()}
    assert ("sheet.CHEN.winter", "keyframe.hunt.chen_watches.comfyui-2") in edges


def test_graph_json_with_selection() -> None:
    r = filmc("graph", str(EXAMPLE / "film.film"), "--format", "json",
              "--select", "+shot:chen_watches,kind:clip")
    assert r.returncode == 0, r.stderr
    doc = json.loads(r.stdout)
    ids = {n["id"] for n in doc["nodes"]}
    assert ids == {"clip.hunt.chen_watches.take1", "clip.hunt.chen_watches.take2"}
    r = filmc("graph", str(EXAMPLE / "film.film"), "--format", "json", "-s", "+shot:chen_watches")
    ids = {n["id"] for n in json.loads(r.stdout)["nodes"]}
    assert {"sheet.CHEN.winter", "plate.STEPPE.DUSK", "shot.hunt.chen_watches"} <= ids
    assert all(a in ids and b in ids for a, b in json.loads(r.stdout)["edges"])


def test_graph_bad_selector_is_a_diagnostic() -> None:
    r = filmc("graph", str(EXAMPLE / "film.film"), "-s", "kidn:clip")
    assert r.returncode == 1 and "Traceback" not in r.stderr
    assert "kind" in r.stderr  # the did-you-mean


def test_explain_shows_prompts_inputs_and_keys() -> None:
    r = filmc("explain", "chen_watches", cwd=EXAMPLE)
    assert r.returncode == 0, r.stderr
    out = r.stdout
    assert out.startswith("shot hunt/chen_watches: 3s, 4 keyframe candidates (openai 2, "
                          "comfyui 2), 2 clip takes, cast CHEN(winter)\n"
                          "  keyframe: unpicked, using openai-1\n  clip: unpicked, using take1\n")
    assert "keyframe.hunt.chen_watches.comfyui-2" in out and "sheet.CHEN.winter" in out
    assert "scar above the left eyebrow" in out  # the character's look reaches the prompt
    assert "Chen Zhen" not in out  # the display name does not
    doc = json.loads(filmc("explain", str(EXAMPLE / "film.film"), "chen_watches", "--json").stdout)
    kf = next(s for s in doc if s["id"] == "keyframe.hunt.chen_watches.openai-1")
    assert len(kf["key"]) == 64
    assert kf["inputs"] == ["sheet.CHEN", "sheet.CHEN.winter", "plate.STEPPE.DUSK"]
    assert kf["roles"] == {"sheet.CHEN": "character", "sheet.CHEN.winter": "character",
                           "plate.STEPPE.DUSK": "location"}


def test_explain_unknown_shot_suggests() -> None:
    r = filmc("explain", str(EXAMPLE / "film.film"), "chen_wathces")
    assert r.returncode == 1 and "chen_watches" in r.stderr and "Traceback" not in r.stderr


def test_unknown_backend_override_is_an_error(tmp_path: Path) -> None:
    copy_example(tmp_path / "w")
    part = tmp_path / "w" / "scenes" / "01_hunt.film"
    part.write_text(part.read_text().replace("backend keyframe comfyui",
                                             "backend keyframe comfyiu", 1))
    r = filmc("check", "w/film.film", cwd=tmp_path)
    assert r.returncode == 1 and "F0240" in r.stderr and "did you mean `comfyui`" in r.stderr


def test_a_backend_that_cannot_make_a_kind_is_an_error(tmp_path: Path) -> None:
    copy_example(tmp_path / "w")
    part = tmp_path / "w" / "scenes" / "01_hunt.film"
    part.write_text(part.read_text().replace("backend keyframe comfyui", "backend clip openai", 1))
    r = filmc("plan", "w/film.film", cwd=tmp_path)
    assert r.returncode == 1 and "F0514" in r.stderr
    assert "backend `openai` (openai) cannot make `clip` steps" in r.stderr
    assert "backends that make `clip` steps: `comfyui`, `local`" in r.stderr


@pytest.mark.parametrize("cmd", ["graph", "explain"])
def test_compile_errors_stop_with_diagnostics(tmp_path: Path, cmd: str) -> None:
    (tmp_path / "film.film").write_text('film "X" {\n  fps 0\n}\n')
    args = [cmd, "film.film"] + (["x"] if cmd == "explain" else [])
    r = filmc(*args, cwd=tmp_path)
    assert r.returncode == 1 and "F0303" in r.stderr and r.stdout == ""


def finish_build(project: Path) -> None:
    """Record every step as built, as `filmc build` does when it finishes."""
    from filmc.compiler.pipeline import compile_film
    from filmc.engine.state import State
    from filmc.engine.store import Store

    c = compile_film(project / "film.film")
    steps = [d["step"] for _, d in c.graph.nodes(data=True)]
    with State.open(project, create=True) as state:  # type: ignore[union-attr]
        state.record_last((s.id, s.key, s.record) for s in steps)
    with Store.open(project / ".filmc", create=True) as store:  # type: ignore[union-attr]
        for s in steps:
            if s.backend is not None:
                store.record_action(s.key, [], {"backend": s.backend})


def test_plan_exit_codes_follow_terraform(tmp_path: Path) -> None:
    project = copy_example(tmp_path / "w")
    r = filmc("plan", "film.film", cwd=project)
    assert r.returncode == 2, r.stderr
    assert "Plan: 172 to run" in r.stdout and "estimated cost $9.53" in r.stdout
    assert "Needs `OPENAI_API_KEY` (for openai): NOT SET" in r.stdout
    finish_build(project)
    r = filmc("plan", "film.film", cwd=project)
    assert r.returncode == 0 and "No changes" in r.stdout
    part = project / "scenes" / "01_hunt.film"
    part.write_text(part.read_text().replace(
        "camera close_up ground_level portrait_lens slow_push",
        "camera medium ground_level portrait_lens slow_push"))
    r = filmc("plan", "film.film", "--json", cwd=project)
    assert r.returncode == 2
    doc = json.loads(r.stdout)
    to_run = {s["id"] for s in doc["steps"] if s["status"] in ("new", "changed", "missing")}
    # the camera's words changed the openai keyframes' prompts, hence everything after them
    assert to_run == ({f"keyframe.hunt.chen_watches.{c}" for c in ("openai-1", "openai-2",
                                                                   "comfyui-1", "comfyui-2")}
                      | {"clip.hunt.chen_watches.take1", "clip.hunt.chen_watches.take2",
                         "shot.hunt.chen_watches", "film", "storyboard.hunt", "storyboard_index"}
                      # the exports that name those steps, and the shot list (its size)
                      | {"export.otio", "export.edl", "export.fcpxml", "export.csv"})
    kf = next(s for s in doc["steps"] if s["id"] == "keyframe.hunt.chen_watches.openai-1")
    assert kf["status"] == "changed" and "prompt" in kf["reasons"]


def test_plan_on_a_broken_film_exits_1(tmp_path: Path) -> None:
    (tmp_path / "film.film").write_text('film "X" {\n  fps 0\n}\n')
    r = filmc("plan", "film.film", cwd=tmp_path)
    assert r.returncode == 1 and "F0303" in r.stderr
