"""`filmc diff` and `filmc log` on real git repositories: shots added, removed, moved,
renamed and edited, a character's outfit changed, a pick changed; golden text and JSON;
two revisions compared without touching the working tree; the visual diff from the
store."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

from conftest import copy_example
from PIL import Image
from test_git_tree import GIT_ENV, git

GOLDEN = Path(__file__).parent / "golden_diff"


def filmc(repo: Path, *args: str, code: int = 0) -> subprocess.CompletedProcess:
    r = subprocess.run([sys.executable, "-m", "filmc", *args], cwd=repo, capture_output=True,
                       text=True, env={**os.environ, **GIT_ENV,
                                       "FILMC_STORE": str(repo.parent / "store")},
                       timeout=300)
    assert "Traceback" not in r.stderr, r.stderr
    assert r.returncode == code, r.stdout + r.stderr
    return r


def edit(path: Path, old: str, new: str) -> None:
    text = path.read_text("utf-8")
    assert old in text, old
    path.write_text(text.replace(old, new, 1), "utf-8")


def two_commits(tmp_path: Path) -> Path:
    """The example, then a commit that edits two shots and an outfit, adds, removes,
    moves and renames a shot, and edits a line of dialogue."""
    repo = copy_example(tmp_path / "wolfpack")
    git(repo, "init", "-q", "-b", "main")
    git(repo, "add", "-A")
    git(repo, "commit", "-q", "-m", "the film")
    hunt, yurt = repo / "scenes" / "01_hunt.film", repo / "scenes" / "02_yurt.film"
    edit(hunt, "camera close_up ground_level portrait_lens slow_push",
         "camera close_up ground_level long_lens slow_push")  # chen_watches
    edit(hunt, "    cast CHEN(winter)\n    candidates 2 openai",
         "    cast CHEN(winter), BILGEE(hunting_coat)\n    candidates 2 openai")
    edit(hunt, 'BILGEE (whispering): "Don\'t move. Watch the grass."',
         'BILGEE (whispering): "Stay down. Watch the grass."')  # ridge_lookout
    edit(repo / "cast.film", "fox-fur hat with ear flaps, felt boots",
         "fox-fur hat with ear flaps, red felt boots")  # CHEN(winter)
    edit(hunt, "  shot gazelles_graze 3s {", "  shot grazing_herd 3s {")  # renamed
    edit(yurt, '  shot smoke_hole 4s {\n    camera pov worms_eye wide_lens tilt_up\n'
               '    light firelight moonlight\n    cast CHEN(student)\n'
               '    action "Chen\'s view up past the roof poles: smoke drifts out of the hole '
               'into a sky full of stars."\n  }\n', "")  # removed
    edit(yurt, "  shot tea_pour 3s {", "  shot door_opens 2s {\n    camera wide eye_level\n"
               '    action "The felt door lifts: cold light and snow blow in."\n  }\n\n'
               "  shot tea_pour 3s {")  # added
    text = yurt.read_text("utf-8")  # big_life before chen_listens: moved
    a = text.index("  shot chen_listens")
    b = text.index("  shot big_life")
    c = text.index("  }\n", b) + 4
    yurt.write_text(text[:a] + text[b:c] + "\n" + text[a:b].rstrip("\n") + "\n" + text[c:],
                    "utf-8")
    filmc(repo, "fmt", ".")
    filmc(repo, "check")
    git(repo, "commit", "-q", "-am", "Chen looks through a long lens; red boots")
    return repo


def golden(name: str, text: str, bless: bool) -> None:
    path = GOLDEN / name
    if bless:
        GOLDEN.mkdir(exist_ok=True)
        path.write_text(text, "utf-8")
    assert text == path.read_text("utf-8"), f"{name} changed: `pytest --bless` after review"


def test_diff_names_each_changed_shot_and_what_rebuilding_costs(tmp_path: Path,
                                                                 bless: bool) -> None:
    repo = two_commits(tmp_path)
    text = filmc(repo, "diff", "HEAD~1", "HEAD").stdout
    golden("two_commits.txt", text, bless)
    # What the user checks: exactly the edited shots, and those wearing the outfit.
    marks = {shot: mark for mark, shot in
             re.findall(r"^  ([-+~>=]) (\S+)", text.split("\n\ncharacters")[0], re.M)}
    assert marks == {
        "hunt/ridge_lookout": "~", "hunt/chen_watches": "~", "hunt/grazing_herd": "=",
        "hunt/chen_understands": "~", "yurt_talk/door_opens": "+", "yurt_talk/big_life": ">",
        "white_storm/chen_rides": "~", "white_storm/alone_on_ice": "~",
        "yurt_talk/smoke_hole": "-"}
    assert "      camera.lens 85mm → 200mm\n      camera +long_lens -portrait_lens\n" \
           "      cast +BILGEE(hunting_coat)\n" in text
    assert "      line 1 BILGEE (whispering): \"Don't move. Watch the grass.\" → " \
           "BILGEE (whispering): \"Stay down. Watch the grass.\"" in text
    assert "renamed from gazelles_graze" in text
    cost = re.search(r"^to rebuild: (\d+) steps, \$(\d+\.\d\d)$", text, re.M)
    assert cost is not None and int(cost.group(1)) > 0 and float(cost.group(2)) > 0

    js = filmc(repo, "diff", "HEAD~1..HEAD", "--json").stdout
    golden("two_commits.json", js, bless)
    data = json.loads(js)
    assert data["steps"] == int(cost.group(1))
    assert round(data["cost"], 2) == float(cost.group(2))
    outfit = next(e for e in data["entities"] if e["id"] == "CHEN(winter)")
    assert outfit["shots"] == ["ridge_lookout", "chen_watches", "chen_understands",
                               "chen_rides", "alone_on_ice"]
    stat = filmc(repo, "diff", "HEAD~1", "HEAD", "--stat").stdout.splitlines()
    assert len(stat) == len(marks) + 1 and stat[-1].startswith("9 shots changed, ")


def test_two_revisions_are_compared_without_touching_the_working_tree(tmp_path: Path) -> None:
    repo = two_commits(tmp_path)
    edit(repo / "scenes" / "03_cub.film", "  shot batu_warns 4s {", "  shot batu_warns 9s {")
    (repo / "refs" / "chen_front.png").unlink()  # the working tree does not even compile
    status = git(repo, "status", "--porcelain")
    r = filmc(repo, "diff", "HEAD~1", "HEAD", "--json")
    assert {s["shot"] for s in json.loads(r.stdout)["shots"]} >= {"chen_watches"}
    assert "batu_warns" not in r.stdout
    assert git(repo, "status", "--porcelain") == status
    # Against the working tree, its errors name the file as it is on disk.
    bad = filmc(repo, "diff", code=1)
    assert "refs/chen_front.png" in bad.stderr


def test_no_change_and_bad_revisions(tmp_path: Path) -> None:
    repo = two_commits(tmp_path)
    assert filmc(repo, "diff").stdout.endswith("no change to the film\n")
    r = filmc(repo, "diff", "nope", code=1)
    assert "error: `nope` is not a commit of this repository" in r.stderr
    assert "= help:" in r.stderr
    assert filmc(repo, "diff", "a", "b", "c", code=64).stderr.startswith("error: ")
    outside = copy_example(tmp_path / "plain")
    r = filmc(outside, "diff", code=1)
    assert "is not in a git repository" in r.stderr and "git init" in r.stderr


def test_a_changed_pick_and_the_visual_diff(tmp_path: Path) -> None:
    """A keyframe picked at each commit (a take the user added); the page shows the old
    and new keyframe from the store, and a placeholder for what was never built."""
    repo = copy_example(tmp_path / "wolfpack")
    git(repo, "init", "-q", "-b", "main")
    for n, colour in ((1, (200, 40, 40)), (2, (40, 40, 200))):
        Image.new("RGB", (192, 80), colour).save(tmp_path / f"take{n}.png")
    filmc(repo, "take", "add", "chen_watches", str(tmp_path / "take1.png"), "--pick")
    git(repo, "add", "-A", ":!build", ":!.filmc")
    git(repo, "commit", "-q", "-m", "the film, chen_watches picked")
    edit(repo / "scenes" / "01_hunt.film", "  shot binocular_pov 4s {",
         "  shot binocular_pov 5s {")
    filmc(repo, "take", "add", "chen_watches", str(tmp_path / "take2.png"), "--pick")
    git(repo, "commit", "-q", "-am", "another take")
    text = filmc(repo, "diff", "HEAD~1", "HEAD").stdout
    assert "picks (film.lock)\n  ~ chen_watches  keyframe import-1 → import-2\n" in text
    page_dir = tmp_path / "page"
    filmc(repo, "diff", "HEAD~1", "HEAD", "--html", str(page_dir))
    page = (page_dir / "index.html").read_text("utf-8")
    section = page[page.index("hunt/chen_watches"):]
    section = section[:section.index("</table>")]
    imgs = re.findall(r'<img src="([^"]+)"', section)
    assert len(imgs) == 2
    old, new = (Image.open(page_dir / src).convert("RGB") for src in imgs)
    assert old.getpixel((5, 5)) == (200, 40, 40) and new.getpixel((5, 5)) == (40, 40, 200)
    pov = page[page.index("hunt/binocular_pov"):]
    assert pov[:pov.index("</table>")].count("never built") == 4


def test_log_lists_the_commits_that_changed_a_shot(tmp_path: Path) -> None:
    repo = two_commits(tmp_path)
    edit(repo / "scenes" / "03_cub.film", "  shot batu_warns 4s {", "  shot batu_warns 5s {")
    git(repo, "commit", "-q", "-am", "batu waits longer")
    out = filmc(repo, "log", "chen_watches").stdout
    entries = re.findall(r"^[0-9a-f]{7,} \d{4}-\d\d-\d\d (.+?)  \(Film Maker\)$", out, re.M)
    assert entries == ["Chen looks through a long lens; red boots", "the film"]
    assert "    camera.lens 85mm → 200mm\n" in out
    assert "    outfit CHEN(winter): look " in out
    assert filmc(repo, "log", "hunt/grazing_herd").stdout.count("\n    renamed from") == 1
    js = json.loads(filmc(repo, "log", "batu_warns", "--json").stdout)
    assert [e["subject"] for e in js] == ["batu waits longer", "the film"]
    assert js[0]["lines"] == ["duration 4s → 5s"]
    r = filmc(repo, "log", "chen_watchs", code=1)
    assert "did you mean `chen_watches`?" in r.stderr
