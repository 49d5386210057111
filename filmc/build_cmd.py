"""`filmc build`, `filmc clean` (and `filmc gc`, from gc_cmd.py): the engine's commands.

`build` compiles the film, asks the engine (engine/build.py) to run what
`filmc plan` would list with the same options, and prints a summary: what ran,
what it cost against the estimate, what failed and why, and the film's path.
Exit codes: 0 built; 1 a step failed, the film has errors, or the build could
not start; 3 a bug in filmc (its traceback in report.json, and on screen with
`--debug`); 130 interrupted.
"""

from __future__ import annotations

import argparse
import contextlib
import math
import os
import re
import shutil
import sys
from pathlib import Path
from typing import Any

from .common import (
    FILE_HELP,
    add_build_options,
    build_options,
    compile_or_report,
    fail,
    recompiler,
)


def add_parsers(sub: Any) -> None:
    b = sub.add_parser("build", help="generate the film: only the steps whose inputs changed",
                       description="Run every step whose content key is not in the store "
                                   "(what `filmc plan` lists), then lay out build/<film>/. "
                                   "Exit 0 on success, 1 if a step failed or the film has "
                                   "errors, 130 when interrupted.")
    b.add_argument("file", nargs="?", type=Path, metavar="FILE", help=FILE_HELP)
    add_build_options(b, "it is built with what it needs")
    b.add_argument("--jobs", "-j", type=int, default=None,
                   help="steps running at once on this machine (default: the cores), or on "
                        "the cluster with --cluster (default: twice its workers' threads); "
                        "services have their own `concurrency` in filmc.toml")
    b.add_argument("--cluster", metavar="ADDRESS",
                   help="render the animatic's panels, clips, sound, shots and film on the "
                        "Dask cluster whose scheduler is at ADDRESS (tcp://HOST:8786), with "
                        "output identical to this machine's; overrides filmc.toml's "
                        "`[build] cluster` (docs/team.md). Needs `pip install 'filmc[cluster]'`")
    b.add_argument("--keep-going", "-k", action="store_true",
                   help="a failed step stops only what depends on it")
    b.add_argument("--max-cost", type=_amount, metavar="AMOUNT",
                   help="refuse to start when the estimate is higher, and submit nothing that "
                        "would take the build's spending past it")
    b.add_argument("--burn-subtitles", action="store_true",
                   help="also burn the dialogue into the picture of film.mp4")
    b.add_argument("--quiet", "-q", action="store_true", help="print failures and the summary only")
    b.add_argument("--no-wait", action="store_true",
                   help="fail at once if another build of this project is running")
    b.add_argument("--watch", action="store_true",
                   help="stay, and build again each time a file the film reads is saved "
                        "(needs --offline or --max-cost: each build's limit); the shots that "
                        "did not change are not compiled again")
    b.set_defaults(run=_build)

    from . import gc_cmd  # `filmc gc`: history, money and the other projects of a store

    gc_cmd.add_parser(sub)

    c = sub.add_parser("clean", help="remove the build outputs (the store keeps its cache)",
                       description="Remove build/<film>/. Generated steps stay cached in the "
                                   "store; `filmc gc` removes what no film needs any more.")
    c.add_argument("file", nargs="?", type=Path, metavar="FILE", help=FILE_HELP)
    c.set_defaults(run=_clean)


def _amount(text: str) -> float:
    try:
        value = float(text.lstrip("$€£¥"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"`{text}` is not an amount, such as 5 or 12.50") from None
    if not math.isfinite(value) or value < 0:
        raise argparse.ArgumentTypeError("an amount is a number, zero or more")
    return value


def _build(args: argparse.Namespace) -> int:
    from .engine import noop

    fast_key = {"file": os.path.abspath(args.file), "select": args.select, "until": args.until,
                "burn_subtitles": args.burn_subtitles, "offline": args.offline,
                "use_first": args.use_first,
                "store": os.environ.get("FILMC_STORE", "")}
    if args.watch:
        from . import watch

        code = watch.refused(args)
        if code is not None:
            return code
        return watch.watch(args, lambda result, memo, events, runner: _run(
            args, fast_key, result, memo, events, runner))
    if not args.force and noop.up_to_date(args.file, fast_key):
        print("up to date: nothing to do", file=sys.stderr)
        return 0
    return _full_build(args, fast_key)


def _full_build(args: argparse.Namespace, fast_key: dict) -> int:
    """Everything but the no-op check, whose imports stay out of the fast path.  The local
    renderer's workers are started first, and import what their jobs use while the film
    compiles (backends/local/pool.py `prime`): the build runs in their event loop."""
    import asyncio  # (not at the top: the no-op check stays light)

    from .backends.local.pool import kept_warm, prime

    with asyncio.Runner() as runner, kept_warm(runner):
        if not args.cluster:  # (with one, this machine's workers are sized by the cluster's)
            cpus = os.cpu_count() or 1
            with contextlib.suppress(OSError):  # none started: the build starts its own
                runner.run(prime(min(args.jobs or cpus, cpus)))
        from . import memocache

        # The memo the last command left, used by this build's compile, and again by its
        # compile after it said its lines; left for the next as that compile left it.
        memo = memocache.load(args.file, memocache.variant(args.offline, args.burn_subtitles))
        result = compile_or_report(args.file, offline=args.offline,
                                   burn_subtitles=args.burn_subtitles, memo=memo, kept=True)
        if result is None:
            return 1
        return _run(args, fast_key, result, memo, runner=runner)


def _run(args: argparse.Namespace, fast_key: dict, result: Any, memo: Any = None,
         events: Any = None, runner: Any = None) -> int:
    """Build the compiled film with the command's options: the exit code.  `memo`: what
    the compile used (the last command's, or what `--watch` keeps between compiles): the
    build's own compile again, once it has said its lines, uses it too, and leaves it for
    the next command; `events`: the watch's progress display; `runner`: its event loop,
    which every build it makes runs in (engine/build.py)."""
    from .engine.build import Options

    chosen = build_options(args, result.graph)
    if isinstance(chosen, int):
        return chosen
    selection, until, force = chosen
    cluster = args.cluster or (result.config.cluster if result.config else None)
    jobs = args.jobs
    if cluster:
        threads = _cluster(cluster, args.quiet)
        if threads is None:
            return 1
        jobs = jobs or 2 * threads
    options = Options(jobs=max(1, jobs or os.cpu_count() or 2), keep_going=args.keep_going,
                      force=force, until=until, selection=selection, max_cost=args.max_cost,
                      use_first=args.use_first, cluster=cluster)
    done = run_build(result, options, args.quiet, wait=not args.no_wait,
                     fast_key=None if args.force else fast_key,
                     again=recompiler(args.file, args.offline, args.burn_subtitles, memo,
                                      kept=True),
                     events=events, runner=runner)
    if isinstance(done, int):
        return done
    ended = finished(done, args.debug)
    if ended is not None:
        return ended
    return 1 if done.report["counts"].get("failed") else 0


def _cluster(address: str, quiet: bool) -> int | None:
    """Check the Dask cluster before the build starts, so that an unreachable scheduler, a
    missing Dask or a worker running another filmc is one error, not a failed step per
    shot; its workers' threads (None: it was refused, and said why).  The engine's local
    backend then connects in the build's event loop (backends/local/cluster.py)."""
    from .backends.local.cluster import ClusterError, check

    try:
        workers, threads = check(address)
    except ClusterError as e:
        fail(e.message, e.hint)
        return None
    if not quiet:
        print(f"rendering on the Dask cluster at {address}: {workers} worker"
              f"{'s' if workers != 1 else ''}, {threads} thread{'s' if threads != 1 else ''}",
              file=sys.stderr)
    return threads


def run_build(result: Any, options: Any, quiet: bool, events: Any = None, **kw: Any) -> Any:
    """Run a build with the progress display (`events`, else the usual one); what it did,
    or the exit code of a build that could not start (its reason printed).  `build` and
    `export` run it the same way."""
    from .engine.build import BuildError, build
    from .engine.db import StoreError
    from .progress import events_for

    events = events or events_for(quiet)
    try:
        try:
            return build(result.program(), options, events,
                         cache=getattr(result.config, "cache", None), **kw)
        finally:
            events.close()
    except BuildError as e:
        return fail(e.message, e.hint)
    except StoreError as e:
        print(e.render(), file=sys.stderr)
        return 1


def finished(done: Any, debug: bool) -> int | None:
    """After a build: its summary, then the exit code of a bug or an interruption (None
    when it ran to its end).  `build` and `export` end the same way."""
    _summary(done.report, done.folder, done.jobs_running)
    if done.bug is not None:
        if debug:
            raise done.bug
        print(f"filmc: internal error ({type(done.bug).__name__}: {done.bug}); this is a bug in "
              f"filmc — please report it with {done.folder / 'report.json'}, which holds its "
              f"traceback (or run with --debug)", file=sys.stderr)
        return 3
    if done.interrupted:
        running = (f"; {done.jobs_running} paid job{'s' if done.jobs_running != 1 else ''} "
                   f"still running, and the next build picks them up"
                   if done.jobs_running else "")
        print(f"filmc: interrupted; every finished step is kept in the store{running}",
              file=sys.stderr)
        return 130
    return None


_AWAITED = re.compile(r"awaiting a (?:new )?(?:keyframe|clip) pick for ([^\s:]+)")


def _summary(report: dict, out: Path, running: int) -> None:
    from .compiler.plan import money

    c = report["counts"]
    parts = [f"{c.get(k, 0)} {k}" for k in ("ran", "cached", "provided", "failed", "skipped",
                                            "waiting")
             if c.get(k)]
    line = f"built in {report['seconds']:.1f}s: " + (", ".join(parts) or "nothing to do")
    if report["spent"] or report["estimated"]:
        line += (f"; spent {money(report['spent'], report['currency'])} (estimated "
                 f"{money(report['estimated'], report['currency'])})")
    print(line, file=sys.stderr)
    failed = [s for s in report["steps"] if s["status"] == "failed"]
    for s in failed:
        where = f" (shot {s['scene']}/{s['shot']})" if s["shot"] else ""
        print(f"  failed {s['id']}{where}: {s['error']}", file=sys.stderr)
    if report["not_run"]:
        print(f"  not run, to stay under --max-cost: {len(report['not_run'])} step(s), such as "
              f"{report['not_run'][0]['id']}", file=sys.stderr)
    # The shots whose pick is awaited, as the waiting steps name them (a shot that starts
    # from the one before waits for that one's pick).
    shots = list(dict.fromkeys(m.group(1) for s in report["steps"] if s["status"] == "waiting"
                               for m in [_AWAITED.match(s.get("error") or "")] if m))
    if shots:
        named = ", ".join(shots[:5]) + (f" and {len(shots) - 5} more" if len(shots) > 5 else "")
        print(f"  waiting for {'a pick' if len(shots) == 1 else 'picks'} in {len(shots)} "
              f"shot{'s' if len(shots) != 1 else ''}, before paying for what is made from "
              f"{'it' if len(shots) == 1 else 'them'}: {named}. Pick with `filmc review` or "
              f"`filmc pick SHOT CANDIDATE`; `--use-first` uses the first candidates instead",
              file=sys.stderr)
    fell = [f for f in report.get("fell_back", []) if f["status"] == "ran"]
    if fell:
        first = fell[0]
        more = f" and {len(fell) - 1} more" if len(fell) > 1 else ""
        cost = sum(f["cost"] or 0.0 for f in fell)
        print(f"  made by a fallback backend: {first['id']} (`{first['from']}` refused it; "
              f"`{first['to']}` made it){more}, for {money(cost, report['currency'])}; "
              f"report.json lists them under `fell_back`", file=sys.stderr)
    if running and not report["interrupted"]:
        print(f"  {running} paid job{'s' if running != 1 else ''} still running at the "
              f"service; the next build picks {'them' if running != 1 else 'it'} up",
              file=sys.stderr)
    _stale(report.get("stale", []), out)
    # The film, when this build made it or found it made (not a film left by an older one).
    film = out / "film.mp4"
    made = any(s["id"] == "film" and s["status"] in ("ran", "cached") for s in report["steps"])
    if made and film.exists() and not failed and not report["interrupted"]:
        print(film)


def _stale(stale: list[dict], out: Path) -> None:
    """What an earlier build made and this one did not, moved aside to stale/: each by
    name, but past the first three of a folder (shots/, keyframes/, clips/) counted."""
    shown: dict[str, int] = {}
    for s in stale:
        folder = s["path"].split("/")[0] if "/" in s["path"] else ""
        shown[folder] = shown.get(folder, 0) + 1
        if not folder or shown[folder] <= 3:
            print(f"  {s['why']}; moved to {out / s['moved_to']}", file=sys.stderr)
    for folder, n in shown.items():
        if folder and n > 3:
            print(f"  and {n - 3} more in {folder}/ from an earlier build, moved to "
                  f"{out / 'stale' / folder} (report.json lists them under `stale`)",
                  file=sys.stderr)


def _clean(args: argparse.Namespace) -> int:
    from .engine.layout import film_dir
    from .lang.diagnostics import Diagnostics
    from .lang.loader import Loader
    from .lang.paths import film_name

    project = Loader(Diagnostics()).load(args.file)
    if project is None:
        return fail(f"cannot read `{args.file}`")
    out = film_dir(project.root, film_name(project.main.path, project.root))
    if out.exists():
        try:
            shutil.rmtree(out)
        except OSError as e:
            return fail(f"cannot remove `{out}`: {e.strerror or e}",
                        f"check the permissions of `{out.parent}`")
        print(f"removed {out}")
    return 0
