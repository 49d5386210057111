"""The `runway` adapter against a loopback Runway API (tests/loopback/runway.py).

Real HTTP, real PNG and MP4 bodies.  The first part drives the adapter as the
engine does (submit → poll → fetch) and asserts what the service was sent,
the file that landed and, for each of Runway's own faults, the failure kind
the engine acts on, the message the user reads and how many tasks Runway
made (each is paid).  The second part runs `filmc build` in a subprocess: a
build killed with `kill -9` while its clips are polled, then re-attached; and
the example film, its clips made by Runway from keyframes made by FLUX.
"""

from __future__ import annotations

import asyncio
import hashlib
import time
import uuid
from collections.abc import Iterator
from fractions import Fraction
from pathlib import Path
from typing import Any
from urllib.request import Request as UrlRequest
from urllib.request import urlopen

import adapter_harness as harness
import pytest
from loopback import serve
from loopback.runway import RunwayState, make_app
from PIL import Image
from test_flux import FAST, kill_mid_poll, svc_project

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
from filmc.backends.runway import Runway
from filmc.backends.runway.models import fit_prompt, tag_all
from filmc.lang.steps import CHARACTER, FIRST_FRAME, LAST_FRAME, LOCATION, StepId
from filmc.lang.steps import Tags as T

KEY = "key_canary_7d2e90c4b1a35f68"  # must never appear in a message or a file


@pytest.fixture
def state() -> RunwayState:
    return RunwayState(key=KEY, video_scale=0.1)


@pytest.fixture
def api(state: RunwayState) -> Iterator[str]:
    with serve(make_app(state)) as url:
        yield url


def adapter(url: str, root: Path, uploads: harness.Uploads | None = None, key: str = KEY,
            **settings: Any) -> Runway:
    return Runway(Setup(name="runway", settings={"base_url": url, **settings}, root=root,
                        secret=lambda name: key if name == "api_key" else "",
                        uploads=uploads or harness.Uploads()))


def picture(tmp: Path, name: str, role: str = FIRST_FRAME, tags: T | None = None,
            size: tuple[int, int] = (96, 40)) -> Input:
    """A real PNG with enough detail to be over Runway's 512-byte upload minimum."""
    path = tmp / f"{name}.png"
    path.write_bytes(harness.png(size, noise=name))
    return harness.image(path, role, f"keyframe.{name}", tags)


def request(tmp: Path, step: StepId, inputs: tuple[Input, ...] = (), **fields: Any) -> Request:
    return harness.request(step, "runway", tmp / "work" / f"{step}-{uuid.uuid4().hex[:6]}",
                           inputs, **fields)


def clip(tmp: Path, *inputs: Input, take: int = 1, **fields: Any) -> Request:
    fields = {"prompt": "Chen raises a pair of old army binoculars, breath held.",
              "width": 1920, "height": 804, "fps": Fraction(24), "duration": Fraction(3),
              "seed": 1967, "take": take, **fields}
    return request(tmp, StepId.clip("hunt", "chen_watches", f"take{take}"), inputs, **fields)


def keyframe(tmp: Path, *inputs: Input, **fields: Any) -> Request:
    fields = {"prompt": "Chen raises a pair of old army binoculars.", "width": 1920,
              "height": 804, "seed": 7, "take": 1, **fields}
    return request(tmp, StepId.keyframe("hunt", "chen_watches", "runway-1"), inputs, **fields)


async def make(a: Runway, req: Request, seen: list[str] | None = None) -> tuple[Done, Any]:
    """One step, as the engine drives it (polling without the engine's pauses)."""
    done, files, polls = await harness.drive(a, req)
    if seen is not None:
        seen += [p.status for p in polls if isinstance(p, Pending)]
    return done, files


def run(a: Runway, *reqs: Request, seen: list[str] | None = None) -> list[tuple[Done, Any]]:
    async def go() -> list[tuple[Done, Any]]:
        return [await make(a, r, seen) for r in reqs]

    return harness.closing(a, go())


def failure(a: Runway, *reqs: Request) -> ServiceError:
    return harness.raised(lambda: run(a, *reqs), KEY)


# -- clips --------------------------------------------------------------------------------


def test_a_clip_is_its_first_frame_uploaded_then_image_to_video_throttled_then_made(
        state: RunwayState, api: str, tmp_path: Path) -> None:
    """THROTTLED (queued over the concurrency limit) is waiting, not a failure; the clip is
    Runway's MP4; the keyframe went through /v1/uploads to the presigned form, and the
    second take with the same keyframe uploads nothing."""
    state.throttled_polls = 2
    frame = picture(tmp_path, "chen_watches")
    uploads = harness.Uploads()
    seen: list[str] = []
    [(done, files)] = run(adapter(api, tmp_path, uploads), clip(tmp_path, frame), seen=seen)

    assert seen == ["throttled: queued behind your other Runway tasks"] * 2 + ["running"]
    [body] = [dict(b) for b in state.created]
    uri = body.pop("promptImage")
    assert body == {"model": "gen4_turbo", "ratio": "1584:672", "duration": 3, "seed": 1967,
                    "promptText": "Chen raises a pair of old army binoculars, breath held."}
    assert uri.startswith("runway://") and state.files[uri][0] == frame.digest
    assert state.uploads == 1 and state.files_received == [frame.digest]
    assert uploads.values[(f"runway:{api}", frame.digest)]["uri"] == uri
    video = files["video"]
    assert video.suffix == ".mp4" and hashlib.sha256(video.read_bytes()).hexdigest() in state.made

    run(adapter(api, tmp_path, uploads), clip(tmp_path, frame, take=2))  # a later build
    assert state.uploads == 1 and len(state.files_received) == 1
    assert [b["promptImage"] for b in state.created] == [uri, uri]
    assert [b["seed"] for b in state.created] == [1967, 1968]  # each take its own seed


def test_a_last_frame_goes_to_a_model_that_takes_one(state: RunwayState, api: str,
                                                     tmp_path: Path) -> None:
    """veo3.1 takes `[{uri, position: first}, {uri, position: last}]`, 4/6/8 s, a negative
    prompt and no seed; gen4_turbo takes the first frame alone (its capabilities say so)."""
    first = picture(tmp_path, "a")
    last = picture(tmp_path, "b", LAST_FRAME)
    run(adapter(api, tmp_path, model="veo3.1"),
        clip(tmp_path, first, last, negative="modern buildings", duration=Fraction(5)))
    body = state.created[0]
    assert [p["position"] for p in body["promptImage"]] == ["first", "last"]
    assert (body["duration"], body["ratio"], body["negativePrompt"]) == (6, "1280:720",
                                                                        "modern buildings")
    assert "seed" not in body
    run(adapter(api, tmp_path), clip(tmp_path, first, last))
    assert state.created[1]["promptImage"].startswith("runway://")
    assert Runway.capabilities("clip", {"model": "veo3.1"}, tmp_path).last_frame
    assert not Runway.capabilities("clip", {}, tmp_path).last_frame


def test_a_small_file_goes_inline_and_a_long_prompt_is_cut(state: RunwayState, api: str,
                                                           tmp_path: Path) -> None:
    """A file under Runway's 512-byte upload minimum is sent as a data URI; a prompt over
    1,000 UTF-16 units loses its last lines first."""
    tiny = tmp_path / "tiny.png"
    Image.new("RGB", (8, 8), (1, 2, 3)).save(tiny)
    frame = Input(FIRST_FRAME, tiny, hashlib.sha256(tiny.read_bytes()).hexdigest(), "image",
                  "keyframe.tiny")
    action = "Chen raises a pair of old army binoculars, breath held."
    prompt = "\n".join([action, "Camera: " + "slow push in, " * 30, "Style: " + "grain, " * 150])
    run(adapter(api, tmp_path), clip(tmp_path, frame, prompt=prompt))
    body = state.created[0]
    assert body["promptImage"].startswith("data:image/png;base64,") and state.uploads == 0
    assert body["promptText"] == "\n".join(prompt.splitlines()[:2]).strip()
    assert fit_prompt("狼" * 1200, 1000) == "狼" * 1000  # CJK: one unit each
    assert len(fit_prompt("word " * 400, 1000)) <= 1000


# -- images -------------------------------------------------------------------------------


def test_a_keyframe_tags_each_reference_by_the_characters_id(state: RunwayState, api: str,
                                                            tmp_path: Path) -> None:
    """text_to_image with referenceImages [{uri, tag}]: CHEN's two sheets and MEI's, each
    tagged by the character's id; the prompt opens by naming each `@tag`; the location, a
    fourth reference, is beyond gen4_image's 3 (characters come first)."""
    chen = picture(tmp_path, "chen", CHARACTER, T(character="CHEN"))
    winter = picture(tmp_path, "chen_w", CHARACTER, T(character="CHEN", outfit="winter"))
    steppe = picture(tmp_path, "steppe", LOCATION, T(location="STEPPE", time="DUSK"))
    mei = picture(tmp_path, "mei", CHARACTER, T(character="MEI"))
    [(_, files)] = run(adapter(api, tmp_path), keyframe(tmp_path, steppe, chen, winter, mei))
    body = state.created[0]
    assert [r["tag"] for r in body["referenceImages"]] == ["CHEN", "CHEN_winter", "MEI"]
    assert body["promptText"] == ("@CHEN is CHEN; @CHEN_winter is CHEN (winter outfit); "
                                  "@MEI is MEI.\nChen raises a pair of old army binoculars.")
    assert (body["model"], body["ratio"], body["seed"]) == ("gen4_image", "1808:768", 7)
    assert state.uploads == 3
    with Image.open(files["image"]) as img:
        assert (img.format, img.size) == ("PNG", (1808, 768))
    assert Runway.capabilities("keyframe", {}, tmp_path).references == 3


def test_tags_follow_runways_rule() -> None:
    """3-16 letters, digits and `_`, a letter first, unique."""
    refs = [Input(CHARACTER, Path("x"), "d", "image", "s", T(character=c))
            for c in ("BO", "LEAD_WOLF_OF_THE_PACK", "9LIVES")]
    refs.append(Input(LOCATION, Path("x"), "d", "image", "s", T(location="BO")))
    assert tag_all(refs) == ["BO_", "LEAD_WOLF_OF_THE", "R9LIVES", "BO__2"]


# -- Runway's own faults ------------------------------------------------------------------


def test_a_refused_input_fails_the_step_with_runways_reason(state: RunwayState, api: str,
                                                             tmp_path: Path) -> None:
    """SAFETY.INPUT.*: POLICY (never retried), the code and what to do; one task made."""
    state.fail["binoculars"] = ("SAFETY.INPUT.TEXT", "The prompt text did not pass moderation.")
    e = failure(adapter(api, tmp_path), clip(tmp_path, picture(tmp_path, "f")))
    assert e.kind is FailureKind.POLICY
    assert "(SAFETY.INPUT.TEXT: The prompt text did not pass moderation.)" in e.message
    assert "reword the shot's prompt or change its image" in e.message
    assert len(state.created) == 1


@pytest.mark.parametrize("code,kind,said", [
    ("SAFETY.OUTPUT.VIDEO", FailureKind.POLICY, "refused what it made"),
    ("ASSET.INVALID", FailureKind.INVALID, "cannot use an input image"),
    ("INTERNAL.BAD_OUTPUT.CODE01", FailureKind.FAILED, "`filmc build` tries again"),
])
def test_each_failure_code_means_what_runway_documents(state: RunwayState, api: str,
                                                       tmp_path: Path, code: str,
                                                       kind: FailureKind, said: str) -> None:
    state.fail["binoculars"] = (code, "reason")
    e = failure(adapter(api, tmp_path), clip(tmp_path, picture(tmp_path, "f")))
    assert (e.kind, said in e.message, code in e.message) == (kind, True, True)


def test_429_is_the_daily_quota_and_stops_the_backend(state: RunwayState, api: str,
                                                      tmp_path: Path) -> None:
    """429 on a submit is not a rate limit to wait out: the day's generations are spent.
    CREDIT (the engine sends nothing more to this backend), with today's usage."""
    state.daily_limit = 1
    frame = picture(tmp_path, "f")
    e = failure(adapter(api, tmp_path), clip(tmp_path, frame), clip(tmp_path, frame, take=2))
    assert e.kind is FailureKind.CREDIT and e.status == 429 and not e.retryable
    assert "daily generation limit is used up" in e.message and "resets daily" in e.message
    assert "(1 of 1 generations of `gen4_turbo` in the last day)" in e.message
    assert len(state.created) == 1


@pytest.mark.parametrize("fault,kind,unbilled,said", [
    (("credits",), FailureKind.CREDIT, False, "You do not have enough credits to run this task"),
    (("status", 502, None, None), FailureKind.TRANSIENT, True, "answered 502"),
    (("status", 500, None, None), FailureKind.TRANSIENT, False, "answered 500"),
    (("key",), FailureKind.AUTH, True, "`api_key_env` holds a current Runway key"),
    (("ratios",), FailureKind.INVALID, False, "`ratio`: Invalid enum value"),
])
def test_refused_submits(state: RunwayState, api: str, tmp_path: Path, fault: tuple[Any, ...],
                         kind: FailureKind, unbilled: bool, said: str) -> None:
    """What each refusal means for the engine: retry only what provably made nothing."""
    settings: dict[str, Any] = {}
    if fault[0] == "credits":
        state.credits = 0
    elif fault[0] == "key":
        state.key = "key_another"
    elif fault[0] == "ratios":
        settings["ratios"] = ["999:1"]
    else:
        state.faults.append(fault)
    e = failure(adapter(api, tmp_path, **settings), clip(tmp_path, picture(tmp_path, "f")))
    assert (e.kind, e.unbilled) == (kind, unbilled) and said in e.message, e.message
    assert state.created == []


def test_an_expired_upload_is_uploaded_again_and_the_request_sent_once_more(
        state: RunwayState, api: str, tmp_path: Path) -> None:
    """A remembered runway:// URI older than 20 hours is not used; one Runway no longer has
    (a 400 about the image: nothing was made) is uploaded again and the request resent."""
    frame = picture(tmp_path, "f")
    uploads = harness.Uploads()
    uploads.put(f"runway:{api}", frame.digest,
                {"uri": "runway://old", "at": time.time() - 21 * 3600})
    run(adapter(api, tmp_path, uploads), clip(tmp_path, frame))
    assert state.uploads == 1 and state.submits == 1
    uploads.put(f"runway:{api}", frame.digest, {"uri": "runway://gone", "at": time.time()})
    run(adapter(api, tmp_path, uploads), clip(tmp_path, frame, take=2))
    assert state.uploads == 2 and state.submits == 3 and len(state.created) == 2


def test_an_expired_output_url_is_expired_and_the_task_gives_a_fresh_one(
        state: RunwayState, api: str, tmp_path: Path) -> None:
    """Output URLs last 24-48 h: past that, EXPIRED (the engine asks the task again), and a
    new GET of the task answers URLs that work.  An unknown task is NOT_FOUND."""
    state.output_ttl = -1
    a = adapter(api, tmp_path)
    req = clip(tmp_path, picture(tmp_path, "f"))

    async def go() -> Any:
        try:
            handle = await a.submit(req, None)
            assert isinstance(handle, Handle)
            while isinstance(done := await a.poll(handle), Pending):
                pass
            with pytest.raises(ServiceError) as info:
                await a.fetch(done, req)
            assert info.value.kind is FailureKind.EXPIRED
            assert "output URL has expired" in info.value.message
            state.output_ttl = 60
            again = await a.poll(handle)
            assert isinstance(again, Done) and again.outputs != done.outputs
            files = await a.fetch(again, req)
            with pytest.raises(ServiceError) as lost:
                await a.poll(Handle("00000000-0000-0000-0000-000000000000"))
            assert lost.value.kind is FailureKind.NOT_FOUND
            await a.cancel(handle)
            return files
        finally:
            await a.close()

    assert asyncio.run(go())["video"].stat().st_size > 0
    assert len(state.created) == 1 and state.requests["delete"] == 1


def test_the_loopback_refuses_a_request_without_the_version_header(api: str) -> None:
    r = UrlRequest(f"{api}/v1/tasks/x", headers={"Authorization": f"Bearer {KEY}"})
    with pytest.raises(Exception) as info:
        urlopen(r, timeout=10)
    assert getattr(info.value, "code", None) == 400
    assert "X-Runway-Version" in info.value.read().decode()  # type: ignore[attr-defined]


# -- what the class declares --------------------------------------------------------------


def test_capabilities_keys_and_settings(tmp_path: Path) -> None:
    """Durations, ratios (as sizes), seed and references per model, overridable; the settings
    that re-key clips never re-key images; problems at their setting."""
    assert adapter_class("runway") is Runway
    caps = Runway.capabilities("clip", {}, tmp_path)
    assert caps.durations == tuple(Fraction(d) for d in range(2, 11))
    assert (1584, 672) in caps.sizes and caps.seed and not caps.negative
    veo = Runway.capabilities("clip", {"model": "veo3.1"}, tmp_path)
    assert veo.durations == (4, 6, 8) and not veo.seed and veo.negative
    mine = Runway.capabilities("clip", {"model": "gen5", "durations": [5, 10],
                                        "ratios": ["1280:720"]}, tmp_path)
    assert mine.durations == (5, 10) and mine.sizes == ((1280, 720),)
    assert Runway.capabilities("speech", {}, tmp_path) is None
    assert Runway.key_fields("clip", {"model": "veo3.1"}) == {
        "prompt", "negative", "width", "height", "duration", "take"}
    assert Runway.key_fields("keyframe", {"image_ratios": ["1808:768"]}) == {
        "prompt", "seed", "take"}  # one resolution: the film's frame changes nothing
    settings = {"model": "gen4.5", "image_model": "gen4_image", "public_figure_threshold": "low"}
    assert Runway.key_settings("keyframe", settings) == {"image_model": "gen4_image",
                                                         "public_figure_threshold": "low"}
    assert Runway.key_extra("clip", {}) == {"model": "gen4_turbo"}
    problems = {p.setting: p for p in Runway.check_settings(
        {"model": "gen5", "durations": [5.5], "ratios": "16:9", "public_figure_threshold": "no",
         "image_modle": "x", "retries": 2})}
    assert set(problems) == {"model", "durations", "ratios", "public_figure_threshold",
                             "image_modle"}
    assert problems["model"].warning and "set `ratios` and `durations`" in problems["model"].help
    assert problems["image_modle"].help == "did you mean `image_model`?"


# -- `filmc build` ------------------------------------------------------------------------

CLIPS = ("clip.one.a1.take1", "clip.one.a2.take1")
ONLY = ("--select", "kind:clip")  # and what they need (keyframes drawn here)


def runway_table(url: str, **more: Any) -> dict[str, Any]:
    return {"type": "runway", "api_key_env": "RUNWAY_API_KEY", "base_url": url,
            "model": "gen4_turbo", "prices": {"clip": {"per_second": 0.05}}, **more}


def test_kill_9_mid_poll_then_the_next_build_attaches_and_pays_nothing_twice(
        tmp_path: Path, state: RunwayState, api: str) -> None:
    """Two clips at Runway (their keyframes drawn locally), the build killed with `kill -9`
    while both tasks are polled: the next build polls the journaled task ids (attached),
    through THROTTLED, submits and uploads nothing again, and its clips are Runway's.
    The key is in no file and on no output."""
    folder = svc_project(tmp_path / "svc", {"clip": "runway"}, runway=runway_table(api))
    env = {"RUNWAY_API_KEY": KEY}
    state.hold = True
    kill_mid_poll(folder, env, ONLY, jobs=2, polled=lambda: state.polls >= 4)
    assert len(state.created) == 2 and len(state.files_received) == 2
    for task in state.tasks.values():  # queued again behind the organization's other work
        task.polls, task.status = 0, "PENDING"
    state.hold, state.throttled_polls, polled = False, 2, state.polls

    again = harness.filmc(folder, "build", "--use-first", *ONLY, "svc.film", keys=env)
    made = harness.report(folder, "svc")
    for sid in CLIPS:
        assert made[sid]["status"] == "ran" and made[sid]["attached"], made[sid]
        assert made[sid]["outputs"][0] in state.made
    assert state.polls - polled >= 2 * 4  # THROTTLED twice, RUNNING, SUCCEEDED: each task
    assert len(state.created) == 2 and len(state.files_received) == 2 and state.uploads == 2
    assert state.auth_failures == 0
    harness.no_key_in(folder, [KEY], [again])


def test_the_example_film_is_made_with_flux_keyframes_and_runway_clips(
        tmp_path: Path, state: RunwayState, api: str) -> None:
    """examples/wolfpack as it is in git, its filmc.toml sending keyframes to FLUX and clips
    to Runway (both loopback servers): a shot is built end to end.  Its keyframe is FLUX's
    image (made with Gama's sheet and the steppe plate as references), its clip Runway's
    MP4 made from that keyframe (uploaded once), and the shot is cut from that clip."""
    from conftest import copy_example
    from loopback.flux import FluxState
    from loopback.flux import make_app as flux_app

    from filmc.backends.ffmpeg import probe

    folder = copy_example(tmp_path / "wolfpack")
    config = folder / "filmc.toml"
    text = config.read_text(encoding="utf-8")
    assert 'keyframe = "openai"\n' in text
    text = text.replace('keyframe = "openai"\n', 'keyframe = "flux"\nclip = "runway"\n')
    flux = FluxState(key="bfl-example-key")
    with serve(flux_app(flux)) as flux_url:
        config.write_text(text + "\n" + harness.toml({
            "backends.flux": {"type": "flux", "api_key_env": "BFL_API_KEY", "base_url": flux_url,
                              "model": "flux-2-pro", **FAST, "prices": {"keyframe": 0.03}},
            "backends.runway": {**runway_table(api), **FAST}}), encoding="utf-8")
        env = {"RUNWAY_API_KEY": KEY, "BFL_API_KEY": flux.key}
        r = harness.filmc(folder, "build", "--use-first", "--until", "shot", "--select",
                          "+shot.cub.小狼", "film.film", keys=env)
    made = harness.report(folder, "wolfpack")
    keyframe, clip_ = made["keyframe.cub.小狼.flux-1"], made["clip.cub.小狼.take1"]
    assert (keyframe["backend"], clip_["backend"]) == ("flux", "runway")
    assert keyframe["outputs"][0] in flux.made and clip_["outputs"][0] in state.made
    [sent] = flux.created
    assert sent["prompt"].startswith("Image 1 shows GAMA (herding_robe outfit).")
    assert len(flux.received_images) == 2  # Gama's sheet, the night plate
    [task] = state.created
    assert state.files_received == [keyframe["outputs"][0]]  # the keyframe, uploaded once
    assert (task["ratio"], task["duration"]) == ("1584:672", 3)
    assert made["shot.cub.小狼"]["status"] == "ran"
    shot = next((folder / "build" / "wolfpack" / "shots").glob("*小狼*.mp4"))
    info = probe(shot)
    assert (info["width"], info["height"]) == (1920, 804) and abs(info["duration"] - 3) < 0.05
    harness.no_key_in(folder, [KEY, flux.key], [r])
