"""`filmc git setup`: git shows `.film` changes formatted and merges film.lock shot by shot.

    filmc git setup                           # once per clone (and after adding a film)
    filmc git merge-lock BASE OURS THEIRS     # what git runs to merge a film.lock
    filmc fmt --stdout FILE                   # what git runs to show a .film file

`setup` writes two kinds of lines into the repository's `.gitattributes` (committed,
so every clone has them) and the drivers they name into the repository's own git
config (`.git/config`, per clone):

    *.film diff=film                          git diff, log -p, show: through the formatter
    film.lock merge=filmlock                  one line per lock name of the repo's films

    diff.film.textconv      FILMC fmt --stdout
    diff.film.xfuncname     hunk headers name the shot, scene or character they are in
    merge.filmlock.name     what `git help attributes` lists
    merge.filmlock.driver   FILMC git merge-lock %O %A %B %P

A clone that has not run `setup` diffs and merges as plain text (git ignores a driver
it has no configuration for).  Running `setup` again changes nothing.
"""

from __future__ import annotations

import argparse
import os
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

from .common import fail, write_atomic

ATTRIBUTES = ".gitattributes"
COMMENT = "# filmc (`filmc git setup`): .film diffs through the formatter, film.lock merged " \
          "shot by shot"
DIFF, MERGE = "film", "filmlock"
# Hunk headers (`@@ ... @@ shot chen_watches 3s {`) name the block a change is in.
XFUNCNAME = r"^[ \t]*((film|scene|shot|character|location|preset)[ \t].*)$"
_PLAIN = re.compile(r"[A-Za-z0-9._+-]+\Z")


def add_parsers(sub: Any) -> None:
    g = sub.add_parser("git", help="git integration: `filmc git setup`",
                       description="Make git show .film changes through the formatter and "
                                   "merge film.lock shot by shot.")
    gsub = g.add_subparsers(dest="git_command", metavar="SUBCOMMAND")
    gsub.required = True
    s = gsub.add_parser(
        "setup", help="set up .gitattributes and this clone's git config (idempotent)",
        description="Write `*.film diff=film` and `film.lock merge=filmlock` (one line per "
                    "lock name of the repository's films) into .gitattributes, and configure "
                    "the `film` diff driver (`filmc fmt --stdout`) and the `filmlock` merge "
                    "driver (`filmc git merge-lock`) in this repository's git config. Commit "
                    ".gitattributes; run it once in each clone.")
    s.set_defaults(run=_setup)
    m = gsub.add_parser(
        "merge-lock", help="(run by git) merge three versions of a film.lock, shot by shot",
        description="Git's merge driver for film.lock: merge BASE, OURS and THEIRS shot by "
                    "shot and write the result to OURS. Exit 0 when clean; 1 when a shot was "
                    "picked differently on both sides (OURS then holds conflict markers).")
    m.add_argument("base", type=Path, metavar="BASE")
    m.add_argument("ours", type=Path, metavar="OURS")
    m.add_argument("theirs", type=Path, metavar="THEIRS")
    m.add_argument("path", nargs="?", default="film.lock", metavar="PATH",
                   help="the lock's path in the repository, for messages")
    m.set_defaults(run=_merge_lock)


# --- setup ------------------------------------------------------------------------------------


def _setup(args: argparse.Namespace) -> int:
    from .lang.tree import TreeError, repo_root

    try:
        repo = repo_root(Path.cwd())
    except TreeError as e:
        return fail(f"{e.message}: `filmc git setup` configures a git repository",
                    "run it inside the repository that holds the film (`git init` starts one)")
    command = filmc_command()
    lines = [f"*.film diff={DIFF}"] + [f"{_pattern(n)} merge={MERGE}" for n in _lock_names(repo)]
    try:
        added = _attributes(repo / ATTRIBUTES, lines)
    except OSError as e:
        return fail(f"cannot write `{repo / ATTRIBUTES}`: {e.strerror or e}",
                    f"check the permissions of `{repo}`")
    wanted = {
        f"diff.{DIFF}.textconv": f"{command} fmt --stdout",
        f"diff.{DIFF}.xfuncname": XFUNCNAME,
        f"merge.{MERGE}.name": "film.lock, merged shot by shot (filmc)",
        f"merge.{MERGE}.driver": f"{command} git merge-lock %O %A %B %P",
    }
    changed = []
    for key, value in wanted.items():
        if _config_get(repo, key) != value:
            r = _git(repo, "config", "--local", key, value)
            if r.returncode != 0:
                return fail(f"cannot set `{key}` in the git config of `{repo}`: "
                            f"{r.stderr.strip() or r.returncode}",
                            "check that `.git/config` is writable")
            changed.append(key)
    if not added and not changed:
        print(f"{repo}: already set up; nothing changed")
        return 0
    for line in added:
        print(f"{ATTRIBUTES}: added `{line}`")
    for key in changed:
        print(f"git config: {key} = {wanted[key]}")
    print(f"`git diff`, `git log -p` and `git show` now show .film changes formatted, and "
          f"`git merge` merges film.lock shot by shot; commit {ATTRIBUTES}, and run `filmc git "
          f"setup` once in each clone", file=sys.stderr)
    return 0


def filmc_command() -> str:
    """How git should run this filmc: `filmc` when that is the one on PATH, else this
    Python with `-m filmc` (a virtual environment that is not activated)."""
    found = shutil.which("filmc")
    if found and os.path.dirname(os.path.abspath(found)) == \
            os.path.dirname(os.path.abspath(sys.executable)):
        return "filmc"
    return f"{shlex.quote(os.path.abspath(sys.executable))} -m filmc"


def _lock_names(repo: Path) -> list[str]:
    """The lock file names of the repository's films (`film.lock` always: the name of
    every film whose main file is `film.film`)."""
    from .compiler.lock import LOCK_NAME, lock_path
    from .project import film_files, is_main

    names = {LOCK_NAME}
    names |= {lock_path(f).name for f in film_files(repo) if is_main(f)}
    return sorted(names)


def _pattern(name: str) -> str:
    """A .gitattributes pattern matching exactly the file name `name`, in any folder."""
    if _PLAIN.match(name):
        return name
    escaped = re.sub(r'([\\"*?\[])', r"\\\1", name)
    return f'"{escaped}"'


def _attributes(path: Path, lines: list[str]) -> list[str]:
    """Append the lines `path` lacks (with the comment, the first time); the lines added."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        text = ""
    have = {" ".join(line.split()) for line in text.splitlines()}
    missing = [line for line in lines if line not in have]
    if not missing:
        return []
    out = text if not text or text.endswith("\n") else text + "\n"
    if COMMENT not in have:
        out += ("\n" if out else "") + COMMENT + "\n"
    out += "".join(line + "\n" for line in missing)
    write_atomic(path, out)
    return missing


def _git(repo: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(["git", *args], cwd=repo, capture_output=True, text=True)


def _config_get(repo: Path, key: str) -> str | None:
    r = _git(repo, "config", "--local", "--get", key)
    return r.stdout.rstrip("\n") if r.returncode == 0 else None


# --- the textconv driver: `filmc fmt --stdout` --------------------------------------------------


def fmt_stdout(files: list[Path]) -> int:
    """One file's formatted text on stdout — or its bytes as they are when it does not
    parse or is not UTF-8, so that git always shows something (`diff.film.textconv`)."""
    from .common import USAGE_ERROR

    if len(files) != 1:
        return fail(f"`--stdout` prints one file; {len(files)} given",
                    "`filmc fmt --stdout FILE`", USAGE_ERROR)
    try:
        data = files[0].read_bytes()
    except OSError as e:
        return fail(f"cannot read `{files[0]}`: {e.strerror or e}")
    out = data
    try:
        from .lang.diagnostics import Diagnostics
        from .lang.fmt import format_text

        text = format_text(data.decode("utf-8"), str(files[0]), Diagnostics())
        if text is not None:
            out = text.encode("utf-8")
    except Exception:  # not UTF-8, or a bug in the formatter: the file as it is
        out = data
    sys.stdout.buffer.write(out)
    return 0


# --- the merge driver -----------------------------------------------------------------------


def _merge_lock(args: argparse.Namespace) -> int:
    """Merge three versions of a lock into OURS (git's `%A`); 0 clean, 1 conflicts."""
    from .compiler.lock import read_lock
    from .compiler.lockmerge import merge, render, title_of
    from .lang.diagnostics import Diagnostics

    locks = []
    for path in (args.base, args.ours, args.theirs):
        diags = Diagnostics()
        lock = read_lock(path, diags)
        if diags.errors:
            first = diags.errors[0]
            print(f"filmc: `{args.path}` ({path.name}) is not a lock filmc can read "
                  f"({first.message}); merging it as text", file=sys.stderr)
            return _merge_text(args)
        locks.append(lock)
    try:
        texts = [p.read_text(encoding="utf-8") for p in (args.ours, args.theirs)]
    except (OSError, UnicodeDecodeError):
        texts = ["", ""]
    title = title_of(texts[0]) or title_of(texts[1]) or "the film"
    merged = merge(*locks)
    try:
        write_atomic(args.ours, render(merged, title))
    except OSError as e:
        return fail(f"cannot write `{args.ours}`: {e.strerror or e}")
    if not merged.conflicts:
        return 0
    for s in merged.conflicts:
        print(f"filmc: `{args.path}`: shot `{s.shot}` was picked differently on both sides "
              f"({', '.join(s.why)})", file=sys.stderr)
    print(f"  = help: in `{args.path}`, keep one side of each conflict (each is the shot's "
          f"whole table), then `filmc lock --check`; or pick again with `filmc pick`",
          file=sys.stderr)
    return 1


def _merge_text(args: argparse.Namespace) -> int:
    """git's own line merge (what git does without the driver), into OURS."""
    r = subprocess.run(["git", "merge-file", "-L", "ours", "-L", "base", "-L", "theirs",
                        str(args.ours), str(args.base), str(args.theirs)],
                       capture_output=True, text=True)
    if r.returncode < 0 or r.returncode > 127:
        return fail(f"`git merge-file` failed on `{args.path}`: {r.stderr.strip()}")
    return 0 if r.returncode == 0 else 1
