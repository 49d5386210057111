"""The storyboard a scene at a time, and a review page that costs what changed.

A small film of three scenes (five shots, one, two; a Chinese title) built offline:
each scene's contact sheets are a step of their own (`storyboard.<scene>`), and an
index names every scene's pages; an edit of one shot redraws its scene's pages and
the index, nothing else.  The static review page is rewritten page by page, only
where a page's content changed.  What re-ran is read from the build's report.json,
as a user would; what was rewritten, from the files' inodes (a page is replaced by
a rename, so a rewritten page is a new file).
"""

from __future__ import annotations

import html.parser
import json
import math
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from PIL import Image

from filmc.backends.local import panels
from filmc.compiler.pipeline import compile_film
from filmc.compiler.select import select
from filmc.engine import review

SCENES = {"one": ("Morning", ["a1", "a2", "a3", "a4", "a5"]),
          "two": ("Noon", ["b1"]),
          "three": ("风筝", ["c1", "c2"])}
W, H = 96, 40


def film_text() -> str:
    out = ['film "Boards" {', "  aspect 2.4:1", f"  size {W}x{H}", "  fps 24", "  takes 1",
           "}", "", 'character ANA "Ana" {', '  look "a tall woman in a red coat"', "}", "",
           'location PIER "Pier" {', '  look "a wooden pier over grey water"', "}", ""]
    for scene, (title, shots) in SCENES.items():
        out.append(f'scene {scene} "{title}" EXT PIER DAWN {{')
        for shot in shots:
            out += [f"  shot {shot} 1s {{", "    camera wide eye_level static", "    cast ANA",
                    f'    action "Ana waits ({shot})."', "  }"]
        out += ["}", ""]
    return "use std.camera\n\n" + "\n".join(out)


CAMERA = ("  shot b1 1s {\n    camera wide eye_level static",
          "  shot b1 1s {\n    camera close_up eye_level static")


@pytest.fixture(autouse=True)
def _no_user_state(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in list(os.environ):
        if name.startswith("FILMC_"):
            monkeypatch.delenv(name)


def filmc(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "filmc", *args], cwd=cwd,
                          env={**os.environ, "NO_COLOR": "1"}, capture_output=True, text=True,
                          timeout=300)


def edit(path: Path, old: str, new: str) -> None:
    text = path.read_text(encoding="utf-8")
    assert text.count(old) == 1
    path.write_text(text.replace(old, new), encoding="utf-8")


def keys(main: Path) -> dict[str, str]:
    c = compile_film(main, offline=True)
    assert c.ok and c.graph is not None, [d.message for d in c.diags.errors]
    return {n: d["step"].key for n, d in c.graph.nodes(data=True)}


@pytest.fixture
def project(tmp_path: Path) -> Path:
    (tmp_path / "boards.film").write_text(film_text(), encoding="utf-8")
    return tmp_path


# --- the graph --------------------------------------------------------------------------------


def test_a_camera_edit_rekeys_its_scenes_storyboard_and_the_index_only(project: Path) -> None:
    main = project / "boards.film"
    before = keys(main)
    assert {n for n in before if n.startswith("storyboard")} == {
        "storyboard.one", "storyboard.two", "storyboard.three", "storyboard_index"}
    edit(main, *CAMERA)
    after = keys(main)
    changed = {n for n in before if before[n] != after[n] and n.startswith("storyboard")}
    assert changed == {"storyboard.two", "storyboard_index"}
    assert after["storyboard.one"] == before["storyboard.one"]
    assert after["storyboard.three"] == before["storyboard.three"]


def test_reordering_scenes_renumbers_their_pages_and_renames_nothing(project: Path) -> None:
    """A page's header shows its scene's number, so moving a scene redraws the pages whose
    number changed; the files keep their names (by scene id)."""
    main = project / "boards.film"
    before = keys(main)
    text = main.read_text(encoding="utf-8")
    two = text[text.index("scene two"):text.index("scene three")]
    main.write_text(text.replace(two, "").replace("scene one", two + "scene one"),
                    encoding="utf-8")
    after = keys(main)
    assert {n for n in before if n.startswith("storyboard") and before[n] != after[n]} == {
        "storyboard.one", "storyboard.two", "storyboard_index"}
    assert after["storyboard.three"] == before["storyboard.three"]  # still the third


def test_selectors_reach_a_scenes_storyboard(project: Path) -> None:
    c = compile_film(project / "boards.film", offline=True)
    g = c.graph
    assert g is not None
    assert select(g, "kind:storyboard") == {"storyboard.one", "storyboard.two",
                                            "storyboard.three"}
    assert select(g, "kind:storyboard_index") == {"storyboard_index"}
    assert "storyboard.two" in select(g, "scene:two")
    assert not select(g, "scene:two") & {"storyboard.one", "storyboard.three"}
    # Everything the whole storyboard needs: every scene's pages and their keyframes.
    whole = select(g, "+storyboard_index")
    assert {"storyboard.one", "storyboard.two", "storyboard.three"} <= whole
    assert {n for n in whole if g.nodes[n]["kind"] == "keyframe"} == {
        n for n, d in g.nodes(data=True) if d["kind"] == "keyframe"}
    assert not {n for n in whole if g.nodes[n]["kind"] in ("clip", "shot", "film")}


# --- the build ---------------------------------------------------------------------------------


def ran(project: Path) -> set[str]:
    report = json.loads((project / "build" / "boards" / "report.json").read_text())
    return {s["id"] for s in report["steps"] if s["status"] == "ran"}


class Index(html.parser.HTMLParser):
    """The index page: each scene's heading text and the pages it links."""

    def __init__(self, text: str) -> None:
        super().__init__()
        self.scenes: dict[str, dict] = {}
        self._scene: str | None = None
        self._in_h2 = False
        self.feed(text)

    def handle_starttag(self, tag: str, attrs: list) -> None:
        a = dict(attrs)
        if tag == "section":
            self._scene = a["id"].removeprefix("scene-")
            self.scenes[self._scene] = {"heading": "", "pages": [], "images": []}
        elif self._scene is not None and tag == "h2":
            self._in_h2 = True
        elif self._scene is not None and tag == "a":
            self.scenes[self._scene]["pages"].append(a["href"])
        elif self._scene is not None and tag == "img":
            self.scenes[self._scene]["images"].append(a["src"])

    def handle_endtag(self, tag: str) -> None:
        if tag == "h2":
            self._in_h2 = False

    def handle_data(self, data: str) -> None:
        if self._in_h2 and self._scene is not None:
            self.scenes[self._scene]["heading"] += data


def inodes(folder: Path) -> dict[str, int]:
    return {p.name: p.stat().st_ino for p in folder.iterdir() if p.is_file()}


def test_a_build_draws_a_sheet_a_scene_and_an_edit_redraws_one(project: Path) -> None:
    r = filmc("build", "--offline", "boards.film", cwd=project)
    assert r.returncode == 0, r.stderr
    out = project / "build" / "boards"
    board = out / "storyboard"
    assert sorted(p.name for p in board.iterdir()) == ["index.html", "one.png", "three.png",
                                                       "two.png"]
    # Each sheet holds its scene's shots, four to a row under a header, and no others.
    th = round(panels.THUMB_W * H / W)
    band = round(panels.HEADER_SIZE * 1.8) + 8
    for scene, (_title, shots) in SCENES.items():
        with Image.open(board / f"{scene}.png") as sheet:
            rows = math.ceil(len(shots) / 4)
            assert sheet.size == (8 + 4 * (panels.THUMB_W + 8), band + 8 + rows * (th + 27 + 8))
    # The index lists every scene in film order, with its title, shots and pages.
    index = Index((board / "index.html").read_text(encoding="utf-8"))
    assert list(index.scenes) == list(SCENES)
    for n, (scene, (title, shots)) in enumerate(SCENES.items(), 1):
        entry = index.scenes[scene]
        count = f"{len(shots)} shot{'s' if len(shots) > 1 else ''}"
        assert re.sub(r"\s+", " ", entry["heading"]).strip() == f"{n}. {title} {scene} · {count}"
        assert entry["pages"] == entry["images"] == [f"{scene}.png"]
        assert all((board / p).is_file() for p in entry["pages"])

    # Sheets of the whole film from before a storyboard was drawn a scene at a time: gone.
    (out / "storyboard.png").write_bytes((board / "one.png").read_bytes())
    (out / "storyboard-2.png").write_bytes((board / "one.png").read_bytes())
    pages = {p: (board / p).read_bytes() for p in ("one.png", "two.png", "three.png")}
    review_before = inodes(out / "review")
    edit(project / "boards.film", *CAMERA)
    plan = json.loads(filmc("plan", "--offline", "--json", "boards.film", cwd=project).stdout)
    to_run = {s["id"] for s in plan["steps"] if s["status"] in ("new", "changed", "missing")}
    assert {s for s in to_run if s.startswith("storyboard")} == {"storyboard.two",
                                                                  "storyboard_index"}
    r = filmc("build", "--offline", "boards.film", cwd=project)
    assert r.returncode == 0, r.stderr
    assert ran(project) == to_run
    assert {s for s in ran(project) if s.startswith("storyboard")} == {"storyboard.two",
                                                                       "storyboard_index"}
    assert (board / "two.png").read_bytes() != pages["two.png"]
    assert (board / "one.png").read_bytes() == pages["one.png"]
    assert (board / "three.png").read_bytes() == pages["three.png"]
    assert not (out / "storyboard.png").exists() and not (out / "storyboard-2.png").exists()
    # The review page: b1 is on the one page of every shot; the pages of the unpicked and
    # stale shots (none) do not show it and are left as they were.
    now = inodes(out / "review")
    assert now.keys() == review_before.keys()
    assert {p for p in now if now[p] != review_before[p]} == {"index.html", ".pages.json"}


# --- the static review page --------------------------------------------------------------------


def pages(folder: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(folder.glob("*.html"))}


def test_the_review_page_rewrites_only_the_pages_whose_content_changed(
        project: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(review, "PER_PAGE", 2)  # one, one, one/two, three, three: 4 pages
    main = project / "boards.film"
    folder = tmp_path / "review"

    def write(into: Path = folder) -> set[str]:
        program = compile_film(main, offline=True).program()
        return {p.name for p in review.write_static(program, None, into)}

    every = {"index.html", "page-2.html", "page-3.html", "page-4.html", "unpicked.html",
             "stale.html"}
    assert write() == every
    before = inodes(folder)
    assert write() == set() and inodes(folder) == before  # nothing changed, nothing written
    # b1 is the 6th shot: page 3 of all shots; no shot is unpicked or stale.
    edit(main, *CAMERA)
    assert write() == {"page-3.html"}
    now = inodes(folder)
    assert {p for p in now if now[p] != before[p]} == {"page-3.html", ".pages.json"}
    assert "close_up" in (folder / "page-3.html").read_text(encoding="utf-8")
    # What it left is what a fresh write makes, byte for byte.
    fresh = tmp_path / "fresh"
    assert write(fresh) == every
    assert pages(folder) == pages(fresh)
    # A page removed or edited by hand is written again; an old page of a longer film goes.
    (folder / "page-2.html").unlink()
    (folder / "page-4.html").write_text("mine", encoding="utf-8")
    (folder / "page-9.html").write_text("old", encoding="utf-8")
    assert write() == {"page-2.html", "page-4.html"}
    assert pages(folder) == pages(fresh)
    # A lost record of the digests costs one full write, never a stale page.
    (folder / review.DIGESTS).unlink()
    assert write() == every and pages(folder) == pages(fresh)
    shutil.rmtree(fresh)
