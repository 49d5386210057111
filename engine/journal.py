"""The job journal: every paid job in flight, durable before it is polled.

A job at a service costs money the moment it is accepted, and lives on after
the build that submitted it dies (Ctrl-C, `kill -9`, a crash, a power cut).
So its handle is written to `.filmc/journal.log` and fsynced before the first
poll, and the next build that needs the same step key polls that job instead
of paying for another.  Lines (JSON):

    {"op": "submitting", "key": K, "step": "keyframe.hunt.x.take1", "backend": "comfyui",
     "handle": {"id": ..., "data": {...}}}         a client-chosen id, before the submit
    {"op": "accepted", "key": K, "step": ..., "backend": ..., "handle": {...}}
    {"op": "closed", "key": K, "outcome": "done" | "failed" | "lost"}

A key whose last line is `submitting` or `accepted` is an open job.  A build
reads the open jobs when it starts, and rewrites the file with only those
(the journal stays small).  Writes are group-committed: records that arrive
while one fsync runs share the next, so 32 jobs submitted at once cost a
couple of fsyncs, not 32, and none of them waits on the event loop.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import json
import os
from collections.abc import Callable
from pathlib import Path

import attrs

from ..backends.protocol import Handle
from .objects import fsync_dir

NAME = "journal.log"


@attrs.frozen
class OpenJob:
    key: str
    step: str
    backend: str
    op: str  # "submitting": the submit's outcome is unknown; "accepted": running
    handle: Handle


def _handle_json(handle: Handle) -> dict:
    return {"id": handle.id, "data": dict(handle.data)}


def read_open(path: Path) -> dict[str, OpenJob]:
    """The open jobs recorded in the journal at `path`, by step key."""
    jobs: dict[str, OpenJob] = {}
    if not path.exists():
        return jobs
    with open(path, "rb") as f:
        for line in f:
            try:
                r = json.loads(line)
                key, op = r["key"], r["op"]
            except (ValueError, KeyError, TypeError):
                continue  # a line cut short by a crash
            if op == "closed":
                jobs.pop(key, None)
            elif op in ("submitting", "accepted") and isinstance(r.get("handle"), dict) \
                    and isinstance(r["handle"].get("id"), str):
                data = r["handle"].get("data")
                jobs[key] = OpenJob(key, r.get("step", ""), r.get("backend", ""), op,
                                    Handle(r["handle"]["id"], data if isinstance(data, dict)
                                           else {}))
    return jobs


class Journal:
    def __init__(self, path: Path, stored: Callable[[set[str]], set[str]] | None = None,
                 barrier: Callable[[], None] | None = None) -> None:
        """`stored(keys)`: those whose outputs are already in the store (a build that died
        between storing a job's outputs and writing its `closed` line): not open.
        `barrier()`: makes the store's action log durable; called before a `closed` line
        is, so that after a power cut no job is closed whose outputs were not recorded."""
        self.path = path
        self.barrier = barrier
        self.open_jobs = read_open(path)
        if stored is not None and self.open_jobs:
            for key in stored(set(self.open_jobs)):
                del self.open_jobs[key]
        self._compact()
        self._fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        self._unsynced: list[asyncio.Future[None]] = []  # lines written since the last fsync
        self._deferred: list[bytes] = []  # `closed` lines, written after the barrier
        self._flusher: asyncio.Task[None] | None = None
        self.error: BaseException | None = None  # a write that nothing waited for failed
        # A thread of its own: an fsync here must not queue behind the store's.
        self._thread = concurrent.futures.ThreadPoolExecutor(1, "filmc-journal")

    def _compact(self) -> None:
        tmp = self.path.with_name(f".{NAME}.tmp")
        with open(tmp, "wb") as f:
            for job in self.open_jobs.values():
                f.write(_line({"op": job.op, "key": job.key, "step": job.step,
                               "backend": job.backend, "handle": _handle_json(job.handle)}))
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, self.path)
        fsync_dir(self.path.parent)

    async def submitting(self, key: str, step: str, backend: str, handle: Handle) -> None:
        """Before the submit: written at once (a killed filmc keeps it), fsynced in the
        background while the request goes out."""
        await self._write({"op": "submitting", "key": key, "step": step, "backend": backend,
                           "handle": _handle_json(handle)}, wait=None)
        self.open_jobs[key] = OpenJob(key, step, backend, "submitting", handle)

    async def accepted(self, key: str, step: str, backend: str, handle: Handle) -> None:
        """Before the first poll: on disk, fsynced."""
        job = OpenJob(key, step, backend, "accepted", handle)
        try:
            await self._write({"op": "accepted", "key": key, "step": step, "backend": backend,
                               "handle": _handle_json(handle)}, wait="durable")
        except asyncio.CancelledError:
            # Interrupted while the fsync ran: the line is in the file already, so the job is
            # the next build's to pick up, and it counts among the jobs left running.
            self.open_jobs[key] = job
            raise
        self.open_jobs[key] = job

    async def closed(self, key: str, outcome: str) -> None:
        """Nothing waits for this line: lost, a job is polled once more, and found over."""
        if self.open_jobs.pop(key, None) is not None:
            await self._write({"op": "closed", "key": key, "outcome": outcome}, wait=None)

    async def _write(self, record: dict, wait: str | None) -> None:
        """Append `record`; return once it is `written` (in the file: a killed filmc keeps
        it), `durable` (fsynced: a power cut keeps it too) or at once (None).  Lines that
        arrive while an fsync runs share the next one.

        A line is written at once, on the loop (one small `write` to a file opened
        `O_APPEND`), except a `closed` line: that one waits for the store's action log to
        be fsynced first, and is written by the journal's thread."""
        line = _line(record)
        durable: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        if record["op"] == "closed":
            self._deferred.append(line)
        else:
            self._put(line)
        self._unsynced.append(durable)
        if self._flusher is None or self._flusher.done():
            self._flusher = asyncio.ensure_future(self._flush())
        if wait == "durable":
            await asyncio.shield(durable)
        else:
            durable.add_done_callback(self._keep_error)  # nobody awaits it

    def _keep_error(self, fut: asyncio.Future[None]) -> None:
        if not fut.cancelled() and fut.exception() is not None:
            self.error = self.error or fut.exception()

    async def _flush(self) -> None:
        loop = asyncio.get_running_loop()
        while self._unsynced:
            futures, deferred = self._unsynced, self._deferred
            self._unsynced, self._deferred = [], []
            try:
                await loop.run_in_executor(self._thread, self._sync, deferred)
            except OSError as e:
                for fut in futures:
                    if not fut.done():
                        fut.set_exception(e)
                continue
            for fut in futures:
                if not fut.done():
                    fut.set_result(None)

    def _put(self, data: bytes) -> None:
        view = memoryview(data)
        while view:
            view = view[os.write(self._fd, view):]

    def _sync(self, deferred: list[bytes]) -> None:
        if deferred:
            if self.barrier is not None:
                self.barrier()  # the outputs' record is durable before a job is said over
            self._put(b"".join(deferred))
        os.fsync(self._fd)

    async def drain(self) -> None:
        """Wait until every record written so far is on disk."""
        while self._flusher is not None and not self._flusher.done():
            await asyncio.shield(self._flusher)

    def close(self) -> None:
        """Write what no flush took yet (records nothing waited for), then close; raise
        the OSError of any write that failed with nothing waiting for it."""
        self._thread.shutdown(wait=True)
        try:
            if self._unsynced or self._deferred:
                deferred, self._deferred, self._unsynced = self._deferred, [], []
                self._sync(deferred)
        finally:
            os.close(self._fd)
        if isinstance(self.error, OSError):
            raise self.error


def _line(record: dict) -> bytes:
    return json.dumps(record, ensure_ascii=False, separators=(",", ":")).encode() + b"\n"
