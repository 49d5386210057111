"""The `filmc` command line: the thin front door to the stages.

Every user-facing failure is a diagnostic; a Python traceback appears only for
a bug, and only with `--debug` (otherwise a one-line "internal error" asks for
a report).  Exit codes: 0 clean, 1 errors (or warnings with `--strict`), 64 a
usage error (sysexits' EX_USAGE: never 2, which `filmc plan` uses for "work to do").

A command that takes a FILE and is given none uses the project's film, found as
cargo finds `Cargo.toml` (filmc/project.py); `check` and `fmt` take folders too.
"""

from __future__ import annotations

import argparse
import gc
import os
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import NoReturn

from . import __version__
from .common import USAGE_ERROR, write_atomic


class Parser(argparse.ArgumentParser):
    """argparse, but a usage error exits 64 (argparse's own 2 is `plan`'s "work to do")
    and says where to look."""

    def error(self, message: str) -> NoReturn:
        self.print_usage(sys.stderr)
        self.exit(USAGE_ERROR, f"error: {message}\n  = help: `{self.prog} --help` lists "
                               f"the arguments and options\n")


def _parser() -> argparse.ArgumentParser:
    p = Parser(
        prog="filmc", description="A compiler and build system for films made with generative AI.")
    p.add_argument("--version", action="version", version=f"filmc {__version__}")
    p.add_argument("--debug", action="store_true", help="show Python tracebacks for internal errors")
    sub = p.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True

    c = sub.add_parser("check", help="check .film files and print a summary of each film",
                       description="Parse and check films: names, attributes, values and files. "
                                   "Exit 0 when clean, 1 on errors (or on warnings with --strict).")
    c.add_argument("files", nargs="*", metavar="FILE", type=Path,
                   help="a film's main .film file, or a folder: the films under it (default: "
                        "the project's film, in or above the current folder)")
    c.add_argument("--strict", action="store_true", help="fail on warnings too")
    c.add_argument("--format", choices=("text", "json"), default="text",
                   help="how to print diagnostics (json: one array on stdout)")
    c.add_argument("--timings", action="store_true",
                   help="print the time spent parsing and checking, on stderr")
    c.set_defaults(run=_check)

    f = sub.add_parser("fmt", help="format .film files in the one canonical layout",
                       description="Rewrite .film files in the canonical layout, keeping comments.")
    f.add_argument("files", nargs="*", metavar="FILE", type=Path,
                   help="a .film file, or a folder: every .film file under it, outside "
                        "build/ and .filmc/ (default: the project folder)")
    f.add_argument("--check", action="store_true",
                   help="change nothing; exit 1 and name the files that would change")
    f.add_argument("--diff", action="store_true",
                   help="show each change as a unified diff (with --check: change nothing)")
    f.add_argument("--format", choices=("text", "json"), default="text")
    f.add_argument("--stdout", action="store_true",
                   help="print one file's formatted text (the file as it is when it does not "
                        "parse) and change nothing: git's diff driver (`filmc git setup`)")
    f.set_defaults(run=_fmt)

    from . import build_cmd, compile_cmds, git_cmds, gitsetup_cmd, init_cmd, lsp, pick_cmds, server

    init_cmd.add_parsers(sub)
    compile_cmds.add_parsers(sub)
    build_cmd.add_parsers(sub)
    pick_cmds.add_parsers(sub)
    gitsetup_cmd.add_parsers(sub)  # `filmc git setup`, `filmc git merge-lock`
    git_cmds.add_parsers(sub)
    from . import interchange_cmds  # `export`, `import`

    interchange_cmds.add_parsers(sub)
    from . import cache_cmd  # `cache status|push|pull`: the team's remote cache

    cache_cmd.add_parsers(sub)
    server.add_parsers(sub)  # `server start|stop|status`
    lsp.add_parsers(sub)
    return p


def entry() -> None:
    """The `filmc` console script: run, flush, and leave without tearing down the heap.

    A compile leaves about a million objects; freeing them one by one at interpreter
    exit takes longer than a third of the compile itself, for nothing. Every file
    filmc writes is closed (and fsynced) before `main` returns, so nothing is lost.
    """
    from .server import delegate, start_wanted

    code = delegate(sys.argv[1:])  # the project's server runs it (filmc/server.py)
    if code is None:
        code = finish(main())
        start_wanted()  # FILMC_SERVER=auto: for the commands to come
    os._exit(code)


def finish(code: int, memo: bool = True) -> int:
    """What a command's process does as it ends: its output flushed, the compile's memo
    handed to a child that writes it for the next command (not `memo`: left to the
    caller); the exit code."""
    try:
        sys.stdout.flush()
        sys.stderr.flush()
    except BrokenPipeError:
        code = code or 1
    if memo and "filmc.memocache" in sys.modules:  # the compile's memo, for the next
        from . import memocache  # command: written by a child, not waited for

        memocache.write_kept()
    return code


def main(argv: Sequence[str] | None = None) -> int:
    from .common import fail
    from .project import NoFilm, find_film

    parser = _parser()
    args, extra = parser.parse_known_args(argv)
    if extra:  # said by the command's own name, not by `filmc`'s
        command = " ".join(filter(None, (args.command, getattr(args, "take_command", None))))
        print(f"error: unrecognized arguments: {' '.join(extra)}\n  = help: `filmc {command} "
              f"--help` lists its arguments and options", file=sys.stderr)
        return USAGE_ERROR
    if getattr(args, "file", False) is None:
        try:  # no FILE: the project's film, in or above the current folder
            args.file = find_film()
        except NoFilm as e:
            return fail(e.message, e.hint)
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
    from .common import fail, report
    from .compiler.lock import lock_path
    from .compiler.pipeline import compile_film
    from .lang.diagnostics import Diagnostics
    from .lang.loader import Loader
    from .project import NoFilm, film_files, find_film, is_main

    diags = Diagnostics()
    loader = Loader(diags)
    summaries: list[str] = []
    started = time.perf_counter()
    try:
        given: list[Path] = args.files or [find_film()]
    except NoFilm as e:
        return fail(e.message, e.hint)
    # A folder: the films under it, then any .film file none of them loads.
    queue: list[tuple[Path, bool]] = []
    for arg in given:
        if arg.is_dir():
            files = film_files(arg)
            if not files:
                return fail(f"no `.film` files in `{arg}`",
                            "name a film's main file, or a folder that holds one")
            mains = {f for f in files if is_main(f)}
            queue += [(f, False) for f in files if f in mains]
            queue += [(f, True) for f in files if f not in mains]
        else:
            queue.append((arg, False))
    loaded: set[str] = set()
    in_films: dict = {}  # a film's main file → its diagnostics, for the parts checked in it
    for file, only_if_unloaded in queue:
        if only_if_unloaded and os.path.abspath(file) in loaded:
            continue
        if not is_main(file) and _check_part(file, diags, loader, summaries, in_films):
            continue  # a part, checked in the film that names it
        # With a lock, compile to the graph: a pick is stale when its candidate's key moved.
        until = "graph" if lock_path(file).is_file() else "check"
        errors = len(diags.errors)
        result = compile_film(file, until=until, diags=diags, loader=loader)
        if result.project is not None:
            loaded |= {str(f.path) for f in result.project.files}
        # No counts or runtime from a film with errors: they would be computed from broken input.
        if result.checked is not None and len(diags.errors) == errors:
            summaries.append(result.checked.summary.line(result.project.main.display))
    if args.timings:
        total = time.perf_counter() - started
        print(f"timings: parse {loader.read_seconds * 1000:.0f} ms, check "
              f"{(total - loader.read_seconds) * 1000:.0f} ms, total {total * 1000:.0f} ms "
              f"(in process, after start-up)", file=sys.stderr)
    return report(diags, loader.sources, args.format, args.strict, summaries)


def _check_part(file: Path, diags, loader, summaries: list[str], in_films: dict) -> bool:
    """`filmc check scenes/02.film`: a file with no `film` header that a film names as a
    part (or `use`s) is checked in that film, and only its own diagnostics are shown.
    False when no film names it (it is then checked on its own)."""
    from .compiler.pipeline import compile_film
    from .lang.diagnostics import Diagnostics
    from .lang.loader import Loader, display_path, films_including

    mains = films_including(file)
    shown = display_path(Path(os.path.normpath(Path.cwd() / file)))
    if len(mains) > 1:
        names = " or ".join(f"`filmc check {display_path(m)}`" for m in mains)
        diags.error("F0411", f"`{shown}` is in {len(mains)} films: which one to check it in?",
                    None, help=f"check it in its film: {names}")
        return True
    if not mains:
        return False
    if mains[0] not in in_films:
        own = Diagnostics()
        result = compile_film(mains[0], until="check", diags=own,
                              loader=Loader(own, loader.sources))
        in_films[mains[0]] = (own, result)
    own, result = in_films[mains[0]]
    mine = [d for d in own if d.span is not None and d.span.file == shown]
    diags.extend(mine)
    elsewhere = len(own.errors) - sum(d.severity == "error" for d in mine)
    main = os.path.relpath(mains[0])
    line = f"{shown}: checked as part of `{main}`"
    if result.checked is not None and result.checked.summary.title is not None:
        line += f' ("{result.checked.summary.title}")'
    if elsewhere:
        line += (f"; the film has {elsewhere} more error{'s' if elsewhere != 1 else ''} in "
                 f"other files (`filmc check {main}`)")
    summaries.append(line)
    return True


def _fmt(args: argparse.Namespace) -> int:
    from .common import fail
    from .lang.diagnostics import Diagnostics, Sources, print_diagnostics
    from .lang.fmt import format_text
    from .project import NoFilm, film_files, find_film

    if args.stdout:  # git's textconv: one file, printed, never a failure for what it says
        from .gitsetup_cmd import fmt_stdout

        return fmt_stdout(args.files)
    diags = Diagnostics()
    sources = Sources()
    changed: list[str] = []
    try:  # no FILE: every .film file of the project folder
        given: list[Path] = args.files or [_project_folder(find_film())]
    except NoFilm as e:
        return fail(e.message, e.hint)
    files = [f for arg in given for f in (film_files(arg) if arg.is_dir() else [arg])]
    for file in files:
        try:  # bytes, then decode: reading text would hide the CRLFs `fmt` normalises
            text = file.read_bytes().decode("utf-8")
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
        if args.diff:
            sys.stdout.writelines(_diff(text, out, display))
        if not args.check:
            write_atomic(file, out)
    print_diagnostics(diags.sorted(), sources, args.format,
                      sys.stdout if args.format == "json" else None)
    if args.check:
        for name in changed:
            print(f"would reformat {name}", file=sys.stderr if args.diff else sys.stdout)
    elif changed:
        for name in changed:
            print(f"formatted {name}", file=sys.stderr if args.diff else sys.stdout)
    if diags.errors:
        return 1
    return 1 if (args.check and changed) else 0


def _project_folder(main: Path) -> Path:
    """The folder whose .film files are the project's: the one with filmc.toml, else the
    main file's own."""
    from .lang.paths import find_root

    root = find_root(main.resolve())
    return Path(os.path.relpath(root))


def _diff(old: str, new: str, name: str) -> list[str]:
    """A unified diff, `a/NAME` to `b/NAME` as git shows it; a line ending that changed
    shows as `\\r` at the end of the old line."""
    import difflib

    before = [line.replace("\r", "\\r") + "\n" for line in old.split("\n")]
    after = [line + "\n" for line in new.split("\n")]
    if before and before[-1] == "\n":
        before.pop()
    if after and after[-1] == "\n":
        after.pop()
    return list(difflib.unified_diff(before, after, f"a/{name}", f"b/{name}"))


