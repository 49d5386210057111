"""A loopback fal.ai: the queue, storage uploads, a few models, and their faults.

Written from fal's documented protocol (BACKENDS.md's fal section, fal's queue and
error references), as strict as the real service where an adapter could go wrong:
`Authorization: Key …` on the queue and storage; each model's input schema (unknown
inputs, missing ones, wrong types and enums are the model's 422 with `detail: [{loc,
msg, type}]`); image inputs that are neither a data URI nor a file it stores cannot
be fetched.  The status, result and cancel URLs drop the model's path, as fal's do.

    state = FalState(key="canary")
    with serve(make_app(state)) as url:      # queue at url, storage at url, media at url
        state.job_faults.append(("policy",))
        ...
    state.submits, state.jobs, state.uploads, state.made

A job is IN_QUEUE for `queue_s`, IN_PROGRESS until `latency` has passed, then
COMPLETED (`never_finish` holds it in progress).  The result is the model's output,
or, per a fault taken at submit (`job_faults`): ("policy",) a 422
`content_policy_violation`, ("runner",) a 500 with `error_type: runner_server_error`,
("input", field, msg) a 422 input error, ("detail_200",) a 200 whose body is an
error, ("corrupt",) an output URL that serves HTML.  Faults per API request, after the
key is checked (`faults`): ("status", code, headers, body), ("locked",) the 403 of an
account out of balance, ("reset",) the request read (a submit queued) and the
connection dropped unanswered.  `refuse` lists words whose prompts are refused.
"""

from __future__ import annotations

import base64
import hashlib
import io
import itertools
import time
import uuid
from collections import Counter
from typing import Any

import attrs
from aiohttp import web
from PIL import Image

from . import media
from .common import guarded, kept, lost

IMAGE_RATIOS = ("21:9", "16:9", "4:3", "3:2", "1:1", "2:3", "3:4", "9:16", "9:21")
IMAGE_SIZES = ("square_hd", "square", "portrait_4_3", "portrait_16_9", "landscape_4_3",
               "landscape_16_9")
LONG_SIDE = 256  # the loopback makes small pictures and clips: real bodies, quickly


@attrs.frozen
class Field:
    """One input of a model's schema."""

    type: str  # str | int | number | image | images | size | enum
    required: bool = False
    choices: tuple[Any, ...] = ()
    most: int | None = None  # images: how many


@attrs.frozen
class Model:
    media: str  # image | video
    inputs: dict[str, Field]


MODELS: dict[str, Model] = {
    "fal-ai/flux-pro/kontext/max/multi": Model("image", {
        "prompt": Field("str", True), "image_urls": Field("images", True, most=4),
        "seed": Field("int"), "aspect_ratio": Field("enum", choices=IMAGE_RATIOS),
        "guidance_scale": Field("number"), "num_images": Field("int"),
        "output_format": Field("enum", choices=("jpeg", "png")),
        "safety_tolerance": Field("enum", choices=("1", "2", "3", "4", "5", "6"))}),
    "fal-ai/flux/dev": Model("image", {
        "prompt": Field("str", True), "image_size": Field("size"), "seed": Field("int"),
        "num_inference_steps": Field("int"), "guidance_scale": Field("number")}),
    "fal-ai/kling-video/v2.1/pro/image-to-video": Model("video", {
        "prompt": Field("str", True), "image_url": Field("image", True),
        "tail_image_url": Field("image"), "duration": Field("enum", choices=("5", "10")),
        "negative_prompt": Field("str"), "cfg_scale": Field("number")}),
}


@attrs.define
class Job:
    id: str
    model: str
    input: dict[str, Any]
    created: float
    fault: tuple[Any, ...] | None = None
    canceled: bool = False
    result: tuple[int, dict[str, Any]] | None = None  # made once, when it completes


@attrs.define
class FalState:
    """The server's knobs and what it was asked; read it from the test's thread."""

    key: str = "fal-loopback-key"
    latency: float = 0.0  # seconds from submit to COMPLETED
    queue_s: float = 0.0  # of which, seconds IN_QUEUE
    never_finish: bool = False
    faults: list[tuple[Any, ...]] = attrs.Factory(list)
    job_faults: list[tuple[Any, ...]] = attrs.Factory(list)
    refuse: list[str] = attrs.Factory(list)
    media_ttl: float = 3600.0  # seconds an output's URL serves it
    requests: Counter[str] = attrs.Factory(Counter)  # by route
    submits: Counter[str] = attrs.Factory(Counter)  # by model: what was paid for
    jobs: dict[str, Job] = attrs.Factory(dict)
    answered: list[int] = attrs.Factory(list)  # the HTTP status of each status request
    uploads: int = 0  # files PUT to storage
    stored: dict[str, tuple[bytes, str]] = attrs.Factory(dict)  # name → body, content type
    outputs: dict[str, tuple[bytes, str, float]] = attrs.Factory(dict)  # id → body, type, at
    made: list[str] = attrs.Factory(list)  # sha256 of every output made
    auth_failures: int = 0
    _ids: itertools.count[int] = attrs.Factory(itertools.count)

    def submitted(self) -> int:
        return sum(self.submits.values())


def make_app(state: FalState) -> web.Application:
    app = web.Application(client_max_size=64 << 20)

    api = guarded(state, "Key", _unauthorized, _fault)
    app.router.add_post("/storage/upload/initiate", api("initiate", _initiate))
    app.router.add_put("/upload/{name}", api("put", _put, auth=False))
    app.router.add_get("/files/{name}", api("file", _file, auth=False))
    app.router.add_get("/media/{id}", api("media", _media, auth=False))
    app.router.add_get("/{owner}/{app}/requests/{id}/status", api("status", _status))
    app.router.add_put("/{owner}/{app}/requests/{id}/cancel", api("cancel", _cancel))
    app.router.add_get("/{owner}/{app}/requests/{id}", api("result", _result))
    app.router.add_post("/{model:.+}", api("submit", _submit))
    return app


def _unauthorized(request: web.Request) -> web.Response:
    return web.json_response({"detail": "Invalid Key Authorization header format"
                              if request.headers.get("Authorization") else
                              "No authorization header provided"}, status=401)


async def _fault(state: FalState, fault: tuple[Any, ...], request: web.Request,
                 route: str) -> web.StreamResponse | None:
    what = fault[0]
    if what == "status":
        _, status, headers, body = (*fault, None, None)[:4]
        if body is None:
            body = {"detail": f"the loopback answers {status}"}
        return web.json_response(body, status=status, headers=headers)
    if what == "locked":
        return web.json_response({"detail": "User is locked. Reason: Exhausted balance. Top up "
                                            "your balance at fal.ai/dashboard/billing."},
                                 status=403)
    if what == "reset":  # a submit queued all the same
        await lost(request, _submit(state, request) if route == "submit" else None)
    raise ValueError(f"unknown loopback fault {fault!r}")


# -- the queue ---------------------------------------------------------------------------


async def _submit(state: FalState, request: web.Request) -> web.Response:
    model = request.match_info["model"]
    if model not in MODELS:
        return web.json_response({"detail": f"Application '{model.split('/')[1]}' not found"},
                                 status=404)
    try:
        body = await request.json()
    except ValueError:
        return web.json_response({"detail": "Invalid JSON body"}, status=400)
    if not isinstance(body, dict):
        return web.json_response({"detail": "The input must be a JSON object"}, status=422)
    job = Job(uuid.uuid4().hex, model, body, time.monotonic())
    job.fault = state.job_faults.pop(0) if state.job_faults else None
    state.jobs[job.id] = job
    state.submits[model] += 1
    owner, app = model.split("/")[:2]
    base = f"{request.url.origin()}/{owner}/{app}/requests/{job.id}"
    return web.json_response({"request_id": job.id, "response_url": base,
                              "status_url": f"{base}/status", "cancel_url": f"{base}/cancel",
                              "queue_position": 0})


def _job(state: FalState, request: web.Request) -> Job | None:
    job = state.jobs.get(request.match_info["id"])
    owner_app = f"{request.match_info['owner']}/{request.match_info['app']}"
    return job if job is not None and job.model.startswith(owner_app + "/") \
        or job is not None and job.model == owner_app else None


def _phase(state: FalState, job: Job) -> str:
    age = time.monotonic() - job.created
    if job.canceled:
        return "COMPLETED"
    if age < state.queue_s:
        return "IN_QUEUE"
    if state.never_finish or age < state.latency:
        return "IN_PROGRESS"
    return "COMPLETED"


async def _status(state: FalState, request: web.Request) -> web.Response:
    job = _job(state, request)
    if job is None:
        return web.json_response({"detail": "Request not found"}, status=404)
    phase = _phase(state, job)
    base = str(request.url.with_query(None)).removesuffix("/status")
    answer: dict[str, Any] = {"status": phase, "request_id": job.id, "response_url": base,
                              "status_url": f"{base}/status", "cancel_url": f"{base}/cancel"}
    if phase == "IN_QUEUE":
        answer["queue_position"] = sum(1 for j in state.jobs.values()
                                       if j.created < job.created
                                       and _phase(state, j) == "IN_QUEUE")
        state.answered.append(202)
        return web.json_response(answer, status=202)
    answer["logs"] = None
    if phase == "IN_PROGRESS":
        state.answered.append(202)
        return web.json_response(answer, status=202)
    answer["metrics"] = {"inference_time": 0.01}
    state.answered.append(200)
    return web.json_response(answer, status=200)


async def _cancel(state: FalState, request: web.Request) -> web.Response:
    job = _job(state, request)
    if job is None:
        return web.json_response({"detail": "Request not found"}, status=404)
    if _phase(state, job) != "IN_QUEUE":
        return web.json_response({"status": "ALREADY_COMPLETED"}, status=400)
    job.canceled = True
    return web.json_response({"status": "CANCELLATION_REQUESTED"}, status=202)


async def _result(state: FalState, request: web.Request) -> web.Response:
    job = _job(state, request)
    if job is None:
        return web.json_response({"detail": "Request not found"}, status=404)
    if _phase(state, job) != "COMPLETED":
        return web.json_response({"detail": "Request is still in progress"}, status=400)
    if job.result is None:
        job.result = _run(state, job, request.url.origin())
    status, body = job.result
    headers = {"X-Fal-Error-Type": body["error_type"]} if "error_type" in body else None
    return web.json_response(body, status=status, headers=headers)


def _run(state: FalState, job: Job, origin: Any) -> tuple[int, dict[str, Any]]:
    """What the model answers: its output, or its error."""
    if job.canceled:
        return 400, {"detail": "Request was cancelled", "error_type": "client_cancelled"}
    problems = validate(MODELS[job.model], job.input, state)
    if problems:
        return 422, {"detail": [{"loc": ["body", f], "msg": m, "type": t,
                                 "url": f"https://docs.fal.ai/errors#{t}"}
                                for f, m, t in problems]}
    fault = job.fault or (("policy",) if any(w in str(job.input.get("prompt", ""))
                                             for w in state.refuse) else None)
    if fault is not None and fault[0] == "policy":
        return 422, {"detail": [{"loc": ["body", "prompt"],
                                 "msg": "The content was flagged by a content checker.",
                                 "type": "content_policy_violation",
                                 "url": "https://docs.fal.ai/errors#content_policy_violation",
                                 "input": job.input.get("prompt"), "categories": ["violence"]}]}
    if fault is not None and fault[0] == "runner":
        return 500, {"detail": "Internal error in the model: CUDA out of memory",
                     "error_type": "runner_server_error"}
    if fault is not None and fault[0] == "input":
        return 422, {"detail": [{"loc": ["body", fault[1]], "msg": fault[2],
                                 "type": "value_error"}]}
    if fault is not None and fault[0] == "detail_200":
        return 200, {"detail": "The model produced no output: the prompt was empty after "
                               "translation"}
    model = MODELS[job.model]
    w, h = 0, 0
    if fault is not None and fault[0] == "corrupt":
        body, kind = b"<html><body>502 Bad Gateway</body></html>", "text/html"
    elif model.media == "image":
        w, h = _image_size(job.input)
        body, kind = media.flat_png(w, h, f"{job.model}|{job.input}"), "image/png"
    else:
        w, h = _video_size(state, job.input.get("image_url"))
        seconds = int(job.input.get("duration", "5"))
        body, kind = media.mp4_tagged(w, h, seconds, f"{job.input.get('prompt')}"), "video/mp4"
    out_id = f"{next(state._ids)}-{job.id[:8]}"
    state.outputs[out_id] = (body, kind, time.time())
    state.made.append(hashlib.sha256(body).hexdigest())
    url = f"{origin}/media/{out_id}"
    if model.media == "image":
        return 200, {"images": [{"url": url, "width": w, "height": h, "content_type": kind}],
                     "seed": job.input.get("seed", 42), "has_nsfw_concepts": [False],
                     "prompt": job.input.get("prompt")}
    return 200, {"video": {"url": url, "content_type": kind, "file_name": "output.mp4",
                           "file_size": len(body)}}


def validate(model: Model, given: dict[str, Any], state: Any) -> list[tuple[str, str, str]]:
    """(field, message, type) for each input the model's schema refuses."""
    problems = []
    for name in given:
        if name not in model.inputs:
            problems.append((name, "Extra inputs are not permitted", "extra_forbidden"))
    for name, f in model.inputs.items():
        if name not in given:
            if f.required:
                problems.append((name, "Field required", "missing"))
            continue
        if not _valid(f, given[name], state):
            said = (f"Input should be {' or '.join(repr(c) for c in f.choices)}" if f.choices
                    else f"Input is not a valid {f.type}" if f.type not in ("image", "images")
                    else "Failed to download the file. Please check if the URL is accessible")
            problems.append((name, said, "enum" if f.choices else f"{f.type}_type"
                             if f.type not in ("image", "images") else "file_download_error"))
    return problems


def _valid(f: Field, v: Any, state: Any) -> bool:
    if f.type == "str":
        return isinstance(v, str) and bool(v.strip())
    if f.type == "int":
        return isinstance(v, int) and not isinstance(v, bool)
    if f.type == "number":
        return isinstance(v, (int, float)) and not isinstance(v, bool)
    if f.type == "enum":
        return v in f.choices and type(v) is type(f.choices[0])
    if f.type == "image":
        return isinstance(v, str) and fetch_image(state, v) is not None
    if f.type == "images":
        return isinstance(v, list) and 0 < len(v) <= (f.most or 99) and all(
            isinstance(u, str) and fetch_image(state, u) is not None for u in v)
    return v in IMAGE_SIZES or isinstance(v, dict) and set(v) == {"width", "height"} \
        and all(isinstance(x, int) for x in v.values())


def fetch_image(state: Any, url: str) -> tuple[int, int] | None:
    """The size of the image an input URL gives the model: a data URI, or a file this
    loopback stores (fal's storage, Replicate's files); None when it cannot be had."""
    body: bytes | None = None
    if url.startswith("data:image/") and ";base64," in url:
        try:
            body = base64.b64decode(url.split(",", 1)[1], validate=True)
        except ValueError:
            return None
    else:
        name = url.rsplit("/", 1)[-1]
        found = state.stored.get(name) if "/files/" in url else None
        body = found[0] if found else None
    if body is None:
        return None
    try:
        with Image.open(io.BytesIO(body)) as img:
            return img.size
    except Exception:
        return None


def _image_size(given: dict[str, Any]) -> tuple[int, int]:
    size = given.get("image_size")
    if isinstance(size, dict):
        return int(size["width"]), int(size["height"])
    ratio = str(given.get("aspect_ratio") or "16:9")
    w, _, h = ratio.partition(":")
    return _fit(float(w) / float(h))


def _video_size(state: Any, image: Any) -> tuple[int, int]:
    size = fetch_image(state, image) if isinstance(image, str) else None
    return _fit(size[0] / size[1] if size else 16 / 9)


def _fit(ratio: float) -> tuple[int, int]:
    if ratio >= 1:
        return LONG_SIDE, max(2, round(LONG_SIDE / ratio / 2) * 2)
    return max(2, round(LONG_SIDE * ratio / 2) * 2), LONG_SIDE


async def _media(state: FalState, request: web.Request) -> web.Response:
    return kept(state.outputs.get(request.match_info["id"]), state.media_ttl)


# -- storage -----------------------------------------------------------------------------


async def _initiate(state: FalState, request: web.Request) -> web.Response:
    if request.query.get("storage_type") != "fal-cdn-v3":
        return web.json_response({"detail": "unknown storage type"}, status=422)
    body = await request.json()
    if not (isinstance(body, dict) and isinstance(body.get("file_name"), str)
            and isinstance(body.get("content_type"), str)):
        return web.json_response({"detail": [{"loc": ["body", "file_name"],
                                              "msg": "Field required", "type": "missing"}]},
                                 status=422)
    name = f"{uuid.uuid4().hex[:12]}_{body['file_name']}"
    origin = request.url.origin()
    return web.json_response({"upload_url": f"{origin}/upload/{name}?signature=loopback",
                              "file_url": f"{origin}/files/{name}"})


async def _put(state: FalState, request: web.Request) -> web.Response:
    if request.query.get("signature") != "loopback" or "Authorization" in request.headers:
        return web.Response(status=403, text="SignatureDoesNotMatch")
    state.stored[request.match_info["name"]] = (await request.read(),
                                                request.content_type)
    state.uploads += 1
    return web.Response(status=200)


async def _file(state: FalState, request: web.Request) -> web.Response:
    found = state.stored.get(request.match_info["name"])
    if found is None:
        return web.Response(status=404)
    return web.Response(body=found[0], content_type=found[1])
