"""`filmc build` against paid services: loopback ComfyUI and OpenAI servers, real HTTP.

A small film (four shots at 192x80, two characters, one of them with a sheet
made by OpenAI, dialogue spoken by OpenAI, keyframes made by ComfyUI, one by
OpenAI) is built with the real command line, in a subprocess, against the
loopback servers of tests/loopback running in this process: their counters
outlive a build that is killed, and say what was submitted, and how often.
Every test asserts what a user sees (the exit code, the lines on stderr,
report.json, the files in build/) and what the services were asked: nothing
may be paid twice.

The faults (throttling, 5xx, dropped connections, failed and endless jobs,
broken downloads and files, credit, policy and key refusals) are in
test_services_faults.py; this file holds the happy path, the estimate and
`--max-cost`, the preflight, the store index, and plan = build.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import subprocess
import sys
import uuid
from collections import Counter
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import attrs
import pytest
from conftest import copy_example
from loopback import serve
from loopback.comfyui import ComfyState
from loopback.comfyui import make_app as comfy_app
from loopback.openai import OpenAIState
from loopback.openai import make_app as openai_app
from PIL import Image

from filmc.backends.ffmpeg import probe
from filmc.compiler.pipeline import compile_film
from filmc.engine.journal import OpenJob, read_open

FILM = """\
use std.camera
use std.light

film "Svc" {
  aspect 2.4:1
  size 192x80
  fps 24
  takes 1
}

character ANA "Ana" {
  look "a tall woman in a red coat"
  voice "warm"
}

character BO "Bo" {
  look "a boy with a kite"
  ref "refs/bo.png"
  voice "bright"
}

location PIER "Pier" {
  look "a wooden pier over grey water"
}

scene one "Morning" EXT PIER DAWN {
  shot a1 1s {
    camera wide eye_level static
    cast ANA
    action "Ana walks along the pier."
  }
  shot a2 2s {
    camera close_up low_angle dolly_in
    cast ANA
    ANA: "There you are."
  }
  shot b1 2s {
    camera medium high_angle pan_left
    cast ANA, BO
    candidates 2
    BO: "Look at it fly!"
  }
  shot b2 1s {
    camera extreme_wide birds_eye crane_up
    action "The kite rises over the water."
    backend keyframe openai
  }
}
"""
SECONDS = 1 + 2 + 2 + 1
LINES = ("There you are.", "Look at it fly!")
# A keyframe workflow the loopback ComfyUI runs for real: the cast's sheet laid into a
# canvas of the frame's size, the prompt and seed upstream of the saved image.
WORKFLOW = {
    "1": {"class_type": "EmptyImage", "inputs": {"width": "{{width}}", "height": "{{height}}",
                                                 "batch_size": 1, "color": 0}},
    "2": {"class_type": "LoadImage", "inputs": {"image": "{{reference_1}}"}},
    "3": {"class_type": "ImageScale", "inputs": {"image": ["2", 0], "upscale_method": "nearest",
                                                 "width": "{{width}}", "height": "{{height}}",
                                                 "crop": "center"}},
    "4": {"class_type": "ImageBlend", "inputs": {"image1": ["1", 0], "image2": ["3", 0],
                                                 "blend_factor": 0.5, "blend_mode": "normal"}},
    "5": {"class_type": "CLIPTextEncode", "inputs": {"text": "{{prompt}}", "clip": ["4", 0]}},
    "6": {"class_type": "KSampler", "inputs": {
        "model": ["4", 0], "seed": "{{seed}}", "steps": 1, "cfg": 1.0, "sampler_name": "euler",
        "scheduler": "normal", "positive": ["5", 0], "negative": ["5", 0],
        "latent_image": ["4", 0], "denoise": 1.0}},
    "7": {"class_type": "SaveImage", "inputs": {"images": ["6", 0],
                                                "filename_prefix": "filmc/keyframe"}},
}
COMFY_STEPS = frozenset({"keyframe.one.a1.comfyui-1", "keyframe.one.a2.comfyui-1",
                         "keyframe.one.b1.comfyui-1", "keyframe.one.b1.comfyui-2"})
OPENAI_STEPS = frozenset({"sheet.ANA", "keyframe.one.b2.openai-1", "speech.one.a2.1",
                          "speech.one.b1.1"})
TO_RUN = ("new", "changed", "missing", "forced", "running")
FAST = {"retries": 4, "backoff_s": 0.05, "backoff_cap_s": 0.2, "poll_interval_s": 0.1,
        "timeout_s": 20}


# -- the services, the project, the command ----------------------------------------------------


@attrs.frozen
class Services:
    comfy: ComfyState
    openai: OpenAIState
    comfy_url: str
    openai_url: str  # the API's base URL, …/v1
    key: str  # the API key the OpenAI server takes: a canary that must leak nowhere


@contextlib.contextmanager
def running_services() -> Iterator[Services]:
    """Both loopback servers, in this process (their counters outlive a killed build)."""
    key = f"sk-canary-{uuid.uuid4().hex}"
    comfy, openai = ComfyState(latency=0.05), OpenAIState(key=key)
    with serve(comfy_app(comfy)) as comfy_url, serve(openai_app(openai)) as openai_url:
        yield Services(comfy, openai, comfy_url, f"{openai_url}/v1", key)


@pytest.fixture
def services() -> Iterator[Services]:
    with running_services() as s:
        yield s


def toml_value(v: Any) -> str:
    """A TOML value: strings, numbers, booleans, lists and inline tables are all filmc.toml
    needs."""
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, (int, float)):
        return repr(v)
    if isinstance(v, str):
        return json.dumps(v)
    if isinstance(v, list):
        return "[" + ", ".join(toml_value(x) for x in v) + "]"
    if isinstance(v, Mapping):
        return "{ " + ", ".join(f"{k} = {toml_value(x)}" for k, x in v.items()) + " }"
    raise TypeError(v)


def config(services: Services, *, steps: Mapping[str, str] | None = None,
           comfy: Mapping[str, Any] | None = None,
           openai: Mapping[str, Any] | None = None) -> str:
    """filmc.toml: keyframes on ComfyUI, sheets and speech on OpenAI, all else local; fast
    retries and deadlines.  `steps`, `comfy`, `openai` override; a None value removes."""
    tables = {
        "steps": {"sheet": "openai", "keyframe": "comfyui", "speech": "openai", **(steps or {})},
        "backends.comfyui": {"type": "comfyui", "url": services.comfy_url,
                             "workflow": "workflows/keyframe_api.json", "concurrency": 4,
                             **FAST, "prices": {"keyframe": 0.01}, **(comfy or {})},
        "backends.openai": {"type": "openai", "api_key_env": "OPENAI_API_KEY",
                            "base_url": services.openai_url, "voices": {"ANA": "coral",
                                                                        "BO": "verse"},
                            "concurrency": 2, **FAST,
                            "prices": {"sheet": 0.04, "keyframe": 0.04,
                                       "speech": {"per_second": 0.0003}}, **(openai or {})},
    }
    out = []
    for name, table in tables.items():
        out.append(f"[{name}]")
        out += [f"{k} = {toml_value(v)}" for k, v in table.items() if v is not None]
        out.append("")
    return "\n".join(out)


def make_project(folder: Path, services: Services, **settings: Any) -> Path:
    """The film, its workflow, Bo's reference image and filmc.toml (`config(**settings)`)."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "svc.film").write_text(FILM, encoding="utf-8")
    (folder / "workflows").mkdir(exist_ok=True)
    (folder / "workflows" / "keyframe_api.json").write_text(json.dumps(WORKFLOW, indent=1))
    (folder / "refs").mkdir(exist_ok=True)
    Image.new("RGB", (64, 96), (20, 160, 60)).save(folder / "refs" / "bo.png")
    (folder / "filmc.toml").write_text(config(services, **settings), encoding="utf-8")
    return folder


@pytest.fixture
def project(tmp_path: Path, services: Services) -> Path:
    return make_project(tmp_path / "svc", services)


def env_for(services: Services | None, mark: str | None = None, **extra: str) -> dict[str, str]:
    """The user's environment: the key set (unless `services` is None), no colour."""
    env = {k: v for k, v in os.environ.items() if k != "OPENAI_API_KEY"}
    env.update(NO_COLOR="1", **extra)
    if services is not None:
        env["OPENAI_API_KEY"] = services.key
    if mark is not None:
        env["FILMC_TEST_MARK"] = mark
    return env


def filmc(project: Path, *args: str, services: Services | None,
          env: Mapping[str, str] | None = None, timeout: float = 120) -> subprocess.CompletedProcess:
    """`filmc ARGS` in the project folder, as a user runs it."""
    r = subprocess.run([sys.executable, "-m", "filmc", *args], cwd=project,
                       env={**env_for(services), **(env or {})}, capture_output=True,
                       text=True, timeout=timeout)
    assert "Traceback" not in r.stderr, r.stderr
    return r


# b1's two keyframe candidates are never picked here (test_pick_loop.py picks): the builds
# and plans of these tests animate the first, as `--use-first` says.
USE_FIRST = "--use-first"


def build(project: Path, services: Services | None, *args: str, code: int = 0,
          env: Mapping[str, str] | None = None) -> subprocess.CompletedProcess:
    """`filmc build --use-first ARGS svc.film`, which must exit with `code`."""
    r = filmc(project, "build", USE_FIRST, *args, "svc.film", services=services, env=env)
    assert r.returncode == code, r.stderr
    return r


def report(project: Path) -> dict:
    """build/svc/report.json."""
    return json.loads((project / "build" / "svc" / "report.json").read_text())


def steps(project: Path) -> dict[str, dict]:
    """report.json's steps, by id."""
    return {s["id"]: s for s in report(project)["steps"]}


def with_status(project: Path, *statuses: str) -> set[str]:
    """The steps of the last build's report with one of `statuses`."""
    return {i for i, s in steps(project).items() if s["status"] in statuses}


def ran(r: subprocess.CompletedProcess, project: Path) -> set[str]:
    """The steps a finished build ran (none when it took the no-op fast path, which
    writes no report)."""
    if "up to date: nothing to do" in r.stderr:
        return set()
    return with_status(project, "ran")


def plan(project: Path, services: Services | None, *args: str) -> dict:
    """`filmc plan --json ARGS svc.film`."""
    r = filmc(project, "plan", "--json", USE_FIRST, *args, "svc.film", services=services)
    assert r.returncode in (0, 2), r.stderr
    return json.loads(r.stdout)


def planned(doc: dict) -> set[str]:
    """What a plan says the build will run."""
    return {s["id"] for s in doc["steps"] if s["status"] in TO_RUN}


def submitted(comfy: ComfyState) -> Counter[str]:
    """ComfyUI jobs queued, by the workflow they ran (one per step: the seed and prompt
    differ): a count above 1 is a step paid twice, under one prompt id or two."""
    return Counter(json.dumps(comfy.prompts[pid], sort_keys=True) for pid in comfy.submit_ids)


def assert_paid_once(services: Services) -> None:
    """No step was made twice at either service."""
    twice = {g: n for g, n in submitted(services.comfy).items() if n > 1}
    assert not twice, f"ComfyUI jobs submitted twice: {twice}"
    assert len(set(services.comfy.submit_ids)) == len(services.comfy.submit_ids)
    lines = Counter(services.openai.received_prompts)
    assert all(n == 1 for n in lines.values()), f"OpenAI requests made twice: {lines}"


def keys(project: Path) -> dict[str, str]:
    """Each step's content key, from the compiler (as the build sees it)."""
    result = compile_film(project / "svc.film")
    return {n: d["step"].key for n, d in result.graph.nodes(data=True)}


def journal(project: Path) -> dict[str, OpenJob]:
    """The paid jobs the journal holds open, by step key."""
    return read_open(project / ".filmc" / "journal.log")


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


# -- the happy path ----------------------------------------------------------------------------


def test_a_film_made_by_two_services_is_their_work_and_is_paid_once(
        project: Path, services: Services) -> None:
    """The plan lists what the build runs; the film is as long as its shots; keyframes
    are the images ComfyUI made (byte for byte), the sheet, b2's keyframe and the lines
    are OpenAI's; the report's money matches filmc.toml's prices; and building again,
    with or without the no-op fast path, runs and submits nothing."""
    before = plan(project, services)
    assert before["summary"]["needs"] == [{"backend": "openai", "variable": "OPENAI_API_KEY",
                                           "set": True}]
    r = build(project, services)
    assert r.stdout.strip().endswith("build/svc/film.mp4")
    assert planned(before) == with_status(project, "ran")  # plan = build
    assert with_status(project, "provided") == {"sheet.BO"}

    film = probe(project / "build" / "svc" / "film.mp4")
    assert abs(film["duration"] - SECONDS) <= 1 / 24
    assert (film["width"], film["height"]) == (192, 80)

    made = steps(project)
    comfy_files = {sha256(body) for (kind, _sub, _name), body in services.comfy.files.items()
                   if kind == "output"}
    assert len(services.comfy.submit_ids) == len(COMFY_STEPS) == len(comfy_files)
    for sid in COMFY_STEPS:
        assert made[sid]["backend"] == "comfyui"
        assert made[sid]["outputs"][0] in comfy_files, f"{sid} is not ComfyUI's image"
        assert (made[sid]["cost"], made[sid]["cost_source"]) == (0.0, "service")
    for sid in OPENAI_STEPS:
        assert made[sid]["backend"] == "openai"
        assert made[sid]["outputs"][0] in services.openai.made, f"{sid} is not OpenAI's"
        assert made[sid]["cost_source"] == "estimate"
    assert services.openai.billed == len(OPENAI_STEPS)
    assert sorted(p for p in services.openai.received_prompts if p in LINES) == sorted(LINES)
    folder = project / "build" / "svc" / "keyframes"
    laid_out = {sha256(p.read_bytes()) for p in folder.iterdir()}
    assert comfy_files <= laid_out
    with Image.open(folder / "a1.comfyui-1.png") as img:
        assert img.size == (192, 80)  # ComfyUI made it at the film's size
    with Image.open(next(folder.glob("b2.openai-1.*"))) as img:
        assert img.size == (1536, 1024)  # OpenAI's nearest size: conformed by the shot step

    costs = {s["id"]: s["cost"] for s in before["steps"]}
    doc = report(project)
    assert doc["estimated"] == pytest.approx(sum(costs[s] for s in planned(before)))
    assert doc["spent"] == pytest.approx(sum(costs[s] for s in OPENAI_STEPS))  # ComfyUI: free
    assert costs["keyframe.one.a1.comfyui-1"] == 0.01 and costs["sheet.ANA"] == 0.04
    assert 0 < costs["speech.one.a2.1"] < 0.001  # per second of the line
    assert f"spent ${doc['spent']:.2f} (estimated ${doc['estimated']:.2f})" in r.stderr
    assert not journal(project)

    counts = (len(services.comfy.submit_ids), services.comfy.prompt_posts,
              sum(services.openai.requests.values()))
    r = build(project, services)
    assert "up to date" in r.stderr
    (project / ".filmc" / "noop.json").unlink()  # the full path: every key looked up
    r = build(project, services)
    assert with_status(project, "ran") == set() and "cached" in r.stderr
    assert plan(project, services)["summary"]["to_run"] == 0
    assert counts == (len(services.comfy.submit_ids), services.comfy.prompt_posts,
                      sum(services.openai.requests.values()))
    assert_paid_once(services)


# -- what a build may spend --------------------------------------------------------------------


def test_an_estimate_over_max_cost_starts_nothing(project: Path, services: Services) -> None:
    """`--max-cost` below the estimate: exit 1 at once, the estimate said, nothing sent."""
    r = build(project, services, "--max-cost", "0.05", code=1)
    assert "error: this build is estimated at $0.12, over --max-cost $0.05" in r.stderr
    assert "help:" in r.stderr
    assert services.comfy.prompt_posts == services.comfy.uploads == 0
    assert sum(services.openai.requests.values()) == 0
    r = build(project, services, "--max-cost", "0.05", "--until", "keyframe",
              "--select", "shot:a1")  # a part of it within the cap: built
    assert with_status(project, "ran") == {"sheet.ANA", "plate.PIER.DAWN",
                                           "keyframe.one.a1.comfyui-1"}


BILLED = """\
import attrs

from filmc.backends.openai import OpenAI


class Billed(OpenAI):
    \"\"\"OpenAI's adapter, reporting what each request was billed, as fal or Replicate
    report it: more than filmc.toml's price.\"\"\"

    async def submit(self, request, handle):
        done = await super().submit(request, handle)
        return attrs.evolve(done, cost=0.05)
"""


def test_max_cost_stops_submitting_when_the_bills_reach_it(tmp_path: Path,
                                                           services: Services) -> None:
    """The estimate is within `--max-cost`, but the service bills more than filmc.toml
    says: once what was billed and what is under way would pass the cap, no more is
    submitted.  The lines not spoken are in report.json's `not_run` and on stderr; they
    are not failures, so the build exits 0 (nothing went wrong, the user's cap held),
    and a later build with a higher cap makes them."""
    project = make_project(tmp_path / "svc", services, openai={
        "type": "billed:Billed", "concurrency": 1, "prices": {"speech": 0.01}})
    (project / "billed.py").write_text(BILLED)
    env = {"PYTHONPATH": str(project)}
    r = build(project, services, "--max-cost", "0.05", "--select", "kind:speech", env=env)
    doc = report(project)
    assert services.openai.billed == 1, "a line was submitted past --max-cost"
    [spoken] = with_status(project, "ran")
    [(left, why)] = [(s["id"], s["error"]) for s in doc["not_run"]]
    assert {spoken, left} == {"speech.one.a2.1", "speech.one.b1.1"}
    assert why == "not run: it would pass --max-cost $0.05"
    assert doc["spent"] == pytest.approx(0.05) and doc["counts"] == {"ran": 1, "skipped": 1}
    assert f"not run, to stay under --max-cost: 1 step(s), such as {left}" in r.stderr
    build(project, services, "--max-cost", "1", "--select", "kind:speech", env=env)
    assert with_status(project, "ran") == {left} and services.openai.billed == 2


# -- before anything runs ----------------------------------------------------------------------


def test_an_unset_key_stops_the_build_before_anything_is_sent(project: Path,
                                                               services: Services) -> None:
    """No OPENAI_API_KEY: `plan` says NOT SET, and `build` exits 1 at once naming the
    variable, before any step runs at either service (ComfyUI needs no key, but the
    build cannot finish)."""
    r = filmc(project, "plan", "svc.film", services=None)
    assert r.returncode == 2
    assert "Needs `OPENAI_API_KEY` (for openai): NOT SET" in r.stdout
    assert plan(project, None)["summary"]["needs"] == [
        {"backend": "openai", "variable": "OPENAI_API_KEY", "set": False}]
    r = build(project, None, code=1)
    assert "OPENAI_API_KEY" in r.stderr and "nothing was run" in r.stderr
    assert services.comfy.prompt_posts == services.comfy.uploads == 0
    assert sum(services.openai.requests.values()) == 0
    assert not (project / "build" / "svc" / "report.json").exists()
    # A build whose steps need no key runs without one.
    (project / "filmc.toml").write_text(config(services, steps={"sheet": "local",
                                                                "speech": "local"}))
    build(project, None, "--until", "keyframe", "--select", "shot:a1")
    assert with_status(project, "ran") == {"sheet.ANA", "plate.PIER.DAWN",
                                           "keyframe.one.a1.comfyui-1"}
    assert len(services.comfy.submit_ids) == 1


# -- the store's index -------------------------------------------------------------------------


@pytest.mark.parametrize("damage", ["emptied", "deleted"])
def test_a_lost_index_is_rebuilt_from_the_log_and_nothing_is_paid_again(
        project: Path, services: Services, damage: str) -> None:
    """index.db emptied or deleted after a build: the next build says it rebuilt the index
    from actions.log, runs nothing (paid or local) and submits nothing."""
    build(project, services, "--until", "keyframe")
    asked = (services.comfy.prompt_posts, sum(services.openai.requests.values()))
    index = project / ".filmc" / "index.db"
    for leftover in (index.with_name("index.db-wal"), index.with_name("index.db-shm")):
        leftover.unlink(missing_ok=True)
    if damage == "emptied":
        index.write_bytes(b"")
    else:
        index.unlink()
    (project / ".filmc" / "noop.json").unlink(missing_ok=True)  # no fast path: read the store
    r = build(project, services, "--until", "keyframe")
    assert "rebuilt the store index from actions.log" in r.stderr
    assert with_status(project, "ran") == set()
    assert (services.comfy.prompt_posts, sum(services.openai.requests.values())) == asked


# -- plan = build ------------------------------------------------------------------------------


def test_plan_lists_exactly_what_build_runs(tmp_path: Path, services: Services) -> None:
    """For one selection after another (and edits between them), the steps `filmc plan
    --json` marks new, changed, missing, forced or running are exactly the steps the
    next `filmc build` with the same options runs.  Offline (local steps), then once
    against the services."""
    project = make_project(tmp_path / "svc", services)
    film = project / "svc.film"

    def same(*args: str, offline: bool = True) -> dict[str, str]:
        """Plan, then build, with `args`: what ran is what the plan listed, by status."""
        extra = ("--offline",) if offline else ()
        doc = plan(project, services, *extra, *args)
        r = build(project, services, *extra, *args)
        assert ran(r, project) == planned(doc), args
        return {s["id"]: s["status"] for s in doc["steps"] if s["status"] in TO_RUN}

    def edit(old: str, new: str) -> None:
        film.write_text(film.read_text().replace(old, new))

    assert same("--until", "keyframe", "--select", "shot:a1").keys() == {
        "sheet.ANA", "plate.PIER.DAWN", "keyframe.one.a1.local-1"}
    assert same("--select", "character:ANA+").keys() >= {"keyframe.one.b1.local-2", "shot.one.b1",
                                                         "speech.one.a2.1", "film"}
    edit("Ana walks along the pier.", "Ana runs along the pier.")
    assert same("--until", "keyframe") == {"keyframe.one.a1.local-1": "changed",
                                           "storyboard.one": "changed",
                                           "storyboard_index": "changed"}
    forced = same("--force", "kind:keyframe", "--until", "keyframe")
    # offline, every candidate is the local backend's: local-1, local-2…
    assert {k for k, v in forced.items() if v == "forced"} == {
        s.replace("comfyui-", "local-") for s in COMFY_STEPS} | {"keyframe.one.b2.local-1"}
    assert same("--select", "film").keys() >= {"film", "shot.one.a1"}
    # missing: the key the last build made, since forgotten by `gc`
    edit("Ana runs along the pier.", "Ana strolls along the pier.")
    assert filmc(project, "gc", "svc.film", services=services).returncode == 0
    edit("Ana strolls along the pier.", "Ana runs along the pier.")
    assert same("--until", "keyframe") == {"keyframe.one.a1.local-1": "missing",
                                           "storyboard.one": "missing",
                                           "storyboard_index": "missing"}
    # and with the services: b2's keyframe at OpenAI, a1's at ComfyUI
    assert same("--select", "shot:b2", "--select", "shot:a1", offline=False).keys() >= {
        "sheet.ANA", "keyframe.one.b2.openai-1", "keyframe.one.a1.comfyui-1", "shot.one.b2"}
    assert len(services.comfy.submit_ids) == 1 and services.openai.billed == 2


def test_the_example_film_is_made_through_both_services(tmp_path: Path,
                                                       services: Services) -> None:
    """examples/wolfpack as it is in git, its filmc.toml pointed at the loopback servers:
    its keyframes (OpenAI, and ComfyUI for the animal shots) and its dialogue (OpenAI)
    come over real HTTP, paid once each, and the no-op record lists the workflow file."""
    project = copy_example(tmp_path / "wolfpack")
    toml = project / "filmc.toml"
    text = toml.read_text(encoding="utf-8")
    for old, new in (('# base_url = "http://127.0.0.1:8000/v1"',
                      f'base_url = "{services.openai_url}"'),
                     ('url = "http://127.0.0.1:8188"', f'url = "{services.comfy_url}"')):
        assert old in text
        text = text.replace(old, new)
    toml.write_text(text, encoding="utf-8")
    r = filmc(project, "build", "--until", "clip", "--select", "kind:keyframe kind:speech",
              "film.film", services=services, timeout=300)
    assert r.returncode == 0, r.stderr
    doc = json.loads((project / "build" / "wolfpack" / "report.json").read_text())
    by_backend = Counter((s["kind"], s["backend"]) for s in doc["steps"] if s["status"] == "ran")
    assert by_backend[("keyframe", "openai")] == 56 and by_backend[("keyframe", "comfyui")] == 17
    assert by_backend[("speech", "openai")] == 12
    assert sum(submitted(services.comfy).values()) == 17  # one prompt a keyframe
    assert services.openai.billed == 56 + 12  # one request a keyframe or line, none again
    assert doc["spent"] == pytest.approx(doc["estimated"]) and doc["spent"] > 9
    again = filmc(project, "build", "--until", "clip", "--select", "kind:keyframe kind:speech",
                  "film.film", services=services, timeout=300)
    assert again.returncode == 0 and "up to date" in again.stderr
    manifest = json.loads((project / ".filmc" / "noop.json").read_text())
    assert str(project / "workflows" / "keyframe_api.json") in [p for p, _ in manifest["inputs"]]
