"""The no-op fast path: knowing that nothing changed without compiling anything.

After a full build that succeeded, `record` writes `.filmc/noop.json` in the
project: the options of that build, and the size, mtime and inode of every file
the build depended on — each `.film` file it loaded, `filmc.toml`, the
project's templates folder and files, the reference images, the files backend
settings name (a ComfyUI workflow), filmc's own code and data (the folders of
its packages, and the files in them), the modules of the adapters it used and
the files their keys describe (the ffmpeg the animatic runs, its font) — and of
every output it laid out, with the environment variables those keys depend on
(`FILMC_PANEL_FONT`...).  The next `filmc build` with the same options
calls `up_to_date` first, which imports nothing heavy (no parser, no graph
library): if every file still has the same stat, the film is built and the
build stops there.  Any difference, a file added to the templates folder, an
output deleted, falls through to the full build, which trusts nothing.
This is what ninja's log and Bazel's digest cache do.

filmc's own files are found from the packages loaded when the full build
records (never by walking a checkout: a development tree holds a virtualenv
and tests that no build reads), and the manifest names the filmc that wrote it
(where its package is): another installation of filmc (another virtualenv, a
checkout) building the same project is never told "up to date" by the files of
the one that recorded.

Must stay cheap to import: the standard library and `lang.paths` only.
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Iterable
from pathlib import Path

from ..lang.paths import find_root, stamp

VERSION = 4
NAME = "noop.json"
STATE_DIR = ".filmc"
_OWN = (".py", ".film", ".j2", ".lark", ".otf", ".ttf")


def _stat(path: str) -> list[int] | None:
    found = stamp(path)
    return None if found is None else list(found)  # as JSON holds it


def own_code(modules: Iterable[str] = ()) -> list[str]:
    """filmc's own folders and files whose change may change what a build makes, found
    from its loaded packages; plus the files of `modules` (adapters from elsewhere)."""
    out: set[str] = set()
    for name, module in list(sys.modules.items()):
        if name != "filmc" and not name.startswith("filmc."):
            continue
        for folder in getattr(module, "__path__", None) or ():
            out.add(folder)
            try:
                with os.scandir(folder) as entries:
                    out.update(e.path for e in entries if e.name.endswith(_OWN))
            except OSError:
                continue
    for name in modules:
        file = getattr(sys.modules.get(name), "__file__", None)
        if file:
            out.add(file)
    return sorted(out)


def _this_filmc() -> str:
    """The folder of the filmc package running now."""
    return os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def path_of(root: Path) -> Path:
    return root / STATE_DIR / NAME


def record(root: Path, options: dict, inputs: Iterable[str], outputs: Iterable[str],
           modules: Iterable[str] = (), env: Iterable[str] = ()) -> None:
    """Remember what a successful full build depended on and laid out; `env`: the
    environment variables (by name) its adapters' keys depend on."""
    files = sorted(set(inputs) | set(own_code(modules)))
    doc = {"version": VERSION, "filmc": _this_filmc(), "options": options,
           "env": {name: os.environ.get(name) for name in env},
           "inputs": [[p, _stat(p)] for p in files],
           "outputs": [[p, _stat(p)] for p in sorted(set(outputs))]}
    dest = path_of(root)
    tmp = dest.with_name(f".{NAME}.tmp")
    tmp.write_text(json.dumps(doc, separators=(",", ":")), encoding="utf-8")
    os.replace(tmp, dest)


def forget(root: Path) -> None:
    path_of(root).unlink(missing_ok=True)


def up_to_date(main: Path, options: dict) -> bool:
    """Whether the last full build with these options is still exactly current."""
    main = Path(os.path.abspath(main))
    try:
        doc = json.loads(path_of(find_root(main)).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    if doc.get("version") != VERSION or doc.get("options") != options \
            or doc.get("filmc") != _this_filmc():
        return False
    if any(os.environ.get(name) != value for name, value in doc.get("env", {}).items()):
        return False
    return all(_stat(path) == stat for path, stat in doc["inputs"] + doc["outputs"])
