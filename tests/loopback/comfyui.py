"""A loopback ComfyUI: its HTTP and websocket protocol, running weight-free workflows for real.

Written from the documented protocol (../shared/BACKENDS.md) and ComfyUI's
server.  `POST /prompt` validates the API-format graph as ComfyUI does (nodes
with `class_type` and `inputs`, links to existing nodes, an output node,
uploaded LoadImage files, INT and FLOAT inputs that convert) and answers 400
with `error` and `node_errors` in ComfyUI's shapes.  A queued job then runs
after `latency` seconds: EmptyImage, EmptyLatentImage, LoadImage, ImageScale,
ImageCrop, RepeatImageBatch and CreateVideo set sizes, frame counts and rates;
SaveImage writes real PNGs and SaveVideo a real MP4, coloured by everything
upstream (the prompt's text, the seed...).  Other nodes (CheckpointLoaderSimple,
KSampler, VAEDecode...) pass their first image along, so SD-style workflows
run too.  Websocket messages go to the client that queued the job, as ComfyUI
sends them: `execution_success` before the history is written, `executing`
with `node: null` after.  Unlike ComfyUI, jobs run concurrently unless
`serial`: a benchmark pushes thousands of them through one server.

    state = ComfyState(latency=0.05, job_errors={"lava": ("3", "out of memory")})
    with serve(make_app(state)) as url:
        ...
    state.submits, state.submit_ids, state.prompts[prompt_id], state.max_in_flight

`python -m loopback.comfyui --port 8188 [--latency 0.1] [--serial]` (from tests/)
serves until killed.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import hashlib
import io
import itertools
import json
import struct
import sys
import time
import uuid
from collections.abc import Callable, Mapping
from typing import Any

import attrs
from aiohttp import web
from PIL import Image

from . import media, run_forever

# Inputs that ComfyUI's own nodes require, with the type they convert to; "*" is a link.
NODES: dict[str, dict[str, str]] = {
    "EmptyImage": {"width": "INT", "height": "INT", "batch_size": "INT", "color": "INT"},
    "EmptyLatentImage": {"width": "INT", "height": "INT", "batch_size": "INT"},
    "LoadImage": {"image": "STRING"},
    "ImageScale": {"image": "*", "upscale_method": "STRING", "width": "INT", "height": "INT",
                   "crop": "STRING"},
    "ImageCrop": {"image": "*", "width": "INT", "height": "INT", "x": "INT", "y": "INT"},
    "ImageBlend": {"image1": "*", "image2": "*", "blend_factor": "FLOAT", "blend_mode": "STRING"},
    "ImageInvert": {"image": "*"},
    "RepeatImageBatch": {"image": "*", "amount": "INT"},
    "CreateVideo": {"images": "*", "fps": "FLOAT"},
    "SaveImage": {"images": "*", "filename_prefix": "STRING"},
    "PreviewImage": {"images": "*"},
    "SaveVideo": {"video": "*", "filename_prefix": "STRING", "format": "STRING", "codec": "STRING"},
    "CheckpointLoaderSimple": {"ckpt_name": "STRING"},
    "CLIPTextEncode": {"text": "STRING", "clip": "*"},
    "KSampler": {"model": "*", "seed": "INT", "steps": "INT", "cfg": "FLOAT",
                 "sampler_name": "STRING", "scheduler": "STRING", "positive": "*",
                 "negative": "*", "latent_image": "*", "denoise": "FLOAT"},
    "VAEEncode": {"pixels": "*", "vae": "*"},
    "VAEDecode": {"samples": "*", "vae": "*"},
    "LatentComposite": {"samples_to": "*", "samples_from": "*", "x": "INT", "y": "INT",
                        "feather": "INT"},
}
OUTPUT_NODES = {"SaveImage": "output", "PreviewImage": "temp", "SaveVideo": "output"}
_CONVERT: dict[str, Callable[[Any], Any]] = {"INT": int, "FLOAT": float}


@attrs.define
class ComfyState:
    """The knobs, the faults to inject, and what the server was asked."""

    latency: float = 0.1  # seconds each job takes
    serial: bool = False  # True: one job at a time, as ComfyUI runs them
    websocket: bool = True  # False: `/ws` answers 404 (a proxy that drops websockets)
    own_ids: bool = False  # True: ignore the client's `prompt_id`, as ComfyUI before 2024 did
    models: tuple[str, ...] | None = None  # the checkpoints it has; None: any name
    # Faults.
    fail_submits: list[tuple[int, dict[str, str], str]] = attrs.Factory(list)  # next answers
    reset_submit: int = 0  # queue the next n prompts, then drop the connection unanswered
    job_errors: dict[str, tuple[str, str]] = attrs.Factory(dict)  # text → (node, message)
    never_finish: bool = False  # jobs stay in queue_running (until it is set False again)
    view_fail: list[int] = attrs.Factory(list)  # statuses of the next /view answers
    corrupt: bool = False  # SaveImage writes bytes that are not a PNG
    duplicate_completion: bool = False  # the completion messages come twice
    # Counts.
    prompt_posts: int = 0  # every POST /prompt
    prompt_times: list[float] = attrs.Factory(list)  # time.monotonic() of each
    submits: int = 0  # POST /prompt that queued a job (answered or not)
    submit_ids: list[str] = attrs.Factory(list)
    uploads: int = 0
    views: int = 0
    history_gets: int = 0
    queue_gets: int = 0
    interrupts: int = 0
    in_flight: int = 0
    max_in_flight: int = 0
    # What it holds.
    prompts: dict[str, dict[str, Any]] = attrs.Factory(dict)  # prompt id → the graph received
    files: dict[tuple[str, str, str], bytes] = attrs.Factory(dict)  # (type, subfolder, name)
    history: dict[str, dict[str, Any]] = attrs.Factory(dict)


@attrs.define(eq=False)
class _Job:
    number: int
    id: str
    prompt: dict[str, Any]
    client: str | None
    outputs: list[str]
    task: asyncio.Task[None] | None = None
    interrupted: bool = False

    def row(self) -> list[Any]:
        return [self.number, self.id, self.prompt, {"client_id": self.client}, self.outputs]


@attrs.frozen
class _Pic:
    """What flows along a link: an image batch (or a video), as far as sizes go."""

    size: tuple[int, int] | None = None
    frames: int = 1
    fps: float | None = None
    tint: str = ""


class _Failed(Exception):
    """A node failed: args are (node id, exception message)."""


class _Comfy:
    def __init__(self, state: ComfyState) -> None:
        self.state = state
        self.pending: dict[str, _Job] = {}
        self.running: dict[str, _Job] = {}
        self.sockets: dict[str, web.WebSocketResponse] = {}
        self.numbers = itertools.count()
        self.counters: dict[str, itertools.count[int]] = {}
        self.videos: dict[tuple[int, int, float, int], asyncio.Task[bytes]] = {}
        self.wake = asyncio.Event()

    # -- HTTP ----------------------------------------------------------------------------

    async def post_prompt(self, request: web.Request) -> web.StreamResponse:
        s = self.state
        try:
            body = await request.json()
        except ValueError:
            return _error(400, "invalid_prompt", "the body is not JSON")
        s.prompt_posts += 1
        s.prompt_times.append(time.monotonic())
        if s.fail_submits:
            status, headers, text = s.fail_submits.pop(0)
            return web.Response(status=status, headers=headers, text=text)
        if not isinstance(body, dict) or "prompt" not in body:
            return _error(400, "no_prompt", "No prompt provided")
        prompt, prompt_id = body["prompt"], str(body.get("prompt_id") or uuid.uuid4())
        prompt_id = str(uuid.uuid4()) if s.own_ids else prompt_id
        error, node_errors, outputs = self.validate(prompt)
        if error is not None:
            return web.json_response({"error": error, "node_errors": node_errors}, status=400)
        job = _Job(next(self.numbers), prompt_id, prompt, body.get("client_id"), outputs)
        s.submits += 1
        s.submit_ids.append(prompt_id)
        s.prompts[prompt_id] = prompt
        self.pending[prompt_id] = job
        if s.serial:
            self.wake.set()
        else:
            self.start(job)
        await self.broadcast_status()
        if s.reset_submit > 0:
            s.reset_submit -= 1
            if request.transport is not None:
                request.transport.close()  # the job is queued; its answer is lost
        return web.json_response({"prompt_id": prompt_id, "number": job.number, "node_errors": {}})

    def validate(self, prompt: Any) -> tuple[dict[str, Any] | None, dict[str, Any], list[str]]:
        if not isinstance(prompt, dict):
            return _err("invalid_prompt", "Prompt is not a dict of nodes"), {}, []
        for node_id, node in prompt.items():
            if not (isinstance(node, dict) and "class_type" in node
                    and isinstance(node.get("inputs"), dict)):
                return _err("invalid_prompt", "Cannot execute because a node is missing the "
                            "class_type property.", f"Node ID '#{node_id}'"), {}, []
        outputs = [n for n, node in prompt.items() if node["class_type"] in OUTPUT_NODES]
        if not outputs:
            return _err("prompt_no_outputs", "Prompt has no outputs"), {}, []
        node_errors: dict[str, Any] = {}
        for out in outputs:
            for node_id in _order(prompt, [out]):
                errors = self.check_node(prompt, node_id)
                if errors:
                    entry = node_errors.setdefault(node_id, {
                        "errors": errors, "dependent_outputs": [],
                        "class_type": prompt[node_id]["class_type"]})
                    entry["dependent_outputs"].append(out)
        if node_errors:
            details = "\n".join(f"{e['message']}: {e['details']}"
                                for v in node_errors.values() for e in v["errors"])
            return _err("prompt_outputs_failed_validation", "Prompt outputs failed validation",
                        details), node_errors, []
        return None, {}, outputs

    def check_node(self, prompt: dict[str, Any], node_id: str) -> list[dict[str, Any]]:
        node = prompt[node_id]
        inputs, errors = node["inputs"], []
        for name, value in inputs.items():
            if isinstance(value, list) and (len(value) != 2 or str(value[0]) not in prompt):
                errors.append(_problem("bad_linked_input", "Bad linked input, must be a length-2 "
                                       "list of [node_id, slot_index] naming a node", name))
        for name, kind in NODES.get(node["class_type"], {}).items():
            value = inputs.get(name)
            if name not in inputs:
                errors.append(_problem("required_input_missing", "Required input is missing", name))
            elif kind in _CONVERT and not isinstance(value, list):
                try:
                    _CONVERT[kind](value)
                except (TypeError, ValueError) as e:
                    errors.append(_problem("invalid_input_type", f"Failed to convert an input "
                                           f"value to a {kind} value", f"{name}, {value}, {e}"))
        ct, files = node["class_type"], self.state.files
        if ct == "LoadImage" and ("input", *_split(str(inputs.get("image")))) not in files:
            errors.append(_problem("custom_validation_failed", "Custom validation failed for node",
                                   f"image - Invalid image file: {inputs.get('image')}"))
        models = self.state.models
        if ct == "CheckpointLoaderSimple" and models is not None \
                and inputs.get("ckpt_name") not in models:
            errors.append(_problem("value_not_in_list", "Value not in list",
                                   f"ckpt_name: '{inputs.get('ckpt_name')}' not in {list(models)}"))
        return errors

    async def get_history(self, request: web.Request) -> web.Response:
        self.state.history_gets += 1
        if "prompt_id" in request.match_info:
            pid = request.match_info["prompt_id"]
            entry = self.state.history.get(pid)
            return web.json_response({pid: entry} if entry is not None else {})
        items = list(self.state.history.items())
        most = request.query.get("max_items")
        return web.json_response(dict(items[-int(most):] if most else items))

    async def get_queue(self, request: web.Request) -> web.Response:
        self.state.queue_gets += 1
        return web.json_response({"queue_running": [j.row() for j in self.running.values()],
                                  "queue_pending": [j.row() for j in self.pending.values()]})

    async def post_queue(self, request: web.Request) -> web.Response:
        body = await _json(request)
        doomed = list(self.pending) if body.get("clear") else body.get("delete") or []
        for pid in doomed:
            self.pending.pop(str(pid), None)
        await self.broadcast_status()
        return web.Response()

    async def post_interrupt(self, request: web.Request) -> web.Response:
        self.state.interrupts += 1
        wanted = (await _json(request)).get("prompt_id")
        for job in list(self.running.values()):
            if (wanted is None or wanted == job.id) and job.task is not None:
                job.interrupted = True
                job.task.cancel()
        return web.Response()

    async def get_view(self, request: web.Request) -> web.Response:
        s = self.state
        s.views += 1
        if s.view_fail:
            return web.Response(status=s.view_fail.pop(0))
        q = request.query
        name, sub, kind = q.get("filename", ""), q.get("subfolder", ""), q.get("type", "output")
        if not name or name.startswith("/") or ".." in name or ".." in sub:
            return web.Response(status=400)
        body = s.files.get((kind, sub, name))
        if body is None:
            return web.Response(status=404)
        ctype = {"png": "image/png", "mp4": "video/mp4"}.get(name.rsplit(".", 1)[-1], "")
        return web.Response(body=body, content_type=ctype or "application/octet-stream")

    async def post_upload(self, request: web.Request) -> web.Response:
        post = await request.post()
        image = post.get("image")
        if not isinstance(image, web.FileField) or not image.filename:
            return web.Response(status=400)
        sub, kind = str(post.get("subfolder", "")), str(post.get("type", "input"))
        if ".." in sub or sub.startswith("/") or kind not in ("input", "temp", "output"):
            return web.Response(status=400)
        data, name = image.file.read(), image.filename
        if str(post.get("overwrite", "")) not in ("true", "1"):
            stem, dot, ext = name.rpartition(".")
            n = 1
            while self.state.files.get((kind, sub, name), data) != data:
                name, n = f"{stem} ({n}){dot}{ext}", n + 1
        self.state.files[(kind, sub, name)] = data
        self.state.uploads += 1
        return web.json_response({"name": name, "subfolder": sub, "type": kind})

    async def get_prompt(self, request: web.Request) -> web.Response:
        return web.json_response(self.exec_info())

    async def object_info(self, request: web.Request) -> web.Response:
        return web.json_response({
            name: {"input": {"required": {k: [t] for k, t in spec.items()}}, "output": [],
                   "output_node": name in OUTPUT_NODES, "name": name, "display_name": name,
                   "category": "loopback"} for name, spec in NODES.items()})

    async def system_stats(self, request: web.Request) -> web.Response:
        return web.json_response({
            "system": {"os": "posix", "comfyui_version": "loopback", "python_version": sys.version,
                       "embedded_python": False, "ram_total": 0, "ram_free": 0, "argv": []},
            "devices": [{"name": "cpu", "type": "cpu", "index": None, "vram_total": 0,
                         "vram_free": 0, "torch_vram_total": 0, "torch_vram_free": 0}]})

    # -- the websocket ---------------------------------------------------------------------

    async def websocket(self, request: web.Request) -> web.StreamResponse:
        if not self.state.websocket:
            return web.Response(status=404)
        ws = web.WebSocketResponse()
        await ws.prepare(request)
        sid = request.query.get("clientId") or uuid.uuid4().hex
        self.sockets[sid] = ws  # a reconnecting client replaces its old socket
        try:
            await self.send(sid, "status", {"status": self.exec_info(), "sid": sid})
            async for _ in ws:
                pass
        finally:
            if self.sockets.get(sid) is ws:
                del self.sockets[sid]
        return ws

    async def send(self, sid: str | None, kind: str, data: Mapping[str, Any]) -> None:
        ws = self.sockets.get(sid) if sid else None
        if ws is not None and not ws.closed:
            with contextlib.suppress(ConnectionError, RuntimeError):
                await ws.send_str(json.dumps({"type": kind, "data": data}))

    async def broadcast_status(self) -> None:
        for sid in list(self.sockets):
            await self.send(sid, "status", {"status": self.exec_info()})

    def exec_info(self) -> dict[str, Any]:
        return {"exec_info": {"queue_remaining": len(self.pending) + len(self.running)}}

    # -- running jobs ----------------------------------------------------------------------

    def start(self, job: _Job) -> None:
        self.pending.pop(job.id, None)
        self.running[job.id] = job
        job.task = asyncio.get_running_loop().create_task(self.run(job))

    async def serial_worker(self) -> None:
        while True:
            await self.wake.wait()
            self.wake.clear()
            while self.pending:
                job = min(self.pending.values(), key=lambda j: j.number)
                self.start(job)
                assert job.task is not None
                await asyncio.wait([job.task])  # an interrupted job does not stop the worker

    async def run(self, job: _Job) -> None:
        s, pid, sid = self.state, job.id, job.client
        s.in_flight += 1
        s.max_in_flight = max(s.max_in_flight, s.in_flight)
        messages: list[list[Any]] = []
        outputs: dict[str, Any] = {}
        done: list[str] = []

        async def say(kind: str, data: dict[str, Any], keep: bool = False) -> None:
            data = {**data, "prompt_id": pid}
            if keep:
                data["timestamp"] = int(time.time() * 1000)
                messages.append([kind, data])
            await self.send(sid, kind, data)

        failed: tuple[str, str] | None = None
        current = job.outputs[0]
        try:
            await say("execution_start", {}, keep=True)
            await say("execution_cached", {"nodes": []}, keep=True)
            await asyncio.sleep(s.latency)
            while s.never_finish:  # checked often, so that a test can let the jobs finish
                await asyncio.sleep(0.05)
            text = json.dumps(job.prompt) if s.job_errors else ""
            fault = next((f for match, f in s.job_errors.items() if match in text), None)
            values: dict[str, _Pic] = {}
            for current in _order(job.prompt, job.outputs):
                await say("executing", {"node": current, "display_node": current})
                if fault is not None and fault[0] == current:
                    raise _Failed(current, fault[1])
                ui = await self.execute(job.prompt, current, values)
                done.append(current)
                if ui is not None:
                    outputs[current] = ui
                    await say("executed", {"node": current, "display_node": current, "output": ui})
            if fault is not None:  # its node is not in the graph: the first output fails
                raise _Failed(job.outputs[0], fault[1])
            await say("execution_success", {}, keep=True)
        except _Failed as e:
            failed = e.args
        except asyncio.CancelledError:
            if not job.interrupted:
                raise
            await say("execution_interrupted", {"node_id": current, "node_type":
                                                job.prompt[current]["class_type"],
                                                "executed": done}, keep=True)
        except Exception as e:  # a workflow the loopback cannot run: report it as ComfyUI would
            failed = (current, f"{type(e).__name__}: {e}")
        finally:
            s.in_flight -= 1
        if failed is not None:
            await say("execution_error", {
                "node_id": failed[0], "node_type": job.prompt[failed[0]]["class_type"],
                "executed": done, "exception_message": failed[1],
                "exception_type": "RuntimeError", "traceback": [], "current_inputs": {},
                "current_outputs": {}}, keep=True)
        status = "error" if failed is not None or job.interrupted else "success"
        s.history[pid] = {"prompt": job.row(), "outputs": outputs, "meta": {},
                          "status": {"status_str": status, "completed": status == "success",
                                     "messages": messages}}
        self.running.pop(pid, None)
        await say("executing", {"node": None})
        if s.duplicate_completion and status == "success":
            await say("execution_success", {})
            await say("executing", {"node": None})
        await self.broadcast_status()

    async def execute(self, prompt: dict[str, Any], node_id: str,
                      values: dict[str, _Pic]) -> dict[str, Any] | None:
        """Run one node whose inputs have run: its value into `values`; its files, if any."""
        node = prompt[node_id]
        ct, inputs = node["class_type"], node["inputs"]
        linked = {k: values[str(v[0])] for k, v in inputs.items() if isinstance(v, list)}
        literal = {k: v for k, v in inputs.items() if not isinstance(v, list)}
        first = next((p for p in linked.values() if p.size is not None), _Pic())
        tint = hashlib.sha1(json.dumps([ct, literal, [p.tint for p in linked.values()]],
                                       sort_keys=True, default=str).encode()).hexdigest()[:16]
        pic = attrs.evolve(first, tint=tint)
        if ct in ("EmptyImage", "EmptyLatentImage"):
            pic = _Pic((int(literal["width"]), int(literal["height"])),
                       int(literal.get("batch_size", 1)), None, tint)
        elif ct == "LoadImage":
            data = self.state.files[("input", *_split(str(literal["image"])))]
            try:
                with Image.open(io.BytesIO(data)) as img:
                    size = img.size
            except OSError as e:
                raise _Failed(node_id, f"cannot identify image file: {e}") from None
            pic = _Pic(size, 1, None, hashlib.sha1(data).hexdigest()[:16])
        elif ct == "ImageScale" and first.size is not None:
            w, h = int(literal["width"]), int(literal["height"])
            w0, h0 = first.size
            w = w or max(1, round(w0 * (h or h0) / h0))
            h = h or max(1, round(h0 * w / w0))
            pic = attrs.evolve(pic, size=(w, h))
        elif ct == "ImageCrop" and first.size is not None:
            pic = attrs.evolve(pic, size=(min(int(literal["width"]), first.size[0]),
                                          min(int(literal["height"]), first.size[1])))
        elif ct == "RepeatImageBatch":
            pic = attrs.evolve(pic, frames=first.frames * int(literal["amount"]))
        elif ct == "CreateVideo":
            pic = attrs.evolve(pic, fps=float(literal["fps"]))
        values[node_id] = pic
        if ct not in OUTPUT_NODES:
            return None
        if pic.size is None:
            raise _Failed(node_id, f"{ct} was given no image")
        return await self.save(ct, str(literal.get("filename_prefix", "ComfyUI")), pic)

    async def save(self, ct: str, prefix: str, pic: _Pic) -> dict[str, Any]:
        kind = OUTPUT_NODES[ct]
        sub, _, stem = prefix.rpartition("/")
        if ct == "PreviewImage":
            sub, stem = "", "ComfyUI_temp_" + pic.tint[:5]
        assert pic.size is not None
        counter = self.counters.setdefault(f"{kind}/{sub}/{stem}", itertools.count(1))
        files, ext = [], "mp4" if ct == "SaveVideo" else "png"
        for _ in range(1 if ct == "SaveVideo" else min(pic.frames, 64)):
            name = f"{stem}_{next(counter):05}_.{ext}"
            body = (await self.video(pic) if ct == "SaveVideo"
                    else b"not a PNG " + pic.tint.encode() if self.state.corrupt
                    else media.flat_png(*pic.size, seed=pic.tint))
            self.state.files[(kind, sub, name)] = body
            files.append({"filename": name, "subfolder": sub, "type": kind})
        return {"images": files, "animated": [True]} if ct == "SaveVideo" else {"images": files}

    async def video(self, pic: _Pic) -> bytes:
        """A real MP4 of the clip's size and length; ffmpeg runs once per size, length and
        rate, and a `free` box at the end (which players skip) makes each clip's bytes its own."""
        assert pic.size is not None
        fps = pic.fps or 24.0
        key = (pic.size[0], pic.size[1], round(pic.frames / fps, 3), round(fps))
        task = self.videos.get(key)
        if task is None:
            task = self.videos[key] = asyncio.get_running_loop().create_task(
                asyncio.to_thread(media.mp4, key[0], key[1], max(key[2], 1 / fps), key[3]))
        base = await asyncio.shield(task)
        mark = pic.tint.encode()
        return base + struct.pack(">I", 8 + len(mark)) + b"free" + mark


def make_app(state: ComfyState) -> web.Application:
    """The loopback server's aiohttp app; every route also answers under `/api`."""
    comfy = _Comfy(state)
    app = web.Application(client_max_size=64 << 20)
    routes = [("POST", "/prompt", comfy.post_prompt), ("GET", "/prompt", comfy.get_prompt),
              ("GET", "/history", comfy.get_history),
              ("GET", "/history/{prompt_id}", comfy.get_history),
              ("GET", "/queue", comfy.get_queue), ("POST", "/queue", comfy.post_queue),
              ("POST", "/interrupt", comfy.post_interrupt), ("GET", "/view", comfy.get_view),
              ("POST", "/upload/image", comfy.post_upload),
              ("GET", "/object_info", comfy.object_info),
              ("GET", "/system_stats", comfy.system_stats), ("GET", "/ws", comfy.websocket)]
    for method, path, handler in routes:
        app.router.add_route(method, path, handler)
        app.router.add_route(method, "/api" + path, handler)

    async def lifecycle(app: web.Application) -> Any:
        worker = asyncio.get_running_loop().create_task(comfy.serial_worker())
        yield
        worker.cancel()
        for job in list(comfy.running.values()):
            if job.task is not None:
                job.task.cancel()
        for ws in list(comfy.sockets.values()):
            await ws.close()

    app.cleanup_ctx.append(lifecycle)
    return app


async def _json(request: web.Request) -> dict[str, Any]:
    try:
        body = await request.json() if request.can_read_body else {}
    except ValueError:
        return {}
    return body if isinstance(body, dict) else {}


def _err(kind: str, message: str, details: str = "") -> dict[str, Any]:
    return {"type": kind, "message": message, "details": details, "extra_info": {}}


def _error(status: int, kind: str, message: str) -> web.Response:
    return web.json_response({"error": _err(kind, message, message), "node_errors": {}},
                             status=status)


def _problem(kind: str, message: str, details: str) -> dict[str, Any]:
    name = details.split(",", 1)[0].split(" ", 1)[0]
    return {"type": kind, "message": message, "details": details,
            "extra_info": {"input_name": name}}


def _split(value: str) -> tuple[str, str]:
    """`filmc/a.png` → ("filmc", "a.png"): a LoadImage value names a subfolder and a file."""
    sub, _, name = value.rpartition("/")
    return sub, name


def _order(prompt: dict[str, Any], outputs: list[str]) -> list[str]:
    """The nodes that `outputs` need, each after its inputs (links to missing nodes and
    cycles are left out: validation reports them)."""
    order: dict[str, None] = {}

    def visit(node_id: str, path: frozenset[str]) -> None:
        if node_id in order or node_id in path or node_id not in prompt:
            return
        for v in prompt[node_id]["inputs"].values():
            if isinstance(v, list) and v:
                visit(str(v[0]), path | {node_id})
        order[node_id] = None

    for out in outputs:
        visit(out, frozenset())
    return list(order)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m loopback.comfyui", description=__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8188)
    parser.add_argument("--latency", type=float, default=0.1, help="seconds each job takes")
    parser.add_argument("--serial", action="store_true", help="one job at a time, as ComfyUI")
    args = parser.parse_args(argv)
    run_forever(make_app(ComfyState(latency=args.latency, serial=args.serial)), args.host,
                args.port)


if __name__ == "__main__":
    main()
