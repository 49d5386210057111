"""A loopback Ark API (BytePlus ModelArk / Volcengine Ark): Seedance video tasks, Seedream
images, and their faults.

Written from Ark's documented protocol, as strict as the service where an adapter
could go wrong: the bearer key; `content[]` items with roles, first/last frames never
mixed with reference images, images as base64 data URLs of a size and shape a frame
may have (each side 300–6000 px, width/height between 0.4 and 2.5); `resolution`,
`ratio`, `duration`, `seed` in range; unknown parameters refused.  Errors are Ark's
`{"error": {"code", "message", "param", "type"}}`.  A task answers `queued`, then
`running`, then `succeeded` with `content.video_url`: a real MP4 at the size the
resolution and ratio make (`adaptive`: the first frame's shape), as long as asked,
served from a signed URL that expires.  Seedream answers at once, in base64.

    state = SeedanceState(key="ark-test")
    with serve(make_app(state)) as url:            # the API under f"{url}/api/v3"
        state.faults.append(("error", 429, "RateLimitExceeded.EndpointRPMExceeded", None,
                             {"Retry-After": "1"}))
        ...
    state.created (task ids: what was paid for), state.requests, state.received

Faults, one taken per API request (after the key is checked): ("error", status,
code, message, headers) answers that error (message None: Ark's wording);
("reset",) reads the request, creates the task if it is one (billed) and drops the
connection unanswered.  `faces`: words of a prompt whose images show a real person:
refused every time, at submit (`face_status`: 400 as Ark's error table says, or 422)
or, with `face_at = "run"`, by the task failing.  `fail`: prompt words → (code,
message) the task fails with.  `hold`: tasks stay `running` until it is cleared.
`end`: the state a task ends in (`succeeded`, `expired`, `cancelled`).  `url_ttl`:
seconds a video URL lives.  `corrupt`: the video is an HTML page.

`python -m loopback.seedance --port 8191 --key ark-test` (from tests/) serves until killed.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import contextlib
import functools
import hashlib
import io
import itertools
import math
import secrets
import time
from collections import Counter
from typing import Any

import attrs
from aiohttp import web
from PIL import Image

from . import media, run_forever
from .common import command_line, hang_up, json_object, keep_clip, routed, signed_file

RATIOS = {"16:9": 16 / 9, "4:3": 4 / 3, "1:1": 1.0, "3:4": 3 / 4, "9:16": 9 / 16, "21:9": 21 / 9}
# Pixels of each resolution and ratio (Seedance 1.0 models).
SIZES = {
    "480p": {"16:9": (864, 480), "4:3": (736, 544), "1:1": (640, 640), "3:4": (544, 736),
             "9:16": (480, 864), "21:9": (960, 416)},
    "720p": {"16:9": (1248, 704), "4:3": (1120, 832), "1:1": (960, 960), "3:4": (832, 1120),
             "9:16": (704, 1248), "21:9": (1504, 640)},
    "1080p": {"16:9": (1920, 1088), "4:3": (1664, 1248), "1:1": (1440, 1440),
              "3:4": (1248, 1664), "9:16": (1088, 1920), "21:9": (2176, 928)},
}
TASK_FIELDS = {"model", "content", "resolution", "ratio", "duration", "frames", "seed",
               "camera_fixed", "watermark", "generate_audio", "return_last_frame",
               "callback_url", "service_tier", "execution_expires_after"}
IMAGE_FIELDS = {"model", "prompt", "image", "size", "seed", "sequential_image_generation",
                "sequential_image_generation_options", "stream", "guidance_scale",
                "response_format", "watermark", "optimize_prompt_options"}
ROLES = ("first_frame", "last_frame", "reference_image")
FORMATS = ("PNG", "JPEG", "WEBP", "BMP", "TIFF", "GIF")


@attrs.define
class Task:
    id: str
    model: str
    body: dict[str, Any]
    prompt: str
    size: tuple[int, int]
    seconds: int
    refused: tuple[str, str] | None = None  # (code, message) it will fail with
    status: str = "queued"
    polls: int = 0
    created_at: int = attrs.Factory(lambda: int(time.time()))
    video: str | None = None  # the file id of its video, once made


@attrs.define
class SeedanceState:
    """The server's knobs and what it was asked; read it from the test's thread."""

    key: str = "ark-loopback"
    models: tuple[str, ...] = ()  # the model ids the account may use; empty: any
    faults: list[tuple[Any, ...]] = attrs.Factory(list)
    faces: list[str] = attrs.Factory(list)  # prompt words whose images show a real person
    face_status: int = 400
    face_at: str = "submit"  # or "run": the task is accepted, then fails
    fail: dict[str, tuple[str, str]] = attrs.Factory(dict)  # prompt words → (code, message)
    hold: bool = False  # tasks stay running until cleared
    polls_queued: int = 1  # GETs a task answers `queued`
    polls_running: int = 1  # then `running`
    end: str = "succeeded"
    url_ttl: float = 86400.0
    corrupt: bool = False
    latency: float = 0.0
    requests: Counter[str] = attrs.Factory(Counter)  # by route: "create", "get", "images"...
    created: list[str] = attrs.Factory(list)  # accepted tasks, in order: each one is paid
    images_made: int = 0  # Seedream images answered: each one is paid
    received: list[dict[str, Any]] = attrs.Factory(list)  # each POST's JSON body
    made: list[str] = attrs.Factory(list)  # sha256 of each video and image it made
    auth_failures: int = 0
    tasks: dict[str, Task] = attrs.Factory(dict)
    files: dict[str, tuple[bytes, float]] = attrs.Factory(dict)  # id → body, made at
    _ids: itertools.count[int] = attrs.Factory(itertools.count)


class _Refusal(Exception):
    def __init__(self, status: int, code: str, message: str, param: str | None = None,
                 headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.response = error(status, code, message, param, headers)


_TYPES = {400: "BadRequest", 401: "Unauthorized", 403: "Forbidden", 404: "NotFound",
          422: "BadRequest", 429: "TooManyRequests", 500: "InternalServiceError",
          503: "ServiceUnavailable"}


def error(status: int, code: str, message: str, param: str | None = None,
          headers: dict[str, str] | None = None) -> web.Response:
    rid = secrets.token_hex(10)
    return web.json_response({"error": {"code": code, "message": f"{message} Request id: {rid}",
                                        "param": param or "",
                                        "type": _TYPES.get(status, "BadRequest")}},
                             status=status, headers=headers)


def make_app(state: SeedanceState, prefix: str = "/api/v3") -> web.Application:
    app = web.Application(client_max_size=64 << 20)
    prefix = prefix.rstrip("/")

    api = routed(app, state, _Refusal,
                 lambda handler, request, route: _serve(state, route, handler, request))
    api("POST", f"{prefix}/contents/generations/tasks", "create", _create)
    api("GET", f"{prefix}/contents/generations/tasks/{{id}}", "get", _get)
    api("DELETE", f"{prefix}/contents/generations/tasks/{{id}}", "delete", _delete)
    api("POST", f"{prefix}/images/generations", "images", _images)
    app.router.add_get("/tos/{id}.mp4", functools.partial(_download, state))
    return app


async def _serve(state: SeedanceState, route: str, handler: Any,
                 request: web.Request) -> web.StreamResponse:
    if request.headers.get("Authorization", "") != f"Bearer {state.key}":
        state.auth_failures += 1
        raise _Refusal(401, "AuthenticationError", "The API key or AK/SK in the request is "
                       "missing or invalid.")
    if state.latency:
        await asyncio.sleep(state.latency)
    fault = state.faults.pop(0) if state.faults else None
    if fault is not None and fault[0] == "error":
        _, status, code, message, headers = (*fault, None, None)[:5]
        raise _Refusal(status, code, message or f"the loopback server answers {status}",
                       headers=headers)
    if fault is not None and fault[0] == "reset":
        with contextlib.suppress(_Refusal):
            await handler(state, request)  # made (and paid for) all the same
        hang_up(request)
    if fault is not None:
        raise ValueError(f"unknown loopback fault {fault!r}")
    return await handler(state, request)


async def _body(state: SeedanceState, request: web.Request, known: set[str]) -> dict[str, Any]:
    body = await json_object(request, lambda m: _Refusal(400, "InvalidParameter", m),
                             "The request body is not valid JSON.",
                             "The request body must be a JSON object.")
    state.received.append(body)
    for name in body:
        if name not in known:
            raise _Refusal(400, f"InvalidParameter.{name}", f"A parameter specified in the "
                           f"request is not valid: {name}.", name)
    model = body.get("model")
    if not isinstance(model, str) or not model:
        raise _Refusal(400, "MissingParameter.model", "The request failed because it is "
                       "missing a required parameter: model.", "model")
    if state.models and model not in state.models:
        raise _Refusal(404, "InvalidEndpointOrModel.NotFound", f"The model or endpoint {model} "
                       f"does not exist or you do not have access to it.", "model")
    return body


def _image(url: Any, param: str, frame: bool) -> Image.Image:
    """An image of a request, as the service reads it, or a refusal."""
    if not isinstance(url, str) or not url.startswith("data:image/") or ";base64," not in url:
        raise _Refusal(400, f"InvalidParameter.{param}", f"The parameter `{param}` specified "
                       "in the request is not valid: the loopback server takes base64 data "
                       "URLs only.", param)
    try:
        raw = base64.b64decode(url.split(";base64,", 1)[1], validate=True)
        img = Image.open(io.BytesIO(raw))
        img.load()
    except (binascii.Error, ValueError, OSError):
        raise _Refusal(400, "InvalidParameter.UnsupportedImageFormat", "The request failed "
                       "because the format of the input image is not supported.", param) from None
    if img.format not in FORMATS:
        raise _Refusal(400, "InvalidParameter.UnsupportedImageFormat", "The request failed "
                       "because the format of the input image is not supported.", param)
    w, h = img.size
    if frame and not (min(w, h) >= 300 and max(w, h) <= 6000 and 0.4 < w / h < 2.5):
        raise _Refusal(400, f"InvalidParameter.{param}", f"The parameter `{param}` specified "
                       f"in the request is not valid: the image is {w}x{h}; each side must "
                       f"be 300 to 6000 px and the aspect ratio within (0.4, 2.5).", param)
    return img


def _face(state: SeedanceState, prompt: str, param: str) -> tuple[int, str, str] | None:
    if any(word in prompt for word in state.faces):
        return (state.face_status, "InputImageSensitiveContentDetected.PrivacyInformation",
                f"The request failed because the input image '{param}' may contain real person.")
    return None


# -- video tasks -------------------------------------------------------------------------------


async def _create(state: SeedanceState, request: web.Request) -> web.Response:
    body = await _body(state, request, TASK_FIELDS)
    content = body.get("content")
    if not isinstance(content, list) or not content:
        raise _Refusal(400, "MissingParameter.content", "The request failed because it is "
                       "missing a required parameter: content.", "content")
    texts = [c for c in content if isinstance(c, dict) and c.get("type") == "text"]
    images = [(i, c) for i, c in enumerate(content)
              if isinstance(c, dict) and c.get("type") == "image_url"]
    if len(texts) + len(images) != len(content) or len(texts) > 1:
        raise _Refusal(400, "InvalidParameter.content", "The parameter `content` specified in "
                       "the request is not valid: one text item and image_url items only.")
    prompt = str(texts[0].get("text", "")) if texts else ""
    roles = [c.get("role", "first_frame" if len(images) == 1 else None) for _, c in images]
    if any(r not in ROLES for r in roles):
        raise _Refusal(400, "InvalidParameter.content.role", "The parameter `content.role` "
                       "specified in the request is not valid.", "content.role")
    frames = [r for r in roles if r != "reference_image"]
    if frames and len(frames) != len(roles):
        raise _Refusal(400, "InvalidParameter.content", "First/last frame images and reference "
                       "images cannot be used together.", "content")
    if frames and (frames.count("first_frame") != 1 or frames.count("last_frame") > 1):
        raise _Refusal(400, "InvalidParameter.content", "A task takes one first frame, and at "
                       "most one last frame after it.", "content")
    if not frames and len(roles) > 4:
        raise _Refusal(400, "InvalidParameter.content", "At most 4 reference images.", "content")
    shapes = []
    for (i, c), role in zip(images, roles):
        img = _image((c.get("image_url") or {}).get("url"), f"content[{i}].image_url", True)
        if role == "first_frame":
            shapes.append(img.size)
    resolution = body.get("resolution", "720p")
    if resolution not in SIZES:
        raise _Refusal(400, "InvalidParameter.resolution", "The parameter `resolution` "
                       f"specified in the request is not valid: {resolution}.", "resolution")
    ratio = body.get("ratio", "adaptive" if shapes else "16:9")
    if ratio == "adaptive" and shapes:
        w, h = shapes[0]
        ratio = min(RATIOS, key=lambda r: abs(math.log(RATIOS[r]) - math.log(w / h)))
    if ratio not in RATIOS:
        raise _Refusal(400, "InvalidParameter.ratio", "The parameter `ratio` specified in the "
                       f"request is not valid: {ratio}.", "ratio")
    duration = body.get("duration", 5)
    if not isinstance(duration, int) or isinstance(duration, bool) or not 2 <= duration <= 15:
        raise _Refusal(400, "InvalidParameter.duration", "The parameter `duration` specified "
                       f"in the request is not valid: {duration}.", "duration")
    seed = body.get("seed", -1)
    if not isinstance(seed, int) or isinstance(seed, bool) or not -1 <= seed <= 2**32 - 1:
        raise _Refusal(400, "InvalidParameter.seed", "The parameter `seed` specified in the "
                       f"request is not valid: {seed}.", "seed")
    for name in ("camera_fixed", "watermark", "generate_audio", "return_last_frame"):
        if name in body and not isinstance(body[name], bool):
            raise _Refusal(400, f"InvalidParameter.{name}", f"The parameter `{name}` specified "
                           "in the request is not valid.", name)
    refused = _face(state, prompt, f"content[{images[0][0]}]") if images else None
    if refused is not None and state.face_at == "submit":
        raise _Refusal(*refused)  # nothing made, nothing billed
    task = Task(f"cgt-{time.strftime('%Y%m%d%H%M%S')}-{next(state._ids):05d}",
                body["model"], body, prompt, SIZES[resolution][ratio], duration,
                refused=refused[1:] if refused else next(
                    (v for k, v in state.fail.items() if k in prompt), None))
    state.tasks[task.id] = task
    state.created.append(task.id)
    return web.json_response({"id": task.id})


def _not_found(task_id: str) -> _Refusal:
    return _Refusal(404, "ResourceNotFound", f"The specified task {task_id} is not found.")


async def _get(state: SeedanceState, request: web.Request) -> web.Response:
    task = state.tasks.get(request.match_info["id"])
    if task is None:
        raise _not_found(request.match_info["id"])
    task.polls += 1
    if task.status in ("queued", "running"):
        if task.polls <= state.polls_queued:
            task.status = "queued"
        elif task.polls <= state.polls_queued + state.polls_running or state.hold:
            task.status = "running"
        elif task.refused is not None:
            task.status = "failed"
        else:
            task.status = state.end
    answer: dict[str, Any] = {
        "id": task.id, "model": task.model, "status": task.status, "error": None,
        "created_at": task.created_at, "updated_at": int(time.time())}
    if task.status == "failed":
        assert task.refused is not None
        answer["error"] = {"code": task.refused[0], "message": task.refused[1]}
    if task.status == "succeeded":
        if task.video is None:
            task.video = await asyncio.to_thread(_make_video, state, task)
        expires = int(state.url_ttl)
        answer["content"] = {"video_url": f"{request.url.origin()}/tos/{task.video}.mp4"
                                          f"?X-Tos-Algorithm=TOS4-HMAC-SHA256"
                                          f"&X-Tos-Expires={expires}&X-Tos-Signature=loopback"}
        tokens = task.size[0] * task.size[1] * task.seconds * 24 // 1024
        answer.update(seed=task.body.get("seed", 12345), resolution=task.body.get("resolution",
                                                                                  "720p"),
                      ratio=task.body.get("ratio", "adaptive"), duration=task.seconds,
                      framespersecond=24,
                      usage={"completion_tokens": tokens, "total_tokens": tokens})
    return web.json_response(answer)


async def _delete(state: SeedanceState, request: web.Request) -> web.Response:
    task = state.tasks.get(request.match_info["id"])
    if task is None:
        raise _not_found(request.match_info["id"])
    if task.status == "running":
        raise _Refusal(400, "OperationDenied.InvalidState", "A running task cannot be "
                       "cancelled.")
    if task.status == "queued":
        task.status = "cancelled"
    else:
        del state.tasks[task.id]  # a finished task: its record is deleted
    return web.json_response({})


def _make_video(state: SeedanceState, task: Task) -> str:
    file_id = f"{task.id}-{secrets.token_hex(4)}"
    keep_clip(state, file_id, task, b"<html><body>502 Bad Gateway</body></html>")
    return file_id


async def _download(state: SeedanceState, request: web.Request) -> web.Response:
    state.requests["download"] += 1
    found = state.files.get(request.match_info["id"])
    return signed_file(found and found[0],
                       expired=found is not None and time.time() - found[1] >= state.url_ttl)


# -- images ------------------------------------------------------------------------------------


async def _images(state: SeedanceState, request: web.Request) -> web.Response:
    body = await _body(state, request, IMAGE_FIELDS)
    prompt = body.get("prompt")
    if not isinstance(prompt, str) or not prompt.strip():
        raise _Refusal(400, "MissingParameter.prompt", "The request failed because it is "
                       "missing a required parameter: prompt.", "prompt")
    given = body.get("image")
    refs = [given] if isinstance(given, str) else given if isinstance(given, list) else []
    if given is not None and (not refs or len(refs) > 14):
        raise _Refusal(400, "InvalidParameter.image", "The parameter `image` specified in the "
                       "request is not valid: 1 to 14 images.", "image")
    digests = []
    for i, url in enumerate(refs):
        _image(url, f"image[{i}]", False)
        digests.append(hashlib.sha256(url.encode()).hexdigest())
    refused = _face(state, prompt, "image[0]") if refs else None
    if refused is not None:
        raise _Refusal(*refused)
    w, h = _image_size(body.get("size", "2048x2048"))
    if body.get("response_format", "url") != "b64_json":
        raise _Refusal(400, "InvalidParameter.response_format", "the loopback server answers "
                       "b64_json only", "response_format")
    png = media.flat_png(w, h, prompt + "|" + "|".join(digests))
    state.images_made += 1
    state.made.append(hashlib.sha256(png).hexdigest())
    return web.json_response({
        "model": body["model"], "created": int(time.time()),
        "data": [{"b64_json": base64.b64encode(png).decode(), "size": f"{w}x{h}"}],
        "usage": {"generated_images": 1, "output_tokens": w * h // 256,
                  "total_tokens": w * h // 256}})


def _image_size(size: Any) -> tuple[int, int]:
    named = {"1K": 1024, "2K": 2048, "4K": 4096}
    if size in named:
        return named[size], named[size]
    try:
        w, h = (int(x) for x in str(size).split("x"))
    except ValueError:
        w = h = 0
    if not (921600 <= w * h <= 16777216 and 1 / 16 <= w / max(h, 1) <= 16):
        raise _Refusal(400, "InvalidParameter.size", f"The parameter `size` specified in the "
                       f"request is not valid: {size}.", "size")
    return w, h


def main() -> None:
    args = command_line("a loopback Ark (Seedance, Seedream) server", 8191,
                        "ark-loopback").parse_args()
    run_forever(make_app(SeedanceState(key=args.key)), args.host, args.port)


if __name__ == "__main__":
    main()
