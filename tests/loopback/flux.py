"""A loopback Black Forest Labs API: FLUX submits, `polling_url`s, results and their faults.

Written from BFL's documented protocol (api.bfl.ai): the `x-key` header on every
API call; `POST /v1/{model}` answers `{id, polling_url, cost}`; the polling URL
(`/v1/get_result?id=…`) answers `{id, status, result, progress}` with the
status words BFL uses (`Pending`, `Ready`, `Error`, `Request Moderated`,
`Content Moderated`, `Task not found`); a Ready result's `sample` is a signed
URL that stops answering after `sample_ttl` (BFL: 10 minutes) and needs no key.
Each model family is checked as documented: FLUX.2 takes `width`/`height` in
multiples of 16 (64 to 2048, at most 4 MP) and up to 8 `input_image…`; Kontext
an `aspect_ratio` from 21:9 to 9:21 and up to 4 images; FLUX 1.1 [pro] sides in
multiples of 32 from 256 to 1440.  A Ready task's image is a real PNG (or
JPEG) of the size asked (Kontext: about a megapixel of its ratio).

    state = FluxState(key="bfl-test")
    with serve(make_app(state)) as url:
        state.moderate_output.append("wolf")   # such prompts end Content Moderated
        state.forget()                         # a restart: every task is `Task not found`
    state.submits, state.created, state.polls, state.downloads, state.made

Faults (`faults`, one taken per submit, after the key is checked):
("status", code, headers, body) answers that; ("reset",) starts the task
(billed) and drops the connection unanswered.  `max_active` tasks may run at
once (BFL: per account): one more is a 429.  `not_found` = "404" answers an
unknown task with HTTP 404 instead of the `Task not found` status.

`python -m loopback.flux --port 8192 --key bfl-test` (from tests/) serves until killed.
"""

from __future__ import annotations

import base64
import binascii
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
from .common import command_line, hang_up, json_object, routed

COMMON = {"prompt", "seed", "safety_tolerance", "output_format", "prompt_upsampling",
          "webhook_url", "webhook_secret"}


@attrs.frozen
class Family:
    references: int
    sized: bool
    side: tuple[int, int] = (64, 2048)
    multiple: int = 16
    megapixels: float = 4.0
    tolerance: int = 6


FAMILIES = (("flux-2-", Family(8, True, tolerance=5)), ("flux-kontext-", Family(4, False)),
            ("flux-pro-1.1-ultra", Family(0, False)),
            ("flux-pro-1.1", Family(0, True, (256, 1440), 32, 2.1)))


@attrs.define
class Task:
    id: str
    model: str
    body: dict[str, Any]
    width: int
    height: int
    polls: int = 0
    status: str = "Pending"
    ready_at: float = 0.0
    output: bytes | None = None


@attrs.define
class FluxState:
    """The server's knobs and what it was asked; read it from the test's thread."""

    key: str = "bfl-loopback"
    faults: list[tuple[Any, ...]] = attrs.Factory(list)
    moderate_request: list[str] = attrs.Factory(list)  # prompt words: Request Moderated
    moderate_output: list[str] = attrs.Factory(list)  # prompt words: Content Moderated
    error: list[str] = attrs.Factory(list)  # prompt words: the task ends in Error
    pending_polls: int = 1  # polls a task answers Pending before it is Ready
    hold: bool = False  # tasks stay Pending until this is False
    sample_ttl: float = 600.0  # seconds a result's URL answers
    max_active: int = 24  # tasks running at once; one more submit is a 429
    not_found: str = "status"  # how an unknown task is answered: "status" or "404"
    requests: Counter[str] = attrs.Factory(Counter)
    submits: int = 0  # submits past the key check, refused ones too
    created: list[dict[str, Any]] = attrs.Factory(list)  # bodies of tasks started (billed)
    polls: int = 0
    downloads: int = 0
    auth_failures: int = 0
    made: list[str] = attrs.Factory(list)  # sha256 of each image made
    received_images: list[str] = attrs.Factory(list)  # sha256 of each input image, in order
    poll_queries: list[str] = attrs.Factory(list)  # the query of each polling URL asked
    tasks: dict[str, Task] = attrs.Factory(dict)
    _ids: itertools.count[int] = attrs.Factory(itertools.count)

    def forget(self) -> None:
        """As after a restart, or once BFL no longer keeps them: every task is unknown."""
        self.tasks.clear()

    def active(self) -> int:
        return sum(1 for t in self.tasks.values() if t.status == "Pending")


class _Refusal(Exception):
    def __init__(self, status: int, detail: Any) -> None:
        super().__init__(str(detail))
        self.response = web.json_response({"detail": detail}, status=status)


def _field(name: str, msg: str) -> _Refusal:
    return _Refusal(422, [{"loc": ["body", *name.split(".")], "msg": msg,
                           "type": "value_error"}])


def family(model: str) -> Family | None:
    return next((f for prefix, f in FAMILIES if model.startswith(prefix)), None)


def make_app(state: FluxState) -> web.Application:
    app = web.Application(client_max_size=128 << 20)

    async def serve(handler: Any, request: web.Request, route: str) -> web.StreamResponse:
        if request.headers.get("x-key") != state.key:
            state.auth_failures += 1
            return web.json_response({"detail": "Not authenticated - Invalid Authentication"},
                                     status=403)
        return await handler(state, request)

    api = routed(app, state, _Refusal, serve)

    api("GET", "/v1/get_result", "get_result", _get_result)
    api("POST", "/v1/{model}", "submit", _submit)

    async def delivery(request: web.Request) -> web.StreamResponse:
        return await _delivery(state, request)

    app.router.add_get("/delivery/{name}", delivery)
    return app


async def _submit(state: FluxState, request: web.Request) -> web.StreamResponse:
    model = request.match_info["model"]
    fam = family(model)
    if fam is None:
        raise _Refusal(404, "Not Found")
    state.submits += 1
    body = await json_object(request, lambda m: _Refusal(422, m), "Invalid JSON body",
                             "The body must be a JSON object")
    fault = state.faults.pop(0) if state.faults else None
    if fault is not None and fault[0] == "status":
        _, status, headers, payload = (*fault, None, None)[:4]
        return web.json_response({"detail": payload or f"the loopback server answers {status}"},
                                 status=status, headers=headers)
    w, h = _check(state, body, fam)
    if state.active() >= state.max_active:
        raise _Refusal(429, f"You have exceeded the number of active tasks ({state.max_active}). "
                            f"Please wait for some tasks to complete.")
    n = next(state._ids)
    task_id = f"{hashlib.sha256(f'task{n}'.encode()).hexdigest()[:8]}-{n:04d}-4bfl-loop-back"
    state.tasks[task_id] = Task(task_id, model, body, w, h)
    state.created.append(body)
    if fault is not None and fault[0] == "reset":
        hang_up(request)
    # As BFL's, the polling URL names the cluster that runs the task.
    polling = f"{request.url.origin()}/v1/get_result?id={task_id}&cluster=loop1"
    return web.json_response({"id": task_id, "polling_url": polling,
                              "cost": 3.0, "input_mp": 0.0, "output_mp": round(w * h / 1e6, 2)})


def _check(state: FluxState, body: dict[str, Any], fam: Family) -> tuple[int, int]:
    images = [f"input_image_{i}" for i in range(2, fam.references + 1)]
    known = COMMON | ({"width", "height"} if fam.sized else {"aspect_ratio"})
    known |= ({"input_image", *images} if fam.references else set())
    for name in body:
        if name not in known:
            raise _field(name, "Extra inputs are not permitted")
    if not isinstance(body.get("prompt"), str) or not body["prompt"].strip():
        raise _field("prompt", "Field required")
    given = ["input_image", *images]
    for i, name in enumerate(given):
        if name in body and body[name] is not None:
            if i and given[i - 1] not in body:
                raise _field(name, f"`{name}` given without `{given[i - 1]}`")
            state.received_images.append(_image(name, body[name]))
    seed = body.get("seed")
    if seed is not None and not (isinstance(seed, int) and not isinstance(seed, bool)):
        raise _field("seed", "Input should be a valid integer")
    tol = body.get("safety_tolerance", 2)
    if not (isinstance(tol, int) and 0 <= tol <= fam.tolerance):
        raise _field("safety_tolerance", f"Input should be between 0 and {fam.tolerance}")
    if body.get("output_format", "png") not in ("png", "jpeg"):
        raise _field("output_format", "Input should be 'jpeg' or 'png'")
    if fam.sized:
        w, h = body.get("width", 1024), body.get("height", 768)
        for name, v in (("width", w), ("height", h)):
            if not (isinstance(v, int) and fam.side[0] <= v <= fam.side[1]
                    and v % fam.multiple == 0):
                raise _field(name, f"Input should be a multiple of {fam.multiple} from "
                                   f"{fam.side[0]} to {fam.side[1]}")
        if w * h > fam.megapixels * 1e6:
            raise _field("width", f"The image may have at most {fam.megapixels} megapixels")
        return w, h
    ratio = body.get("aspect_ratio", "1:1")
    m = re.fullmatch(r"(\d+):(\d+)", ratio) if isinstance(ratio, str) else None
    if m is None or not 9 / 21 <= int(m[1]) / int(m[2]) <= 21 / 9:
        raise _field("aspect_ratio", "Aspect ratio must be between 21:9 and 9:21")
    r = int(m[1]) / int(m[2])
    return 32 * round((1e6 * r) ** 0.5 / 32), 32 * round((1e6 / r) ** 0.5 / 32)


def _image(name: str, value: Any) -> str:
    if isinstance(value, str) and value.startswith("https://"):
        return value
    try:
        data = base64.b64decode(str(value), validate=True)
        with Image.open(io.BytesIO(data)) as img:
            img.verify()
    except (binascii.Error, ValueError, OSError, SyntaxError):
        raise _field(name, "Input should be a base64 encoded image or a URL") from None
    return hashlib.sha256(data).hexdigest()


async def _get_result(state: FluxState, request: web.Request) -> web.StreamResponse:
    state.polls += 1
    state.poll_queries.append(request.query_string)
    task_id = request.query.get("id", "")
    task = state.tasks.get(task_id)
    if task is None:
        if state.not_found == "404":
            raise _Refusal(404, "Task not found")
        return web.json_response({"id": task_id, "status": "Task not found", "result": None,
                                  "progress": None})
    prompt = str(task.body.get("prompt", ""))
    if task.status == "Pending":
        task.polls += 1
        if any(w in prompt for w in state.moderate_request):
            task.status = "Request Moderated"
        elif state.hold or task.polls <= state.pending_polls:
            pass
        elif any(w in prompt for w in state.moderate_output):
            task.status = "Content Moderated"
        elif any(w in prompt for w in state.error):
            task.status = "Error"
        else:
            task.status, task.ready_at = "Ready", time.time()
            task.output = _make(state, task)
    out: dict[str, Any] = {"id": task.id, "status": task.status, "result": None,
                           "progress": 0.5 if task.status == "Pending" else None}
    if task.status in ("Request Moderated", "Content Moderated"):
        out["details"] = {"Moderation Reasons": ["Loopback"]}
    if task.status == "Error":
        out["result"] = {"error": "Generation failed in the loopback model"}
    if task.status == "Ready":
        ext = "jpeg" if task.body.get("output_format") == "jpeg" else "png"
        out["result"] = {"sample": f"{request.url.origin()}/delivery/{task.id}.{ext}"
                                   f"?se=2026-10-01&sig=loopback",
                         "prompt": prompt, "seed": task.body.get("seed"),
                         "start_time": task.ready_at - 1, "end_time": task.ready_at,
                         "duration": 1.0}
    return web.json_response(out)


def _make(state: FluxState, task: Task) -> bytes:
    seed = f"{task.model}|{task.body.get('prompt')}|{task.body.get('seed')}|{task.id}"
    body = media.flat_png(task.width, task.height, seed)
    if task.body.get("output_format") == "jpeg":
        out = io.BytesIO()
        Image.open(io.BytesIO(body)).convert("RGB").save(out, "JPEG")
        body = out.getvalue()
    state.made.append(hashlib.sha256(body).hexdigest())
    return body


async def _delivery(state: FluxState, request: web.Request) -> web.StreamResponse:
    """A signed delivery URL: no key needed, and none wanted after `sample_ttl`."""
    state.downloads += 1
    if "x-key" in request.headers:
        return web.Response(status=400, text="unexpected credentials on a signed URL")
    task = state.tasks.get(request.match_info["name"].rsplit(".", 1)[0])
    if task is None or task.output is None:
        return web.Response(status=404, text="BlobNotFound")
    if time.time() - task.ready_at > state.sample_ttl:
        return web.Response(status=403, text="AuthenticationFailed: Signed expiry time has "
                            "passed")
    kind = "image/jpeg" if task.output[:3] == b"\xff\xd8\xff" else "image/png"
    return web.Response(body=task.output, content_type=kind)


def main() -> None:
    args = command_line("a loopback Black Forest Labs API server", 8192,
                        "bfl-loopback").parse_args()
    run_forever(make_app(FluxState(key=args.key)), args.host, args.port)


if __name__ == "__main__":
    main()
