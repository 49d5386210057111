"""The `replicate` adapter against a loopback Replicate (tests/loopback/replicate.py): real
HTTP, real PNG and MP4 bodies, official models and a community model by version.

The adapter is driven as the engine drives it (submit → poll → fetch), then through
`filmc build`: a build killed with `kill -9` while its predictions run, and the example
film with its keyframes made by an image model on Replicate and its clips by a video
model on fal.  Each test asserts what the model was given, what landed, what the user
is told, and Replicate's own count of predictions: nothing is paid for twice.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
from collections import Counter
from collections.abc import Iterator
from fractions import Fraction
from pathlib import Path
from typing import Any

import pytest
from adapter_harness import Uploads, raised, report, toml
from conftest import copy_example
from loopback import serve
from loopback.replicate import VERSION, ReplicateState, make_app
from PIL import Image
from test_fal import (
    FAST,
    KLING,
    SHOTS,
    TOKEN,
    Services,
    cancelled,
    cast_and_place,
    clip,
    fal_table,
    filmc,
    keyframe,
    kill_mid_poll,
    make_project,
    picture,
    reattached,
    replicate_table,
    run,
    services,
)
from test_services_faults import accepted

from filmc.backends.ffmpeg import probe
from filmc.backends.protocol import Done, FailureKind, Handle, ServiceError, Setup
from filmc.backends.registry import adapter_class
from filmc.backends.replicate import Replicate
from filmc.lang.steps import FIRST_FRAME, LAST_FRAME, LOCATION, Tags

__all__ = ["services"]  # the fixture, shared with test_fal.py
KONTEXT = "black-forest-labs/flux-kontext-pro"
KLING_R = "kwaivgi/kling-v2.1"
IMAGE_MAPPING = {"model": KONTEXT, "inputs": {"prompt": "prompt", "references": ["input_image"],
                                              "seed": "seed", "aspect_ratio": "aspect_ratio"},
                 "aspect_ratios": ["1:1", "16:9", "9:16", "4:3", "3:4", "21:9"],
                 "extra": {"output_format": "png"}}
CLIP_MAPPING = {"model": KLING_R, "durations": [5, 10], "inputs": {
    "prompt": "prompt", "first_frame": "start_image", "last_frame": "end_image",
    "negative": "negative_prompt", "duration": "duration"}}
WAN = {"model": f"someone/wan-i2v:{VERSION}", "inputs": {
    "prompt": "prompt", "first_frame": "image", "frames": "num_frames", "seed": "seed",
    "fps": {"name": "fps", "as": "integer"}}}


@pytest.fixture
def api() -> Iterator[tuple[ReplicateState, str]]:
    state = ReplicateState(key=TOKEN)
    with serve(make_app(state)) as url:
        yield state, f"{url}/v1"


def adapter(url: str, root: Path, uploads: Uploads | None = None, key: str = TOKEN,
            **settings: Any) -> Replicate:
    return Replicate(Setup(name="replicate", settings={"base_url": url, **settings}, root=root,
                           secret=lambda name: key if name == "api_key" else "",
                           uploads=uploads or Uploads()))


def failure(a: Replicate, req: Any, key: str = TOKEN) -> ServiceError:
    return raised(lambda: run(a, req), key)


def decoded(uri: str) -> str:
    head, _, data = uri.partition(",")
    assert head == "data:image/png;base64"
    return hashlib.sha256(base64.b64decode(data)).hexdigest()


# -- the happy paths -------------------------------------------------------------------------


def test_an_image_model_with_one_reference_input_gets_the_first_reference(api, tmp_path):
    """FLUX Kontext takes one `input_image`: the mapping lists one name, so it gets the
    first reference (the first character), inline; the prediction runs `starting` →
    `processing` → `succeeded`, and its output URL (a string) is downloaded."""
    state, url = api
    state.latency, state.queue_s = 0.25, 0.1
    location, chen, mei = cast_and_place(tmp_path)
    req = keyframe(tmp_path, (location, chen, mei))
    done, files, seen = run(adapter(url, tmp_path, keyframe=IMAGE_MAPPING), req)

    [p] = state.predictions.values()
    assert state.creates == {KONTEXT: 1} and p.version == "official"
    assert set(p.input) == {"prompt", "input_image", "seed", "aspect_ratio", "output_format"}
    assert decoded(p.input["input_image"]) == chen.digest
    assert (p.input["aspect_ratio"], p.input["seed"]) == ("21:9", int("ab" * 4, 16))
    assert {x.status for x in seen} == {"starting", "processing"}
    assert state.headers == [{}]  # no Prefer, no Cancel-After unless asked
    with Image.open(files["image"]) as img:
        assert (img.format, img.size) == ("PNG", (256, 110))
    assert hashlib.sha256(files["image"].read_bytes()).hexdigest() in state.made
    assert done.note.startswith(f"Replicate `{KONTEXT}`")


def test_a_clip_sends_its_frames_through_the_files_api_once(api, tmp_path):
    """With `upload = "files"` the frames go to Replicate's files API and the prediction
    gets their URLs; a second clip from the same frames uploads nothing.  Kling takes its
    length as a whole number: a 4 s shot asks for 5."""
    state, url = api
    first = picture(tmp_path, "kf", FIRST_FRAME, Tags(), size=(96, 40))
    last = picture(tmp_path, "next", LAST_FRAME, Tags(), size=(96, 40))
    uploads = Uploads()
    _, files, _ = run(adapter(url, tmp_path, uploads, upload="files", clip=CLIP_MAPPING),
                      clip(tmp_path, (first, last)))
    run(adapter(url, tmp_path, uploads, upload="files", clip=CLIP_MAPPING),
        clip(tmp_path / "again", (first, last), prompt="Again."))

    one, two = state.predictions.values()
    assert state.uploads == 2 and state.creates == {KLING_R: 2}
    stored = {hashlib.sha256(body).hexdigest(): f"{url}/files/{fid}"
              for fid, (body, _t) in state.stored.items()}
    assert one.input == {"prompt": "The grey leader flows through the tall grass.",
                         "start_image": stored[first.digest], "end_image": stored[last.digest],
                         "negative_prompt": "text, watermark", "duration": 5}
    assert two.input["start_image"] == one.input["start_image"]
    info = probe(files["video"])
    assert abs(info["duration"] - 5) < 0.1 and (info["width"], info["height"]) == (256, 106)


def test_a_community_model_runs_by_its_version(api, tmp_path):
    """`model = "owner/name:VERSION"` creates the prediction at `/predictions` with the
    version; a model that takes frames and a frame rate gets the shot's, exactly."""
    state, url = api
    first = picture(tmp_path, "kf", FIRST_FRAME, Tags())
    run(adapter(url, tmp_path, clip=WAN), clip(tmp_path, (first,), seed=7))
    [p] = state.predictions.values()
    assert (p.model, p.version) == ("someone/wan-i2v", VERSION)
    assert (p.input["num_frames"], p.input["fps"], p.input["seed"]) == (96, 24, 7)
    assert state.requests["create"] == 1


def test_wait_s_can_answer_at_once_and_cancel_after_is_sent(api, tmp_path):
    state, url = api
    a = adapter(url, tmp_path, wait_s=5, cancel_after="30m", keyframe=IMAGE_MAPPING)
    req = keyframe(tmp_path, (picture(tmp_path, "P", LOCATION, Tags(location="P")),))

    async def go() -> Any:
        got = await a.submit(req, None)
        files = await a.fetch(got, req) if isinstance(got, Done) else None
        await a.close()
        return got, files

    got, files = asyncio.run(go())
    assert isinstance(got, Done) and files["image"].is_file()
    assert state.headers == [{"Prefer": "wait=5", "Cancel-After": "30m"}]
    assert state.requests["get"] == 0


def test_a_new_adapter_reattaches_to_a_journaled_prediction(api, tmp_path):
    state, url = api
    state.latency = 0.3
    req = clip(tmp_path, (picture(tmp_path, "kf", FIRST_FRAME, Tags()),))
    assert reattached(lambda: adapter(url, tmp_path, clip=CLIP_MAPPING), req).is_file()
    assert state.created() == 1


def test_a_prediction_can_be_cancelled(api, tmp_path):
    state, url = api
    state.latency = 5
    e = cancelled(adapter(url, tmp_path, keyframe=IMAGE_MAPPING), keyframe(tmp_path))
    assert state.requests["cancel"] == 1 and e.kind is FailureKind.FAILED
    assert "canceled at Replicate" in e.message


# -- predictions that end without a result ---------------------------------------------------


@pytest.mark.parametrize("outcome,kind,said", [
    (("cancel",), FailureKind.FAILED,
     "the prediction was canceled at Replicate (on its website or API, or its `cancel_after` "
     "deadline passed while it ran); it is charged for the time it ran; the next build sends "
     "it again"),
    (("abort",), FailureKind.FAILED,
     "Replicate aborted the prediction before it started (its `cancel_after` deadline passed "
     "in the queue); nothing was charged; the next build sends it again"),
    (("fail", "NSFW content detected. Try running it again, or try a different prompt."),
     FailureKind.POLICY, "the model refused it: NSFW content detected. Try running it again, "
                         "or try a different prompt.; reword the shot's prompt"),
    (("fail", "CUDA out of memory. Tried to allocate 2.00 GiB"), FailureKind.FAILED,
     "the model failed: CUDA out of memory. Tried to allocate 2.00 GiB"),
])
def test_a_prediction_that_ends_without_output_says_why(api, tmp_path, outcome, kind, said):
    state, url = api
    state.latency = state.queue_s = 0.05
    state.outcomes.append(outcome)
    e = failure(adapter(url, tmp_path, keyframe=IMAGE_MAPPING), keyframe(tmp_path))
    assert e.kind is kind and not e.retryable and said in e.message
    assert e.message.startswith("cannot make prediction ")
    assert state.created() == 1  # never sent again by the adapter


@pytest.mark.parametrize("fault,kind,unbilled,said", [
    (("throttle", 2), FailureKind.RATE_LIMITED, True,
     "Replicate is throttling requests (Request was throttled. Expected available in 2 "
     "second.)"),
    (("status", 402, None, {"title": "Insufficient credit", "status": 402, "detail":
                            "You have insufficient credit to run this model."}),
     FailureKind.CREDIT, False, "You have insufficient credit to run this model.; add credit "
                                "at replicate.com/account/billing"),
    (("status", 500, None, None), FailureKind.TRANSIENT, True, "answered 500"),
    (("status", 504, None, None), FailureKind.TRANSIENT, False, "answered 504"),
])
def test_a_refused_create_is_sorted(api, tmp_path, fault, kind, unbilled, said):
    state, url = api
    state.faults.append(fault)
    e = failure(adapter(url, tmp_path, keyframe=IMAGE_MAPPING), keyframe(tmp_path))
    assert (e.kind, e.unbilled) == (kind, unbilled) and said in e.message
    assert state.created() == 0
    if kind is FailureKind.RATE_LIMITED:
        assert e.retry_after == 2


def test_an_input_the_model_refuses_is_its_422_and_a_wrong_token_is_auth(api, tmp_path):
    state, url = api
    mapping = {**CLIP_MAPPING, "durations": None}
    req = clip(tmp_path, (picture(tmp_path, "kf", FIRST_FRAME, Tags()),))
    e = failure(adapter(url, tmp_path, clip={k: v for k, v in mapping.items() if v}), req)
    assert e.kind is FailureKind.INVALID and e.status == 422
    assert "- input.duration: duration must be one of the following: 5, 10" in e.message
    e = failure(adapter(url, tmp_path, key="r8_wrong_000000", clip=CLIP_MAPPING), req,
                key="r8_wrong_000000")
    assert e.kind is FailureKind.AUTH and "`api_key_env`" in e.message
    e = failure(adapter(url, tmp_path, clip={**CLIP_MAPPING, "model": "nobody/nothing"}), req)
    assert e.kind is FailureKind.INVALID and "check `model` of `clip`" in e.message
    assert state.created() == 0 and state.auth_failures == 1


def test_a_create_whose_answer_is_lost_may_have_made_a_prediction(api, tmp_path):
    state, url = api
    state.faults.append(("reset",))
    e = failure(adapter(url, tmp_path, keyframe=IMAGE_MAPPING), keyframe(tmp_path))
    assert e.kind is FailureKind.TRANSIENT and not e.unbilled and state.created() == 1


def test_outputs_past_the_hour_are_expired(api, tmp_path):
    """Replicate deletes outputs an hour after the prediction: a URL gone, or a prediction
    whose `data_removed` is set, is EXPIRED (the next build makes the step again)."""
    state, url = api
    state.output_ttl = 0
    e = failure(adapter(url, tmp_path, keyframe=IMAGE_MAPPING), keyframe(tmp_path))
    assert e.kind is FailureKind.EXPIRED and "deleted its output" in e.message
    state.output_ttl = 3600
    a = adapter(url, tmp_path, keyframe=IMAGE_MAPPING)
    req = keyframe(tmp_path / "2")

    async def go() -> ServiceError:
        got = await a.submit(req, None)
        while isinstance(got, Handle):
            got = await a.poll(got)
        state.outputs.clear()  # the delivery URL is gone
        with pytest.raises(ServiceError) as info:
            await a.fetch(got, req)
        await a.close()
        return info.value

    e = asyncio.run(go())
    assert e.kind is FailureKind.EXPIRED and "(Replicate keeps results an hour)" in e.message


# -- what the class declares -------------------------------------------------------------------


def test_it_is_the_registered_replicate_adapter():
    assert adapter_class("replicate") is Replicate


def test_capabilities_and_keys_follow_the_mapping(tmp_path):
    settings = {"keyframe": IMAGE_MAPPING, "clip": CLIP_MAPPING, "wait_s": 10}
    image = Replicate.capabilities("keyframe", settings, tmp_path)
    assert image is not None and (image.seed, image.negative, image.references) == (True, False,
                                                                                    1)
    video = Replicate.capabilities("clip", settings, tmp_path)
    assert video is not None and (video.seed, video.negative, video.last_frame) == (False, True,
                                                                                    True)
    assert video.durations == (Fraction(5), Fraction(10))
    assert Replicate.key_fields("clip", settings) == {"prompt", "negative", "duration", "take"}
    assert Replicate.key_fields("clip", {"clip": WAN}) == {"prompt", "seed", "fps", "duration",
                                                           "take"}
    keyed = Replicate.key_settings("clip", settings)
    assert keyed["model"] == KLING_R and "wait_s" not in keyed
    assert Replicate.key_settings("clip", {**settings, "upload": "files", "wait_s": 3}) == keyed


def test_check_settings():
    def problems(**settings: Any) -> dict[str, str]:
        return {p.setting: p.message for p in Replicate.check_settings(settings)}

    assert problems(keyframe=IMAGE_MAPPING, clip=CLIP_MAPPING, wait_s=30, cancel_after="90s",
                    upload="auto", **FAST) == {}
    assert "`wait_s` must be a whole number of seconds from 1 to 60" in problems(
        keyframe=IMAGE_MAPPING, wait_s=90)["wait_s"]
    assert "`cancel_after` must be a duration" in problems(keyframe=IMAGE_MAPPING,
                                                           cancel_after="soon")["cancel_after"]
    assert problems(keyframe={**IMAGE_MAPPING, "model": "flux"})["keyframe"] == \
        "`flux` is not a Replicate model id"
    assert "is not a Replicate model id" in problems(clip={**CLIP_MAPPING,
                                                           "model": "a/b:latest"})["clip"]


# -- `filmc build` through Replicate -----------------------------------------------------------


def test_kill_9_mid_poll_then_the_next_build_reattaches_and_pays_nothing_twice(
        services: Services, tmp_path):
    """Three clips run at Replicate when the build is killed with `kill -9` (keyframes are
    local); the next build polls the journaled predictions, creates none again, and
    stores Replicate's videos."""
    s = services
    config = toml({"steps": {"clip": "replicate"},
                   "backends.replicate": replicate_table(s, prices={"clip": 0.3}),
                   "backends.replicate.clip": CLIP_MAPPING})
    project = make_project(tmp_path / "pier", config)
    s.replicate.latency = 30.0
    args = ("--use-first", "--until", "clip", "pier.film")
    kill_mid_poll(project, args, s.replicate.created, 3)
    s.replicate.latency = 0.0
    filmc(project, "build", *args)
    steps = report(project, "pier")
    made = {f"clip.one.{shot}.take1" for shot in SHOTS}
    assert all(steps[sid]["status"] == "ran" and steps[sid]["attached"] for sid in made)
    assert {steps[sid]["outputs"][0] for sid in made} <= set(s.replicate.made)
    assert s.replicate.creates == {KLING_R: 3} and accepted(project) == 0


def test_the_example_is_made_with_keyframes_on_replicate_and_clips_on_fal(services, tmp_path):
    """examples/wolfpack the other way round: keyframes from an image model on Replicate
    that takes up to three references in a list, clips from Kling on fal; each made once,
    the clips from Replicate's keyframes."""
    s = services
    project = copy_example(tmp_path / "wolfpack")
    text = (project / "filmc.toml").read_text(encoding="utf-8")
    text = text.replace('keyframe = "openai"\nspeech = "openai"\n',
                        'keyframe = "replicate_images"\nclip = "fal_video"\n')
    text += "\n" + toml({
        "backends.replicate_images": replicate_table(s, prices={"keyframe": 0.04}),
        "backends.replicate_images.keyframe": {
            "model": "google/nano-banana", "max_references": 3, "describe_references": True,
            "inputs": {"prompt": "prompt", "references": "image_input",
                       "aspect_ratio": "aspect_ratio"},
            "aspect_ratios": ["1:1", "16:9", "9:16", "4:3", "3:4", "21:9"]},
        "backends.fal_video": fal_table(s, upload="data_uri", prices={"clip": 0.45}),
        "backends.fal_video.clip": {
            "model": KLING, "durations": [5, 10],
            "inputs": {"prompt": "prompt", "first_frame": "image_url",
                       "negative": "negative_prompt",
                       "duration": {"name": "duration", "as": "string"}}}})
    (project / "filmc.toml").write_text(text, encoding="utf-8")
    args = ("--use-first", "--until", "clip", "--select", "shot:gama_holds_cub",
            "film.film")
    filmc(project, "build", *args, timeout=300)

    steps = report(project, "wolfpack")
    ran = Counter((v["kind"], v["backend"]) for v in steps.values() if v["status"] == "ran")
    assert ran[("keyframe", "replicate_images")] == 2 and ran[("clip", "fal_video")] == 1
    assert s.replicate.creates == {"google/nano-banana": 2} and s.fal.submits == {KLING: 1}
    for p in s.replicate.predictions.values():
        assert p.input["prompt"].startswith("Image 1 shows GAMA. Image 2 shows GAMA (herding_robe "
                                           "outfit). Image 3 shows the location STEPPE (NIGHT).")
        assert 1 <= len(p.input["image_input"]) <= 3
    [job] = s.fal.jobs.values()
    assert decoded(job.input["image_url"]) in s.replicate.made
    assert job.input["duration"] == "5"
    clip_out = steps["clip.cub.gama_holds_cub.take1"]["outputs"][0]
    assert clip_out in s.fal.made
