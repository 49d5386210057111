"""`filmc export` and `filmc import`: the cut out to an editor, a screenplay in.

    filmc export [FILE] --format otio|edl|fcpxml|srt|csv [-o PATH]
    filmc import SCREENPLAY.fountain [-o DIR] [--title TITLE]

`export` builds the one `export.<format>` step (compiler/exports.py) and what it
is made from, like `filmc build --select export.<format>`, then names the file
laid out under build/<film>/export/ and, with `-o`, copies it there.  `import`
reads a Fountain screenplay (lang/fountain.py) and writes a new project of its
first breakdown (lang/breakdown.py) that checks clean, is formatted, and builds
offline.
"""

from __future__ import annotations

import argparse
import os
import shutil
from pathlib import Path
from typing import Any

from .common import FILE_HELP, OFFLINE_HELP, compile_or_report, fail, recompiler

FORMATS = ("otio", "edl", "fcpxml", "srt", "csv")


def add_parsers(sub: Any) -> None:
    e = sub.add_parser(
        "export", help="write the cut for an editor: OpenTimelineIO, EDL, FCPXML, SRT, CSV",
        description="Build the film's export in one format (and what it is made from), lay "
                    "it out under build/<film>/export/, and copy it to PATH with -o. otio: "
                    "every shot with every candidate and take, the pick active, the "
                    "dialogue, scene markers, metadata; edl and fcpxml: the active take of "
                    "each shot; srt: the subtitles; csv: the shot list.")
    e.add_argument("file", nargs="?", type=Path, metavar="FILE", help=FILE_HELP)
    e.add_argument("--format", "-f", required=True, choices=FORMATS,
                   help="otio, edl (CMX 3600), fcpxml (Final Cut Pro X), srt or csv")
    e.add_argument("-o", "--output", type=Path, metavar="PATH",
                   help="also copy the export to PATH (a file, or a folder to put it in)")
    e.add_argument("--offline", action="store_true", help=OFFLINE_HELP)
    e.add_argument("--use-first", action="store_true",
                   help="make clips from the first candidate of each shot nobody has picked, "
                        "instead of waiting for the pick")
    e.add_argument("--jobs", "-j", type=int, default=os.cpu_count() or 2,
                   help="steps running at once on this machine (default: the cores)")
    e.add_argument("--quiet", "-q", action="store_true",
                   help="print failures and the summary only")
    e.set_defaults(run=_export)

    i = sub.add_parser(
        "import", help="start a project from a Fountain screenplay",
        description="Read a Fountain screenplay and write a new project of its first "
                    "breakdown: the film header from the title page, a scene a heading, a "
                    "location a place, a character a speaker, a shot an action beat with "
                    "its dialogue. It checks clean and builds offline as it is. Refuses a "
                    "folder that already holds a project.")
    i.add_argument("screenplay", type=Path, metavar="SCREENPLAY",
                   help="a Fountain file (.fountain)")
    i.add_argument("-o", "--output", type=Path, metavar="DIR",
                   help="the new project's folder (default: the screenplay's name, here)")
    i.add_argument("--title", help="the film's title (default: the title page's)")
    i.set_defaults(run=_import)


def _export(args: argparse.Namespace) -> int:
    from .build_cmd import finished, run_build
    from .engine.build import Options
    from .lang.files import export_file

    result = compile_or_report(args.file, offline=args.offline)
    if result is None:
        return 1
    node = f"export.{args.format}"
    options = Options(jobs=max(1, args.jobs), selection=frozenset({node}),
                      use_first=args.use_first)
    done = run_build(result, options, args.quiet, again=recompiler(args.file, args.offline))
    if isinstance(done, int):
        return done
    ended = finished(done, args.debug)
    if ended is not None:
        return ended
    outcome = next(o for o in done.outcomes if o.id == node)
    if outcome.status == "waiting":
        return fail(f"`{node}` is not made: {outcome.error}",
                    "pick with `filmc review` or `filmc pick SHOT CANDIDATE`, or export "
                    "with `--use-first`")
    if outcome.status not in ("ran", "cached"):
        return fail(f"`{node}` is not made: {outcome.error or outcome.status}",
                    "fix what failed above and export again")
    made = done.folder / export_file(args.format)
    if args.output is None:
        print(made)
        return 0
    dest: Path = args.output / made.name if args.output.is_dir() else args.output
    try:
        dest.parent.mkdir(parents=True, exist_ok=True)
        tmp = dest.with_name(f".{dest.name}.tmp")
        shutil.copyfile(made, tmp)
        os.replace(tmp, dest)
    except OSError as e:
        return fail(f"cannot write `{dest}`: {e.strerror or e}",
                    f"check that `{dest.parent}` is writable and the disk is not full")
    print(dest)
    return 0


def _import(args: argparse.Namespace) -> int:
    from .common import report
    from .init_cmd import GITIGNORE, config_text
    from .lang.breakdown import breakdown
    from .lang.diagnostics import Diagnostics, Sources
    from .lang.fountain import parse_fountain
    from .lang.loader import display_path
    from .lang.paths import CONFIG_FILE

    source: Path = args.screenplay
    diags, sources = Diagnostics(), Sources()
    try:
        text = source.read_bytes().decode("utf-8")
    except FileNotFoundError:
        return fail(f"no screenplay at `{source}`", "name a Fountain file (.fountain)")
    except IsADirectoryError:
        return fail(f"`{source}` is a folder", "name a Fountain file (.fountain)")
    except OSError as e:
        return fail(f"cannot read `{source}`: {e.strerror or e}")
    except UnicodeDecodeError as e:
        line = source.read_bytes()[:e.start].count(b"\n") + 1
        return fail(f"`{source}` is not UTF-8 text (line {line})",
                    "save the screenplay as UTF-8 (Fountain files are plain UTF-8 text)")
    shown = display_path(source.resolve()) if source.is_absolute() else str(source)
    sources.add(shown, text.replace("\r\n", "\n").replace("\r", "\n").lstrip("\ufeff"))
    play = parse_fountain(text, shown, diags)
    if play is None:
        return report(diags, sources)
    folder: Path = args.output or Path(_folder_name(source))
    files = breakdown(play, args.title)
    if folder.exists() and not folder.is_dir():
        return fail(f"`{folder}` exists and is not a folder", "name a new or empty folder")
    there = [n for n in [CONFIG_FILE, *files] if (folder / n).exists()]
    if folder.is_dir():
        there += [p.name for p in sorted(folder.glob("*.film")) if p.name not in there]
    if there:
        return fail(f"`{folder}` already holds a project: {', '.join(f'`{n}`' for n in there)}",
                    "`filmc import` never writes over files; name a new folder with `-o DIR`")
    try:
        for rel, body in files.items():
            dest = folder / rel
            dest.parent.mkdir(parents=True, exist_ok=True)
            dest.write_text(body, encoding="utf-8")
        (folder / CONFIG_FILE).write_text(config_text(), encoding="utf-8")
        if not (folder / ".gitignore").exists():
            (folder / ".gitignore").write_text(GITIGNORE, encoding="utf-8")
    except OSError as e:
        return fail(f"cannot write in `{folder}`: {e.strerror or e}",
                    f"check that `{folder}` is writable and the disk is not full")
    if diags.items:
        report(diags, sources)
    scenes = sum(1 for rel in files if rel.startswith("scenes/"))
    print(f"imported {shown} into {folder}: {scenes} scene{'s' if scenes != 1 else ''} "
          f"in scenes/, the cast in cast.film, the header in film.film, {CONFIG_FILE}")
    print(f"next: filmc check {folder / 'film.film'} && filmc build --offline "
          f"{folder / 'film.film'}")
    return 0


def _folder_name(source: Path) -> str:
    name = source.stem.strip() or "film"
    return name if not Path(name).exists() or Path(name).is_dir() else name + "_film"
