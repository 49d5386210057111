"""The no-op fast path: knowing that nothing changed without compiling anything.

After a full build that succeeded, `record` writes `noop.json` in the store:
the options of that build, and the size, mtime and inode of every file the
build depended on — each `.film` file it loaded, `filmc.toml`, the project's
templates folder and the templates it used, the reference images, filmc's own
code — and of every output it laid out.  The next `filmc build` with the same
options calls `up_to_date` first, which imports nothing heavy (no parser, no
graph library): if every file still has the same stat, the film is built and
the build stops there.  Any difference, a file added to the templates folder,
an output deleted, falls through to the full build, which trusts nothing.
This is what ninja's log and Bazel's digest cache do.

Must stay cheap to import: the standard library and `lang.paths` only.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from ..lang.paths import find_root

VERSION = 1
NAME = "noop.json"
_PACKAGE = Path(__file__).resolve().parents[1]  # where filmc's own code is installed


def store_location(root: Path, configured: str | os.PathLike | None = None,
                   environ: dict | None = None) -> Path:
    """Where the store of the project at `root` lives: `$FILMC_STORE`, else the path
    filmc.toml configures (`[build] store`), else `root/.filmc`; relative to `root`."""
    chosen = (os.environ if environ is None else environ).get("FILMC_STORE", "") or configured
    if not chosen:
        return root / ".filmc"
    path = Path(chosen).expanduser()
    return path if path.is_absolute() else root / path


def configured_store(root: Path) -> str | None:
    """`[build] store` from filmc.toml, read without the config module (kept light)."""
    try:
        text = (root / "filmc.toml").read_text(encoding="utf-8")
    except OSError:
        return None
    if "store" not in text:
        return None
    import tomllib

    try:
        value = tomllib.loads(text).get("build", {}).get("store")
    except (tomllib.TOMLDecodeError, AttributeError):
        return None
    return value if isinstance(value, str) else None


def store_path(root: Path) -> Path:
    return store_location(root, configured_store(root))


def _stat(path: str) -> list[int] | None:
    try:
        st = os.stat(path)
    except OSError:
        return None
    return [st.st_size, st.st_mtime_ns, st.st_ino]


def own_code() -> list[str]:
    """filmc's own files whose change may change what a build makes."""
    out = []
    for dirpath, dirnames, filenames in os.walk(_PACKAGE):
        dirnames[:] = [d for d in dirnames if d != "__pycache__"]
        out += [os.path.join(dirpath, f) for f in filenames if f.endswith((".py", ".film", ".j2", ".lark"))]
    return sorted(out)


def record(store: Path, options: dict, inputs: list[str], outputs: list[str]) -> None:
    """Remember what a successful full build depended on and laid out."""
    files = sorted(set(inputs) | set(own_code()))
    doc = {"version": VERSION, "options": options,
           "inputs": [[p, _stat(p)] for p in files],
           "outputs": [[p, _stat(p)] for p in sorted(set(outputs))]}
    tmp = store / f".{NAME}.tmp"
    tmp.write_text(json.dumps(doc, separators=(",", ":")), encoding="utf-8")
    os.replace(tmp, store / NAME)


def forget(store: Path) -> None:
    Path(store / NAME).unlink(missing_ok=True)


def up_to_date(main: Path, options: dict) -> bool:
    """Whether the last full build with these options is still exactly current."""
    main = Path(os.path.abspath(main))
    try:
        doc = json.loads((store_path(find_root(main)) / NAME).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    if doc.get("version") != VERSION or doc.get("options") != options:
        return False
    return all(_stat(path) == stat for path, stat in doc["inputs"] + doc["outputs"])
