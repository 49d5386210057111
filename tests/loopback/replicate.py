"""A loopback Replicate: predictions, the files API, a few models, and their faults.

Written from Replicate's documented HTTP API (BACKENDS.md's Replicate section, the
prediction lifecycle), as strict as the real service where an adapter could go
wrong: `Authorization: Bearer …`; official models by `/models/{owner}/{name}/
predictions`, others only by version (`/predictions` with `version`); each model's
input schema (a 422 problem-details answer with `invalid_fields`); image inputs
that are neither a data URI nor a file it stores cannot be fetched; outputs at
their own URLs, kept `output_ttl` seconds (then `data_removed`).

    state = ReplicateState(key="canary")
    with serve(make_app(state)) as url:      # the API under f"{url}/v1"
        state.outcomes.append(("cancel",))
        ...
    state.creates, state.predictions, state.uploads, state.made

A prediction is `starting` for `queue_s`, `processing` until `latency` has passed,
then `succeeded` (`never_finish` holds it processing), unless an outcome taken at
its creation (`outcomes`) says otherwise: ("fail", error), ("cancel",) canceled
while it runs, ("abort",) aborted before it starts.  `Prefer: wait=N` holds the
create request until the prediction is over or N seconds pass.  Faults per API
request, after the token is checked (`faults`): ("status", code, headers, body),
("throttle", seconds) a 429 with `Retry-After`, ("reset",) the request read (a
create made) and the connection dropped unanswered.
"""

from __future__ import annotations

import asyncio
import hashlib
import itertools
import json
import time
import uuid
from collections import Counter
from datetime import UTC, datetime, timedelta
from typing import Any

import attrs
from aiohttp import web

from . import media
from .common import guarded, kept, lost
from .fal import Field, Model, fetch_image

ASPECTS = ("match_input_image", "1:1", "16:9", "9:16", "4:3", "3:4", "3:2", "2:3", "21:9")
VERSION = "5c7d5dc6dd8bf75c1acaa8565735e7986bc5b66206b55cca93cb72c9bf15ccaa"
LONG_SIDE = 256

MODELS: dict[str, Model] = {
    "black-forest-labs/flux-kontext-pro": Model("image", {
        "prompt": Field("str", True), "input_image": Field("image"),
        "aspect_ratio": Field("enum", choices=ASPECTS), "seed": Field("int"),
        "output_format": Field("enum", choices=("jpg", "png")),
        "safety_tolerance": Field("int")}),
    "google/nano-banana": Model("image", {
        "prompt": Field("str", True), "image_input": Field("images", most=3),
        "aspect_ratio": Field("enum", choices=ASPECTS),
        "output_format": Field("enum", choices=("jpg", "png"))}),
    "kwaivgi/kling-v2.1": Model("video", {
        "prompt": Field("str", True), "start_image": Field("image", True),
        "end_image": Field("image"), "duration": Field("enum", choices=(5, 10)),
        "negative_prompt": Field("str"), "mode": Field("enum", choices=("standard", "pro"))}),
}
# Community models run only by version id.
VERSIONS: dict[str, tuple[str, Model]] = {
    VERSION: ("someone/wan-i2v", Model("video", {
        "prompt": Field("str", True), "image": Field("image", True),
        "num_frames": Field("int"), "fps": Field("int"), "seed": Field("int")})),
}


@attrs.define
class Prediction:
    id: str
    model: str
    version: str
    input: dict[str, Any]
    created: float
    outcome: tuple[Any, ...] | None = None
    canceled: bool = False
    output: Any = None
    made_at: float = 0.0


@attrs.define
class ReplicateState:
    """The server's knobs and what it was asked; read it from the test's thread."""

    key: str = "r8_loopback"
    latency: float = 0.0
    queue_s: float = 0.0
    never_finish: bool = False
    output_ttl: float = 3600.0  # seconds outputs are kept (then data_removed, URLs 404)
    file_ttl: float = 86400.0  # seconds an uploaded file lives
    faults: list[tuple[Any, ...]] = attrs.Factory(list)
    outcomes: list[tuple[Any, ...]] = attrs.Factory(list)
    requests: Counter[str] = attrs.Factory(Counter)
    creates: Counter[str] = attrs.Factory(Counter)  # predictions made, by model: paid for
    predictions: dict[str, Prediction] = attrs.Factory(dict)
    headers: list[dict[str, str]] = attrs.Factory(list)  # Prefer, Cancel-After of creates
    uploads: int = 0
    stored: dict[str, tuple[bytes, str]] = attrs.Factory(dict)  # file id → body, type
    outputs: dict[str, tuple[bytes, str, float]] = attrs.Factory(dict)
    made: list[str] = attrs.Factory(list)
    auth_failures: int = 0
    _ids: itertools.count[int] = attrs.Factory(itertools.count)

    def created(self) -> int:
        return sum(self.creates.values())


def problem(status: int, title: str, detail: str, **more: Any) -> web.Response:
    return web.json_response({"title": title, "detail": detail, "status": status, **more},
                             status=status, content_type="application/problem+json")


def make_app(state: ReplicateState) -> web.Application:
    app = web.Application(client_max_size=64 << 20)

    api = guarded(state, "Bearer", lambda request: problem(
        401, "Unauthenticated", "You did not pass a valid authentication token"), _fault)
    app.router.add_post("/v1/models/{owner}/{name}/predictions", api("create", _create))
    app.router.add_post("/v1/predictions", api("create", _create))
    app.router.add_get("/v1/predictions/{id}", api("get", _get))
    app.router.add_post("/v1/predictions/{id}/cancel", api("cancel", _cancel))
    app.router.add_post("/v1/files", api("files", _upload))
    app.router.add_get("/delivery/{id}/{name}", api("delivery", _delivery, auth=False))
    return app


async def _fault(state: ReplicateState, fault: tuple[Any, ...], request: web.Request,
                 route: str) -> web.StreamResponse | None:
    what = fault[0]
    if what == "status":
        _, status, headers, body = (*fault, None, None)[:4]
        if body is None:
            return problem(status, "Error", f"the loopback answers {status}")
        return web.json_response(body, status=status, headers=headers)
    if what == "throttle":
        seconds = fault[1]
        return web.json_response(
            {"detail": f"Request was throttled. Expected available in {seconds} second.",
             "status": 429, "retry_after": seconds}, status=429,
            headers={"Retry-After": str(seconds)})
    if what == "reset":  # a prediction made all the same
        await lost(request, _create(state, request) if route == "create" else None)
    raise ValueError(f"unknown loopback fault {fault!r}")


# -- predictions -------------------------------------------------------------------------


async def _create(state: ReplicateState, request: web.Request) -> web.Response:
    try:
        body = await request.json()
    except ValueError:
        return problem(400, "Invalid JSON", "The request body is not valid JSON")
    if not isinstance(body, dict) or not isinstance(body.get("input"), dict):
        return problem(422, "Input validation failed", "- input: input is required",
                       invalid_fields=[{"type": "required", "field": "input",
                                        "description": "input is required"}])
    if "owner" in request.match_info:
        name = f"{request.match_info['owner']}/{request.match_info['name']}"
        if name not in MODELS:
            return problem(404, "Not found", "The requested resource could not be found.")
        if "version" in body:
            return problem(422, "Input validation failed", "- version: not allowed here")
        model, version = MODELS[name], "official"
    else:
        found = VERSIONS.get(str(body.get("version")))
        if found is None:
            return problem(422, "Invalid version or not permitted",
                           "The specified version does not exist (or perhaps you don't have "
                           "permission to use it?)")
        (name, model), version = found, str(body["version"])
    given = body["input"]
    bad = _invalid(model, given, state)
    if bad:
        return problem(422, "Input validation failed",
                       "\n".join(f"- input.{f}: {d}" for f, d, _t in bad),
                       invalid_fields=[{"type": t, "field": f"input.{f}", "description": d}
                                       for f, d, t in bad])
    p = Prediction(_pid(), name, version, given, time.monotonic())
    p.outcome = state.outcomes.pop(0) if state.outcomes else None
    state.predictions[p.id] = p
    state.creates[name] += 1
    state.headers.append({k: v for k, v in request.headers.items()
                          if k.lower() in ("prefer", "cancel-after")})
    wait = _wait_seconds(request.headers.get("Prefer", ""))
    deadline = time.monotonic() + wait
    while wait and time.monotonic() < deadline and _status(state, p) in ("starting",
                                                                        "processing"):
        await asyncio.sleep(0.02)
    return web.json_response(_view(state, p, request), status=201)


def _wait_seconds(prefer: str) -> float:
    for part in prefer.split(","):
        name, _, value = part.strip().partition("=")
        if name == "wait":
            return min(60.0, float(value)) if value else 60.0
    return 0.0


def _pid() -> str:
    return uuid.uuid4().hex[:26]


def _invalid(model: Model, given: dict[str, Any], state: ReplicateState) -> list[tuple]:
    from .fal import validate

    out = []
    for field, _message, kind in validate(model, given, state):
        if kind == "extra_forbidden":
            continue  # Replicate ignores inputs a model does not have
        description = (f"{field} must be one of the following: "
                       + ", ".join(str(c) for c in model.inputs[field].choices)
                       if kind == "enum" else
                       f"{field} is required" if kind == "missing" else
                       f"{field}: could not fetch the file" if kind == "file_download_error"
                       else f"Invalid type. Expected: {model.inputs[field].type}")
        out.append((field, description, kind))
    return out


def _status(state: ReplicateState, p: Prediction) -> str:
    age = time.monotonic() - p.created
    outcome = p.outcome[0] if p.outcome else None
    if p.canceled:
        return "canceled"
    if outcome == "abort":
        return "aborted" if age >= state.queue_s else "starting"
    if age < state.queue_s:
        return "starting"
    if state.never_finish or age < state.latency:
        return "processing"
    return {"fail": "failed", "cancel": "canceled"}.get(str(outcome), "succeeded")


def _view(state: ReplicateState, p: Prediction, request: web.Request) -> dict[str, Any]:
    """The prediction, as `GET /v1/predictions/{id}` shows it."""
    status = _status(state, p)
    api = f"{request.url.origin()}/v1/predictions/{p.id}"
    view: dict[str, Any] = {
        "id": p.id, "model": p.model, "version": p.version, "input": p.input, "logs": "",
        "output": None, "data_removed": False, "error": None, "status": status,
        "created_at": _iso(0), "urls": {"get": api, "cancel": f"{api}/cancel",
                                        "web": f"https://replicate.com/p/{p.id}"}}
    if status == "succeeded":
        if p.output is None:
            p.output, p.made_at = _make(state, p, request.url.origin()), time.time()
        if time.time() - p.made_at >= state.output_ttl:
            view["data_removed"] = True
        else:
            view["output"] = p.output
        view["metrics"] = {"predict_time": 0.01, "total_time": 0.02}
    elif status == "failed":
        view["error"] = p.outcome[1] if p.outcome and len(p.outcome) > 1 else "failed"
    return view


def _make(state: ReplicateState, p: Prediction, origin: Any) -> Any:
    model = MODELS.get(p.model) or VERSIONS[p.version][1]
    if model.media == "image":
        ratio = str(p.input.get("aspect_ratio") or "16:9")
        if ratio == "match_input_image":
            ratio = "16:9"
        w, _, h = ratio.partition(":")
        size = _fit(float(w) / float(h))
        body, kind, name = media.flat_png(*size, seed=f"{p.model}|{p.input}"), "image/png", \
            "out-0.png"
    else:
        image = p.input.get("start_image") or p.input.get("image")
        found = fetch_image(state, image) if isinstance(image, str) else None
        size = _fit(found[0] / found[1] if found else 16 / 9)
        frames = p.input.get("num_frames")
        seconds = int(p.input.get("duration", 5)) if frames is None else max(
            1, round(frames / p.input.get("fps", 16)))
        body = media.mp4_tagged(*size, seconds, str(p.input.get("prompt")))
        kind, name = "video/mp4", "output.mp4"
    out_id = f"{next(state._ids)}{p.id[:10]}"
    state.outputs[out_id] = (body, kind, time.time())
    state.made.append(hashlib.sha256(body).hexdigest())
    url = f"{origin}/delivery/{out_id}/{name}"
    return [url] if p.model == "google/nano-banana" else url


def _fit(ratio: float) -> tuple[int, int]:
    if ratio >= 1:
        return LONG_SIDE, max(2, round(LONG_SIDE / ratio / 2) * 2)
    return max(2, round(LONG_SIDE * ratio / 2) * 2), LONG_SIDE


def _iso(offset: float) -> str:
    return (datetime.now(UTC) + timedelta(seconds=offset)).isoformat()


async def _get(state: ReplicateState, request: web.Request) -> web.Response:
    p = state.predictions.get(request.match_info["id"])
    if p is None:
        return problem(404, "Not found", "The requested resource could not be found.")
    return web.json_response(_view(state, p, request))


async def _cancel(state: ReplicateState, request: web.Request) -> web.Response:
    p = state.predictions.get(request.match_info["id"])
    if p is None:
        return problem(404, "Not found", "The requested resource could not be found.")
    if _status(state, p) in ("starting", "processing"):
        p.canceled = True
    return web.json_response(_view(state, p, request))


async def _delivery(state: ReplicateState, request: web.Request) -> web.Response:
    return kept(state.outputs.get(request.match_info["id"]), state.output_ttl)


# -- files -------------------------------------------------------------------------------


async def _upload(state: ReplicateState, request: web.Request) -> web.Response:
    if not request.content_type.startswith("multipart/form-data"):
        return problem(400, "Bad request", "expected multipart/form-data")
    form = await request.post()
    content = form.get("content")
    if not isinstance(content, web.FileField):
        return problem(422, "Input validation failed", "- content: content is required")
    body = content.file.read()
    file_id = uuid.uuid4().hex[:24]
    state.stored[file_id] = (body, content.content_type)
    state.uploads += 1
    url = f"{request.url.origin()}/v1/files/{file_id}"
    return web.json_response({
        "id": file_id, "name": content.filename, "content_type": content.content_type,
        "size": len(body), "etag": hashlib.md5(body).hexdigest(),
        "checksums": {"sha256": hashlib.sha256(body).hexdigest()},
        "metadata": json.loads(str(form.get("metadata") or "{}")),
        "created_at": _iso(0), "expires_at": _iso(state.file_ttl), "urls": {"get": url}},
        status=201)
