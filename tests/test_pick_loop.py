"""The production loop over real HTTP: candidates, picks, the lock, and a clone that builds.

Loopback ComfyUI and OpenAI servers (tests/loopback) make the keyframe
candidates and the clips; the real command line (`filmc plan --json`, `build`,
`pick`, `take add`, `lock --check`) runs in a subprocess, as a user runs it,
with a store of the test's own (FILMC_STORE).  What is asserted is what a user
checks: what the plan lists and prices, the exit codes and what stderr says,
report.json, the lock, and what the services were asked: which jobs ComfyUI
queued, and which image it was sent as each clip's first frame (the bytes it
received, by digest).  A clip made from the wrong keyframe, a clip paid for
before its keyframe is picked, or a clone that asks a service anything, fails.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import subprocess
import uuid
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import attrs
import pytest
from aiohttp import web
from loopback import serve
from loopback.comfyui import ComfyState
from loopback.comfyui import make_app as comfy_app
from loopback.openai import OpenAIState
from loopback.openai import make_app as openai_app
from PIL import Image, ImageDraw
from test_services import (
    TO_RUN,
    WORKFLOW,
    Services,
    assert_paid_once,
    config,
    filmc,
    sha256,
)

# A clip workflow the loopback runs for real: the first frame through a sampler seeded per
# take (so that takes differ, as a real video model's do), held for the clip's length.
CLIP_WORKFLOW = {
    "1": {"class_type": "LoadImage", "inputs": {"image": "{{first_frame}}"}},
    "2": {"class_type": "ImageScale", "inputs": {"image": ["1", 0], "upscale_method": "bilinear",
                                                 "width": "{{width}}", "height": "{{height}}",
                                                 "crop": "center"}},
    "3": {"class_type": "CLIPTextEncode", "inputs": {"text": "{{prompt}}", "clip": ["1", 0]}},
    "4": {"class_type": "KSampler", "inputs": {
        "model": ["2", 0], "seed": "{{seed}}", "steps": 1, "cfg": 1.0, "sampler_name": "euler",
        "scheduler": "normal", "positive": ["3", 0], "negative": ["3", 0],
        "latent_image": ["2", 0], "denoise": 1.0}},
    "5": {"class_type": "RepeatImageBatch", "inputs": {"image": ["4", 0], "amount": "{{frames}}"}},
    "6": {"class_type": "CreateVideo", "inputs": {"images": ["5", 0], "fps": "{{fps}}"}},
    "7": {"class_type": "SaveVideo", "inputs": {"video": ["6", 0], "filename_prefix": "filmc/clip",
                                                "format": "mp4", "codec": "h264"}},
}
KEYFRAME_PRICE, CLIP_PRICE = 0.01, 0.25

HEADER = """\
use std.camera

film "Picks" {
  aspect 2.4:1
  size 192x80
  fps 24
}

location PIER "Pier" {
  look "a wooden pier over grey water"
}
"""
# a1: four candidates on ComfyUI (the keyframe backend), two clip takes from the pick;
# b1: one candidate, nothing to pick, so its paid clip is made at once.
COST_FILM = HEADER + """
scene one "Morning" EXT PIER DAWN {
  shot a1 1s {
    camera wide eye_level static
    action "A gull lands on the rail."
    candidates 4
    takes 2
  }
  shot b1 1s {
    camera close_up eye_level static
    action "Water laps at the posts."
  }
}
"""
# s1: candidates on two services, one clip take.
LOOP_FILM = HEADER + """
scene one "Morning" EXT PIER DAWN {
  shot s1 1s {
    camera wide eye_level static
    action "A heron stands in the shallows."
    candidates 2 comfyui
    candidates 1 openai
  }
}
"""
ACTIONS = {"a1": "A gull lands on the rail.", "b1": "Water laps at the posts.",
           "s1": "A heron stands in the shallows."}
GIT_ENV = {"GIT_CONFIG_GLOBAL": "/dev/null", "GIT_CONFIG_NOSYSTEM": "1",
           "GIT_AUTHOR_NAME": "Test", "GIT_AUTHOR_EMAIL": "test@example.invalid",
           "GIT_COMMITTER_NAME": "Test", "GIT_COMMITTER_EMAIL": "test@example.invalid"}


# -- the services, counting every request ------------------------------------------------------


def counted(app: web.Application, name: str, heard: Counter[str]) -> web.Application:
    """`app`, counting each HTTP request it is sent (a websocket's too) under `name`."""

    @web.middleware
    async def count(request: web.Request, handler: Any) -> web.StreamResponse:
        heard[name] += 1
        return await handler(request)

    app.middlewares.append(count)
    return app


@contextlib.contextmanager
def running_services(heard: Counter[str]) -> Iterator[Services]:
    key = f"sk-canary-{uuid.uuid4().hex}"
    comfy, openai = ComfyState(latency=0.05), OpenAIState(key=key)
    with serve(counted(comfy_app(comfy), "comfyui", heard)) as comfy_url, \
            serve(counted(openai_app(openai), "openai", heard)) as openai_url:
        yield Services(comfy, openai, comfy_url, f"{openai_url}/v1", key)


@pytest.fixture
def heard() -> Counter[str]:
    return Counter()


@pytest.fixture
def services(heard: Counter[str]) -> Iterator[Services]:
    with running_services(heard) as s:
        yield s


# -- the project and the commands ---------------------------------------------------------------


def make_project(folder: Path, services: Services, film: str) -> Path:
    """picks.film, its ComfyUI workflows, and filmc.toml: keyframes and clips on ComfyUI,
    a clip priced, OpenAI for the candidates a shot asks of it."""
    folder.mkdir(parents=True)
    (folder / "picks.film").write_text(film, encoding="utf-8")
    (folder / "workflows").mkdir()
    (folder / "workflows" / "keyframe_api.json").write_text(json.dumps(WORKFLOW, indent=1))
    (folder / "workflows" / "clip_api.json").write_text(json.dumps(CLIP_WORKFLOW, indent=1))
    (folder / "filmc.toml").write_text(config(
        services, steps={"clip": "comfyui", "sheet": None, "speech": None},
        comfy={"workflow_clip": "workflows/clip_api.json",
               "prices": {"keyframe": KEYFRAME_PRICE, "clip": CLIP_PRICE}}), encoding="utf-8")
    return folder


@attrs.frozen
class Run:
    """A film's project and the store every command of the test uses."""

    project: Path
    services: Services
    store: Path

    def __call__(self, *args: str, code: int | None = 0, cwd: Path | None = None
                 ) -> subprocess.CompletedProcess:
        """`filmc ARGS` (in `cwd`, else the project), which must exit with `code`."""
        r = filmc(cwd or self.project, *args, services=self.services,
                  env={"FILMC_STORE": str(self.store)})
        if code is not None:
            assert r.returncode == code, f"filmc {' '.join(args)}: {r.stderr}"
        return r

    def plan(self, *args: str) -> dict:
        r = self("plan", "--json", *args, "picks.film", code=None)
        assert r.returncode in (0, 2), r.stderr
        return json.loads(r.stdout)

    def report(self, cwd: Path | None = None) -> dict[str, dict]:
        """The last build's report.json steps, by id."""
        doc = json.loads(((cwd or self.project) / "build" / "picks" / "report.json").read_text())
        return {s["id"]: s for s in doc["steps"]}

    def explain(self, shot: str) -> dict[str, dict]:
        """`filmc explain --json` of a shot: its steps (and references), by id."""
        return {s["id"]: s for s in json.loads(self("explain", "--json", "picks.film",
                                                     shot).stdout)}


def to_run(plan: dict) -> dict[str, float]:
    """The steps a plan runs, with each one's estimated cost."""
    return {s["id"]: s["cost"] for s in plan["steps"] if s["status"] in TO_RUN}


def status(plan: dict, *ids: str) -> set[str]:
    return {s["status"] for s in plan["steps"] if s["id"] in ids}


@attrs.frozen
class Job:
    """A job ComfyUI queued: a keyframe or a clip, of which shot, from which first frame."""

    kind: str
    shot: str
    first_frame: str | None  # the sha256 of the image uploaded as the clip's first frame


def jobs(comfy: ComfyState, since: int = 0) -> list[Job]:
    """ComfyUI's queued jobs (from the `since`th on), as the server received them; a job's
    shot is the one whose action its prompt says."""
    out = []
    for pid in comfy.submit_ids[since:]:
        graph = comfy.prompts[pid]
        text = json.dumps(graph)
        [shot] = [s for s, action in ACTIONS.items() if action in text]
        if any(node["class_type"] == "SaveVideo" for node in graph.values()):
            sub, _, name = graph["1"]["inputs"]["image"].rpartition("/")
            out.append(Job("clip", shot, sha256(comfy.files[("input", sub, name)])))
        else:
            out.append(Job("keyframe", shot, None))
    return out


def laid_out(project: Path, folder: str, pattern: str) -> bytes:
    """The one file of build/picks/FOLDER matching `pattern`."""
    [path] = (project / "build" / "picks" / folder).glob(pattern)
    return path.read_bytes()


# -- the cost of a pick --------------------------------------------------------------------------


def test_two_takes_from_a_picked_keyframe_of_four_cost_two_clips(
        tmp_path: Path, services: Services) -> None:
    """Shot a1 has 4 ComfyUI keyframe candidates and 2 clip takes on a priced ComfyUI clip
    workflow.  Before a pick, the plan runs (and prices) the 4 candidates and lists a1's
    clips, shot and the film as waiting, priced at nothing; the build makes the 4
    candidates and no clip of a1, exits 0 and names a1.  After `filmc pick a1 comfyui-3`
    the plan runs exactly a1's 2 clips and its estimate grows by exactly 2 clip prices;
    the build queues exactly 2 jobs, both clips whose first frame is comfyui-3's image,
    and pays for nothing twice.  `--use-first` instead plans the 2 clips from comfyui-1."""
    run = Run(make_project(tmp_path / "picks", services, COST_FILM), services,
              tmp_path / "store")
    a1_clips = {"clip.one.a1.take1", "clip.one.a1.take2"}
    candidates = {f"keyframe.one.a1.comfyui-{n}" for n in range(1, 5)}

    # Before anything is built: the candidates run, a1's clips wait, unpriced.
    first = run.plan()
    runs = to_run(first)
    assert candidates <= runs.keys() and {runs[c] for c in candidates} == {KEYFRAME_PRICE}
    assert not a1_clips & runs.keys()
    assert status(first, *a1_clips, "shot.one.a1", "film") == {"waiting"}
    assert {s["cost"] for s in first["steps"] if s["id"] in a1_clips} == {0.0}
    assert runs["clip.one.b1.take1"] == CLIP_PRICE  # b1: nothing to pick, its clip runs
    assert first["summary"]["cost"] == pytest.approx(sum(runs.values()))
    assert first["summary"]["cost"] == pytest.approx(5 * KEYFRAME_PRICE + CLIP_PRICE)
    # a1's two clips, its shot, the film, and the timelines that name them
    assert first["summary"]["waiting"] == 4 + 3

    # --use-first: the same plan, and a1's two clips from comfyui-1, priced.
    eager = run.plan("--use-first")
    assert {k: v for k, v in to_run(eager).items() if k.startswith("clip.one.a1.")} == {
        c: CLIP_PRICE for c in a1_clips}
    assert eager["summary"]["cost"] == pytest.approx(first["summary"]["cost"] + 2 * CLIP_PRICE)
    assert eager["summary"]["waiting"] == 0
    explained = run.explain("a1")
    assert {c: explained[c]["inputs"] for c in a1_clips} == {
        c: ["keyframe.one.a1.comfyui-1"] for c in a1_clips}

    # The build makes the candidates, no clip of a1, and says a1 awaits a pick.
    r = run("build", "picks.film")
    assert "waiting for a pick in 1 shot, before paying for what is made from it: a1" in r.stderr
    made = run.report()
    assert {made[c]["status"] for c in candidates} == {"ran"}
    assert {made[s]["status"] for s in (*a1_clips, "shot.one.a1", "film")} == {"waiting"}
    assert not (run.project / "build" / "picks" / "film.mp4").exists()
    before = jobs(services.comfy)
    assert Counter((j.kind, j.shot) for j in before) == {
        ("keyframe", "a1"): 4, ("keyframe", "b1"): 1, ("clip", "b1"): 1}
    assert [j.first_frame for j in before if j.kind == "clip"] == [
        made["keyframe.one.b1.comfyui-1"]["outputs"][0]]
    digests = {c: made[c]["outputs"][0] for c in candidates}
    assert len(set(digests.values())) == 4  # four different pictures to choose from
    picked = digests["keyframe.one.a1.comfyui-3"]
    assert sha256(laid_out(run.project, "keyframes", "a1.comfyui-3.png")) == picked
    waiting = run.plan()
    assert to_run(waiting) == {} and waiting["summary"]["cost"] == 0

    # The pick: the lock pins comfyui-3 by its output's digest.
    r = run("pick", "picks.film", "a1", "comfyui-3")
    assert r.stdout.strip() == str(run.project / "picks.lock")
    lock = (run.project / "picks.lock").read_text()
    key = explained["keyframe.one.a1.comfyui-3"]["key"]
    assert f'keyframe = {{ pick = "comfyui-3", key = "{key}", digest = "{picked}" }}' in lock

    # The plan prices exactly a1's two clips, and nothing else is paid for.
    chosen = run.plan()
    priced = {k: v for k, v in to_run(chosen).items() if v}
    assert priced == {c: CLIP_PRICE for c in a1_clips}
    assert sum(1 for k in to_run(chosen) if k.startswith("clip.")) == 2
    assert not any(k.startswith("keyframe.") for k in to_run(chosen))
    assert chosen["summary"]["cost"] - waiting["summary"]["cost"] == pytest.approx(2 * CLIP_PRICE)
    assert status(chosen, "keyframe.one.a1.comfyui-3") == {"cached"}
    explained = run.explain("a1")
    assert {c: explained[c]["inputs"] for c in a1_clips} == {
        c: ["keyframe.one.a1.comfyui-3"] for c in a1_clips}

    # The build queues exactly those two clips, both from the picked keyframe's bytes.
    r = run("build", "picks.film")
    after = jobs(services.comfy, since=len(before))
    assert after == [Job("clip", "a1", picked)] * 2
    made = run.report()
    assert {s for s, v in made.items() if v["status"] == "ran" and v["kind"] == "clip"} == a1_clips
    assert "waiting for a pick" not in r.stderr
    assert_paid_once(services)
    assert services.openai.billed == 0

    # The film has a cut (a1's first take, until a clip is picked), and picking the other
    # take re-cuts it with nothing asked of ComfyUI.
    assert r.stdout.strip().endswith("build/picks/film.mp4"), r.stderr
    assert made["shot.one.a1"]["status"] == made["film"]["status"] == "ran"
    assert run.explain("a1")["shot.one.a1"]["inputs"] == ["clip.one.a1.take1"]
    asked = len(services.comfy.submit_ids)
    run("pick", "picks.film", "a1", "--clip", "take2")
    assert run.explain("a1")["shot.one.a1"]["inputs"] == ["clip.one.a1.take2"]
    r = run("build", "picks.film")
    made = run.report()
    # (and the exports that show the pick: the timelines, the shot list)
    assert {s for s, v in made.items() if v["status"] == "ran"} == {
        "shot.one.a1", "film", "export.otio", "export.edl", "export.fcpxml", "export.csv"}
    assert r.stdout.strip().endswith("build/picks/film.mp4"), r.stderr
    assert len(services.comfy.submit_ids) == asked
    assert_paid_once(services)


CONTINUED_FILM = HEADER + """
scene one "Morning" EXT PIER DAWN {
  shot c1 1s {
    camera wide eye_level static
    action "A gull lands on the rail."
    takes 2
  }
  shot c2 1s {
    camera wide eye_level static
    action "The gull takes off again."
    first_frame previous
  }
}
"""


@pytest.mark.parametrize("c2_clip", ["comfyui", "local"])
def test_an_unpicked_take_holds_back_only_what_would_be_paid_for_from_it(
        tmp_path: Path, services: Services, c2_clip: str) -> None:
    """c1 has one keyframe and 2 paid takes, nothing to pick yet; c2 starts from the last
    frame of c1's picked take (`first_frame previous`).  c1's takes are planned, and c1's
    shot is cut from its first take until a pick; when c2's clip is paid, c2 (and the
    film) wait for c1's take to be picked, priced at nothing, while on the local backend
    c2 is made from c1's first take at once."""
    film = CONTINUED_FILM
    if c2_clip == "local":
        film = film.replace("    first_frame previous\n", "    first_frame previous\n"
                            "    backend clip local\n")
    run = Run(make_project(tmp_path / "picks", services, film), services, tmp_path / "store")
    doc = run.plan()
    runs = to_run(doc)
    assert {k: v for k, v in runs.items() if k.startswith("clip.one.c1.")} == {
        "clip.one.c1.take1": CLIP_PRICE, "clip.one.c1.take2": CLIP_PRICE}
    assert "shot.one.c1" in runs
    c2 = {"lastframe.one.c2", "clip.one.c2.take1", "shot.one.c2", "film"}
    if c2_clip == "comfyui":
        assert status(doc, *c2) == {"waiting"}
        assert {tuple(s["reasons"]) for s in doc["steps"] if s["id"] == "clip.one.c2.take1"} == {
            ("awaiting a clip pick for c1",)}
        assert doc["summary"]["cost"] == pytest.approx(KEYFRAME_PRICE + 2 * CLIP_PRICE)
    else:
        assert c2 <= runs.keys() and runs["clip.one.c2.take1"] == 0
        assert doc["summary"]["waiting"] == 0
    assert services.comfy.prompt_posts == 0


# -- the user's whole loop -----------------------------------------------------------------------


def git(cwd: Path, *args: str) -> str:
    """`git ARGS` in `cwd`, with no configuration of the user's."""
    r = subprocess.run(["git", *args], cwd=cwd, capture_output=True, text=True, timeout=60,
                       env={**os.environ, **GIT_ENV})
    assert r.returncode == 0, r.stderr
    return r.stdout


def test_pick_retouch_commit_and_a_clone_builds_the_same_film_asking_nothing(
        tmp_path: Path, services: Services, heard: Counter[str]) -> None:
    """Candidates from ComfyUI and OpenAI; the build waits for the pick; `filmc pick s1
    openai-1` and the clip is made from OpenAI's image; `filmc take add s1 retouched.png
    --from openai-1 --pick` and the next clip starts from the retouched file's bytes.
    The project, lock included, is committed and cloned: built there with the same
    store, the film is byte for byte the same, no service hears a single request, and
    `filmc lock --check` passes."""
    run = Run(make_project(tmp_path / "picks", services, LOOP_FILM), services,
              tmp_path / "store")
    clip = "clip.one.s1.take1"

    # The candidates are made on both services; the clip waits.
    r = run("build", "picks.film")
    assert "waiting for a pick in 1 shot, before paying for what is made from it: s1" in r.stderr
    made = run.report()
    assert made[clip]["status"] == "waiting"
    assert {made[f"keyframe.one.s1.{c}"]["backend"] for c in ("comfyui-1", "comfyui-2",
                                                              "openai-1")} == {"comfyui", "openai"}
    assert Counter(j.kind for j in jobs(services.comfy)) == {"keyframe": 2}
    assert services.openai.billed == 1
    openai_frame = made["keyframe.one.s1.openai-1"]["outputs"][0]
    assert openai_frame in services.openai.made

    # Pick OpenAI's: the clip is made from that image, and the film is cut.
    run("pick", "picks.film", "s1", "openai-1")
    r = run("build", "picks.film")
    assert jobs(services.comfy)[2:] == [Job("clip", "s1", openai_frame)]
    assert run.report()[clip]["status"] == "ran"
    assert r.stdout.strip().endswith("build/picks/film.mp4"), r.stderr

    # Retouch it elsewhere, add it back from openai-1 and pick it: the next clip starts
    # from exactly the retouched file.
    retouched = run.project / "retouched.png"
    with Image.open(io.BytesIO(laid_out(run.project, "keyframes", "s1.openai-1.*"))) as img:
        fixed = img.convert("RGB")
    ImageDraw.Draw(fixed).rectangle((40, 40, 400, 300), fill=(250, 220, 30))
    fixed.save(retouched, format="PNG")
    retouched_digest = sha256(retouched.read_bytes())
    assert retouched_digest != openai_frame
    r = run("take", "add", "picks.film", "s1", "retouched.png", "--from", "openai-1", "--pick")
    assert "retouch-1" in r.stderr
    lock = (run.project / "picks.lock").read_text()
    assert 'keyframe = { pick = "retouch-1", key = ' in lock
    assert f'name = "retouch-1", kind = "keyframe", from = "openai-1", digest = ' \
           f'"{retouched_digest}", file = "retouched.png"' in lock
    retouched.unlink()  # the store holds it now
    billed = services.openai.billed
    r = run("build", "picks.film")
    assert jobs(services.comfy)[3:] == [Job("clip", "s1", retouched_digest)]
    made = run.report()
    assert made[clip]["status"] == "ran"
    assert not {s for s, v in made.items() if v["status"] == "ran" and v["kind"] == "keyframe"}
    assert services.openai.billed == billed
    film = (run.project / "build" / "picks" / "film.mp4").read_bytes()
    assert r.stdout.strip().endswith("build/picks/film.mp4"), r.stderr
    assert_paid_once(services)

    # Commit the project with its lock; clone it; build there with the same store.
    (run.project / ".gitignore").write_text("build/\n.filmc/\n")
    git(run.project, "init", "-q", "-b", "main")
    git(run.project, "add", "-A")
    git(run.project, "commit", "-q", "-m", "picks")
    assert "picks.lock" in git(run.project, "ls-files").split()
    clone = tmp_path / "clone"
    git(tmp_path, "clone", "-q", str(run.project), str(clone))
    asked = dict(heard)
    assert asked["comfyui"] and asked["openai"]  # every request is counted
    r = run("build", "picks.film", cwd=clone)
    assert (clone / "build" / "picks" / "film.mp4").read_bytes() == film
    assert r.stdout.strip().endswith("build/picks/film.mp4"), r.stderr
    # All from the store, but the timelines: they name this clone's files (made here, free).
    cloned = run.report(clone)
    assert {v["status"] for k, v in cloned.items() if not k.startswith("export.")} == {
        "cached", "provided"}
    assert {k for k, v in cloned.items() if v["status"] == "ran"} == {
        "export.otio", "export.edl", "export.fcpxml"}
    r = run("lock", "--check", "picks.film", cwd=clone)
    assert "picks.lock: 1 shot: 1 picked, 0 unpicked, 0 stale, 0 with nothing to pick; 0 unknown" in r.stderr
    assert dict(heard) == asked, "the clone asked a service"
    assert_paid_once(services)
