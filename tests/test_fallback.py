"""A backend that refuses a step's content hands it to its fallback, over real HTTP.

The film of tests/test_services.py, with shot b2's keyframe on the loopback OpenAI, whose
safety system refuses its prompt ("The kite rises over the water."): with a fallback
named in filmc.toml (or by the shot's `fallback keyframe comfyui` line), the loopback
ComfyUI makes it; the build's report, its summary and the next `plan` say which step
fell back, from what to what, and what it cost; nothing is paid twice.
"""

from __future__ import annotations

import json
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from test_services import (
    Services,
    assert_paid_once,
    build,
    filmc,
    make_project,
    plan,
    report,
    running_services,
    steps,
)

B2 = "keyframe.one.b2.openai-1"


@pytest.fixture
def services() -> Iterator[Services]:
    with running_services() as s:
        yield s


def refusing(services: Services) -> None:
    services.openai.refuse = ["kite rises"]


def test_a_refused_keyframe_is_made_by_the_fallback_and_the_report_says_so(
        tmp_path: Path, services: Services) -> None:
    refusing(services)
    project = make_project(tmp_path / "svc", services,
                           openai={"fallback": {"keyframe": "comfyui"}})
    before = len(services.comfy.submit_ids)
    r = build(project, services)
    assert "`openai` refused it" in r.stderr and "`comfyui` makes it instead" in r.stderr
    assert "made by a fallback backend: keyframe.one.b2.openai-1 (`openai` refused it; " \
           "`comfyui` made it), for $0.00" in r.stderr  # a ComfyUI job costs nothing
    step = steps(project)[B2]
    assert step["status"] == "ran" and step["backend"] == "comfyui"
    assert step["fallback"]["from"] == "openai" and "safety" in step["fallback"]["refused"]
    assert step["estimate"] == 0.01  # ComfyUI's price, not OpenAI's $0.04
    fell = report(project)["fell_back"]
    assert [(f["id"], f["from"], f["to"]) for f in fell] == [(B2, "openai", "comfyui")]
    assert len(services.comfy.submit_ids) == before + 5  # a1, a2, b1 ×2, and b2's
    assert services.openai.billed == 3  # sheet.ANA and two lines: the refusal is not billed
    assert (project / "build" / "svc" / "film.mp4").is_file()

    # The next plan knows: kept under the step's key, made by the fallback.
    doc = plan(project, services, "-v")
    assert doc["summary"]["fell_back"] == [{"id": B2, "shot": "b2", "from": "openai",
                                            "to": "comfyui", "cost": 0.0}]
    b2 = next(s for s in doc["steps"] if s["id"] == B2)
    assert b2["status"] == "cached" and b2["reasons"] == ["made by `comfyui`: `openai` "
                                                          "refused it"]
    text = filmc(project, "plan", "--use-first", "svc.film", services=services)
    assert "made by a fallback backend ($0.00)" in text.stdout
    assert "keyframe.one.b2.openai-1: `openai` refused it; `comfyui` made it ($0.00)" \
        in text.stdout

    # Nothing asked again: the fallback's image is the step's.
    submits, billed = len(services.comfy.submit_ids), services.openai.billed
    again = build(project, services, "--force", "kind:shot")
    assert B2 not in {s for s, v in steps(project).items() if v["status"] == "ran"}
    assert steps(project)[B2]["fallback"]["from"] == "openai"  # cached, and still says so
    assert len(services.comfy.submit_ids) == submits and services.openai.billed == billed
    assert "Traceback" not in again.stderr
    assert_paid_once(services)


def test_a_shot_names_its_own_fallback(tmp_path: Path, services: Services) -> None:
    refusing(services)
    project = make_project(tmp_path / "svc", services)
    film = project / "svc.film"
    film.write_text(film.read_text().replace(
        "    backend keyframe openai\n",
        "    backend keyframe openai\n    fallback keyframe comfyui\n"))
    build(project, services, "--until", "keyframe", "--select", "shot:b2")
    step = steps(project)[B2]
    assert step["backend"] == "comfyui" and step["fallback"]["from"] == "openai"


def test_without_a_fallback_the_refusal_fails_the_shot(tmp_path: Path,
                                                      services: Services) -> None:
    refusing(services)
    project = make_project(tmp_path / "svc", services)
    r = build(project, services, "--until", "keyframe", "--select", "shot:b2", code=1)
    assert "failed keyframe.one.b2.openai-1 (shot one/b2)" in r.stderr
    assert report(project)["fell_back"] == []


def test_a_fallback_is_checked_before_anything_is_spent(tmp_path: Path,
                                                       services: Services) -> None:
    project = make_project(tmp_path / "svc", services, openai={"fallback": "runwy"})
    r = filmc(project, "check", "svc.film", services=services)
    assert r.returncode == 1 and "error[F0504]: no backend `runwy` to fall back to" in r.stderr
    project = make_project(tmp_path / "svc2", services, openai={"fallback": "openai"})
    r = filmc(project, "check", "svc.film", services=services)
    assert r.returncode == 1 and "`openai` cannot fall back to itself" in r.stderr
    project = make_project(tmp_path / "svc3", services)
    film = project / "svc.film"
    film.write_text(film.read_text().replace(
        "    backend keyframe openai\n",
        "    backend keyframe openai\n    fallback keyframe kling\n"))
    r = filmc(project, "check", "svc.film", services=services)
    assert r.returncode == 1 and "error[F0240]: backend `kling` is not configured" in r.stderr
    # The JSON plan of a project never built has no fallbacks to tell.
    doc = json.loads(filmc(make_project(tmp_path / "svc4", services), "plan", "--json",
                           "svc.film", services=services).stdout)
    assert doc["summary"]["fell_back"] == []


def test_seedance_refuses_a_face_and_runway_makes_the_clip(tmp_path: Path) -> None:
    """The issue's case: Seedance's content check refuses the keyframe (a real person's
    face) every time; with `fallback = { clip = "runway" }` the clip is Runway's, made once,
    and the report, the summary and the next plan say so."""
    from adapter_harness import filmc as run_filmc
    from adapter_harness import report
    from loopback import serve
    from loopback.runway import RunwayState
    from loopback.runway import make_app as runway_app
    from loopback.seedance import SeedanceState
    from loopback.seedance import make_app as seedance_app
    from test_seedance import FAST, KEY, KEYS, TINY_BUILD, backend_table, tiny_project

    runway = RunwayState(key="key_runway_canary_5b1e", video_scale=0.1)
    seedance = SeedanceState(key=KEY)
    seedance.faces.append("walks along the pier")
    with serve(seedance_app(seedance)) as ark, serve(runway_app(runway)) as rw:
        tables = backend_table(f"{ark}/api/v3")
        tables["backends.seedance"]["fallback"] = {"clip": "runway"}
        tables["backends.runway"] = {"type": "runway", "api_key_env": "RUNWAY_KEY",
                                     "base_url": rw, **FAST,
                                     "prices": {"clip": {"per_second": 0.05}}}
        project = tiny_project(tmp_path / "tiny", "seedance", tables)
        keys = {**KEYS, "RUNWAY_KEY": runway.key}

        def run(*args: str, code: int | None = 0) -> subprocess.CompletedProcess:
            return run_filmc(project, *args, keys=keys, code=code)

        r = run("build", *TINY_BUILD)
        step = report(project, "tiny")["clip.one.a1.take1"]
        assert step["status"] == "ran" and step["backend"] == "runway"
        assert step["fallback"]["from"] == "seedance"
        assert "may contain real person" in step["fallback"]["refused"]
        assert "`seedance` refused it" in r.stderr and "`runway` makes it instead" in r.stderr
        assert "made by a fallback backend: clip.one.a1.take1" in r.stderr
        assert seedance.requests["create"] == 1 and not seedance.created  # refused, not paid
        assert len(runway.created) == 1 and step["outputs"][0] in runway.made
        # Runway's price for the length it makes (a 1 s shot: its shortest clip)
        assert step["estimate"] and step["estimate"] > 0

        doc = json.loads(run("plan", "--json", *TINY_BUILD, code=None).stdout)
        assert [(f["id"], f["from"], f["to"]) for f in doc["summary"]["fell_back"]] == [
            ("clip.one.a1.take1", "seedance", "runway")]
        again = run("build", *TINY_BUILD)
        assert "up to date" in again.stderr
        assert seedance.requests["create"] == 1 and len(runway.created) == 1
