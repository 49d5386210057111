"""`filmc gc`: forget the cached steps nothing needs, never what history or money needs.

What is kept (engine/gc.py decides, engine/roots.py records who needs what):

- what the working tree needs, as filmc.toml configures it and offline, and every
  output its film.lock pins;
- what the last N commits of the current branch need (`--keep-commits`, `[gc]
  keep_commits` in filmc.toml, default 10), each compiled in memory both ways
  (lang/tree.py); a commit that does not compile is skipped with a warning;
- what every other project that uses the same store recorded there;
- every step that cost money, unless `--include-paid`; with `--older-than`,
  every step recorded or used since then.

Every run that changes the store rewrites the project's own record in it, so that
a gc of another project sharing the store keeps what this one's history needs.
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import attrs

from .common import FILE_HELP, compile_or_report, fail, human_bytes

_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}
_DURATION = re.compile(r"(\d+(?:\.\d+)?)([smhdw])")
SHOW_SHOTS = 8


def add_parser(sub: Any) -> None:
    g = sub.add_parser(
        "gc", help="delete stored outputs that no project, recent commit or pick needs",
        description="Forget cached steps that neither the working tree (as configured and "
                    "--offline), film.lock, the last commits of the current branch, nor any "
                    "other project sharing the store needs, and delete the objects no "
                    "remaining step names. A step that cost money is kept unless "
                    "--include-paid.")
    g.add_argument("file", nargs="?", type=Path, metavar="FILE", help=FILE_HELP)
    g.add_argument("--dry-run", "-n", action="store_true",
                   help="list the steps it would forget (with shot, size and cost) and the "
                        "objects it would delete; change nothing")
    g.add_argument("--keep-commits", type=_count, metavar="N",
                   help="keep what the last N commits of the current branch need (default: "
                        "`[gc] keep_commits` in filmc.toml, else 10; 0: the working tree only)")
    g.add_argument("--include-paid", action="store_true",
                   help="also forget steps that cost money, when nothing needs them")
    g.add_argument("--older-than", type=_duration, metavar="DURATION",
                   help="forget only what no build recorded or used within DURATION "
                        "(30d, 12h, 90m, 2w)")
    g.add_argument("--force", action="store_true",
                   help="go on when another project's record in the store cannot be read, or "
                        "steps were made by a project that recorded nothing")
    g.add_argument("--drop-missing", action="store_true",
                   help="drop the records of projects whose folder is gone, and forget what "
                        "only they needed")
    g.set_defaults(run=_gc)


def _count(text: str) -> int:
    if not text.isdigit():
        raise argparse.ArgumentTypeError(f"`{text}` is not a whole number, zero or more")
    return int(text)


def _duration(text: str) -> float:
    """`30d`, `12h`, `1d12h`, `90m`, `2w`, `45s` → seconds."""
    parts = _DURATION.findall(text)
    if not parts or "".join(n + u for n, u in parts) != text.strip():
        raise argparse.ArgumentTypeError(f"`{text}` is not a duration: write a number and a "
                                         f"unit, such as 30d, 12h, 90m, 2w")
    return sum(float(n) * _UNITS[u] for n, u in parts)


# --- what the project needs -------------------------------------------------------------------


@attrs.frozen
class History:
    needs: Any  # engine.roots.Needs
    notes: tuple[str, ...]


def _gc(args: argparse.Namespace) -> int:
    from .engine.roots import Needs, needs_of

    own = Needs()
    result = None
    for offline in (False, True):
        result = compile_or_report(args.file, offline=offline)
        if result is None:
            return 1
        own = own | needs_of(result.graph, result.lock)
    assert result is not None and result.project is not None and result.config is not None
    project, config = result.project, result.config
    count = args.keep_commits if args.keep_commits is not None else config.keep_commits
    history = _history(Path(project.main.path).resolve(), Path(project.root).resolve(), count,
                       args.debug)
    for note in history.notes:
        print(note, file=sys.stderr)
    return _collect(args, project, config, own | history.needs)


def _history(main: Path, root: Path, count: int, debug: bool) -> History:
    """What the last `count` commits of the current branch need, each compiled as
    configured and offline; notes (and warnings) for the user."""
    from .engine.roots import Needs

    if count == 0:
        return History(Needs(), ())
    found = _git(root, "rev-parse", "--show-toplevel")
    if found is None:
        return History(Needs(), (f"note: `{root}` is not in a git repository (or git is not "
                                 f"installed): only the working tree's needs are kept",))
    repo = Path(os.path.realpath(found.strip()))
    try:
        rel = Path(os.path.realpath(root)).relative_to(repo).as_posix()
    except ValueError:
        return History(Needs(), (f"note: `{root}` is not inside its git repository's folder "
                                 f"`{repo}` (a link?): only the working tree's needs are kept",))
    rel = "" if rel == "." else rel
    log = _git(repo, "log", f"--max-count={count}", "--format=%H%x00%h%x00%s", "HEAD")
    if log is None:
        return History(Needs(), ("note: the repository has no commits yet: only the working "
                                 "tree's needs are kept",))
    needs, notes, seen, commits = Needs(), [], set(), 0
    for line in log.splitlines():
        full, short, subject = line.split("\0", 2)
        commits += 1
        tree = _git(repo, "rev-parse", "--verify", "--quiet",
                    f"{full}:{rel}" if rel else f"{full}^{{tree}}")
        if tree is None or tree in seen:  # no film there yet, or the same as a later commit
            continue
        seen.add(tree)
        got = _commit_needs(repo, full, short, subject, main, debug)
        if isinstance(got, str):
            notes.append(got)
        else:
            needs = needs | got
    branch = _git(repo, "symbolic-ref", "--short", "--quiet", "HEAD")
    where = f"`{branch.strip()}`" if branch else "HEAD (detached)"
    notes.append(f"kept what the working tree and the last {commits} "
                 f"commit{'s' if commits != 1 else ''} of {where} need "
                 f"({len(seen)} version{'s' if len(seen) != 1 else ''} of the project)")
    return History(needs, tuple(notes))


def _commit_needs(repo: Path, full: str, short: str, subject: str, main: Path,
                  debug: bool) -> Any:
    """What one commit needs (as configured and offline), or a warning naming it."""
    from .compiler.pipeline import compile_film
    from .engine.lengths import lookup_for
    from .engine.roots import Needs, needs_of
    from .lang.tree import GitTree, TreeError, using

    name = f"commit {short} ({subject[:60]})"
    needs = Needs()
    try:
        with GitTree(repo, full) as tree, using(tree):
            tree.label = short  # diagnostics name `SHORT:path`
            if not tree.is_file(main):
                return needs  # the film is not in it yet
            for offline in (False, True):
                result = compile_film(main, offline=offline, said=lookup_for)
                if not result.ok or result.graph is None:
                    first = result.diags.errors[0] if result.diags.errors else None
                    why = "" if first is None else \
                        f": error[{first.code}]: {first.message}" + \
                        (f" (at {first.span.file}:{first.span.line})" if first.span else "")
                    mode = "offline" if offline else "as configured"
                    return (f"warning: {name} does not compile {mode}{why}; what it needs "
                            f"is not kept, beyond what costs money")
                needs = needs | needs_of(result.graph, result.lock)
    except TreeError as e:
        return f"warning: {name} cannot be read: {e.message}; what it needs is not kept"
    except OSError as e:
        return (f"warning: {name} cannot be read: {e.strerror or e}; what it needs is not "
                f"kept")
    except Exception as e:  # a bug in filmc: one commit skipped, not the whole gc
        if debug:
            raise
        return (f"warning: {name} could not be compiled (internal error: "
                f"{type(e).__name__}; a bug in filmc, --debug shows it); what it needs is "
                f"not kept, beyond what costs money")
    return needs


def _git(cwd: Path, *args: str) -> str | None:
    try:
        r = subprocess.run(["git", *args], cwd=cwd, capture_output=True, text=True,
                           errors="surrogateescape")
    except OSError:
        return None
    return r.stdout if r.returncode == 0 and r.stdout.strip() else None


# --- collecting -------------------------------------------------------------------------------


def _collect(args: argparse.Namespace, project: Any, config: Any, own: Any) -> int:
    from .compiler.lock import lock_path, read_lock
    from .engine import gc, roots
    from .engine.db import StoreError
    from .engine.lock import project_lock
    from .engine.state import state_dir
    from .engine.store import Store, location
    from .lang.diagnostics import Diagnostics
    from .lang.paths import film_name

    root = Path(project.root).resolve()
    film = film_name(project.main.path, project.root)
    main = Path(project.main.path).resolve()
    where = location(project.root, config.store)
    started = time.perf_counter()
    try:
        with project_lock(state_dir(project.root), wait=True):
            store = Store.open(where)
            if store is None:
                print("nothing stored yet", file=sys.stderr)
                return 0
            with store, roots.store_lock(where, "gc"):
                # A take added since the compile: `take add` writes the lock under the
                # store's lock, so what it holds now is all there is.
                own = own | roots.lock_needs(read_lock(lock_path(main), Diagnostics()))
                others = [r for r in roots.read_all(where)
                          if not (isinstance(r, roots.Record) and (r.root, r.film) ==
                                  (str(root), film))]
                bad = [r for r in others if isinstance(r, roots.Unreadable)]
                if bad and not args.force:
                    return _refuse_unreadable(bad)
                here = os.path.realpath(where)
                records = [r for r in others if isinstance(r, roots.Record)]
                # written where the store was before it was copied or moved: not of this one
                elsewhere = [r for r in records if r.store != here]
                records = [r for r in records if r.store == here]
                gone = [r for r in records if not r.exists()]
                needs = own
                for r in records:
                    if not (args.drop_missing and r in gone):
                        needs = needs | r.needs
                since = time.time() - args.older_than if args.older_than is not None else None
                rules = gc.Rules((str(root), film), gc.own_store(root, where),
                                 frozenset((r.root, r.film) for r in records),
                                 frozenset((r.root, r.film) for r in gone),
                                 args.include_paid, since, args.drop_missing, args.force)
                inventory = store.inventory()
                plan = gc.decide(inventory, needs, rules)
                if plan.unaccounted and not args.force:
                    return _refuse_unaccounted(plan.unaccounted, where)
                forgotten, deleted = gc.collect(store, plan, needs, since, args.dry_run)
                if not args.dry_run:
                    for r in elsewhere + (gone if args.drop_missing else []):
                        roots.drop(r)
                    rel = str(main.relative_to(root)) if main.is_relative_to(root) else str(main)
                    roots.update(where, root, film, rel, roots.GC, own, replace=True)
    except StoreError as e:
        print(e.render(), file=sys.stderr)
        return 1
    sizes = dict(_sizes(where, plan.kept_paid))
    for r in elsewhere:
        print(f"{'would drop' if args.dry_run else 'dropped'} the record of {r.name}: it was "
              f"written in the store at `{r.store}`, which was copied or moved here",
              file=sys.stderr)
    _report(plan, forgotten, deleted, sizes, gone, args, config.currency,
            time.perf_counter() - started)
    return 0


def _sizes(store: Path, steps: Iterable[Any]) -> Iterable[tuple[str, int]]:
    """(digest, bytes) of every object the (kept) steps name that is on disk."""
    for c in steps:
        for d in c.digests:
            try:
                yield d, (store / "objects" / d[:2] / d).stat().st_size
            except (OSError, ValueError):
                continue


def _refuse_unreadable(bad: list[Any]) -> int:
    for r in bad[:-1]:
        print(f"error: cannot read the store's record of another project, `{r.path}`: "
              f"{r.why}", file=sys.stderr)
    r = bad[-1]
    return fail(f"cannot read the store's record of another project, `{r.path}`: {r.why}",
                "gc cannot know what that project needs, so it deletes nothing: build that "
                "project again (its build rewrites the record) or delete the file; "
                "`filmc gc --force` collects without it")


def _refuse_unaccounted(unaccounted: Any, store: Path) -> int:
    lines = []
    for who, steps in sorted(unaccounted.items(), key=lambda kv: kv[0] or ("", "")):
        n = len(steps)
        what = f"{n} cached step{'s' if n != 1 else ''}"
        if who is None:
            lines.append(f"{what} in the shared store `{store}` name no project (an earlier "
                         f"filmc made them)")
        else:
            lines.append(f"{what} were made by `{who[0]}` (film `{who[1]}`), which has no "
                         f"record in the store `{store}`")
    for line in lines[:-1]:
        print(f"error: {line}", file=sys.stderr)
    return fail(lines[-1] + "; nothing was deleted",
                "another project may need them: build each project that uses this store "
                "once with this filmc (each records what it needs), then gc again; "
                "`filmc gc --force` forgets them anyway")


# --- the report -------------------------------------------------------------------------------


def _report(plan: Any, forgotten: list[str], deleted: list[tuple[str, int]],
            sizes: dict[str, int], gone: list[Any], args: argparse.Namespace,
            currency: str, seconds: float) -> None:
    """What gc forgot, a line a step (its shot, the bytes it frees, what it cost), then the
    objects no step named, then what it kept and why, then the totals."""
    from .compiler.plan import money
    from .engine.gc import paid

    dry = args.dry_run
    freed = dict(deleted)
    by_key = {c.key: c for c in plan.forget}
    shots: set[str] = set()
    rows = []
    spent = 0.0
    freed_by_steps: set[str] = set()
    for key in forgotten:
        c = by_key.get(key)
        meta = c.meta if c is not None else {}
        digests = [d for d in (c.digests if c is not None else ()) if d in freed]
        freed_by_steps |= set(digests)
        size = sum(freed[d] for d in digests)
        what = meta.get("kind", "step") + (f" on {meta['backend']}" if meta.get("backend") else "")
        if meta.get("shot"):
            shots.add(meta["shot"])
            what += f", shot {meta['shot']}"
        if size:
            what += f", {human_bytes(size)}"
        cost = meta.get("cost")
        if paid(meta):
            if isinstance(cost, (int, float)):
                spent += cost
                what += f", cost {money(cost, currency)}"
            else:
                what += ", paid (cost unknown)"
        else:
            what += ", free"
        rows.append((meta.get("step") or f"(unnamed {meta.get('kind', 'step')}, key {key[:12]})",
                     what))
    verb = "would forget" if dry else "forgot"
    if rows:
        width = max(len(r[0]) for r in rows)
        for name, what in sorted(rows):
            print(f"{verb} {name:<{width}}  {what}")
    for digest, n in deleted:
        if digest not in freed_by_steps:
            print(f"{'would delete' if dry else 'deleted'} {digest}  {human_bytes(n)}  "
                  f"(an object no step names)")
    if shots:
        listed = ", ".join(sorted(shots)[:SHOW_SHOTS]) + \
            (f" and {len(shots) - SHOW_SHOTS} more" if len(shots) > SHOW_SHOTS else "")
        print(f"  in {len(shots)} shot{'s' if len(shots) != 1 else ''}: {listed}",
              file=sys.stderr)
    keep = "would keep" if dry else "kept"
    if plan.kept_paid:
        costs = [c.meta.get("cost") for c in plan.kept_paid]
        total = sum(x for x in costs if isinstance(x, (int, float)))
        unknown = sum(1 for x in costs if not isinstance(x, (int, float)))
        size = sum(sizes.get(d, 0) for c in plan.kept_paid for d in c.digests)
        print(f"{keep} {_steps(len(plan.kept_paid))} that cost money and nothing needs "
              f"({money(total, currency)}" + (f", {unknown} of unknown cost" if unknown else "")
              + f", {human_bytes(size)}): `--include-paid` forgets them", file=sys.stderr)
    if plan.kept_recent:
        print(f"{keep} {_steps(len(plan.kept_recent))} recorded or used within the last "
              f"{_ago(args.older_than)} (--older-than)", file=sys.stderr)
    for who, steps in plan.kept_gone.items():
        print(f"{keep} {_steps(len(steps))} made by `{who[0]}` (film `{who[1]}`), whose folder "
              f"is gone: `--drop-missing` forgets them", file=sys.stderr)
    for r in gone:
        if args.drop_missing:
            print(f"{'would drop' if dry else 'dropped'} the record of {r.name}: its folder is "
                  f"gone", file=sys.stderr)
        else:
            print(f"note: the store's record of {r.name} names a folder that is gone; what it "
                  f"needs is kept: `filmc gc --drop-missing` drops the record",
                  file=sys.stderr)
    for who in plan.unaccounted:  # only with --force
        name = "steps that name no project" if who is None else \
            f"steps of `{who[0]}` (film `{who[1]}`), which has no record"
        print(f"--force: {'would forget' if dry else 'forgot'} {name} when nothing else "
              f"needs them", file=sys.stderr)
    total = sum(n for _d, n in deleted)
    cost = f"; they cost {money(spent, currency)} to make" if spent else ""
    print(f"{verb} {_steps(len(forgotten), 'cached step')}, "
          f"{'would delete' if dry else 'deleted'} {len(deleted)} "
          f"object{'s' if len(deleted) != 1 else ''} ({human_bytes(total)}) in {seconds:.1f}s"
          + cost + ("; a dry run: nothing changed" if dry else ""), file=sys.stderr)


def _steps(n: int, what: str = "step") -> str:
    return f"{n} {what}{'s' if n != 1 else ''}"


def _ago(seconds: float | None) -> str:
    if seconds is None:
        return ""
    for unit, n in (("w", 7 * 86400), ("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= n and seconds % n == 0:
            return f"{int(seconds // n)}{unit}"
    return f"{seconds:g}s"

