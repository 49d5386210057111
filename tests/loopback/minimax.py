"""A loopback MiniMax API: Hailuo video tasks, their files, and their faults.

Written from MiniMax's documented protocol (platform.minimax.io, video generation
and file retrieval), as strict as the service where an adapter could go wrong: the
bearer key; the models, and which of them take a last frame; the durations and
resolutions each makes; frames as base64 data URLs of a size and shape MiniMax
takes (short side over 300 px, 2:5 to 5:2); the 2000-character prompt.  Every
answer is HTTP 200 with `base_resp: {status_code, status_msg}` (0: success), as
MiniMax answers.  A task is `Preparing`, `Queueing`, `Processing`, then `Success`
with a `file_id`, whose `download_url` (from `/v1/files/retrieve`) serves a real
MP4 shaped like the first frame, at the resolution asked, until it expires.

    state = MiniMaxState(key="mm-test")
    with serve(make_app(state)) as url:             # the API at url
        state.faults.append(("code", 1002, "rate limit"))
        ...
    state.created (task ids: what was paid for), state.requests, state.received

Faults, one taken per API request (after the key is checked): ("code", status_code,
status_msg) answers that `base_resp`; ("http", status, headers) answers that HTTP
status (a gateway's); ("reset",) reads the request, creates the task if it is one
(billed) and drops the connection unanswered.  `sensitive`: prompt words refused at
submit (1026).  `fail`: prompt words → (status_code, status_msg) a task ends `Fail`
with.  `hold`: tasks stay `Processing` until it is cleared.  `url_ttl`: seconds a
download URL lives.  `corrupt`: the video is an HTML page.

`python -m loopback.minimax --port 8192 --key mm-test` (from tests/) serves until killed.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import contextlib
import functools
import io
import itertools
import time
from collections import Counter
from typing import Any

import attrs
from aiohttp import web
from PIL import Image

from . import run_forever
from .common import command_line, hang_up, json_object, keep_clip, routed, signed_file

HAILUO = ("MiniMax-Hailuo-2.3", "MiniMax-Hailuo-2.3-Fast", "MiniMax-Hailuo-02")
MODELS = (*HAILUO, "T2V-01-Director", "T2V-01", "I2V-01-Director", "I2V-01-live", "I2V-01",
          "S2V-01")
FIELDS = {"model", "prompt", "prompt_optimizer", "fast_pretreatment", "duration", "resolution",
          "first_frame_image", "last_frame_image", "subject_reference", "callback_url",
          "aigc_watermark"}
HEIGHTS = {"512P": 512, "720P": 720, "768P": 768, "1080P": 1080}


def _allowed(model: str, has_first: bool, has_last: bool) -> dict[str, tuple[int, ...]]:
    """Resolution → durations, per MiniMax's tables for each kind of task."""
    if has_last:  # first & last frame to video: MiniMax-Hailuo-02 only, no 512P
        return {"768P": (6, 10), "1080P": (6,)}
    if model in HAILUO:
        table = {"768P": (6, 10), "1080P": (6,)}
        if model == "MiniMax-Hailuo-02" and has_first:
            table["512P"] = (6, 10)
        return table
    return {"720P": (6,)}


@attrs.define
class Task:
    id: str
    model: str
    prompt: str
    size: tuple[int, int]
    seconds: int
    fails: tuple[int, str] | None = None
    status: str = "Preparing"
    polls: int = 0
    file_id: int | None = None


@attrs.define
class MiniMaxState:
    """The server's knobs and what it was asked; read it from the test's thread."""

    key: str = "mm-loopback"
    faults: list[tuple[Any, ...]] = attrs.Factory(list)
    sensitive: list[str] = attrs.Factory(list)  # prompt words refused at submit (1026)
    fail: dict[str, tuple[int, str]] = attrs.Factory(dict)  # prompt words → Fail's base_resp
    hold: bool = False  # tasks stay Processing until cleared
    polls_each: int = 1  # GETs a task answers each of Preparing, Queueing, Processing
    url_ttl: float = 9 * 3600.0
    corrupt: bool = False
    latency: float = 0.0
    requests: Counter[str] = attrs.Factory(Counter)  # "create", "query", "retrieve", "download"
    created: list[str] = attrs.Factory(list)  # accepted tasks, in order: each one is paid
    received: list[dict[str, Any]] = attrs.Factory(list)  # each create's JSON body
    made: list[str] = attrs.Factory(list)  # sha256 of each video it made
    auth_failures: int = 0
    tasks: dict[str, Task] = attrs.Factory(dict)
    files: dict[int, tuple[bytes, float]] = attrs.Factory(dict)  # file id → body, made at
    _ids: itertools.count[int] = attrs.Factory(lambda: itertools.count(106916112212032, 7919))


class _Answer(Exception):
    """A `base_resp` failure, raised from deep in validation."""

    def __init__(self, code: int, message: str, **extra: Any) -> None:
        super().__init__(message)
        self.response = web.json_response(
            {**extra, "base_resp": {"status_code": code, "status_msg": message}})


def _ok(**fields: Any) -> web.Response:
    return web.json_response({**fields, "base_resp": {"status_code": 0, "status_msg": "success"}})


def make_app(state: MiniMaxState) -> web.Application:
    app = web.Application(client_max_size=64 << 20)

    api = routed(app, state, _Answer,
                 lambda handler, request, route: _serve(state, handler, request))

    api("POST", "/v1/video_generation", "create", _create)
    api("GET", "/v1/query/video_generation", "query", _query)
    api("GET", "/v1/files/retrieve", "retrieve", _retrieve)
    app.router.add_get("/download/{file}.mp4", functools.partial(_download, state))
    return app


async def _serve(state: MiniMaxState, handler: Any, request: web.Request) -> web.StreamResponse:
    auth = request.headers.get("Authorization", "")
    if not auth.startswith("Bearer ") or not auth.removeprefix("Bearer ").strip():
        state.auth_failures += 1
        raise _Answer(1004, "login fail: Please carry the API secret key in the "
                            "'Authorization' field of the request header")
    if auth != f"Bearer {state.key}":
        state.auth_failures += 1
        raise _Answer(2049, "invalid api key")
    if state.latency:
        await asyncio.sleep(state.latency)
    fault = state.faults.pop(0) if state.faults else None
    if fault is not None and fault[0] == "code":
        raise _Answer(fault[1], fault[2])
    if fault is not None and fault[0] == "http":
        _, status, headers = (*fault, None)[:3]
        return web.Response(status=status, headers=headers,
                            text=f"<html><body><h1>{status}</h1>loopback gateway</body></html>",
                            content_type="text/html")
    if fault is not None and fault[0] == "reset":
        with contextlib.suppress(_Answer):
            await handler(state, request)  # made (and paid for) all the same
        hang_up(request)
    if fault is not None:
        raise ValueError(f"unknown loopback fault {fault!r}")
    return await handler(state, request)


def _frame(url: Any, name: str) -> tuple[int, int]:
    """The size of a frame a request sends, or the refusal MiniMax gives."""
    if not isinstance(url, str) or not url.startswith("data:image/") or ";base64," not in url:
        raise _Answer(2013, f"invalid params, {name}: the loopback server takes base64 data "
                            f"URLs only")
    try:
        raw = base64.b64decode(url.split(";base64,", 1)[1], validate=True)
        with Image.open(io.BytesIO(raw)) as img:
            img.load()
            fmt, (w, h) = img.format, img.size
    except (binascii.Error, ValueError, OSError):
        raise _Answer(2013, f"invalid params, {name}: not an image") from None
    if fmt not in ("PNG", "JPEG", "WEBP") or len(raw) >= 20 << 20:
        raise _Answer(2013, f"invalid params, {name}: JPG, JPEG, PNG or WebP under 20MB")
    if min(w, h) <= 300 or not 0.4 <= w / h <= 2.5:
        raise _Answer(2013, f"invalid params, {name}: the image is {w}x{h}; its short side "
                            f"must be over 300px and its aspect ratio between 2:5 and 5:2")
    return w, h


async def _create(state: MiniMaxState, request: web.Request) -> web.Response:
    body = await json_object(request, lambda m: _Answer(2013, m),
                             "invalid params, the body is not JSON",
                             "invalid params, the body is not a JSON object")
    state.received.append(body)
    for name in body:
        if name not in FIELDS:
            raise _Answer(2013, f"invalid params, unknown parameter {name}")
    model = body.get("model")
    if model not in MODELS:
        raise _Answer(2013, f"invalid params, model {model} is not supported")
    prompt = body.get("prompt", "")
    if not isinstance(prompt, str) or len(prompt) > 2000:
        raise _Answer(2013, "invalid params, prompt: at most 2000 characters")
    first, last = body.get("first_frame_image"), body.get("last_frame_image")
    if last is not None and model != "MiniMax-Hailuo-02":
        raise _Answer(2013, f"invalid params, model {model} does not support last_frame_image")
    if first is None and (model == "MiniMax-Hailuo-2.3-Fast" or model.startswith("I2V")):
        raise _Answer(2013, f"invalid params, model {model} needs first_frame_image")
    if first is None and last is None and not prompt.strip():
        raise _Answer(2013, "invalid params, prompt is required")
    shape = _frame(first, "first_frame_image") if first is not None else None
    if last is not None:
        _frame(last, "last_frame_image")
    table = _allowed(model, first is not None, last is not None)
    resolution = body.get("resolution", "768P" if "768P" in table else "720P")
    duration = body.get("duration", 6)
    if resolution not in table or duration not in table[resolution]:
        raise _Answer(2013, f"invalid params, {model} does not make {duration}s at "
                            f"{resolution}")
    for name in ("prompt_optimizer", "fast_pretreatment", "aigc_watermark"):
        if name in body and not isinstance(body[name], bool):
            raise _Answer(2013, f"invalid params, {name} must be a boolean")
    if any(word in prompt for word in state.sensitive):
        raise _Answer(1026, "input new_sensitive")
    short = HEIGHTS[resolution]
    w, h = shape or (16, 9)
    long = round(short * max(w, h) / min(w, h) / 2) * 2  # the video follows the frame's shape
    size = (long, short) if w >= h else (short, long)
    task = Task(str(next(state._ids)), model, prompt, size, duration,
                fails=next((v for k, v in state.fail.items() if k in prompt), None))
    state.tasks[task.id] = task
    state.created.append(task.id)
    return _ok(task_id=task.id)


async def _query(state: MiniMaxState, request: web.Request) -> web.Response:
    task = state.tasks.get(request.query.get("task_id", ""))
    if task is None:
        raise _Answer(2013, "invalid params, task not found",
                      task_id=request.query.get("task_id", ""), status="", file_id="")
    task.polls += 1
    steps = ("Preparing", "Queueing", "Processing")
    if task.status in steps:
        n = (task.polls - 1) // max(1, state.polls_each)
        if n < len(steps) or state.hold:
            task.status = steps[min(n, len(steps) - 1)]
        elif task.fails is not None:
            task.status = "Fail"
        else:
            task.status = "Success"
    if task.status == "Fail":
        assert task.fails is not None
        raise _Answer(*task.fails, task_id=task.id, status="Fail", file_id="")
    if task.status == "Success":
        if task.file_id is None:
            task.file_id = await asyncio.to_thread(_make_video, state, task)
        return _ok(task_id=task.id, status="Success", file_id=str(task.file_id),
                   video_width=task.size[0], video_height=task.size[1])
    return _ok(task_id=task.id, status=task.status, file_id="")


def _make_video(state: MiniMaxState, task: Task) -> int:
    file_id = int(task.id) + 70000
    keep_clip(state, file_id, task, b"<html><body>404 Not Found</body></html>")
    return file_id


async def _retrieve(state: MiniMaxState, request: web.Request) -> web.Response:
    try:
        file_id = int(request.query.get("file_id", ""))
    except ValueError:
        raise _Answer(2013, "invalid params, file_id must be an integer") from None
    found = state.files.get(file_id)
    if found is None:
        raise _Answer(2013, "invalid params, file not found")
    expires = int(time.time() + state.url_ttl)
    url = f"{request.url.origin()}/download/{file_id}.mp4?Expires={expires}&Signature=loopback"
    return _ok(file={"file_id": file_id, "bytes": len(found[0]), "created_at": int(found[1]),
                     "filename": "output_aigc.mp4", "purpose": "video_generation",
                     "download_url": url})


async def _download(state: MiniMaxState, request: web.Request) -> web.Response:
    state.requests["download"] += 1
    try:
        found = state.files.get(int(request.match_info["file"]))
        expires = float(request.query.get("Expires", "0"))
    except ValueError:
        found, expires = None, 0.0
    return signed_file(found and found[0], expired=time.time() >= expires)


def main() -> None:
    args = command_line("a loopback MiniMax video API server", 8192, "mm-loopback").parse_args()
    run_forever(make_app(MiniMaxState(key=args.key)), args.host, args.port)


if __name__ == "__main__":
    main()
