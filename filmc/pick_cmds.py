"""The production loop's commands: `filmc pick`, `filmc lock`, `filmc take add`, `filmc review`.

Each compiles the film (the candidates, their keys and the lock's state come
from the graph), then goes through engine/picks.py, the one code that writes
film.lock; `review` serves the same picks to a browser (filmc/review_server.py).
"""

from __future__ import annotations

import argparse
import contextlib
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from .common import compile_or_report, fail, report


def add_parsers(sub: Any) -> None:
    p = sub.add_parser(
        "pick", help="pick a shot's keyframe candidate (and clip take): writes film.lock",
        description="Pin the keyframe candidate a shot's clips are made from (and, with "
                    "--clip, the clip take the film uses) in film.lock, by its step key and "
                    "the digest of its output. A candidate is named as `filmc lock` lists it "
                    "(`openai-2`, `retouch-1`) or by its number. Commit film.lock.")
    p.add_argument("args", nargs="+", metavar="[FILE] SHOT [CANDIDATE]",
                   help="FILE defaults to the project's film, in or above the current folder")
    p.add_argument("--clip", metavar="TAKE", help="also pick this clip take (`take2`, `2`)")
    p.add_argument("--clear", action="store_true",
                   help="forget the shot's picks (with --clip: only the clip's)")
    p.set_defaults(run=_pick)

    lk = sub.add_parser(
        "lock", help="list each shot's picks, or check film.lock (--check) for CI",
        description="List every shot's candidates and picks: picked, unpicked, stale. With "
                    "--check, exit 1 when a pick is stale or names a shot the film no longer "
                    "has, or film.lock has errors.")
    lk.add_argument("file", nargs="?", type=Path, metavar="FILE")
    lk.add_argument("--check", action="store_true", help="exit 1 on stale or unknown picks")
    lk.add_argument("--prune", action="store_true",
                    help="remove the entries of shots the film no longer has")
    lk.set_defaults(run=_lock)

    t = sub.add_parser("take", help="add your own image or clip to a shot: `filmc take add`",
                       description="Manage the takes you make outside filmc.")
    tsub = t.add_subparsers(dest="take_command", metavar="COMMAND")
    tsub.required = True
    a = tsub.add_parser(
        "add", help="add an image (a keyframe candidate) or a video (a clip take) to a shot",
        description="Copy FILE into the store by its digest and list it in film.lock as a "
                    "candidate of SHOT: an image becomes a keyframe candidate (`import-1`, or "
                    "`retouch-1` with --from), a video a clip take. Pick it like any other.")
    a.add_argument("args", nargs="+", metavar="[FILM] SHOT FILE")
    a.add_argument("--from", dest="source", metavar="CANDIDATE",
                   help="the candidate it was retouched from")
    a.add_argument("--pick", action="store_true", help="and pick it")
    a.set_defaults(run=_take_add)

    r = sub.add_parser(
        "review", help="serve the contact sheet on localhost: click a candidate to pick it",
        description="Serve every scene and shot with its candidates side by side, the picks "
                    "marked; a click picks (writing film.lock, as `filmc pick` does).")
    r.add_argument("file", nargs="?", type=Path, metavar="FILE")
    r.add_argument("--port", type=int, default=8737, help="the port (default 8737; 0: any free)")
    r.add_argument("--host", default="127.0.0.1", help="the address to listen on")
    r.add_argument("--offline", action="store_true",
                   help="review the animatic's candidates (as `filmc build --offline` made them)")
    r.set_defaults(run=_review)


# --- finding the film -----------------------------------------------------------------------


def _split(args: list[str]) -> tuple[Path | None, list[str]]:
    """An optional leading FILE (a `.film` path), and the other positional values."""
    if args and args[0].endswith(".film"):
        return Path(args[0]), args[1:]
    return None, args


@contextlib.contextmanager
def _store(program: Any, create: bool = False) -> Iterator[Any]:
    from .engine.store import Store, location

    store = Store.open(location(Path(program.root), program.store), create=create)
    try:
        yield store
    finally:
        if store is not None:
            store.close()


def _which(file: Path | None) -> Path | None:
    """The film's main file: the one given, else the project's (filmc/project.py); None
    after saying why there is none."""
    from .project import NoFilm, find_film

    if file is not None:
        return file
    try:
        return find_film()
    except NoFilm as e:
        fail(e.message, e.hint)
        return None


def _compiled(file: Path | None, offline: bool = False) -> Any:
    path = _which(file)
    return None if path is None else compile_or_report(path, offline=offline)


# --- filmc pick -------------------------------------------------------------------------------


def _pick(args: argparse.Namespace) -> int:
    from .compiler.lock import CLIP, KEYFRAME
    from .compiler.pipeline import compile_film
    from .engine.db import StoreError
    from .engine.lengths import lookup_for
    from .engine.picks import PickError, clear, find_shot, pick, restore

    file, rest = _split(args.args)
    if not rest or len(rest) > 2:
        return fail("usage: filmc pick [FILE] SHOT [CANDIDATE] [--clip TAKE]",
                    "`filmc lock` lists each shot's candidates")
    shot_name, name = rest[0], rest[1] if len(rest) > 1 else None
    if args.clear and name is not None:
        return fail(f"`--clear` forgets picks: it takes no candidate (`{name}`)",
                    f"`filmc pick {shot_name} --clear` forgets the shot's picks, "
                    f"`--clear --clip` only its clip's")
    if name is None and args.clip is None and not args.clear:
        return fail("pick what?", f"`filmc pick {shot_name} CANDIDATE`, or `--clip TAKE`; "
                    f"`filmc lock` lists the candidates")
    result = _compiled(file)
    if result is None:
        return 1
    program = result.program()
    try:
        shot = find_shot(program, shot_name)
        before = result.lock.shots.get(shot.shot)
        if args.clear:
            clear(program, shot, CLIP if args.clip is not None else None)
            print(f"{shot.shot}: picks cleared", file=sys.stderr)
            return 0
        with _store(program) as store:
            if name is not None:
                entry = pick(program, store, shot, KEYFRAME, name)
                print(f"{shot.shot}: keyframe {entry.name} ({entry.digest[:12]})", file=sys.stderr)
            if args.clip is not None:
                first = program
                if name is not None:  # the clip takes are made from the new pick: compile again
                    again = compile_film(_which(file) or Path(), offline=False, said=lookup_for)
                    if not again.ok or again.graph is None:  # it compiled a moment ago
                        restore(first, shot.shot, before)
                        report(again.diags, again.sources)
                        return 1
                    program = again.program()
                    shot = find_shot(program, shot_name)
                try:
                    entry = pick(program, store, shot, CLIP, args.clip)
                except PickError:
                    restore(first, shot.shot, before)  # both picks, or neither
                    raise
                print(f"{shot.shot}: clip {entry.name} ({entry.digest[:12]})", file=sys.stderr)
    except PickError as e:
        return fail(e.message, e.hint)
    except StoreError as e:
        print(e.render(), file=sys.stderr)
        return 1
    print(program.lock)
    return 0


# --- filmc lock -------------------------------------------------------------------------------


def _lock(args: argparse.Namespace) -> int:
    from .compiler.lock import PICKED, STALE, UNPICKED
    from .engine.picks import PickError, prune

    path = _which(args.file)
    if path is None:
        return 1
    result = compile_or_report(path)
    if result is None:
        return 1
    program = result.program()
    if args.prune:
        try:
            gone = prune(program)
        except PickError as e:
            return fail(e.message, e.hint)
        print(f"removed {len(gone)} entr{'y' if len(gone) == 1 else 'ies'}"
              + (": " + ", ".join(gone) if gone else ""), file=sys.stderr)
        return 0
    picks = list(program.picks.values())
    stale = [p for p in picks if STALE in p.statuses]
    unknown = sorted(set(result.lock.shots) - {p.shot for p in picks})
    if args.check:
        for p in stale:
            for c in (p.keyframe, p.clip):
                if c.status == STALE:
                    print(f"stale: {p.shot} {c.kind} {c.pick.name}: {c.why}")
        for name in unknown:
            print(f"unknown: {name}: not a shot of the film (`filmc lock --prune`)")
        # Each shot counted once, by what most needs doing: stale, then unpicked.
        state = [next((st for st in (STALE, UNPICKED, PICKED) if st in p.statuses), "")
                 for p in picks]
        print(f"{program.lock.name}: {len(picks)} shot{'s' if len(picks) != 1 else ''}: "
              f"{state.count(PICKED)} picked, {state.count(UNPICKED)} unpicked, "
              f"{state.count(STALE)} stale, {state.count('')} with nothing to pick; "
              f"{len(unknown)} unknown", file=sys.stderr)
        return 1 if stale or unknown else 0
    for p in picks:
        print(f"{p.scene}/{p.shot}")
        for c in (p.keyframe, p.clip):
            if not c.candidates:
                print(f"  {c.kind}: from the shot before's last frame")
                continue
            marks = []
            for i, name in enumerate(c.candidates, 1):
                mark = "*" if name == c.used and c.status == PICKED else " "
                marks.append(f"{mark}{i}:{name}")
            state = c.status + (f" ({c.why})" if c.why else "")
            print(f"  {c.kind}: {state}: " + " ".join(marks))
    if unknown:
        print(f"not in the film: {', '.join(unknown)}")
    return 0


# --- filmc take add ---------------------------------------------------------------------------


def _take_add(args: argparse.Namespace) -> int:
    from .compiler.lock import KEYFRAME
    from .engine.db import StoreError
    from .engine.picks import PickError, find_shot, pick

    file, rest = _split(args.args)
    if len(rest) != 2:
        return fail("usage: filmc take add [FILM] SHOT FILE [--from CANDIDATE] [--pick]",
                    "`filmc take add --help` explains each")
    shot_name, media = rest[0], Path(rest[1])
    result = _compiled(file)
    if result is None:
        return 1
    program = result.program()
    from .engine.picks import add_take

    try:
        shot = find_shot(program, shot_name)
        with _store(program, create=True) as store:
            take = add_take(program, store, shot, media, args.source)
            print(f"{shot.shot}: added {take.kind} {take.name} ({take.origin}, "
                  f"{take.digest[:12]})", file=sys.stderr)
            if args.pick:
                again = _compiled(file)
                if again is None:
                    return 1
                program = again.program()
                shot = find_shot(program, shot_name)
                pick(program, store, shot, take.kind, take.name)
                print(f"{shot.shot}: {'keyframe' if take.kind == KEYFRAME else 'clip'} "
                      f"{take.name} picked", file=sys.stderr)
    except PickError as e:
        return fail(e.message, e.hint)
    except StoreError as e:
        print(e.render(), file=sys.stderr)
        return 1
    print(program.lock)
    return 0


# --- filmc review -----------------------------------------------------------------------------


def _review(args: argparse.Namespace) -> int:
    from .review_server import serve

    path = _which(args.file)
    if path is None:
        return 1
    return serve(path, args.host, args.port, offline=args.offline)
