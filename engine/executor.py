"""Running the step graph: each step once, as soon as its inputs are done.

Every step is an asyncio task.  What the build runs is `compiler.plan.decide`'s
answer, the same one `filmc plan` prints; then, step by step:

- provided (the user's own images): copied into the store, their content checked
  against what the compiler hashed;
- cached: reused when its objects are intact (a damaged one is made again);
- otherwise its backend makes it: on this machine under `--jobs` (the local
  renderer), or at a service under the backend's own concurrency and rate
  (engine/remote.py: journal, retries, re-attaching), its inputs handed over by
  the part they play (`Request`);
- what came back is checked against the kind's declared outputs (and, from a
  service, opened as a person would), enters the store, and the action is
  recorded: one log line and one SQLite transaction, so a `kill -9` loses at
  most the steps that were running, and never a paid job (the journal has it).

A failure is a step's when it is the user's business (a service's refusal, a
file that does not decode, a full disk): the step fails with its reason, and
`--keep-going` lets the rest go on.  Anything else is a bug in filmc: it stops
the build and keeps its traceback for the report.  Ctrl-C stops polling and
rendering at once, lets a synchronous paid request that is already under way
come back and be stored, and leaves journaled jobs running for the next build.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import os
import shutil
import signal
import time
import traceback
from collections.abc import Callable, Collection, Mapping, Sequence
from pathlib import Path
from typing import Any

import attrs

from ..backends.ffmpeg import MediaError
from ..backends.protocol import (
    Backend,
    BackendError,
    Done,
    FailureKind,
    Input,
    Request,
    ServiceError,
    Setup,
)
from ..compiler.config import LOCAL, ConfigError, secret
from ..compiler.plan import decide, estimate, money
from ..lang.files import film_dir
from ..lang.steps import IN_PLACE, KINDS, NAMED, Addressed, StepId
from . import verify
from .db import StoreError, disk_error
from .journal import Journal, OpenJob
from .layout import places
from .lengths import measure
from .remote import Service
from .retry import Policy
from .sharing import Claim, Shared
from .state import State
from .store import Action, Store

LAST_BATCH = 2000  # last-build rows written per transaction
FIRST_AT_MOST = 1000  # steps to make, over which a build settles its steps in plain order


class BuildError(Exception):
    """The build cannot start: a message and what to do."""

    def __init__(self, message: str, hint: str | None = None) -> None:
        super().__init__(message)
        self.message, self.hint = message, hint


@attrs.frozen
class Options:
    jobs: int = os.cpu_count() or 2
    keep_going: bool = False
    force: frozenset[str] = frozenset()
    until: str | None = None
    selection: frozenset[str] | None = None
    max_cost: float | None = None
    use_first: bool = False  # animate the first candidate of a shot nobody picked
    # A Dask scheduler's address: the local backend's CPU-heavy steps render on its workers,
    # `jobs` of them in flight (the build command's default: twice the workers' threads).
    cluster: str | None = None


@attrs.frozen
class Stored:
    output: str  # the declared output's name
    digest: str
    ext: str  # the file name's extension, ".png"

    def as_dict(self) -> dict[str, str]:
        return {"output": self.output, "digest": self.digest, "ext": self.ext}


@attrs.frozen
class Outcome(Addressed):
    sid: StepId
    backend: str | None
    status: str  # ran | cached | provided | failed | skipped | waiting (for a pick)
    seconds: float = 0.0
    error: str | None = None
    outputs: tuple[Stored, ...] = ()
    cost: float | None = None  # what running it cost: the service's figure, else the estimate
    cost_source: str | None = None  # "service" | "estimate"
    estimate: float | None = None
    attached: bool = False  # it polled a job an earlier build had submitted
    traceback: str | None = None  # a bug's
    # Made by its fallback backend: {"from": the backend that refused it, "refused": why}
    fallback: Mapping[str, str] | None = None


class Events:
    """What a progress display hears; the default hears nothing."""

    def begin(self, total: int) -> None: ...
    def started(self, node: str) -> None: ...
    def finished(self, outcome: Outcome) -> None: ...
    def note(self, text: str) -> None: ...


AdapterFactory = Callable[[Any, Setup], Backend]  # (BackendInfo, Setup) → an adapter


def first_steps(graph: Any, nodes: Sequence[str], run: Collection[str],
                touched: Collection[str]) -> list[str]:
    """Of the steps `run`, those that no other of them comes before (is made from, or
    held by, through any steps), with every step they are made from or hold, in the
    order of `nodes`.  A held step counts where `touched` has both it and its holder.

    What comes after a step to make is looked for forward, from all of them at once (a
    one-shot edit's steps are followed by a few dozen others), not back from each (the
    film's and the exports' steps are made from the whole film)."""
    succ, pred, node = graph._succ, graph._pred, graph._node
    holders = graph.graph.get("holding")
    if holders is None:
        holders = [n for n in nodes if node[n]["step"].held]
    held_by: dict[str, list[str]] = {}  # a held step → the steps that hold it
    for n in holders:
        if n in touched:
            for h in node[n]["step"].held:
                if h.step in touched:
                    held_by.setdefault(h.step, []).append(n)
    after: set[str] = set()  # made from, or holding, a step to make
    stack = [s for r in run for s in (*succ[r], *held_by.get(r, ()))]
    while stack:
        n = stack.pop()
        if n not in after:
            after.add(n)
            stack.extend(succ[n])
            stack.extend(held_by.get(n, ()))
    ahead: set[str] = set()
    stack = [r for r in run if r not in after]
    while stack:
        n = stack.pop()
        if n not in ahead:
            ahead.add(n)
            stack.extend(pred[n])
            stack.extend(h.step for h in node[n]["step"].held if h.step in touched)
    return [n for n in nodes if n in ahead]


class Executor:
    def __init__(self, program: Any, store: Store, state: State, journal: Journal,
                 options: Options, events: Events | None = None,
                 adapters: AdapterFactory | None = None, shared: Shared | None = None) -> None:
        self.program = program
        # The team's remote cache (engine/sharing.py): read-through, write-through, claims.
        self.shared = shared
        self.graph = program.graph
        self.store = store
        self.state = state
        self.journal = journal
        self.opt = options
        self.events = events or Events()
        self._make_adapter = adapters or (lambda info, setup: info.adapter(setup))
        self._adapters: dict[str, Backend] = {}
        self._services: dict[str, Service] = {}
        self._local: dict[str, asyncio.Semaphore] = {}
        self._inflight: dict[str, asyncio.Future[Outcome]] = {}
        self._tasks: dict[str, asyncio.Future[Outcome]] = {}  # tasks, or reused ones settled
        self._placed = asyncio.Event()  # every step of the run has its task (`outcomes_of`)
        self._known: dict[str, Any] = {}
        self._last: list[tuple[str, str, dict]] = []
        self._last_spliced: dict[str, Any] = {}  # node → its record's parts encoded before
        self._free: list[Path] = []
        self._runs = 0
        # Hashing, fsyncing and checking outputs: two threads are enough to keep the disk
        # busy, and fewer threads fight less over the GIL than the default pool's six.
        self._io = concurrent.futures.ThreadPoolExecutor(2, "filmc-store")
        self.stopped = False  # a failure without --keep-going: start nothing new
        self.interrupted = False
        self.bug: BaseException | None = None
        self.stopped_saying = False  # the lines said first failed: the build ends (build.py)
        # What a build that said its lines first (engine/build.py) already knows: the steps
        # that failed then (never asked for twice), and the backends that stopped taking
        # submissions then (out of credit, a refused key), with why.
        self.settled: dict[str, Outcome] = {}
        self.stops: dict[str, str] = {}
        self.spent = 0.0
        self._reserved = 0.0
        self.decision = decide(self.graph, options.selection, options.until, options.force,
                               self._cached_keys, options.use_first)
        # Steps whose bytes this build needs: inputs and held takes of the steps it runs
        # (a cached step found remotely is fetched only then, or to be laid out).
        self._needed: set[str] = set()
        if shared is not None:
            for n in self.decision.run:
                self._needed.update(self.graph.predecessors(n))
                self._needed.update(r.step for r in self._step(n).held)

    def _cached_keys(self, keys: Any) -> set[str]:
        keys = set(keys)
        self._known = self.store.get_actions(keys)
        if self.shared is not None and len(self._known) < len(keys):
            self._known.update(self.shared.lookup(keys - set(self._known)))
        return set(self._known)

    # -- before anything runs ----------------------------------------------------------------

    def preflight(self) -> None:
        """Refuse to start a build that cannot finish or costs more than allowed."""
        run = [self._step(n) for n in self.decision.run]
        missing: dict[str, str] = {}
        for step in run:
            info = self.program.backends[step.backend]
            for name in info.adapter.secrets:
                try:
                    secret(info.config, name)
                except ConfigError as e:
                    missing.setdefault(step.backend, str(e))
        if missing:
            raise BuildError("; ".join(missing.values()),
                             "set the variables and build again (nothing was run), or build "
                             "`--offline` for the animatic")
        if self.opt.max_cost is not None:
            to_pay = [s for s in run if (job := self.journal.open_jobs.get(s.key)) is None
                      or job.op != "accepted"]
            prices = [estimate(s, self.program.backends) for s in to_pay]
            unpriced = [s.id for s, p in zip(to_pay, prices) if p is None]
            if unpriced:
                raise BuildError(f"--max-cost cannot bound {len(unpriced)} step(s) with no "
                                 f"price, such as `{unpriced[0]}`",
                                 "give their backends prices in filmc.toml (docs/config.md)")
            total = sum(p or 0.0 for p in prices)
            if total > self.opt.max_cost:
                cur = self.program.currency
                raise BuildError(f"this build is estimated at {money(total, cur)}, over "
                                 f"--max-cost {money(self.opt.max_cost, cur)}",
                                 "build part of it with --select or --until, or raise --max-cost")

    # -- running -------------------------------------------------------------------------------

    async def run(self) -> list[Outcome]:
        nodes = self.decision.nodes
        self.events.begin(len(nodes))
        self._clean_tmp()
        self.jobs = asyncio.Semaphore(max(1, self.opt.jobs))
        self.remote = asyncio.Semaphore(max(1, self.program.concurrency))
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            with contextlib.suppress(ValueError, RuntimeError):  # not the main thread (tests)
                loop.add_signal_handler(sig, self.interrupt)
        # A feature's rebuild reuses thousands of steps for a few it makes: those whose
        # inputs are reused too and whose objects are intact by their signatures are
        # settled here, at once, without a task each; the loop then has only the steps to
        # make (and what waits on them) to run, and hears their workers without delay.
        # The steps to make that no other step to make comes before, and what they are
        # made from, are settled first and start at once: after a one-shot edit, the
        # shot's first step is with a worker while the 14,000 others are settled; their
        # bookkeeping (the progress display, the last-build records) comes last.
        early: dict[str, Outcome] = {}
        touched = frozenset(nodes)

        def settle(n: str) -> None:
            found = self._reused_now(n, early, touched)
            if found is None:
                self._tasks[n] = asyncio.ensure_future(self._run_step(n))
                return
            early[n] = found
            self._tasks[n] = done = loop.create_future()
            done.set_result(found)

        try:
            first = self._first(nodes, touched)
            for n in first:
                settle(n)
            if first:
                await asyncio.sleep(0)  # they run to their first wait: with a worker
            for n in nodes:
                if n not in self._tasks:
                    settle(n)
            self._placed.set()
            await asyncio.sleep(0)  # each step to make runs to its first wait
            for i, found in enumerate(early.values(), 1):
                self._done(found)
                if i % 256 == 0:  # and on from there (a reference it reads, copied)
                    await asyncio.sleep(0)
            results = await asyncio.gather(*(self._tasks[n] for n in nodes),
                                           return_exceptions=True)
        finally:
            self._placed.set()
            for sig in (signal.SIGINT, signal.SIGTERM):
                with contextlib.suppress(ValueError, RuntimeError):
                    loop.remove_signal_handler(sig)
            self._flush_last()
            await self.journal.drain()
            self._io.shutdown(wait=True)
            for d in self._free:
                shutil.rmtree(d, ignore_errors=True)
            for a in self._adapters.values():
                with contextlib.suppress(Exception):  # closing must not hide the outcome
                    await asyncio.wait_for(a.close(), 30)
        outcomes = []
        for n, r in zip(nodes, results):
            if isinstance(r, Outcome):
                outcomes.append(r)
            elif isinstance(r, asyncio.CancelledError):  # Ctrl-C
                outcomes.append(self._outcome(self._step(n), "skipped", error="interrupted"))
            else:  # a bug outside a step's making (reusing it, reporting it)
                self.bug = self.bug or r
                outcomes.append(self._outcome(
                    self._step(n), "failed", error=f"internal error: {type(r).__name__}: {r}",
                    traceback="".join(traceback.format_exception(r))))
        return outcomes

    async def outcomes_of(self, kinds: Collection[str]) -> list[Outcome]:
        """The outcomes of the run's steps of `kinds`, once each has one, while the others
        may still be running (`run` is under way in the same loop).  Waiting here cancels
        none of them, even when this wait is cancelled."""
        await self._placed.wait()
        node = self.graph._node
        tasks = [t for n, t in self._tasks.items() if node[n]["kind"] in kinds]
        if tasks:
            await asyncio.wait(tasks)
        return [t.result() for t in tasks if not t.cancelled() and t.exception() is None]

    def _first(self, nodes: tuple[str, ...], touched: frozenset[str]) -> list[str]:
        """The steps to make that no other step to make comes before, with every step they
        are made from or hold (`first_steps`); none when the build makes many (a first
        build: the order of the rest is as good)."""
        run = self.decision.run
        if not run or len(run) > FIRST_AT_MOST:
            return []
        return first_steps(self.graph, nodes, run, touched)

    def interrupt(self) -> None:
        """Ctrl-C (or SIGTERM): stop now, but let paid synchronous requests come back."""
        if self.interrupted:  # the second time: stop waiting for them too
            for t in self._tasks.values():
                t.cancel()
            return
        self.interrupted = self.stopped = True
        for service in self._services.values():
            service.interrupted = True
        waiting = set().union(*(s.unrecorded for s in self._services.values()))
        for t in self._tasks.values():
            if t not in waiting:
                t.cancel()
        if waiting:
            self.events.note(f"waiting for {len(waiting)} paid request(s) under way to come "
                             f"back (Ctrl-C again to abandon them)")

    def _step(self, node: str) -> Any:
        return self.graph._node[node]["step"]

    def _outcome(self, step: Any, status: str, **kw: Any) -> Outcome:
        return Outcome(step.sid, kw.pop("backend", step.backend), status, **kw)

    async def _run_step(self, node: str) -> Outcome:
        if node in self.settled:
            return self._done(self.settled[node])
        step = self._step(node)
        inputs: dict[str, Outcome] = {}
        for i in dict.fromkeys(r.step for r in step.inputs):
            try:
                inputs[i] = await self._tasks[i]
            except Exception:  # a bug there: reported once, by that step
                return self._done(self._outcome(step, "skipped",
                                                error=f"input {i} failed (internal error)"))
        for ref in step.held:  # made by this build too: named once it is there
            if ref.step in self._tasks:
                with contextlib.suppress(Exception):
                    await self._tasks[ref.step]
        if node in self.decision.waiting:
            return self._done(self._outcome(step, "waiting", error=step.waits or next(
                (f"made from {o.id}, which waits" for o in inputs.values()
                 if o.status == "waiting"), "waits for a pick")))
        broken = next((o for o in inputs.values() if o.status in ("failed", "skipped")), None)
        if broken is not None or self.stopped:
            why = f"input {broken.id} {broken.status}" if broken else \
                "interrupted" if self.interrupted else "the build stopped after a failure"
            return self._done(self._outcome(step, "skipped", error=why))
        if step.pin is not None:
            return self._done(await self._pinned(step))
        if node not in self.decision.run and (step.backend is not None or self.shared is None):
            # (the user's own image is taken from its file, never from the team's cache)
            cached = await self._reuse(step)
            if cached is not None:
                return self._done(cached)
        key = step.key
        if key in self._inflight:  # the same work (forced or not) runs once
            o = await self._inflight[key]
            return self._done(attrs.evolve(o, sid=step.sid))
        future: asyncio.Future[Outcome] = asyncio.get_running_loop().create_future()
        self._inflight[key] = future
        try:
            outcome = await self._make(step, inputs)
        except BaseException as e:
            future.cancel()
            if isinstance(e, asyncio.CancelledError):
                raise
            self.bug = self.bug or e
            self.stopped = True
            outcome = self._outcome(step, "failed", error=f"internal error: {type(e).__name__}: "
                                                          f"{e}", traceback=traceback.format_exc())
        if not future.done():
            future.set_result(outcome)
        return self._done(outcome)

    def _done(self, outcome: Outcome) -> Outcome:
        if outcome.status == "failed" and not self.opt.keep_going:
            self.stopped = True
        if outcome.status in ("ran", "cached", "provided"):
            step = self._step(outcome.id)
            self._last.append((step.id, step.key, step.record))
            if step.spliced:
                self._last_spliced[step.id] = step.spliced
            if len(self._last) >= LAST_BATCH:
                self._flush_last()
        self.events.finished(outcome)
        return outcome

    def _reused_now(self, node: str, early: Mapping[str, Outcome],
                    touched: frozenset[str]) -> Outcome | None:
        """The outcome of a step the build reuses, when it is known without waiting: its
        inputs, and the steps it holds that this build touches (`touched`), are reused
        too (`early`), its objects are intact by their signatures, no remote cache is
        asked.  None: `_run_step` decides."""
        if node in self.decision.run or node in self.decision.waiting or node in self.settled \
                or self.shared is not None:
            return None
        step = self._step(node)
        if step.pin is not None or any(r.step not in early for r in step.inputs) \
                or any(r.step in touched and r.step not in early for r in step.held):
            return None
        action = self._known.get(step.key)
        if action is None:
            return None
        outputs = self._stored(action)
        trusted = self.store.objects.trusted
        if not all(trusted(o.digest) for o in outputs):
            return None  # missing, or to be hashed again (off the event loop)
        return self._reused(step, action, outputs)

    @staticmethod
    def _stored(action: Any) -> tuple[Stored, ...]:
        return tuple(Stored(o["output"], o["digest"], o.get("ext", "")) for o in action.outputs)

    def _reused(self, step: Any, action: Any, outputs: tuple[Stored, ...]) -> Outcome | None:
        """The outcome of reusing `action` for `step`, unless what its output depends on
        besides its key has moved (`_facts`)."""
        facts = self._facts(step)
        if any(action.meta.get(k) != v for k, v in facts.items()):
            return None  # the store or the project's folder moved under it: make it again
        status = "provided" if step.backend is None else "cached"
        fallback = action.meta.get("fallback")  # made by a fallback backend, when it was
        return self._outcome(step, status, outputs=outputs, fallback=fallback,
                             backend=action.meta.get("backend", step.backend)
                             if fallback else step.backend)

    async def _reuse(self, step: Any) -> Outcome | None:
        action = self._known.get(step.key)
        if action is None:
            return None
        outputs = self._stored(action)
        absent = []
        for o in outputs:
            trusted = self.store.objects.trusted(o.digest)
            if trusted is None:  # changed since verified: hash it, off the event loop
                trusted = await asyncio.to_thread(self.store.objects.verify, o.digest)
            if not trusted:
                if self.shared is None:
                    return None  # missing or damaged: make it again
                absent.append(o.digest)
        if absent and (step.id in self._needed or places(
                self._outcome(step, "cached", outputs=outputs)) or step.kind == "timeline"):
            # Its bytes are needed (an input of a step that runs, or laid out in build/):
            # fetched from the remote cache, verified; a corrupt or missing one: made again.
            problems = await asyncio.to_thread(self.shared.ensure, absent)  # type: ignore[union-attr]
            if problems:
                for p in problems:
                    self.events.note(f"{step.id}: {p}; it is made again")
                return None
        return self._reused(step, action, outputs)

    async def _pinned(self, step: Any) -> Outcome:
        """A step film.lock pins (a pick, a take the user added): its output is the object
        the lock names, taken from the store; when the store lacks it, the step fails, and
        nothing else is made in its place."""
        pin = step.pin
        status = "provided" if step.backend is None else "cached"
        action = self._known.get(step.key)
        found = [o for o in action.outputs if o["digest"] == pin] if action is not None else []
        ok = self.store.objects.trusted(pin)
        if ok is None:
            ok = await asyncio.to_thread(self.store.objects.verify, pin)
        if not ok and self.shared is not None:  # a teammate's pick: from the remote cache
            problems = await asyncio.to_thread(self.shared.ensure, [pin])
            for p in problems:
                self.events.note(f"{step.id}: {p}")
            ok = not problems
        if not ok:
            what = "added take" if step.backend is None else "pick"
            return self._outcome(step, "failed", error=(
                f"{self.graph.graph.get('lock', 'film.lock')}'s {what} `{step.sid.candidate}` "
                f"of shot {step.shot} is output "
                f"{pin[:12]}…, which the store does not hold (nothing was made in its "
                f"place): point FILMC_STORE at the store it was built in, or pick again "
                f"(`filmc pick {step.shot} CANDIDATE`)"))
        if found:
            ext = found[0].get("ext", "")
        elif step.backend is None:
            ext = step.params["take"]["ext"]
        else:
            ext = await asyncio.to_thread(verify.sniff_ext, self.store.objects.path(pin))
        out = Stored(KINDS[step.kind].outputs[0].name, pin, ext)
        if action is None or not found:
            # Remembered under its key, as if made here (a teammate's pick, a user's take).
            self.store.record_action(step.key, [out.as_dict()],
                                     {**_names(step), "kind": step.kind, "pinned": True,
                                      **({"provided": True} if step.backend is None else {})})
        return self._outcome(step, status, outputs=(out,))

    # -- the team's remote cache -----------------------------------------------------------

    async def _claim(self, step: Any, job: OpenJob | None) -> Outcome | Claim | None:
        """A paid step's claim in the remote cache: held by this build (None: built without
        one), or the outcome of the step another machine made while this build waited."""
        assert self.shared is not None
        got = await self.shared.claim(step.key, step.id, self.events.note)
        if got is None or isinstance(got, Claim):
            return got
        self._known[step.key] = got
        found = await self._reuse(step)
        if found is not None:
            if job is not None:  # our own earlier job for it is not needed any more
                await self.journal.closed(step.key, "done")
            return found
        # Made elsewhere, but its result cannot be had (corrupt, gone): made here, claimed.
        got = await self.shared.claim(step.key, step.id, self.events.note, reuse=False)
        return None if isinstance(got, Action) else got

    async def _adopt(self, job: OpenJob) -> OpenJob:
        """A job a dead holder shared in its claim: journaled here before it is polled, so
        that this build, killed in turn, leaves it for the next."""
        if job.op == "accepted":
            await self.journal.accepted(job.key, job.step, job.backend, job.handle)
        else:
            await self.journal.submitting(job.key, job.step, job.backend, job.handle)
        self.events.note(f"{job.step}: taking over job {job.handle.id} from a build that "
                         f"stopped renewing its claim; polling it, not submitting again")
        return self.journal.open_jobs[job.key]

    # -- making a step -------------------------------------------------------------------------

    async def _make(self, step: Any, inputs: dict[str, Outcome]) -> Outcome:
        started = time.perf_counter()
        self.events.started(step.id)
        try:
            if step.backend is None:
                outputs = [await self._provide(f) for f in step.files]
                self.store.record_action(step.key, [o.as_dict() for o in outputs],
                                         {**_names(step), "kind": step.kind, "provided": True})
                return self._outcome(step, "provided", outputs=tuple(outputs))
            job = self.journal.open_jobs.get(step.key)
            if job is not None and step.fallback is not None and job.backend == step.fallback:
                # A job its fallback had taken on when an earlier build stopped.
                earlier = {"from": step.backend, "refused": "refused in an earlier build"}
                outcome = await self._generate(step, inputs, started, step.fallback, earlier)
                return attrs.evolve(outcome, fallback=earlier)
            try:
                return await self._generate(step, inputs, started)
            except ServiceError as e:
                if e.kind is not FailureKind.POLICY or step.fallback is None:
                    raise
                refused = e.message
            self.events.note(f"{step.id}: `{step.backend}` refused it ({refused}); "
                             f"`{step.fallback}` makes it instead")
            try:
                outcome = await self._generate(step, inputs, started, step.fallback,
                                               {"from": step.backend, "refused": refused})
            except BackendError as e:
                raise BackendError(f"`{step.backend}` refused it ({refused}), and its fallback "
                                   f"`{step.fallback}` failed too: {e.message}") from None
            return attrs.evolve(outcome, fallback={"from": step.backend, "refused": refused})
        except asyncio.CancelledError:
            raise
        except (BackendError, MediaError, StoreError) as e:
            error = getattr(e, "message", None) or str(e)
        except OSError as e:
            error = f"{e.strerror or e}" + (f": {e.filename}" if e.filename else "")
        return self._outcome(step, "failed", seconds=time.perf_counter() - started, error=error)

    async def _provide(self, f: Any) -> Stored:
        path = self.program.root / f.path
        try:
            digest = await asyncio.to_thread(self.store.objects.put, path)
        except OSError as e:
            if isinstance(e, FileNotFoundError):
                raise BackendError(f"`{f.path}` is gone since the film was compiled") from None
            raise disk_error(f"store `{f.path}`", e, self.store.path) from None
        if digest != f.digest:
            raise BackendError(f"`{f.path}` changed while the build started; build again")
        return Stored("image", digest, path.suffix.lower())

    async def _generate(self, step: Any, inputs: dict[str, Outcome], started: float,
                        backend: str | None = None,
                        fallback: Mapping[str, str] | None = None) -> Outcome:
        """Make `step` in a work folder of its own: ask its backend (or `backend`, its
        fallback, holding a slot of it), then check and store what came back (the slot
        already free for the next step)."""
        info = self.program.backends[backend or step.backend]
        price = estimate(step, self.program.backends, info.name)
        workdir: Path | None = None
        job = None
        claim: Claim | None = None
        try:
            if info.runs_here:
                async with self.jobs, self._local_slot(info):
                    started = time.perf_counter()  # the step's time: not its wait for a slot
                    workdir = self._workdir()
                    request = await self._request(step, inputs, workdir, info.name)
                    adapter = self._adapter(info)
                    got = await adapter.submit(request, None)
                    files = await adapter.fetch(got, request) if isinstance(got, Done) else {}
                cost, source = price, "estimate"
            else:
                service = self._service(info, self._adapter(info))
                job = self.journal.open_jobs.get(step.key)
                if self.shared is not None:  # claimed once across machines (a lease)
                    got_claim = await self._claim(step, job)
                    if isinstance(got_claim, Outcome):
                        return got_claim
                    claim = got_claim
                    if claim is not None and job is None and claim.job is not None:
                        job = await self._adopt(claim.job)
                # A job an earlier build had accepted is paid already; one it was still
                # submitting may be sent now, and is held to --max-cost like a new one.
                paid = job is not None and job.op == "accepted"
                # The slot first, then a work folder: 2,000 steps waiting for 32 slots must
                # not make 2,000 folders, nor pass --max-cost before the steps ahead of
                # them were billed.
                async with service.slot():
                    started = time.perf_counter()  # what `plan` learns a step takes
                    if not paid and self.opt.max_cost is not None and \
                            self.spent + self._reserved + (price or 0.0) > self.opt.max_cost + 1e-9:
                        return self._outcome(
                            step, "skipped", estimate=price,
                            error=f"not run: it would pass --max-cost "
                                  f"{money(self.opt.max_cost, self.program.currency)}")
                    reserved = 0.0 if paid else (price or 0.0)
                    self._reserved += reserved
                    workdir = self._workdir()
                    try:
                        request = await self._request(step, inputs, workdir, info.name)
                        got, files = await service.run(
                            request, job, claim.share if claim is not None else None)
                    finally:
                        self._reserved -= reserved
                    cost, source = (got.cost, "service") if got.cost is not None \
                        else (price, "estimate")
                    # Spent once the service answered (no await since the reservation
                    # ended, so no step is admitted in between), whatever its files are;
                    # a job an earlier build had accepted was spent then.
                    if not paid:
                        self.spent += cost or 0.0
            outcome = await self._keep(step, info, files, workdir, started, cost, source, price,
                                       job is not None and job.op == "accepted", fallback,
                                       claim)
            return outcome
        finally:
            if claim is not None:
                # Released once its result is uploaded, or when no job is left to share
                # (it failed); a job still running keeps the claim until it expires, and
                # whoever takes it over re-attaches to the job.
                await claim.end(release=not claim.keep
                                and step.key not in self.journal.open_jobs)
            if info.name in self._services:  # its paid answer is stored, or lost for good
                self._services[info.name].settled(asyncio.current_task())
            if workdir is not None:
                self._release(workdir)

    async def _request(self, step: Any, inputs: dict[str, Outcome], workdir: Path,
                       backend: str) -> Request:
        params = {**step.params, "folder": self._folder()} if step.located else step.params
        return Request(step.sid, step.key, backend, step.fields, params,
                       await self._inputs(step, inputs, workdir, backend),
                       KINDS[step.kind].outputs, workdir)

    async def _keep(self, step: Any, info: Any, files: Any, workdir: Path, started: float,
                    cost: float | None, source: str, price: float | None,
                    attached: bool, fallback: Mapping[str, str] | None = None,
                    claim: Claim | None = None) -> Outcome:
        """Check what came back and store it; record the action."""
        try:
            found = verify.collect(KINDS[step.kind].outputs, files, workdir)
            check = not info.runs_here
            loop = asyncio.get_running_loop()
            # A line's length, which the compiler times the dialogue by (engine/lengths.py).
            said = await loop.run_in_executor(self._io, measure, found[0][1]) \
                if step.kind == "speech" and found else None
            stored = [Stored(o.name, await loop.run_in_executor(self._io, self._take, path, o,
                                                                check),
                             path.suffix.lower()) for o, path in found]
        except BackendError as e:
            if not info.runs_here:
                # The job is over and its result unusable: the next build makes the step
                # anew instead of fetching the same broken file again.
                await self.journal.closed(step.key, "failed")
            return self._outcome(step, "failed", seconds=time.perf_counter() - started,
                                 error=e.message, cost=cost, cost_source=source, estimate=price,
                                 backend=info.name)
        seconds = time.perf_counter() - started
        meta = {**_names(step), **self._facts(step), "backend": info.name,
                "type": info.type, "kind": step.kind,
                "remote": not info.runs_here,  # a service: money, maybe
                "seconds": round(seconds, 3), "cost": cost,
                "cost_source": source, "estimate": price,
                **({"fallback": dict(fallback)} if fallback else {}),
                **({"audio_seconds": said} if said is not None else {})}
        self.store.record_action(step.key, [s.as_dict() for s in stored], meta)
        if self.shared is not None:  # write-through: paid ones first, never failing the step
            shared_meta = {**meta, **self.store.made_by}
            if claim is not None:  # up before the claim is released: the waiters read it
                # Not up: the claim is kept (not released) and expires; whoever takes it
                # over polls the finished job again instead of paying for another.
                claim.keep = not await asyncio.to_thread(
                    self.shared.upload_now, step.key, [s.as_dict() for s in stored],
                    shared_meta)
            else:
                self.shared.upload(step.key, [s.as_dict() for s in stored], shared_meta,
                                   paid=not info.runs_here)
        if not info.runs_here:
            await self._services[info.name].done(step.key)
        return self._outcome(step, "ran", seconds=seconds, outputs=tuple(stored), cost=cost,
                             cost_source=source, estimate=price, attached=attached,
                             backend=info.name)

    def _take(self, path: Path, output: Any, check: bool) -> str:
        """Check a service's file (it must open as its media type), then store it: one
        trip to a worker thread for both."""
        if check:
            verify.check_media(output, path)
        try:
            return self.store.objects.take(path)
        except OSError as e:
            raise disk_error(f"store an output in `{self.store.objects.root}`", e,
                             self.store.path) from None

    async def _inputs(self, step: Any, inputs: dict[str, Outcome], workdir: Path,
                      backend: str | None = None) -> tuple[Input, ...]:
        """Each input's files, linked into the work folder under names that keep their
        extension, with the part each plays.  A hard link where the store's disk allows
        one (the work folder is on it): a symbolic link costs a new inode, which on some
        disks takes a millisecond; else (another user's object, a disk without hard links)
        a symbolic link.  The objects are read-only either way.  What a step names and
        never reads (lang/steps.py NAMED), and what the `local` renderer reads by its
        content (IN_PLACE: the film's shots), is handed over as the objects themselves."""
        out: list[Input] = []
        n = 0
        hard = True
        in_place = IN_PLACE if backend == LOCAL else frozenset()

        def link(obj: Path, at: Path) -> None:
            nonlocal hard
            if hard:
                try:
                    os.link(obj, at)
                    return
                except OSError:
                    hard = False  # the rest of this step's inputs as symbolic links
            os.symlink(obj, at)
        held = self._held(step)
        if step.inputs or step.files or held:
            (workdir / "in").mkdir()
        if self.shared is not None:  # a cached input reused without its bytes: fetch them
            problems = await asyncio.to_thread(self.shared.ensure, [
                o.digest for ref in step.inputs for o in inputs[ref.step].outputs])
            if problems:
                raise BackendError("; ".join(problems))
        objects = self.store.objects
        for ref in step.inputs:
            outcome = inputs[ref.step]
            media = {o.name: o.media for o in KINDS[outcome.kind].outputs}
            if ref.role in NAMED or ref.role in in_place:  # the objects themselves
                out += [Input(ref.role, objects.path(o.digest), o.digest,
                              media.get(o.output, "image"), ref.step, ref.tags, o.ext)
                        for o in outcome.outputs]
                continue
            for o in outcome.outputs:
                n += 1
                at = workdir / "in" / f"{n:03d}-{ref.role}{o.ext}"
                link(objects.path(o.digest), at)
                out.append(Input(ref.role, at, o.digest, media.get(o.output, "image"), ref.step,
                                 ref.tags, o.ext))
        for ref, o in held:  # what the step names when the store holds it
            if ref.role in NAMED:
                out.append(Input(ref.role, objects.path(o.digest), o.digest, KINDS[self._step(
                    ref.step).kind].outputs[0].media, ref.step, ref.tags, o.ext))
                continue
            n += 1
            at = workdir / "in" / f"{n:03d}-{ref.role}{o.ext}"
            link(self.store.objects.path(o.digest), at)
            out.append(Input(ref.role, at, o.digest, KINDS[self._step(ref.step).kind]
                             .outputs[0].media, ref.step, ref.tags, o.ext))
        for f in step.files:  # the user's own images of a generated sheet or plate
            stored = await self._provide(f)
            n += 1
            at = workdir / "in" / f"{n:03d}-reference{stored.ext}"
            link(self.store.objects.path(stored.digest), at)
            out.append(Input("reference", at, stored.digest, "image", f.path, ext=stored.ext))
        return tuple(out)

    def _held(self, step: Any) -> list[tuple[Any, Stored]]:
        """Of the steps `step` holds (names, never makes), those the store holds intact:
        (the reference, its first output)."""
        if not step.held:
            return []
        keys = {self._step(r.step).key for r in step.held}
        actions = self.store.get_actions(keys)
        out = []
        for ref in step.held:
            action = actions.get(self._step(ref.step).key)
            if action is None or not action.outputs:
                continue
            o = action.outputs[0]
            if self.store.objects.exists(o["digest"]):
                out.append((ref, Stored(o["output"], o["digest"], o.get("ext", ""))))
        return out

    def _facts(self, step: Any) -> dict[str, Any]:
        """What a step's output depends on besides its key, recorded with it and checked
        when it is reused: the outputs of the steps it holds, the project's folder (for a
        step whose output names files by absolute path)."""
        out: dict[str, Any] = {}
        if step.held:
            out["held"] = {ref.step: o.digest for ref, o in self._held(step)}
        if step.located:
            out["folder"] = self._folder()
        return out

    def _folder(self) -> str:
        """build/<film>/, absolute: where a located step's files lie."""
        return str(film_dir(Path(self.program.root).resolve(), self.program.name))

    # -- backends ------------------------------------------------------------------------------

    def _adapter(self, info: Any) -> Backend:
        a = self._adapters.get(info.name)
        if a is None:
            def read_secret(name: str, conf: Any = info.config) -> str:
                try:
                    return secret(conf, name)
                except ConfigError as e:
                    from ..backends.protocol import FailureKind

                    raise ServiceError(FailureKind.AUTH, str(e)) from None

            setup = Setup(info.name, info.settings, self.program.root, read_secret, self.state,
                          max(1, min(self.opt.jobs, os.cpu_count() or 1)), self.opt.cluster)
            a = self._adapters[info.name] = self._make_adapter(info, setup)
        return a

    def _service(self, info: Any, adapter: Backend) -> Service:
        s = self._services.get(info.name)
        if s is None:
            conf = info.config
            s = self._services[info.name] = Service(info.name, adapter, conf.concurrency,
                                                    conf.rate, Policy.of(info.settings),
                                                    self.journal, self.remote)
            s.stopped = self.stops.get(info.name)
        return s

    def _local_slot(self, info: Any) -> asyncio.Semaphore:
        sem = self._local.get(info.name)
        if sem is None:
            # A backend's `concurrency` bounds this machine's processes; with a cluster, its
            # steps run on the workers, and `--jobs` alone bounds them.
            n = self.opt.jobs if self.opt.cluster else info.config.concurrency
            sem = self._local[info.name] = asyncio.Semaphore(max(1, n))
        return sem

    # -- bookkeeping ---------------------------------------------------------------------------

    def _flush_last(self) -> None:
        if self._last:
            rows, self._last = self._last, []
            spliced, self._last_spliced = self._last_spliced, {}
            self.state.record_last(rows, spliced)

    def _workdir(self) -> Path:
        """An empty folder for one run of one step (`in/` is made for steps with inputs).
        Folders are reused from step to step (creating and deleting folders cost more
        than the rest of the executor's work)."""
        if self._free:
            return self._free.pop()
        self._runs += 1
        d = self.store.path / "tmp" / f"work-{os.getpid()}-{id(self):x}-{self._runs}"
        try:
            d.mkdir(parents=True)
        except OSError as e:
            raise disk_error(f"create a work folder in `{d.parent}`", e, self.store.path) from None
        return d

    def _release(self, workdir: Path) -> None:
        """Empty a work folder for the next step; a folder that will not empty is dropped."""
        try:
            with os.scandir(workdir) as entries:
                for e in entries:
                    if e.is_dir(follow_symlinks=False):
                        shutil.rmtree(e.path)
                    else:
                        os.unlink(e.path)
        except OSError:
            shutil.rmtree(workdir, ignore_errors=True)
            return
        self._free.append(workdir)

    def _clean_tmp(self) -> None:
        """Work folders a killed build of this project left behind (the project lock
        makes the ones of this store's other users theirs: only ours are named by pid)."""
        tmp = self.store.path / "tmp"
        if tmp.is_dir():
            for d in tmp.glob("work-*"):
                pid = d.name.split("-")[1]
                if not pid.isdigit() or not alive(int(pid)):
                    shutil.rmtree(d, ignore_errors=True)


def alive(pid: int) -> bool:
    """Whether process `pid` runs: not ended, and not a zombie where /proc says (one whose
    parent died is reaped by init, which in a container may never do it)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            return f.read().rsplit(b")", 1)[1].split()[0] != b"Z"
    except (OSError, IndexError):
        return True


def _names(step: Any) -> dict[str, str]:
    """What a stored action is called, for people (`filmc gc` lists what it forgets);
    never part of a key."""
    return {"step": str(step.id), **({"shot": f"{step.scene}/{step.shot}"} if step.shot else {})}
