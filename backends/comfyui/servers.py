"""The ComfyUI servers of one backend, as one adapter sees them: news, jobs and load.

ComfyUI tells the client that queued a prompt what happens to it over a
websocket (`/ws?clientId=`): `execution_start`, `executing`, `executed` with
each output node's files, then `execution_success`, `execution_error` or
`execution_interrupted`, and `executing` with `node: null` when it is over.
The adapter opens one websocket per server, lazily, and files each message
under its `prompt_id` in a `Job`; `poll` waits on the job's `news`.

The websocket is news, not proof.  A job is confirmed over HTTP
(`/history/{id}`, then `/queue`) when no websocket is open, when the job was
queued by another client (a build re-attaching to a journaled handle: ComfyUI
sends a job's events only to the client that queued it), after the websocket
reconnected (messages may have been lost meanwhile), and at least every
`RECHECK` seconds.  One `/queue` answer, which lists every job with its whole
workflow, serves all the polls of a server that began before it was sent.

The end of the module reads ComfyUI's answers: which file of a finished job
is the step's output (`pick`, `finished`), why a job failed (`failure`), why
a prompt was refused (`rejection`).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import math
import time
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import attrs

from ..http import Http
from ..protocol import FailureKind, ServiceError

if TYPE_CHECKING:
    import aiohttp  # imported on first use (backends/http.py says why)

RECHECK = 10.0  # seconds a job goes on websocket news alone before HTTP confirms it
WS_CONNECT = 5.0  # seconds to open a websocket before polling by HTTP instead
WS_RETRY = 30.0  # seconds before trying again a websocket that would not open
WS_REOPEN = 1.0  # seconds before reopening a websocket that closed
SHORT = 30.0  # timeout of the small JSON requests, in seconds


@attrs.define(eq=False)
class Job:
    """One prompt at one server, as far as this adapter has heard."""

    id: str
    watched: bool  # queued with this adapter's client id: its websocket news comes here
    news: asyncio.Event = attrs.field(factory=asyncio.Event)
    outcome: str | None = None  # "success", "error" or "interrupted", from the websocket
    detail: Mapping[str, Any] = attrs.field(factory=dict)  # the failure's message data
    outputs: dict[str, Any] = attrs.field(factory=dict)  # node id → its `executed` output
    status: str = "queued"
    progress: float | None = None
    checked: float = -math.inf  # when the server last said it has the job (monotonic)

    def seen(self) -> None:
        self.checked = time.monotonic()

    def recent(self) -> bool:
        return time.monotonic() - self.checked < RECHECK

    def settle(self, outcome: str, detail: Mapping[str, Any] | None = None) -> None:
        """Record how the job ended; the first word stands (duplicates are harmless)."""
        if self.outcome is None:
            self.outcome = outcome
            self.detail = detail or {}
        self.news.set()

    async def wait(self, seconds: float) -> None:
        """Until there is news of the job, or `seconds` pass."""
        self.news.clear()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self.news.wait(), seconds)


class Server:
    """One ComfyUI server: its websocket, the jobs this adapter follows there, its load."""

    def __init__(self, url: str, http: Http, client_id: str) -> None:
        self.url = url.rstrip("/")
        self.http = http
        self.client_id = client_id
        self.jobs: dict[str, Job] = {}
        self.remaining: int | None = None  # the server's queue length, from its websocket
        self.down_until = 0.0  # a connection failed: the pool avoids it until then
        self._ws: aiohttp.ClientWebSocketResponse | None = None
        self._reader: asyncio.Task[None] | None = None
        self._opening: asyncio.Lock | None = None
        self._retry_at = 0.0
        self._queue: tuple[float, asyncio.Task[dict[str, Any]]] | None = None

    @property
    def listening(self) -> bool:
        return self._ws is not None and not self._ws.closed

    def track(self, job_id: str, watched: bool) -> Job:
        job = self.jobs.get(job_id)
        if job is None:
            job = self.jobs[job_id] = Job(job_id, watched)
        job.watched = job.watched or watched
        return job

    def forget(self, job_id: str) -> None:
        self.jobs.pop(job_id, None)

    # -- the websocket -----------------------------------------------------------------

    async def listen(self) -> bool:
        """Open the websocket unless it is open; False when it cannot be (poll by HTTP)."""
        import aiohttp

        if self.listening:
            return True
        if time.monotonic() < self._retry_at:
            return False
        if self._opening is None:
            self._opening = asyncio.Lock()
        async with self._opening:
            if self.listening:
                return True
            base = "wss" + self.url[5:] if self.url.startswith("https") else "ws" + self.url[4:]
            try:
                ws = await asyncio.wait_for(self.http.session().ws_connect(
                    f"{base}/ws", params={"clientId": self.client_id}, heartbeat=30.0,
                    max_msg_size=0), WS_CONNECT)
            except (TimeoutError, aiohttp.ClientError, OSError):
                self._retry_at = time.monotonic() + WS_RETRY
                return False
            self._ws = ws
            self._reader = asyncio.get_running_loop().create_task(self._read(ws))
            for job in self.jobs.values():  # news may have been lost while it was closed
                job.checked = -math.inf
            return True

    async def _read(self, ws: aiohttp.ClientWebSocketResponse) -> None:
        import aiohttp

        try:
            async for msg in ws:
                if msg.type == aiohttp.WSMsgType.TEXT:
                    self.hear(msg.data)
                elif msg.type == aiohttp.WSMsgType.ERROR:
                    break
        except (TimeoutError, aiohttp.ClientError, OSError):
            pass
        finally:
            self._ws = None
            self._retry_at = time.monotonic() + WS_REOPEN
            for job in self.jobs.values():  # waiters go and ask over HTTP
                job.news.set()

    def hear(self, text: str) -> None:
        """File one websocket message (binary frames are previews, and never come here)."""
        try:
            msg = json.loads(text)
        except ValueError:
            return
        if not isinstance(msg, dict) or not isinstance(msg.get("data"), dict):
            return
        kind, data = msg.get("type"), msg["data"]
        if kind == "status":
            info = (data.get("status") or {}).get("exec_info") or {}
            if isinstance(info.get("queue_remaining"), int):
                self.remaining = info["queue_remaining"]
            return
        job = self.jobs.get(str(data.get("prompt_id")))
        if job is None:
            return
        job.seen()
        if kind == "executing" and data.get("node") is None:
            job.settle("success")  # older servers say only this
        elif kind in ("execution_start", "execution_cached", "executing"):
            job.status = "running"
        elif kind == "progress":
            value, most = data.get("value"), data.get("max")
            if isinstance(value, int | float) and isinstance(most, int | float) and most > 0:
                job.progress = max(0.0, min(1.0, value / most))
        elif kind == "executed" and isinstance(data.get("output"), dict):
            job.outputs[str(data.get("node"))] = data["output"]
        elif kind == "execution_success":
            job.settle("success")
        elif kind == "execution_error":
            job.settle("error", data)
        elif kind == "execution_interrupted":
            job.settle("interrupted", data)

    # -- HTTP --------------------------------------------------------------------------

    async def history(self, job_id: str) -> Mapping[str, Any] | None:
        """The job's history entry: None until it has finished."""
        r = await self.http.request("GET", f"{self.url}/history/{job_id}", timeout=SHORT)
        r.raise_for_status("read the job's history")
        data = r.json()
        entry = data.get(job_id) if isinstance(data, dict) else None
        return entry if isinstance(entry, dict) else None

    async def place(self, job_id: str, since: float) -> tuple[str, int | None] | None:
        """("running", None) or ("queued", how many are ahead), or None: not in the queue,
        by a `/queue` read sent at `since` (monotonic) or later."""
        queue = await self.queue(since)
        if job_id in _ids(queue.get("queue_running")):
            return "running", None
        pending = sorted((item for item in queue.get("queue_pending") or ()
                          if isinstance(item, list) and len(item) > 1),
                         key=lambda item: item[0] if isinstance(item[0], int | float) else 0)
        ids = [str(item[1]) for item in pending]
        return ("queued", ids.index(job_id)) if job_id in ids else None

    async def queue(self, since: float) -> dict[str, Any]:
        """`GET /queue`, sent at `since` or later: a read that another poll sent after
        `since` is shared.  (A read sent earlier may predate a job that is not yet in the
        history, which would then look unknown.)"""
        if self._queue is not None:
            asked, task = self._queue
            failed = task.done() and (task.cancelled() or task.exception() is not None)
            if asked >= since and not failed:
                return await asyncio.shield(task)
        task = asyncio.get_running_loop().create_task(self._get_queue())
        self._queue = (time.monotonic(), task)
        return await asyncio.shield(task)

    async def _get_queue(self) -> dict[str, Any]:
        r = await self.http.request("GET", f"{self.url}/queue", timeout=SHORT)
        r.raise_for_status("read the queue")
        data = r.json()
        return data if isinstance(data, dict) else {}

    async def close(self) -> None:
        ws, reader = self._ws, self._reader
        self._ws = self._reader = None
        if ws is not None:
            with contextlib.suppress(Exception):
                await ws.close()  # which ends the reader
        if reader is not None:
            reader.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await reader
        if self._queue is not None and not self._queue[1].done():
            self._queue[1].cancel()


def _ids(items: Any) -> set[str]:
    return {str(item[1]) for item in items or () if isinstance(item, list) and len(item) > 1}


# -- what its answers mean ---------------------------------------------------------------

IMAGE_SUFFIXES = frozenset({".png", ".jpg", ".jpeg", ".webp", ".bmp", ".tif", ".tiff"})
VIDEO_SUFFIXES = frozenset({".mp4", ".webm", ".mov", ".mkv", ".m4v", ".avi", ".gif"})
_FILE_LISTS = ("images", "videos", "gifs", "video")  # SaveVideo lists its file under images


def pick(outputs: Mapping[str, Any], media: str, node: str | None) -> dict[str, Any] | None:
    """The file for a step's output among a job's outputs (node id → {"images": [...]}):
    the first of the right type, from `node` when given, saved files before previews."""
    suffixes = IMAGE_SUFFIXES if media == "image" else VIDEO_SUFFIXES
    files = [f for node_id, out in outputs.items() if node is None or str(node_id) == node
             if isinstance(out, dict) for key in _FILE_LISTS for f in out.get(key) or ()
             if isinstance(f, dict) and isinstance(f.get("filename"), str)
             and ("." + f["filename"].rsplit(".", 1)[-1].lower()) in suffixes]
    files.sort(key=lambda f: f.get("type", "output") != "output")  # stable: node order stays
    if not files:
        return None
    return {"filename": files[0]["filename"], "subfolder": str(files[0].get("subfolder") or ""),
            "type": str(files[0].get("type") or "output")}


def finished(entry: Mapping[str, Any], media: str, node: str | None) -> dict[str, Any]:
    """The output file of a finished job's history entry; ServiceError when it failed."""
    status = entry.get("status") if isinstance(entry.get("status"), dict) else {}
    for message in (status or {}).get("messages") or ():
        if isinstance(message, list) and len(message) == 2 and isinstance(message[1], dict):
            if message[0] == "execution_error":
                raise failure("error", message[1])
            if message[0] == "execution_interrupted":
                raise failure("interrupted", message[1])
    if (status or {}).get("status_str") == "error":
        raise failure("error", {})
    outputs = entry.get("outputs") if isinstance(entry.get("outputs"), dict) else {}
    found = pick(outputs or {}, media, node)
    if found is None:
        raise failure("empty", {"outputs": outputs or {}, "media": media, "node": node})
    return found


def failure(outcome: str, detail: Mapping[str, Any]) -> ServiceError:
    """The ServiceError for a job that ran and did not make its output."""
    where = (f"node {detail['node_id']} ({detail.get('node_type', '?')})"
             if detail.get("node_id") is not None else "a node")
    if outcome == "interrupted":
        return ServiceError(FailureKind.FAILED, f"the job was interrupted at {where}: someone "
                                                f"cancelled it on the ComfyUI server")
    if outcome == "empty":
        made = [f"node {n}: {f['filename']}" for n, out in detail["outputs"].items()
                if isinstance(out, dict) for key in _FILE_LISTS for f in out.get(key) or ()
                if isinstance(f, dict) and "filename" in f]
        end = "SaveImage" if detail["media"] == "image" else "SaveVideo"
        node = f" from node `{detail['node']}` (`output_node`)" if detail["node"] else ""
        return ServiceError(FailureKind.FAILED,
                            f"the workflow ran but made no {detail['media']} file{node} "
                            f"(it made: {', '.join(made) or 'nothing'}); end it in a {end} "
                            f"node, or name the node to use with `output_node`")
    kind = str(detail.get("exception_type") or "").rsplit(".", 1)[-1]
    said = _trim(str(detail.get("exception_message") or "").strip()) or "no message"
    return ServiceError(FailureKind.FAILED, f"{where} failed: " + (f"{kind}: " if kind else "")
                        + said)


def rejection(body: Any, name: str) -> str:
    """The message for a 400 from `POST /prompt`: the error, and each node's errors."""
    body = body if isinstance(body, dict) else {}
    error = body.get("error")
    if isinstance(error, dict):
        head = str(error.get("message") or error.get("type") or "invalid prompt").rstrip(".")
        if error.get("type") in ("invalid_prompt", "missing_node_type") and error.get("details"):
            head += f" ({_trim(str(error['details']))})"
        if error.get("type") == "prompt_no_outputs":
            head += " (it needs an output node such as SaveImage or SaveVideo)"
    else:
        head = str(error or "invalid prompt")
    parts = [f"the server refused the workflow `{name}`: {head}"]
    node_errors = body.get("node_errors")
    for node_id, info in (node_errors.items() if isinstance(node_errors, dict) else ()):
        if not isinstance(info, dict):
            continue
        said = [": ".join(str(x) for x in (e.get("message"), e.get("details")) if x)
                for e in info.get("errors") or () if isinstance(e, dict)]
        parts.append(f"node {node_id} ({info.get('class_type', '?')}): "
                     + _trim("; ".join(said) or "invalid"))
    return "; ".join(parts)


def stale_upload(body: Any, names: Mapping[str, str]) -> bool:
    """Whether a 400 says that a LoadImage cannot find one of this step's uploads."""
    text = str(body.get("node_errors", "")) if isinstance(body, dict) else ""
    return "Invalid image file" in text and any(name in text for name in names.values())


def _trim(text: str, limit: int = 300) -> str:
    return text if len(text) <= limit else text[:limit] + "…"
