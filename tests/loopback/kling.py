"""A loopback Kling API: image-to-video, multi-image video and images, as tasks, with faults.

Written from Kling's documented protocol (../shared/BACKENDS.md's Kling
section, and Kling's API reference): every request carries a JWT (HS256) signed
with the account's secret key, checked as Kling checks it (401 with code 1001
when absent, 1002 when it does not verify, 1003 before its `nbf`, 1004 after
its `exp`, 1000 for an unknown `iss`); every answer is `{code, message,
request_id, data}`.  A submit is validated as the docs describe (known fields,
models per route, `duration` as the string "5" or "10", `mode` std|pro, images
as raw base64 PNG/JPEG of at least 300 px between 1:2.5 and 2.5:1, a unique
`external_task_id`, `image_tail` only in pro mode) and makes a task:
`submitted`, then `processing`, then `succeed` after `latency` seconds, with a
real MP4 (or PNG) at `/files/...` that needs no token, as Kling's CDN does.

    state = KlingState(access_key="ak", secret_key="sk")
    with serve(make_app(state)) as url:       # the API under f"{url}/v1"
        state.submit_faults.append(("code", 429, 1303, "...", {"Retry-After": "1"}))
        ...
    state.created (every task made: what was paid), state.posts, state.bodies

Faults.  `submit_faults` are taken one per POST and `query_faults` one per task
query, after the token is checked: ("code", status, code, message, headers)
answers that; ("reset",) makes the task (it is paid) and drops the connection
unanswered; ("slow", seconds) waits, then answers normally; None answers
normally.  `refuse` lists words whose prompts get 400/1301; `fail_tasks` maps
words of a prompt to the `task_status_msg` of a task that fails; `expire_next`
answers that many requests 401/1004; `clock_offset` moves the server's clock
(tokens look expired or not yet valid); `never_finish` keeps tasks
`processing`; `url_ttl` expires file URLs (403); `corrupt` serves files that
are not media.  A task not found is 404 with code 1203 (unverified: Kling does
not document that answer).

`python -m loopback.kling --port 8191 --access-key ak --secret-key sk` (from tests/)
serves until killed.
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
from collections import Counter
from typing import Any, NoReturn

import attrs
from aiohttp import web
from PIL import Image

from . import media, run_forever
from .common import command_line, hang_up, json_object

VIDEO_MODELS = ("kling-v1", "kling-v1-5", "kling-v1-6", "kling-v2-master", "kling-v2-1",
                "kling-v2-1-master", "kling-v2-5-turbo", "kling-v2-6")
MULTI_VIDEO_MODELS = ("kling-v1-6",)
IMAGE_MODELS = ("kling-v1", "kling-v1-5", "kling-v2", "kling-v2-new", "kling-v2-1")
MULTI_IMAGE_MODELS = ("kling-v2", "kling-v2-1")
IMAGE_RATIOS = ("16:9", "9:16", "1:1", "4:3", "3:4", "3:2", "2:3", "21:9")
VIDEO_RATIOS = ("16:9", "9:16", "1:1")
VIDEO_SHORT_SIDE = 160  # the loopback makes small videos: quick to encode, real to decode

_COMMON = {"model_name", "prompt", "negative_prompt", "callback_url", "external_task_id",
           "watermark_info"}
FIELDS = {
    "videos/image2video": _COMMON | {"image", "image_tail", "cfg_scale", "mode", "static_mask",
                                     "dynamic_masks", "camera_control", "duration",
                                     "voice_list", "sound"},
    "videos/multi-image2video": _COMMON | {"image_list", "mode", "duration", "aspect_ratio"},
    "images/generations": _COMMON | {"image", "image_reference", "image_fidelity",
                                     "human_fidelity", "resolution", "n", "aspect_ratio"},
    "images/multi-image2image": _COMMON - {"negative_prompt"} | {
        "subject_image_list", "scene_image", "style_image", "n", "aspect_ratio"},
}
MODELS = {"videos/image2video": VIDEO_MODELS, "videos/multi-image2video": MULTI_VIDEO_MODELS,
          "images/generations": IMAGE_MODELS, "images/multi-image2image": MULTI_IMAGE_MODELS}
DEFAULT_MODEL = {"videos/image2video": "kling-v1", "videos/multi-image2video": "kling-v1-6",
                 "images/generations": "kling-v1", "images/multi-image2image": "kling-v2"}


@attrs.define(eq=False)
class Task:
    id: str
    route: str
    external: str | None
    body: dict[str, Any]
    made: float  # time.monotonic()
    width: int
    height: int
    status: str = "submitted"
    message: str = ""
    files: list[str] = attrs.Factory(list)  # names under /files/
    durations: list[str] = attrs.Factory(list)


@attrs.define
class KlingState:
    """The account, the knobs and faults, and what the server was asked (read it from the
    test's thread)."""

    access_key: str = "ak-loopback"
    secret_key: str = "sk-loopback"
    latency: float = 0.05  # seconds from submit to `succeed`
    never_finish: bool = False
    submit_faults: list[Any] = attrs.Factory(list)
    query_faults: list[Any] = attrs.Factory(list)
    refuse: list[str] = attrs.Factory(list)  # words that content security refuses (400/1301)
    fail_tasks: dict[str, str] = attrs.Factory(dict)  # word of a prompt → task_status_msg
    expire_next: int = 0  # answer this many requests 401/1004
    clock_offset: float = 0.0  # seconds added to the server's clock when checking tokens
    url_ttl: float = 30 * 86400.0  # seconds a file URL lives (then 403)
    corrupt: bool = False  # files served are not media
    # What it holds and counts.
    tasks: dict[str, Task] = attrs.Factory(dict)
    created: list[str] = attrs.Factory(list)  # every task made, in order: what was paid
    posts: Counter[str] = attrs.Factory(Counter)  # every POST, by route
    queries: int = 0
    downloads: int = 0
    bodies: list[dict[str, Any]] = attrs.Factory(list)  # submits, images as their digests
    claims: list[dict[str, Any]] = attrs.Factory(list)  # each accepted token's claims
    tokens: set[str] = attrs.Factory(set)  # distinct tokens accepted
    auth_failures: list[int] = attrs.Factory(list)  # codes answered
    made: list[str] = attrs.Factory(list)  # sha256 of every file it made
    files: dict[str, tuple[bytes, str, float]] = attrs.Factory(dict)  # name → body, type, time
    in_flight: int = 0  # tasks not finished
    _ids: itertools.count[int] = attrs.Factory(lambda: itertools.count(800000000000000001))

    def by_external(self, external: str) -> Task | None:
        return next((t for t in self.tasks.values() if t.external == external), None)


class _Answer(Exception):
    """A Kling-shaped error answer, raised from deep in validation."""

    def __init__(self, status: int, code: int, message: str,
                 headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.response = answer(status, code, message, headers=headers)


def answer(status: int, code: int, message: str, data: Any = None,
           headers: dict[str, str] | None = None) -> web.Response:
    body: dict[str, Any] = {"code": code, "message": message, "request_id": uuid.uuid4().hex}
    if data is not None:
        body["data"] = data
    return web.json_response(body, status=status, headers=headers)


def make_app(state: KlingState) -> web.Application:
    app = web.Application(client_max_size=64 << 20)
    for route in FIELDS:
        app.router.add_post(f"/v1/{route}", _api(state, route, _submit))
        app.router.add_get(f"/v1/{route}", _api(state, route, _query))
        app.router.add_get(f"/v1/{route}/{{id}}", _api(state, route, _query))

    async def download(request: web.Request) -> web.Response:
        state.downloads += 1
        found = state.files.get(request.match_info["name"])
        if found is None:
            return web.Response(status=404, text="NoSuchKey")
        body, content_type, made = found
        if time.time() - made >= state.url_ttl:
            return web.Response(status=403, text="AccessDenied: Request has expired")
        if state.corrupt:
            return web.Response(body=b"<html>upstream error</html>", content_type="text/html")
        return web.Response(body=body, content_type=content_type)

    app.router.add_get("/files/{name}", download)
    return app


def _api(state: KlingState, route: str, handler: Any) -> Any:
    async def wrapped(request: web.Request) -> web.StreamResponse:
        try:
            _check_token(state, request.headers.get("Authorization", ""))
            return await handler(state, route, request)
        except _Answer as e:
            return e.response

    return wrapped


def _check_token(state: KlingState, header: str) -> None:
    import jwt

    def refuse(code: int, message: str) -> NoReturn:
        state.auth_failures.append(code)
        raise _Answer(401, code, message)

    if state.expire_next > 0:
        state.expire_next -= 1
        refuse(1004, "Auth failed: token expired")
    if not header.startswith("Bearer ") or not header[7:].strip():
        refuse(1001, "Auth failed: Authorization is empty")
    token = header[7:].strip()
    try:
        claims = jwt.decode(token, state.secret_key, algorithms=["HS256"],
                            options={"require": ["iss", "exp", "nbf"], "verify_exp": False,
                                     "verify_nbf": False})
    except jwt.InvalidTokenError:
        refuse(1002, "Auth failed: Authorization is invalid")
    if jwt.get_unverified_header(token).get("alg") != "HS256":
        refuse(1002, "Auth failed: Authorization is invalid")
    now = time.time() + state.clock_offset
    if claims["iss"] != state.access_key:
        refuse(1000, "Auth failed: unknown access key")
    if now >= claims["exp"]:
        refuse(1004, "Auth failed: token expired")
    if now < claims["nbf"]:
        refuse(1003, "Auth failed: token not yet valid")
    state.claims.append(claims)
    state.tokens.add(token)


async def _fault(faults: list[Any], request: web.Request) -> str | None:
    """Apply the next fault; "reset" when the caller must drop the connection after its
    work."""
    fault = faults.pop(0) if faults else None
    if fault is None:
        return None
    if fault[0] == "code":
        _, status, code, message, headers = (*fault, None)[:5]
        raise _Answer(status, code, message, headers)
    if fault[0] == "slow":
        await asyncio.sleep(float(fault[1]))
        return None
    if fault[0] == "reset":
        return "reset"
    raise ValueError(f"unknown loopback fault {fault!r}")


# -- submitting --------------------------------------------------------------------------


async def _submit(state: KlingState, route: str, request: web.Request) -> web.StreamResponse:
    state.posts[route] += 1
    body = await json_object(request, lambda m: _Answer(400, 1200, m),
                             "Invalid request parameters: the body is not JSON",
                             "Invalid request parameters: the body is not an object")
    then = await _fault(state.submit_faults, request)
    w, h, shown = _validate(state, route, body)
    state.bodies.append({"route": route, **shown})
    prompt = str(body.get("prompt") or "")
    if any(word in prompt for word in state.refuse):
        raise _Answer(400, 1301, "Trigger the content security policy of the platform")
    task = Task(str(next(state._ids)), route, body.get("external_task_id"), shown,
                time.monotonic(), w, h)
    state.tasks[task.id] = task
    state.created.append(task.id)
    state.in_flight += 1
    if then == "reset":
        hang_up(request)
    return answer(200, 0, "SUCCEED", data=_record(task, brief=True))


def _validate(state: KlingState, route: str,
              body: dict[str, Any]) -> tuple[int, int, dict[str, Any]]:
    """Refuse what Kling refuses; the output's frame size; the body with images as digests."""
    def bad(message: str) -> _Answer:
        return _Answer(400, 1201, f"Invalid parameter: {message}")

    for name in body:
        if name not in FIELDS[route]:
            raise bad(f"unknown field `{name}`")
    model = str(body.get("model_name") or DEFAULT_MODEL[route])
    if model not in MODELS[route]:
        raise _Answer(404, 1203, f"The requested resource does not exist: model {model}")
    for name in ("prompt", "negative_prompt"):
        if len(str(body.get(name) or "")) > 2500:
            raise bad(f"`{name}` is longer than 2500 characters")
    external = body.get("external_task_id")
    if external is not None and state.by_external(str(external)) is not None:
        raise bad(f"external_task_id `{external}` already exists")
    shown = {k: v for k, v in body.items() if k not in ("image", "image_tail", "image_list",
                                                        "subject_image_list", "scene_image")}
    if route.startswith("videos/"):
        if body.get("mode", "std") not in ("std", "pro"):
            raise bad("`mode` must be `std` or `pro`")
        duration = body.get("duration", "5")
        if duration not in ("5", "10"):
            raise bad(f"`duration` must be the string \"5\" or \"10\", not {duration!r}")
        if "cfg_scale" in body and (model.startswith("kling-v2") or not isinstance(
                body["cfg_scale"], (int, float)) or not 0 <= body["cfg_scale"] <= 1):
            raise bad("`cfg_scale` is a number in [0, 1], and v2 models take none")
    else:
        if str(body.get("n", 1)) not in {str(i) for i in range(1, 10)}:
            raise bad("`n` must be from 1 to 9")
        if body.get("aspect_ratio", "16:9") not in IMAGE_RATIOS:
            raise bad(f"`aspect_ratio` {body.get('aspect_ratio')!r} is not supported")
        if body.get("resolution", "1k") not in ("1k", "2k"):
            raise bad("`resolution` must be `1k` or `2k`")
    if route == "videos/image2video":
        if not body.get("image") and not body.get("image_tail"):
            raise bad("`image` and `image_tail` cannot both be empty")
        sizes = []
        for name in ("image", "image_tail"):
            if body.get(name):
                size, shown[name] = _image(body[name], name)
                sizes.append(size)
        w, h = sizes[0]  # the video takes the shape of its first image
        if body.get("image_tail") and body.get("mode", "std") != "pro" and model != "kling-v1":
            raise bad(f"`image_tail` needs mode `pro` with {model}")
        if body.get("image_tail") and model == "kling-v1" and body.get("duration") == "10":
            raise bad("`image_tail` makes 5 s videos only with kling-v1")
        return w, h, shown
    if route == "videos/multi-image2video":
        images = _list(body.get("image_list"), "image", "image_list")
        shown["image_list"] = [_image(i, "image_list")[1] for i in images]
        if not str(body.get("prompt") or "").strip():
            raise bad("`prompt` is required")
        ratio = body.get("aspect_ratio", "16:9")
        if ratio not in VIDEO_RATIOS:
            raise bad(f"`aspect_ratio` {ratio!r} is not supported")
        return (*_frame(ratio, VIDEO_SHORT_SIDE), shown)
    if route == "images/generations":
        if not str(body.get("prompt") or "").strip():
            raise bad("`prompt` is required")
        if body.get("image"):
            _, shown["image"] = _image(body["image"], "image")
            if body.get("negative_prompt"):
                raise bad("`negative_prompt` is not supported with `image`")
    else:  # images/multi-image2image
        subjects = _list(body.get("subject_image_list"), "subject_image", "subject_image_list")
        shown["subject_image_list"] = [_image(i, "subject_image_list")[1] for i in subjects]
        if body.get("scene_image"):
            _, shown["scene_image"] = _image(body["scene_image"], "scene_image")
    w, h = _frame(str(body.get("aspect_ratio", "16:9")),
                  768 if body.get("resolution", "1k") == "1k" else 1536)
    return w, h, shown


def _list(value: Any, key: str, name: str) -> list[str]:
    if not isinstance(value, list) or not 1 <= len(value) <= 4 or not all(
            isinstance(i, dict) and set(i) == {key} for i in value):
        raise _Answer(400, 1201, f"Invalid parameter: `{name}` takes 1 to 4 items "
                      f"{{\"{key}\": ...}}")
    return [i[key] for i in value]


def _image(value: Any, name: str) -> tuple[tuple[int, int], str]:
    """A base64 image as Kling checks it: its size, and its digest (for `bodies`)."""
    def bad(message: str) -> _Answer:
        return _Answer(400, 1201, f"Invalid parameter: `{name}` {message}")

    if not isinstance(value, str):
        raise bad("must be a URL or base64 string")
    if value.startswith("data:"):
        raise bad("must be raw base64, without a `data:` prefix")
    if value.startswith(("http://", "https://")):
        raise bad("is a URL, which the loopback server cannot fetch")
    try:
        raw = base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError):
        raise bad("is not valid base64") from None
    if len(raw) > 10 * 1024 * 1024:
        raise bad("is larger than 10MB")
    try:
        with Image.open(io.BytesIO(raw)) as img:
            img.verify()
            fmt, (w, h) = img.format, img.size
    except Exception:
        raise bad("is not an image") from None
    if fmt not in ("PNG", "JPEG"):
        raise bad(f"must be .jpg, .jpeg or .png, not {fmt}")
    if min(w, h) < 300:
        raise bad(f"is {w}x{h}: width and height must be at least 300px")
    if not 1 / 2.5 <= w / h <= 2.5:
        raise bad(f"is {w}x{h}: the aspect ratio must be between 1:2.5 and 2.5:1")
    return (w, h), hashlib.sha256(raw).hexdigest()


def _frame(ratio: str, short: int) -> tuple[int, int]:
    a, b = (int(x) for x in ratio.split(":"))
    return (round(short * a / b), short) if a >= b else (short, round(short * b / a))


# -- querying ----------------------------------------------------------------------------


async def _query(state: KlingState, route: str, request: web.Request) -> web.StreamResponse:
    state.queries += 1
    then = await _fault(state.query_faults, request)
    tid, external = request.match_info.get("id"), request.query.get("external_task_id")
    if tid is None and external is None:  # the list of tasks, newest first
        size = int(request.query.get("pageSize", "30"))
        page = int(request.query.get("pageNum", "1"))
        tasks = [t for t in reversed(list(state.tasks.values())) if t.route == route]
        chosen = tasks[(page - 1) * size:page * size]
        return answer(200, 0, "SUCCEED", data=[await _advance(state, t, request)
                                               for t in chosen])
    task = state.tasks.get(tid) if tid is not None else state.by_external(str(external))
    if task is None or task.route != route:
        raise _Answer(404, 1203, f"The requested resource does not exist: task "
                      f"{tid or external}")
    record = await _advance(state, task, request)
    if then == "reset":
        hang_up(request)
    return answer(200, 0, "SUCCEED", data=record)


async def _advance(state: KlingState, task: Task, request: web.Request) -> dict[str, Any]:
    """The task as it stands now; it finishes (making its file) once `latency` has passed."""
    age = time.monotonic() - task.made
    if task.status in ("submitted", "processing"):
        if state.never_finish or age < state.latency:
            task.status = "submitted" if age < state.latency / 2 else "processing"
        else:
            await _finish(state, task, request)
    return _record(task)


async def _finish(state: KlingState, task: Task, request: web.Request) -> None:
    prompt = str(task.body.get("prompt") or "")
    failing = next((msg for word, msg in state.fail_tasks.items() if word in prompt), None)
    state.in_flight -= 1
    if failing is not None:
        task.status, task.message = "failed", failing
        return
    seed = f"{task.route}|{prompt}|{sorted(task.body.items(), key=str)}"
    if task.route.startswith("videos/"):
        seconds = int(task.body.get("duration", "5"))
        scale = VIDEO_SHORT_SIDE / min(task.width, task.height)
        w, h = round(task.width * scale), round(task.height * scale)
        body = await asyncio.to_thread(media.mp4, w, h, seconds, 24, seed)
        name, kind = f"{task.id}.mp4", "video/mp4"
        task.durations.append(str(seconds))
    else:
        body = media.flat_png(task.width, task.height, seed)
        name, kind = f"{task.id}-0.png", "image/png"
    state.files[name] = (body, kind, time.time())
    state.made.append(hashlib.sha256(body).hexdigest())
    task.files.append(f"{request.url.origin()}/files/{name}")
    task.status, task.message = "succeed", ""


def _record(task: Task, brief: bool = False) -> dict[str, Any]:
    made = int(task.made * 1000)
    record: dict[str, Any] = {"task_id": task.id, "task_status": task.status,
                              "task_info": {"external_task_id": task.external} if task.external
                              else {}, "created_at": made, "updated_at": made}
    if brief:
        return record
    record["task_status_msg"] = task.message
    if task.status == "succeed":
        record["final_unit_deduction"] = "1"
        if task.route.startswith("videos/"):
            record["task_result"] = {"videos": [
                {"id": f"v{task.id}", "url": url, "duration": d}
                for url, d in zip(task.files, task.durations)]}
        else:
            record["task_result"] = {"images": [{"index": i, "url": url}
                                                for i, url in enumerate(task.files)]}
    return record


def main() -> None:
    parser = command_line("a loopback Kling API server", 8191)
    parser.add_argument("--access-key", default="ak-loopback")
    parser.add_argument("--secret-key", default="sk-loopback")
    parser.add_argument("--latency", type=float, default=5.0, help="seconds a task takes")
    args = parser.parse_args()
    run_forever(make_app(KlingState(access_key=args.access_key, secret_key=args.secret_key,
                                    latency=args.latency)), args.host, args.port)


if __name__ == "__main__":
    main()
