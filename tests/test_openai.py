"""The `openai` adapter against a loopback OpenAI API (tests/loopback/openai.py).

Real HTTP, real PNG and WAV bodies.  Each test drives the adapter as the engine
does (prepare → submit → fetch) and asserts what a user would check: what the
service was sent, the file that landed, and for each failure the kind the
engine acts on, whether it may be sent again (`unbilled`), and that the key is
in no message.
"""

from __future__ import annotations

import asyncio
import hashlib
import socket
import wave
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import pytest
from adapter_harness import Uploads, closing, raised
from loopback import media, serve
from loopback.openai import OpenAIState, make_app
from PIL import Image

from filmc.backends.openai import OpenAI
from filmc.backends.openai_errors import duration, rate_limit_wait
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
from filmc.lang.steps import CHARACTER, KINDS, LOCATION, REFERENCE, Fields, StepId, Tags

KEY = "sk-canary-4f1d9b27c3e8a6"  # must never appear in a message


@pytest.fixture
def state() -> OpenAIState:
    return OpenAIState(key=KEY)


@pytest.fixture
def api(state: OpenAIState) -> Iterator[str]:
    with serve(make_app(state)) as url:
        yield f"{url}/v1"


def adapter(base_url: str, root: Path, key: str = KEY, **settings: Any) -> OpenAI:
    return OpenAI(Setup(name="openai", settings={"base_url": base_url, **settings}, root=root,
                        secret=lambda name: key if name == "api_key" else "", uploads=Uploads()))


def request(tmp: Path, step: StepId, inputs: tuple[Input, ...] = (), **fields: Any) -> Request:
    workdir = tmp / "work" / str(step)
    workdir.mkdir(parents=True)
    return Request(step=step, key="0" * 64, backend="openai", fields=Fields(**fields), params={},
                   inputs=inputs, outputs=KINDS[step.kind].outputs, workdir=workdir)


def keyframe(tmp: Path, inputs: tuple[Input, ...] = (), **fields: Any) -> Request:
    fields = {"prompt": "Chen raises a pair of old army binoculars.", "width": 1920,
              "height": 1080, "take": 1, **fields}
    return request(tmp, StepId.keyframe("hunt", "chen_watches", "openai-1"), inputs, **fields)


def picture(tmp: Path, name: str, role: str, tags: Tags, body: bytes | None = None) -> Input:
    body = media.png(64, 48, name) if body is None else body
    path = tmp / f"{name}.png"
    path.write_bytes(body)
    return Input(role=role, path=path, digest=hashlib.sha256(body).hexdigest(), media="image",
                 step=f"sheet.{name}", tags=tags)


async def make(a: OpenAI, req: Request) -> tuple[Done, Mapping[str, Any]]:
    """One step, as the engine drives it."""
    got = await a.submit(req, a.prepare(req))
    while isinstance(got, Handle):
        got = await a.poll(got)
    return got, await a.fetch(got, req)


def run(a: OpenAI, req: Request) -> tuple[Done, Mapping[str, Any]]:
    return closing(a, make(a, req))


def failure(a: OpenAI, req: Request) -> ServiceError:
    e = raised(lambda: run(a, req), KEY)
    assert KEY not in repr(e)
    return e


# -- images ------------------------------------------------------------------------------


def test_keyframe_without_references_is_a_generation(state, api, tmp_path):
    req = keyframe(tmp_path)
    done, files = run(adapter(api, tmp_path, model="gpt-image-1", quality="high"), req)

    assert state.requests == {"images/generations": 1}
    assert state.received_bodies == [{"model": "gpt-image-1", "quality": "high", "n": 1,
                                      "size": "1536x1024", "prompt": req.fields.prompt}]
    assert files == {"image": req.workdir / "image.png"}
    with Image.open(files["image"]) as img:
        assert (img.format, img.size) == ("PNG", (1536, 1024))
    assert done.cost is None and done.note == ""
    assert state.billed == 1


def test_portrait_and_square_films_get_the_nearest_size(state, api, tmp_path):
    a = adapter(api, tmp_path)
    run(a, keyframe(tmp_path / "p", width=1080, height=1920))
    run(adapter(api, tmp_path), keyframe(tmp_path / "s", width=1080, height=1080))
    assert [b["size"] for b in state.received_bodies] == ["1024x1536", "1024x1024"]
    assert [b["model"] for b in state.received_bodies] == ["gpt-image-1"] * 2


def test_keyframe_with_references_is_an_edit_characters_first(state, api, tmp_path):
    location = picture(tmp_path, "STEPPE", LOCATION, Tags(location="STEPPE", time="dusk"))
    chen = picture(tmp_path, "CHEN", CHARACTER, Tags(character="CHEN", outfit="winter"))
    mei = picture(tmp_path, "MEI", CHARACTER, Tags(character="MEI"))
    req = keyframe(tmp_path, (location, chen, mei), width=1080, height=1920)
    _, files = run(adapter(api, tmp_path, input_fidelity="high", moderation="low"), req)

    assert state.requests == {"images/edits": 1}
    assert state.received_files == [[("image[]", "ref1.png", chen.digest),
                                     ("image[]", "ref2.png", mei.digest),
                                     ("image[]", "ref3.png", location.digest)]]
    assert state.received_prompts == [
        "Image 1 shows CHEN (winter outfit). Image 2 shows MEI. Image 3 shows the location "
        "STEPPE (dusk).\n\n" + req.fields.prompt]
    body = state.received_bodies[0]
    assert (body["size"], body["input_fidelity"]) == ("1024x1536", "high")
    assert "moderation" not in body  # generations only: the edits route refuses it
    with Image.open(files["image"]) as img:
        assert img.size == (1024, 1536)


def test_a_single_reference_of_any_format_goes_as_one_png(state, api, tmp_path):
    gif = tmp_path / "own.gif"
    Image.new("RGB", (32, 32), (200, 10, 10)).save(gif, "GIF")
    ref = Input(role=REFERENCE, path=gif, digest="x", media="image", step="CHEN.gif",
                tags=Tags(character="CHEN"))
    req = request(tmp_path, StepId.sheet("CHEN", "winter"), (ref,),
                  prompt="Chen in a felt coat", width=1024, height=1536, take=1)
    run(adapter(api, tmp_path), req)

    [[(field, name, digest)]] = state.received_files
    assert (field, name) == ("image", "ref1.png")
    assert state.received_prompts == ["Image 1 is a reference image of CHEN.\n\n"
                                      "Chen in a felt coat"]


def test_different_references_give_different_images(state, api, tmp_path):
    chen = picture(tmp_path, "CHEN", CHARACTER, Tags(character="CHEN"))
    mei = picture(tmp_path, "MEI", CHARACTER, Tags(character="MEI"))
    _, one = run(adapter(api, tmp_path), keyframe(tmp_path / "a", (chen,)))
    _, two = run(adapter(api, tmp_path), keyframe(tmp_path / "b", (mei,)))
    assert one["image"].read_bytes() != two["image"].read_bytes()


def test_steps_run_side_by_side(state, api, tmp_path):
    state.latency = 0.2
    a = adapter(api, tmp_path)
    reqs = [keyframe(tmp_path / str(i), prompt=f"wolf {i}") for i in range(3)]

    async def go() -> None:
        try:
            await asyncio.gather(*(make(a, r) for r in reqs))
        finally:
            await a.close()

    asyncio.run(go())
    assert state.max_in_flight == 3 and state.billed == 3
    assert all((r.workdir / "image.png").exists() for r in reqs)


def test_revised_prompt_is_the_note(state, api, tmp_path):
    state.revise = True
    done, _ = run(adapter(api, tmp_path), keyframe(tmp_path))
    assert done.note.startswith("A cinematic still. Chen raises")


def test_jpeg_output_is_kept_as_jpeg(state, api, tmp_path):
    _, files = run(adapter(api, tmp_path, output_format="jpeg"), keyframe(tmp_path))
    assert files["image"].name == "image.jpg"
    with Image.open(files["image"]) as img:
        assert img.format == "JPEG"


def test_url_answers_are_downloaded_by_fetch(state, api, tmp_path):
    state.use_urls = True
    req = keyframe(tmp_path)
    a = adapter(api, tmp_path)

    async def go() -> tuple[Done, Mapping[str, Any]]:
        done = await a.submit(req, None)
        assert isinstance(done, Done) and state.requests["files"] == 0
        files = await a.fetch(done, req)
        await a.close()
        return done, files

    done, files = asyncio.run(go())
    assert done.outputs["image"]["url"].endswith(".png")
    assert state.requests["files"] == 1
    with Image.open(files["image"]) as img:
        assert img.size == (1536, 1024)


def test_an_expired_url_is_expired(state, api, tmp_path):
    state.use_urls, state.url_ttl = True, 0
    req = keyframe(tmp_path)
    e = failure(adapter(api, tmp_path), req)
    assert e.kind is FailureKind.EXPIRED and e.status == 403 and "expired" in e.message
    assert list(req.workdir.iterdir()) == []


def test_a_compatible_server_under_another_path(state, tmp_path):
    with serve(make_app(state, prefix="/compat/openai/v1")) as url:
        a = adapter(f"{url}/compat/openai/v1/", tmp_path, organization="org-film",
                    project="proj_wolves")
        _, files = run(a, keyframe(tmp_path))
    assert files["image"].exists()
    assert state.received_headers == [{"OpenAI-Organization": "org-film",
                                       "OpenAI-Project": "proj_wolves"}]


# -- speech ------------------------------------------------------------------------------


def speech(tmp: Path, line: int, speaker: str | None, **fields: Any) -> Request:
    return request(tmp, StepId.speech("hunt", "chen_watches", line), speaker=speaker,
                   text="They're circling the herd, and the snow hides them.", take=None,
                   **fields)


def test_speech_uses_the_speakers_voice_and_direction(state, api, tmp_path):
    a = adapter(api, tmp_path, voice="sage", voices={"CHEN": "onyx"})
    chen = speech(tmp_path, 1, "CHEN", voice="gravelly, tired; quietly", language="en")
    _, files = run(a, chen)
    run(adapter(api, tmp_path, voice="sage", voices={"CHEN": "onyx"}),
        speech(tmp_path, 2, "MEI"))

    first, second = state.received_bodies
    assert first == {"model": "gpt-4o-mini-tts", "input": chen.fields.text, "voice": "onyx",
                     "instructions": "gravelly, tired; quietly\nLanguage: en.",
                     "response_format": "wav"}
    assert second["voice"] == "sage" and "instructions" not in second
    assert files == {"audio": chen.workdir / "audio.wav"}
    with wave.open(str(files["audio"])) as w:
        seconds = w.getnframes() / w.getframerate()
    assert seconds == pytest.approx(10 / 2.5, abs=0.01)  # ten words


def test_speech_instructions_can_be_switched_off(state, api, tmp_path):
    a = adapter(api, tmp_path, speech_model="tts-1", instructions=False)
    run(a, speech(tmp_path, 1, "CHEN", voice="quietly"))
    assert "instructions" not in state.received_bodies[0]
    assert state.received_bodies[0]["model"] == "tts-1"


def test_speech_that_is_not_a_wav_fails(state, api, tmp_path):
    state.faults.append(("status", 200, {"Content-Type": "audio/mpeg"}, b"ID3\x04fake mp3"))
    e = failure(adapter(api, tmp_path), speech(tmp_path, 1, "CHEN"))
    assert e.kind is FailureKind.FAILED and "not a WAV" in e.message


# -- failures ----------------------------------------------------------------------------


def test_a_refused_key_stops_the_backend_and_never_shows(state, api, tmp_path):
    state.key = "sk-the-right-one-0000"
    e = failure(adapter(api, tmp_path), keyframe(tmp_path))
    assert e.kind is FailureKind.AUTH and e.status == 401 and not e.unbilled
    assert "api_key_env" in e.message
    assert state.auth_failures == 1 and state.billed == 0


def test_a_key_echoed_by_a_server_is_masked(state, api, tmp_path):
    state.faults.append(("status", 400, None,
                         {"error": {"message": f"bad request from {KEY}", "type": "x"}}))
    e = failure(adapter(api, tmp_path), keyframe(tmp_path))
    assert e.kind is FailureKind.INVALID and "***" in e.message


def test_rate_limited_waits_as_told_and_may_be_sent_again(state, api, tmp_path):
    state.faults.append(("status", 429, {"Retry-After": "1"},
                         {"error": {"message": "Rate limit reached for images per minute",
                                    "type": "requests", "code": "rate_limit_exceeded"}}))
    e = failure(adapter(api, tmp_path), keyframe(tmp_path))
    assert e.kind is FailureKind.RATE_LIMITED and e.unbilled and e.retryable
    assert e.retry_after == pytest.approx(1.0)
    assert "Rate limit reached" in e.message and state.billed == 0


def test_rate_limit_wait_headers():
    assert rate_limit_wait({"retry-after-ms": "250"}) == pytest.approx(0.25)
    assert rate_limit_wait({"x-ratelimit-remaining-requests": "0",
                            "x-ratelimit-reset-requests": "6m0s",
                            "x-ratelimit-remaining-tokens": "900",
                            "x-ratelimit-reset-tokens": "20ms"}) == pytest.approx(360)
    assert rate_limit_wait({}) is None
    assert duration("1.5s") == 1.5 and duration("12ms") == pytest.approx(0.012)
    assert duration("soon") is None


def test_out_of_quota_is_credit(state, api, tmp_path):
    state.faults.append(("quota",))
    e = failure(adapter(api, tmp_path), keyframe(tmp_path))
    assert e.kind is FailureKind.CREDIT and not e.retryable
    assert "exceeded your current quota" in e.message


def test_a_safety_refusal_is_policy_with_the_reason(state, api, tmp_path):
    state.faults.append(("policy",))
    e = failure(adapter(api, tmp_path), keyframe(tmp_path))
    assert e.kind is FailureKind.POLICY and not e.unbilled
    assert "rejected by the safety system" in e.message
    assert "safety_violations=[violence]" in e.message and "moderation_blocked" in e.message


@pytest.mark.parametrize(("status", "unbilled"), [(500, True), (503, True), (504, False)])
def test_server_errors_are_transient(state, api, tmp_path, status, unbilled):
    state.faults.append(("status", status, None, None))
    e = failure(adapter(api, tmp_path), keyframe(tmp_path))
    assert e.kind is FailureKind.TRANSIENT and e.unbilled is unbilled and e.status == status


def test_a_connection_dropped_after_sending_may_have_been_billed(state, api, tmp_path):
    state.faults.append(("reset",))
    e = failure(adapter(api, tmp_path), keyframe(tmp_path))
    assert e.kind is FailureKind.TRANSIENT and not e.unbilled
    assert state.billed == 1  # the engine must not send it again


def test_a_request_that_times_out_may_have_been_billed(state, api, tmp_path):
    state.faults.append(("slow", 0.6))
    e = failure(adapter(api, tmp_path, timeout_s=0.2), keyframe(tmp_path))
    assert e.kind is FailureKind.TRANSIENT and not e.unbilled
    assert "did not answer within" in e.message


def test_a_server_that_is_not_there_was_never_sent_anything(tmp_path):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    e = failure(adapter(f"http://127.0.0.1:{port}/v1", tmp_path), keyframe(tmp_path))
    assert e.kind is FailureKind.TRANSIENT and e.unbilled


def test_an_image_that_does_not_decode_fails(state, api, tmp_path):
    state.faults.append(("corrupt",))
    req = keyframe(tmp_path)
    e = failure(adapter(api, tmp_path), req)
    assert e.kind is FailureKind.FAILED and "does not decode" in e.message
    assert list(req.workdir.iterdir()) == []


def test_a_size_the_model_does_not_make_is_invalid(state, api, tmp_path):
    e = failure(adapter(api, tmp_path, size="1920x1080"), keyframe(tmp_path))
    assert e.kind is FailureKind.INVALID and e.status == 400
    assert "Supported values" in e.message and "`size`" in e.message


def test_an_unknown_model_is_invalid(state, api, tmp_path):
    e = failure(adapter(api, tmp_path, model="dall-e-9"), keyframe(tmp_path))
    assert e.kind is FailureKind.INVALID and "check `model`" in e.message


def test_no_api_at_base_url_says_so(state, api, tmp_path):
    e = failure(adapter(api.removesuffix("/v1") + "/nowhere", tmp_path), keyframe(tmp_path))
    assert e.kind is FailureKind.INVALID and "check `base_url`" in e.message


def test_too_many_references_are_refused_before_sending(state, api, tmp_path):
    refs = tuple(picture(tmp_path, f"C{i}", CHARACTER, Tags(character=f"C{i}"))
                 for i in range(17))
    e = failure(adapter(api, tmp_path), keyframe(tmp_path, refs))
    assert e.kind is FailureKind.INVALID and "at most 16" in e.message
    assert not state.requests


# -- what the class declares -------------------------------------------------------------


def test_it_is_the_registered_openai_adapter():
    assert adapter_class("openai") is OpenAI


def test_capabilities(tmp_path):
    caps = OpenAI.capabilities("keyframe", {}, tmp_path)
    assert caps is not None
    assert (caps.seed, caps.negative, caps.references, caps.first_frame) == (False, False, 16,
                                                                              False)
    assert caps.sizes == ((1024, 1024), (1536, 1024), (1024, 1536))
    fixed = OpenAI.capabilities("plate", {"size": "1024x1024"}, tmp_path)
    assert fixed is not None and fixed.sizes == ((1024, 1024),)
    voice = OpenAI.capabilities("speech", {}, tmp_path)
    assert voice is not None and (voice.seed, voice.negative, voice.references) == (False, False,
                                                                                     0)
    assert OpenAI.capabilities("clip", {}, tmp_path) is None


def test_key_fields():
    assert OpenAI.key_fields("keyframe", {}) == {"prompt", "width", "height", "take"}
    assert OpenAI.key_fields("sheet", {"size": "1024x1536"}) == {"prompt", "take"}
    assert OpenAI.key_fields("speech", {}) == {"text", "voice", "speaker", "language", "take"}
    assert OpenAI.key_fields("speech", {"instructions": False}) == {"text", "speaker", "take"}
    assert OpenAI.key_extra("keyframe", {}) == {"model": "gpt-image-1"}
    assert OpenAI.key_extra("keyframe", {"model": "gpt-image-1"}) == {}


def problems(**settings: Any) -> dict[str, tuple[bool, str]]:
    return {p.setting: (p.warning, p.message + " " + (p.help or ""))
            for p in OpenAI.check_settings(settings)}


def test_check_settings():
    assert problems() == {}
    assert problems(model="gpt-image-1", quality="high", size="1536x1024", voice="onyx",
                    voices={"CHEN": "ash"}, speed=1.2, output_format="webp",
                    base_url="http://127.0.0.1:8190/v1", timeout_s=600) == {}
    warning, text = problems(size="huge")["size"]
    assert not warning and "`1536x1024`" in text
    assert problems(size="1920x1080")["size"][0]  # a compatible server may make it
    assert not problems(output_format="gif")["output_format"][0]
    assert problems(quality="ultra")["quality"][0]
    assert not problems(voices=["onyx"])["voices"][0]
    assert problems(voice="darth")["voice"][0]
    assert not problems(speed=9)["speed"][0]
    assert not problems(base_url="api.openai.com/v1")["base_url"][0]
    warning, text = problems(qualty="high")["qualty"]
    assert warning and "did you mean `quality`?" in text
