"""A loopback Gemini API: Gemini's image models (`generateContent`) and Veo
(`predictLongRunning`, its operations and the files they make), with their faults.

Written from the Gemini API's documented protocol (BACKENDS.md's Veo and Gemini
image sections, and the wire format of Google's own SDK), as strict as the real
service where an adapter could go wrong: the `x-goog-api-key` header, unknown
fields, the aspect ratios, lengths and resolutions each model makes, reference
images only with 8 s clips, a last frame only after a first, inline images that
must decode.  Errors are google.rpc.Status answers (`{"error": {"code",
"message", "status", "details"}}`).  Answers carry real bodies: a PNG of the
size the model makes at the asked ratio, an H.264 MP4 of the asked length.

    state = GoogleState(key="AIza-test")
    with serve(make_app(state)) as url:       # the API under f"{url}/v1beta"
        state.faults["predictLongRunning"].append(("quota",))
        ...
    state.requests["generateContent"], state.submits, state.billed, state.made

Faults, per route ("generateContent", "predictLongRunning", "operations", "files"),
one taken per request of that route after the key is checked, in order:
("status", code, headers, body) answers that (body None: a Status for the code);
("quota",) a 429 whose QuotaFailure is a per-day quota; ("rate", seconds) a 429
per-minute quota with RetryInfo; ("bad_key",) a 400 API_KEY_INVALID whose
DebugInfo echoes the key it was sent; ("reset",) reads the request, counts it
billed and drops the connection; ("corrupt",) a 200 whose image or video is not
one; ("slow", seconds) waits, then answers normally.

Refusals by content: a prompt holding a word of `refuse` is blocked (an image:
`promptFeedback.blockReason`; a clip: its operation ends with an error giving
support codes); of `unsafe`, the result is filtered (an image: `finishReason
IMAGE_SAFETY`; a clip: `raiMediaFilteredCount`); of `wordy`, the image model
answers in words and no image.  None of these is billed.

An operation finishes at its `polls`+1-th poll (`polls` = 0: at the first), never
while `hold` is set; its video is kept `file_ttl` seconds.

`python -m loopback.google --port 8191 --key AIza-test` (from tests/) serves until killed.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import hashlib
import io
import itertools
import time
import uuid
from collections import Counter, defaultdict
from typing import Any

import attrs
from aiohttp import web
from PIL import Image

from . import media, run_forever
from .common import command_line, counted, hang_up, json_object

IMAGE_MODELS = {"gemini-2.5-flash-image": 3, "gemini-3-pro-image-preview": 14,
                "gemini-3.1-flash-image-preview": 14}  # model → reference images it takes
VIDEO_MODELS = ("veo-3.1-generate-preview", "veo-3.1-fast-generate-preview")
# Gemini image sizes at 1K by aspect ratio; 2K and 4K are twice and four times.
IMAGE_SIZES = {"1:1": (1024, 1024), "2:3": (832, 1248), "3:2": (1248, 832),
               "3:4": (864, 1184), "4:3": (1184, 864), "4:5": (896, 1152), "5:4": (1152, 896),
               "9:16": (768, 1344), "16:9": (1344, 768), "21:9": (1536, 672)}
SCALES = {"1K": 1, "2K": 2, "4K": 4}
RESOLUTIONS = {"720p": (1280, 720), "1080p": (1920, 1080), "4k": (3840, 2160)}
VIDEO_RATIOS = ("16:9", "9:16")
PERSON_GENERATION = ("allow_all", "allow_adult", "dont_allow")
IMAGE_TYPES = ("image/png", "image/jpeg", "image/webp", "image/heic", "image/heif")
STATUS_WORDS = {400: "INVALID_ARGUMENT", 401: "UNAUTHENTICATED", 403: "PERMISSION_DENIED",
                404: "NOT_FOUND", 409: "ABORTED", 429: "RESOURCE_EXHAUSTED", 499: "CANCELLED",
                500: "INTERNAL", 503: "UNAVAILABLE", 504: "DEADLINE_EXCEEDED"}
_CONTENT_FIELDS = {"contents", "generationConfig", "generation_config", "safetySettings",
                   "safety_settings", "systemInstruction", "system_instruction", "tools",
                   "toolConfig", "tool_config", "cachedContent", "cached_content"}
_INSTANCE_FIELDS = {"prompt", "image", "lastFrame", "referenceImages", "video"}
_PARAMETER_FIELDS = {"aspectRatio", "durationSeconds", "negativePrompt", "personGeneration",
                     "resolution", "sampleCount", "numberOfVideos", "enhancePrompt"}
SUPPORT_CODE = "58061214"


@attrs.define(eq=False)
class Operation:
    name: str
    prompt: str
    size: tuple[int, int]
    seconds: int
    seed: str
    refused: bool = False
    unsafe: bool = False
    polls: int = 0
    result: dict[str, Any] | None = None  # the finished operation's `response` or `error`
    lock: asyncio.Lock = attrs.Factory(asyncio.Lock)


@attrs.define
class GoogleState:
    """The server's knobs and what it was asked; read it from the test's thread."""

    key: str = "AIza-loopback"
    faults: defaultdict[str, list[tuple[Any, ...]]] = attrs.Factory(lambda: defaultdict(list))
    latency: float = 0.0  # seconds added to every API request
    refuse: list[str] = attrs.Factory(list)  # words that get a prompt blocked
    unsafe: list[str] = attrs.Factory(list)  # words whose result the safety filters remove
    wordy: list[str] = attrs.Factory(list)  # words the image model answers in words alone
    thoughts: bool = False  # Gemini 3 image models: an interim "thought" image first
    polls: int = 1  # polls that find an operation still running
    hold: bool = False  # operations do not finish while set
    video_size: tuple[int, int] | None = None  # make 16:9 videos this size (fast tests)
    file_ttl: float = 2 * 86400.0
    redirect_files: bool = False  # files answer 302 to a storage URL on another host
    requests: Counter[str] = attrs.Factory(Counter)  # by route
    request_times: list[float] = attrs.Factory(list)
    submits: int = 0  # operations accepted (each would be paid for)
    billed: int = 0  # images and videos made, and requests dropped after reading
    made: list[str] = attrs.Factory(list)  # sha256 of each image and video body made
    received: defaultdict[str, list[dict[str, Any]]] = attrs.Factory(lambda: defaultdict(list))
    received_prompts: list[str] = attrs.Factory(list)
    received_images: list[list[str]] = attrs.Factory(list)  # per request: sha256 of each image
    auth_failures: int = 0
    key_in_query: int = 0  # requests that put the key in the URL (where logs keep it)
    key_at_storage: int = 0  # storage downloads that were sent the key
    in_flight: int = 0
    max_in_flight: int = 0
    operations: dict[str, Operation] = attrs.Factory(dict)
    files: dict[str, tuple[bytes, float]] = attrs.Factory(dict)  # id → video, made at
    _ids: itertools.count[int] = attrs.Factory(itertools.count)


class _Refusal(Exception):
    def __init__(self, response: web.Response) -> None:
        super().__init__(response.status)
        self.response = response


def status(code: int, message: str, *, word: str | None = None,
           details: list[dict[str, Any]] | None = None,
           headers: dict[str, str] | None = None) -> web.Response:
    """A google.rpc.Status answer."""
    err: dict[str, Any] = {"code": code, "message": message,
                           "status": word or STATUS_WORDS.get(code, "UNKNOWN")}
    if details:
        err["details"] = details
    return web.json_response({"error": err}, status=code, headers=headers)


def invalid(message: str) -> _Refusal:
    return _Refusal(status(400, message))


def make_app(state: GoogleState) -> web.Application:
    """The API under /v1beta; the storage host that `redirect_files` sends downloads to."""
    app = web.Application(client_max_size=256 << 20)

    async def served(route: str, handler: Any, request: web.Request) -> web.StreamResponse:
        with counted(state, route):
            try:
                return await _serve(state, route, handler, request)
            except _Refusal as e:
                return e.response

    async def models(request: web.Request) -> web.StreamResponse:
        model, _, action = request.match_info["spec"].partition(":")
        handler = {"generateContent": _generate_content, "predictLongRunning": _predict}.get(action)
        if handler is None:
            return status(404, f"Method not found: {action or '(none)'}.")

        async def call(state: GoogleState, request: web.Request) -> web.StreamResponse:
            return await handler(state, request, model)

        return await served(action, call, request)

    async def operations(request: web.Request) -> web.StreamResponse:
        return await served("operations", _operation, request)

    async def files(request: web.Request) -> web.StreamResponse:
        return await served("files", _file, request)

    async def storage(request: web.Request) -> web.StreamResponse:
        state.requests["storage"] += 1
        if "x-goog-api-key" in request.headers or "key" in request.query:
            state.key_at_storage += 1
        found = state.files.get(request.match_info["id"])
        if found is None:
            return web.Response(status=404, text="NoSuchKey")
        return web.Response(body=found[0], content_type="video/mp4")

    app.router.add_post("/v1beta/models/{spec}", models)
    app.router.add_get("/v1beta/models/{model}/operations/{op}", operations)
    app.router.add_get("/v1beta/files/{spec}", files)
    app.router.add_get("/storage/{id}", storage)
    return app


async def _serve(state: GoogleState, route: str, handler: Any,
                 request: web.Request) -> web.StreamResponse:
    given = request.headers.get("x-goog-api-key")
    if given is None and "key" in request.query:
        state.key_in_query += 1
        given = request.query["key"]
    if given != state.key:
        state.auth_failures += 1
        if not given:
            return status(403, "Method doesn't allow unregistered callers (callers without "
                          "established identity). Please use API Key or other form of API "
                          "consumer identity to call this API.")
        return _bad_key(given, echo=False)
    if state.latency:
        await asyncio.sleep(state.latency)
    fault = state.faults[route].pop(0) if state.faults[route] else None
    if fault is not None:
        answer = await _fault(state, fault, request, route)
        if answer is not None:
            return answer
    return await handler(state, request)


def _bad_key(given: str, echo: bool) -> web.Response:
    details: list[dict[str, Any]] = [
        {"@type": "type.googleapis.com/google.rpc.ErrorInfo", "reason": "API_KEY_INVALID",
         "domain": "googleapis.com",
         "metadata": {"service": "generativelanguage.googleapis.com"}},
        {"@type": "type.googleapis.com/google.rpc.LocalizedMessage", "locale": "en-US",
         "message": "API key not valid. Please pass a valid API key."}]
    if echo:
        details.append({"@type": "type.googleapis.com/google.rpc.DebugInfo",
                        "detail": f"Invalid API key: {given}"})
    return status(400, "API key not valid. Please pass a valid API key.", details=details)


async def _fault(state: GoogleState, fault: tuple[Any, ...], request: web.Request,
                 route: str) -> web.StreamResponse | None:
    what = fault[0]
    if what == "status":
        _, code, headers, body = (*fault, None, None)[:4]
        if body is None:
            return status(code, f"the loopback server answers {code}", headers=headers)
        if isinstance(body, (dict, list)):
            return web.json_response(body, status=code, headers=headers)
        return web.Response(status=code, body=body, headers=headers)
    if what == "quota":
        return _exhausted("generate_requests_per_model_per_day",
                          "GenerateRequestsPerDayPerProjectPerModel", "10", "52000s")
    if what == "rate":
        return _exhausted("generate_requests_per_model",
                          "GenerateRequestsPerMinutePerProjectPerModel", "2", f"{fault[1]}s")
    if what == "bad_key":
        return _bad_key(request.headers.get("x-goog-api-key", ""), echo=True)
    if what == "reset":
        await request.read()
        state.billed += 1  # the service may have made (and charged for) it
        if route == "predictLongRunning":
            state.submits += 1
        hang_up(request)
    if what == "corrupt":
        await request.read()
        state.billed += 1
        if route == "files":
            return web.Response(body=b"<html>upstream error</html>", content_type="video/mp4")
        junk = base64.b64encode(b"<html>upstream error</html>").decode()
        return web.json_response({"candidates": [{"content": {"role": "model", "parts": [
            {"inlineData": {"mimeType": "image/png", "data": junk}}]},
            "finishReason": "STOP", "index": 0}]})
    if what == "slow":
        await asyncio.sleep(float(fault[1]))
        return None
    raise ValueError(f"unknown loopback fault {fault!r}")


def _exhausted(metric: str, quota: str, value: str, delay: str) -> web.Response:
    """A 429 RESOURCE_EXHAUSTED for `quota`, to be asked again after `delay`."""
    return status(429, "You exceeded your current quota, please check your plan and billing "
                  "details. For more information on this error, head to: "
                  "https://ai.google.dev/gemini-api/docs/rate-limits.", details=[
                      {"@type": "type.googleapis.com/google.rpc.QuotaFailure",
                       "violations": [{"quotaMetric": f"generativelanguage.googleapis.com/{metric}",
                                       "quotaId": quota, "quotaDimensions": {"location": "global"},
                                       "quotaValue": value}]},
                      {"@type": "type.googleapis.com/google.rpc.RetryInfo", "retryDelay": delay}])


async def _json(request: web.Request) -> dict[str, Any]:
    return await json_object(request, invalid, "Invalid JSON payload received. Unexpected token.",
                             "Invalid JSON payload received. Expected an object.")


def _decode_image(data: Any, mime: Any, where: str) -> bytes:
    """An inline image's bytes, refused as the API refuses a bad one."""
    if mime not in IMAGE_TYPES:
        raise invalid(f"Unsupported MIME type: {mime} at {where}.")
    try:
        body = base64.b64decode(str(data or ""), validate=True)
        with Image.open(io.BytesIO(body)) as img:
            img.verify()
    except (binascii.Error, ValueError, OSError):
        raise invalid(f"Unable to process input image at {where}. Please retry or report in "
                      "https://developers.generativeai.google/guide/troubleshooting") from None
    return body


def _has(text: str, words: list[str]) -> bool:
    return any(w in text for w in words)


# -- images: generateContent --------------------------------------------------------------


async def _generate_content(state: GoogleState, request: web.Request,
                            model: str) -> web.Response:
    if model not in IMAGE_MODELS:
        raise _Refusal(status(404, f"models/{model} is not found for API version v1beta, or "
                              "is not supported for generateContent. Call ListModels to see "
                              "the list of available models and their supported methods."))
    body = await _json(request)
    state.received["generateContent"].append(body)
    for name in body:
        if name not in _CONTENT_FIELDS:
            raise invalid(f'Invalid JSON payload received. Unknown name "{name}": Cannot find '
                          'field.')
    contents = body.get("contents")
    if not isinstance(contents, list) or not contents:
        raise invalid("* GenerateContentRequest.contents: contents is not specified")
    texts, images = [], []
    for i, content in enumerate(contents):
        parts = content.get("parts") if isinstance(content, dict) else None
        if not isinstance(parts, list) or not parts:
            raise invalid(f"* GenerateContentRequest.contents[{i}].parts: contents.parts must "
                          "not be empty.")
        for j, part in enumerate(parts):
            at = f"contents[{i}].parts[{j}]"
            inline = part.get("inlineData", part.get("inline_data")) \
                if isinstance(part, dict) else None
            if isinstance(part, dict) and isinstance(part.get("text"), str) and inline is None:
                texts.append(part["text"])
            elif isinstance(inline, dict):
                mime = inline.get("mimeType", inline.get("mime_type"))
                images.append(_decode_image(inline.get("data"), mime, at))
            else:
                raise invalid(f"* GenerateContentRequest.{at}.data: required oneof field 'data' "
                              "must have one initialized field")
    most = IMAGE_MODELS[model]
    if len(images) > most:
        raise invalid(f"Too many images in the request: {len(images)}; {model} takes at most "
                      f"{most}.")
    config = body.get("generationConfig", body.get("generation_config")) or {}
    modalities = [str(m).upper() for m in config.get("responseModalities",
                                                     config.get("response_modalities", []))]
    for m in modalities:
        if m not in ("TEXT", "IMAGE"):
            raise invalid(f"Invalid value at 'generation_config.response_modalities' ({m}).")
    image_config = config.get("imageConfig", config.get("image_config")) or {}
    ratio = image_config.get("aspectRatio", image_config.get("aspect_ratio", "1:1"))
    if ratio not in IMAGE_SIZES:
        raise invalid(f"Unsupported aspect ratio: {ratio}. Supported values are "
                      + ", ".join(IMAGE_SIZES) + ".")
    size = image_config.get("imageSize", image_config.get("image_size", "1K"))
    if size not in SCALES:
        raise invalid(f"Unsupported image size: {size}. Supported values are 1K, 2K, 4K.")
    prompt = "\n".join(texts)
    state.received_prompts.append(prompt)
    digests = [hashlib.sha256(b).hexdigest() for b in images]
    state.received_images.append(digests)
    usage = {"promptTokenCount": len(prompt.split()) + 258 * len(images),
             "totalTokenCount": len(prompt.split()) + 258 * len(images)}
    if _has(prompt, state.refuse):
        return web.json_response({"promptFeedback": {"blockReason": "PROHIBITED_CONTENT"},
                                  "usageMetadata": usage, "modelVersion": model})
    if _has(prompt, state.unsafe):
        return web.json_response({"candidates": [{
            "content": {"role": "model"}, "finishReason": "IMAGE_SAFETY",
            "finishMessage": "Unable to show the generated image. The image was filtered out "
                             "because it violated Google's Generative AI Prohibited Use "
                             "policy. You will not be charged for blocked images. Try "
                             "rephrasing the prompt.", "index": 0}],
            "usageMetadata": usage, "modelVersion": model})
    if "IMAGE" not in modalities or _has(prompt, state.wordy):
        return web.json_response({"candidates": [{
            "content": {"role": "model", "parts": [
                {"text": "I can describe this scene, but I am not able to draw it."}]},
            "finishReason": "NO_IMAGE" if "IMAGE" in modalities else "STOP", "index": 0}],
            "usageMetadata": usage, "modelVersion": model})
    w, h = IMAGE_SIZES[ratio]
    scale = SCALES[size]
    png = media.png(w * scale, h * scale, f"{model}|{ratio}|{size}|{prompt}|{'|'.join(digests)}")
    parts: list[dict[str, Any]] = []
    if state.thoughts:
        sketch = media.png(64, 64, "thought")
        parts.append({"inlineData": {"mimeType": "image/png",
                                     "data": base64.b64encode(sketch).decode()}, "thought": True})
    if "TEXT" in modalities:
        parts.append({"text": "Here is the image you asked for."})
    parts.append({"inlineData": {"mimeType": "image/png", "data": base64.b64encode(png).decode()}})
    state.billed += 1
    state.made.append(hashlib.sha256(png).hexdigest())
    usage["candidatesTokenCount"] = 1290
    usage["totalTokenCount"] += 1290
    return web.json_response({"candidates": [{"content": {"role": "model", "parts": parts},
                                               "finishReason": "STOP", "index": 0}],
                              "usageMetadata": usage, "modelVersion": model,
                              "responseId": uuid.uuid4().hex[:22]})


# -- clips: predictLongRunning, operations, files ------------------------------------------


def _duration(value: Any) -> int:
    try:
        seconds = int(value)
    except (TypeError, ValueError):
        seconds = -1
    if seconds not in (4, 6, 8) or (isinstance(value, float) and value != seconds):
        raise invalid(f"The value of durationSeconds ({value}) is out of bounds. Supported "
                      "durations are 4, 6 and 8 seconds.")
    return seconds


async def _predict(state: GoogleState, request: web.Request, model: str) -> web.Response:
    if model not in VIDEO_MODELS:
        raise _Refusal(status(404, f"models/{model} is not found for API version v1beta, or "
                              "is not supported for predictLongRunning. Call ListModels to see "
                              "the list of available models and their supported methods."))
    body = await _json(request)
    state.received["predictLongRunning"].append(body)
    for name in body:
        if name not in ("instances", "parameters"):
            raise invalid(f'Invalid JSON payload received. Unknown name "{name}": Cannot find '
                          'field.')
    instances = body.get("instances")
    if not isinstance(instances, list) or len(instances) != 1 or not isinstance(instances[0],
                                                                               dict):
        raise invalid("Exactly one instance is required.")
    instance = instances[0]
    for name in instance:
        if name not in _INSTANCE_FIELDS:
            raise invalid(f"`{name}` isn't supported by this model.")
    prompt = instance.get("prompt", "")
    if not isinstance(prompt, str):
        raise invalid("Invalid value at 'instances[0].prompt': expected a string.")
    images = []
    for field in ("image", "lastFrame"):
        item = instance.get(field)
        if item is None:
            continue
        if not isinstance(item, dict) or "gcsUri" in item:
            raise invalid(f"`{field}`: only bytesBase64Encoded images are supported by the "
                          "Gemini API.")
        images.append(_decode_image(item.get("bytesBase64Encoded"), item.get("mimeType"),
                                    f"instances[0].{field}"))
    if "lastFrame" in instance and "image" not in instance:
        raise invalid("`lastFrame` requires `image`: a last frame needs a first frame.")
    parameters = body.get("parameters") or {}
    if not isinstance(parameters, dict):
        raise invalid("Invalid value at 'parameters': expected an object.")
    for name in parameters:
        if name not in _PARAMETER_FIELDS:
            raise invalid(f"`{name}` isn't supported by this model.")
    seconds = _duration(parameters.get("durationSeconds", 8))
    refs = instance.get("referenceImages")
    if refs is not None:
        if not isinstance(refs, list) or not 1 <= len(refs) <= 3:
            raise invalid("referenceImages takes 1 to 3 asset images.")
        for i, ref in enumerate(refs):
            if not isinstance(ref, dict) or str(ref.get("referenceType", "")).lower() != "asset":
                raise invalid(f"referenceImages[{i}].referenceType must be `asset`.")
            item = ref.get("image")
            if not isinstance(item, dict):
                raise invalid(f"referenceImages[{i}].image is required.")
            images.append(_decode_image(item.get("bytesBase64Encoded"), item.get("mimeType"),
                                        f"instances[0].referenceImages[{i}].image"))
        if seconds != 8:
            raise invalid("Reference images are supported with durationSeconds 8 only.")
    ratio = parameters.get("aspectRatio", "16:9")
    if ratio not in VIDEO_RATIOS:
        raise invalid(f"Unsupported aspect ratio: {ratio}. Supported values are 16:9, 9:16.")
    resolution = parameters.get("resolution", "720p")
    if resolution not in RESOLUTIONS:
        raise invalid(f"Unsupported resolution: {resolution}. Supported values are 720p, "
                      "1080p, 4k.")
    if resolution != "720p" and seconds != 8:
        raise invalid(f"{resolution} is supported with durationSeconds 8 only.")
    people = parameters.get("personGeneration")
    if people is not None and people not in PERSON_GENERATION:
        raise invalid(f"Unsupported personGeneration: {people}.")
    if not prompt.strip() and not images:
        raise invalid("A prompt or an image is required.")
    digests = [hashlib.sha256(b).hexdigest() for b in images]
    state.received_prompts.append(prompt)
    state.received_images.append(digests)
    w, h = state.video_size or RESOLUTIONS[resolution]
    size = (w, h) if ratio == "16:9" else (h, w)
    op_id = f"{uuid.uuid4().hex[:12]}"
    name = f"models/{model}/operations/{op_id}"
    state.operations[name] = Operation(name, prompt, size, seconds,
                                       seed=f"{model}|{prompt}|{'|'.join(digests)}|{seconds}",
                                       refused=_has(prompt, state.refuse),
                                       unsafe=_has(prompt, state.unsafe))
    state.submits += 1
    return web.json_response({"name": name})


async def _operation(state: GoogleState, request: web.Request) -> web.Response:
    name = f"models/{request.match_info['model']}/operations/{request.match_info['op']}"
    op = state.operations.get(name)
    if op is None:
        return status(404, "Requested entity was not found.")
    async with op.lock:
        op.polls += 1
        if op.result is None and (state.hold or op.polls <= state.polls):
            return web.json_response({"name": name})
        if op.result is None:
            op.result = await _finish(state, request, op)
    return web.json_response({"name": name, "done": True, **op.result})


async def _finish(state: GoogleState, request: web.Request, op: Operation) -> dict[str, Any]:
    if op.refused:
        return {"error": {"code": 3, "message": "Veo could not generate videos because the "
                          "input prompt violates the Gemini API's usage guidelines. If you "
                          "think this was an error, send feedback. Support codes: "
                          f"{SUPPORT_CODE}"}}
    wrapper = "type.googleapis.com/google.ai.generativelanguage.v1beta.PredictLongRunningResponse"
    if op.unsafe:
        return {"response": {"@type": wrapper, "generateVideoResponse": {
            "raiMediaFilteredCount": 1,
            "raiMediaFilteredReasons": ["We encountered an issue with the video generated for "
                                        "your prompt. You have not been charged for this "
                                        "request. Please try changing your prompt."]}}}
    body = await asyncio.to_thread(media.mp4, op.size[0], op.size[1], op.seconds, 24, op.seed)
    file_id = f"{next(state._ids)}{uuid.uuid4().hex[:8]}"
    state.files[file_id] = (body, time.time())
    state.billed += 1
    state.made.append(hashlib.sha256(body).hexdigest())
    uri = f"{request.url.origin()}/v1beta/files/{file_id}:download?alt=media"
    return {"response": {"@type": wrapper, "generateVideoResponse": {
        "generatedSamples": [{"video": {"uri": uri}}]}}}


async def _file(state: GoogleState, request: web.Request) -> web.StreamResponse:
    file_id, _, action = request.match_info["spec"].partition(":")
    if action != "download" or request.query.get("alt") != "media":
        return status(400, "Only `files/{id}:download?alt=media` is served here.")
    found = state.files.get(file_id)
    if found is None or time.time() - found[1] >= state.file_ttl:
        return status(403, f"You do not have permission to access the File {file_id} or it "
                      "may not exist.")
    if state.redirect_files:
        port = request.url.port
        raise web.HTTPFound(f"http://localhost:{port}/storage/{file_id}")
    return web.Response(body=found[0], content_type="video/mp4")


def main() -> None:
    args = command_line("a loopback Gemini API server", 8191, "AIza-loopback").parse_args()
    run_forever(make_app(GoogleState(key=args.key)), args.host, args.port)


if __name__ == "__main__":
    main()
