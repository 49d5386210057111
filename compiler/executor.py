"""`filmc build`: run the step graph, incrementally, without ever losing finished work.

Every step is an asyncio task that starts as soon as its inputs are done.  A
step whose key is in the store's action cache, with its objects intact, is
reused; otherwise its backend runs it in a private working folder, its outputs
become content-addressed objects (written atomically, verified), and only then
is the action recorded — one SQLite transaction per step, so a crash or a
`kill -9` at any moment loses at most the steps that were running.  Steps with
the same key run once.  Each backend has its own concurrency limit (filmc.toml),
under the build's overall `--jobs`.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import time
from collections.abc import Callable
from pathlib import Path

import attrs
import networkx as nx

from ..backends import base
from .pipeline import Compiled
from .store import Store

# `--until STAGE` (keyframe < clip < shot < film): the step kinds a build stops at.
_UNTIL = {
    "keyframe": {"sheet", "plate", "keyframe", "storyboard"},
    "clip": {"sheet", "plate", "keyframe", "storyboard", "clip", "speech"},
    "shot": {"sheet", "plate", "keyframe", "storyboard", "clip", "speech", "shot", "subtitles",
             "timeline"},
}


@attrs.frozen
class Options:
    jobs: int = os.cpu_count() or 2
    keep_going: bool = False
    force: frozenset[str] = frozenset()
    until: str | None = None
    selection: frozenset[str] | None = None
    burn_subtitles: bool = False


@attrs.frozen
class Outcome:
    id: str
    kind: str
    backend: str | None
    scene: str | None
    shot: str | None
    status: str  # ran | cached | provided | failed | skipped
    seconds: float = 0.0
    error: str | None = None
    outputs: tuple[tuple[str, str], ...] = ()  # (file name, object digest)


class Events:
    """What a progress display hears; the default hears nothing."""

    def begin(self, total: int) -> None: ...
    def started(self, node: str) -> None: ...
    def finished(self, outcome: Outcome) -> None: ...


class Executor:
    def __init__(self, compiled: Compiled, store: Store, options: Options,
                 events: Events | None = None,
                 adapters: Callable[[str, str, dict, int], base.Backend] | None = None) -> None:
        self.c = compiled
        self.graph: nx.DiGraph = compiled.graph  # type: ignore[assignment]
        self.store = store
        self.opt = options
        self.events = events or Events()
        self._make_adapter = adapters or _adapter
        self._adapters: dict[str, base.Backend] = {}
        self._limits: dict[str, asyncio.Semaphore] = {}
        self._inflight: dict[str, asyncio.Future] = {}
        self._tasks: dict[str, asyncio.Task] = {}
        self.stopped = False
        self._runs = 0
        self._free: list[Path] = []
        self._known: dict = {}  # key → cached action, fetched once for the whole build
        self._reused: list[tuple[str, str, dict]] = []
        film = compiled.film
        self.film_facts = {"width": film.width, "height": film.height, "fps": film.fps,
                           "burn_subtitles": options.burn_subtitles}

    # -- what to build ----------------------------------------------------------------------

    def plan_nodes(self) -> list[str]:
        """The steps this build needs, in dependency order: the targets (the selection, or
        everything, cut at `--until`) and everything they are made from."""
        g = self.graph
        allowed = _UNTIL.get(self.opt.until or "film")
        targets = set(g.nodes) if self.opt.selection is None else set(self.opt.selection)
        if allowed is not None:
            targets = {n for n in targets if g.nodes[n]["kind"] in allowed}
        needed = set(targets)
        stack = list(targets)
        while stack:
            for p in g._pred[stack.pop()]:
                if p not in needed:
                    needed.add(p)
                    stack.append(p)
        return [n for n in nx.topological_sort(g) if n in needed]

    # -- running ---------------------------------------------------------------------------------

    async def run(self) -> list[Outcome]:
        nodes = self.plan_nodes()
        self.events.begin(len(nodes))
        self._clean_tmp()
        self.jobs = asyncio.Semaphore(max(1, self.opt.jobs))
        self._known = self.store.get_actions(self.graph.nodes[n]["step"].key for n in nodes)
        for n in nodes:
            self._tasks[n] = asyncio.ensure_future(self._step(n))
        try:
            return list(await asyncio.gather(*self._tasks.values()))
        finally:
            self._flush_reused()
            for a in self._adapters.values():
                a.close()

    async def _step(self, node: str) -> Outcome:
        step = self.graph.nodes[node]["step"]
        inputs = [await self._tasks[i] for i in step.inputs]
        broken = next((o for o in inputs if o.status in ("failed", "skipped")), None)
        if broken is not None or self.stopped:
            why = f"input {broken.id} {broken.status}" if broken else "the build stopped"
            return self._done(Outcome(node, step.kind, step.backend, step.scene, step.shot,
                                      "skipped", error=why))
        if node not in self.opt.force:
            cached = self._cached(step)
            if cached is not None:
                return self._done(cached)
        key = step.key
        if key in self._inflight and node not in self.opt.force:  # same work, already running
            outcome = await self._inflight[key]
            return self._done(attrs.evolve(outcome, id=node, scene=step.scene, shot=step.shot))
        future: asyncio.Future = asyncio.get_running_loop().create_future()
        self._inflight[key] = future
        try:
            outcome = await self._execute(step, inputs)
        except asyncio.CancelledError:
            future.cancel()
            raise
        future.set_result(outcome)
        return self._done(outcome)

    def _done(self, outcome: Outcome) -> Outcome:
        if outcome.status == "failed" and not self.opt.keep_going:
            self.stopped = True
        self.events.finished(outcome)
        return outcome

    def _cached(self, step) -> Outcome | None:
        action = self._known.get(step.key)
        if action is None:
            return None
        outputs = tuple((o["name"], o["digest"]) for o in action.outputs)
        if not outputs or not all(self.store.object_ok(d) for _n, d in outputs):
            return None  # an object is missing or damaged: make it again
        # The last-build record of a reused step is bookkeeping for `plan`; it is
        # written in batches, not a transaction per step.
        self._reused.append((step.id, step.key, step.record))
        if len(self._reused) >= 2000:
            self._flush_reused()
        status = "provided" if step.backend is None else "cached"
        return Outcome(step.id, step.kind, step.backend, step.scene, step.shot, status,
                       outputs=outputs)

    async def _execute(self, step, inputs: list[Outcome]) -> Outcome:
        started = time.perf_counter()
        self.events.started(step.id)
        try:
            outputs = []
            if step.backend is None:  # the user's own reference files
                for f in step.files:
                    path = self.c.project.root / f.path
                    outputs.append((path.name, await asyncio.to_thread(self.store.put_object, path)))
                status = "provided"
            else:
                async with self.jobs, self._limit(step.backend):
                    workdir = self._workdir()
                    try:
                        job = base.Job(step, self._input_files(inputs, workdir), workdir,
                                       self.film_facts)
                        files = list(await self._adapter(step.backend).run(job))
                        if not files:
                            raise base.BackendError("the backend produced no output")
                        for f in files:
                            f = Path(f)
                            take = self.store.take_object if f.is_relative_to(workdir) \
                                else self.store.put_object
                            outputs.append((f.name, await asyncio.to_thread(take, f)))
                    finally:
                        self._release(workdir)
                status = "ran"
            seconds = time.perf_counter() - started
            meta = {"backend": step.backend, "seconds": round(seconds, 3), "kind": step.kind,
                    "cost": self._cost(step)}
            self.store.record_step(step.id, step.key, step.record,
                                   [{"name": n, "digest": d} for n, d in outputs], meta)
            return Outcome(step.id, step.kind, step.backend, step.scene, step.shot, status,
                           seconds, outputs=tuple(outputs))
        except asyncio.CancelledError:
            raise
        except base.BackendError as e:
            error = e.message
        except OSError as e:
            error = f"{e.strerror or e}" + (f": {e.filename}" if e.filename else "")
        except Exception as e:  # a step's failure must not take the build down
            error = f"{type(e).__name__}: {e}"
        return Outcome(step.id, step.kind, step.backend, step.scene, step.shot, "failed",
                       time.perf_counter() - started, error=error)

    # -- helpers ---------------------------------------------------------------------------------

    def _cost(self, step) -> float | None:
        """What the step cost by the price table (None: no price, 0 for the local backend)."""
        if step.backend is None:
            return None
        conf = self.c.config.backend(step.backend)
        if conf.type == "local":
            return 0.0
        duration = step.params.get("duration")
        return self.c.config.estimate(step.kind, step.backend,
                                      float(duration) if duration is not None else None)

    def _flush_reused(self) -> None:
        if self._reused:
            rows, self._reused = self._reused, []
            self.store.record_last_build(rows)

    def _limit(self, backend: str) -> asyncio.Semaphore:
        sem = self._limits.get(backend)
        if sem is None:
            conf = self.c.config.backend(backend)
            sem = self._limits[backend] = asyncio.Semaphore(max(1, conf.concurrency))
        return sem

    def _adapter(self, backend: str) -> base.Backend:
        a = self._adapters.get(backend)
        if a is None:
            conf = self.c.config.backend(backend)
            a = self._adapters[backend] = self._make_adapter(conf.type, backend,
                                                             dict(conf.settings), self.opt.jobs)
        return a

    def _workdir(self) -> Path:
        """An empty folder for one run of one step, with `in/` for its inputs.  Folders
        are reused from step to step (creating and deleting two folders a step cost
        more than the rest of the executor's work)."""
        if self._free:
            return self._free.pop()
        self._runs += 1
        d = self.store.path / "tmp" / f"work-{self._runs}"
        (d / "in").mkdir(parents=True)
        return d

    def _release(self, workdir: Path) -> None:
        """Empty a work folder for the next step; a folder that will not empty is dropped."""
        try:
            for sub in (workdir / "in", workdir):
                with os.scandir(sub) as entries:
                    for e in entries:
                        if e.is_dir(follow_symlinks=False):
                            if e.name != "in":
                                shutil.rmtree(e.path)
                        else:
                            os.unlink(e.path)
        except OSError:
            shutil.rmtree(workdir, ignore_errors=True)
            return
        self._free.append(workdir)

    def _input_files(self, inputs: list[Outcome], workdir: Path) -> tuple:
        """Each input's objects, linked into the work folder under their own names (so
        tools that look at extensions see `.png`, `.mp4`)."""
        out = []
        for o in inputs:
            paths = []
            for i, (name, digest) in enumerate(o.outputs):
                link = workdir / "in" / f"{o.id}.{i}.{name}"  # unique: node ids are
                os.symlink(self.store.object_path(digest), link)
                paths.append(link)
            out.append((o.id, tuple(paths)))
        return tuple(out)

    def _clean_tmp(self) -> None:
        """Work folders a killed build left behind (the project lock makes them ours)."""
        tmp = self.store.path / "tmp"
        if tmp.is_dir():
            for d in tmp.glob("work-*"):
                shutil.rmtree(d, ignore_errors=True)


def _adapter(type_name: str, name: str, settings: dict, jobs: int) -> base.Backend:
    return base.load(type_name)(name, settings, jobs)
