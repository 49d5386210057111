"""What the command modules share: compiling a film, selections, printing diagnostics.

Both command modules (`compile_cmds`, `build_cmd`) and the front door (`cli`)
import this one, and it imports none of them: no import cycles.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

SELECT_HELP = ("dbt-style selection: scene:NAME shot:GLOB character:NAME kind:KIND id:GLOB, "
               "+X (with what X needs), X+ (with what needs X); space = union, comma = "
               "intersection; repeatable")
OFFLINE_HELP = ("render every step with the built-in `local` backend: an animatic, with no "
                "network and no keys, whatever filmc.toml and the shots choose")
UNTIL_HELP = "stop before the more expensive stages (keyframe < clip < shot < film)"
FILE_HELP = ("FILE defaults to the project's film: the main .film file in the nearest "
             "folder, from here up, that holds filmc.toml (else in this folder)")
FORCE_HELP = "regenerate these steps even when cached (a selector, as for --select)"


USAGE_ERROR = 64  # sysexits.h EX_USAGE: never 2, which `filmc plan` uses for "work to do"


def fail(message: str, help: str | None = None, code: int = 1) -> int:
    """Print an error (and what to do) the one way every command does; the exit code."""
    print(f"error: {message}" + (f"\n  = help: {help}" if help else ""), file=sys.stderr)
    return code


def report(diags: Any, sources: Any, fmt: str = "text", strict: bool = False,
           summaries: Sequence[str] = ()) -> int:
    """Print diagnostics (and summaries) the one way every command does; the exit code."""
    from .lang.diagnostics import ERROR, TOO_MANY, WARNING, print_diagnostics

    items = _dedupe(diags.sorted())
    dropped = getattr(diags, "dropped", {})
    errors = sum(d.severity == ERROR for d in items if d.code != TOO_MANY)
    warnings = sum(d.severity == WARNING for d in items if d.code != TOO_MANY)
    errors += sum(n for (_f, sev), n in dropped.items() if sev == ERROR)
    warnings += sum(n for (_f, sev), n in dropped.items() if sev == WARNING)
    if fmt == "json":
        print_diagnostics(items, sources, "json", sys.stdout)
    else:
        print_diagnostics(items, sources)
        sys.stderr.flush()  # the summary comes after the diagnostics, even in one pipe
        for line in summaries:
            print(line)
        sys.stdout.flush()
        if items:
            print(count(errors, warnings), file=sys.stderr)
    return 1 if errors or (strict and warnings) else 0


def _dedupe(items: Sequence[Any]) -> list[Any]:
    seen = set()
    out = []
    for d in items:
        k = (d.code, d.message, d.span)
        if k not in seen:
            seen.add(k)
            out.append(d)
    return out


def human_bytes(n: float) -> str:
    """A size as a person reads it: `812 B`, `3.4 MB`, `1.2 GB`."""
    for unit in ("B", "KB", "MB", "GB"):
        if n < 1024 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n} B"


def count(errors: int, warnings: int) -> str:
    parts = []
    if errors:
        parts.append(f"{errors} error{'s' if errors != 1 else ''}")
    if warnings:
        parts.append(f"{warnings} warning{'s' if warnings != 1 else ''}")
    return "filmc: " + " and ".join(parts)


def compile_or_report(file: Path, offline: bool = False, burn_subtitles: bool = False,
                      memo: Any = None, kept: bool = False) -> Any:
    """The film compiled to its graph, or None after printing why not; warnings printed.
    `memo`: what a process that compiles the film again keeps (compiler/pipeline.py).
    `kept`: the memo left for the next command as this one ends (filmc/memocache.py):
    `memo`, or with none, the one the last command that compiled this film left."""
    from .compiler.pipeline import compile_film
    from .engine.lengths import lookup_for

    if kept and memo is None:
        from . import memocache

        memo = memocache.load(file, memocache.variant(offline, burn_subtitles))
    # The compiled film lives as long as the command: kept out of the cycle collector's
    # reach (frozen), a build's collections need not walk its million objects again and
    # again.
    result = compile_film(file, offline=offline, burn_subtitles=burn_subtitles,
                          said=lookup_for, memo=memo, keep=True)
    if kept:
        _keep(file, offline, burn_subtitles, memo, result)
    if not result.ok or result.graph is None:
        report(result.diags, result.sources)
        return None
    if result.diags.items:  # warnings: shown, not fatal
        report(result.diags, result.sources)
    return result


def _keep(file: Path, offline: bool, burn_subtitles: bool, memo: Any, result: Any) -> None:
    """Leave `memo`, as `result`'s compile left it, for the next command."""
    from . import memocache

    if result.project is not None:
        memocache.keep(file, memocache.variant(offline, burn_subtitles), memo, result.project)


def recompiler(file: Path, offline: bool = False, burn_subtitles: bool = False,
               memo: Any = None, kept: bool = False) -> Any:
    """What a build calls to compile the film again once it has said its lines (they time
    the dialogue: engine/build.py `_say_first`): the new program, or None after printing
    why it no longer compiles.  Its warnings were printed by the first compile.  `memo`:
    what the first compile used (`compile_or_report`, `filmc build --watch`), so that
    only the shots whose lines were said are keyed again; `kept`: the memo as this
    compile leaves it is the one left for the next command (the first compile's, before
    the lines were said, would time them by their estimates)."""

    def again() -> Any:
        from .compiler.pipeline import compile_film
        from .engine.lengths import lookup_for

        result = compile_film(file, offline=offline, burn_subtitles=burn_subtitles,
                              said=lookup_for, memo=memo, keep=True)
        if kept and memo is not None:
            _keep(file, offline, burn_subtitles, memo, result)
        if not result.ok or result.graph is None:
            report(result.diags, result.sources)
            return None
        return result.program()

    return again


def selection(graph: Any, specs: list[str]) -> frozenset[str] | None:
    """The selected node ids, or None for no selector; errors raise SelectorError."""
    if not specs:
        return None
    from .compiler.select import evaluate, parse_selector

    chosen = evaluate(graph, parse_selector(specs))
    for w in chosen.warnings:
        print(w.render(), file=sys.stderr)
    return chosen.nodes


def build_options(args: argparse.Namespace, graph: Any) -> tuple[Any, Any, Any] | int:
    """(selection, until, force) from `--select`, `--until`, `--force`; an exit code on a
    bad selector.  `plan` and `build` read the same options the same way."""
    from .compiler.select import SelectorError

    try:
        chosen = selection(graph, args.select)
        force = selection(graph, args.force) if args.force else frozenset()
    except SelectorError as e:
        print(e.render(), file=sys.stderr)
        return 1
    return chosen, args.until, force or frozenset()


def add_build_options(p: argparse.ArgumentParser, what: str) -> None:
    """`--select`, `--until`, `--force` and `--offline`, for `plan` and `build` alike."""
    p.add_argument("--select", "-s", action="append", default=[], metavar="SELECTOR",
                   help=SELECT_HELP + f" ({what})")
    p.add_argument("--until", choices=("keyframe", "clip", "shot", "film"), help=UNTIL_HELP)
    p.add_argument("--force", action="append", default=[], metavar="SELECTOR", help=FORCE_HELP)
    p.add_argument("--offline", action="store_true", help=OFFLINE_HELP)
    p.add_argument("--use-first", action="store_true",
                   help="make clips from the first candidate of each shot nobody has picked "
                        "(or whose pick is stale), instead of waiting for the pick")


def history(program: Any) -> Any:
    """What earlier builds of the program's project left, for `plan`; None if none."""
    from .engine.history import open_history

    return open_history(program)


def write_atomic(path: Path, text: str) -> None:
    """Replace a file's contents so that a crash leaves the old or the new text, never half
    (a new file gets mode 644; an old one keeps its mode)."""
    import contextlib
    import os
    import tempfile

    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8", newline="") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        with contextlib.suppress(OSError):
            os.chmod(tmp, path.stat().st_mode & 0o777 if path.exists() else 0o644)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
