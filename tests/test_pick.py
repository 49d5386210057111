"""The production loop as a user drives it: `filmc pick`, `filmc lock`, `filmc take add`,
and what the next build, `check`, `plan`, `gc` and a fresh clone do with film.lock.

A tiny film (192x80, one-second shots) built offline with the local backend: shot
`a1` has three keyframe candidates and two clip takes, `a2` one of each, `b1` two
candidates and one take.  Every command runs as a user runs it (`python -m filmc`,
in the project folder, a store of the test's own in FILMC_STORE); what is checked
is what a person would check: the lock's text, which steps the build report says
ran, the keys and digests the graph and the store give, and the frames of the
clips, read with real ffmpeg.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path
from typing import Any

import pytest
from PIL import Image, ImageChops, ImageStat

FILM = """\
use std.camera

film "Tiny" {
  size 192x80
  fps 24
  takes 1
}

character ANA "Ana" {
  look "a tall woman in a red coat"
}

location PIER "Pier" {
  look "a wooden pier over grey water"
}

scene one "Morning" EXT PIER DAWN {
  shot a1 1s {
    camera wide
    cast ANA
    candidates 3
    takes 2
    action "Ana walks along the pier."
  }
  shot a2 1s {
    camera close_up
    cast ANA
    action "She stops."
  }
}

scene two "Noon" EXT PIER NOON {
  shot b1 1s {
    camera medium
    cast ANA
    candidates 2
    action "She waves."
  }
}
"""
A1 = "keyframe.one.a1"
OUT = Path("build") / "t"


@pytest.fixture(autouse=True)
def _no_user_state(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in list(os.environ):
        if name.startswith("FILMC_"):
            monkeypatch.delenv(name)


class Project:
    """A copy of the built film, with a store of its own, and the commands a user types."""

    def __init__(self, root: Path, store: Path) -> None:
        self.root, self.store = root, store

    def run(self, *args: str, store: Path | None = None,
            cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
        env = {**os.environ, "NO_COLOR": "1", "FILMC_STORE": str(store or self.store)}
        r = subprocess.run([sys.executable, "-m", "filmc", *args], cwd=cwd or self.root,
                           env=env, capture_output=True, text=True, timeout=120)
        assert "Traceback" not in r.stderr, r.stderr
        return r

    def ok(self, *args: str, **kw: Any) -> subprocess.CompletedProcess[str]:
        r = self.run(*args, **kw)
        assert r.returncode == 0, (args, r.stdout, r.stderr)
        return r

    def build(self, *args: str, **kw: Any) -> dict[str, dict[str, Any]]:
        """Build offline; the report's steps by id."""
        self.ok("build", "--offline", *args, "t.film", **kw)
        return report(kw.get("cwd") or self.root)

    def fails(self, *args: str) -> str:
        """Run a command that must fail cleanly, leaving the lock as it was; its stderr."""
        before = self.lock_text()
        r = self.run(*args)
        assert r.returncode == 1, (args, r.stdout, r.stderr)
        assert r.stderr.startswith("error: ") and "\n  = help: " in r.stderr, r.stderr
        assert self.lock_text() == before
        assert not list(self.root.glob(".t.lock.*")), "a temporary lock was left behind"
        return r.stderr

    def lock_text(self) -> str:
        path = self.root / "t.lock"
        return path.read_bytes().decode("utf-8") if path.exists() else ""

    def lock(self) -> dict[str, Any]:
        return tomllib.loads(self.lock_text())

    def edit(self, old: str, new: str) -> None:
        film = self.root / "t.film"
        text = film.read_text(encoding="utf-8")
        assert text.count(old) == 1, old
        film.write_text(text.replace(old, new), encoding="utf-8")

    def graph(self) -> Any:
        """The step graph, as the compiler gives it (the keys a pick must name)."""
        from filmc.compiler.pipeline import compile_film

        result = compile_film(self.root / "t.film")
        assert not result.diags.errors
        return result.graph

    def key(self, node: str) -> str:
        return str(self.graph().nodes[node]["step"].key)

    def obj(self, digest: str, store: Path | None = None) -> Path:
        return (store or self.store) / "objects" / digest[:2] / digest

    def plan_shots(self, selector: str) -> set[str]:
        """The shots whose steps `plan --json --select SELECTOR` lists."""
        r = self.run("plan", "--json", "--select", selector, "t.film")
        assert r.returncode in (0, 2), r.stderr
        return {s["shot"] for s in json.loads(r.stdout)["steps"] if s["shot"]}


def report(root: Path) -> dict[str, dict[str, Any]]:
    steps = json.loads((root / OUT / "report.json").read_text(encoding="utf-8"))["steps"]
    return {s["id"]: s for s in steps}


def ran(steps: dict[str, dict[str, Any]]) -> set[str]:
    """What ran, but the exports: they follow any pick (tests/test_export.py)."""
    return {i for i, s in steps.items() if s["status"] == "ran" and not i.startswith("export.")}


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> Path:
    base = tmp_path_factory.mktemp("pick")
    (base / "p").mkdir()
    (base / "p" / "t.film").write_text(FILM, encoding="utf-8")
    Project(base / "p", base / "store").build()
    return base


@pytest.fixture
def project(built: Path, tmp_path: Path) -> Project:
    """A copy of the built film and its store that a test may change."""
    shutil.copytree(built / "p", tmp_path / "p", symlinks=True)
    shutil.copytree(built / "store", tmp_path / "store", symlinks=True)
    (tmp_path / "p" / ".filmc" / "noop.json").unlink(missing_ok=True)  # names the other folder
    return Project(tmp_path / "p", tmp_path / "store")


# --- frames, read with the ffmpeg the build uses ---------------------------------------------


def frame(video: Path, out: Path, last: bool = False) -> Image.Image:
    """The first (or last) frame of `video`, as RGB."""
    from filmc.backends.ffmpeg import ffmpeg_exe

    where = ["-sseof", "-0.25"] if last else []
    subprocess.run([ffmpeg_exe(), "-nostdin", "-loglevel", "error", "-y", *where, "-i",
                    str(video), "-update", "1", *([] if last else ["-frames:v", "1"]), str(out)],
                   check=True)
    with Image.open(out) as img:
        return img.convert("RGB")


def image(path: Path) -> Image.Image:
    with Image.open(path) as img:
        return img.convert("RGB")


def distance(a: Image.Image, b: Image.Image) -> float:
    """The mean difference of two pictures of the same size, 0..255."""
    assert a.size == b.size
    return sum(ImageStat.Stat(ImageChops.difference(a, b)).mean) / 3


def solid(path: Path, size: tuple[int, int], colour: tuple[int, int, int]) -> Path:
    Image.new("RGB", size, colour).save(path)
    return path


def near(img: Image.Image, colour: tuple[int, int, int], tolerance: float = 12) -> bool:
    """Every channel's mean, and the centre pixel, within `tolerance` of `colour`."""
    mean = ImageStat.Stat(img).mean
    centre = img.getpixel((img.width // 2, img.height // 2))
    assert isinstance(centre, tuple)
    return all(abs(m - c) <= tolerance and abs(p - c) <= tolerance
               for m, p, c in zip(mean, centre, colour))


# --- picking ------------------------------------------------------------------------------


def test_a_pick_is_written_to_the_lock_and_the_next_build_follows_it(project: Project) -> None:
    before = report(project.root)
    project.ok("pick", "t.film", "b1", "local-1")  # the candidate b1 uses already
    r = project.ok("pick", "t.film", "a1", "local-2")
    assert r.stdout.strip() == str(project.root / "t.lock")
    assert f"a1: keyframe local-2 ({before[f'{A1}.local-2']['outputs'][0][:12]})" in r.stderr
    # the takes of local-2 are not made yet: there is nothing to pin
    err = project.fails("pick", "t.film", "a1", "--clip", "take2")
    assert "take `take2` of shot `a1` is not built yet" in err
    assert "filmc build --until clip --select a1" in err

    # text, one table a shot, sorted, naming the candidate by its key and output digest
    text = project.lock_text()
    assert text.endswith("\n") and "\r" not in text
    assert re.findall(r"^\[(.*)\]$", text, re.M) == ["a1", "b1"]
    digest = before[f"{A1}.local-2"]["outputs"][0]
    assert project.lock() == {
        "version": 1,
        "a1": {"keyframe": {"pick": "local-2", "key": project.key(f"{A1}.local-2"),
                            "digest": digest}},
        "b1": {"keyframe": {"pick": "local-1", "key": project.key("keyframe.two.b1.local-1"),
                            "digest": before["keyframe.two.b1.local-1"]["outputs"][0]}},
    }
    assert sha256(project.obj(digest)) == digest
    assert sha256(project.root / OUT / "keyframes" / "a1.local-2.png") == digest
    listing = project.ok("lock", "t.film").stdout
    assert "one/a1\n  keyframe: picked:  1:local-1 *2:local-2  3:local-3\n" in listing

    # the next build makes a1's clips from local-2, and no keyframe: the pick is the stored one
    steps = project.build()
    assert ran(steps) == {"clip.one.a1.take1", "clip.one.a1.take2", "shot.one.a1", "film",
                          "storyboard.one", "storyboard_index"}
    assert steps[f"{A1}.local-2"]["status"] == "cached"
    assert steps[f"{A1}.local-2"]["outputs"] == [digest]
    assert f"{A1}.local-1" not in steps and f"{A1}.local-3" not in steps
    graph = project.graph()
    assert f"{A1}.local-2" in graph.pred["clip.one.a1.take1"]
    assert f"{A1}.local-2" in graph.pred["storyboard.one"]
    assert f"{A1}.local-1" not in graph.pred["storyboard.one"]
    # the shot opens on the picked keyframe, not on the one it opened on before
    opening = frame(project.root / OUT / "shots" / "a1.mp4", project.root / "f.png")
    picked = image(project.root / OUT / "keyframes" / "a1.local-2.png")
    other = image(project.root / OUT / "keyframes" / "a1.local-1.png")
    assert distance(opening, picked) < 6  # as near as the encoder gets
    assert distance(opening, picked) * 2 < distance(opening, other)

    # a clip take: the shot is conformed from it, nothing else is made again
    r = project.ok("pick", "t.film", "a1", "--clip", "take2")
    assert project.lock()["a1"]["clip"] == {
        "pick": "take2", "key": project.key("clip.one.a1.take2"),
        "digest": steps["clip.one.a1.take2"]["outputs"][0]}
    assert set(project.lock()["a1"]) == {"keyframe", "clip"}
    assert ran(project.build()) == {"shot.one.a1", "film"}
    assert "clip.one.a1.take2" in project.graph().pred["shot.one.a1"]

    # --clear --clip forgets the clip's pick only; --clear the shot's picks
    project.ok("pick", "t.film", "a1", "--clear", "--clip", "take2")
    assert set(project.lock()["a1"]) == {"keyframe"}
    r = project.ok("pick", "t.film", "a1", "--clear")
    assert "a1: picks cleared" in r.stderr
    assert set(project.lock()) == {"version", "b1"}
    graph = project.graph()
    assert f"{A1}.local-1" in graph.pred["clip.one.a1.take1"]  # the first candidate again
    assert "clip.one.a1.take1" in graph.pred["shot.one.a1"]


def test_a_pick_that_cannot_be_made_is_an_error_that_leaves_the_lock_alone(
        project: Project) -> None:
    project.ok("pick", "t.film", "b1", "local-2")
    err = project.fails("pick", "t.film", "a1", "local-9")
    assert "shot `a1` has no keyframe candidate `local-9`" in err
    err = project.fails("pick", "a9", "local-1")  # the film: the one in the folder
    assert "no shot `a9` in the film" in err and "`a1`" in err
    err = project.fails("pick", "t.film", "a1", "--clip", "take3")
    assert "shot `a1` has no clip take `take3`" in err
    err = project.fails("pick", "t.film", "a1")
    assert "pick what?" in err
    # a candidate the film asks for that no build made yet: nothing to pin
    project.edit("candidates 3", "candidates 4")
    err = project.fails("pick", "t.film", "a1", "local-4")
    assert "candidate `local-4` of shot `a1` is not built yet" in err
    assert "filmc build --until keyframe --select a1" in err
    assert set(project.lock()) == {"version", "b1"}


def test_an_edited_prompt_makes_the_pick_stale_until_it_is_picked_again(
        project: Project) -> None:
    project.ok("pick", "t.film", "a1", "local-2")
    old = project.lock()["a1"]["keyframe"]
    project.edit("Ana walks along the pier.", "Ana runs along the pier.")

    r = project.ok("check", "t.film")
    assert "warning[W0801]: the keyframe pick of `a1` is stale: `local-2` changed since it " \
           "was picked" in r.stderr
    assert "--> t.lock:" in r.stderr
    assert "then `filmc pick a1 CANDIDATE` (candidates: local-1, local-2, local-3)" in r.stderr
    r = project.run("plan", "t.film")
    assert r.returncode == 2 and "warning[W0801]" in r.stderr and "`a1`" in r.stderr
    r = project.run("lock", "--check", "t.film")
    assert r.returncode == 1, r.stderr
    assert r.stdout == "stale: a1 keyframe local-2: `local-2` changed since it was picked\n"
    assert "t.lock: 3 shots: 0 picked, 1 unpicked, 1 stale, 1 with nothing to pick; 0 unknown" in r.stderr

    # do as the warning says: build the candidates, pick again
    assert "help: build it (`filmc build --until keyframe --select a1`)" in r.stderr
    project.ok("build", "--until", "keyframe", "--select", "a1", "t.film")
    project.ok("pick", "t.film", "a1", "local-2")
    new = project.lock()["a1"]["keyframe"]
    assert new["pick"] == "local-2" and new["key"] != old["key"]
    assert new["key"] == project.key(f"{A1}.local-2")
    r = project.run("lock", "--check", "t.film")
    assert r.returncode == 0 and r.stdout == "" and "W0801" not in r.stderr, r.stderr


def test_prune_drops_the_picks_of_a_shot_the_film_no_longer_has(project: Project) -> None:
    project.ok("pick", "t.film", "a1", "local-3")
    project.ok("pick", "t.film", "b1", "local-2")
    text = (project.root / "t.film").read_text(encoding="utf-8")
    (project.root / "t.film").write_text(text[:text.index('scene two "Noon"')], encoding="utf-8")

    r = project.ok("check", "t.film")
    assert "warning[W0802]: `t.lock` has picks for `b1`, a shot the film no longer has" \
        in r.stderr
    assert "`filmc lock --prune` removes them" in r.stderr
    r = project.run("lock", "--check", "t.film")
    assert r.returncode == 1
    assert r.stdout == "unknown: b1: not a shot of the film (`filmc lock --prune`)\n"
    r = project.ok("lock", "--prune", "t.film")
    assert "removed 1 entry: b1" in r.stderr
    assert set(project.lock()) == {"version", "a1"}
    assert project.lock()["a1"]["keyframe"]["pick"] == "local-3"
    r = project.run("lock", "--check", "t.film")
    assert r.returncode == 0 and "W0802" not in r.stderr, r.stderr


# --- the lock in git, the store elsewhere -------------------------------------------------------


def git(*args: str, cwd: Path) -> None:
    subprocess.run(["git", "-c", "user.name=t", "-c", "user.email=t@example.com",
                    "-c", "init.defaultBranch=main", *args], cwd=cwd, check=True,
                   capture_output=True)


def test_a_fresh_clone_builds_the_same_film_or_says_what_is_missing(
        project: Project, tmp_path: Path) -> None:
    project.ok("pick", "t.film", "a1", "local-2")
    first = project.build()
    film = (project.root / OUT / "film.mp4").read_bytes()
    digest = project.lock()["a1"]["keyframe"]["digest"]
    git("init", "-q", cwd=project.root)
    git("add", "t.film", "t.lock", cwd=project.root)
    git("commit", "-q", "-m", "the film and its picks", cwd=project.root)

    # a teammate's clone, sharing the store: the same film, nothing made again
    clone = tmp_path / "clone"
    git("clone", "-q", str(project.root), str(clone), cwd=tmp_path)
    assert not (clone / ".filmc").exists() and (clone / "t.lock").is_file()
    steps = project.build(cwd=clone)
    assert ran(steps) == set()
    assert steps[f"{A1}.local-2"]["status"] == "cached"
    assert steps[f"{A1}.local-2"]["outputs"] == first[f"{A1}.local-2"]["outputs"] == [digest]
    assert (clone / OUT / "film.mp4").read_bytes() == film

    # with a store of its own (empty), the pin is missing: said, never replaced
    empty = tmp_path / "empty"
    clone2 = tmp_path / "clone2"
    git("clone", "-q", str(project.root), str(clone2), cwd=tmp_path)
    r = project.run("plan", "t.film", store=empty, cwd=clone2)
    assert r.returncode == 1, r.stdout
    assert "pinned outputs not in the store" in r.stdout
    line = next(x for x in r.stdout.splitlines() if x.strip().startswith(f"x {A1}.local-2:"))
    assert f"pins output {digest[:12]}…, which the store does not hold" in line
    assert "point FILMC_STORE at the store it was built in" in line
    assert "1 pinned output is not in the store." in r.stdout
    r = project.run("build", "--offline", "--keep-going", "t.film", store=empty, cwd=clone2)
    assert r.returncode == 1
    assert f"failed {A1}.local-2 (shot one/a1):" in r.stderr
    assert f"is output {digest[:12]}…, which the store does not hold (nothing was made in " \
           "its place): point FILMC_STORE at the store it was built in, or pick again " \
           "(`filmc pick a1 CANDIDATE`)" in r.stderr
    steps = report(clone2)
    assert steps[f"{A1}.local-2"]["status"] == "failed"
    assert steps[f"{A1}.local-2"]["outputs"] == []
    # nothing of a1 was made; the rest of the film was (--keep-going)
    assert not {i for i in ran(steps) if ".a1." in i or i.endswith(".a1")}
    assert {"shot.one.a2", "shot.two.b1"} <= ran(steps)
    assert steps["shot.one.a1"]["status"] == "skipped"
    assert not list((clone2 / OUT / "keyframes").glob("a1.*"))
    assert not project.obj(digest, empty).exists()


# --- the user's own takes -------------------------------------------------------------------


def test_take_add_imports_and_retouches_and_the_clip_starts_from_the_pick(
        project: Project) -> None:
    red = solid(project.root / "red.png", (192, 80), (200, 40, 30))
    blue = solid(project.root / "blue.png", (50, 50), (30, 60, 200))  # any size: it is fitted
    r = project.ok("take", "add", "t.film", "a1", "red.png")
    assert f"a1: added keyframe import-1 (imported, {sha256(red)[:12]})" in r.stderr
    assert project.lock()["a1"] == {"takes": [{"name": "import-1", "kind": "keyframe",
                                               "digest": sha256(red), "file": "red.png"}]}
    assert sha256(project.obj(sha256(red))) == sha256(red)
    r = project.ok("take", "add", "t.film", "a1", "blue.png", "--from", "local-2", "--pick")
    assert "a1: added keyframe retouch-1 (retouched from local-2" in r.stderr
    assert "a1: keyframe retouch-1 picked" in r.stderr
    entry = project.lock()["a1"]
    assert entry["takes"][1] == {"name": "retouch-1", "kind": "keyframe", "from": "local-2",
                                 "digest": sha256(blue), "file": "blue.png"}
    assert entry["keyframe"] == {"pick": "retouch-1", "key": project.key(f"{A1}.retouch-1"),
                                 "digest": sha256(blue)}
    assert "  keyframe: picked:  1:local-1  2:local-2  3:local-3  4:import-1 *5:retouch-1\n" \
        in project.ok("lock", "t.film").stdout

    steps = project.build()
    assert steps[f"{A1}.retouch-1"]["status"] == "provided"
    assert steps[f"{A1}.retouch-1"]["outputs"] == [sha256(blue)]
    assert {"clip.one.a1.take1", "shot.one.a1"} <= ran(steps)
    assert not {i for i in ran(steps) if i.startswith("keyframe.")}
    for video in (OUT / "clips" / "a1.take1.mp4", OUT / "shots" / "a1.mp4"):
        first = frame(project.root / video, project.root / "first.png")
        assert first.size == (192, 80) and near(first, (30, 60, 200)), ImageStat.Stat(first).mean

    # what is not an image or a video, or does not decode, is refused
    (project.root / "notes.txt").write_text("a note\n", encoding="utf-8")
    err = project.fails("take", "add", "t.film", "a1", "notes.txt")
    assert "`notes.txt` is neither an image nor a video filmc takes" in err
    (project.root / "fake.png").write_text("not a picture\n", encoding="utf-8")
    err = project.fails("take", "add", "t.film", "a1", "fake.png")
    assert "`fake.png` is not a usable image" in err
    err = project.fails("take", "add", "t.film", "a1", "red.png", "--from", "local-9")
    assert "no keyframe candidate `local-9`" in err


# --- continuity -----------------------------------------------------------------------------


def test_first_frame_previous_starts_from_the_picked_clips_last_frame(project: Project) -> None:
    project.edit("    camera close_up\n", "    camera close_up\n    first_frame previous\n"
                 "    last_frame next\n")
    project.edit("camera wide\n", "camera wide dolly_in\n")  # a1 ends elsewhere than it starts
    project.ok("pick", "t.film", "b1", "local-2")
    steps = project.build()
    assert {"lastframe.one.a2", "clip.one.a2.take1"} <= ran(steps)
    assert "keyframe.one.a2.local-1" not in steps  # a2 has no keyframe of its own now
    graph = project.graph()
    assert set(graph.pred["clip.one.a2.take1"]) == {"lastframe.one.a2",
                                                    "keyframe.two.b1.local-2"}
    assert set(graph.pred["lastframe.one.a2"]) == {"clip.one.a1.take1"}

    root = project.root
    a1_end = frame(root / OUT / "clips" / "a1.take1.mp4", root / "1.png", last=True)
    a2_start = frame(root / OUT / "clips" / "a2.take1.mp4", root / "2.png")
    a2_end = frame(root / OUT / "clips" / "a2.take1.mp4", root / "3.png", last=True)
    a1_key = image(root / OUT / "keyframes" / "a1.local-1.png")
    b1_key = image(root / OUT / "keyframes" / "b1.local-2.png")
    # a2 opens on a1's last frame (a1 pushed in: not its keyframe) ...
    assert distance(a2_start, a1_end) < 5
    assert distance(a2_start, a1_key) > 20
    # ... and dissolves into b1's picked keyframe
    assert distance(a2_end, b1_key) < distance(a2_start, b1_key) / 2

    # the chain follows a1's pick: a2 now opens on the end of a clip made from local-3
    project.ok("pick", "t.film", "a1", "local-3")
    steps = project.build()
    assert {"clip.one.a1.take1", "lastframe.one.a2", "clip.one.a2.take1"} <= ran(steps)
    a1_end3 = frame(root / OUT / "clips" / "a1.take1.mp4", root / "4.png", last=True)
    a2_start3 = frame(root / OUT / "clips" / "a2.take1.mp4", root / "5.png")
    assert distance(a2_start3, a1_end3) < 5
    assert distance(a2_start3, a1_end3) * 2 < distance(a2_start3, a2_start)
    # and a1's clip pick: a2 starts from the end of the take the film uses
    project.ok("pick", "t.film", "a1", "--clip", "take2")
    assert set(project.graph().pred["lastframe.one.a2"]) == {"clip.one.a1.take2"}


# --- gc and selection -------------------------------------------------------------------------


def test_gc_keeps_a_stale_pick_so_that_a_revert_brings_it_back(project: Project) -> None:
    others = [report(project.root)[f"{A1}.local-{n}"]["outputs"][0] for n in (1, 3)]
    project.ok("pick", "t.film", "a1", "local-2")
    pick = project.lock()["a1"]["keyframe"]
    project.edit("Ana walks along the pier.", "Ana runs along the pier.")
    # The store is a copy of the built project's, whose folder is still there: its steps
    # are that project's, which has no record in this store, so gc asks for --force.
    r = project.run("gc", "t.film")
    assert r.returncode == 1 and "which has no record in the store" in r.stderr, r.stderr
    r = project.ok("gc", "--force", "t.film")
    assert re.search(r"deleted [1-9]\d* objects", r.stderr), r.stderr
    assert not any(project.obj(d).exists() for d in others)  # the candidates passed over
    assert sha256(project.obj(pick["digest"])) == pick["digest"]  # the pick, though stale

    project.edit("Ana runs along the pier.", "Ana walks along the pier.")
    assert project.run("lock", "--check", "t.film").returncode == 0
    steps = project.build()
    assert steps[f"{A1}.local-2"]["status"] == "cached"
    assert steps[f"{A1}.local-2"]["outputs"] == [pick["digest"]]
    assert not {i for i in ran(steps) if i.startswith("keyframe.")}
    assert not [i for i, s in steps.items() if s["status"] not in ("ran", "cached")]
    assert f"{A1}.local-1" not in steps and f"{A1}.local-3" not in steps
    assert sha256(project.root / OUT / "keyframes" / "a1.local-2.png") == pick["digest"]


def test_select_by_pick_status_finds_the_shots(project: Project) -> None:
    project.ok("pick", "t.film", "b1", "local-2")
    assert project.plan_shots("status:picked") == {"b1"}
    assert project.plan_shots("status:unpicked") == {"a1"}
    assert project.plan_shots("status:single") == {"a2", "b1"}  # b1 has one clip take
    project.edit("She waves.", "She waves twice.")
    assert project.plan_shots("status:stale") == {"b1"}
    assert project.plan_shots("status:picked") == set()
