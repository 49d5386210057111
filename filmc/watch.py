"""`filmc build --watch`: build, then build again each time a file the film reads is saved.

The process stays between builds, and so does what it compiled: the parses of the files
that did not change (lang/loader.py) and the steps of the shots that did not change
(compiler/pipeline.py `Memo`: not lowered nor keyed again, but put back), the imports, the
machine's facts, and the local renderer's worker processes (every build runs in the
watch's one event loop, backends/local/pool.py `kept_warm`).  A save of one shot's camera
in a feature therefore starts that shot's steps without compiling the other shots' again,
in workers that have their imports and fonts loaded.

What is watched is what the build read (`Program.files`: every `.film` file loaded,
filmc.toml, film.lock, the templates, the reference images, the files backends name);
while the film does not compile, its files and their folders, so that a file it names
and lacks is seen when it appears.  The files' stats are read every `POLL` seconds (no
notification API: they are on any disk, a network share too, and a few hundred stats
cost little); a change waits for the stats to hold still for `SETTLE` seconds from the
latest write (its modification time: what passed since the save before the poll saw it
is not waited again), as an editor may write a file in several steps.  A change made
during a build is built next.

Paid work: each save may make paid steps, so `--watch` needs `--offline` or a
`--max-cost` (what each build may spend); `--force` would make its steps again at every
save, and is refused with `--watch`.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import os
import sys
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from .common import fail, report
from .lang.paths import stamp

# How often the sources are looked at (a stat of each: a film's few dozen files take a
# fraction of a millisecond), and how long they must hold still once one changed (from
# the latest write, by its modification time).
POLL = 0.025
SETTLE = 0.05
BUG, INTERRUPTED = 3, 130  # the build command's exit codes that end the watch

Stats = dict[str, tuple[int, int, int] | None]


def refused(args: argparse.Namespace) -> int | None:
    """The exit code when `--watch` cannot go with the other options (said why), or None."""
    if args.force:
        return fail("`--force` cannot go with `--watch`: it would make its steps again at "
                    "every save", "force them once with `filmc build --force SELECTOR`, then "
                    "watch")
    if not args.offline and args.max_cost is None:
        return fail("`--watch` builds at every save, and a build may pay for generation",
                    "give `--max-cost AMOUNT` (what each build may spend), or `--offline` "
                    "to watch the animatic")
    return None


def watch(args: argparse.Namespace, build: Any) -> int:
    """Build (by `build(result, memo, events, runner)`: the build command's own run, its
    exit code), then wait for a change and build again, until interrupted (130, or 0 when
    stopped while waiting) or a bug in filmc (3).  A film that does not compile, a step
    that fails, a build that cannot start: said, and watched for the change that mends
    them."""
    from .backends.local.pool import kept_warm

    with asyncio.Runner() as runner, kept_warm(runner):
        return _watch(args, build, runner)


def _watch(args: argparse.Namespace, build: Any, runner: asyncio.Runner) -> int:
    from . import memocache
    from .backends.local.pool import prime

    # The memo the last command that compiled this film left (filmc/memocache.py), and
    # this watch's, for the next, as it stops.
    variant = memocache.variant(args.offline, args.burn_subtitles)
    memo = memocache.load(args.file, variant)
    watched: list[str] = []
    changed: list[str] = []
    saved_at: float | None = None
    while True:
        before = _stats(watched)
        started = time.perf_counter()
        try:
            result = _compile(args, memo)  # frozen as it ends (`_collect`)
        except KeyboardInterrupt:
            return _stopped()
        compiled = time.perf_counter() - started
        if result.project is not None:
            memocache.keep(args.file, variant, memo, result.project)
        if result.ok and result.graph is not None:
            if result.diags.items:
                report(result.diags, result.sources)
            events = _Timed(args.quiet)
            code = build(result, memo, events, runner)
            if code in (BUG, INTERRUPTED):
                return code
            # Render workers for the next build, started while the user edits (a build
            # that made nothing started none; one that did keeps its own).
            cpus = os.cpu_count() or 1
            try:
                if not args.cluster:
                    runner.run(prime(min(args.jobs or cpus, cpus)))
            except OSError:
                pass  # none started: the next build starts its own
            except KeyboardInterrupt:
                return _stopped()
            if changed and not args.quiet:
                print(_timing(saved_at, compiled, memo, events), file=sys.stderr)
            watched = _files(result.program().files)
        else:
            report(result.diags, result.sources)
            watched = _files(_read(result, args.file), folders=True)
        # This round's film, freed now, while the user edits: freed as the next compile
        # replaced it, a feature's graph took 20 ms between that compile and its build.
        del result
        # What a file was before this round (a save while it built is a change), or is
        # now for one it did not watch; none it no longer watches (a folder watched while
        # the film did not compile): that would be a change of nothing.
        before = {p: before.get(p, s) for p, s in _stats(watched).items()}
        try:
            _collect()
            if not args.quiet:
                print(f"filmc: watching {len(watched)} files for changes (Ctrl-C to stop)",
                      file=sys.stderr)
            changed, saved_at = _wait(watched, before)
        except KeyboardInterrupt:
            return _stopped()
        if not args.quiet:
            names = ", ".join(_shown(p) for p in changed[:3])
            more = f" and {len(changed) - 3} more" if len(changed) > 3 else ""
            print(f"filmc: {names}{more} changed: building again", file=sys.stderr)


def _compile(args: argparse.Namespace, memo: Any) -> Any:
    from .compiler.pipeline import compile_film
    from .engine.lengths import lookup_for

    return compile_film(args.file, offline=args.offline, burn_subtitles=args.burn_subtitles,
                        said=lookup_for, memo=memo, keep=True)


def _collect() -> None:
    """The cycles the last compile and build left (the graph a compile replaced holds
    some), collected once a round is over: each compile freezes what it made (`keep`), so
    that neither its end nor the build walks a feature's million objects; here they are
    walked once, after the rebuild's timing line and before `watching` (0.6 s for a
    3,000-shot film: a save meanwhile is seen as soon as it ends), and frozen again."""
    gc.unfreeze()
    gc.collect()
    gc.freeze()


def _stopped() -> int:
    print("filmc: stopped watching", file=sys.stderr)
    return 0


def _read(result: Any, main: Path) -> list[Path]:
    """What a film that does not compile was read from: its loaded files, filmc.toml and
    film.lock beside it, its templates (the main file alone, when it cannot be read)."""
    from .compiler.lock import lock_path

    project = result.project
    if project is None:
        return [main]
    root = project.root
    return [f.path for f in project.files] + [root / "filmc.toml", root / "templates",
                                              lock_path(project.main.path)]


def _files(paths: Iterable[Path], folders: bool = False) -> list[str]:
    """The paths to watch, absolute, each once; `folders`: their folders too (a file that
    is missing and named appears in one)."""
    out = {os.path.abspath(p) for p in paths}
    if folders:
        out |= {os.path.dirname(p) for p in out}
    return sorted(out)


def _stats(paths: Iterable[str]) -> Stats:
    return {p: stamp(p) for p in paths}


def _wait(paths: list[str], before: Stats) -> tuple[list[str], float | None]:
    """Until a file differs from `before` and the files hold still: the files changed,
    and when the latest of them was written (time.time(); None: removed)."""
    while True:
        time.sleep(POLL)
        now = _stats(paths)
        if now != before:
            break
    while True:  # an editor may write in several steps: wait until it is done
        changed = [p for p in paths if now.get(p) != before.get(p)]
        times = [s[1] / 1e9 for p in changed if (s := now.get(p)) is not None]
        # Still for SETTLE since the latest write: what passed since it (its modification
        # time, when that is not later than now) is waited no more.
        since = time.time() - max(times) if times and len(times) == len(changed) else 0.0
        time.sleep(SETTLE - min(max(since, 0.0), SETTLE))
        later = _stats(paths)
        if later == now:
            break
        now = later
    return changed, max(times) if times else None


def _shown(path: str) -> str:
    try:
        rel = os.path.relpath(path)
    except ValueError:
        return path
    return path if rel.startswith("..") else rel


def _timing(saved_at: float | None, compiled: float, memo: Any, events: _Timed) -> str:
    """One line after a rebuild: how long from the save to the first step and to the end,
    and how much of the graph was put back."""
    graph, lowered = memo.graph, memo.lower
    calls = graph.reused + graph.made
    scenes = lowered.reused + lowered.made
    line = (f"filmc: compiled in {compiled:.2f}s ({lowered.reused} of {scenes} scenes not "
            f"lowered again, {graph.reused} of {calls} shot steps' calls not keyed again)")
    if saved_at is not None:
        now = time.time()
        if events.first_at is not None:
            ago = now - saved_at - (time.perf_counter() - events.first_at)
            line += f"; the first step made started {ago:.2f}s after the save"
        line += f"; done {now - saved_at:.2f}s after it"
    return line


class _Timed:
    """The build's progress display (engine/executor.py `Events`), and when its first
    step started."""

    def __init__(self, quiet: bool) -> None:
        from .progress import events_for

        self.inner = events_for(quiet)
        self._starts: dict[str, float] = {}
        self.first_at: float | None = None  # when the first step that ran started

    def begin(self, total: int) -> None:
        self.inner.begin(total)

    def started(self, node: str) -> None:
        self._starts[node] = time.perf_counter()
        self.inner.started(node)

    def finished(self, outcome: Any) -> None:
        at = self._starts.get(outcome.id)
        if outcome.status == "ran" and at is not None:
            self.first_at = at if self.first_at is None else min(self.first_at, at)
        self.inner.finished(outcome)

    def note(self, text: str) -> None:
        self.inner.note(text)

    def close(self) -> None:
        self.inner.close()
