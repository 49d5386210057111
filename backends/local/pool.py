"""The local backend's render workers: a few processes, each fed one step at a time.

Not a `multiprocessing` pool: its forkserver, workers and resource tracker
outlived a `kill -9` of the build (parent pid 1, forever) and held the build's
stdout open, so `filmc build | tee` hung after an error.  These workers are
plain child processes (worker.py) with pipes for stdin and stdout and nothing
else of ours: they die with the build, cannot hold its output open, and live
in their own session, so a Ctrl-C at the terminal reaches only the build.

    pool = Pool(size=2)
    answer = await pool.call({"kind": ..., "spec": ..., ...})   # a worker's JSON answer
    await pool.close()       # idle workers exit; a busy one (Ctrl-C) is killed
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import sys
from typing import Any

from ..protocol import BackendError
from .worker import dumps

_LIMIT = 1 << 24  # the longest answer line


class _Worker:
    def __init__(self, proc: asyncio.subprocess.Process) -> None:
        self.proc = proc
        self.errors = bytearray()  # the end of its stderr, for a worker that dies
        self.cpu = (0.0, 0.0)  # CPU seconds (its own, its ffmpegs') by its latest answer
        self.reader = asyncio.ensure_future(self._drain())

    async def _drain(self) -> None:
        assert self.proc.stderr is not None
        while chunk := await self.proc.stderr.read(4096):
            self.errors = (self.errors + chunk)[-4000:]


class Pool:
    def __init__(self, size: int) -> None:
        self.size = max(1, size)
        self._idle: list[_Worker] = []
        self._busy: set[_Worker] = set()
        self._slots = asyncio.Semaphore(self.size)
        self._started: list[_Worker] = []  # every worker, for the CPU they used

    async def _start(self) -> _Worker:
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "filmc.backends.local.worker", str(os.getpid()),
            stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE, start_new_session=True, limit=_LIMIT)
        worker = _Worker(proc)
        self._started.append(worker)
        return worker

    async def call(self, job: dict[str, Any]) -> dict[str, Any]:
        async with self._slots:
            worker = self._idle.pop() if self._idle else await self._start()
            self._busy.add(worker)
            clean = False
            try:
                answer = await self._ask(worker, job)
                clean = True
                return answer
            finally:
                self._busy.discard(worker)
                if clean:
                    self._idle.append(worker)
                else:  # cancelled or broken mid-render: its state is unknown
                    self._kill(worker)

    async def _ask(self, worker: _Worker, job: dict[str, Any]) -> dict[str, Any]:
        proc = worker.proc
        assert proc.stdin is not None and proc.stdout is not None
        try:
            proc.stdin.write(dumps(job))
            await proc.stdin.drain()
            line = await proc.stdout.readline()
        except (ConnectionError, OSError):
            line = b""
        if not line:
            code = await proc.wait()
            await asyncio.wait({worker.reader}, timeout=1)
            said = worker.errors.decode("utf-8", "replace").strip().splitlines()[-3:]
            raise BackendError(f"the local renderer process exited (status {code})"
                               + (": " + " / ".join(said) if said else ""))
        answer: dict[str, Any] = json.loads(line)
        own, tools = answer.pop("cpu", worker.cpu)
        worker.cpu = (float(own), float(tools))
        return answer

    def cpu(self) -> tuple[float, float]:
        """CPU seconds the workers used, their own (Python, Pillow) and their ffmpegs',
        as of each one's latest answer."""
        return (sum(w.cpu[0] for w in self._started), sum(w.cpu[1] for w in self._started))

    def _kill(self, worker: _Worker) -> None:
        with contextlib.suppress(ProcessLookupError):
            worker.proc.kill()
        worker.reader.cancel()

    async def close(self) -> None:
        """Idle workers are told to stop (their stdin closes); busy ones are killed."""
        for worker in list(self._busy):
            self._kill(worker)
        idle, self._idle = self._idle, []
        for worker in idle:
            if worker.proc.stdin is not None:
                worker.proc.stdin.close()
        for worker in [*idle, *self._busy]:
            try:
                await asyncio.wait_for(worker.proc.wait(), 10)
            except TimeoutError:
                self._kill(worker)
                await worker.proc.wait()
            worker.reader.cancel()
        self._busy.clear()
