"""A loopback OpenAI API: image generations and edits, speech, and their faults.

Written from OpenAI's documented protocol (BACKENDS.md's OpenAI section), as strict
as the real service where an adapter could go wrong: the bearer key, required
and unknown parameters, the sizes each model family makes, edits whose files
are not images.  Answers carry real bodies: a PNG (or JPEG/WebP) of the size
asked for, its colour a function of the prompt and the reference images; a
WAV about as long as the words take to say.

    state = OpenAIState(key="sk-test")
    with serve(make_app(state)) as url:       # the API under f"{url}/v1"
        state.faults.append(("status", 429, {"Retry-After": "1"}, None))
        ...
    state.requests["images/edits"], state.billed, state.received_files, state.made

Faults, one taken per API request (after the key is checked), in order:
("status", code, headers, body) answers that (body None: an OpenAI-shaped
error), ("quota",) a 429 `insufficient_quota`, ("policy",) a 400
`moderation_blocked` (`refuse` lists words that get it for a matching
prompt, every time), ("reset",) reads the request, counts it billed and drops
the connection unanswered, ("corrupt",) a 200 whose base64 is not an image,
("slow", seconds) waits before answering normally.

`python -m loopback.openai --port 8190 --key sk-test` (from tests/) serves until killed.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import io
import itertools
import re
import time
from collections import Counter
from typing import Any

import attrs
from aiohttp import web
from PIL import Image

from . import media, run_forever
from .common import command_line, counted, hang_up, json_object

# The sizes each model family makes, as the API lists them in its 400 answer.
GPT_IMAGE_SIZES = ("1024x1024", "1024x1536", "1536x1024", "auto")
DALLE3_SIZES = ("1024x1024", "1792x1024", "1024x1792")
DALLE2_SIZES = ("256x256", "512x512", "1024x1024")
VOICES = ("alloy", "ash", "ballad", "cedar", "coral", "echo", "fable", "marin", "nova", "onyx",
          "sage", "shimmer", "verse")
AUDIO_FORMATS = ("mp3", "opus", "aac", "flac", "wav", "pcm")
MAX_EDIT_IMAGES = 16

_GENERATION_FIELDS = {"model", "prompt", "n", "size", "quality", "output_format",
                      "output_compression", "background", "moderation", "style",
                      "response_format", "user", "partial_images", "stream"}
_EDIT_FIELDS = _GENERATION_FIELDS - {"style", "moderation"} | {"input_fidelity", "mask"}
_SPEECH_FIELDS = {"model", "input", "voice", "instructions", "response_format", "speed",
                  "stream_format"}


@attrs.define
class OpenAIState:
    """The server's knobs and what it was asked; read it from the test's thread."""

    key: str = "sk-loopback"
    faults: list[tuple[Any, ...]] = attrs.Factory(list)
    latency: float = 0.0  # seconds added to every API request
    refuse: list[str] = attrs.Factory(list)  # words the safety system refuses in a prompt
    use_urls: bool = False  # answer `url` entries (served at /files/<id>.png) instead of base64
    url_ttl: float = 3600.0  # seconds a `url` stays downloadable; after that, 403
    file_latency: float = 0.0  # seconds a `url` download takes to start answering
    revise: bool = False  # answer a `revised_prompt`, as dall-e-3 does
    requests: Counter[str] = attrs.Factory(Counter)  # by route: "images/generations"...
    request_times: list[float] = attrs.Factory(list)  # time.monotonic() of each API request
    billed: int = 0  # requests that made output, or were read and then dropped
    made: list[str] = attrs.Factory(list)  # sha256 of each image and audio body it answered
    received_prompts: list[str] = attrs.Factory(list)
    received_bodies: list[dict[str, Any]] = attrs.Factory(list)  # JSON, or the form's fields
    received_files: list[list[tuple[str, str, str]]] = attrs.Factory(list)  # per edit
    received_headers: list[dict[str, str]] = attrs.Factory(list)  # OpenAI-Organization...
    auth_failures: int = 0
    in_flight: int = 0
    max_in_flight: int = 0
    files: dict[str, tuple[bytes, str, float]] = attrs.Factory(dict)  # id → body, type, made at
    _ids: itertools.count[int] = attrs.Factory(itertools.count)


class _Refusal(Exception):
    """An OpenAI-shaped error answer, raised from deep in validation."""

    def __init__(self, status: int, message: str, param: str | None = None,
                 code: str | None = None, type: str = "invalid_request_error") -> None:
        super().__init__(message)
        self.response = error(status, message, param=param, code=code, type=type)


def error(status: int, message: str, *, param: str | None = None, code: str | None = None,
          type: str = "invalid_request_error",
          headers: dict[str, str] | None = None) -> web.Response:
    return web.json_response({"error": {"message": message, "type": type, "param": param,
                                        "code": code}}, status=status, headers=headers)


def make_app(state: OpenAIState, prefix: str = "/v1") -> web.Application:
    """The API under `prefix` (a compatible server may put it elsewhere), files at /files."""
    app = web.Application(client_max_size=64 << 20)

    def api(route: str, handler: Any) -> None:
        async def wrapped(request: web.Request) -> web.StreamResponse:
            with counted(state, route):
                try:
                    return await _serve(state, route, handler, request)
                except _Refusal as e:
                    return e.response

        app.router.add_post(f"{prefix.rstrip('/')}/{route}", wrapped)

    api("images/generations", _generations)
    api("images/edits", _edits)
    api("audio/speech", _speech)

    async def download(request: web.Request) -> web.Response:
        state.requests["files"] += 1
        if state.file_latency:
            await asyncio.sleep(state.file_latency)
        found = state.files.get(request.match_info["id"])
        if found is None:
            return web.Response(status=404, text="BlobNotFound")
        body, content_type, made = found
        if time.time() - made >= state.url_ttl:
            # As a storage service answers a signed URL past its expiry.
            return web.Response(status=403, text="AuthenticationFailed: signed expiry time "
                                "has passed", content_type="text/plain")
        return web.Response(body=body, content_type=content_type)

    app.router.add_get("/files/{id}.{ext}", download)
    return app


async def _serve(state: OpenAIState, route: str, handler: Any,
                 request: web.Request) -> web.StreamResponse:
    auth = request.headers.get("Authorization", "")
    if auth != f"Bearer {state.key}":
        state.auth_failures += 1
        given = auth.removeprefix("Bearer ").strip()
        if not given:
            return error(401, "You didn't provide an API key. You need to provide your API key "
                         "in an Authorization header using Bearer auth (i.e. Authorization: "
                         "Bearer YOUR_KEY).")
        shown = f"{given[:3]}*****{given[-4:]}" if len(given) > 8 else "*****"
        return error(401, f"Incorrect API key provided: {shown}. You can find your API key at "
                     "https://platform.openai.com/account/api-keys.", code="invalid_api_key")
    state.received_headers.append({k: v for k, v in request.headers.items()
                                   if k.lower() in ("openai-organization", "openai-project")})
    if state.latency:
        await asyncio.sleep(state.latency)
    fault = state.faults.pop(0) if state.faults else None
    if fault is not None:
        answer = await _fault(state, fault, request)
        if answer is not None:
            return answer
    return await handler(state, request)


async def _fault(state: OpenAIState, fault: tuple[Any, ...],
                 request: web.Request) -> web.StreamResponse | None:
    what = fault[0]
    if what == "status":
        _, status, headers, body = (*fault, None, None)[:4]
        if body is None:
            return error(status, f"the loopback server answers {status}",
                         type="server_error" if status >= 500 else "invalid_request_error",
                         headers=headers)
        if isinstance(body, (dict, list)):
            return web.json_response(body, status=status, headers=headers)
        return web.Response(status=status, body=body, headers=headers)
    if what == "quota":
        return error(429, "You exceeded your current quota, please check your plan and billing "
                     "details.", type="insufficient_quota", code="insufficient_quota")
    if what == "policy":
        return error(400, "Your request was rejected by the safety system. If you believe this "
                     "is an error, contact us at help.openai.com and include the request ID "
                     "req_loopback. safety_violations=[violence].",
                     type="image_generation_user_error", code="moderation_blocked")
    if what == "reset":
        await request.read()
        state.billed += 1  # the service may have made (and charged for) it
        hang_up(request)
    if what == "corrupt":
        await request.read()
        state.billed += 1
        junk = base64.b64encode(b"<html>upstream error</html>").decode()
        return web.json_response({"created": int(time.time()), "data": [{"b64_json": junk}]})
    if what == "slow":
        await asyncio.sleep(float(fault[1]))
        return None
    raise ValueError(f"unknown loopback fault {fault!r}")


def _moderate(state: OpenAIState, text: str) -> None:
    """Refuse a prompt that holds a word of `state.refuse`, as the safety system does (400,
    `moderation_blocked`, nothing made or billed)."""
    if any(word in text for word in state.refuse):
        raise _Refusal(400, "Your request was rejected by the safety system. If you believe "
                       "this is an error, contact us at help.openai.com and include the request "
                       "ID req_loopback. safety_violations=[violence].",
                       type="image_generation_user_error", code="moderation_blocked")


# -- images ------------------------------------------------------------------------------


async def _json(request: web.Request) -> dict[str, Any]:
    return await json_object(request, lambda m: _Refusal(400, m),
                             "We could not parse the JSON body of your request.",
                             "The body of your request must be a JSON object.")


def _sizes(model: str) -> tuple[str, ...]:
    if model.startswith("gpt-image"):
        return GPT_IMAGE_SIZES
    if model == "dall-e-3":
        return DALLE3_SIZES
    if model == "dall-e-2":
        return DALLE2_SIZES
    raise _Refusal(404, f"The model `{model}` does not exist or you do not have access to it.",
                   code="model_not_found")


def _check_image_fields(fields: dict[str, Any], known: set[str]) -> tuple[str, int, int, str]:
    """The model, the pixel size and the output format a request asks for, or a refusal."""
    for name in fields:
        if name not in known:
            raise _Refusal(400, f"Unknown parameter: '{name}'.", param=name,
                           code="unknown_parameter")
    prompt = fields.get("prompt")
    if not isinstance(prompt, str) or not prompt.strip():
        raise _Refusal(400, "Missing required parameter: 'prompt'.", param="prompt",
                       code="missing_required_parameter")
    model = str(fields.get("model") or "dall-e-2")
    sizes = _sizes(model)
    size = str(fields.get("size") or sizes[0])
    if size not in sizes:
        listed = ", ".join(f"'{s}'" for s in sizes)
        raise _Refusal(400, f"Invalid value: '{size}'. Supported values are: {listed}.",
                       param="size", code="invalid_value")
    n = fields.get("n", 1)
    if str(n) not in ("1", "2", "3", "4"):
        raise _Refusal(400, f"Invalid value for 'n': {n}.", param="n", code="invalid_value")
    fmt = str(fields.get("output_format") or "png")
    if fmt not in ("png", "jpeg", "webp") or (fmt != "png" and not model.startswith("gpt-image")):
        raise _Refusal(400, f"Invalid value: '{fmt}'.", param="output_format",
                       code="invalid_value")
    for name, allowed in (("quality", ("low", "medium", "high", "auto", "standard", "hd")),
                          ("background", ("transparent", "opaque", "auto")),
                          ("input_fidelity", ("low", "high")),
                          ("response_format", ("url", "b64_json"))):
        if name in fields and str(fields[name]) not in allowed:
            raise _Refusal(400, f"Invalid value: '{fields[name]}'.", param=name,
                           code="invalid_value")
    if "response_format" in fields and model.startswith("gpt-image"):
        raise _Refusal(400, "Unknown parameter: 'response_format'.", param="response_format",
                       code="unknown_parameter")
    w, h = (1024, 1024) if size == "auto" else (int(x) for x in size.split("x"))
    return model, w, h, fmt


async def _generations(state: OpenAIState, request: web.Request) -> web.Response:
    fields = await _json(request)
    state.received_bodies.append(fields)
    model, w, h, fmt = _check_image_fields(fields, _GENERATION_FIELDS)
    _moderate(state, fields["prompt"])
    state.received_prompts.append(fields["prompt"])
    return _image_answer(state, request, fields, model, w, h, fmt, seed=fields["prompt"])


async def _edits(state: OpenAIState, request: web.Request) -> web.Response:
    if not request.content_type.startswith("multipart/form-data"):
        raise _Refusal(400, "Invalid Content-Type header (application/json), expected "
                       "multipart/form-data.")
    form = await request.post()
    fields: dict[str, Any] = {}
    images: list[tuple[str, str, bytes]] = []  # (field, file name, bytes)
    for name, value in form.items():
        if isinstance(value, web.FileField):
            if name not in ("image", "image[]", "mask"):
                raise _Refusal(400, f"Unknown parameter: '{name}'.", param=name,
                               code="unknown_parameter")
            if name != "mask":
                images.append((name, value.filename, value.file.read()))
        else:
            fields[name] = str(value)
    state.received_bodies.append(fields)
    if not images:
        raise _Refusal(400, "Missing required parameter: 'image'.", param="image",
                       code="missing_required_parameter")
    if len(images) > MAX_EDIT_IMAGES:
        raise _Refusal(400, f"Too many images: at most {MAX_EDIT_IMAGES} may be given.",
                       param="image", code="invalid_value")
    for i, (_, _, body) in enumerate(images, 1):
        try:
            with Image.open(io.BytesIO(body)) as img:
                img.verify()
                ok = img.format in ("PNG", "JPEG", "WEBP")
        except Exception:
            ok = False
        if not ok:
            raise _Refusal(400, f"Invalid image file or mode for image {i}, please check your "
                           "image file.", param="image", code="invalid_image_file")
    model, w, h, fmt = _check_image_fields(fields, _EDIT_FIELDS)
    digests = [hashlib.sha256(body).hexdigest() for _, _, body in images]
    state.received_files.append([(name, filename, d)
                                 for (name, filename, _), d in zip(images, digests)])
    _moderate(state, fields["prompt"])
    state.received_prompts.append(fields["prompt"])
    return _image_answer(state, request, fields, model, w, h, fmt,
                         seed=fields["prompt"] + "|" + "|".join(digests))


def _image_answer(state: OpenAIState, request: web.Request, fields: dict[str, Any], model: str,
                  w: int, h: int, fmt: str, seed: str) -> web.Response:
    body = _image(w, h, f"{model}|{w}x{h}|{seed}", fmt)
    state.made.append(hashlib.sha256(body).hexdigest())
    entry: dict[str, Any] = {}
    if state.use_urls or fields.get("response_format") == "url":
        file_id = f"img-{next(state._ids)}"
        state.files[file_id] = (body, f"image/{fmt}", time.time())
        entry["url"] = f"{request.url.origin()}/files/{file_id}.{fmt}"
    else:
        entry["b64_json"] = base64.b64encode(body).decode()
    if state.revise:
        entry["revised_prompt"] = f"A cinematic still. {fields['prompt']}"
    state.billed += 1
    words = len(str(fields["prompt"]).split())
    return web.json_response({
        "created": int(time.time()), "data": [entry],
        "background": fields.get("background", "opaque"), "output_format": fmt,
        "quality": fields.get("quality", "high"), "size": f"{w}x{h}",
        "usage": {"input_tokens": words, "output_tokens": 4160,
                  "total_tokens": words + 4160,
                  "input_tokens_details": {"text_tokens": words, "image_tokens": 0}}})


def _image(w: int, h: int, seed: str, fmt: str) -> bytes:
    png = media.png(w, h, seed)
    if fmt == "png":
        return png
    out = io.BytesIO()
    Image.open(io.BytesIO(png)).convert("RGB").save(out, fmt.upper())
    return out.getvalue()


# -- speech ------------------------------------------------------------------------------


async def _speech(state: OpenAIState, request: web.Request) -> web.Response:
    fields = await _json(request)
    state.received_bodies.append(fields)
    for name in fields:
        if name not in _SPEECH_FIELDS:
            raise _Refusal(400, f"Unknown parameter: '{name}'.", param=name,
                           code="unknown_parameter")
    for name in ("model", "input", "voice"):
        if not isinstance(fields.get(name), str) or not fields[name].strip():
            raise _Refusal(400, f"Missing required parameter: '{name}'.", param=name,
                           code="missing_required_parameter")
    if len(fields["input"]) > 4096:
        raise _Refusal(400, "'input' is too long: at most 4096 characters.", param="input",
                       code="string_above_max_length")
    if fields["voice"] not in VOICES:
        listed = ", ".join(f"'{v}'" for v in VOICES)
        raise _Refusal(400, f"Invalid value: '{fields['voice']}'. Supported values are: "
                       f"{listed}.", param="voice", code="invalid_value")
    fmt = fields.get("response_format", "mp3")
    if fmt not in AUDIO_FORMATS:
        raise _Refusal(400, f"Invalid value: '{fmt}'.", param="response_format",
                       code="invalid_value")
    if fmt != "wav":
        raise _Refusal(400, f"the loopback server makes wav only, not '{fmt}'",
                       param="response_format", code="invalid_value")
    speed = fields.get("speed", 1.0)
    if not isinstance(speed, (int, float)) or not 0.25 <= speed <= 4.0:
        raise _Refusal(400, f"Invalid value for 'speed': {speed}.", param="speed",
                       code="invalid_value")
    _moderate(state, fields["input"])
    state.received_prompts.append(fields["input"])
    words = len(re.findall(r"\w+", fields["input"]))
    state.billed += 1
    body = media.wav(max(0.4, words / 2.5 / speed))
    state.made.append(hashlib.sha256(body).hexdigest())
    return web.Response(body=body, content_type="audio/wav")


def main() -> None:
    parser = command_line("a loopback OpenAI API server", 8190, "sk-loopback")
    parser.add_argument("--urls", action="store_true", help="answer image URLs, not base64")
    args = parser.parse_args()
    run_forever(make_app(OpenAIState(key=args.key, use_urls=args.urls)), args.host, args.port)


if __name__ == "__main__":
    main()
