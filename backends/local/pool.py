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

Between the builds of one process that runs them all in one event loop (`filmc build
--watch`, inside `kept_warm`), a build's pool is parked instead of closed, and the next
build's takes it: its workers started, their imports done and their fonts loaded, which
for the one keyframe a saved shot needs is most of its time.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import json
import os
import sys
from collections.abc import Iterator
from typing import Any

from ..protocol import BackendError
from .worker import frame

_LIMIT = 1 << 24  # the longest answer line
# A worker's stdin holds a whole job of a feature's film step (its 3,000 shots: 0.4 MB):
# written at once, not 64 KB each time the event loop comes round, which while the
# build encoded the next job (the OTIO export's, 0.1 s) held the film back.
_PIPE_BYTES = 1 << 20
_AFFINITIES = 4096  # steps whose last worker a pool remembers (a first build makes more)


def _widen(proc: asyncio.subprocess.Process) -> None:
    """The worker's stdin pipe made `_PIPE_BYTES` long, where the system allows (Linux:
    up to /proc/sys/fs/pipe-max-size, 1 MB unless lowered); else as it is."""
    setsize = getattr(fcntl, "F_SETPIPE_SZ", None)
    transport = proc.stdin.transport if proc.stdin is not None else None
    pipe = transport.get_extra_info("pipe") if transport is not None else None
    if setsize is None or pipe is None:
        return
    with contextlib.suppress(OSError):
        fcntl.fcntl(pipe.fileno(), setsize, _PIPE_BYTES)


class _Worker:
    def __init__(self, proc: asyncio.subprocess.Process) -> None:
        self.proc = proc
        self.parked = False  # kept from an earlier build: it may have died since
        self.used = False  # it has answered a job
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
        # the worker that last made each step (`call`'s `affinity`), the latest few
        self._made_by: dict[str, _Worker] = {}

    async def _start(self) -> _Worker:
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "filmc.backends.local.worker", str(os.getpid()),
            stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE, start_new_session=True, limit=_LIMIT)
        _widen(proc)
        worker = _Worker(proc)
        self._started.append(worker)
        return worker

    async def call(self, job: dict[str, Any], affinity: str | None = None) -> dict[str, Any]:
        """`affinity`: what the job makes (its step), given to the worker that made it last
        when that one is idle: a worker keeps what it wrote (the clips of the OTIO
        timeline it encoded, interchange.py), and the watch's next edit writes it again."""
        async with self._slots:
            while True:
                worker = self._idle_one(affinity) if self._idle else await self._start()
                parked, worker.parked = worker.parked, False
                self._busy.add(worker)
                clean = False
                try:
                    answer = await self._ask(worker, job)
                    clean = True
                    if affinity is not None:
                        if len(self._made_by) >= _AFFINITIES:
                            self._made_by.clear()
                        self._made_by[affinity] = worker
                    return answer
                except BackendError:
                    if not parked:
                        raise
                    # A worker kept from an earlier build that died at its first job of
                    # this one (killed while it waited, out of memory): the job is given
                    # once to a new worker.
                finally:
                    self._busy.discard(worker)
                    if clean:
                        self._idle.append(worker)
                    else:  # cancelled or broken mid-render: its state is unknown
                        self._kill(worker)

    def _idle_one(self, affinity: str | None) -> _Worker:
        """The idle worker that made `affinity` last, else the latest to become idle."""
        found = self._made_by.get(affinity) if affinity is not None else None
        if found is not None and found in self._idle:
            self._idle.remove(found)
            return found
        return self._idle.pop()

    async def _ask(self, worker: _Worker, job: dict[str, Any]) -> dict[str, Any]:
        proc = worker.proc
        assert proc.stdin is not None and proc.stdout is not None
        try:
            proc.stdin.write(frame(job))
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
        worker.used = True
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

    def park(self) -> None:
        """Keep the idle workers for a later build (busy ones, which a build that ended
        cannot have but for a bug, are killed)."""
        for worker in list(self._busy):
            self._kill(worker)
        self._busy.clear()
        for worker in self._idle:
            worker.parked = True

    async def close(self) -> None:
        """Idle workers are told to stop (their stdin closes); busy ones are killed."""
        for worker in list(self._busy):
            self._kill(worker)
        idle, self._idle = self._idle, []
        for worker in idle:
            if not worker.used:  # started for a job that never came: still importing, maybe
                self._kill(worker)
            elif worker.proc.stdin is not None:
                worker.proc.stdin.close()
        for worker in [*idle, *self._busy]:
            try:
                await asyncio.wait_for(worker.proc.wait(), 10)
            except TimeoutError:
                self._kill(worker)
                await worker.proc.wait()
            worker.reader.cancel()
        self._busy.clear()


class _Warm:
    """Pools parked by the builds run in one event loop, by size."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self.pools: dict[int, Pool] = {}


_warm: _Warm | None = None


def take(size: int) -> Pool | None:
    """A pool of `size` workers parked by an earlier build in this event loop, or None."""
    if _warm is None or _warm.loop is not asyncio.get_running_loop():
        return None
    return _warm.pools.pop(max(1, size), None)


def park(pool: Pool) -> list[Pool]:
    """Keep `pool` for the next build in this event loop; returns the pools to close:
    `pool` itself when none is kept warm or one of its size is kept already, else those
    of other sizes it replaces (one pool is kept, the last build's)."""
    if _warm is None or _warm.loop is not asyncio.get_running_loop() \
            or pool.size in _warm.pools:
        return [pool]
    pool.park()
    replaced = list(_warm.pools.values())
    _warm.pools = {pool.size: pool}
    return replaced


async def prime(size: int) -> None:
    """Start a pool of `size` workers and park it, for the next build in this event loop
    to take with their imports done (nothing when none is kept warm, or a pool is kept:
    the last build's, of the size it asked for)."""
    size = max(1, size)
    if _warm is None or _warm.loop is not asyncio.get_running_loop() or _warm.pools:
        return
    pool = Pool(size)
    for _ in range(size):
        pool._idle.append(await pool._start())
    pool.park()
    _warm.pools[size] = pool


@contextlib.contextmanager
def kept_warm(runner: asyncio.Runner) -> Iterator[None]:
    """While inside, the pools of the builds `runner` runs are parked between them; on
    leaving, their workers are told to stop."""
    global _warm
    previous, _warm = _warm, _Warm(runner.get_loop())
    try:
        yield
    finally:
        kept, _warm = _warm, previous
        for pool in kept.pools.values():
            with contextlib.suppress(Exception):  # stopping must not hide why it stopped
                runner.run(pool.close())
