"""`filmc init [DIR]`: a new project that checks clean and builds offline as it is.

It writes a small film (filmc/project_template/: a main file, a cast file, one
scene), a commented `filmc.toml` whose service tables, commented out, are those
of the adapters installed here, and a `.gitignore` that keeps build outputs and
the store out of git. It never writes over an existing project.
"""

from __future__ import annotations

import argparse
import re
from pathlib import Path
from typing import Any

from .common import fail
from .lang.paths import CONFIG_FILE

TEMPLATE = Path(__file__).parent / "project_template"
GITIGNORE = """\
# filmc's outputs and its store of generated steps: rebuilt, never committed.
# Commit the .film files, filmc.toml, film.lock and refs/.
build/
.filmc/
"""

HEADER = """\
# filmc.toml: the project's backends, prices and store (every key: filmc's
# docs/config.md; every service: docs/backends.md).
#
# As it stands every step runs on the built-in `local` backend: an animatic,
# made on this machine, free, with no network and no keys. `filmc build --offline`
# does that whatever this file says.
#
# To use a service: uncomment its table below, export the environment variable
# it names (secrets never go in this file), and name it under [steps] for the
# step kinds it should make. `filmc plan` then shows what it would cost.

[steps]
# sheet = "local"       # character reference images (when no `ref` file is given)
# plate = "local"       # location plates (likewise)
# keyframe = "local"    # text + references -> image
# clip = "local"        # keyframe -> video
# speech = "local"      # dialogue line -> audio
# shot, film: conform and join, always on this machine

[build]
currency = "USD"
# store = ".filmc"      # the store of generated steps (FILMC_STORE overrides it)
"""

# Each installed service's table, commented out. The figures are illustrative: check
# each service's price list. A type installed here but not listed gets a bare table.
SERVICES: dict[str, str] = {
    "openai": """\
[backends.openai]                  # images and speech (or any OpenAI-compatible server)
type = "openai"
api_key_env = "OPENAI_API_KEY"
model = "gpt-image-1"
prices = { keyframe = 0.17, sheet = 0.17, plate = 0.17, speech = { per_second = 0.0003 } }""",
    "comfyui": """\
[backends.comfyui]                 # your own ComfyUI server, running your workflow
type = "comfyui"
url = "http://127.0.0.1:8188"
workflow = "workflows/keyframe_api.json"   # your workflow, exported in API format
prices = { keyframe = 0 }""",
    "kling": """\
[backends.kling]                   # clips (and images) from Kling
type = "kling"
access_key_env = "KLING_ACCESS_KEY"
secret_key_env = "KLING_SECRET_KEY"
model = "kling-v2-1"
prices = { clip = 0.49 }""",
    "seedance": """\
[backends.seedance]                # Seedance clips (BytePlus ModelArk, Volcengine Ark)
type = "seedance"
api_key_env = "ARK_API_KEY"
model = "seedance-1-0-pro-250528"
prices = { clip = { per_second = 0.10 } }""",
    "veo": """\
[backends.veo]                     # clips from Google's Veo
type = "veo"
api_key_env = "GEMINI_API_KEY"
model = "veo-3.1-generate-preview"
prices = { clip = { per_second = 0.40 } }""",
    "runway": """\
[backends.runway]                  # clips and images from Runway
type = "runway"
api_key_env = "RUNWAYML_API_SECRET"
prices = { clip = { per_second = 0.05 }, keyframe = 0.08 }""",
    "flux": """\
[backends.flux]                    # images from Black Forest Labs' FLUX
type = "flux"
api_key_env = "BFL_API_KEY"
prices = { keyframe = 0.05, sheet = 0.05, plate = 0.05 }""",
    "gemini_image": """\
[backends.gemini_image]            # images from Google's Gemini image models
type = "gemini_image"
api_key_env = "GEMINI_API_KEY"
model = "gemini-2.5-flash-image"
prices = { keyframe = 0.039, sheet = 0.039, plate = 0.039 }""",
    "minimax": """\
[backends.minimax]                 # MiniMax Hailuo clips
type = "minimax"
api_key_env = "MINIMAX_API_KEY"
prices = { clip = 0.28 }""",
}
MAPPED = {"fal": "FAL_KEY", "replicate": "REPLICATE_API_TOKEN"}


def add_parsers(sub: Any) -> None:
    i = sub.add_parser("init", help="start a new project: a small film that builds offline",
                       description="Write a new project into DIR (default: the current "
                                   "folder): a small film that checks clean and builds "
                                   "offline, a commented filmc.toml and a .gitignore. "
                                   "Refuses a folder that already holds a project.")
    i.add_argument("dir", nargs="?", type=Path, default=Path("."), metavar="DIR")
    i.add_argument("--title", help="the film's title (default: the folder's name)")
    i.set_defaults(run=_init)


def _init(args: argparse.Namespace) -> int:
    folder: Path = args.dir
    if folder.exists() and not folder.is_dir():
        return fail(f"`{folder}` exists and is not a folder", "name a new or empty folder")
    writes = [str(p.relative_to(TEMPLATE)) for p in sorted(TEMPLATE.rglob("*.film"))]
    there = [n for n in dict.fromkeys([CONFIG_FILE, *writes, *(p.name for p in _films(folder))])
             if (folder / n).exists()]
    if there:
        return fail(f"`{folder}` already holds a project: {', '.join(f'`{n}`' for n in there)}",
                    "`filmc init` never writes over files; name a new folder, "
                    "`filmc init NEW_FOLDER`")
    from .lang.ast import quote

    title = args.title or _title(folder)
    try:
        folder.mkdir(parents=True, exist_ok=True)
        for src in sorted(TEMPLATE.rglob("*.film")):
            dest = folder / src.relative_to(TEMPLATE)
            dest.parent.mkdir(parents=True, exist_ok=True)
            text = src.read_text(encoding="utf-8")
            if src.name == "film.film":
                text = text.replace('film "TITLE"', f"film {quote(title)}", 1)
            dest.write_text(text, encoding="utf-8")
        (folder / CONFIG_FILE).write_text(config_text(), encoding="utf-8")
        if not (folder / ".gitignore").exists():
            (folder / ".gitignore").write_text(GITIGNORE, encoding="utf-8")
        else:
            _add_ignores(folder / ".gitignore")
    except OSError as e:
        return fail(f"cannot write in `{folder}`: {e.strerror or e}",
                    f"check that `{folder}` is writable and the disk is not full")
    where = "" if folder.resolve() == Path.cwd().resolve() else f"cd {_shell(folder)} && "
    print(f'created the film "{title}" in {folder}: film.film, cast.film, '
          f"scenes/01_opening.film, {CONFIG_FILE}, .gitignore")
    print(f"next: {where}filmc build --offline   # the animatic, on this machine, free")
    return 0


def config_text() -> str:
    """filmc.toml for a new project: every step local, each installed service's table
    commented out."""
    from .backends.registry import installed

    types = sorted(t for t in installed() if t != "local")
    blocks = []
    for t in types:
        if t in SERVICES:
            blocks.append(SERVICES[t])
        elif t in MAPPED:
            blocks.append(f'[backends.{t}]\ntype = "{t}"\napi_key_env = "{MAPPED[t]}"\n'
                          f"# and a model mapping per step kind: docs/backends.md, `{t}`")
        elif re.fullmatch(r"[A-Za-z_][A-Za-z0-9_-]*", t):
            blocks.append(f'[backends.{t}]                  # an adapter package installed '
                          f'here\ntype = "{t}"')
    out = HEADER
    if blocks:
        out += ("\n# The services whose adapters are installed here, commented out. The "
                "prices are\n# illustrative: check each service's price list.\n")
        for b in blocks:
            out += "\n" + "\n".join(f"# {line}" for line in b.splitlines()) + "\n"
    return out


def _films(folder: Path) -> list[Path]:
    return sorted(folder.glob("*.film")) if folder.is_dir() else []


def _add_ignores(path: Path) -> None:
    lines = path.read_text(encoding="utf-8", errors="replace").splitlines()
    missing = [p for p in ("build/", ".filmc/") if p not in {x.strip() for x in lines}]
    if missing:
        with path.open("a", encoding="utf-8") as f:
            f.write(("\n" if lines else "") + "# filmc's outputs and store\n"
                    + "".join(f"{p}\n" for p in missing))


def _title(folder: Path) -> str:
    name = folder.resolve().name or "Untitled"
    words = re.split(r"[-_ ]+", name)
    return " ".join(w[:1].upper() + w[1:] for w in words if w) or name


def _shell(folder: Path) -> str:
    s = str(folder)
    return s if re.fullmatch(r"[\w./-]+", s) else "'" + s.replace("'", "'\\''") + "'"

