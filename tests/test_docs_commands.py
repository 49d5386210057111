"""Every `filmc …` command shown in a code block of README.md or docs/*.md is one the CLI
accepts.

Each is run as written, offline, against a copy of the example film laid out as in the
repository (so `examples/wolfpack/film.film` resolves) with its own store, except those
that need a service, a server or minutes of rendering (`build`, `review`, `export`, `server`), which the
parser alone must accept. Synopses (`filmc pick [FILE] SHOT CANDIDATE`) are run with their
placeholders filled in. A command fails the test when the CLI calls it a usage error, or
when filmc crashes on it; an ordinary error (a shot not built yet, a file that is not
there) is not the docs' fault.
"""

from __future__ import annotations

import glob
import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import copy_example

ROOT = Path(__file__).resolve().parents[1]
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
FENCE = re.compile(r"^\s*(```+|~~~+)")
# Placeholders of synopses, and what stands in for them.
PLACEHOLDERS = {"FILE": "film.film", "FILM": "film.film", "SHOT": "chen_watches",
                "CANDIDATE": "comfyui-2", "TAKE": "take2", "IMAGE": "refs/chen_front.png",
                "CLIP.mp4": "clip.mp4", "N": "0", "H": "127.0.0.1", "DIR": "new_film",
                "SELECTOR": "shot:chen_watches"}
PARSE_ONLY = {"build", "review", "export", "server"}  # export: builds what the export names


def commands() -> list[tuple[str, int, str]]:
    """(doc, line, command) for every `filmc` command in a fenced code block."""
    out = []
    for doc in DOCS:
        inside = False
        for n, line in enumerate(doc.read_text(encoding="utf-8").splitlines(), 1):
            if FENCE.match(line):
                inside = not inside
                continue
            if not inside:
                continue
            for part in re.split(r"&&|;|\|", line.split(" #")[0]):
                part = part.strip().removeprefix("$ ")
                if part.startswith("filmc "):
                    out.append((doc.relative_to(ROOT).as_posix(), n, part))
    return out


COMMANDS = commands()


def test_the_docs_show_commands() -> None:
    """The extraction finds the README's tour (a test over nothing cannot fail)."""
    shown = {c for _d, _n, c in COMMANDS}
    assert "filmc check examples/wolfpack/film.film" in shown
    assert "filmc init demo" in shown
    assert len(COMMANDS) > 20


def argv(command: str) -> list[str]:
    words = shlex.split(command)[1:]
    if ">" in words:  # a redirection: the command is what comes before
        words = words[:words.index(">")]
    # `[FILE]`, `[--port N]`: an optional part, shown filled in.
    return [os.path.expanduser(PLACEHOLDERS.get(w.strip("[]"), w.strip("[]"))) for w in words]


@pytest.fixture(scope="module")
def tree(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A folder laid out like the repository: examples/wolfpack, a copy at tmp/wolfpack
    (the README's `cp -r` step), and the files the synopses name."""
    root = tmp_path_factory.mktemp("docs")
    example = copy_example(root / "examples" / "wolfpack")
    copy_example(root / "tmp" / "wolfpack")
    (example / "clip.mp4").write_bytes(b"not really a video")
    return root


def _expand(words: list[str], cwd: Path) -> list[str]:
    out = []
    for w in words:
        if "*" in w:
            found = sorted(glob.glob(w, root_dir=cwd))
            assert found, f"`{w}` matches no file"
            out += found
        else:
            out.append(w)
    return out


@pytest.mark.parametrize("doc,line,command", COMMANDS,
                         ids=[f"{d}:{n}" for d, n, _c in COMMANDS])
def test_documented_command_is_accepted(doc: str, line: int, command: str, tree: Path) -> None:
    from filmc.cli import _parser

    words = argv(command)
    where = f"{doc}:{line}: `{command}`"
    # The README's tour runs from the repository's root; the references' synopses in the
    # film's folder.
    cwd = tree if any("examples/" in w for w in words) else tree / "examples" / "wolfpack"
    if words[0] == "init":  # a new project: in a folder of its own
        cwd = tree / "scratch"
        cwd.mkdir(exist_ok=True)
    words = [w.replace("/tmp/wolfpack", str(tree / "tmp" / "wolfpack")) for w in words]
    words = _expand(words, cwd)
    try:
        args, extra = _parser().parse_known_args(words)
    except SystemExit as e:
        pytest.fail(f"{where}: the parser rejects it (exit {e.code})")
    assert not extra, f"{where}: unrecognized arguments {extra}"
    if args.command in PARSE_ONLY:
        return
    env = dict(os.environ, NO_COLOR="1", FILMC_STORE=str(tree / "store"),
               HOME=str(tree / "home"))
    r = subprocess.run([sys.executable, "-m", "filmc", *words], cwd=cwd, env=env,
                       capture_output=True, text=True, timeout=300)
    allowed = {0, 1, 2} if args.command == "plan" else {0, 1}  # 2: plan's "work to do"
    assert r.returncode in allowed, f"{where}: exit {r.returncode}\n{r.stderr[-2000:]}"
    assert "usage:" not in r.stderr and "Traceback" not in r.stderr, f"{where}:\n{r.stderr}"
