"""The `kling` adapter against a loopback Kling API (tests/loopback/kling.py), and `filmc
build` through it.

Real HTTP, real PNG and MP4 bodies, real JWTs checked by the server with the
secret key.  The first part drives the adapter as the engine does (prepare →
submit → poll → fetch) and asserts what was sent, what landed, and for each of
Kling's refusals the kind the engine acts on, whether it may be sent again, the
user's message, and how many tasks the server made (what was paid).  The
second part runs the command line in a subprocess against the server in this
process: concurrency and credit refusals and a lost answer mid-build, `kill -9`
while clips run, and the example film with its clips made at Kling.  Both keys
are canaries that must appear in no message and no file, nor may a token.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import subprocess
import time
from collections.abc import Iterator, Mapping
from fractions import Fraction
from pathlib import Path
from typing import Any

import adapter_harness as harness
import jwt
import pytest
from adapter_harness import closing as run
from conftest import copy_example
from loopback import serve
from loopback.kling import KlingState, make_app
from PIL import Image
from test_services_faults import accepted

from filmc.backends.ffmpeg import probe
from filmc.backends.kling import Kling
from filmc.backends.kling.api import Tokens
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
from filmc.engine.journal import read_open
from filmc.lang.steps import (
    CHARACTER,
    FIRST_FRAME,
    LAST_FRAME,
    LOCATION,
    StepId,
    Tags,
)

ACCESS = "ak-canary-7c1e42d9b05a"  # both must never appear in a message or a file
SECRET = "sk-canary-3f9a61e8d2b4c7a5e0f1d2c3b4"
KEYS = {"access_key": ACCESS, "secret_key": SECRET}


@pytest.fixture
def state() -> KlingState:
    return KlingState(access_key=ACCESS, secret_key=SECRET, latency=0.02)


@pytest.fixture
def api(state: KlingState) -> Iterator[str]:
    with serve(make_app(state)) as url:
        yield url


def adapter(base_url: str, root: Path, keys: Mapping[str, str] = KEYS,
            **settings: Any) -> Kling:
    settings = {"base_url": base_url, "model": "kling-v2-1", **settings}
    return Kling(Setup(name="kling", settings=settings, root=root, secret=lambda n: keys[n],
                       uploads=harness.Uploads()))


def picture(tmp: Path, name: str, role: str, size: tuple[int, int] = (720, 300),
            tags: Tags | None = None, fmt: str = "PNG") -> Input:
    tmp.mkdir(parents=True, exist_ok=True)
    path = tmp / f"{name}.{fmt.lower()}"
    Image.new("RGB", size, tuple(hashlib.sha256(name.encode()).digest()[:3])).save(path, fmt)
    return harness.image(path, role, f"step.{name}", tags)


def request(tmp: Path, step: StepId, inputs: tuple[Input, ...], **fields: Any) -> Request:
    return harness.request(step, "kling", tmp / "work" / str(step), inputs,
                           key=sha256(str(step).encode()), **fields)


def clip(tmp: Path, *inputs: Input, **fields: Any) -> Request:
    first = inputs or (picture(tmp, "keyframe", FIRST_FRAME),)
    fields = {"prompt": "Chen raises his binoculars; the camera pushes in slowly.",
              "negative": "text, watermark", "width": 1920, "height": 804, "fps": Fraction(24),
              "duration": Fraction(3), "take": 1, **fields}
    return request(tmp, StepId.clip("hunt", "chen_watches", "take1"), first, **fields)


def keyframe(tmp: Path, *inputs: Input, **fields: Any) -> Request:
    fields = {"prompt": "Wolves circle a herd of gazelles at dusk.", "negative": "cars",
              "width": 1920, "height": 804, "take": 1, **fields}
    return request(tmp, StepId.keyframe("hunt", "circling", "kling-1"), inputs, **fields)


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


async def make(a: Kling, req: Request) -> tuple[Done, Mapping[str, Any]]:
    """One step, as the engine drives it."""
    done, files, _ = await harness.drive(a, req, pause=0.01)
    return done, files


def made(a: Kling, req: Request) -> tuple[Done, Mapping[str, Any]]:
    return run(a, make(a, req))


def submitted(a: Kling, *reqs: Request) -> list[Handle | Done]:
    """Each request submitted (Kling accepted it: a task), not waited for."""
    async def go() -> list[Handle | Done]:
        return [await a.submit(r, a.prepare(r)) for r in reqs]

    return run(a, go())


def failure(a: Kling, coro: Any) -> ServiceError:
    return harness.raised(lambda: run(a, coro), ACCESS, SECRET)


# -- clips -------------------------------------------------------------------------------


def test_a_clip_is_image_to_video_from_its_keyframe(state, api, tmp_path):
    """The keyframe goes as raw base64 (no `data:` prefix), the shot's 3 s as the string
    "5", the model from filmc.toml, our external task id; the MP4 Kling made lands."""
    req = clip(tmp_path)
    a = adapter(api, tmp_path, mode="std", cfg_scale=0.4, model="kling-v1-6")
    done, files = made(a, req)

    [sent] = state.bodies
    first = req.of(FIRST_FRAME)[0]
    assert sent == {"route": "videos/image2video", "model_name": "kling-v1-6",
                    "image": first.digest, "prompt": req.fields.prompt,
                    "negative_prompt": "text, watermark", "duration": "5", "mode": "std",
                    "cfg_scale": 0.4, "external_task_id": sent["external_task_id"]}
    assert sent["external_task_id"].startswith(req.key[:32] + "-")
    assert state.created == [done.outputs["video"]["task"]]
    assert files == {"video": req.workdir / "video.mp4"}
    assert sha256(files["video"].read_bytes()) in state.made
    info = probe(files["video"])
    assert info["duration"] == pytest.approx(5, abs=0.1)
    assert done.cost is None and done.note == f"Kling task {state.created[0]}, 1 units"


def test_a_clip_ends_on_its_last_frame_in_pro_mode_only(state, api, tmp_path):
    """`last_frame next`: the next keyframe goes as `image_tail` in pro mode; std mode
    makes no first-to-last clips, so it is not sent, and `plan` warned (capabilities)."""
    first = picture(tmp_path, "first", FIRST_FRAME)
    last = picture(tmp_path, "last", LAST_FRAME, (720, 300))
    submitted(adapter(api, tmp_path, mode="pro"), clip(tmp_path / "p", first, last))
    submitted(adapter(api, tmp_path), clip(tmp_path / "s", first, last))
    pro, std = state.bodies
    assert (pro["image"], pro["image_tail"], pro["mode"]) == (first.digest, last.digest, "pro")
    assert "image_tail" not in std and "mode" not in std
    caps = {m: Kling.capabilities("clip", {"mode": m}, tmp_path) for m in ("pro", "std")}
    assert caps["pro"].last_frame and not caps["std"].last_frame  # type: ignore[union-attr]


def test_the_clip_length_covers_the_shot(state, api, tmp_path):
    """The shortest of Kling's 5 and 10 s that covers the shot, else 10 s."""
    lengths = (1, 5, Fraction(31, 6), 7, 12)
    submitted(adapter(api, tmp_path), *(clip(tmp_path / str(i), duration=Fraction(seconds))
                                        for i, seconds in enumerate(lengths)))
    assert [b["duration"] for b in state.bodies] == ["5", "5", "10", "10", "10"]


def test_a_clip_with_character_references_is_multi_image(state, api, tmp_path):
    """Character sheets on a clip: multi-image2video, the keyframe then the sheets (at most
    four images), the film's shape as its aspect ratio, its own model."""
    first = picture(tmp_path, "first", FIRST_FRAME)
    chen = picture(tmp_path, "CHEN", CHARACTER, (400, 600), Tags(character="CHEN"))
    mei = picture(tmp_path, "MEI", CHARACTER, (400, 600), Tags(character="MEI"))
    _, files = made(adapter(api, tmp_path), clip(tmp_path, first, chen, mei))
    [sent] = state.bodies
    assert sent["route"] == "videos/multi-image2video"
    assert sent["image_list"] == [first.digest, chen.digest, mei.digest]
    assert (sent["model_name"], sent["aspect_ratio"]) == ("kling-v1-6", "16:9")
    assert "cfg_scale" not in sent and files["video"].exists()


def test_small_and_webp_frames_are_made_acceptable(state, api, tmp_path):
    """Kling takes PNG or JPEG of at least 300 px a side: a 192x80 keyframe goes scaled up
    to 720x300, a WebP one as PNG (the server refuses anything else)."""
    small = picture(tmp_path, "small", FIRST_FRAME, (192, 80))
    webp = picture(tmp_path, "webp", FIRST_FRAME, (640, 400), fmt="WEBP")
    submitted(adapter(api, tmp_path), clip(tmp_path / "1", small), clip(tmp_path / "2", webp))
    assert len(state.created) == 2
    assert all(b["image"] not in (small.digest, webp.digest) for b in state.bodies)


def test_a_frame_kling_cannot_take_is_refused_before_sending(state, api, tmp_path):
    wide = picture(tmp_path, "wide", FIRST_FRAME, (900, 300))
    a = adapter(api, tmp_path)
    e = failure(a, make(a, clip(tmp_path, wide)))
    assert e.kind is FailureKind.INVALID and "from 1:2.5 to 2.5:1" in e.message
    assert not state.posts


# -- images ------------------------------------------------------------------------------


def test_a_keyframe_without_references_is_an_image_generation(state, api, tmp_path):
    done, files = made(adapter(api, tmp_path, resolution="2k"), keyframe(tmp_path))
    [sent] = state.bodies
    assert sent == {"route": "images/generations", "model_name": "kling-v2-1",
                    "prompt": "Wolves circle a herd of gazelles at dusk.",
                    "negative_prompt": "cars", "n": 1, "aspect_ratio": "21:9",
                    "resolution": "2k", "external_task_id": sent["external_task_id"]}
    with Image.open(files["image"]) as img:
        assert img.format == "PNG" and img.size == (3584, 1536)


def test_a_keyframe_with_references_has_subjects_and_a_scene(state, api, tmp_path):
    """The cast's sheets are the subjects, the location plate the scene; that route takes no
    negative prompt (`plan` says so)."""
    chen = picture(tmp_path, "CHEN", CHARACTER, (400, 600), Tags(character="CHEN"))
    plate = picture(tmp_path, "STEPPE", LOCATION, (800, 450), Tags(location="STEPPE"))
    made(adapter(api, tmp_path, image_model="kling-v2"), keyframe(tmp_path, plate, chen))
    [sent] = state.bodies
    assert sent["route"] == "images/multi-image2image" and sent["model_name"] == "kling-v2"
    assert (sent["subject_image_list"], sent["scene_image"]) == ([chen.digest], plate.digest)
    assert "negative_prompt" not in sent


# -- the token -----------------------------------------------------------------------------


def test_the_token_is_kling_s_jwt_reused_then_made_anew(state, api, tmp_path):
    """HS256 with the secret key; iss = the access key, exp = now + 1800, nbf = now − 5; one
    token for every request while it is fresh, a new one before it expires."""
    made(adapter(api, tmp_path), clip(tmp_path))  # a submit, polls, no token to download
    assert len(state.tokens) == 1 and len(state.claims) >= 2
    [token] = state.tokens
    assert jwt.get_unverified_header(token)["alg"] == "HS256"
    claims = jwt.decode(token, SECRET, algorithms=["HS256"],
                        options={"verify_exp": False, "verify_nbf": False})
    assert claims["iss"] == ACCESS and claims["exp"] - claims["nbf"] == 1805
    assert abs(claims["exp"] - 1800 - time.time()) < 5

    now = [1_000_000.0]
    tokens = Tokens(lambda n: KEYS[n], clock=lambda: now[0])
    first = tokens.get()
    now[0] += 1400
    assert tokens.get() == first  # 400 s left: still used
    now[0] += 200
    assert tokens.get() != first  # under 5 minutes left: replaced before use


def test_an_expired_token_is_made_anew_and_the_request_sent_again(state, api, tmp_path):
    """401/1004: nothing was made; the engine may send it again, and the next try carries
    a new token and succeeds."""
    state.expire_next = 1
    a = adapter(api, tmp_path)
    req = clip(tmp_path)
    handle = a.prepare(req)

    async def go() -> Handle | Done:
        with pytest.raises(ServiceError) as info:
            await a.submit(req, handle)
        e = info.value
        assert e.kind is FailureKind.TRANSIENT and e.unbilled and e.status == 401
        assert "code 1004" in e.message and "filmc makes a new one" in e.message
        return await a.submit(req, handle)

    assert isinstance(run(a, go()), Handle)
    assert state.auth_failures == [1004] and len(state.created) == 1


def test_requests_in_flight_with_an_expired_token_are_no_news():
    """Requests sent together share a token, and each may be told it expired: that is one
    refusal.  A request sent after it (so with a token made since) refused again means the
    clock is off."""
    tokens = Tokens(lambda n: KEYS[n])
    old = tokens.get()
    sent = time.monotonic()
    assert not tokens.expired(old, sent) and not tokens.expired(old, sent)
    new = tokens.get()
    assert tokens.expired(new, time.monotonic())
    tokens.taken()
    assert not tokens.expired(tokens.get(), time.monotonic())


def test_a_clock_far_behind_is_said_after_one_new_token(state, api, tmp_path):
    state.clock_offset = 4000  # every token looks expired to the server
    a = adapter(api, tmp_path)
    req = clip(tmp_path)
    handle = a.prepare(req)

    async def go() -> ServiceError:
        with pytest.raises(ServiceError) as first:
            await a.submit(req, handle)
        assert first.value.kind is FailureKind.TRANSIENT
        with pytest.raises(ServiceError) as second:
            await a.submit(req, handle)
        return second.value

    e = run(a, go())
    assert e.kind is FailureKind.AUTH and "this machine's clock is behind" in e.message
    assert not state.created


@pytest.mark.parametrize("wrong", ["secret_key", "access_key"])
def test_a_wrong_key_is_refused_and_named(state, api, tmp_path, wrong):
    keys = {**KEYS, wrong: "not-the-right-one-at-all-0123456789"}
    a = adapter(api, tmp_path, keys)
    e = failure(a, make(a, clip(tmp_path)))
    assert e.kind is FailureKind.AUTH and e.status == 401
    assert "`access_key_env` and `secret_key_env`" in e.message
    assert state.auth_failures == [1002 if wrong == "secret_key" else 1000]
    assert not state.created


# -- Kling's refusals ----------------------------------------------------------------------

FAULTS = [
    (429, 1101, "Account arrears", FailureKind.CREDIT, True, "top it up"),
    (429, 1102, "Resource pack exhausted", FailureKind.CREDIT, True, "buy more"),
    (429, 1302, "API request too fast", FailureKind.RATE_LIMITED, True, "filmc waits"),
    (429, 1303, "Parallel task over resource pack limit", FailureKind.RATE_LIMITED, True,
     "set `concurrency` to the pack's limit"),
    (400, 1300, "Trigger the platform policy", FailureKind.POLICY, True, "reword the shot"),
    (400, 1301, "Trigger the content security policy", FailureKind.POLICY, True,
     "change its keyframe"),
    (500, 5000, "Server internal error", FailureKind.TRANSIENT, False, "server error"),
    (503, 5001, "Service temporarily unavailable", FailureKind.TRANSIENT, True, "maintenance"),
    (504, 5002, "Server internal timeout", FailureKind.TRANSIENT, False, "server timeout"),
]


@pytest.mark.parametrize(("status", "code", "said", "kind", "unbilled", "advice"), FAULTS,
                         ids=[str(f[1]) for f in FAULTS])
def test_each_refusal_means_what_kling_says(state, api, tmp_path, status, code, said, kind,
                                            unbilled, advice):
    """What the engine does (stop the backend, retry, fail the shot, ask by our id before
    sending again) and what the user reads; no task was made."""
    state.submit_faults.append(("code", status, code, said, None))
    a = adapter(api, tmp_path)
    e = failure(a, make(a, clip(tmp_path)))
    assert (e.kind, e.unbilled, e.status) == (kind, unbilled, status)
    assert f"Kling answered {status} (code {code}): {said}; " in e.message
    assert advice in e.message and e.message.endswith(")")  # Kling's request id, for support
    assert not state.created and state.posts["videos/image2video"] == 1


def test_a_key_echoed_by_a_server_is_masked(state, api, tmp_path):
    state.submit_faults.append(("code", 400, 1201, f"Invalid parameter: iss {ACCESS}", None))
    a = adapter(api, tmp_path)
    e = failure(a, make(a, clip(tmp_path)))  # which checks that neither key shows
    assert e.kind is FailureKind.INVALID and "Invalid parameter: iss ***" in e.message


def test_concurrency_refusals_wait_as_told_or_five_seconds(state, api, tmp_path):
    state.submit_faults += [("code", 429, 1303, "Parallel task over limit", {"Retry-After": "2"}),
                            ("code", 429, 1303, "Parallel task over limit", None)]
    a = adapter(api, tmp_path)
    assert failure(a, make(a, clip(tmp_path / "1"))).retry_after == 2
    a = adapter(api, tmp_path)
    assert failure(a, make(a, clip(tmp_path / "2"))).retry_after == 5


def test_a_refused_prompt_is_policy(state, api, tmp_path):
    state.refuse.append("binoculars")
    a = adapter(api, tmp_path)
    e = failure(a, make(a, clip(tmp_path)))
    assert e.kind is FailureKind.POLICY and "code 1301" in e.message and not state.created


@pytest.mark.parametrize(("said", "kind"), [("Generation timed out, please retry",
                                             FailureKind.FAILED),
                                            ("Content moderation review failed",
                                             FailureKind.POLICY)])
def test_a_failed_task_says_why(state, api, tmp_path, said, kind):
    state.fail_tasks["binoculars"] = said
    a = adapter(api, tmp_path)
    e = failure(a, make(a, clip(tmp_path)))
    assert e.kind is kind and said in e.message and state.created[0] in e.message


# -- never paying twice ----------------------------------------------------------------------


def test_a_submit_whose_answer_was_lost_is_found_by_our_id(state, api, tmp_path):
    """The connection drops after Kling made the task: the submit may have been billed (not
    `unbilled`), and asking by the prepared handle (our external_task_id) finds the task,
    so the engine waits for it instead of paying again.  An id Kling never got is
    NOT_FOUND: then it is safe to send."""
    state.submit_faults.append(("reset",))
    a = adapter(api, tmp_path)
    req = clip(tmp_path)
    handle, never_sent = a.prepare(req), a.prepare(req)
    assert handle.id != never_sent.id

    async def go() -> tuple[Any, Any]:
        with pytest.raises(ServiceError) as info:
            await a.submit(req, handle)
        assert info.value.kind is FailureKind.TRANSIENT and not info.value.unbilled
        found = await a.poll(handle)
        with pytest.raises(ServiceError) as unknown:
            await a.poll(never_sent)
        return found, unknown.value

    found, unknown = run(a, go())
    assert isinstance(found, Pending | Done) and len(state.created) == 1
    assert unknown.kind is FailureKind.NOT_FOUND


def test_sending_a_task_again_follows_the_one_kling_has(state, api, tmp_path):
    """Kling keeps external_task_id unique: a second submit under the same handle is
    refused, and the adapter follows the task the first one made."""
    a = adapter(api, tmp_path)
    req = clip(tmp_path)
    handle = a.prepare(req)

    async def go() -> tuple[Any, Any]:
        return await a.submit(req, handle), await a.submit(req, handle)

    one, two = run(a, go())
    assert one == two and one.id == state.created[0] and len(state.created) == 1


def test_a_journaled_job_is_polled_by_a_later_build(state, api, tmp_path):
    """The handle is JSON (the journal's): a new adapter polls it and fetches the clip."""
    state.latency = 0.1
    req = clip(tmp_path)
    [handle] = submitted(adapter(api, tmp_path), req)
    again = Handle(**json.loads(json.dumps({"id": handle.id, "data": dict(handle.data)})))
    b = adapter(api, tmp_path, region="china")  # where the job went stays with it

    async def finish() -> Mapping[str, Any]:
        while isinstance(got := await b.poll(again), Pending):
            await asyncio.sleep(0.02)
        return await b.fetch(got, req)

    assert run(b, finish())["video"].exists() and len(state.created) == 1


def test_an_expired_or_broken_download(state, api, tmp_path):
    state.url_ttl = 0
    a = adapter(api, tmp_path)
    req = clip(tmp_path / "1")
    e = failure(a, make(a, req))
    assert e.kind is FailureKind.EXPIRED and e.status == 403 and not list(req.workdir.iterdir())
    state.url_ttl, state.corrupt = 3600, True
    a = adapter(api, tmp_path)
    e = failure(a, make(a, clip(tmp_path / "2")))
    assert e.kind is FailureKind.FAILED and "not an MP4 video" in e.message


# -- what the class declares -------------------------------------------------------------


def test_it_is_the_registered_kling_adapter():
    assert adapter_class("kling") is Kling
    assert Kling.secrets == ("access_key", "secret_key")


def test_capabilities_and_keys(tmp_path):
    c = Kling.capabilities("clip", {"model": "kling-v2-1"}, tmp_path)
    assert c is not None and (c.seed, c.negative, c.references, c.first_frame) == (
        False, True, 3, True)
    assert c.durations == (5, 10) and c.aspect_ratios is None
    k = Kling.capabilities("keyframe", {}, tmp_path)
    assert k is not None and (k.seed, k.negative, k.references) == (False, False, 4)
    assert "21:9" in (k.aspect_ratios or ())
    assert Kling.capabilities("speech", {}, tmp_path) is None
    assert "seed" not in Kling.key_fields("clip", {}) and "duration" in Kling.key_fields("clip",
                                                                                        {})
    settings = {"model": "kling-v2-1", "mode": "pro", "image_model": "kling-v2",
                "region": "china", "base_url": "http://x"}
    assert Kling.key_settings("clip", settings) == {"model": "kling-v2-1", "mode": "pro"}
    assert Kling.key_settings("keyframe", settings) == {"image_model": "kling-v2"}
    assert Kling.key_extra("keyframe", {}) == {"image_model": "kling-v2-1"}


def problems(**settings: Any) -> dict[str, tuple[bool, str]]:
    return {p.setting: (p.warning, p.message + " " + (p.help or ""))
            for p in Kling.check_settings(settings)}


def test_check_settings():
    assert problems(model="kling-v2-1", mode="pro", region="china", resolution="2k") == {}
    assert not problems()["model"][0]  # required: no default video model
    assert not problems(model="kling-v2-1", region="europe")["region"][0]
    assert not problems(model="kling-v2-1", mode="turbo")["mode"][0]
    assert problems(model="kling-v2-1", cfg_scale=0.5)["cfg_scale"][0]  # v2 takes none
    assert not problems(model="kling-v1-6", cfg_scale=3)["cfg_scale"][0]
    warning, text = problems(model="kling-v2-1", imag_model="kling-v2")["imag_model"]
    assert warning and "did you mean `image_model`?" in text


# -- `filmc build` through Kling -------------------------------------------------------------

FILM = harness.film("Kl", harness.walks("1s"),
                    harness.shot("a2", "2s", "medium eye_level static",
                                 "Ana waves at a passing boat.", cast="ANA"),
                    harness.shot("a3", "1s", "extreme_wide birds_eye crane_up",
                                 "The boat sails into the fog."),
                    settings=("takes 1", "candidates 1"), ana=harness.REF_ANA,
                    pier=harness.REF_PIER)
CLIPS = {f"clip.one.a{i}.take1" for i in (1, 2, 3)}
UNTIL_CLIP = ("--until", "clip")
ENVIRONMENT = {"KLING_ACCESS_KEY": ACCESS, "KLING_SECRET_KEY": SECRET}


def kling_table(url: str, **extra: Any) -> dict[str, dict[str, Any]]:
    return {"backends.kling": {"type": "kling", "access_key_env": "KLING_ACCESS_KEY",
                               "secret_key_env": "KLING_SECRET_KEY", "base_url": url,
                               "model": "kling-v2-1", "mode": "pro",
                               **harness.fast(4, timeout_s=20), **extra,
                               "prices": {"clip": 0.35}}}


def kling_project(folder: Path, url: str, **extra: Any) -> Path:
    config = harness.toml({"steps": {"clip": "kling"}, **kling_table(url, **extra)})
    return harness.project(folder, "kl", FILM, config,
                           refs={"ana.png": harness.png((64, 96), (200, 30, 30)),
                                 "pier.png": harness.png((192, 80), (90, 90, 100))})


def build(folder: Path, *args: str, film: str = "kl.film",
          code: int = 0) -> subprocess.CompletedProcess:
    return harness.filmc(folder, "build", "--use-first", *args, film, keys=ENVIRONMENT,
                         code=code)


def no_keys_in(folder: Path, tokens: set[str]) -> None:
    """Neither key, nor any token the server took, is in a file of the project."""
    harness.no_key_in(folder, (ACCESS, SECRET, *tokens))


def test_a_build_rides_out_1303_and_a_lost_answer_and_stops_at_1102(state, api, tmp_path):
    """One clip at a time.  The first is refused for concurrency (1303): waited for and
    sent again; then Kling makes it but the answer is lost (the connection drops): the
    build finds the task by its external_task_id and waits for it, paying nothing again.
    The next clip meets an empty resource pack (1102): it fails saying what to buy, and
    the third is not submitted at all.  Kling made one task."""
    folder = kling_project(tmp_path / "kl", api, concurrency=1)
    state.submit_faults += [("code", 429, 1303, "Parallel task over resource pack limit",
                             {"Retry-After": "0.1"}), ("reset",),
                            ("code", 429, 1102, "Resource pack exhausted", None)]
    r = build(folder, *UNTIL_CLIP, "--keep-going", code=1)
    made = harness.report(folder, "kl")
    ran = {s for s in CLIPS if made[s]["status"] == "ran"}
    errors = {s: made[s]["error"] for s in CLIPS - ran}
    assert len(ran) == 1 and len(state.created) == 1
    assert made[ran.pop()]["outputs"][0] in state.made
    [credit] = [e for e in errors.values() if not e.startswith("not submitted")]
    assert "Kling answered 429 (code 1102): Resource pack exhausted" in credit
    assert "buy more (or turn on pay-as-you-go), then build again" in credit
    [stopped] = [e for e in errors.values() if e is not credit]
    assert stopped.startswith("not submitted: `kling` is out of credit (cannot submit `clip.one")
    assert state.posts["videos/image2video"] == 3  # 1303, sent again (lost answer); 1102
    assert "failed clip.one.a" in r.stderr
    assert not read_open(folder / ".filmc" / "journal.log")
    no_keys_in(folder, state.tokens)


def test_kill_9_while_clips_run_then_the_next_build_attaches(state, api, tmp_path):
    """`kill -9` of a build polling the three clips Kling is making: no process survives;
    the next build polls the journaled tasks (attached), submits none of them again, and
    stores Kling's clips."""
    folder = kling_project(tmp_path / "kl", api)
    state.never_finish = True
    with harness.killed(folder, "--use-first", *UNTIL_CLIP, "kl.film",
                        keys=ENVIRONMENT) as running:
        running.wait_for(lambda: len(state.created) == 3 and accepted(folder) == 3,
                         "three clips submitted and journaled", seconds=60)
        polled = state.queries
        running.wait_for(lambda: state.queries >= polled + 3, "polls", seconds=60)
    state.never_finish = False
    build(folder, *UNTIL_CLIP)
    made = harness.report(folder, "kl")
    assert all(made[s]["attached"] and made[s]["status"] == "ran" for s in CLIPS)
    assert all(made[s]["outputs"][0] in state.made for s in CLIPS)
    assert len(state.created) == 3 == len(set(state.created))  # nothing paid twice
    assert not read_open(folder / ".filmc" / "journal.log")
    no_keys_in(folder, state.tokens)


def test_the_example_film_s_clips_are_made_at_kling(state, api, tmp_path):
    """examples/wolfpack with its clips routed to Kling (keyframes drawn locally): a shot's
    clip is the video Kling made from its keyframe (5 s, for the shot's 3 s, which the
    plan warned about), paid once."""
    folder = copy_example(tmp_path / "wolfpack")
    config = folder / "filmc.toml"
    text = config.read_text(encoding="utf-8")
    for old, new in (('keyframe = "openai"', 'keyframe = "local"\nclip = "kling"'),
                     ('speech = "openai"', 'speech = "local"')):
        assert old in text
        text = text.replace(old, new)
    config.write_text(text + "\n" + harness.toml(kling_table(api)), encoding="utf-8")
    r = build(folder, *UNTIL_CLIP, "--select", "shot:eyes_on_ridge", film="film.film")
    assert "cannot honour a length of 3 s for `clip` steps" in r.stderr
    made = harness.report(folder, "wolfpack")
    sid = "clip.cub.eyes_on_ridge.take1"
    assert made[sid]["status"] == "ran" and made[sid]["backend"] == "kling"
    assert made[sid]["outputs"][0] in state.made  # byte for byte what Kling made
    [sent] = state.bodies
    assert sent["duration"] == "5" and "two green eyes shine" in sent["prompt"]
    assert sent["image"] == made["keyframe.cub.eyes_on_ridge.local-1"]["outputs"][0]
    assert len(state.created) == 1
