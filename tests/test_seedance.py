"""The `seedance` adapter against a loopback Ark API (tests/loopback/seedance.py).

Real HTTP on 127.0.0.1, real PNG and MP4 bodies.  The first part drives the
adapter as the engine does (submit, poll with the handle round-tripped through
JSON as the journal keeps it, fetch) and asserts what the service was sent, the
file that landed, and for each of Ark's faults the kind the engine acts on,
whether it may be sent again (`unbilled`), what the user reads, and how many
tasks the service created (each one is paid).  The second part runs the real
command line: the example film with its clips made by Seedance, a build killed
with `kill -9` while its task runs, and a face refused by Seedance's safety check.
"""

from __future__ import annotations

import asyncio
import base64
import functools
import hashlib
import io
import re
from collections.abc import Iterator, Mapping
from fractions import Fraction
from pathlib import Path
from typing import Any

import adapter_harness as harness
import pytest
from conftest import copy_example
from loopback import media, serve
from loopback.seedance import SeedanceState, make_app
from PIL import Image
from test_services_faults import accepted

from filmc.backends.ffmpeg import probe
from filmc.backends.protocol import (
    Done,
    FailureKind,
    Handle,
    Input,
    Request,
    ServiceError,
    Setup,
)
from filmc.backends.registry import adapter_class
from filmc.backends.seedance import REGIONS, Seedance, base_url
from filmc.engine.journal import read_open
from filmc.lang.steps import (
    CHARACTER,
    FIRST_FRAME,
    LAST_FRAME,
    LOCATION,
    StepId,
    Tags,
)

KEY = "ark-canary-7c41e09d2b"  # must never appear in a message, a file or a log
KEYS = {"ARK_API_KEY": KEY}
MODEL = "seedance-1-0-pro-250528"


@pytest.fixture
def state() -> SeedanceState:
    return SeedanceState(key=KEY)


@pytest.fixture
def api(state: SeedanceState) -> Iterator[str]:
    with serve(make_app(state)) as url:
        yield f"{url}/api/v3"


def adapter(api: str, root: Path, key: str = KEY, **settings: Any) -> Seedance:
    settings = {"base_url": api, "model": MODEL, "image_model": "seedream-4-0-250828",
                "resolution": "480p", **settings}
    return Seedance(Setup(name="seedance", settings=settings, root=root,
                          secret=lambda name: key if name == "api_key" else "", uploads=None))


def picture(tmp: Path, name: str, role: str, size: tuple[int, int] = (192, 80),
            tags: Tags | None = None) -> Input:
    tmp.mkdir(parents=True, exist_ok=True)
    path = tmp / f"{name}.png"
    path.write_bytes(media.png(*size, seed=name))
    return harness.image(path, role, f"keyframe.{name}", tags)


def request(tmp: Path, step: StepId, inputs: tuple[Input, ...], **fields: Any) -> Request:
    return harness.request(step, "seedance", tmp / "work" / str(step), inputs,
                           key=hashlib.sha256(str(step).encode()).hexdigest(), **fields)


def clip(tmp: Path, *inputs: Input, **fields: Any) -> Request:
    if not inputs:
        inputs = (picture(tmp, "first", FIRST_FRAME),)
    fields = {"prompt": "The wolves run down the ridge in the snow.", "seed": 7, "width": 192,
              "height": 80, "fps": Fraction(24), "duration": Fraction(3), "take": 1, **fields}
    return request(tmp, StepId.clip("hunt", "wolves", "take1"), inputs, **fields)


def run(a: Any, req: Request) -> tuple[Done, Mapping[str, Any], list[str]]:
    """One step as the engine drives it, the handle through JSON: the statuses seen."""
    done, files, polls = harness.closing(a, harness.drive(a, req, journal=True))
    return done, files, harness.statuses(polls)


def failure(a: Any, req: Request) -> ServiceError:
    return harness.raised(lambda: run(a, req), KEY)


def sent_image(url: str) -> Image.Image:
    """A data URL the adapter sent, as an image."""
    return Image.open(io.BytesIO(base64.b64decode(url.split(";base64,", 1)[1])))


# -- clips ------------------------------------------------------------------------------------


def test_a_clip_is_a_task_made_from_its_first_and_last_frames(state, api, tmp_path):
    """The keyframe goes as `first_frame`, the next shot's as `last_frame`, no reference
    images (Ark refuses the two together); the 3 s shot is asked at 4 s (the shortest
    length the model makes that covers it); the task is followed to `succeeded` and its
    video downloaded: a real MP4, 480p 21:9 as the first frame's shape makes it."""
    first = picture(tmp_path, "first", FIRST_FRAME, (1920, 804))
    last = picture(tmp_path, "last", LAST_FRAME, (1920, 804))
    req = clip(tmp_path, first, last)
    done, files, seen = run(adapter(api, tmp_path), req)

    [body] = state.received
    assert {k: v for k, v in body.items() if k != "content"} == {
        "model": MODEL, "ratio": "adaptive", "watermark": False, "duration": 4, "seed": 7,
        "resolution": "480p"}
    text, *images = body["content"]
    assert text == {"type": "text", "text": req.fields.prompt}
    assert [(i["type"], i["role"]) for i in images] == [("image_url", "first_frame"),
                                                        ("image_url", "last_frame")]
    assert [sent_image(i["image_url"]["url"]).size for i in images] == [(1920, 804)] * 2
    assert seen == ["queued", "running", "done"]
    assert files == {"video": req.workdir / "video.mp4"}
    video = probe(files["video"])
    assert (video["width"], video["height"]) == (960, 416) and video["duration"] == \
        pytest.approx(4, abs=0.1)
    assert hashlib.sha256(files["video"].read_bytes()).hexdigest() in state.made
    assert done.note.startswith(f"Seedance task {state.created[0]}, ") and "tokens" in done.note
    assert len(state.created) == 1 and state.requests["download"] == 1


def test_small_frames_are_scaled_up_and_other_shapes_refused_before_sending(state, api,
                                                                            tmp_path):
    """Ark takes frames 300 px or more a side, 2:5 to 5:2: a 192x80 keyframe goes as 720x300
    (scaled, same shape); a 3:1 one is refused before anything is sent (nothing billed)."""
    run(adapter(api, tmp_path), clip(tmp_path / "a"))
    [body] = state.received
    assert sent_image(body["content"][1]["image_url"]["url"]).size == (720, 300)

    wide = picture(tmp_path, "wide", FIRST_FRAME, (900, 300))
    e = failure(adapter(api, tmp_path), clip(tmp_path / "b", wide))
    assert e.kind is FailureKind.INVALID and e.unbilled
    assert "its first frame is 900x300 (3.00:1)" in e.message and "2:5 to 5:2" in e.message
    assert state.requests["create"] == 1


def test_a_model_without_last_frames_is_sent_the_first_and_says_so(state, api, tmp_path):
    req = clip(tmp_path, picture(tmp_path, "a", FIRST_FRAME), picture(tmp_path, "b", LAST_FRAME),
               duration=Fraction(9, 2), seed=None)
    caps = Seedance.capabilities("clip", {"model": MODEL, "last_frame": False}, tmp_path)
    assert caps is not None and not caps.last_frame
    done, _, _ = run(adapter(api, tmp_path, last_frame=False, ratio="21:9",
                             camera_fixed=True), req)
    [body] = state.received
    assert [c.get("role") for c in body["content"]] == [None, "first_frame"]
    assert (body["duration"], body["ratio"], body["camera_fixed"]) == (5, "21:9", True)
    assert "seed" not in body
    assert done.note.endswith("made without its last frame (`last_frame = false`)")


# -- images -----------------------------------------------------------------------------------


def test_keyframes_are_seedream_images_from_their_references(state, api, tmp_path):
    """Characters first, then the location, as data URLs; the prompt says what each one
    shows; the size has the film's shape at about 4 megapixels; the PNG is kept."""
    chen = picture(tmp_path, "CHEN", CHARACTER, (64, 96), Tags(character="CHEN", outfit="winter"))
    steppe = picture(tmp_path, "STEPPE", LOCATION, (96, 40), Tags(location="STEPPE", time="dusk"))
    req = request(tmp_path, StepId.keyframe("hunt", "chen", "seedance-1"), (steppe, chen),
                  prompt="Chen raises his binoculars.", width=1920, height=804, take=1)
    done, files, seen = run(adapter(api, tmp_path), req)

    [body] = state.received
    assert body["model"] == "seedream-4-0-250828" and body["size"] == "3168x1328"
    assert body["prompt"] == ("Image 1 shows CHEN (winter outfit). Image 2 shows the location "
                              "STEPPE (dusk).\n\nChen raises his binoculars.")
    assert [sent_image(u).size for u in body["image"]] == [(64, 96), (96, 40)]  # as they are
    assert (body["response_format"], body["watermark"]) == ("b64_json", False)
    assert seen == [] and state.images_made == 1 and not state.created
    with Image.open(files["image"]) as img:
        assert (img.format, img.size) == ("PNG", (3168, 1328))
    assert done.note == "Seedream seedream-4-0-250828, 3168x1328"

    plate = request(tmp_path, StepId.plate("STEPPE", "dusk"), (), prompt="the steppe", width=1920,
                    height=804)
    run(adapter(api, tmp_path, image_size="2K"), plate)
    assert state.received[-1]["size"] == "2K" and "image" not in state.received[-1]


def test_more_references_than_seedream_takes_are_refused_before_sending(state, api, tmp_path):
    refs = tuple(picture(tmp_path, f"C{i}", CHARACTER, (32, 32), Tags(character=f"C{i}"))
                 for i in range(15))
    req = request(tmp_path, StepId.keyframe("hunt", "crowd", "seedance-1"), refs, prompt="x")
    e = failure(adapter(api, tmp_path), req)
    assert e.kind is FailureKind.INVALID and "at most 14" in e.message
    assert not state.requests


# -- Ark's faults -----------------------------------------------------------------------------


@pytest.mark.parametrize("status", [400, 422])
def test_a_face_is_refused_every_time_and_the_user_is_sent_to_another_backend(
        state, api, tmp_path, status):
    """A keyframe showing a real person: Ark refuses it (400 with
    `InputImageSensitiveContentDetected.PrivacyInformation`, as its error table says, or
    422), every time.  The step fails as a policy refusal, never retried, saying so and
    what to do; no task was created, nothing paid."""
    state.faces.append("wolves run")
    state.face_status = status
    for attempt in ("first", "again"):
        e = failure(adapter(api, tmp_path), clip(tmp_path / attempt))
        assert e.kind is FailureKind.POLICY and not e.retryable and e.status == status
        assert "may contain real person" in e.message
        assert "InputImageSensitiveContentDetected.PrivacyInformation" in e.message
        assert "retrying will not help: make this step with another backend (`fallback = " \
               "{ clip = \"NAME\" }` in this backend's table of filmc.toml, or `backend clip " \
               "NAME` in the shot)" in e.message
    assert state.requests["create"] == 2 and not state.created


def test_a_face_found_while_the_task_runs_is_the_same_refusal(state, api, tmp_path):
    state.faces.append("wolves run")
    state.face_at = "run"
    e = failure(adapter(api, tmp_path), clip(tmp_path))
    assert e.kind is FailureKind.POLICY
    assert f"Seedance task `{state.created[0]}` failed" in e.message
    assert "another backend" in e.message and state.requests["download"] == 0


@pytest.mark.parametrize(("end", "fail", "said"), [
    ("succeeded", ("InternalServiceError", "The service encountered an unexpected internal "
                   "error."), "failed: The service encountered an unexpected internal error. "
                               "(InternalServiceError)"),
    ("expired", None, "gave up on task"),
    ("cancelled", None, "was cancelled at the service"),
])
def test_a_task_that_ends_badly_fails_the_step_and_says_why(state, api, tmp_path, end, fail,
                                                            said):
    state.end = end
    if fail:
        state.fail["wolves"] = fail
    e = failure(adapter(api, tmp_path), clip(tmp_path))
    assert e.kind is FailureKind.FAILED and said in e.message
    assert len(state.created) == 1 and state.requests["download"] == 0


@pytest.mark.parametrize(("status", "code", "kind", "unbilled", "said"), [
    (429, "RateLimitExceeded.EndpointRPMExceeded", FailureKind.RATE_LIMITED, True, "RPM"),
    (500, "InternalServiceError", FailureKind.TRANSIENT, True, "InternalServiceError"),
    (502, "BadGateway", FailureKind.TRANSIENT, False, "BadGateway"),
    (403, "AccountOverdueError", FailureKind.CREDIT, False, "top up the account"),
    (429, "ModelQuotaExhausted", FailureKind.CREDIT, False, "top up the account"),
    (403, "AccessDenied", FailureKind.AUTH, False, "not be allowed this model"),
    (400, "InvalidParameter", FailureKind.INVALID, False, "InvalidParameter"),
])
def test_each_error_answer_means_what_ark_documents(state, api, tmp_path, status, code, kind,
                                                    unbilled, said):
    headers = {"Retry-After": "2"} if status == 429 else None
    message = "The Requests Per Minute (RPM) limit was exceeded." if "RPM" in code else None
    state.faults.append(("error", status, code, message, headers))
    e = failure(adapter(api, tmp_path), clip(tmp_path))
    assert (e.kind, e.unbilled, e.status) == (kind, unbilled, status)
    assert said in e.message and code in e.message
    if status == 429 and kind is FailureKind.RATE_LIMITED:
        assert e.retry_after == pytest.approx(2)
    assert not state.created


def test_a_refused_key_names_the_variable_and_never_shows(state, api, tmp_path):
    e = failure(adapter(api, tmp_path, key="ark-not-this-one"), clip(tmp_path))
    assert e.kind is FailureKind.AUTH and "api_key_env" in e.message and "region" in e.message
    assert state.auth_failures == 1 and not state.created


def test_an_unknown_model_says_to_check_model_and_region(state, api, tmp_path):
    state.models = ("seedance-1-0-pro-250528",)
    e = failure(adapter(api, tmp_path, model="doubao-seedance-1-0-pro-250528"), clip(tmp_path))
    assert e.kind is FailureKind.INVALID and e.status == 404
    assert "ids differ between regions" in e.message


def test_a_connection_dropped_after_submitting_may_have_been_billed(state, api, tmp_path):
    state.faults.append(("reset",))
    e = failure(adapter(api, tmp_path), clip(tmp_path))
    assert e.kind is FailureKind.TRANSIENT and not e.unbilled  # the engine must not resend it
    assert len(state.created) == 1


def test_an_expired_or_broken_video_is_not_kept(state, api, tmp_path):
    state.url_ttl = 0
    req = clip(tmp_path / "a")
    e = failure(adapter(api, tmp_path), req)
    assert e.kind is FailureKind.EXPIRED and e.status == 403 and "24 hours" in e.message
    state.url_ttl, state.corrupt = 86400, True
    req = clip(tmp_path / "b")
    e = failure(adapter(api, tmp_path), req)
    assert e.kind is FailureKind.FAILED and "not an MP4 video" in e.message
    assert list(req.workdir.iterdir()) == []


def test_a_task_ark_does_not_know_is_not_found_and_a_queued_one_can_be_cancelled(
        state, api, tmp_path):
    a = adapter(api, tmp_path)

    async def go() -> None:
        try:
            with pytest.raises(ServiceError) as info:
                await a.poll(Handle("cgt-20260101000000-nope", {"base": api}))
            assert info.value.kind is FailureKind.NOT_FOUND and "7 days" in info.value.message
            handle = await a.submit(clip(tmp_path), None)
            assert isinstance(handle, Handle)
            await a.cancel(handle)
        finally:
            await a.close()

    asyncio.run(go())
    assert state.tasks[state.created[0]].status == "cancelled"
    assert state.requests["delete"] == 1


# -- what the class declares ------------------------------------------------------------------


def test_it_is_the_registered_seedance_adapter_and_the_region_picks_the_host():
    assert adapter_class("seedance") is Seedance
    assert base_url({}) == REGIONS["ap-southeast"]
    assert REGIONS["ap-southeast"] == "https://ark.ap-southeast.bytepluses.com/api/v3"
    assert base_url({"region": "cn-beijing"}) == "https://ark.cn-beijing.volces.com/api/v3"
    assert base_url({"region": "cn-beijing", "base_url": "http://127.0.0.1:9/api/v3/"}) == \
        "http://127.0.0.1:9/api/v3"


def test_capabilities_and_keys(tmp_path):
    caps = Seedance.capabilities("clip", {"model": MODEL}, tmp_path)
    assert caps is not None
    assert (caps.seed, caps.negative, caps.references, caps.first_frame, caps.last_frame) == \
        (True, False, 0, True, True)
    assert caps.durations == tuple(Fraction(d) for d in range(4, 13))
    assert caps.aspect_ratios == ("21:9", "16:9", "4:3", "1:1", "3:4", "9:16")
    fixed = Seedance.capabilities("clip", {"model": MODEL, "durations": [5, 10],
                                           "ratio": "16:9"}, tmp_path)
    assert fixed is not None and fixed.durations == (5, 10) and fixed.aspect_ratios == ("16:9",)
    image = Seedance.capabilities("keyframe", {"image_model": "s"}, tmp_path)
    assert image is not None and (image.seed, image.negative, image.references) == (False, False,
                                                                                      14)
    assert Seedance.capabilities("keyframe", {"model": MODEL}, tmp_path) is None
    assert Seedance.capabilities("clip", {"image_model": "s"}, tmp_path) is None
    assert Seedance.capabilities("speech", {"model": MODEL}, tmp_path) is None
    assert Seedance.key_fields("clip", {}) == {"prompt", "seed", "duration", "width", "height",
                                               "take"}
    assert Seedance.key_fields("clip", {"ratio": "16:9"}) == {"prompt", "seed", "duration",
                                                              "take"}
    assert Seedance.key_fields("keyframe", {"image_size": "2K"}) == {"prompt", "take"}
    settings = {"model": MODEL, "image_model": "s", "resolution": "480p", "image_size": "2K",
                "watermark": False}
    assert Seedance.key_settings("clip", settings) == {"model": MODEL, "resolution": "480p",
                                                      "watermark": False}
    assert Seedance.key_settings("sheet", settings) == {"image_model": "s", "image_size": "2K",
                                                       "watermark": False}


def problems(**settings: Any) -> dict[str, tuple[bool, str]]:
    return {p.setting: (p.warning, p.message + " " + (p.help or ""))
            for p in Seedance.check_settings(settings)}


def test_check_settings():
    assert problems(model=MODEL) == {}
    assert problems(model=MODEL, image_model="s", region="cn-beijing", resolution="1080p",
                    ratio="adaptive", durations=[5, 10], watermark=True, camera_fixed=False,
                    image_size="2048x2048", retries=3, poll_interval_s=5) == {}
    warning, text = problems()["model"]
    assert not warning and "`image_model`" in text and "ids differ" in text
    assert not problems(model=MODEL, region="eu-west")["region"][0]
    assert "`cn-beijing`" in problems(model=MODEL, region="eu-west")["region"][1]
    assert not problems(model=MODEL, resolution="4k")["resolution"][0]
    assert not problems(model=MODEL, ratio="2.39:1")["ratio"][0]
    assert not problems(model=MODEL, durations="5")["durations"][0]
    assert not problems(model=MODEL, watermark="no")["watermark"][0]
    assert not problems(model=MODEL, image_size="big")["image_size"][0]
    assert not problems(model=MODEL, base_url="ark.example.com")["base_url"][0]
    warning, text = problems(model=MODEL, resolutoin="480p")["resolutoin"]
    assert warning and "did you mean `resolution`?" in text


# -- the command line -------------------------------------------------------------------------

TINY = harness.film("Tiny", harness.walks("1s"), uses=("camera",), settings=(),
                    ana=harness.REF_ANA, pier=harness.REF_PIER)
FAST = harness.fast(2, backoff_cap_s=0.1)
TINY_BUILD = ("--until", "clip", "--use-first", "tiny.film")  # up to the paid step
filmc = functools.partial(harness.filmc, keys=KEYS)


def backend_table(api: str) -> dict[str, dict[str, Any]]:
    return {"backends.seedance": {"type": "seedance", "api_key_env": "ARK_API_KEY",
                                  "base_url": api, "model": MODEL, "resolution": "480p", **FAST,
                                  "prices": {"clip": {"per_second": 0.03}}}}


def tiny_project(folder: Path, backend: str, tables: Mapping[str, Mapping[str, Any]]) -> Path:
    """One 1 s shot at 192x80 whose clip is made by `backend` (configured by `tables`); the
    cast's and the location's images are given, so only the keyframe is drawn here."""
    config = harness.toml({"steps": {"clip": backend}, **tables})
    return harness.project(folder, "tiny", TINY, config,
                           refs={"ana.png": media.png(64, 96, "ana"),
                                 "pier.png": media.png(96, 40, "pier")})


def example_through(tmp_path: Path, backend: str, tables: Mapping[str, Mapping[str, Any]],
                    state: Any, keys: Mapping[str, str]) -> tuple[Path, str, dict]:
    """examples/wolfpack as it is in git, its clips made by `backend` at its loopback
    server: the shot eyes_on_ridge is built, its clip made there (byte for byte the
    service's video, one task, paid once) and cut to the shot's 3 s at the film's size;
    building again sends nothing.  The folder, what the build said, and the clip's step."""
    folder = copy_example(tmp_path / "wolfpack")
    config = folder / "filmc.toml"
    text = config.read_text(encoding="utf-8")
    assert 'keyframe = "openai"\nspeech = "openai"' in text
    config.write_text(text.replace('keyframe = "openai"\nspeech = "openai"', f'clip = "{backend}"')
                      + "\n" + harness.toml(tables), encoding="utf-8")
    select = ("--use-first", "--select", "shot:eyes_on_ridge", "film.film")
    r = harness.filmc(folder, "build", *select, keys=keys)
    made = harness.report(folder, "wolfpack")["clip.cub.eyes_on_ridge.take1"]
    assert (made["backend"], made["status"]) == (backend, "ran")
    assert made["outputs"][0] in state.made and len(state.created) == 1
    [path] = (folder / "build" / "wolfpack" / "shots").glob("eyes_on_ridge.mp4")
    shot = probe(path)
    assert (shot["width"], shot["height"]) == (1920, 804)
    assert shot["duration"] == pytest.approx(3, abs=1 / 24)
    again = harness.filmc(folder, "build", *select, keys=keys)
    assert "up to date" in again.stderr and len(state.created) == 1
    harness.no_key_in(folder, keys.values())
    return folder, r.stderr, made


def killed_then_attached(folder: Path, state: Any, polled: str, keys: Mapping[str, str]) -> None:
    """The tiny project's clip is running (`polled` counts the service's polls) when the
    build is killed with -9: nothing of the build survives, the journal holds the task;
    the next build polls it (attached) and creates no task."""
    state.hold = True
    with harness.killed(folder, *TINY_BUILD, keys=keys) as build:
        build.wait_for(lambda: state.created and state.requests[polled] >= 2
                       and accepted(folder) >= 1, "the task submitted and journaled")
    journal = folder / ".filmc" / "journal.log"
    [job] = read_open(journal).values()
    assert job.handle.id == state.created[0]
    state.hold = False
    harness.filmc(folder, "build", *TINY_BUILD, keys=keys)
    made = harness.report(folder, "tiny")["clip.one.a1.take1"]
    assert made["attached"] and made["outputs"][0] in state.made
    assert len(state.created) == 1 and state.requests["create"] == 1
    assert not read_open(journal)
    harness.no_key_in(folder, keys.values())


def test_the_example_film_is_made_through_seedance(tmp_path, state, api):
    """examples/wolfpack as it is in git, its clips routed to Seedance at the loopback
    server: the build warns what Seedance cannot honour (the 3 s shot is made at 4 s, as
    `plan` says), makes the shot's clip there (byte for byte the service's video, one
    task, paid once), conforms it to the film, and building again sends nothing."""
    _, said, _ = example_through(tmp_path, "seedance", backend_table(api), state, KEYS)
    assert re.search(r"backend `seedance` \(seedance\) cannot honour a length of 3 ?s for "
                     r"`clip` steps", said), said  # the warnings `plan` shows too
    assert state.received[0]["duration"] == 4 and state.received[0]["ratio"] == "adaptive"


def test_kill_9_mid_poll_then_the_next_build_attaches_and_pays_nothing_twice(tmp_path, state,
                                                                             api):
    killed_then_attached(tiny_project(tmp_path / "tiny", "seedance", backend_table(api)), state,
                         "get", KEYS)


def test_a_refused_face_fails_the_shot_and_says_what_to_do(tmp_path, state, api):
    """Seedance refuses the keyframe (a real person's face): the build fails that shot with
    the service's reason and the way out (another backend), sends it once and not again;
    nothing was created or paid, and nothing stays journaled."""
    project = tiny_project(tmp_path / "tiny", "seedance", backend_table(api))
    state.faces.append("walks along the pier")
    r = filmc(project, "build", *TINY_BUILD, code=1)
    error = harness.report(project, "tiny")["clip.one.a1.take1"]["error"]
    assert "may contain real person" in error and "another backend" in error
    assert f"failed clip.one.a1.take1 (shot one/a1): {error}" in r.stderr
    assert state.requests["create"] == 1 and not state.created
    assert not read_open(project / ".filmc" / "journal.log")
