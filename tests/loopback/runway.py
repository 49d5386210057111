"""A loopback Runway API: image_to_video, text_to_image, uploads, tasks, and their faults.

Written from Runway's documented protocol (api.dev.runwayml.com, version
2024-11-06), as strict as the real service where an adapter could go wrong:
the bearer key *and* the `X-Runway-Version` header on every API call; each
model's ratios, lengths and prompt limit; `promptImage` as a URI or a list of
`{uri, position}` (`last` only on models that take a last frame); reference
`tag`s of 3-16 letters, digits and `_`; HTTPS URLs only, data URIs up to 5 MB,
`runway://` URIs only while their upload lives.  Uploads follow Runway's two
steps: `POST /v1/uploads` answers a presigned form (`uploadUrl`, `fields`) and
the `runway://` URI; the file then goes to the form's URL, which refuses an
`Authorization` header as a storage service does (the key must not go there).

Tasks move PENDING (or THROTTLED, `throttled_polls` times) → RUNNING →
SUCCEEDED, one step per poll, and each GET of a finished task answers fresh
output URLs (they expire after `output_ttl`).  What they make is real: an MP4
of the asked length for clips (its frame `video_scale` times the ratio's), a
PNG of the ratio's size for images.

    state = RunwayState(key="key_test")
    with serve(make_app(state)) as url:        # the API at url
        state.fail["binoculars"] = ("SAFETY.INPUT.TEXT", "...")   # such prompts fail
        state.daily_limit = 2                  # the third submit of a model: 429
        state.hold = True                      # tasks stay RUNNING until released
    state.submits, state.created, state.uploads, state.files_received, state.polls

Faults (`faults`, one taken per submit, after the checks of the key):
("status", code, headers, body) answers that; ("reset",) creates the task
(billed) and drops the connection unanswered.

`python -m loopback.runway --port 8191 --key key_test` (from tests/) serves until killed.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import hashlib
import itertools
import re
import time
from collections import Counter
from typing import Any

import attrs
from aiohttp import web

from . import media, run_forever
from .common import command_line, hang_up, json_object, routed

VERSION = "2024-11-06"
GEN4_CLIP = ("1280:720", "720:1280", "1104:832", "832:1104", "960:960", "1584:672")
VEO_CLIP = ("1280:720", "720:1280", "1080:1920", "1920:1080")
GEN4_IMAGE = ("1024:1024", "1080:1080", "1168:880", "1360:768", "1440:1080", "1080:1440",
              "1808:768", "1920:1080", "1080:1920", "2112:912", "1280:720", "720:1280",
              "720:720", "960:720", "720:960", "1680:720")
# model → (ratios, durations, positions promptImage takes, fields beyond the common ones)
CLIP_MODELS: dict[str, tuple[tuple[str, ...], tuple[int, ...], tuple[str, ...], set[str]]] = {
    "gen4_turbo": (GEN4_CLIP, tuple(range(2, 11)), ("first",), {"seed", "contentModeration"}),
    "gen4.5": (GEN4_CLIP, tuple(range(2, 11)), ("first",), {"seed", "contentModeration"}),
    "veo3.1": (VEO_CLIP, (4, 6, 8), ("first", "last"), {"negativePrompt", "audio"}),
    "veo3.1_fast": (VEO_CLIP, (4, 6, 8), ("first", "last"), {"negativePrompt", "audio"}),
    "veo3": (VEO_CLIP, (8,), ("first",), {"negativePrompt"}),
}
IMAGE_MODELS = {"gen4_image": 0, "gen4_image_turbo": 1}  # → the fewest references it takes
CLIP_CREDITS_PER_S = {"gen4_turbo": 5, "gen4.5": 12, "veo3.1": 40, "veo3.1_fast": 15, "veo3": 40}
TAG = re.compile(r"[A-Za-z][A-Za-z0-9_]{2,15}")
UPLOAD_MIN = 512
DATA_URI_MAX = 5 << 20


@attrs.define
class Task:
    id: str
    kind: str  # "clip" | "image"
    body: dict[str, Any]
    width: int
    height: int
    seconds: int = 0
    polls: int = 0
    status: str = "PENDING"
    cancelled: bool = False
    failure: tuple[str, str] | None = None
    output: bytes | None = None


@attrs.define
class RunwayState:
    """The server's knobs and what it was asked; read it from the test's thread."""

    key: str = "key_loopback"
    faults: list[tuple[Any, ...]] = attrs.Factory(list)
    fail: dict[str, tuple[str, str]] = attrs.Factory(dict)  # prompt word → (code, failure)
    throttled_polls: int = 0  # polls a new task answers THROTTLED (over the concurrency limit)
    running_polls: int = 1  # polls it answers RUNNING before it succeeds
    hold: bool = False  # tasks stay RUNNING until this is False
    daily_limit: int = 1000  # tasks a model may start in a day; then 429
    credits: int = 1_000_000
    output_ttl: float = 86400.0  # seconds an output URL answers; then 403
    upload_ttl: float = 86400.0  # seconds a runway:// URI may be used
    video_scale: float = 1.0  # the MP4's frame, relative to the ratio's size
    latency: float = 0.0
    requests: Counter[str] = attrs.Factory(Counter)  # by route
    submits: int = 0  # submit requests that passed the key check (refused ones too)
    created: list[dict[str, Any]] = attrs.Factory(list)  # the body of each task made (billed)
    uploads: int = 0  # upload slots asked for
    files_received: list[str] = attrs.Factory(list)  # sha256 of each file posted to a slot
    polls: int = 0
    downloads: int = 0
    auth_failures: int = 0
    made: list[str] = attrs.Factory(list)  # sha256 of each output body
    tasks: dict[str, Task] = attrs.Factory(dict)
    files: dict[str, tuple[str, float]] = attrs.Factory(dict)  # runway:// URI → digest, time
    slots: dict[str, tuple[str, dict[str, str]]] = attrs.Factory(dict)  # token → URI, fields
    outputs: dict[str, tuple[str, float]] = attrs.Factory(dict)  # token → task id, issued
    _ids: itertools.count[int] = attrs.Factory(itertools.count)

    def daily(self, model: str) -> int:
        return sum(1 for b in self.created if b.get("model") == model)


class _Refusal(Exception):
    def __init__(self, status: int, error: str, issues: list[dict[str, Any]] | None = None,
                 headers: dict[str, str] | None = None) -> None:
        super().__init__(error)
        body: dict[str, Any] = {"error": error}
        if issues:
            body["issues"] = issues
        self.response = web.json_response(body, status=status, headers=headers)


def _invalid(path: str, message: str) -> _Refusal:
    return _Refusal(400, "Validation of body failed",
                    [{"code": "custom", "path": path.split("."), "message": message}])


def make_app(state: RunwayState) -> web.Application:
    app = web.Application(client_max_size=256 << 20)

    async def serve(handler: Any, request: web.Request, route: str) -> web.StreamResponse:
        if request.headers.get("Authorization", "") != f"Bearer {state.key}":
            state.auth_failures += 1
            return web.json_response({"error": "Incorrect API key provided."}, status=401)
        version = request.headers.get("X-Runway-Version")
        if version != VERSION:
            return web.json_response({"error": "The X-Runway-Version header is required and "
                                      f"must be a supported version (`{VERSION}`); got "
                                      f"{version!r}."}, status=400)
        if state.latency:
            await asyncio.sleep(state.latency)
        return await handler(state, request)

    api = routed(app, state, _Refusal, serve)

    api("POST", "/v1/image_to_video", "image_to_video", _image_to_video)
    api("POST", "/v1/text_to_image", "text_to_image", _text_to_image)
    api("POST", "/v1/uploads", "uploads", _upload_slot)
    api("GET", "/v1/tasks/{id}", "tasks", _get_task)
    api("DELETE", "/v1/tasks/{id}", "delete", _delete_task)
    api("GET", "/v1/organization", "organization", _organization)

    async def store(request: web.Request) -> web.StreamResponse:
        return await _store(state, request)

    async def download(request: web.Request) -> web.StreamResponse:
        return await _download(state, request)

    app.router.add_post("/storage/{token}", store)
    app.router.add_get("/outputs/{token}", download)
    return app


# -- submits ------------------------------------------------------------------------------


async def _submit(state: RunwayState, request: web.Request, check: Any) -> web.StreamResponse:
    state.submits += 1
    body = await json_object(request, lambda m: _Refusal(400, m),
                             "Request body must be valid JSON.",
                             "Request body must be a JSON object.")
    fault = state.faults.pop(0) if state.faults else None
    if fault is not None and fault[0] == "status":
        _, status, headers, payload = (*fault, None, None)[:4]
        if payload is None:
            payload = {"error": f"the loopback server answers {status}"}
        return web.json_response(payload, status=status, headers=headers)
    task = check(state, body)
    model = str(body["model"])
    if state.daily(model) >= state.daily_limit:
        raise _Refusal(429, f"You have exceeded the maximum number of daily generations for "
                            f"{model}.")
    cost = (CLIP_CREDITS_PER_S.get(model, 5) * task.seconds if task.kind == "clip" else 8)
    if state.credits < cost:
        raise _Refusal(400, "You do not have enough credits to run this task.")
    state.credits -= cost
    state.created.append(body)
    state.tasks[task.id] = task
    prompt = str(body.get("promptText", ""))
    task.failure = next((f for word, f in state.fail.items() if word in prompt), None)
    if fault is not None and fault[0] == "reset":
        hang_up(request)
    return web.json_response({"id": task.id})


async def _image_to_video(state: RunwayState, request: web.Request) -> web.StreamResponse:
    return await _submit(state, request, _check_clip)


async def _text_to_image(state: RunwayState, request: web.Request) -> web.StreamResponse:
    return await _submit(state, request, _check_image)


def _new_id(state: RunwayState) -> str:
    n = next(state._ids)
    return f"{hashlib.sha256(f'task{n}'.encode()).hexdigest()[:8]}-0000-4000-8000-{n:012d}"


def _check_clip(state: RunwayState, body: dict[str, Any]) -> Task:
    model = body.get("model")
    if model not in CLIP_MODELS:
        raise _invalid("model", f"Invalid enum value. Expected {' | '.join(CLIP_MODELS)}, "
                                f"received '{model}'")
    ratios, durations, positions, extra = CLIP_MODELS[str(model)]
    known = {"model", "promptImage", "promptText", "ratio", "duration"} | extra
    _unknown(body, known)
    image = body.get("promptImage")
    if isinstance(image, str):
        _check_uri(state, "promptImage", image)
    elif isinstance(image, list) and image:
        seen = []
        for i, item in enumerate(image):
            if not isinstance(item, dict) or set(item) != {"uri", "position"}:
                raise _invalid(f"promptImage.{i}", "Expected an object with `uri` and `position`")
            if item["position"] not in positions:
                raise _invalid(f"promptImage.{i}.position",
                               f"`{model}` takes the positions {', '.join(positions)}")
            _check_uri(state, f"promptImage.{i}.uri", item["uri"])
            seen.append(item["position"])
        if len(set(seen)) != len(seen) or "first" not in seen:
            raise _invalid("promptImage", "Give one `first` image, and at most one `last`")
    else:
        raise _invalid("promptImage", "Required")
    _check_prompt(body, required=model == "gen4.5")
    ratio = body.get("ratio")
    if ratio not in ratios:
        raise _invalid("ratio", f"Invalid enum value. Expected {' | '.join(ratios)}, "
                                f"received '{ratio}'")
    duration = body.get("duration", 5 if 5 in durations else durations[0])
    if model == "gen4.5" and "duration" not in body:
        raise _invalid("duration", "Required")
    if not isinstance(duration, int) or isinstance(duration, bool) or duration not in durations:
        raise _invalid("duration", f"`{model}` makes {', '.join(map(str, durations))} seconds")
    _check_seed(body)
    _check_moderation(body)
    w, h = (int(x) for x in str(ratio).split(":"))
    return Task(_new_id(state), "clip", body, w, h, seconds=duration)


def _check_image(state: RunwayState, body: dict[str, Any]) -> Task:
    model = body.get("model")
    if model not in IMAGE_MODELS:
        raise _invalid("model", f"Invalid enum value. Expected {' | '.join(IMAGE_MODELS)}, "
                                f"received '{model}'")
    _unknown(body, {"model", "promptText", "ratio", "referenceImages", "seed",
                    "contentModeration"})
    _check_prompt(body, required=True)
    ratio = body.get("ratio")
    if ratio not in GEN4_IMAGE:
        raise _invalid("ratio", f"Invalid enum value. Expected {' | '.join(GEN4_IMAGE)}, "
                                f"received '{ratio}'")
    refs = body.get("referenceImages", [])
    if not isinstance(refs, list) or len(refs) > 3 or len(refs) < IMAGE_MODELS[str(model)]:
        raise _invalid("referenceImages", f"`{model}` takes {IMAGE_MODELS[str(model)]} to 3 "
                                          f"reference images")
    tags = []
    for i, ref in enumerate(refs):
        if not isinstance(ref, dict) or not set(ref) <= {"uri", "tag"} or "uri" not in ref:
            raise _invalid(f"referenceImages.{i}", "Expected an object with `uri` and `tag`")
        _check_uri(state, f"referenceImages.{i}.uri", ref["uri"])
        tag = ref.get("tag")
        if tag is not None and not (isinstance(tag, str) and TAG.fullmatch(tag)):
            raise _invalid(f"referenceImages.{i}.tag", "Must be 3-16 characters, start with a "
                           "letter, and use only letters, digits, and underscores")
        if tag in tags:
            raise _invalid(f"referenceImages.{i}.tag", f"Duplicate tag `{tag}`")
        tags.append(tag)
    _check_seed(body)
    _check_moderation(body)
    w, h = (int(x) for x in str(ratio).split(":"))
    return Task(_new_id(state), "image", body, w, h)


def _unknown(body: dict[str, Any], known: set[str]) -> None:
    for name in body:
        if name not in known:
            raise _invalid(name, f"Unrecognized key: '{name}'")


def _check_prompt(body: dict[str, Any], required: bool) -> None:
    text = body.get("promptText")
    if text is None and not required:
        return
    if not isinstance(text, str) or not text.strip():
        raise _invalid("promptText", "A non-empty string is required")
    if len(text.encode("utf-16-le")) // 2 > 1000:
        raise _invalid("promptText", "String must contain at most 1000 character(s)")


def _check_seed(body: dict[str, Any]) -> None:
    seed = body.get("seed")
    if seed is not None and not (isinstance(seed, int) and not isinstance(seed, bool)
                                 and 0 <= seed <= 4294967295):
        raise _invalid("seed", "Number must be an integer from 0 to 4294967295")


def _check_moderation(body: dict[str, Any]) -> None:
    mod = body.get("contentModeration")
    if mod is not None and (not isinstance(mod, dict) or set(mod) - {"publicFigureThreshold"}
                            or mod.get("publicFigureThreshold") not in ("auto", "low")):
        raise _invalid("contentModeration", "Expected { publicFigureThreshold: auto | low }")


def _check_uri(state: RunwayState, path: str, uri: Any) -> None:
    if not isinstance(uri, str):
        raise _invalid(path, "Expected a string")
    if uri.startswith("runway://"):
        found = state.files.get(uri)
        if found is None or time.time() - found[1] > state.upload_ttl:
            raise _invalid(path, "Invalid asset: the runway:// URI has expired or does not "
                                 "exist; upload the file again")
    elif uri.startswith("data:"):
        m = re.fullmatch(r"data:(image/(?:png|jpeg|webp));base64,([A-Za-z0-9+/=]+)", uri)
        if m is None:
            raise _invalid(path, "Invalid data URI.")
        try:
            data = base64.b64decode(m[2], validate=True)
        except (binascii.Error, ValueError):
            raise _invalid(path, "Invalid data URI.") from None
        if len(data) > DATA_URI_MAX:
            raise _invalid(path, "Data URIs may encode at most 5 MB; use an upload")
    elif uri.startswith("http://"):
        raise _invalid(path, "Only HTTPS URLs are allowed.")
    elif not uri.startswith("https://"):
        raise _invalid(path, "Invalid URL")


# -- uploads ------------------------------------------------------------------------------


async def _upload_slot(state: RunwayState, request: web.Request) -> web.StreamResponse:
    body = await request.json()
    if not (isinstance(body, dict) and body.get("type") == "ephemeral"
            and isinstance(body.get("filename"), str) and body["filename"]):
        raise _invalid("filename", "Expected { filename, type: \"ephemeral\" }")
    state.uploads += 1
    n = next(state._ids)
    token = hashlib.sha256(f"slot{n}".encode()).hexdigest()[:24]
    uri = f"runway://uploads/{token}/{body['filename']}"
    fields = {"key": f"uploads/{token}/{body['filename']}", "policy": f"policy-{token}",
              "x-amz-signature": hashlib.sha256(token.encode()).hexdigest()}
    state.slots[token] = (uri, fields)
    return web.json_response({"uploadUrl": f"{request.url.origin()}/storage/{token}",
                              "fields": fields, "runwayUri": uri})


async def _store(state: RunwayState, request: web.Request) -> web.StreamResponse:
    """The presigned form's target, as a storage service answers it."""
    if "Authorization" in request.headers:
        return web.Response(status=400, text="<Error><Code>InvalidArgument</Code><Message>Only "
                            "one auth mechanism allowed</Message></Error>")
    slot = state.slots.pop(request.match_info["token"], None)
    if slot is None:
        return web.Response(status=403, text="<Error><Code>AccessDenied</Code></Error>")
    uri, fields = slot
    form = await request.post()
    if any(form.get(k) != v for k, v in fields.items()):
        return web.Response(status=403, text="<Error><Code>SignatureDoesNotMatch</Code></Error>")
    file = form.get("file")
    if not isinstance(file, web.FileField):
        return web.Response(status=400, text="<Error><Code>MissingFile</Code></Error>")
    data = file.file.read()
    if len(data) < UPLOAD_MIN:
        return web.Response(status=400, text="<Error><Code>EntityTooSmall</Code></Error>")
    digest = hashlib.sha256(data).hexdigest()
    state.files_received.append(digest)
    state.files[uri] = (digest, time.time())
    return web.Response(status=204)


# -- tasks --------------------------------------------------------------------------------


async def _get_task(state: RunwayState, request: web.Request) -> web.StreamResponse:
    state.polls += 1
    task = state.tasks.get(request.match_info["id"])
    if task is None:
        raise _Refusal(404, "Task not found.")
    out: dict[str, Any] = {"id": task.id, "createdAt": "2026-10-01T12:00:00.000Z"}
    if not task.cancelled and task.status not in ("SUCCEEDED", "FAILED"):
        task.polls += 1
        if task.polls <= state.throttled_polls:
            task.status = "THROTTLED"
        elif task.failure is not None:
            task.status = "FAILED"
        elif state.hold or task.polls <= state.throttled_polls + state.running_polls:
            task.status = "RUNNING"
        else:
            task.status = "SUCCEEDED"
    status = "CANCELLED" if task.cancelled else task.status
    out["status"] = status
    if status == "RUNNING":
        out["progress"] = 0.5
    elif status == "FAILED" and task.failure is not None:
        out["failureCode"], out["failure"] = task.failure
    elif status == "SUCCEEDED":
        if task.output is None:
            task.output = _make(state, task)
        token = hashlib.sha256(f"out{next(state._ids)}".encode()).hexdigest()[:32]
        state.outputs[token] = (task.id, time.time())
        ext = "mp4" if task.kind == "clip" else "png"
        out["output"] = [f"{request.url.origin()}/outputs/{token}.{ext}?_jwt=signed"]
    return web.json_response(out)


async def _delete_task(state: RunwayState, request: web.Request) -> web.StreamResponse:
    task = state.tasks.get(request.match_info["id"])
    if task is None:
        raise _Refusal(404, "Task not found.")
    task.cancelled = True
    return web.Response(status=204)


def _make(state: RunwayState, task: Task) -> bytes:
    seed = f"{task.id}|{task.body.get('promptText', '')}|{task.body.get('seed')}"
    if task.kind == "clip":
        w = max(16, int(task.width * state.video_scale))
        h = max(16, int(task.height * state.video_scale))
        body = media.mp4(w, h, task.seconds, fps=24, seed=seed)
    else:
        body = media.flat_png(task.width, task.height, seed)
    state.made.append(hashlib.sha256(body).hexdigest())
    return body


async def _download(state: RunwayState, request: web.Request) -> web.StreamResponse:
    state.downloads += 1
    token = request.match_info["token"].rsplit(".", 1)[0]
    found = state.outputs.get(token)
    if found is None or time.time() - found[1] > state.output_ttl:
        return web.Response(status=403, text="Forbidden: the signature has expired")
    task = state.tasks[found[0]]
    assert task.output is not None
    kind = "video/mp4" if task.kind == "clip" else "image/png"
    return web.Response(body=task.output, content_type=kind)


async def _organization(state: RunwayState, request: web.Request) -> web.StreamResponse:
    models = sorted({*CLIP_MODELS, *IMAGE_MODELS})
    return web.json_response({
        "creditBalance": state.credits,
        "tier": {"maxMonthlyCreditSpend": 100000,
                 "models": {m: {"maxConcurrentGenerations": 2,
                                "maxDailyGenerations": state.daily_limit} for m in models}},
        "usage": {"models": {m: {"dailyGenerations": state.daily(m)} for m in models}}})


def main() -> None:
    args = command_line("a loopback Runway API server", 8191, "key_loopback").parse_args()
    run_forever(make_app(RunwayState(key=args.key)), args.host, args.port)


if __name__ == "__main__":
    main()
