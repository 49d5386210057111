"""The `comfyui` backend: the user's own workflow, run on one ComfyUI server or a pool.

    [backends.comfyui]
    type = "comfyui"
    url = ["http://gpu1:8188", "http://gpu2:8188"]    # one server, or a pool
    workflow = "workflows/keyframe_api.json"          # API format, with {{placeholders}}
    workflow_clip = "workflows/clip_api.json"         # per kind, where it differs

A step runs like this: `prepare` picks the least busy server and a prompt id
(ComfyUI takes a client-chosen `prompt_id`, so a submit whose answer was lost
can be asked about, and sent again only when the server does not know it);
`submit` uploads the step's images once per server (`/upload/image`, cached
by content), fills the workflow's placeholders (workflow.py) and posts it to
`/prompt`; `poll` follows the job on the server's websocket and confirms it
over HTTP (servers.py); `fetch` downloads the chosen output with `/view`.
A job costs nothing (the user's own server): `Done.cost` is 0.

Everything a later build needs to re-attach is in the handle: the server's
URL, the client id that queued the job (ComfyUI sends its news to that client
only) and the step kind (which output to pick).  A server older than
client-chosen ids names the job itself; `submit` returns a handle with that
name, and the engine journals it.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections import Counter
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, ClassVar

from ...lang.steps import KINDS
from ..http import Http, unbilled
from ..protocol import (
    RETRYABLE,
    Adapter,
    Capabilities,
    Done,
    FailureKind,
    Handle,
    Input,
    Pending,
    Request,
    ServiceError,
    SettingProblem,
    Setup,
)
from . import workflow as wf
from .servers import SHORT, Job, Server, failure, finished, pick, rejection, stale_upload

DEFAULT_URL = "http://127.0.0.1:8188"
NEWS_WAIT = 2.0  # seconds a poll waits for websocket news before answering Pending
UPLOAD_DIR = "filmc"  # the subfolder of ComfyUI's input folder that uploads go to
INLINE_WRITE = 1 << 20  # downloads smaller than this are written on the event loop
_MIME = {".png": "image/png", ".jpg": "image/jpeg", ".jpeg": "image/jpeg", ".webp": "image/webp"}


class ComfyUI(Adapter):
    type = "comfyui"
    version = "1"
    runs_here = False
    secrets = ()
    kinds = ("sheet", "plate", "keyframe", "clip")
    file_settings: ClassVar[tuple[str, ...]] = ("workflow", *(f"workflow_{k}" for k in kinds))

    # -- what the class declares, read at compile time -----------------------------------

    @classmethod
    def capabilities(cls, kind: str, settings: Mapping[str, Any],
                     root: Path) -> Capabilities | None:
        if kind not in cls.kinds or wf.setting_for(kind, settings) is None:
            return None
        flow = wf.for_kind(kind, settings, root)
        if flow is None:  # check_settings says why; promise nothing meanwhile
            return Capabilities(seed=False, negative=False, references=0, first_frame=False)
        return Capabilities(seed=flow.uses("seed"), negative=flow.uses("negative"),
                            references=flow.references, first_frame=flow.uses("first_frame"),
                            last_frame=flow.uses("last_frame"))

    @classmethod
    def key_settings(cls, kind: str, settings: Mapping[str, Any]) -> Mapping[str, Any]:
        """The workflow this kind runs (by content) and the output node it reads: a clip
        workflow never re-keys the keyframes."""
        chosen = wf.setting_for(kind, settings)
        node = f"output_node_{kind}" if f"output_node_{kind}" in settings else "output_node"
        keep = {chosen[0]} if chosen else set()
        keep |= {node} if node in settings else set()
        return {k: v for k, v in settings.items() if k in keep}

    @classmethod
    def key_fields(cls, kind: str, settings: Mapping[str, Any]) -> frozenset[str]:
        flow = wf.for_kind(kind, settings, None)
        fields = flow.fields if flow is not None else frozenset().union(*wf.FIELDS.values())
        return fields | {"take"}

    @classmethod
    def check_settings(cls, settings: Mapping[str, Any]) -> list[SettingProblem]:
        return _check_url(settings.get("url", DEFAULT_URL)) + wf.check_settings(settings, cls.kinds)

    # -- one backend in one build ----------------------------------------------------------

    def __init__(self, setup: Setup) -> None:
        super().__init__(setup)
        url = self.settings.get("url", DEFAULT_URL)
        self.urls = [u.rstrip("/") for u in ([url] if isinstance(url, str) else url)]
        self.client_id = uuid.uuid4().hex
        self.http = Http(setup.name, timeout=600)
        self.servers: dict[str, Server] = {}
        self._held: dict[str, str] = {}  # job id → server, for jobs not yet over
        self._load: Counter[str] = Counter()  # server → jobs held there
        self._given: Counter[str] = Counter()  # server → jobs sent there in this build
        self._uploading: dict[tuple[str, str], asyncio.Task[str]] = {}

    def prepare(self, request: Request) -> Handle:
        """A prompt id, and the server that gets the job: the one with the fewest of this
        build's jobs, then the shortest queue its websocket reported (other users' work),
        then the fewest jobs so far, then the order of `url`; servers that just refused a
        connection come last."""
        now = time.monotonic()

        def busy(ix: int) -> tuple[bool, int, int, int, int]:
            server = self._server(self.urls[ix])
            return (server.down_until > now, self._load[server.url], server.remaining or 0,
                    self._given[server.url], ix)

        url = self.urls[min(range(len(self.urls)), key=busy)]
        handle = Handle(str(uuid.uuid4()), {"server": url, "client": self.client_id,
                                            "kind": request.kind})
        self._given[url] += 1
        self._hold(handle.id, url)
        return handle

    async def submit(self, request: Request, handle: Handle | None) -> Handle | Done:
        handle = handle or self.prepare(request)
        server = self._server(str(handle.data["server"]))
        self._hold(handle.id, server.url)
        try:
            flow = self._workflow(request.kind)
            await server.listen()  # before the prompt, so that no news is missed
            images = await self._upload_all(server, flow, request, force=False)
            job = server.track(handle.id, watched=True)
            r = await self._post_prompt(server, flow, request, handle, images)
            if r.status == 400 and stale_upload(r.json(), images):
                # The server lost an image it was sent in an earlier build: send it again.
                images = await self._upload_all(server, flow, request, force=True)
                r = await self._post_prompt(server, flow, request, handle, images)
            if r.status == 400:
                raise ServiceError(FailureKind.INVALID, rejection(r.json(), flow.path.name),
                                   status=400)
            r.raise_for_status("queue the prompt")
        except ServiceError as e:
            if e.unbilled and e.kind is FailureKind.TRANSIENT and e.status is None:
                server.down_until = time.monotonic() + 30.0  # it refused the connection
            if e.unbilled or e.status is not None or e.kind is not FailureKind.TRANSIENT:
                self._finish(server, handle.id)  # nothing was queued
            raise
        answer = r.json()
        given = str(answer.get("prompt_id") or handle.id) if isinstance(answer, dict) else handle.id
        if given == handle.id:
            job.seen()
            return handle
        # A server older than client-chosen ids named the job itself: follow its name, and
        # confirm the job over HTTP first (news under that name may have gone by already).
        server.forget(handle.id)
        self._held[given] = self._held.pop(handle.id, server.url)
        job.id = given
        server.jobs[given] = job
        return Handle(given, handle.data)

    async def poll(self, handle: Handle) -> Pending | Done:
        server = self._server(str(handle.data["server"]))
        self._hold(handle.id, server.url)
        job = server.track(handle.id, watched=handle.data.get("client") == self.client_id)
        try:
            if job.outcome is None and job.watched and job.recent() and await server.listen():
                await job.wait(NEWS_WAIT)
                if job.outcome is None and server.listening and job.recent():
                    return Pending(job.status, job.progress, wait=0.0)
            if job.outcome == "success":
                found = pick(job.outputs, self._media(handle), self._output_node(handle))
                if found is not None:
                    return self._done(server, handle, found)
            elif job.outcome is not None:
                raise failure(job.outcome, job.detail)
            return await self._confirm(server, job, handle)
        except ServiceError as e:
            if e.kind not in RETRYABLE:
                self._finish(server, handle.id)
            raise

    async def fetch(self, done: Done, request: Request) -> Mapping[str, Path | Sequence[Path]]:
        files: dict[str, Path | Sequence[Path]] = {}
        for name, ref in done.outputs.items():
            filename = str(ref["filename"])
            query = {"filename": filename, "subfolder": str(ref.get("subfolder", "")),
                     "type": str(ref.get("type", "output"))}
            r = await self.http.request("GET", f"{ref['server']}/view", params=query)
            doing = f"download `{filename}`"
            if r.status in (403, 404, 410):
                raise r.error(doing, kind=FailureKind.EXPIRED)
            r.raise_for_status(doing)
            if not r.body:
                raise ServiceError(FailureKind.TRANSIENT,
                                   f"cannot {doing}: {ref['server']} sent an empty file")
            suffix = Path(filename).suffix.lower() or (".mp4" if name == "video" else ".png")
            dest = request.workdir / f"{name}{suffix}"
            if len(r.body) < INLINE_WRITE:  # into the page cache: cheaper than a thread hop
                dest.write_bytes(r.body)
            else:
                await asyncio.to_thread(dest.write_bytes, r.body)
            files[name] = dest
        return files

    async def cancel(self, handle: Handle) -> None:
        """Take the job off the queue, or interrupt it when it is running (best effort)."""
        server = self._server(str(handle.data["server"]))
        try:
            await self.http.request("POST", f"{server.url}/queue", json={"delete": [handle.id]},
                                    timeout=SHORT)
            place = await server.place(handle.id, since=time.monotonic())
            if place is not None and place[0] == "running":
                await self.http.request("POST", f"{server.url}/interrupt",
                                        json={"prompt_id": handle.id}, timeout=SHORT)
        except ServiceError:
            pass
        finally:
            self._finish(server, handle.id)

    async def close(self) -> None:
        for task in self._uploading.values():
            task.cancel()
        for server in self.servers.values():
            await server.close()
        await self.http.close()

    # -- the parts ---------------------------------------------------------------------------

    def _server(self, url: str) -> Server:
        url = url.rstrip("/")
        if url not in self.servers:  # a journaled job may name a server no longer in `url`
            self.servers[url] = Server(url, self.http, self.client_id)
        return self.servers[url]

    def _hold(self, job_id: str, url: str) -> None:
        if job_id not in self._held:
            self._held[job_id] = url
            self._load[url] += 1

    def _finish(self, server: Server, job_id: str) -> None:
        server.forget(job_id)
        url = self._held.pop(job_id, None)
        if url is not None:
            self._load[url] -= 1

    def _workflow(self, kind: str) -> wf.Workflow:
        setting = wf.setting_for(kind, self.settings)
        if setting is None:
            raise ServiceError(FailureKind.INVALID, f"the backend `{self.name}` has no workflow "
                                                    f"for {kind} steps: set `workflow_{kind}`")
        try:
            return wf.load(wf.resolve(setting[1], self.setup.root))
        except wf.WorkflowError as e:
            raise ServiceError(FailureKind.INVALID, e.message) from None

    def _media(self, handle: Handle) -> str:
        return KINDS[str(handle.data.get("kind", "keyframe"))].outputs[0].media

    def _output_node(self, handle: Handle) -> str | None:
        kind = str(handle.data.get("kind", ""))
        node = self.settings.get(f"output_node_{kind}", self.settings.get("output_node"))
        return None if node is None else str(node)

    def _done(self, server: Server, handle: Handle, found: Mapping[str, Any]) -> Done:
        self._finish(server, handle.id)
        output = KINDS[str(handle.data.get("kind", "keyframe"))].outputs[0].name
        return Done({output: {**found, "server": server.url}}, cost=0.0,
                    note=f"ComfyUI at {server.url}")

    async def _confirm(self, server: Server, job: Job, handle: Handle) -> Pending | Done:
        """Ask the server over HTTP: finished (history), waiting (queue), or unknown."""
        began = time.monotonic()
        entry = await server.history(handle.id)
        if entry is None:
            place = await server.place(handle.id, since=began)
            if place is not None:
                job.seen()
                job.status = place[0]
                quick = job.outcome is not None or (job.watched and server.listening)
                return Pending(job.status, job.progress, wait=0.2 if quick else 1.0)
            entry = await server.history(handle.id)  # it may have finished between the two
        if entry is None:
            raise ServiceError(FailureKind.NOT_FOUND,
                               f"{server.url} does not know the job `{handle.id}`: it was never "
                               f"queued, or the server restarted since")
        media, node = self._media(handle), self._output_node(handle)
        return self._done(server, handle, finished(entry, media, node))

    async def _post_prompt(self, server: Server, flow: wf.Workflow, request: Request,
                           handle: Handle, images: Mapping[str, str]) -> Any:
        graph = wf.fill(flow, wf.values(flow, request, images))
        body = {"prompt": graph, "client_id": self.client_id, "prompt_id": handle.id}
        return await self.http.request("POST", f"{server.url}/prompt", json=body, timeout=120)

    async def _upload_all(self, server: Server, flow: wf.Workflow, request: Request,
                          force: bool) -> dict[str, str]:
        """Each image placeholder → the name of its upload on `server`."""
        wanted = wf.images(flow, request)
        names = await asyncio.gather(*(self._upload(server, item, force)
                                       for item in wanted.values()))
        return dict(zip(wanted, names))

    async def _upload(self, server: Server, item: Input, force: bool) -> str:
        scope = f"comfyui:{server.url}"
        cached = None if force else self.setup.uploads.get(scope, item.digest)
        if isinstance(cached, str):
            return cached
        key = (server.url, item.digest)
        task = self._uploading.get(key)
        if task is None:  # concurrent steps with the same image share one upload
            task = asyncio.get_running_loop().create_task(self._send(server, item))
            self._uploading[key] = task
            task.add_done_callback(lambda _: self._uploading.pop(key, None))
        name = await asyncio.shield(task)
        self.setup.uploads.put(scope, item.digest, name)
        return name

    async def _send(self, server: Server, item: Input) -> str:
        suffix = item.path.suffix.lower() or ".png"
        filename = f"filmc-{item.digest[:20]}{suffix}"
        try:
            body = await asyncio.to_thread(item.path.read_bytes)
        except OSError as e:
            raise ServiceError(FailureKind.INVALID, f"cannot read the input `{item.path}` "
                                                    f"(from `{item.step}`): {e.strerror}") from None
        import aiohttp

        form = aiohttp.FormData()
        form.add_field("image", body, filename=filename,
                       content_type=_MIME.get(suffix, "application/octet-stream"))
        form.add_field("subfolder", UPLOAD_DIR)
        form.add_field("type", "input")
        form.add_field("overwrite", "true")
        try:
            r = await self.http.request("POST", f"{server.url}/upload/image", data=form,
                                        timeout=300)
            r.raise_for_status(f"upload `{item.path.name}`")
            data = r.json()
        except ServiceError as e:  # an upload costs nothing: it may always be sent again
            raise unbilled(e) from None
        name = str(data.get("name", filename)) if isinstance(data, dict) else filename
        subfolder = str(data.get("subfolder", UPLOAD_DIR)) if isinstance(data, dict) else ""
        return f"{subfolder}/{name}" if subfolder else name


def _check_url(url: Any) -> list[SettingProblem]:
    urls = [url] if isinstance(url, str) else url
    if not isinstance(urls, list) or not urls or not all(isinstance(u, str) for u in urls):
        return [SettingProblem("url", "`url` must be a server's URL or a list of them",
                               help=f"e.g. `url = \"{DEFAULT_URL}\"`")]
    return [SettingProblem("url", f"`{u}` is not an http:// or https:// URL",
                           help=f"e.g. `url = \"{DEFAULT_URL}\"`")
            for u in urls if not u.startswith(("http://", "https://"))]
