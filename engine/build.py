"""A build, from a compiled `Program` to laid-out outputs and a report.

    result = build(program, Options(...), events, wait=True, fast_key={...})

Under the project lock: open the store and the project's state, record in
the store what the project needs (engine/roots.py: a gc of another project
sharing the store keeps it), read the job journal, refuse what cannot start (unset keys, `--max-cost`), run the steps
(engine/executor.py), lay out what was made (engine/layout.py: what an earlier
build made and this one did not goes to `stale/`), write `report.json`, and
remember the stat manifest for the no-op fast path when the whole build
succeeded.  Every failure of the disk or the store comes back as a
`StoreError` naming the place and what to do.
"""

from __future__ import annotations

import asyncio
import os
import resource
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import attrs

from . import lengths, noop, review, roots
from .db import disk_error
from .executor import AdapterFactory, BuildError, Events, Executor, Options, Outcome
from .journal import NAME as JOURNAL
from .journal import Journal
from .layout import film_dir, materialize
from .lock import project_lock
from .report import make_report, write_report
from .state import State, state_dir
from .store import Store, location

__all__ = ["BuildError", "BuildResult", "Options", "build"]
T = TypeVar("T")


@attrs.frozen
class BuildResult:
    outcomes: list[Outcome]
    report: dict[str, Any]
    folder: Path
    interrupted: bool
    bug: BaseException | None
    jobs_running: int  # paid jobs journaled and still running at their services


def build(program: Any, options: Options, events: Events, *, wait: bool = True,
          fast_key: dict[str, Any] | None = None,
          adapters: AdapterFactory | None = None, cache: Any = None,
          again: Callable[[], Any] | None = None,
          runner: asyncio.Runner | None = None) -> BuildResult:
    """`cache`: filmc.toml's `[cache]` (compiler.config.CacheConfig), the team's remote
    cache; None: the local store alone.  `again()`: the program compiled anew (None: it
    no longer compiles), which a build that must say lines first asks for, to time the
    dialogue by them (`_say_first`).  `runner`: the event loop to run the steps in, kept
    by a caller that builds again (`filmc build --watch`: what the backends keep between
    builds, such as the local renderer's worker processes, belongs to one loop); None: a
    loop of this build's own."""
    run = runner.run if runner is not None else asyncio.run
    started = time.time()
    root = Path(program.root)
    where = location(root, program.store)
    # The store's lock, shared with the builds of other projects using it: a gc waits.
    with project_lock(state_dir(root), wait), roots.store_lock(where, "build", shared=True), \
            _created(Store.open(where, create=True)) as store, \
            _created(State.open(root, create=True)) as state:
        for note in [*lengths.repairs(), *store.notes]:
            events.note(note)
        # Who uses the store and what they need, before any step runs: `filmc gc` of
        # another project sharing the store keeps it (engine/roots.py).
        roots.record_build(store.path, program)
        store.made_by = roots.made_by(program)
        shared = _shared(cache, store, root)
        try:
            journal = Journal(state.path / JOURNAL, store.actions_present, store.log.sync)
        except OSError as e:
            raise disk_error(f"open `{state.path / JOURNAL}`", e, state.path) from None
        try:
            executor = Executor(program, store, state, journal, options, events, adapters,
                                shared)
            executor.preflight()
            said: list[Outcome] = []
            used = [executor]  # every executor this build ran, for the CPU they used
            if again is not None:
                program, executor, said = _say_first(program, executor, again, store, state,
                                                     journal, options, events, used, adapters,
                                                     shared, run)
            others = []
            if journal.open_jobs:
                node = program.graph._node
                needed = {node[n]["step"].key for n in executor.decision.nodes}
                others = [j for k, j in journal.open_jobs.items() if k not in needed]
            if others:
                events.note(f"{len(others)} paid job(s) an earlier build started are for steps "
                            f"this build does not make; they stay recorded for the build "
                            f"that needs them")
            early: tuple[list[review.Card], OSError | None] | None = None
            try:
                prepared = process_age()
                if executor.stopped_saying:
                    outcomes = said
                else:
                    ran, early = run(_run_and_review(executor, program, store))
                    outcomes = _merged(said, ran)
            finally:
                if shared is not None:  # the uploads finish (or fail, said) before the end
                    shared.drain()
                    for note in shared.notes:
                        events.note(note)
            # What this build reused, for `filmc gc --older-than`.
            store.touch(program.graph._node[o.id]["step"].key for o in outcomes
                        if o.status in ("cached", "provided"))
            running = sum(1 for j in journal.open_jobs.values() if j.op == "accepted")
        finally:
            try:
                journal.close()
            except OSError as e:
                raise disk_error(f"write `{journal.path}`", e, state.path) from None
        whole = options.selection is None and options.until is None
        full = whole and not executor.interrupted
        # Every build lays out each candidate the store holds (a pick leaves the others
        # unbuilt by it, yet the review page shows them) and writes the static review
        # page: `--until keyframe` is how candidates are made to be reviewed.
        cards, failed = early or _review(program, store, outcomes)
        laid = materialize(program, store, outcomes, full=full,
                           extra=review.media(program, store, cards),
                           cause=_cause(options, executor.interrupted))
        folder = laid.folder
        if failed is not None:
            raise disk_error(f"write the review page in `{folder / 'review'}`", failed,
                             folder) from None
        bug = executor.bug
        report = make_report(program.title, program.currency, outcomes, time.time() - started,
                             interrupted=executor.interrupted, jobs_running=running,
                             bug=next((o.traceback for o in outcomes if o.traceback), None),
                             stale=laid.stale, cpu=_cpu(used), prepared=prepared)
        write_report(report, folder)
        # A build with shots awaiting picks is not finished: the next one looks again.
        ok = not (executor.interrupted or bug or report["counts"].get("failed")
                  or report["counts"].get("skipped") or report["counts"].get("waiting"))
        if fast_key is not None:
            try:
                if ok:
                    modules = {type(a).__module__ for a in executor._adapters.values()}
                    noop.record(root, fast_key, [str(p) for p in program.files],
                                _files_under(folder), modules,
                                program.env)
                else:
                    noop.forget(root)
            except OSError as e:
                raise disk_error(f"write `{noop.path_of(root)}`", e, state.path) from None
    return BuildResult(outcomes, report, folder, executor.interrupted, bug, running)


async def _run_and_review(executor: Executor, program: Any, store: Store
                          ) -> tuple[list[Outcome], tuple[list[review.Card], OSError | None]]:
    """The build's steps, and meanwhile, once its keyframes and clips have their outcomes,
    the contact sheet and the review page (`_review`): written while the shots, the film
    and the exports are with the workers, none of which the page shows."""
    page = asyncio.ensure_future(_review_when_made(executor, program, store))
    try:
        outcomes = await executor.run()
    except BaseException:
        page.cancel()
        raise
    return outcomes, await page


async def _review_when_made(executor: Executor, program: Any, store: Store
                            ) -> tuple[list[review.Card], OSError | None]:
    """`_review`, its store's queries in the event loop's thread and the rest (the sheet's
    cards, the page's rendering and writing: 0.2 s for a feature) in another, so that the
    loop goes on handing the shots, the film and the exports to the workers meanwhile."""
    found = _looked_up(program, store, await executor.outcomes_of(("keyframe", "clip")))
    return await asyncio.get_running_loop().run_in_executor(None, _page, found)


def _review(program: Any, store: Store, outcomes: list[Outcome]
            ) -> tuple[list[review.Card], OSError | None]:
    """The contact sheet from the keyframes and clips among `outcomes`, and the static
    review page written from it (build/<film>/review/), or why the page could not be."""
    return _page(_looked_up(program, store, outcomes))


def _looked_up(program: Any, store: Store, outcomes: list[Outcome]) -> review.LookedUp:
    node = program.graph._node
    return review.looked_up(program, store, {
        node[o.id]["step"].key: (o.outputs[0].digest, o.outputs[0].ext) for o in outcomes
        if o.kind in ("keyframe", "clip") and o.outputs
        and o.status in ("ran", "cached", "provided")})


def _page(found: review.LookedUp) -> tuple[list[review.Card], OSError | None]:
    program, store = found.program, found.store
    cards = review.sheet_of(found)
    try:
        review.write_static(program, store, film_dir(program.root, program.name) / "review",
                            cards)
    except OSError as e:
        return cards, e
    return cards, None


def _files_under(folder: Path) -> list[str]:
    """Every file under `folder` (what a build laid out: some 30,000 for a feature, listed
    by os.walk, without a path object or a stat each)."""
    return [os.path.join(d, f) for d, _dirs, files in os.walk(folder) for f in files]


def _say_first(program: Any, executor: Executor, again: Callable[[], Any], store: Store,
               state: State, journal: Journal, options: Options, events: Events,
               used: list[Executor], adapters: AdapterFactory | None,
               shared: Any, run: Callable[[Any], Any]) -> tuple[Any, Executor, list[Outcome]]:
    """Say the lines this build would say, before anything made from their timing.

    The compiler times a shot's dialogue by the real length of its lines where they have
    been said (engine/lengths.py), and by an estimate until then.  A build that is about
    to say lines therefore says them first, then compiles again, so that the shots, the
    subtitles and the mix it makes are timed by the speech itself (and the next build
    finds them current, instead of re-timing them).  Returns the program to build, its
    executor and what saying the lines did (the executors it made join `used`, whose CPU
    the report counts).  When saying was interrupted, or failed without --keep-going, the
    executor that said them, marked `stopped_saying`: the build ends there, as it would
    have at a failed step; with --keep-going the rest goes on, and no service is asked
    twice for a line in one build."""
    node = program.graph._node
    first = frozenset(n for n in executor.decision.run if node[n]["kind"] == "speech")
    if not first:
        return program, executor, []
    events.note(f"saying {len(first)} line{'s' if len(first) != 1 else ''} of dialogue first, "
                f"to time the shots by how long they are")
    pre = Executor(program, store, state, journal,
                   attrs.evolve(options, selection=first, until=None), events, adapters, shared)
    pre.preflight()
    used.append(pre)
    said = run(pre.run())
    failed = {o.id: o for o in said if o.id in first and o.status != "ran"}
    if pre.interrupted or pre.bug or (failed and not options.keep_going):
        pre.stopped_saying = True
        return program, pre, said
    compiled = again()
    if compiled is None:
        raise BuildError("the film no longer compiles after its lines were said",
                         "run `filmc check` and fix what it says (the lines are kept)")
    spent = sum(o.cost or 0.0 for o in said if o.status == "ran" and not o.attached)
    budget = None if options.max_cost is None else max(0.0, options.max_cost - spent)
    executor = Executor(compiled, store, state, journal,
                        attrs.evolve(options, max_cost=budget), events, adapters, shared)
    # With --keep-going, a line that failed stays failed (its shot waits on it) and is not
    # asked for again, and a service that stopped taking submissions stays stopped.
    executor.settled = failed
    executor.stops = {name: s.stopped for name, s in pre._services.items() if s.stopped}
    executor.preflight()
    used.append(executor)
    return compiled, executor, said


def _merged(said: list[Outcome], outcomes: list[Outcome]) -> list[Outcome]:
    """The build's outcomes, with the lines it said first as run (not cached)."""
    ran = {o.id: o for o in said if o.status == "ran"}
    return [ran.get(o.id, o) if o.status == "cached" else o for o in outcomes]


#: When the command started, where it is not this process's start: the `filmc` process
#: that a fork of the project's server runs it for (filmc/server.py), in clock ticks
#: since boot as /proc says a process's start.
STARTED: int | None = None


def process_age() -> float | None:
    """Seconds since this process started (Linux: /proc), or since `STARTED`; None where
    unknown: how long a build took to be ready to run its first step (reading,
    compiling, the store)."""
    try:
        start = STARTED
        if start is None:
            start = started_ticks()
        with open("/proc/uptime", "rb") as f:
            up = float(f.read().split()[0])
        return max(0.0, round(up - start / os.sysconf("SC_CLK_TCK"), 3))
    except (OSError, ValueError, IndexError):
        return None


def started_ticks(pid: int | str = "self") -> int:
    """When process `pid` (this one) started, in clock ticks since boot (Linux; OSError
    elsewhere)."""
    with open(f"/proc/{pid}/stat", "rb") as f:
        return int(f.read().rsplit(b")", 1)[1].split()[19])


def _cpu(executors: list[Executor]) -> dict[str, float]:
    """CPU seconds: filmc's own (this process, from its start, and the local backend's
    render workers: Python and Pillow) and the tools they ran (ffmpeg)."""
    me = resource.getrusage(resource.RUSAGE_SELF)
    own, tools = me.ru_utime + me.ru_stime, 0.0
    for adapter in {id(a): a for e in executors for a in e._adapters.values()}.values():
        used = getattr(adapter, "cpu", None)
        if callable(used):
            workers, ran = used()
            own, tools = own + workers, tools + ran
    return {"filmc": round(own, 3), "tools": round(tools, 3)}


def _shared(cache: Any, store: Store, root: Path) -> Any:
    """The build's view of the team's remote cache (engine/sharing.py), or None."""
    if cache is None:
        return None
    from .remotecache import RemoteError, open_remote, writes
    from .sharing import Shared

    try:
        remote = open_remote(cache, root)
    except RemoteError as e:
        raise BuildError(e.message, e.hint) from None
    return Shared(remote, store, writes(cache), cache.lease, str(root.resolve()))


def _cause(options: Options, interrupted: bool) -> str:
    """Why a build made less than the whole film, as the stale outputs' reason says it."""
    if interrupted:
        return "this build was interrupted"
    if options.until is not None:
        return f"this build stopped at `{options.until}` steps (--until {options.until})"
    if options.selection is not None:
        return "this build made only what --select chose"
    return ""


def _created(found: T | None) -> T:
    assert found is not None  # create=True
    return found
