"""The local backend's renders on a Dask cluster (`filmc build --cluster ADDRESS`).

    workers, threads = check("tcp://10.0.0.5:8786")  # ClusterError: unreachable, no workers, skew
    cluster = await open_cluster("tcp://10.0.0.5:8786")  # in the build's event loop
    answer = await cluster.call(job, inputs, workdir)    # the same answer a pool worker gives
    await cluster.close()

Each step of a kind in the adapter's `CLUSTER_KINDS` (drawing, encoding, synthesis,
mixing: the CPU) becomes one Dask task that calls the same
`render.render(kind, spec, prompt, inputs, workdir)` a pool worker calls (pool.py,
worker.py); the engine checks and stores what comes back exactly as it does a pool's
result.  Subtitles, the timeline and the exports render here: they take milliseconds,
and an export names files by this machine's absolute paths.  Render is deterministic,
so a step's bytes are the same whichever machine drew them, which is what lets its key
stand for them.  A worker with another filmc or renderer source, or another ffmpeg,
eSpeak NG or panel font (the facts that enter the local backend's keys) would break
that, and is refused before anything runs: `facts()` says them, `open_cluster` compares
every worker's with this machine's, and each task compares again, for a worker that
joined later.

Workers never assume they share the build's disk.  On the first step, a probe file
written in the store's `tmp/` asks every worker whether it can read and write there:

- **shared** (the cluster runs on this machine, or the store is on a disk every worker
  mounts at the same path): a task carries paths, exactly as a pool job does; the worker
  reads the inputs from the store and renders into the step's work folder.  Nothing but
  a small job crosses the network.  Tasks go only to the hosts the probe saw.
- **bytes** (any worker cannot): each input is sent once by digest (`client.scatter`,
  kept for the next step that reads it, up to `KEEP_SCATTERED`), the worker renders in a
  temporary folder of its own and sends the files back, which are written into the
  step's work folder.  A step whose inputs pass `SEND_LIMIT` renders on this machine
  instead: that is the film's join (every shot, by stream copy, I/O rather than CPU),
  which would cost more to send and receive than to do.

The CLI checks the cluster before the build starts (`check`), so that an unreachable
scheduler is one clear error, not a failed step per shot.  The build then opens its own
asynchronous client in the engine's event loop: a render's round trip is then one task
on the scheduler and nothing else, where a synchronous client's thread hops cost a
loaded machine ten times the pool's round trip.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import hashlib
import os
import tempfile
import uuid
from collections import OrderedDict
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from ..protocol import BackendError

CONNECT_TIMEOUT = 10.0  # seconds: Dask retries a refused connection until then
# One step's inputs, in bytes mode.  At full size a keyframe is ~1 MB, a clip or a shot a
# few tens of MB, so only the film's join passes it; see the module's docstring.
SEND_LIMIT = 256 << 20
KEEP_SCATTERED = 512 << 20  # inputs kept on the workers for later steps (least recent goes)
INSTALL = "pip install 'filmc[cluster]'"  # or `.[cluster]` in a checkout


class ClusterError(Exception):
    """The cluster cannot take this build: a message and what to check."""

    def __init__(self, message: str, hint: str) -> None:
        super().__init__(message)
        self.message, self.hint = message, hint


# -- what a machine's renders depend on ------------------------------------------------------


@functools.cache
def facts() -> dict[str, str]:
    """What this process's renders depend on beyond the job: filmc's version, the
    renderer's source, and the machine facts the local backend's keys hold (ffmpeg's
    version line, eSpeak NG's, the panel font's content)."""
    from ... import __version__
    from .adapter import ffmpeg_version, font_digest
    from .voice import engine_version

    code = hashlib.sha256()
    here = Path(__file__).parent
    for path in sorted([*here.glob("*.py"), here.parent / "ffmpeg.py"]):
        code.update(path.name.encode() + b"\0" + path.read_bytes())
    return {"filmc": __version__, "renderer": code.hexdigest()[:16],
            "ffmpeg": ffmpeg_version(), "espeak": engine_version(),
            "font": font_digest(os.environ.get("FILMC_PANEL_FONT") or None)[:16]}


def skew(theirs: Mapping[str, str], ours: Mapping[str, str]) -> str | None:
    """How a worker's facts differ from the build's, in words; None when they agree."""
    names = {"filmc": "filmc", "renderer": "the renderer's source", "ffmpeg": "ffmpeg",
             "espeak": "eSpeak NG", "font": "the panel font"}
    for key, name in names.items():
        if theirs.get(key) != ours.get(key):
            return f"{name} `{theirs.get(key)}` where this build has `{ours.get(key)}`"
    return None


# -- connecting ------------------------------------------------------------------------------


def check(address: str, timeout: float | None = None) -> tuple[int, int]:
    """Connect to the cluster at `address` and check its workers, from outside any event
    loop (the CLI, before the build): (workers, threads), or a ClusterError."""

    async def checked() -> tuple[int, int]:
        cluster = await open_cluster(address, timeout)
        await cluster.close()
        return cluster.workers, cluster.threads

    return asyncio.run(checked())


async def open_cluster(address: str, timeout: float | None = None) -> Cluster:
    """The cluster at `address`, connected in the running event loop and checked: its
    workers exist, run filmc, and render as this machine does."""
    try:
        from distributed import Client
    except ImportError:
        raise ClusterError("`--cluster` needs Dask's distributed scheduler, which is not "
                           "installed", f"install it with `{INSTALL}`, in the environment "
                           "filmc runs from") from None
    where = "in filmc.toml's `[build] cluster` or --cluster"
    try:
        client = await Client(address, asynchronous=True, timeout=timeout or CONNECT_TIMEOUT,
                              set_as_default=False, name="filmc")
    except (OSError, TimeoutError) as e:
        raise ClusterError(f"cannot reach the Dask scheduler at `{address}` ({e})",
                           f"check the address {where}, that `dask scheduler` runs there "
                           f"and that its port is open from this machine") from None
    except (ValueError, TypeError) as e:
        raise ClusterError(f"`{address}` is not a Dask scheduler's address ({e})",
                           f"write it as `tcp://HOST:8786` {where}") from None
    try:
        nthreads: dict[str, int] = await client.nthreads()
        if not nthreads:
            raise ClusterError(f"the Dask scheduler at `{address}` has no workers",
                               f"start some with `dask worker {address} --nworkers N "
                               f"--nthreads 1`, in an environment where filmc is installed")
        ours = facts()
        try:
            theirs: dict[str, dict[str, str]] = await client.run(facts)
        except (ImportError, AttributeError) as e:  # filmc missing, or another filmc
            raise ClusterError(f"the Dask workers at `{address}` cannot run filmc's "
                               f"renderer ({type(e).__name__}: {e})",
                               "start `dask worker` from the project's environment "
                               "(its venv), where filmc is installed") from None
        for worker, said in sorted(theirs.items()):
            differs = skew(said, ours)
            if differs:
                raise ClusterError(f"the Dask worker {worker} has {differs}",
                                   "its renders would not match this machine's keys: run "
                                   "every worker from the same filmc install as the build, "
                                   "with the same ffmpeg (FILMC_FFMPEG) and panel font "
                                   "(FILMC_PANEL_FONT)")
    except BaseException:
        await client.close()
        raise
    return Cluster(client, address, len(nthreads), sum(nthreads.values()), ours)


# -- the client's side -----------------------------------------------------------------------


class Cluster:
    """A connected, checked cluster (an asynchronous Dask client in the build's event
    loop): how many workers and threads it has, and a way to run one render on it."""

    def __init__(self, client: Any, address: str, workers: int, threads: int,
                 facts: Mapping[str, str]) -> None:
        self.client, self.address = client, address
        self.workers, self.threads, self.facts = workers, threads, dict(facts)
        self._shared: dict[Path, tuple[str, ...] | None] = {}  # store tmp → hosts, or None
        self._scattered: OrderedDict[str, tuple[Any, int]] = OrderedDict()  # digest → future
        self._kept = 0

    async def sharing(self, folder: Path) -> tuple[str, ...] | None:
        """The workers' hosts when every worker reads and writes `folder` (the store's
        tmp/) at the same path as this machine; None when any cannot (then inputs travel
        as bytes).  Hosts, not addresses: a worker that died and came back (a new port)
        still shares its machine's disk."""
        if folder not in self._shared:
            from distributed.comm import get_address_host

            token = uuid.uuid4().hex
            probe = folder / f"cluster-probe-{token}"
            probe.write_text(token)
            try:
                seen: dict[str, bool] = await self.client.run(_probe, str(probe), token)
            finally:
                probe.unlink(missing_ok=True)
            ok = bool(seen) and all(seen.values())
            hosts = sorted({get_address_host(worker) for worker in seen})
            self._shared[folder] = tuple(hosts) if ok else None
        return self._shared[folder]

    async def call(self, job: dict[str, Any], inputs: Sequence[tuple[str, str]],
                   workdir: Path) -> dict[str, Any] | None:
        """Render `job` (a pool job: kind, spec, prompt, inputs, workdir) on a worker; its
        answer as a pool worker gives it.  `inputs`: each input's (path, digest) in the
        job's order.  None: the step should render here (bytes mode, over SEND_LIMIT)."""
        shared = await self.sharing(workdir.parent)
        how = "paths" if shared is not None else "bytes"  # in the task's name, for a reader
        key = f"filmc-{job['kind']}-{how}-{uuid.uuid4().hex[:12]}"
        if shared is not None:
            return await self._wait(self.client.submit(
                _render_shared, job, self.facts, key=key, workers=list(shared), pure=False))
        sizes = [os.path.getsize(p) for p, _d in inputs]
        if sum(sizes) > SEND_LIMIT:
            return None
        blobs = await self._scatter(inputs, sizes)
        names = [Path(p).name for p, _d in inputs]
        answer = await self._wait(self.client.submit(
            _render_sent, job, names, blobs, self.facts, key=key, pure=False))
        if "files" in answer:
            loop = asyncio.get_running_loop()
            answer = {"files": await loop.run_in_executor(None, _write, answer["files"],
                                                          workdir)}
        return answer

    async def _wait(self, future: Any) -> dict[str, Any]:
        """The task's answer; the task cancelled on the cluster when the step is (Ctrl-C)."""
        try:
            answer: dict[str, Any] = await future
            return answer
        except asyncio.CancelledError:
            with contextlib.suppress(Exception):
                await asyncio.shield(self.client.cancel([future]))
            raise
        except Exception as e:  # the worker died past Dask's retries, the scheduler went
            raise BackendError(f"the Dask cluster at `{self.address}` lost this step: "
                               f"{type(e).__name__}: {e}") from None

    async def _scatter(self, inputs: Sequence[tuple[str, str]],
                       sizes: Sequence[int]) -> list[Any]:
        """Each input's bytes on the cluster, once per digest while it is kept."""
        loop = asyncio.get_running_loop()
        out = []
        for (path, digest), size in zip(inputs, sizes):
            kept = self._scattered.get(digest)
            if kept is None:
                data = await loop.run_in_executor(None, Path(path).read_bytes)
                kept = self._scattered[digest] = (await self.client.scatter(data, hash=False),
                                                  size)
                self._kept += size
            self._scattered.move_to_end(digest)
            out.append(kept[0])
        while self._kept > KEEP_SCATTERED and len(self._scattered) > 1:
            _digest, (_future, size) = self._scattered.popitem(last=False)
            self._kept -= size  # a task that still needs it holds its own reference
        return out

    async def close(self) -> None:
        """Forget what was sent; closing the client releases its tasks still on the
        cluster (an interrupted build's)."""
        self._scattered.clear()
        with contextlib.suppress(Exception):
            await asyncio.wait_for(self.client.close(), 10)


def _write(files: Mapping[str, list[tuple[str, bytes]]], workdir: Path) -> dict[str, list[str]]:
    """A bytes-mode answer's files, in the step's work folder, by declared output."""
    out: dict[str, list[str]] = {}
    for output, items in files.items():
        for name, data in items:
            path = workdir / Path(name).name
            path.write_bytes(data)
            out.setdefault(output, []).append(str(path))
    return out


# -- the worker's side (run by `dask worker`: module-level, pickled by reference) ------------


def _probe(path: str, token: str) -> bool:
    """Whether this worker reads the probe the build wrote, and can write beside it."""
    try:
        if Path(path).read_text() != token:
            return False
    except OSError:
        return False
    return os.access(os.path.dirname(path), os.W_OK)


def _render_shared(job: dict[str, Any], expected: Mapping[str, str]) -> dict[str, Any]:
    """A pool job, paths and all: the store and the work folder are this worker's too."""
    return _answer(job, expected)


def _render_sent(job: dict[str, Any], names: Sequence[str], blobs: Sequence[bytes],
                 expected: Mapping[str, str]) -> dict[str, Any]:
    """A job whose inputs came as bytes: rendered in a folder of this worker's, its
    files sent back as (name, bytes) by declared output."""
    with tempfile.TemporaryDirectory(prefix="filmc-render-") as tmp:
        folder = Path(tmp)
        (folder / "in").mkdir()
        (folder / "out").mkdir()
        sent = iter(zip(names, blobs))
        local_inputs = []
        for role, _path, *rest in job["inputs"]:
            name, data = next(sent)
            path = folder / "in" / name
            path.write_bytes(data)
            local_inputs.append([role, str(path), *rest])
        answer = _answer({**job, "inputs": local_inputs, "workdir": str(folder / "out")},
                         expected)
        if "files" in answer:
            answer = {"files": {output: [(Path(p).name, Path(p).read_bytes()) for p in paths]
                                for output, paths in answer["files"].items()}}
        return answer


def _answer(job: dict[str, Any], expected: Mapping[str, str]) -> dict[str, Any]:
    """What a pool worker (worker.py) answers for `job`, failures sorted the same way;
    refused when this worker's facts differ from the build's (it joined after the check)."""
    from .worker import render_job

    differs = skew(facts(), expected)
    if differs:
        import distributed

        where = distributed.get_worker().address
        return {"error": {"type": "backend", "message": f"the Dask worker {where} has "
                          f"{differs}: run it from the same filmc install as the build"}}
    return render_job(job)
