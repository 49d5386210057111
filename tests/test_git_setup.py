"""`filmc git setup`: `git diff` shows .film files formatted, `git merge` merges film.lock
shot by shot.  Real git repositories in temp dirs, never the user's git config; git runs
the drivers as it would for a user (the command `setup` wrote into `.git/config`)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from conftest import copy_example
from test_git_tree import GIT_ENV, git

from filmc.compiler.lock import Pick, ShotLock, Take, read_lock, render_lock
from filmc.compiler.lockmerge import merge, render
from filmc.lang.diagnostics import Diagnostics

H = {c: c * 64 for c in "0123456789abcdef"}


def filmc(cwd: Path, *args: str) -> subprocess.CompletedProcess:
    r = subprocess.run([sys.executable, "-m", "filmc", *args], cwd=cwd,
                       env={**os.environ, "NO_COLOR": "1", **GIT_ENV}, capture_output=True,
                       text=True, timeout=120)
    assert "Traceback" not in r.stderr, r.stderr
    return r


def run_git(repo: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(["git", *args], cwd=repo, capture_output=True, text=True,
                          env={**os.environ, **GIT_ENV})


def test_setup_is_idempotent_and_git_diff_shows_formatted_films(tmp_path: Path) -> None:
    repo = copy_example(tmp_path / "wolfpack")
    git(repo, "init", "-q", "-b", "main")
    git(repo, "add", "-A")
    git(repo, "commit", "-q", "-m", "the film")
    r = filmc(repo / "scenes", "git", "setup")  # from a subfolder: the repository's root
    assert r.returncode == 0, r.stderr
    assert r.stdout.splitlines()[:2] == [".gitattributes: added `*.film diff=film`",
                                         ".gitattributes: added `film.lock merge=filmlock`"]
    attributes = (repo / ".gitattributes").read_text()
    config = git(repo, "config", "--local", "--list")
    assert "diff.film.textconv=" in config and " fmt --stdout\n" in config
    assert " git merge-lock %O %A %B %P\n" in config
    r = filmc(repo, "git", "setup")
    assert r.returncode == 0 and r.stdout == f"{repo}: already set up; nothing changed\n"
    assert (repo / ".gitattributes").read_text() == attributes
    assert git(repo, "config", "--local", "--list") == config
    git(repo, "add", ".gitattributes")
    git(repo, "commit", "-q", "-m", "filmc git setup")

    # A lens changed, written carelessly: git shows the change, formatted, in its shot.
    hunt = repo / "scenes" / "01_hunt.film"
    hunt.write_text(hunt.read_text().replace(
        "    camera close_up ground_level portrait_lens slow_push",
        "  camera    close_up ground_level   telephoto slow_push"))
    diff = git(repo, "diff")
    assert "-    camera close_up ground_level portrait_lens slow_push\n" \
           "+    camera close_up ground_level telephoto slow_push\n" in diff, diff
    assert "@@ shot " in diff  # the hunk header names the shot it is in
    raw = git(repo, "diff", "--no-textconv")
    assert "+  camera    close_up ground_level   telephoto slow_push\n" in raw
    # Layout alone is no change at all, and `log -p` and `show` read the same way.
    git(repo, "commit", "-q", "-am", "a longer lens")
    assert "+    camera close_up ground_level telephoto slow_push\n" in git(repo, "show")
    assert "+    camera close_up ground_level telephoto slow_push\n" in \
        git(repo, "log", "-p", "-1")
    hunt.write_text(hunt.read_text().replace("  camera    close_up", "    camera close_up"))
    assert git(repo, "diff") == "" and git(repo, "diff", "--no-textconv") != ""

    # A file that does not parse is shown as it is: textconv never fails.
    broken = "shot x 3s {\n  camera wide\n"  # an unclosed block
    hunt.write_text(broken)
    assert "+  camera wide\n" in git(repo, "diff")
    r = filmc(repo, "fmt", "--stdout", str(hunt))
    assert r.returncode == 0 and r.stdout == broken and r.stderr == ""


def test_setup_outside_a_repository_refuses_politely(tmp_path: Path) -> None:
    r = filmc(tmp_path, "git", "setup")
    assert r.returncode == 1
    assert r.stderr.startswith("error: `") and "is not in a git repository" in r.stderr
    assert "= help: run it inside the repository that holds the film" in r.stderr
    assert not (tmp_path / ".gitattributes").exists()


def lock_text(shots: dict[str, ShotLock]) -> str:
    return render_lock("Wolf Pack", shots)


def test_git_merge_merges_film_lock_shot_by_shot(tmp_path: Path) -> None:
    repo = tmp_path / "film"
    repo.mkdir()
    git(repo, "init", "-q", "-b", "main")
    assert filmc(repo, "git", "setup").returncode == 0
    lock = repo / "film.lock"
    base = {"chen_watches": ShotLock(Pick("openai-1", H["1"], H["a"]))}
    lock.write_text(lock_text(base))
    git(repo, "add", "-A")
    git(repo, "commit", "-q", "-m", "base")

    def branch(name: str, shots: dict[str, ShotLock], start: str = "main") -> None:
        git(repo, "checkout", "-q", "-b", name, start)
        lock.write_text(lock_text(shots))
        git(repo, "commit", "-q", "-am", name)

    # Two people pick two other shots: both tables land after chen_watches.
    wolves = ShotLock(Pick("comfyui-2", H["2"], H["b"]))
    herd = ShotLock(None, Pick("take2", H["3"], H["c"]),
                    (Take("retouch-1", "keyframe", H["d"], "herd.png", "comfyui-1"),))
    branch("wolves", {**base, "wolves_circle": wolves})
    branch("herd", {**base, "herd_runs": herd}, "main")
    # git's own line merge cannot tell the tables apart
    texts = [git(repo, "show", f"{rev}:film.lock") for rev in ("main", "wolves", "herd")]
    for name, text in zip(("base", "ours", "theirs"), texts, strict=True):
        (tmp_path / name).write_text(text)
    plain = run_git(tmp_path, "merge-file", "-p", "ours", "base", "theirs")
    assert plain.returncode == 1 and "<<<<<<<" in plain.stdout
    git(repo, "checkout", "-q", "wolves")
    r = run_git(repo, "merge", "-q", "--no-edit", "herd")
    assert r.returncode == 0, r.stdout + r.stderr
    merged = read_lock(lock, Diagnostics())
    assert merged.shots == {**base, "wolves_circle": wolves, "herd_runs": herd}
    assert lock.read_text() == lock_text({**base, "wolves_circle": wolves, "herd_runs": herd})

    # The same shot picked differently on both sides: a readable conflict, exit non-zero.
    branch("mine", {"chen_watches": ShotLock(Pick("openai-2", H["1"], H["e"])),
                    "wolves_circle": wolves}, "wolves")
    branch("yours", {"chen_watches": ShotLock(Pick("openai-3", H["1"], H["f"]),
                                              Pick("take1", H["4"], H["0"]))}, "wolves")
    git(repo, "checkout", "-q", "mine")
    r = run_git(repo, "merge", "--no-edit", "yours")
    assert r.returncode == 1
    assert "shot `chen_watches` was picked differently on both sides (keyframe)" in r.stderr
    text = lock.read_text()
    assert text.count("<<<<<<< ours\n[chen_watches]\n") == 1
    assert "=======\n[chen_watches]\n" in text and ">>>>>>> theirs\n" in text
    assert '[wolves_circle]\n' not in text  # removed on one side only: removed
    assert 'pick = "take1"' in text.split("=======")[1]  # each side whole: its clip too
    diags = Diagnostics()
    read_lock(lock, diags)
    assert [d.code for d in diags.errors] == ["F0801"]
    assert git(repo, "status", "--porcelain") == "UU film.lock\n"


def test_a_three_way_merge_of_takes_and_picks() -> None:
    """The driver's logic on its own: each entry merged against the ancestor."""
    from filmc.compiler.lock import Lock

    def lock(shots: dict[str, ShotLock]) -> Lock:
        return Lock(None, shots)

    kf = Pick("openai-1", H["1"], H["a"])
    t1 = Take("retouch-1", "keyframe", H["b"], "a.png", "openai-1")
    t1b = Take("retouch-1", "keyframe", H["c"], "b.png", "openai-1")
    base = lock({"s": ShotLock(kf)})
    # a pick on one side, a take on the other, in the same shot: both
    m = merge(base, lock({"s": ShotLock(kf, Pick("take2", H["2"], H["d"]))}),
              lock({"s": ShotLock(kf, None, (t1,))}))
    assert not m.conflicts and m.shots[0].entry == ShotLock(kf, Pick("take2", H["2"], H["d"]),
                                                            (t1,))
    # the same take name added with other bytes on each side: a conflict naming it
    m = merge(base, lock({"s": ShotLock(kf, None, (t1,))}), lock({"s": ShotLock(kf, None, (t1b,))}))
    assert [s.why for s in m.conflicts] == [("keyframe take retouch-1",)]
    assert render(m, "T").count("<<<<<<< ours\n[s]\n") == 1
    # both sides made the same change: no conflict
    same = lock({"s": ShotLock(Pick("openai-2", H["1"], H["e"]))})
    assert not merge(base, same, same).conflicts
