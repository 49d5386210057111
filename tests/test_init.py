"""`filmc init`: a new project that checks clean, is formatted and builds offline as written,
whose commented services are real ones, and which nothing overwrites."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def filmc(*args: str, cwd: Path, store: Path) -> subprocess.CompletedProcess:
    env = dict(os.environ, NO_COLOR="1", FILMC_STORE=str(store))
    return subprocess.run([sys.executable, "-m", "filmc", *args], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=300)


def test_init_then_check_fmt_and_build_offline(tmp_path: Path) -> None:
    store = tmp_path / "store"
    r = filmc("init", "demo", cwd=tmp_path, store=store)
    assert r.returncode == 0, r.stderr
    demo = tmp_path / "demo"
    assert sorted(str(p.relative_to(demo)) for p in demo.rglob("*") if p.is_file()) == [
        ".gitignore", "cast.film", "film.film", "filmc.toml", "scenes/01_opening.film"]
    assert 'film "Demo"' in (demo / "film.film").read_text()
    assert "cd demo && filmc build --offline" in r.stdout
    ignored = (demo / ".gitignore").read_text().split("\n")
    assert "build/" in ignored and ".filmc/" in ignored

    # No file named: the project's film, as the README's first command runs it.
    r = filmc("check", "--strict", cwd=demo, store=store)
    assert r.returncode == 0 and r.stderr == "", r.stderr
    assert r.stdout == ('film.film: "Demo": 1 character, 1 location, 1 scene, 3 shots, '
                        "0:10 runtime\n")
    r = filmc("fmt", "--check", cwd=demo, store=store)
    assert r.returncode == 0 and r.stdout == "", r.stdout
    r = filmc("build", "--offline", "--quiet", cwd=demo, store=store)
    assert r.returncode == 0, r.stderr
    film = demo / "build" / "demo" / "film.mp4"
    assert r.stdout.strip() == str(film) and film.stat().st_size > 10_000
    # 16 steps of the film, its mix and its storyboard's index, 5 exports
    assert "23 ran" in r.stderr
    # What the build added is what .gitignore names: the outputs and the project's state.
    assert {p.name for p in demo.iterdir()} == {".gitignore", "cast.film", "film.film",
                                                 "filmc.toml", "scenes", "build", ".filmc"}


def test_init_refuses_an_existing_project(tmp_path: Path) -> None:
    store = tmp_path / "store"
    assert filmc("init", "p", cwd=tmp_path, store=store).returncode == 0
    (tmp_path / "p" / "cast.film").write_text("// mine\n")
    r = filmc("init", "p", cwd=tmp_path, store=store)
    assert r.returncode == 1
    assert r.stderr.startswith("error: `p` already holds a project: `filmc.toml`, "
                               "`cast.film`, `film.film`, `scenes/01_opening.film`\n")
    assert "help:" in r.stderr and "Traceback" not in r.stderr
    assert (tmp_path / "p" / "cast.film").read_text() == "// mine\n"  # untouched
    # A folder with only a .film file of the user's is a project too.
    (tmp_path / "q").mkdir()
    (tmp_path / "q" / "story.film").write_text('film "Q" {\n}\n')
    r = filmc("init", cwd=tmp_path / "q", store=store)
    assert r.returncode == 1 and "`story.film`" in r.stderr
    assert sorted(p.name for p in (tmp_path / "q").iterdir()) == ["story.film"]


def test_init_in_the_current_folder_keeps_its_gitignore(tmp_path: Path) -> None:
    (tmp_path / ".gitignore").write_text("*.swp\nbuild/\n")
    r = filmc("init", "--title", 'The "Sea"', cwd=tmp_path, store=tmp_path / ".filmc")
    assert r.returncode == 0, r.stderr
    assert "next: filmc build --offline" in r.stdout
    assert (tmp_path / ".gitignore").read_text() == ("*.swp\nbuild/\n\n# filmc's outputs and "
                                                     "store\n.filmc/\n")
    assert 'film "The \\"Sea\\"" {' in (tmp_path / "film.film").read_text()
    assert filmc("check", cwd=tmp_path, store=tmp_path / ".filmc").returncode == 0


def test_each_commented_service_is_a_valid_table_of_an_installed_adapter(tmp_path: Path) -> None:
    """Uncomment any one service table (and name its backend for a step it makes): the
    project still checks. So what `filmc init` offers is what this filmc accepts."""
    from filmc.backends.registry import installed

    store = tmp_path / "store"
    assert filmc("init", "p", cwd=tmp_path, store=store).returncode == 0
    project = tmp_path / "p"
    config = (project / "filmc.toml").read_text()
    blocks = re.findall(r"^# (\[backends\.(\w+)\].*?)(?=\n\n|\Z)", config, re.S | re.M)
    names = [name for _b, name in blocks]
    assert sorted(names) == sorted(t for t in installed() if t != "local")
    (project / "workflows").mkdir()
    (project / "workflows" / "keyframe_api.json").write_text(
        (ROOT / "examples" / "wolfpack" / "workflows" / "keyframe_api.json").read_text())
    from filmc.backends.registry import adapter_class

    checked = 0
    for block, name in blocks:
        cls = adapter_class(name)
        kinds = [k for k in ("keyframe", "clip", "sheet", "plate", "speech")
                 if k in getattr(cls, "kinds", ())]
        table = "\n".join(line.removeprefix("# ").removeprefix("#") for line in
                          block.split("\n"))
        if "model mapping" in table:  # fal, replicate: a mapping names the model
            continue
        text = config.replace("[steps]\n", f'[steps]\n{kinds[0]} = "{name}"\n') + "\n" + table
        (project / "filmc.toml").write_text(text)
        r = filmc("check", cwd=project, store=store)
        assert r.returncode == 0, (name, r.stderr)
        checked += 1
    assert checked >= 1
