"""The `gemini_image` adapter against a loopback Gemini API (tests/loopback/google.py).

Real HTTP, real PNG bodies.  Each test drives the adapter as the engine does (one
submit: the service answers at once) and asserts what a user would check: what
Gemini was sent (the prompt, the references in order, the ratio asked), the image
that landed, and for each refusal or failure the kind the engine acts on, the
message, and whether anything was billed.  Last, `filmc build` with refusals at
both Google services and a key the service echoes: the key is nowhere.
"""

from __future__ import annotations

import base64
import hashlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from adapter_harness import Uploads, closing, no_key_in, raised, report, request
from loopback import serve
from loopback.google import GoogleState, make_app
from PIL import Image
from test_veo import filmc, google, picture, tiny

from filmc.backends.gemini_image import GeminiImage
from filmc.backends.protocol import Done, FailureKind, Input, Request, ServiceError, Setup
from filmc.lang.steps import CHARACTER, LOCATION, REFERENCE, StepId, Tags

KEY = "AIzaCanary-gemini-9a7c1e5d3b2f40"  # must never appear in a message
FLASH, PRO = "gemini-2.5-flash-image", "gemini-3-pro-image-preview"


@pytest.fixture
def state() -> GoogleState:
    return GoogleState(key=KEY)


@pytest.fixture
def api(state: GoogleState) -> Iterator[str]:
    with serve(make_app(state)) as url:
        yield f"{url}/v1beta"


def adapter(base_url: str, root: Path, key: str = KEY, **settings: Any) -> GeminiImage:
    return GeminiImage(Setup(name="gemini_image",
                             settings={"base_url": base_url, "model": FLASH, **settings},
                             root=root, secret=lambda name: key if name == "api_key" else "",
                             uploads=Uploads()))


def keyframe(tmp: Path, inputs: tuple[Input, ...] = (), step: StepId | None = None,
             **fields: Any) -> Request:
    fields = {"prompt": "Chen raises a pair of old army binoculars.", "negative": "cars",
              "width": 1920, "height": 804, "take": 1, **fields}
    step = step or StepId.keyframe("hunt", "chen_watches", "gemini_image-1")
    workdir = tmp / "work" / hashlib.sha1(repr((step, fields, inputs)).encode()).hexdigest()
    return request(step, "gemini_image", workdir, inputs, **fields)


def run(a: GeminiImage, req: Request) -> Done:
    return closing(a, a.submit(req, a.prepare(req)))


def failure(a: GeminiImage, req: Request) -> ServiceError:
    e = raised(lambda: run(a, req), KEY)
    assert not any(req.workdir.iterdir())  # nothing half-written for the store to find
    return e


def inline(part: dict[str, Any]) -> str:
    """The sha256 of an inline image part."""
    return hashlib.sha256(base64.b64decode(part["inlineData"]["data"])).hexdigest()


# -- images --------------------------------------------------------------------------------


def test_a_keyframe_is_one_request_with_its_references_inline(state, api, tmp_path):
    """The prompt opens by saying what each image shows; the images follow it inline,
    characters first, then the location; a 2.39:1 film asks for 21:9, the nearest ratio
    Gemini makes; the key goes in `x-goog-api-key`; the PNG lands and decodes."""
    location = picture(tmp_path, "STEPPE", LOCATION, Tags(location="STEPPE", time="dusk"))
    chen = picture(tmp_path, "CHEN", CHARACTER, Tags(character="CHEN", outfit="winter"))
    mei = picture(tmp_path, "MEI", CHARACTER, Tags(character="MEI"))
    req = keyframe(tmp_path, (location, chen, mei))
    done = run(adapter(api, tmp_path), req)

    [body] = state.received["generateContent"]
    text, *images = body["contents"][0]["parts"]
    assert body["contents"][0]["role"] == "user"
    assert text == {"text": "Image 1 shows CHEN (winter outfit). Image 2 shows MEI. Image 3 "
                            "shows the location STEPPE (dusk).\n\n" + req.fields.prompt}
    assert [inline(p) for p in images] == [chen.digest, mei.digest, location.digest]
    assert {p["inlineData"]["mimeType"] for p in images} == {"image/png"}
    assert body["generationConfig"] == {"responseModalities": ["IMAGE"],
                                        "imageConfig": {"aspectRatio": "21:9"}}
    assert (state.auth_failures, state.key_in_query, state.billed) == (0, 0, 1)
    assert done.outputs == {"image": str(req.workdir / "image.png")}
    with Image.open(done.outputs["image"]) as img:
        assert (img.format, img.size) == ("PNG", (1536, 672))
    assert hashlib.sha256(Path(done.outputs["image"]).read_bytes()).hexdigest() in state.made


def test_settings_choose_the_ratio_and_size_and_any_image_goes(state, api, tmp_path):
    """`aspect_ratio` and `image_size` as written; without them a portrait film asks for
    9:16, a square one 1:1; a sheet from the user's own GIF sends it as a PNG; a plate with
    no references is text alone; a Gemini 3 model's interim "thought" image is not taken
    for the answer."""
    state.thoughts = True
    done = run(adapter(api, tmp_path, model=PRO, aspect_ratio="16:9", image_size="2K"),
               keyframe(tmp_path))
    with Image.open(done.outputs["image"]) as img:
        assert img.size == (2688, 1536)
    gif = tmp_path / "own.gif"
    Image.new("RGB", (32, 32), (200, 10, 10)).save(gif, "GIF")
    own = Input(role=REFERENCE, path=gif, digest="x", media="image", step="CHEN.gif",
                tags=Tags(character="CHEN"))
    run(adapter(api, tmp_path), keyframe(tmp_path, (own,), StepId.sheet("CHEN", "winter"),
                                         prompt="Chen in a felt coat", width=1080, height=1920))
    done = run(adapter(api, tmp_path), keyframe(tmp_path, (), StepId.plate("PIER", "DAWN"),
                                                prompt="A wooden pier at dawn", width=1080,
                                                height=1080))
    with Image.open(done.outputs["image"]) as img:
        assert img.size == (1024, 1024)
    first, second, plate = state.received["generateContent"]
    assert plate["contents"] == [{"role": "user", "parts": [{"text": "A wooden pier at dawn"}]}]
    assert plate["generationConfig"]["imageConfig"] == {"aspectRatio": "1:1"}
    assert first["generationConfig"]["imageConfig"] == {"aspectRatio": "16:9", "imageSize": "2K"}
    assert second["generationConfig"]["imageConfig"] == {"aspectRatio": "9:16"}
    text, image = second["contents"][0]["parts"]
    assert text == {"text": "Image 1 is a reference image of CHEN.\n\nChen in a felt coat"}
    assert image["inlineData"]["mimeType"] == "image/png"
    assert base64.b64decode(image["inlineData"]["data"]).startswith(b"\x89PNG")


def test_references_beyond_what_the_model_takes_are_refused_before_sending(state, api,
                                                                          tmp_path):
    """Four references: Flash takes 3 (refused, nothing sent, the message says what to
    do); a Gemini 3 model takes 14; `max_references` overrides either."""
    cast = tuple(picture(tmp_path, n, CHARACTER, Tags(character=n)) for n in "ABCD")
    e = failure(adapter(api, tmp_path), keyframe(tmp_path, cast))
    assert e.kind is FailureKind.INVALID
    assert ("it has 4 reference images and `gemini-2.5-flash-image` takes 3 here; cast fewer "
            "characters, raise `max_references`") in e.message
    assert sum(state.requests.values()) == 0
    run(adapter(api, tmp_path, model=PRO), keyframe(tmp_path / "pro", cast))
    failure(adapter(api, tmp_path, model=PRO, max_references=2), keyframe(tmp_path / "two",
                                                                          cast[:3]))
    assert [len(i) for i in state.received_images] == [4]
    for settings, most in (({"model": FLASH}, 3), ({"model": PRO}, 14),
                           ({"model": PRO, "max_references": 5}, 5)):
        caps = GeminiImage.capabilities("keyframe", settings, tmp_path)
        assert caps is not None and caps.references == most


# -- refusals and failures -----------------------------------------------------------------


@pytest.mark.parametrize("trouble,kind,said", [
    ("refuse", FailureKind.POLICY, "Gemini blocked the prompt (PROHIBITED_CONTENT); reword the "
                                   "shot's prompt"),
    ("unsafe", FailureKind.POLICY, "Gemini refused to make the image (IMAGE_SAFETY): Unable to "
                                   "show the generated image."),
    ("wordy", FailureKind.FAILED, "answered without an image (finishReason NO_IMAGE): the model "
                                  "said “I can describe this scene, but I am not able to draw "
                                  "it.”"),
])
def test_a_blocked_or_wordy_answer_fails_the_shot_and_is_not_billed(state, api, tmp_path,
                                                                    trouble, kind, said):
    """Gemini answers 200 and no image: a blocked prompt (`promptFeedback.blockReason`)
    and a filtered image (`finishReason IMAGE_SAFETY`) are policy refusals; words and no
    image fail the step quoting them."""
    getattr(state, trouble).append("binoculars")
    e = failure(adapter(api, tmp_path), keyframe(tmp_path))
    assert e.kind is kind
    assert said in e.message
    assert e.message.startswith("cannot make the image for `keyframe.hunt.chen_watches."
                                "gemini_image-1`: ")
    assert (state.requests["generateContent"], state.billed) == (1, 0)


@pytest.mark.parametrize("fault,kind,unbilled,said", [
    (("quota",), FailureKind.CREDIT, False, "the daily quota `GenerateRequestsPerDay"),
    (("rate", 12), FailureKind.RATE_LIMITED, True, "(RESOURCE_EXHAUSTED)"),
    (("status", 429, None, {"error": {"code": 429, "status": "RESOURCE_EXHAUSTED", "message":
                                      "Your prepayment credits are depleted. Please go to AI "
                                      "Studio to manage your project and billing."}}),
     FailureKind.CREDIT, False, "add credit or raise the cap"),
    (("bad_key",), FailureKind.AUTH, False, "the API key was refused: check that the "
                                            "environment variable named by `api_key_env`"),
    (("status", 403, None, None), FailureKind.AUTH, False, "may not have the Gemini API "
                                                           "enabled"),
    (("status", 500, None, None), FailureKind.TRANSIENT, True, "answered 500"),
    (("status", 503, None, None), FailureKind.TRANSIENT, True, "(UNAVAILABLE)"),
    (("status", 504, None, None), FailureKind.TRANSIENT, False, "(DEADLINE_EXCEEDED)"),
    (("corrupt",), FailureKind.FAILED, False, "sent an image that does not decode"),
])
def test_a_failed_request_says_what_to_do_and_whether_it_may_be_sent_again(
        state, api, tmp_path, fault, kind, unbilled, said):
    state.faults["generateContent"].append(fault)
    e = failure(adapter(api, tmp_path), keyframe(tmp_path))
    assert (e.kind, e.unbilled) == (kind, unbilled)
    assert said in e.message
    if fault[0] == "rate":
        assert e.retry_after == 12
    assert state.requests["generateContent"] == 1


def test_a_wrong_key_or_model_is_said_plainly(state, api, tmp_path):
    state.key = "AIza-another-key-altogether"
    e = failure(adapter(api, tmp_path), keyframe(tmp_path))
    assert e.kind is FailureKind.AUTH and "API key not valid" in e.message
    state.key = KEY
    e = failure(adapter(api, tmp_path, model="gemini-0-imaginary"), keyframe(tmp_path / "m"))
    assert e.kind is FailureKind.INVALID
    assert "models/gemini-0-imaginary is not found" in e.message and "check `model`" in e.message


# -- what it declares ----------------------------------------------------------------------


def test_capabilities_keys_and_settings(tmp_path):
    caps = GeminiImage.capabilities("sheet", {"model": FLASH}, tmp_path)
    assert caps is not None
    assert (caps.seed, caps.negative, caps.first_frame, caps.references) == (False, False,
                                                                            False, 3)
    assert caps.aspect_ratios is not None and "21:9" in caps.aspect_ratios
    assert GeminiImage.capabilities("clip", {"model": FLASH}, tmp_path) is None
    assert GeminiImage.key_fields("keyframe", {}) == {"prompt", "width", "height", "take"}
    assert GeminiImage.key_fields("keyframe", {"aspect_ratio": "16:9"}) == {"prompt", "take"}
    assert GeminiImage.key_settings("keyframe", {"model": FLASH, "max_references": 2,
                                                 "image_size": "2K"}) == {
        "model": FLASH, "image_size": "2K"}

    def problems(**settings: Any) -> list[tuple[str, bool]]:
        return [(p.setting, p.warning) for p in GeminiImage.check_settings(settings)]

    assert problems(model=FLASH) == []
    assert problems() == [("model", False)]
    assert problems(model="models/x:generateContent", aspect_ratio="2.39:1", image_size="8K",
                    max_references=0, aspect_ration="16:9") == [
        ("model", False), ("aspect_ratio", False), ("image_size", False),
        ("max_references", False), ("aspect_ration", True)]
    assert problems(model=PRO, max_references=20) == [("max_references", True)]


# -- `filmc build`: refusals at both services, and the key is nowhere ------------------------


def test_refusals_at_both_services_and_the_key_appears_nowhere(tmp_path):
    """Keyframes at Gemini, clips at Veo: b1's prompt is blocked at Gemini, a1's clip is
    refused by Veo with support codes; each fails its shot with the service's reason, and
    `--keep-going` makes the rest.  Then a build whose key Gemini refuses, echoing it in
    its answer, while Veo's daily quota is used up.  The key (a canary) is on no output,
    in no file of the project, and in no URL."""
    with google() as (state, base):
        project = tiny(tmp_path / "goog", base, keyframe="gemini_image", clip="veo")
        state.refuse += ["kite rises", "Camera movement:"]  # b1's keyframe; the clips
        said = [filmc(project, "build", "--keep-going", "--until", "clip", "goog.film",
                      state=state, code=1)]
        steps = report(project, "goog")
        blocked = steps["keyframe.one.b1.gemini_image-1"]
        assert blocked["status"] == "failed"
        assert "Gemini blocked the prompt (PROHIBITED_CONTENT)" in blocked["error"]
        refused = steps["clip.one.a1.take1"]
        assert refused["status"] == "failed"
        assert refused["error"].startswith("Veo refused the clip (operation `models/veo-3.1-")
        assert "Support codes: 58061214 (INVALID_ARGUMENT); reword the shot's prompt" in \
            refused["error"]
        assert steps["keyframe.one.a1.gemini_image-1"]["status"] == "ran"
        assert (state.submits, state.billed) == (1, 1)  # a1's keyframe; a1's clip was refused

        state.refuse.clear()
        state.faults["generateContent"].append(("bad_key",))
        state.faults["predictLongRunning"].append(("quota",))
        said.append(filmc(project, "build", "--keep-going", "--until", "clip", "goog.film",
                          state=state, code=1))
        steps = report(project, "goog")
        assert "the API key was refused" in steps["keyframe.one.b1.gemini_image-1"]["error"]
        quota = steps["clip.one.a1.take1"]["error"]
        assert quota.startswith("cannot make the clip `clip.one.a1.take1`: ")
        assert "the daily quota `GenerateRequestsPerDayPerProjectPerModel` is used up" in quota
        assert quota in said[-1].stderr
        assert (state.submits, state.billed) == (1, 1)  # the quota: nothing more started
        assert any(p.suffix == ".db" for p in project.rglob("*") if p.is_file())
        no_key_in(project, [state.key], said)
        assert (state.key_in_query, state.auth_failures) == (0, 0)
