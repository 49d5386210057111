"""The `fal` adapter against a loopback fal.ai (tests/loopback/fal.py): real HTTP, real
PNG and MP4 bodies, models with input schemas as strict as fal's.

The adapter is driven as the engine drives it (submit → poll → fetch), and then
through `filmc build` itself: a build killed with `kill -9` while fal's queue holds
its jobs, and the example film with its keyframes made by an image model on fal and
its clips by a video model on Replicate, each through its mapping in filmc.toml.
Every test asserts what a user would check — what the model was given, the files
that landed, the message and kind of each failure — and the server's own count of
submissions: nothing is paid for twice.
"""

from __future__ import annotations

import asyncio
import base64
import functools
import hashlib
import json
from collections import Counter
from collections.abc import Callable, Iterator, Mapping
from fractions import Fraction
from pathlib import Path
from typing import Any

import adapter_harness as harness
import attrs
import pytest
from conftest import copy_example
from loopback import media, serve
from loopback.fal import FalState
from loopback.fal import make_app as fal_app
from loopback.replicate import ReplicateState
from loopback.replicate import make_app as replicate_app
from PIL import Image
from test_services_faults import accepted

from filmc.backends.fal import Fal
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
from filmc.backends.registry import adapter_class
from filmc.lang.steps import (
    CHARACTER,
    FIRST_FRAME,
    LAST_FRAME,
    LOCATION,
    StepId,
    Tags,
)

KEY = "fal-canary-7e2d4c1b:9f8a6e5d3c2b1a00"  # must never appear in a message
KONTEXT = "fal-ai/flux-pro/kontext/max/multi"
KLING = "fal-ai/kling-video/v2.1/pro/image-to-video"
IMAGE_MAPPING = {"model": KONTEXT, "inputs": {"prompt": "prompt", "references": "image_urls",
                                              "seed": "seed", "aspect_ratio": "aspect_ratio"},
                 "aspect_ratios": ["21:9", "16:9", "4:3", "1:1", "3:4", "9:16"],
                 "extra": {"output_format": "png"}}
CLIP_MAPPING = {"model": KLING, "inputs": {
    "prompt": "prompt", "first_frame": "image_url", "last_frame": "tail_image_url",
    "negative": "negative_prompt", "duration": {"name": "duration", "as": "string"}},
    "durations": [5, 10], "extra": {"cfg_scale": 0.5}}


@pytest.fixture
def fal() -> Iterator[tuple[FalState, str]]:
    state = FalState(key=KEY)
    with serve(fal_app(state)) as url:
        yield state, url


def adapter(url: str, root: Path, uploads: harness.Uploads | None = None, key: str = KEY,
            **settings: Any) -> Fal:
    settings = {"base_url": url, "storage_url": url, **settings}
    return Fal(Setup(name="fal", settings=settings, root=root,
                     secret=lambda name: key if name == "api_key" else "",
                     uploads=uploads or harness.Uploads()))


def picture(tmp: Path, name: str, role: str, tags: Tags, size: tuple[int, int] = (64, 48)) -> Input:
    path = tmp / f"{name}.png"
    path.write_bytes(media.png(*size, name))
    return harness.image(path, role, f"sheet.{name}", tags)


def request(tmp: Path, step: StepId, inputs: tuple[Input, ...] = (), key: str = "ab" * 32,
            **fields: Any) -> Request:
    return harness.request(step, "fal", tmp / "work" / str(step), inputs, key=key, **fields)


def keyframe(tmp: Path, inputs: tuple[Input, ...] = (), **fields: Any) -> Request:
    fields = {"prompt": "Chen raises a pair of old army binoculars.", "width": 1920,
              "height": 804, "take": 1, **fields}
    return request(tmp, StepId.keyframe("hunt", "chen_watches", "fal-1"), inputs, **fields)


def clip(tmp: Path, inputs: tuple[Input, ...], **fields: Any) -> Request:
    fields = {"prompt": "The grey leader flows through the tall grass.", "width": 1920,
              "height": 804, "fps": Fraction(24), "duration": Fraction(4), "take": 1,
              "negative": "text, watermark", **fields}
    return request(tmp, StepId.clip("hunt", "binocular_pov", "take1"), inputs, **fields)


async def make(a: Any, req: Request, pause: float = 0.02) -> tuple[Done, Mapping[str, Any],
                                                                  list[Pending]]:
    """One step, as the engine drives it: the Done, the files, and each Pending seen."""
    done, files, polls = await harness.drive(a, req, pause)
    return done, files, [p for p in polls if isinstance(p, Pending)]


def run(a: Any, req: Request) -> tuple[Done, Mapping[str, Any], list[Pending]]:
    return harness.closing(a, make(a, req))


def failure(a: Any, req: Request, key: str = KEY) -> ServiceError:
    return harness.raised(lambda: run(a, req), key)


def reattached(new_adapter: Callable[[], Any], req: Request) -> Path:
    """A build that dies once the service has the request (its handle journaled, as JSON);
    the next build's adapter polls the handle until done and fetches: the video."""
    async def first_build() -> str:
        a = new_adapter()
        got = await a.submit(req, a.prepare(req))
        await a.close()
        return json.dumps(attrs.asdict(got))

    async def next_build(saved: str) -> Path:
        a = new_adapter()
        handle = Handle(**json.loads(saved))
        got = await a.poll(handle)
        assert isinstance(got, Pending)
        while isinstance(got, Pending):
            await asyncio.sleep(0.05)
            got = await a.poll(handle)
        files = await a.fetch(got, req)
        await a.close()
        return files["video"]

    return asyncio.run(next_build(asyncio.run(first_build())))


def cancelled(a: Any, req: Request) -> ServiceError:
    """What polling a request says once it was submitted, then cancelled."""
    async def go() -> ServiceError:
        handle = await a.submit(req, None)
        assert isinstance(handle, Handle)
        await a.cancel(handle)
        with pytest.raises(ServiceError) as info:
            await a.poll(handle)
        await a.close()
        return info.value

    return asyncio.run(go())


def cast_and_place(tmp: Path) -> tuple[Input, Input, Input]:
    location = picture(tmp, "STEPPE", LOCATION, Tags(location="STEPPE", time="dusk"))
    chen = picture(tmp, "CHEN", CHARACTER, Tags(character="CHEN", outfit="winter"))
    mei = picture(tmp, "MEI", CHARACTER, Tags(character="MEI"))
    return location, chen, mei


# -- the happy paths -------------------------------------------------------------------------


def test_a_keyframe_goes_through_the_queue_with_its_references_uploaded(fal, tmp_path):
    """The mapping gives the image model the prompt, the references (characters first, in
    fal's storage), a seed made from the key and the nearest of its aspect ratios; the
    queue answers 202 until the job is done, then 200; the result's image lands."""
    state, url = fal
    state.latency, state.queue_s = 0.3, 0.1
    location, chen, mei = cast_and_place(tmp_path)
    req = keyframe(tmp_path, (location, chen, mei))
    done, files, seen = run(adapter(url, tmp_path, keyframe=IMAGE_MAPPING), req)

    [job] = state.jobs.values()
    stored = {hashlib.sha256(body).hexdigest(): name for name, (body, _t) in state.stored.items()}
    assert job.model == KONTEXT and state.submits == {KONTEXT: 1}
    assert job.input == {
        "output_format": "png", "prompt": req.fields.prompt, "seed": int("ab" * 4, 16),
        "aspect_ratio": "21:9",  # 1920x804 is 2.39:1
        "image_urls": [f"{url}/files/{stored[i.digest]}" for i in (chen, mei, location)]}
    assert state.uploads == 3
    assert {p.status for p in seen} >= {"in queue (position 0)", "in progress"}
    assert state.answered == [202] * len(seen) + [200] and state.requests["result"] == 1
    with Image.open(files["image"]) as img:
        assert (img.format, img.size) == ("PNG", (256, 110))
    assert hashlib.sha256(files["image"].read_bytes()).hexdigest() in state.made
    assert done.note.startswith(f"fal `{KONTEXT}`")


def test_the_queue_urls_fal_returns_are_used_as_given(fal, tmp_path):
    """fal's status and result URLs drop the model's path (`/v2.1/pro/image-to-video`): the
    handle keeps them as fal gave them, and a later build polls them from the journal."""
    state, url = fal
    first = picture(tmp_path, "kf", FIRST_FRAME, Tags())
    a = adapter(url, tmp_path, clip=CLIP_MAPPING)

    async def submit() -> Handle:
        got = await a.submit(clip(tmp_path, (first,)), None)
        await a.close()
        assert isinstance(got, Handle)
        return got

    handle = asyncio.run(submit())
    assert handle.data["status_url"] == f"{url}/fal-ai/kling-video/requests/{handle.id}/status"
    assert handle.data["response_url"] == f"{url}/fal-ai/kling-video/requests/{handle.id}"
    assert json.loads(json.dumps(attrs.asdict(handle))) == attrs.asdict(handle)  # journaled


def test_a_clip_gets_its_frames_the_negative_and_a_length_the_model_makes(fal, tmp_path):
    """Kling on fal takes its length as the text "5" or "10": a 4 s shot asks for "5"
    (the shot step trims it); the first and last frames go inline as data URIs; the
    negative prompt and the fixed `cfg_scale` go as written; the clip is a real MP4."""
    state, url = fal
    first = picture(tmp_path, "kf", FIRST_FRAME, Tags(), size=(96, 40))
    last = picture(tmp_path, "next", LAST_FRAME, Tags(), size=(96, 40))
    req = clip(tmp_path, (first, last))
    _, files, _ = run(adapter(url, tmp_path, upload="data_uri", clip=CLIP_MAPPING), req)

    [job] = state.jobs.values()
    assert job.input["duration"] == "5" and job.input["cfg_scale"] == 0.5
    assert job.input["negative_prompt"] == "text, watermark"
    for field, given in (("image_url", first), ("tail_image_url", last)):
        head, _, data = job.input[field].partition(",")
        assert head == "data:image/png;base64"
        assert hashlib.sha256(base64.b64decode(data)).hexdigest() == given.digest
    assert state.uploads == 0
    info = probe(files["video"])
    assert files["video"].suffix == ".mp4" and abs(info["duration"] - 5) < 0.1
    assert (info["width"], info["height"]) == (256, 106)  # the first frame's shape


def test_a_shot_without_a_negative_or_last_frame_leaves_those_inputs_out(fal, tmp_path):
    state, url = fal
    first = picture(tmp_path, "kf", FIRST_FRAME, Tags())
    run(adapter(url, tmp_path, clip=CLIP_MAPPING), clip(tmp_path, (first,), negative="",
                                                         duration=Fraction(7)))
    [job] = state.jobs.values()
    assert set(job.input) == {"prompt", "image_url", "duration", "cfg_scale"}
    assert job.input["duration"] == "10"


def test_references_are_uploaded_once_and_remembered(fal, tmp_path):
    """Two keyframes with the same cast share each upload; a later build (a new adapter
    with the same store) uploads nothing."""
    state, url = fal
    location, chen, mei = cast_and_place(tmp_path)
    uploads = harness.Uploads()
    a = adapter(url, tmp_path, uploads, keyframe=IMAGE_MAPPING)

    async def both() -> None:
        try:
            await asyncio.gather(make(a, keyframe(tmp_path / "1", (location, chen))),
                                 make(a, keyframe(tmp_path / "2", (location, chen, mei))))
        finally:
            await a.close()

    asyncio.run(both())
    assert state.uploads == 3 and state.requests["initiate"] == 3
    run(adapter(url, tmp_path, uploads, keyframe=IMAGE_MAPPING),
        keyframe(tmp_path / "3", (location, mei)))
    assert state.uploads == 3 and state.submits[KONTEXT] == 3


def test_a_new_adapter_reattaches_to_a_journaled_request(fal, tmp_path):
    """A build that dies after fal queued its request: the next one polls the journaled
    handle and fetches the result; fal was asked once."""
    state, url = fal
    state.latency = 0.3
    req = clip(tmp_path, (picture(tmp_path, "kf", FIRST_FRAME, Tags()),))
    assert reattached(lambda: adapter(url, tmp_path, clip=CLIP_MAPPING), req).is_file()
    assert state.submits[KLING] == 1


def test_a_request_still_in_the_queue_can_be_cancelled(fal, tmp_path):
    state, url = fal
    state.queue_s = state.latency = 5
    req = keyframe(tmp_path, (picture(tmp_path, "P", LOCATION, Tags(location="P")),))
    e = cancelled(adapter(url, tmp_path, keyframe=IMAGE_MAPPING), req)
    assert state.requests["cancel"] == 1 and list(state.jobs.values())[0].canceled
    assert e.kind is FailureKind.FAILED and "the request was cancelled at fal" in e.message


# -- a model's error, in the result ----------------------------------------------------------


@pytest.mark.parametrize("fault,kind,said", [
    (("policy",), FailureKind.POLICY,
     "fal's content checker refused it: `prompt`: The content was flagged by a content "
     "checker. (content_policy_violation) ['violence']; reword the shot's prompt"),
    (("input", "image_urls", "Image 2 is smaller than 64x64 pixels"), FailureKind.INVALID,
     "the model refused its input: `image_urls`: Image 2 is smaller than 64x64 pixels "
     "(value_error); check the model's inputs and their mapping in filmc.toml (fal may have "
     "charged for this request, so it is not sent again)"),
    (("runner",), FailureKind.FAILED,
     "the model failed at fal (runner_server_error): Internal error in the model: CUDA out "
     "of memory; fal does not charge for its failures, and the next build sends it again"),
    (("detail_200",), FailureKind.FAILED, "The model produced no output"),
])
def test_a_model_error_in_the_result_is_said_and_sorted(fal, tmp_path, fault, kind, said):
    """The queue says COMPLETED; the result is the model's error, each read into what the
    engine does with it (never retried: fal took the request once)."""
    state, url = fal
    state.job_faults.append(fault)
    e = failure(adapter(url, tmp_path, keyframe=IMAGE_MAPPING),
                keyframe(tmp_path, (picture(tmp_path, "P", LOCATION, Tags(location="P")),)))
    assert e.kind is kind and not e.retryable
    assert said in e.message and "fal request " in e.message
    assert state.submits[KONTEXT] == 1


def test_an_input_the_model_does_not_take_is_its_422(fal, tmp_path):
    """A mapping that sends the wrong type: Kling's duration is text, and a number is
    refused by the model's schema, naming the input."""
    state, url = fal
    mapping = {**CLIP_MAPPING, "inputs": {**CLIP_MAPPING["inputs"], "duration": "duration"}}
    e = failure(adapter(url, tmp_path, clip=mapping),
                clip(tmp_path, (picture(tmp_path, "kf", FIRST_FRAME, Tags()),)))
    assert e.kind is FailureKind.INVALID and e.status == 422
    assert "`duration`: Input should be '5' or '10' (enum)" in e.message


# -- what fal refuses up front -----------------------------------------------------------------


@pytest.mark.parametrize("fault,kind,unbilled,said", [
    (("locked",), FailureKind.CREDIT, False, "Exhausted balance. Top up your balance at "
                                             "fal.ai/dashboard/billing.; top up at"),
    (("status", 429, {"Retry-After": "2"}, {"detail": "Too many requests"}),
     FailureKind.RATE_LIMITED, True, "fal is throttling requests (Too many requests)"),
    (("status", 503, None, {"detail": "No runners available"}), FailureKind.TRANSIENT, True,
     "answered 503: No runners available"),
    (("status", 504, None, None), FailureKind.TRANSIENT, False, "answered 504"),
])
def test_a_refused_submission_is_sorted(fal, tmp_path, fault, kind, unbilled, said):
    state, url = fal
    state.faults.append(fault)
    e = failure(adapter(url, tmp_path, upload="data_uri", keyframe=IMAGE_MAPPING),
                keyframe(tmp_path, (picture(tmp_path, "P", LOCATION, Tags(location="P")),)))
    assert (e.kind, e.unbilled) == (kind, unbilled) and said in e.message
    assert state.submits[KONTEXT] == 0
    if kind is FailureKind.RATE_LIMITED:
        assert e.retry_after == 2


def test_a_refused_key_says_which_setting_and_never_shows(fal, tmp_path):
    state, url = fal
    e = failure(adapter(url, tmp_path, key="fal-the-wrong-one-0000", upload="data_uri",
                        keyframe=IMAGE_MAPPING), keyframe(tmp_path), key="fal-the-wrong-one-0000")
    assert e.kind is FailureKind.AUTH and "`api_key_env`" in e.message
    assert state.auth_failures == 1 and state.submitted() == 0


def test_a_submission_whose_answer_is_lost_may_have_been_queued(fal, tmp_path):
    """The connection drops after fal queued the request: not sent again (the engine says
    it may have been billed), and fal holds exactly one job."""
    state, url = fal
    state.faults.append(("reset",))
    e = failure(adapter(url, tmp_path, upload="data_uri", keyframe=IMAGE_MAPPING),
                keyframe(tmp_path))
    assert e.kind is FailureKind.TRANSIENT and not e.unbilled
    assert state.submits[KONTEXT] == 1


def test_an_unknown_model_says_to_check_model(fal, tmp_path):
    state, url = fal
    e = failure(adapter(url, tmp_path, keyframe={**IMAGE_MAPPING, "model": "fal-ai/nope"}),
                keyframe(tmp_path))
    assert e.kind is FailureKind.INVALID and "check `model` of `keyframe`" in e.message


def test_an_expired_output_url_is_expired_and_html_is_not_an_image(fal, tmp_path):
    state, url = fal
    state.media_ttl = 0
    req = keyframe(tmp_path, (picture(tmp_path, "P", LOCATION, Tags(location="P")),))
    e = failure(adapter(url, tmp_path, keyframe=IMAGE_MAPPING), req)
    assert e.kind is FailureKind.EXPIRED and "expired or is gone" in e.message
    state.media_ttl = 3600
    state.job_faults.append(("corrupt",))
    e = failure(adapter(url, tmp_path, keyframe=IMAGE_MAPPING),
                keyframe(tmp_path / "2", (picture(tmp_path, "P", LOCATION, Tags()),)))
    assert e.kind is FailureKind.FAILED and "not an image or a video" in e.message
    assert list(req.workdir.iterdir()) == []


# -- what the class declares -------------------------------------------------------------------


def test_it_is_the_registered_fal_adapter():
    assert adapter_class("fal") is Fal


def test_capabilities_follow_the_mapping(tmp_path):
    settings = {"keyframe": IMAGE_MAPPING, "clip": CLIP_MAPPING}
    image = Fal.capabilities("keyframe", settings, tmp_path)
    assert image is not None
    assert (image.seed, image.negative, image.references, image.first_frame) == (True, False,
                                                                                 None, False)
    assert image.aspect_ratios == ("21:9", "16:9", "4:3", "1:1", "3:4", "9:16")
    video = Fal.capabilities("clip", settings, tmp_path)
    assert video is not None
    assert (video.seed, video.negative, video.references, video.first_frame,
            video.last_frame) == (False, True, 0, True, True)
    assert video.durations == (5, 10)
    assert Fal.capabilities("sheet", settings, tmp_path) is None  # no table: not made
    shared = {"kinds": ["sheet", "plate"], **IMAGE_MAPPING, "max_references": 2}
    sheet = Fal.capabilities("sheet", shared, tmp_path)
    assert sheet is not None and sheet.references == 2
    listed = {"keyframe": {**IMAGE_MAPPING, "inputs": {"references": ["image_1", "image_2"]}}}
    assert Fal.capabilities("keyframe", listed, tmp_path).references == 2  # type: ignore


def test_keys_follow_the_mapping():
    settings = {"keyframe": IMAGE_MAPPING, "clip": CLIP_MAPPING, "base_url": "http://a"}
    assert Fal.key_fields("keyframe", settings) == {"prompt", "seed", "width", "height", "take"}
    assert Fal.key_fields("clip", settings) == {"prompt", "negative", "duration", "take"}
    keyed = Fal.key_settings("keyframe", settings)
    assert keyed["model"] == KONTEXT and "base_url" not in json.dumps(keyed)
    # Editing the clip's model re-keys the clips only.
    other = {**settings, "clip": {**CLIP_MAPPING, "model": "fal-ai/kling-video/v2/x"}}
    assert Fal.key_settings("keyframe", other) == keyed
    assert Fal.key_settings("clip", other) != Fal.key_settings("clip", settings)


def problems(**settings: Any) -> dict[str, list[tuple[bool, str]]]:
    out: dict[str, list[tuple[bool, str]]] = {}
    for p in Fal.check_settings(settings):
        out.setdefault(p.setting, []).append((p.warning, p.message + " | " + (p.help or "")))
    return out


def test_check_settings_names_each_mistake():
    assert problems(keyframe=IMAGE_MAPPING, clip=CLIP_MAPPING, retries=2, timeout_s=60,
                    upload="storage") == {}
    [(warning, text)] = problems()["kinds"]
    assert not warning and "makes nothing" in text
    [(warning, text)] = problems(clip={"inputs": {"prompt": "prompt"}, "durations": [5],
                                       })["clip"][:1]
    assert not warning and "clip steps need a `model`" in text
    got = problems(clip={**CLIP_MAPPING, "inputs": {"frist_frame": "image_url"}})["clip"]
    assert (False, "`clip.inputs.frist_frame`: `frist_frame` is not one of filmc's values | "
                   "did you mean `first_frame`?") in got
    got = problems(keyframe={**IMAGE_MAPPING, "inputs": {"prompt": "prompt",
                                                         "first_frame": "image_url"}})
    assert any("keyframe steps have no `first_frame`" in t for _w, t in got["keyframe"])
    got = problems(clip={**CLIP_MAPPING, "durations": "5s", "modle": "x",
                         "inputs": {"prompt": 3, "duration": {"name": "d", "as": "text"}}})
    said = " ".join(t for _w, t in got["clip"])
    assert "`clip.durations` must be a list of clip lengths" in said
    assert "`clip.modle` is not a setting of a model | did you mean `model`?" in said
    assert "`clip.inputs.prompt` must be a model input's name" in said
    assert "`as = 'text'` is not a type filmc writes" in said
    got = problems(keyframe={"model": KONTEXT, "inputs": {"prompt": "prompt",
                                                          "aspect_ratio": "ratio"}})
    assert got["keyframe"] == [(True, "the model is given `aspect_ratio` and "
                                      "`keyframe.aspect_ratios` is missing: the film's own "
                                      "ratio may be one it does not take | list the ratios it "
                                      'takes, e.g. `aspect_ratios = ["16:9", "9:16", "1:1"]`')]
    got = problems(clip={"model": KLING, "inputs": {"prompt": "prompt"}})["clip"]
    assert [w for w, _t in got] == [True, True]  # no first frame, no durations
    assert problems(keyframe={**IMAGE_MAPPING, "model": "flux"})["keyframe"][0][1].startswith(
        "`flux` is not a fal model id")
    assert problems(upload="s3", keyframe=IMAGE_MAPPING)["upload"][0][0] is False
    [(warning, text)] = problems(keyframe=IMAGE_MAPPING, seed=1)["seed"]
    assert warning and text.startswith("the `fal` adapter has no setting `seed` | a model's "
                                       "own inputs go under `extra` (sent as written) or "
                                       "`inputs` (filmc's values)")
    assert problems(keyframe=IMAGE_MAPPING, keyframes={"model": KONTEXT})["keyframes"] == [
        (False, "the `fal` adapter has no setting `keyframes` | did you mean `keyframe`?")]
    both = {**IMAGE_MAPPING, "extra": {"seed": 1}}
    assert "`seed` is both in `keyframe.extra` and in `inputs`" in problems(
        keyframe=both)["keyframe"][0][1]


# -- `filmc build` through fal -----------------------------------------------------------------

FILM = harness.film("Pier", harness.walks("1s"),
                    harness.shot("a2", "2s", "close_up low_angle dolly_in", "Ana turns to the sea.",
                                 cast="ANA"),
                    harness.shot("a3", "1s", "extreme_wide birds_eye crane_up",
                                 "A kite rises over the water."),
                    uses=("camera",), settings=("takes 1", 'negative "text, watermark"'),
                    ana=harness.REF_ANA)
SHOTS = ("a1", "a2", "a3")
FAST = harness.fast(3)
TOKEN = "r8_canary_5b1e9d7c3a2f4e6d8c0b"  # the Replicate token the tests use
KEYS = {"FAL_KEY": KEY, "REPLICATE_API_TOKEN": TOKEN}
filmc = functools.partial(harness.filmc, keys=KEYS)


@attrs.frozen
class Services:
    fal: FalState
    replicate: ReplicateState
    fal_url: str
    replicate_url: str  # the API's base URL, …/v1


@pytest.fixture
def services() -> Iterator[Services]:
    fal, replicate = FalState(key=KEY), ReplicateState(key=TOKEN)
    with serve(fal_app(fal)) as fal_url, serve(replicate_app(replicate)) as replicate_url:
        yield Services(fal, replicate, fal_url, f"{replicate_url}/v1")


def fal_table(s: Services, **more: Any) -> dict[str, Any]:
    return {"type": "fal", "api_key_env": "FAL_KEY", "base_url": s.fal_url,
            "storage_url": s.fal_url, "concurrency": 4, **FAST, **more}


def replicate_table(s: Services, **more: Any) -> dict[str, Any]:
    return {"type": "replicate", "api_key_env": "REPLICATE_API_TOKEN",
            "base_url": s.replicate_url, "concurrency": 4, **FAST, **more}


def make_project(folder: Path, config: str) -> Path:
    return harness.project(folder, "pier", FILM, config,
                           refs={"ana.png": harness.png((64, 96), (200, 30, 40))})


def kill_mid_poll(project: Path, args: tuple[str, ...], jobs: Any, count: int) -> None:
    """`filmc build ARGS` killed with `kill -9` once `count` jobs are at the service
    (`jobs()`) and journaled."""
    with harness.killed(project, *args, keys=KEYS) as build:
        build.wait_for(lambda: jobs() == count and accepted(project) == count,
                       f"{count} jobs submitted and journaled")


def test_kill_9_mid_poll_then_the_next_build_reattaches_and_pays_nothing_twice(
        services, tmp_path):
    """Three keyframes wait in fal's queue when the build is killed with `kill -9`; the
    next build polls the journaled requests (attached), submits none again, and stores
    the images fal made."""
    s = services
    config = harness.toml({"steps": {"keyframe": "fal"}, "backends.fal": fal_table(
        s, kinds=["keyframe"], **IMAGE_MAPPING, prices={"keyframe": 0.04})})
    project = make_project(tmp_path / "pier", config)
    s.fal.latency = 30.0
    kill_mid_poll(project, ("--until", "keyframe", "pier.film"), s.fal.submitted, 3)
    assert s.fal.submits[KONTEXT] == 3
    s.fal.latency = 0.0
    filmc(project, "build", "--until", "keyframe", "pier.film")
    steps = harness.report(project, "pier")
    made = {f"keyframe.one.{shot}.fal-1" for shot in SHOTS}
    assert all(steps[sid]["status"] == "ran" and steps[sid]["attached"] for sid in made)
    assert {steps[sid]["outputs"][0] for sid in made} <= set(s.fal.made)
    assert s.fal.submits[KONTEXT] == 3 and accepted(project) == 0
    assert all(j.input["aspect_ratio"] == "21:9" for j in s.fal.jobs.values())


def test_the_example_is_made_with_keyframes_on_fal_and_clips_on_replicate(services, tmp_path):
    """examples/wolfpack, its filmc.toml routing keyframes to an image model on fal and
    clips to a video model on Replicate, each through its mapping: `plan` says what each
    cannot honour; the build's keyframes are fal's images and its clips Replicate's
    videos, made from those keyframes; nothing is paid twice, and the keys are nowhere."""
    s = services
    project = copy_example(tmp_path / "wolfpack")
    text = (project / "filmc.toml").read_text(encoding="utf-8")
    text = text.replace('keyframe = "openai"\nspeech = "openai"\n',
                        'keyframe = "fal_images"\nclip = "replicate_video"\n')
    text += "\n" + harness.toml({
        "backends.fal_images": fal_table(s, kinds=["keyframe"], **IMAGE_MAPPING,
                                         max_references=4, prices={"keyframe": 0.08}),
        "backends.replicate_video": replicate_table(s, prices={"clip": {"per_second": 0.09}}),
        "backends.replicate_video.clip": {
            "model": "kwaivgi/kling-v2.1", "durations": [5, 10], "extra": {"mode": "pro"},
            "inputs": {"prompt": "prompt", "first_frame": "start_image",
                       "last_frame": "end_image", "negative": "negative_prompt",
                       "duration": "duration"}}})
    (project / "filmc.toml").write_text(text, encoding="utf-8")
    args = ("--use-first", "--until", "clip", "--select", "shot:den_entrance shot:batu_warns",
            "film.film")

    said = filmc(project, "plan", *args, code=2)
    plan = said.stdout + said.stderr
    assert "backend `fal_images` (fal) cannot honour a negative prompt for `keyframe`" in plan
    assert "backend `fal_images` (fal) cannot honour 5 reference images (it takes 4)" in plan
    assert ("backend `replicate_video` (replicate) cannot honour a length of 4 s for `clip` "
            "steps") in plan and "generated at 5 s and cut to 4 s" in plan
    built = filmc(project, "build", *args, timeout=300)

    steps = harness.report(project, "wolfpack")
    ran = Counter((v["kind"], v["backend"]) for v in steps.values() if v["status"] == "ran")
    assert ran[("keyframe", "fal_images")] == 4 and ran[("clip", "replicate_video")] == 2
    assert s.fal.submits == {KONTEXT: 4} and s.replicate.creates == {"kwaivgi/kling-v2.1": 2}
    for v in steps.values():
        if v["backend"] == "fal_images":
            assert v["outputs"][0] in s.fal.made
        if v["backend"] == "replicate_video":
            assert v["outputs"][0] in s.replicate.made
    assert all(len(j.input["image_urls"]) <= 4 for j in s.fal.jobs.values())
    starts = set()
    for p in s.replicate.predictions.values():
        assert p.input["duration"] == 5 and p.input["mode"] == "pro"
        starts.add(hashlib.sha256(base64.b64decode(p.input["start_image"].split(",")[1]))
                   .hexdigest())
    assert starts <= set(s.fal.made)  # each clip starts from fal's keyframe
    for sid in ("clip.cub.den_entrance.take1", "clip.cub.batu_warns.take1"):
        assert steps[sid]["status"] == "ran"
    again = filmc(project, "build", *args)
    assert "up to date" in again.stderr
    assert s.fal.submitted() == 4 and s.replicate.created() == 2
    harness.no_key_in(project, KEYS.values(), [said, built, again])
