"""`filmc build`, `filmc clean`: run the film's steps and lay out what they made.

Outputs go under `build/<film>/` in the project folder, as links to (or copies
of) the store's read-only objects: `film.mp4`, `film.srt`,
`shots/NNN_scene_shot.mp4`, `keyframes/NNN_scene_shot_takeN.png`,
`storyboard.png`, `timeline.json`, and `report.json` (what ran, what was
cached, what failed, time per step).
"""

from __future__ import annotations

import argparse
import contextlib
import errno
import fcntl
import json
import os
import shutil
import sys
import time
from pathlib import Path

from .compile_cmds import _OFFLINE_HELP, _SELECT_HELP, _compile, _with_selection


def add_parsers(sub) -> None:
    b = sub.add_parser("build", help="generate the film: only the steps whose inputs changed",
                       description="Run every step whose content key is not in the store, "
                                   "then lay out build/<film>/. Exit 0 on success, 1 if a "
                                   "step failed or the film has errors.")
    b.add_argument("file", type=Path, metavar="FILE")
    b.add_argument("--select", "-s", action="append", default=[], metavar="SELECTOR",
                   help=_SELECT_HELP + " (what is selected is built with what it needs)")
    b.add_argument("--until", choices=("keyframe", "clip", "shot", "film"),
                   help="stop before the more expensive stages (keyframe < clip < shot < film)")
    b.add_argument("--force", action="append", default=[], metavar="SELECTOR",
                   help="regenerate these steps even when cached")
    b.add_argument("--jobs", "-j", type=int, default=os.cpu_count() or 2,
                   help="steps running at once, over all backends (default: the cores)")
    b.add_argument("--keep-going", "-k", action="store_true",
                   help="a failed step stops only what depends on it")
    b.add_argument("--burn-subtitles", action="store_true",
                   help="also burn the dialogue into the picture of film.mp4")
    b.add_argument("--offline", action="store_true", help=_OFFLINE_HELP)
    b.add_argument("--quiet", "-q", action="store_true", help="print failures and the summary only")
    b.add_argument("--no-wait", action="store_true",
                   help="fail at once if another build of this project is running")
    b.set_defaults(run=_build)

    g = sub.add_parser("gc", help="delete stored outputs that no current build of the film uses",
                       description="Forget cached steps whose keys are in no current build of "
                                   "the film (as configured, or --offline) and delete the "
                                   "objects no remaining step names.")
    g.add_argument("file", type=Path, metavar="FILE")
    g.add_argument("--dry-run", "-n", action="store_true", help="list what would go; delete nothing")
    g.set_defaults(run=_gc)

    c = sub.add_parser("clean", help="remove the build outputs (the store keeps its cache)",
                       description="Remove build/<film>/. Generated steps stay cached in the "
                                   "store; `filmc gc` removes what no film needs any more.")
    c.add_argument("file", type=Path, metavar="FILE")
    c.set_defaults(run=_clean)


def output_dir(project) -> Path:
    stem = project.main.path.stem
    name = project.root.name if stem == "film" else stem
    return project.root / "build" / name


@contextlib.contextmanager
def project_lock(store_path: Path, wait: bool):
    """One build per project at a time: a second one waits, saying so, or refuses."""
    store_path.mkdir(parents=True, exist_ok=True)
    fd = os.open(store_path / "lock", os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as e:
            if e.errno not in (errno.EAGAIN, errno.EACCES):
                raise
            holder = os.pread(fd, 32, 0).decode(errors="replace").strip() or "?"
            if not wait:
                raise SystemExit(_fail(f"another filmc build of this project is running "
                                       f"(pid {holder})", "wait for it, or run without --no-wait")
                                 ) from None
            print(f"filmc: waiting for another build of this project (pid {holder}) to finish…",
                  file=sys.stderr)
            fcntl.flock(fd, fcntl.LOCK_EX)
        os.ftruncate(fd, 0)
        os.pwrite(fd, str(os.getpid()).encode(), 0)
        yield
    finally:
        os.close(fd)  # closing releases the lock


def _fail(message: str, help: str | None = None) -> int:
    print(f"error: {message}" + (f"\n  = help: {help}" if help else ""), file=sys.stderr)
    return 1


def _build(args: argparse.Namespace) -> int:
    from .compiler import noop

    started = time.time()
    fast_key = {"file": os.path.abspath(args.file), "select": args.select, "until": args.until,
                "burn_subtitles": args.burn_subtitles, "offline": args.offline}
    if not args.force and noop.up_to_date(args.file, fast_key):
        print("up to date: nothing to do", file=sys.stderr)
        return 0
    return _full_build(args, fast_key, started)


def _full_build(args: argparse.Namespace, fast_key: dict, started: float) -> int:
    """Everything but the no-op check, whose imports stay out of the fast path."""
    import asyncio

    from .compiler import noop
    from .compiler.executor import Executor, Options
    from .compiler.select import SelectorError, evaluate, parse_selector
    from .compiler.store import Store, StoreError
    from .progress import events_for

    result = _compile(args.file, offline=args.offline, burn_subtitles=args.burn_subtitles)
    if result is None:
        return 1
    selection = _with_selection(args, result.graph)
    if isinstance(selection, int):
        return selection
    try:
        force = (evaluate(result.graph, parse_selector(args.force)).nodes
                 if args.force else frozenset())
    except SelectorError as e:
        print(e.render(), file=sys.stderr)
        return 1
    options = Options(jobs=max(1, args.jobs), keep_going=args.keep_going, force=frozenset(force),
                      until=args.until, selection=selection, burn_subtitles=args.burn_subtitles)
    from .compiler.store import location

    try:
        with project_lock(location(result.project.root, result.config.store),
                          wait=not args.no_wait), \
                Store.open(result.project.root, create=True,
                           configured=result.config.store) as store:
            events = events_for(args.quiet)
            executor = Executor(result, store, options, events)
            try:
                outcomes = asyncio.run(executor.run())
            except KeyboardInterrupt:
                print("\nfilmc: interrupted; every finished step is kept in the store, and the "
                      "next build goes on from there", file=sys.stderr)
                return 130
            finally:
                if hasattr(events, "close"):
                    events.close()
            out = output_dir(result.project)
            materialize(result, store, outcomes, out, full=selection is None and not args.until)
            report = write_report(result, outcomes, out, time.time() - started)
            if report["counts"].get("failed") or report["counts"].get("skipped"):
                noop.forget(store.path)
            else:
                noop.record(store.path, fast_key, _depends_on(result),
                            [str(p) for p in out.rglob("*") if p.is_file()])
    except StoreError as e:
        print(e.render(), file=sys.stderr)
        return 1
    _summary(report, out, args.file)
    return 1 if report["counts"].get("failed") else 0


def _depends_on(result) -> list[str]:
    """Every file a build of this film read: for the no-op fast path."""
    root = result.project.root
    files = [str(f.path) for f in result.project.files]
    files += [str(root / "filmc.toml"), str(root / "templates")]
    templates = root / "templates"
    if templates.is_dir():
        files += [str(p) for p in templates.iterdir()]
    files += {str(root / f.path) for _n, d in result.graph.nodes(data=True) for f in d["step"].files}
    return files


def materialize(result, store, outcomes, out: Path, full: bool) -> None:
    """Link each output where a person looks for it; stale files of a full build go."""
    numbers = {(s.scene, s.id): s.number for s in result.film.shots}
    wanted: dict[Path, str] = {}
    for o in outcomes:
        if o.status not in ("ran", "cached", "provided") or not o.outputs:
            continue
        digest = o.outputs[0][1]
        if o.kind == "film":
            wanted[out / "film.mp4"] = digest
        elif o.kind == "subtitles":
            wanted[out / "film.srt"] = digest
        elif o.kind == "storyboard":
            wanted[out / "storyboard.png"] = digest
        elif o.kind == "timeline":
            wanted[out / "timeline.json"] = digest
        elif o.kind == "shot":
            n = numbers[(o.scene, o.shot)]
            wanted[out / "shots" / f"{n:03d}_{o.scene}_{o.shot}.mp4"] = digest
        elif o.kind == "keyframe":
            n = numbers[(o.scene, o.shot)]
            take = o.id.rsplit(".take", 1)[1]
            wanted[out / "keyframes" / f"{n:03d}_{o.scene}_{o.shot}_take{take}.png"] = digest
    for path, digest in wanted.items():
        _place(store.object_path(digest), path)
    if full:
        for sub in ("shots", "keyframes"):
            folder = out / sub
            if folder.is_dir():
                for f in folder.iterdir():
                    if f not in wanted:
                        f.unlink()


def _place(obj: Path, dest: Path) -> None:
    """`dest` becomes the object: a hard link when possible (objects are read-only), else
    a copy; replaced atomically, so a reader sees the old file or the new one."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    with contextlib.suppress(OSError):
        if os.path.samefile(obj, dest):
            return
    tmp = dest.with_name(f".{dest.name}.tmp")
    tmp.unlink(missing_ok=True)
    try:
        os.link(obj, tmp)
    except OSError:
        shutil.copyfile(obj, tmp)
    os.replace(tmp, dest)


def write_report(result, outcomes, out: Path, seconds: float) -> dict:
    counts: dict[str, int] = {}
    for o in outcomes:
        counts[o.status] = counts.get(o.status, 0) + 1
    report = {
        "film": result.film.title,
        "seconds": round(seconds, 3),
        "counts": counts,
        "steps": [{"id": o.id, "kind": o.kind, "backend": o.backend, "scene": o.scene,
                   "shot": o.shot, "status": o.status, "seconds": round(o.seconds, 3),
                   "error": o.error, "outputs": [d for _n, d in o.outputs]} for o in outcomes],
    }
    out.mkdir(parents=True, exist_ok=True)
    tmp = out / ".report.json.tmp"
    tmp.write_text(json.dumps(report, ensure_ascii=False, indent=1) + "\n", encoding="utf-8")
    os.replace(tmp, out / "report.json")
    return report


def _summary(report: dict, out: Path, file: Path) -> None:
    c = report["counts"]
    parts = [f"{c.get(k, 0)} {k}" for k in ("ran", "cached", "provided", "failed", "skipped")
             if c.get(k)]
    print(f"built in {report['seconds']:.1f}s: " + (", ".join(parts) or "nothing to do"),
          file=sys.stderr)
    failed = [s for s in report["steps"] if s["status"] == "failed"]
    for s in failed:
        where = f" (shot {s['scene']}/{s['shot']})" if s["shot"] else ""
        print(f"  failed {s['id']}{where}: {s['error']}", file=sys.stderr)
    film = out / "film.mp4"
    if film.exists() and not failed:
        print(film)


def _clean(args: argparse.Namespace) -> int:
    from .lang.diagnostics import Diagnostics
    from .lang.loader import Loader

    project = Loader(Diagnostics()).load(args.file)
    if project is None:
        return _fail(f"cannot read `{args.file}`")
    out = output_dir(project)
    if out.exists():
        shutil.rmtree(out)
        print(f"removed {out}")
    return 0


def _gc(args: argparse.Namespace) -> int:
    from .compiler.store import Store, StoreError, location

    keep: set[str] = set()
    for offline in (False, True):
        result = _compile(args.file, offline=offline)
        if result is None:
            return 1
        keep |= {d["step"].key for _n, d in result.graph.nodes(data=True)}
    root, configured = result.project.root, result.config.store
    try:
        with project_lock(location(root, configured), wait=True), \
                Store.open(root, configured=configured) as store:
            if store is None:
                print("nothing stored yet", file=sys.stderr)
                return 0
            forgotten, deleted = store.collect(keep, dry_run=args.dry_run)
    except StoreError as e:
        print(e.render(), file=sys.stderr)
        return 1
    size = sum(n for _d, n in deleted)
    verb = "would delete" if args.dry_run else "deleted"
    if args.dry_run:
        for digest, n in deleted:
            print(f"{digest}  {_bytes(n)}")
    print(f"{verb} {len(deleted)} objects ({_bytes(size)}) and forgot {len(forgotten)} "
          f"cached steps", file=sys.stderr)
    return 0


def _bytes(n: int) -> str:
    for unit in ("B", "KB", "MB", "GB"):
        if n < 1024 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n} B"
