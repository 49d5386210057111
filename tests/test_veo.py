"""The `veo` adapter against a loopback Gemini API (tests/loopback/google.py), real HTTP.

The adapter is driven as the engine drives it (submit → poll → fetch) and each
test asserts what a user would check: what Veo was sent, the clip that landed
(its length, size and rate), and for each failure the kind the engine acts on,
whether it may be sent again (`unbilled`), the message, and the server's own
count of operations started (each one is paid for).  Then `filmc build` itself:
killed with `kill -9` while it polls a clip, the next build re-attaches and pays
nothing twice; and the example film, its keyframes made by `gemini_image` and
its clips by `veo`.  The CLI helpers here serve test_gemini_image.py too.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import subprocess
import uuid
from collections.abc import Callable, Iterator, Mapping
from fractions import Fraction
from pathlib import Path
from typing import Any

import adapter_harness as harness
import pytest
from conftest import copy_example
from loopback import media, serve
from loopback.google import SUPPORT_CODE, GoogleState, make_app
from PIL import Image
from test_services_faults import accepted

from filmc.backends.ffmpeg import probe
from filmc.backends.protocol import (
    Done,
    FailureKind,
    Handle,
    Input,
    Pending,
    Request,
    ServiceError,
    Setup,
)
from filmc.backends.veo import Veo
from filmc.engine.journal import read_open
from filmc.lang.steps import CHARACTER, FIRST_FRAME, LAST_FRAME, StepId, Tags

KEY = "AIzaCanary-veo-4f1d9b27c3e8a6d1"  # must never appear in a message
MODEL = "veo-3.1-generate-preview"


@pytest.fixture
def state() -> GoogleState:
    return GoogleState(key=KEY, polls=1, video_size=(256, 144))


@pytest.fixture
def api(state: GoogleState) -> Iterator[str]:
    with serve(make_app(state)) as url:
        yield f"{url}/v1beta"


def adapter(base_url: str, root: Path, key: str = KEY, **settings: Any) -> Veo:
    return Veo(Setup(name="veo", settings={"base_url": base_url, "model": MODEL, **settings},
                     root=root, secret=lambda name: key if name == "api_key" else "",
                     uploads=harness.Uploads()))


def picture(tmp: Path, name: str, role: str, tags: Tags | None = None) -> Input:
    path = tmp / f"{name}.png"
    path.write_bytes(media.png(96, 40, name))
    return harness.image(path, role, f"keyframe.{name}", tags)


def clip(tmp: Path, inputs: tuple[Input, ...] = (), **fields: Any) -> Request:
    fields = {"prompt": "The grey wolf lopes through the tall grass.", "width": 1920,
              "height": 804, "fps": Fraction(24), "duration": Fraction(5), "take": 1, **fields}
    return harness.request(StepId.clip("hunt", "binocular_pov", "take1"), "veo",
                           tmp / "work" / uuid.uuid4().hex,
                           inputs or (picture(tmp, "first", FIRST_FRAME),), **fields)


async def make(a: Veo, req: Request) -> tuple[Handle, Done, Mapping[str, Any]]:
    """One clip, as the engine drives it: submit, poll until done, fetch."""
    handle = await a.submit(req, a.prepare(req))
    got: Pending | Done = Pending()
    while isinstance(got, Pending):
        got = await a.poll(handle)
    return handle, got, await a.fetch(got, req)


def run(a: Veo, job: Callable[[], Any]) -> Any:
    return harness.closing(a, job())


def failure(a: Veo, job: Callable[[], Any]) -> ServiceError:
    return harness.raised(lambda: run(a, job), KEY)


# -- clips ---------------------------------------------------------------------------------


def test_a_clip_is_an_operation_from_its_first_and_last_frames(state, api, tmp_path):
    """A 5 s shot of a 2.39:1 film: Veo is asked for 6 s at 16:9 from the keyframe, ending
    on the next one; the handle is the operation's name; polled until done, the video is
    downloaded with the key in the header (never the URL) and is a real 6 s, 24 fps MP4."""
    state.video_size = None  # the size Veo makes: 1280x720
    first, last = picture(tmp_path, "first", FIRST_FRAME), picture(tmp_path, "next", LAST_FRAME)
    req = clip(tmp_path, (first, last), negative="cars")
    a = adapter(api, tmp_path)
    handle, done, files = run(a, lambda: make(a, req))

    [body] = state.received["predictLongRunning"]
    b64 = {p.digest: base64.b64encode(p.path.read_bytes()).decode() for p in (first, last)}
    assert body == {"instances": [{
        "prompt": req.fields.prompt,
        "image": {"bytesBase64Encoded": b64[first.digest], "mimeType": "image/png"},
        "lastFrame": {"bytesBase64Encoded": b64[last.digest], "mimeType": "image/png"}}],
        "parameters": {"aspectRatio": "16:9", "durationSeconds": 6, "negativePrompt": "cars"}}
    assert handle.id in state.operations and handle.id.startswith(f"models/{MODEL}/operations/")
    assert handle.data == {"base": api, "seconds": 6}
    assert state.requests == {"predictLongRunning": 1, "operations": 2, "files": 1}
    assert (state.submits, state.billed, state.auth_failures, state.key_in_query) == (1, 1, 0, 0)
    assert files == {"video": req.workdir / "video.mp4"}
    info = probe(files["video"])
    assert (info["width"], info["height"], info["fps"]) == (1280, 720, "24")
    assert abs(info["duration"] - 6) < 0.05
    assert hashlib.sha256(files["video"].read_bytes()).hexdigest() in state.made
    assert done.note == f"Veo operation {handle.id}"


@pytest.mark.parametrize("seconds,width,height,settings,asked", [
    (3, 1920, 804, {}, {"aspectRatio": "16:9", "durationSeconds": 4}),
    (Fraction(9, 2), 1920, 804, {}, {"aspectRatio": "16:9", "durationSeconds": 6}),
    (12, 1920, 804, {}, {"aspectRatio": "16:9", "durationSeconds": 8}),
    (5, 1080, 1920, {}, {"aspectRatio": "9:16", "durationSeconds": 6}),
    (5, 1080, 1080, {"aspect_ratio": "9:16"}, {"aspectRatio": "9:16", "durationSeconds": 6}),
    (5, 1920, 804, {"resolution": "1080p", "person_generation": "allow_adult"},
     {"aspectRatio": "16:9", "durationSeconds": 8, "resolution": "1080p",
      "personGeneration": "allow_adult"}),
])
def test_each_shot_is_asked_at_the_nearest_length_and_ratio_veo_makes(
        state, api, tmp_path, seconds, width, height, settings, asked):
    """The shortest of 4, 6, 8 s that covers the shot (8 s only at 1080p), the ratio
    nearest the film's frame, the settings as written; the shot step cuts the rest."""
    a = adapter(api, tmp_path, **settings)
    req = clip(tmp_path, duration=Fraction(seconds), width=width, height=height)
    handle = run(a, lambda: a.submit(req, None))
    assert state.received["predictLongRunning"][0]["parameters"] == asked
    assert handle.data["seconds"] == asked["durationSeconds"]


def test_references_go_as_assets_and_make_an_8_s_clip(state, api, tmp_path):
    """A clip step with character images sends them as `referenceImages` (asset) and asks
    for 8 s, the one length Veo makes with them; four are refused before anything is sent."""
    cast = [picture(tmp_path, n, CHARACTER, Tags(character=n)) for n in ("ANA", "BO", "CY", "DI")]
    first = picture(tmp_path, "first", FIRST_FRAME)
    a = adapter(api, tmp_path)
    run(a, lambda: a.submit(clip(tmp_path, (first, *cast[:2]), duration=Fraction(3)), None))
    [body] = state.received["predictLongRunning"]
    refs = body["instances"][0]["referenceImages"]
    assert [r["referenceType"] for r in refs] == ["asset", "asset"]
    assert [hashlib.sha256(base64.b64decode(r["image"]["bytesBase64Encoded"])).hexdigest()
            for r in refs] == [cast[0].digest, cast[1].digest]
    assert body["parameters"]["durationSeconds"] == 8

    a = adapter(api, tmp_path)
    e = failure(a, lambda: a.submit(clip(tmp_path, (first, *cast)), None))
    assert e.kind is FailureKind.INVALID
    assert "it has 4 reference images and Veo takes at most 3" in e.message
    assert state.submits == 1


# -- what Veo refuses ----------------------------------------------------------------------


def test_a_refused_prompt_ends_the_operation_with_support_codes(state, api, tmp_path):
    """Veo accepts the clip, then ends the operation with an error giving support codes:
    a policy refusal, said with the service's words and what to do; one operation, unpaid."""
    state.refuse.append("lopes")
    a = adapter(api, tmp_path)
    e = failure(a, lambda: make(a, clip(tmp_path)))
    assert e.kind is FailureKind.POLICY
    assert "violates the Gemini API's usage guidelines" in e.message
    assert f"Support codes: {SUPPORT_CODE}" in e.message
    assert "reword the shot's prompt or change its keyframe" in e.message
    assert (state.submits, state.billed, state.requests["files"]) == (1, 0, 0)


def test_a_clip_the_safety_filters_removed_is_a_policy_refusal(state, api, tmp_path):
    state.unsafe.append("lopes")
    a = adapter(api, tmp_path)
    e = failure(a, lambda: make(a, clip(tmp_path)))
    assert e.kind is FailureKind.POLICY
    assert "Veo's safety filters removed the clip" in e.message
    assert "You have not been charged for this request" in e.message
    assert (state.submits, state.billed) == (1, 0)


@pytest.mark.parametrize("fault,kind,unbilled,said", [
    (("quota",), FailureKind.CREDIT, False,
     "the daily quota `GenerateRequestsPerDayPerProjectPerModel` is used up: it resets at "
     "midnight Pacific time"),
    (("rate", 7), FailureKind.RATE_LIMITED, True, "You exceeded your current quota"),
    (("status", 400, None, None), FailureKind.INVALID, False, "answered 400"),
    (("status", 403, None, None), FailureKind.AUTH, False, "may not have the Gemini API"),
    (("bad_key",), FailureKind.AUTH, False, "the API key was refused"),
    (("status", 500, None, None), FailureKind.TRANSIENT, True, "(INTERNAL)"),
    (("status", 503, {"Retry-After": "3"}, None), FailureKind.TRANSIENT, True, "(UNAVAILABLE)"),
    (("status", 504, None, None), FailureKind.TRANSIENT, False, "(DEADLINE_EXCEEDED)"),
    (("reset",), FailureKind.TRANSIENT, False, "broke"),
])
def test_a_refused_submit_says_what_to_do_and_whether_it_may_be_sent_again(
        state, api, tmp_path, fault, kind, unbilled, said):
    """429 for the day's quota stops the backend (CREDIT); 429 per minute waits as
    RetryInfo says and may be sent again; a refused key stops it; a 5xx answer made
    nothing (sent again), a gateway timeout or a dropped connection may have (not)."""
    state.faults["predictLongRunning"].append(fault)
    a = adapter(api, tmp_path)
    e = failure(a, lambda: a.submit(clip(tmp_path), None))
    assert (e.kind, e.unbilled) == (kind, unbilled)
    assert e.message.startswith("cannot make the clip `clip.hunt.binocular_pov.take1`: ")
    assert said in e.message
    if fault[0] == "rate":
        assert e.retry_after == 7
    if fault[0] == "reset":
        assert state.submits == 1  # it reached Veo: the engine does not send it again
    else:
        assert state.submits == 0


def test_an_unknown_model_is_a_setting_to_fix(state, api, tmp_path):
    a = adapter(api, tmp_path, model="veo-9-imaginary")
    e = failure(a, lambda: a.submit(clip(tmp_path), None))
    assert e.kind is FailureKind.INVALID
    assert "models/veo-9-imaginary is not found" in e.message and "check `model`" in e.message


def test_polls_and_downloads_that_fail(state, api, tmp_path):
    """An operation the service does not know is NOT_FOUND (the engine submits anew); a
    5xx on a poll is retried; a video past its two days is EXPIRED; bytes that are not an
    MP4 are refused."""
    a = adapter(api, tmp_path)
    e = failure(a, lambda: a.poll(Handle(f"models/{MODEL}/operations/nosuchop", {"base": api})))
    assert e.kind is FailureKind.NOT_FOUND and "Veo does not know it" in e.message

    req = clip(tmp_path)
    a = adapter(api, tmp_path)
    handle = run(a, lambda: a.submit(req, None))
    state.faults["operations"].append(("status", 503, None, None))
    a = adapter(api, tmp_path)
    e = failure(a, lambda: a.poll(handle))
    assert (e.kind, e.unbilled) == (FailureKind.TRANSIENT, True)

    state.polls = 0
    a = adapter(api, tmp_path)
    done = run(a, lambda: a.poll(handle))
    state.faults["files"].append(("corrupt",))
    a = adapter(api, tmp_path)
    e = failure(a, lambda: a.fetch(done, req))
    assert e.kind is FailureKind.FAILED and "is not an MP4 video" in e.message
    state.file_ttl = 0
    a = adapter(api, tmp_path)
    e = failure(a, lambda: a.fetch(done, req))
    assert e.kind is FailureKind.EXPIRED and "Veo keeps it for two days" in e.message
    assert not any(req.workdir.iterdir())  # nothing half-written for the store to find
    assert state.submits == 1


def test_a_download_redirected_elsewhere_goes_without_the_key(state, api, tmp_path):
    """The files route answers 302 to a storage host: the video is fetched from there, and
    the key went to the API's host only."""
    state.redirect_files = True
    a = adapter(api, tmp_path)
    _, _, files = run(a, lambda: make(a, clip(tmp_path)))
    assert state.requests["storage"] == 1 and state.key_at_storage == 0
    assert files["video"].read_bytes()[4:8] == b"ftyp"


# -- what it declares ----------------------------------------------------------------------


def test_capabilities_and_settings_are_declared_honestly(tmp_path):
    caps = Veo.capabilities("clip", {"model": MODEL}, tmp_path)
    assert caps is not None
    assert (caps.seed, caps.negative, caps.references) == (False, True, 3)
    assert (caps.first_frame, caps.last_frame) == (True, True)
    assert caps.durations == (4, 6, 8) and caps.aspect_ratios == ("16:9", "9:16")
    assert caps.sizes == ((1280, 720), (720, 1280))
    hd = Veo.capabilities("clip", {"model": MODEL, "resolution": "1080p",
                                   "aspect_ratio": "16:9"}, tmp_path)
    assert hd is not None and hd.durations == (8,) and hd.sizes == ((1920, 1080),)
    assert Veo.capabilities("keyframe", {}, tmp_path) is None
    assert Veo.key_fields("clip", {}) == {"prompt", "negative", "duration", "width", "height",
                                          "take"}
    assert Veo.key_settings("clip", {"model": MODEL, "base_url": "x", "resolution": "720p"}) \
        == {"model": MODEL, "resolution": "720p"}

    def problems(**settings: Any) -> list[tuple[str, bool]]:
        return [(p.setting, p.warning) for p in Veo.check_settings(settings)]

    assert problems(model=MODEL) == []
    assert problems() == [("model", False)]
    assert problems(model=MODEL, resolution="480p", aspect_ratio="1:1",
                    person_generation="everyone", base_url="ftp://x", resolutoin="720p") == [
        ("base_url", False), ("aspect_ratio", False), ("resolution", False),
        ("person_generation", False), ("resolutoin", True)]


# -- `filmc build`: the CLI, a killed build, the example film --------------------------------

FILM = harness.film("Goog", harness.walks("5s"),
                    harness.shot("b1", "2s", "extreme_wide birds_eye crane_up",
                                 "The kite rises over the water."))


@contextlib.contextmanager
def google() -> Iterator[tuple[GoogleState, str]]:
    """The loopback Gemini API in this process (its counters outlive a killed build), with
    a canary key."""
    state = GoogleState(key=f"AIzaCanary{uuid.uuid4().hex}", polls=1, video_size=(256, 144))
    with serve(make_app(state)) as url:
        yield state, f"{url}/v1beta"


def tables(base: str, steps: Mapping[str, str]) -> str:
    """filmc.toml tables for both Google backends at `base`, and `[steps]`."""
    return harness.toml({"steps": steps, **{
        f"backends.{name}": {"type": name, "api_key_env": "GEMINI_API_KEY", "model": model,
                             "base_url": base, "concurrency": 2, **harness.fast(4),
                             "prices": prices}
        for name, model, prices in (("gemini_image", "gemini-2.5-flash-image",
                                     {"keyframe": 0.04}),
                                    ("veo", MODEL, {"clip": {"per_second": 0.4}}))}})


def tiny(folder: Path, base: str, **steps: str) -> Path:
    """A two-shot film at 192x80; keyframes and clips where `steps` says."""
    return harness.project(folder, "goog", FILM, tables(base, steps))


def filmc(folder: Path, *args: str, state: GoogleState,
          code: int | None = 0) -> subprocess.CompletedProcess:
    """`filmc ARGS` in the project folder, with the loopback's key."""
    return harness.filmc(folder, *args, keys={"GEMINI_API_KEY": state.key}, code=code)


def test_kill_9_while_veo_runs_then_the_next_build_attaches(tmp_path):
    """`kill -9` of a build polling a Veo operation: the operation is journaled; the next
    build polls it (attached), starts no other, and the clip is Veo's video."""
    with google() as (state, base):
        project = tiny(tmp_path / "goog", base, clip="veo")
        state.hold = True
        with harness.killed(project, "--until", "clip", "--select", "shot:a1", "goog.film",
                    keys={"GEMINI_API_KEY": state.key}) as build:
            build.wait_for(lambda: state.submits == 1 and state.requests["operations"] >= 1
                           and accepted(project) >= 1, "the operation journaled and polled")
        journal = project / ".filmc" / "journal.log"
        [job] = read_open(journal).values()
        assert job.handle.id in state.operations and job.step == "clip.one.a1.take1"

        state.hold = False
        filmc(project, "build", "--until", "clip", "--select", "shot:a1", "goog.film",
              state=state)
        made = harness.report(project, "goog")["clip.one.a1.take1"]
        assert (made["status"], made["backend"], made["attached"]) == ("ran", "veo", True)
        assert made["outputs"][0] in state.made
        assert (state.submits, state.billed) == (1, 1) and not read_open(journal)


def test_the_example_film_is_made_with_gemini_keyframes_and_veo_clips(tmp_path):
    """examples/wolfpack as it is in git, keyframes routed to `gemini_image` and clips to
    `veo`: `plan` warns what each cannot honour; building one shot makes its two keyframe
    candidates at Gemini (with the wolf's sheet and the night plate as references) and its
    clip at Veo (4 s for a 3 s shot), which the shot step cuts to 3 s."""
    with google() as (state, base):
        project = copy_example(tmp_path / "wolfpack")
        config = project / "filmc.toml"
        text = config.read_text(encoding="utf-8")
        assert 'keyframe = "openai"\n' in text
        text = text.replace('keyframe = "openai"\n', "")
        text = text.replace("[steps]\n", tables(base, {"keyframe": "gemini_image",
                                                       "clip": "veo"}) + "\n", 1)
        config.write_text(text, encoding="utf-8")
        select = ("--use-first", "--select", "shot:eyes_on_ridge", "film.film")

        r = filmc(project, "plan", *select, state=state, code=2)
        said = r.stdout + r.stderr
        for warned in ("backend `veo` (veo) cannot honour a length of 3",
                       "backend `veo` (veo) cannot honour the size 1920x804 for `clip` steps",
                       "backend `gemini_image` (gemini_image) cannot honour a negative prompt",
                       "backend `gemini_image` (gemini_image) cannot honour 5 reference images "
                       "(it takes 3)"):
            assert warned in said, warned
        assert "2 keyframe on gemini_image, 1 clip on veo" in said

        filmc(project, "build", *select, state=state)
        steps = harness.report(project, "wolfpack")
        ran = {i: s for i, s in steps.items() if s["status"] == "ran"}
        keyframes = {i for i in ran if i.startswith("keyframe.")}
        assert keyframes == {"keyframe.cub.eyes_on_ridge.gemini_image-1",
                             "keyframe.cub.eyes_on_ridge.gemini_image-2"}
        assert all(ran[i]["outputs"][0] in state.made for i in keyframes | {
            "clip.cub.eyes_on_ridge.take1"})
        assert ran["clip.cub.eyes_on_ridge.take1"]["backend"] == "veo"
        refs = [hashlib.sha256((project / "refs" / f).read_bytes()).hexdigest()
                for f in ("lead_wolf.png", "steppe_night.png")]  # ALPHA's sheet, the plate
        first = ran["keyframe.cub.eyes_on_ridge.gemini_image-1"]["outputs"][0]
        assert state.received_images == [refs, refs, [first]]  # the clip starts on Gemini's
        [asked] = state.received["predictLongRunning"]
        assert asked["parameters"] == {"aspectRatio": "16:9", "durationSeconds": 4}
        assert (state.submits, state.billed) == (1, 3)
        build = project / "build" / "wolfpack"
        shot = probe(next((build / "shots").glob("*eyes_on_ridge*")))
        assert abs(shot["duration"] - 3) <= 1 / 24
        assert (shot["width"], shot["height"]) == (1920, 804)
        with Image.open(next((build / "keyframes").glob("eyes_on_ridge.gemini_image-1.*"))) as img:
            assert img.size == (1536, 672)  # 21:9, the ratio nearest 2.39:1

