"""The `gemini_image` backend: sheets, plates and keyframes from Gemini's image models
("Nano Banana") on the Gemini API.

    [backends.gemini_image]
    type = "gemini_image"
    api_key_env = "GEMINI_API_KEY"
    model = "gemini-2.5-flash-image"

A step is one request, answered at once:
`POST {base_url}/models/{model}:generateContent` with the key in `x-goog-api-key`.
The prompt and the step's reference images are the parts of one user turn: the
text first, saying what each image shows ("Image 1 shows CHEN (winter outfit)."),
then the images, inline and base64 (`inlineData`), characters first, then the
location, then the user's own.  `generationConfig` asks for an image only
(`responseModalities: ["IMAGE"]`) in the aspect ratio nearest the film's
(`imageConfig.aspectRatio`); the image comes back inline, base64, in
`candidates[0].content.parts[].inlineData`, and is written to the step's folder
once it decodes.

A refusal is an answer, not an HTTP error: `promptFeedback.blockReason` (the
prompt was blocked), or a candidate whose `finishReason` is `SAFETY`,
`IMAGE_SAFETY`, `PROHIBITED_CONTENT`... with no image.  Both fail the shot as a
policy refusal; an answer with text and no image fails it too, quoting the text.

There is no seed and no negative prompt: neither enters the content keys, and
`plan` warns when a shot asks for either.  How many reference images a step may
carry depends on the model (3 for gemini-2.5-flash-image, 14 for the Gemini 3
image models): `max_references` says, defaulting by the model's name.

The Gemini API itself (the key, inline images, what an error answer means) is
google.py, which veo.py shares.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from ..lang.steps import Fields
from .fit import aspect_ratio
from .google import GeminiAPI, check_common, sendable, short
from .http import Http, where
from .inputs import describe, references
from .protocol import (
    Adapter,
    Capabilities,
    Done,
    FailureKind,
    Handle,
    Request,
    ServiceError,
    SettingProblem,
    Setup,
)
from .results import keep_image
from .settings import ENGINE

IMAGE_KINDS = ("sheet", "plate", "keyframe")
ASPECT_RATIOS = ("1:1", "2:3", "3:2", "3:4", "4:3", "4:5", "5:4", "9:16", "16:9", "21:9")
IMAGE_SIZES = ("1K", "2K", "4K")
MOST_REFERENCES = 14  # the Gemini 3 image models
FLASH_REFERENCES = 3  # gemini-2.5-flash-image
# Why a prompt or a candidate was refused (BlockedReason, FinishReason): a policy refusal.
REFUSALS = frozenset({"SAFETY", "PROHIBITED_CONTENT", "IMAGE_SAFETY", "IMAGE_PROHIBITED_CONTENT",
                      "BLOCKLIST", "SPII", "RECITATION", "IMAGE_RECITATION", "JAILBREAK",
                      "MODEL_ARMOR"})
SETTINGS = ("model", "base_url", "aspect_ratio", "image_size", "max_references", *ENGINE)
KEYED = frozenset({"model", "aspect_ratio", "image_size"})  # what changes the picture


class GeminiImage(Adapter):
    """Gemini's image models on the Gemini API (generativelanguage.googleapis.com)."""

    type = "gemini_image"
    version = "1"
    runs_here = False
    secrets = ("api_key",)
    kinds = IMAGE_KINDS

    def __init__(self, setup: Setup) -> None:
        super().__init__(setup)
        self.http = Http(setup.name, timeout=float(self.settings.get("timeout_s") or 300))
        self.api = GeminiAPI(setup, self.http)

    # -- what the class declares ----------------------------------------------------------

    @classmethod
    def capabilities(cls, kind: str, settings: Mapping[str, Any], root: Path) -> Capabilities | None:
        if kind not in IMAGE_KINDS:
            return None
        ratio = settings.get("aspect_ratio")
        return Capabilities(seed=False, negative=False, references=max_references(settings),
                            first_frame=False,
                            aspect_ratios=(ratio,) if isinstance(ratio, str) else ASPECT_RATIOS)

    @classmethod
    def key_fields(cls, kind: str, settings: Mapping[str, Any]) -> frozenset[str]:
        if settings.get("aspect_ratio"):
            return frozenset({"prompt", "take"})  # the film's frame size picks nothing
        return frozenset({"prompt", "width", "height", "take"})

    @classmethod
    def key_settings(cls, kind: str, settings: Mapping[str, Any]) -> Mapping[str, Any]:
        return {k: v for k, v in settings.items() if k in KEYED}

    @classmethod
    def check_settings(cls, settings: Mapping[str, Any]) -> list[SettingProblem]:
        return _check(settings)

    # -- one build ------------------------------------------------------------------------

    async def submit(self, request: Request, handle: Handle | None) -> Done:
        if request.kind not in IMAGE_KINDS:
            raise ServiceError(FailureKind.INVALID, f"the `{self.type}` adapter cannot make "
                                                    f"`{request.kind}` steps")
        refs = references(request)
        doing = f"make the image for `{request.step}`"
        model = str(self.settings.get("model") or "")
        most = max_references(self.settings)
        if len(refs) > most:
            raise ServiceError(FailureKind.INVALID,
                               f"cannot {doing}: it has {len(refs)} reference images and "
                               f"`{model}` takes {most} here; cast fewer characters, raise "
                               f"`max_references` if the model takes more, or make this step "
                               f"with another backend")
        parts: list[dict[str, Any]] = [{"text": describe(refs) + request.fields.prompt}]
        for ref in refs:
            body, mime = await asyncio.to_thread(sendable, ref)
            parts.append({"inlineData": {"mimeType": mime,
                                         "data": base64.b64encode(body).decode()}})
        image_config = {"aspectRatio": ratio_for(self.settings, request.fields)}
        if self.settings.get("image_size"):
            image_config["imageSize"] = str(self.settings["image_size"])
        r = await self.api.call("POST", f"models/{model}:generateContent", doing, json={
            "contents": [{"role": "user", "parts": parts}],
            "generationConfig": {"responseModalities": ["IMAGE"], "imageConfig": image_config}})
        data, note = read_image(r.json(), where(r.url), doing)
        output = request.outputs[0].name
        path = await asyncio.to_thread(keep_image, data, request.workdir / output,
                                       where(r.url), doing)
        return Done({output: str(path)}, note=note)

    async def close(self) -> None:
        await self.http.close()


# -- requests and answers, as data --------------------------------------------------------


def max_references(settings: Mapping[str, Any]) -> int:
    """How many reference images one request may carry: `max_references`, else 3 for the
    Gemini 2.x image models and 14 for later ones."""
    given = settings.get("max_references")
    if isinstance(given, int) and not isinstance(given, bool) and given > 0:
        return given
    model = str(settings.get("model") or "")
    return FLASH_REFERENCES if model.startswith("gemini-2") else MOST_REFERENCES


def ratio_for(settings: Mapping[str, Any], fields: Fields) -> str:
    """`aspect_ratio`, else the ratio the model makes nearest the film's frame."""
    if settings.get("aspect_ratio"):
        return str(settings["aspect_ratio"])
    if not fields.width or not fields.height:
        return "1:1"
    return aspect_ratio(fields.width, fields.height, ASPECT_RATIOS)


def read_image(answer: Any, source: str, doing: str) -> tuple[bytes, str]:
    """The image of a generateContent answer and the model's words beside it; a refusal
    or an answer without an image is a ServiceError that says what the model said."""
    answer = answer if isinstance(answer, dict) else {}
    feedback = answer.get("promptFeedback") or {}
    blocked = feedback.get("blockReason") if isinstance(feedback, dict) else None
    if blocked:
        said = str(feedback.get("blockReasonMessage") or "").strip()
        raise ServiceError(FailureKind.POLICY,
                           f"cannot {doing}: Gemini blocked the prompt ({blocked})"
                           + (f": {said}" if said else "")
                           + "; reword the shot's prompt, or make this step with another backend")
    candidates = answer.get("candidates") or []
    first = candidates[0] if isinstance(candidates, list) and candidates else {}
    first = first if isinstance(first, dict) else {}
    content = first.get("content") or {}
    parts = content.get("parts") if isinstance(content, dict) else None
    words, image = [], None
    for part in parts if isinstance(parts, list) else []:
        if not isinstance(part, dict) or part.get("thought"):
            continue  # a Gemini 3 model's interim "thought" images are not the answer
        inline = part.get("inlineData") or part.get("inline_data")
        if isinstance(inline, dict) and str(inline.get("mimeType") or inline.get("mime_type")
                                            or "").startswith("image/") and image is None:
            image = inline
        elif isinstance(part.get("text"), str):
            words.append(part["text"].strip())
    said = " ".join(w for w in words if w)
    reason = str(first.get("finishReason") or "")
    if image is None:
        detail = str(first.get("finishMessage") or "").strip() or said
        if reason in REFUSALS:
            raise ServiceError(FailureKind.POLICY,
                               f"cannot {doing}: Gemini refused to make the image ({reason})"
                               + (f": {short(detail)}" if detail else "")
                               + "; reword the shot's prompt or change its references, or "
                                 "make this step with another backend")
        raise ServiceError(FailureKind.FAILED,
                           f"cannot {doing}: {source} answered without an image"
                           + (f" (finishReason {reason})" if reason else "")
                           + (f": the model said “{short(detail)}”" if detail else "")
                           + "; `filmc build` asks again when you choose to")
    try:
        data = base64.b64decode(str(image.get("data") or ""), validate=True)
    except (binascii.Error, ValueError):
        data = b""
    return data, short(said)


# -- settings -----------------------------------------------------------------------------


def _check(settings: Mapping[str, Any]) -> list[SettingProblem]:
    problem = check_common(settings, "gemini_image", "gemini-2.5-flash-image")
    listed = ", ".join(f"`{r}`" for r in ASPECT_RATIOS)
    ratio = settings.get("aspect_ratio")
    if ratio is not None and ratio not in ASPECT_RATIOS:
        problem("aspect_ratio", f"Gemini's image models do not make `{ratio}`",
                f"they make {listed}; leave `aspect_ratio` out to take the one nearest the "
                f"film's")
    size = settings.get("image_size")
    if size is not None and size not in IMAGE_SIZES:
        problem("image_size", f"`image_size` must be `1K`, `2K` or `4K`, not `{size}`",
                "2K and 4K are for the Gemini 3 image models")
    most = settings.get("max_references")
    if most is not None and not (isinstance(most, int) and not isinstance(most, bool)
                                 and most > 0):
        problem("max_references", f"`max_references` must be a whole number, 1 or more, not "
                f"`{most}`", "3 for gemini-2.5-flash-image, 14 for the Gemini 3 image models")
    elif isinstance(most, int) and most > MOST_REFERENCES:
        problem("max_references", f"no Gemini image model takes more than {MOST_REFERENCES} "
                f"reference images", "the service refuses a request with more", warning=True)
    problem.near_misses(settings, SETTINGS, "gemini_image")
    return problem
