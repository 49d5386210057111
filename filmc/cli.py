"""The `filmc` command line: the thin front door to the stages.

Every user-facing failure is a diagnostic; a Python traceback appears only for
a bug, and only with `--debug` (otherwise a one-line "internal error" asks for
a report).  Exit codes: 0 clean, 1 errors (or warnings with `--strict`), 2
usage errors (argparse's convention).
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import os
import sys
import time
from collections.abc import Sequence
from pathlib import Path

from . import __version__


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="filmc", description="A compiler and build system for films made with generative AI.")
    p.add_argument("--version", action="version", version=f"filmc {__version__}")
    p.add_argument("--debug", action="store_true", help="show Python tracebacks for internal errors")
    sub = p.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True

    c = sub.add_parser("check", help="check .film files and print a summary of each film",
                       description="Parse and check films: names, attributes, values and files. "
                                   "Exit 0 when clean, 1 on errors (or on warnings with --strict).")
    c.add_argument("files", nargs="+", metavar="FILE", type=Path, help="a film's main .film file")
    c.add_argument("--strict", action="store_true", help="fail on warnings too")
    c.add_argument("--format", choices=("text", "json"), default="text",
                   help="how to print diagnostics (json: one array on stdout)")
    c.add_argument("--timings", action="store_true",
                   help="print the time spent parsing and checking, on stderr")
    c.set_defaults(run=_check)

    f = sub.add_parser("fmt", help="format .film files in the one canonical layout",
                       description="Rewrite .film files in the canonical layout, keeping comments.")
    f.add_argument("files", nargs="+", metavar="FILE", type=Path)
    f.add_argument("--check", action="store_true",
                   help="change nothing; exit 1 and name the files that would change")
    f.add_argument("--format", choices=("text", "json"), default="text")
    f.set_defaults(run=_fmt)

    from . import build_cmd, compile_cmds, pick_cmds

    compile_cmds.add_parsers(sub)
    build_cmd.add_parsers(sub)
    pick_cmds.add_parsers(sub)
    return p


def entry() -> None:
    """The `filmc` console script: run, flush, and leave without tearing down the heap.

    A compile leaves about a million objects; freeing them one by one at interpreter
    exit takes longer than a third of the compile itself, for nothing. Every file
    filmc writes is closed (and fsynced) before `main` returns, so nothing is lost.
    """
    code = main()
    try:
        sys.stdout.flush()
        sys.stderr.flush()
    except BrokenPipeError:
        code = code or 1
    os._exit(code)


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    # A compile allocates a few hundred thousand long-lived objects; the default GC
    # thresholds rescan them all dozens of times (a third of compile time on a feature).
    gc.set_threshold(100_000, 50, 100)
    try:
        return args.run(args)
    except KeyboardInterrupt:
        print("filmc: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        return 1
    except Exception:
        if args.debug:
            raise
        import traceback

        last = traceback.extract_tb(sys.exc_info()[2])[-1]
        print(f"filmc: internal error ({sys.exc_info()[0].__name__} at "
              f"{Path(last.filename).name}:{last.lineno}); this is a bug in filmc — please "
              f"report it with the input that caused it (run with --debug for the traceback)",
              file=sys.stderr)
        return 3


def _check(args: argparse.Namespace) -> int:
    from .common import report
    from .compiler.lock import lock_path
    from .compiler.pipeline import compile_film
    from .lang.diagnostics import Diagnostics
    from .lang.loader import Loader

    diags = Diagnostics()
    loader = Loader(diags)
    summaries: list[str] = []
    started = time.perf_counter()
    for file in args.files:
        # With a lock, compile to the graph: a pick is stale when its candidate's key moved.
        until = "graph" if lock_path(file).is_file() else "check"
        result = compile_film(file, until=until, diags=diags, loader=loader)
        if result.checked is not None:
            summaries.append(result.checked.summary.line(result.project.main.display))
    if args.timings:
        total = time.perf_counter() - started
        print(f"timings: parse {loader.read_seconds * 1000:.0f} ms, check "
              f"{(total - loader.read_seconds) * 1000:.0f} ms, total {total * 1000:.0f} ms "
              f"(in process, after start-up)", file=sys.stderr)
    return report(diags, loader.sources, args.format, args.strict, summaries)


def _fmt(args: argparse.Namespace) -> int:
    from .lang.diagnostics import Diagnostics, Sources, print_diagnostics
    from .lang.fmt import format_text

    diags = Diagnostics()
    sources = Sources()
    changed: list[str] = []
    for file in args.files:
        try:
            text = file.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as e:
            reason = "not UTF-8 text" if isinstance(e, UnicodeDecodeError) else e.strerror
            diags.error("F0401", f"cannot read `{file}`: {reason}", None)
            continue
        display = str(file)
        sources.add(display, text)
        out = format_text(text, display, diags)
        if out is None or out == text:
            continue
        changed.append(display)
        if not args.check:
            _write_atomic(file, out)
    print_diagnostics(diags.sorted(), sources, args.format,
                      sys.stdout if args.format == "json" else None)
    if args.check:
        for name in changed:
            print(f"would reformat {name}")
    elif changed:
        for name in changed:
            print(f"formatted {name}")
    if diags.errors:
        return 1
    return 1 if (args.check and changed) else 0


def _write_atomic(path: Path, text: str) -> None:
    """Replace a file's contents so that a crash leaves the old or the new text, never half."""
    import os
    import tempfile

    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8", newline="") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        with contextlib.suppress(OSError):
            os.chmod(tmp, path.stat().st_mode & 0o777)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
