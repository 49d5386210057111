"""`filmc gc` keeps what history, money and the other projects of a store need.

Real git repositories in temp dirs (no user git config), real builds: paid steps
through the loopback ComfyUI and OpenAI of tests/loopback, the rest offline.  What
is asserted is what a user checks: what `gc` says, what `filmc plan` would make
after a `git checkout` of an older commit, and which objects a second project
sharing the store still has.  Then the parts: the decision over synthetic
actions (`--older-than`, paid, unrecorded projects) and the store's record of
reuse across an index rebuild.
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from PIL import Image
from test_git_tree import GIT_ENV, git
from test_services import (
    Services,
    build,
    filmc,
    make_project,
    plan,
    planned,
    running_services,
)

from filmc.engine import gc, roots
from filmc.engine.store import TOUCH_EVERY, Cached, Store

KEY = {c: c * 64 for c in "abcdef"}


@pytest.fixture
def services() -> Iterator[Services]:
    with running_services() as s:
        yield s


def run_filmc(cwd: Path, *args: str, store: Path | None = None) -> subprocess.CompletedProcess:
    env = {**os.environ, "NO_COLOR": "1", **GIT_ENV}
    if store is not None:
        env["FILMC_STORE"] = str(store)
    r = subprocess.run([sys.executable, "-m", "filmc", *args], cwd=cwd, env=env,
                       capture_output=True, text=True, timeout=120)
    assert "Traceback" not in r.stderr, r.stderr
    return r


def paid_to_run(doc: dict) -> set[str]:
    return {s["id"] for s in doc["steps"] if s["status"] in ("new", "changed", "missing")
            and s["backend"] != "local"}


# --- history and money, through real git and paid services ------------------------------------


def test_gc_after_checkout_of_an_older_commit_plans_nothing_paid(tmp_path: Path,
                                                                 services: Services) -> None:
    project = make_project(tmp_path / "svc", services)
    (project / ".gitignore").write_text("build/\n")
    git(project, "init", "-q", "-b", "main")
    git(project, "add", "-A")
    git(project, "commit", "-q", "-m", "first cut")
    build(project, services, "--until", "keyframe", env=GIT_ENV)
    film = project / "svc.film"
    film.write_text(film.read_text().replace("kite rises over the water", "kite rises high"))
    git(project, "commit", "-q", "-am", "b2: higher")
    build(project, services, "--until", "keyframe", env=GIT_ENV)
    billed = (services.openai.billed, len(services.comfy.submit_ids))

    def gc_(*args: str) -> subprocess.CompletedProcess:
        r = filmc(project, "gc", *args, "svc.film", services=services, env=GIT_ENV)
        assert r.returncode == 0, r.stderr
        return r

    def plan_first_cut() -> dict:
        git(project, "checkout", "-q", "HEAD~1")
        try:
            return plan(project, services, "--until", "keyframe")
        finally:
            git(project, "checkout", "-q", "main")

    # By default the last 10 commits count: the first cut needs all it had.
    r = gc_()
    assert "kept what the working tree and the last 2 commits of `main` need " \
           "(2 versions of the project)" in r.stderr
    assert "forgot 0 cached steps" in r.stderr
    assert planned(plan_first_cut()) == set()

    # The working tree only: the first cut's free animatic steps go, its paid keyframe stays.
    r = gc_("--keep-commits", "0", "--dry-run")
    lines = r.stdout.splitlines()  # its scene's storyboard pages and the index of them
    assert [line.split()[:6] for line in lines] == [
        ["would", "forget", "storyboard.one", "storyboard", "on", "local,"],
        ["would", "forget", "storyboard_index", "storyboard_index", "on", "local,"]]
    assert all(line.rstrip().endswith(", free") for line in lines)
    assert "would keep 1 step that cost money and nothing needs ($0.04, " in r.stderr
    assert "`--include-paid` forgets them" in r.stderr
    gc_("--keep-commits", "0")
    doc = plan_first_cut()
    assert planned(doc) == {"storyboard.one", "storyboard_index"} and paid_to_run(doc) == set()

    # --older-than: what was made a minute ago is kept, paid or not.
    r = gc_("--keep-commits", "0", "--include-paid", "--older-than", "1h")
    assert "kept 1 step recorded or used within the last 1h (--older-than)" in r.stderr
    assert "forgot 0 cached steps" in r.stderr

    # --include-paid: the dry run names the step, its shot, its size and what it cost.
    r = gc_("--keep-commits", "0", "--include-paid", "--dry-run")
    [line] = r.stdout.splitlines()
    assert line.startswith("would forget keyframe.one.b2.openai-1  keyframe on openai, "
                           "shot one/b2, ") and line.endswith(" KB, cost $0.04"), line
    assert "in 1 shot: one/b2" in r.stderr
    assert "would forget 1 cached step, would delete 1 object (" in r.stderr
    assert "they cost $0.04 to make; a dry run: nothing changed" in r.stderr
    r = gc_("--keep-commits", "0", "--include-paid")
    assert "forgot 1 cached step, deleted 1 object" in r.stderr
    assert paid_to_run(plan_first_cut()) == {"keyframe.one.b2.openai-1"}
    assert (services.openai.billed, len(services.comfy.submit_ids)) == billed  # planned only


def test_a_commit_that_does_not_compile_is_skipped_with_a_warning(tmp_path: Path) -> None:
    project = tmp_path / "p"
    assert run_filmc(tmp_path, "init", "p").returncode == 0
    git(project, "init", "-q", "-b", "main")
    part = project / "scenes" / "01_opening.film"
    part.write_text(part.read_text().replace("camera establishing", "camera establihsing"))
    git(project, "add", "-A")
    git(project, "commit", "-q", "-m", "a typo")
    part.write_text(part.read_text().replace("camera establihsing", "camera establishing"))
    git(project, "commit", "-q", "-am", "fixed")
    r = run_filmc(project, "gc", "--dry-run")
    assert r.returncode == 0, r.stderr
    short = git(project, "rev-parse", "--short", "HEAD~1").strip()
    assert f"warning: commit {short} (a typo) does not compile as configured: " \
           f"error[F0204]: unknown camera preset `establihsing` " \
           f"(at {short}:scenes/01_opening.film:11)" in r.stderr, r.stderr
    assert "the last 2 commits of `main` need (2 versions of the project)" in r.stderr
    # Outside a repository only the working tree counts, and gc says so.
    plain = tmp_path / "plain"
    assert run_filmc(tmp_path, "init", "plain").returncode == 0
    r = run_filmc(plain, "gc", "--dry-run")
    assert r.returncode == 0 and "is not in a git repository" in r.stderr
    assert "only the working tree's needs are kept" in r.stderr


# --- several projects, one store ------------------------------------------------------------------


def objects(store: Path) -> set[str]:
    return {p.name for p in (store / "objects").glob("*/*")}


def held(store: Path, project: Path, film: str) -> tuple[int, int]:
    """Of the objects the stored steps a project's record needs name: (how many are on
    disk, how many there are)."""
    record = roots.read(roots.record_path(store, project.resolve(), film))
    assert isinstance(record, roots.Record), record
    with Store.open(store) as s:  # type: ignore[union-attr]
        actions = s.get_actions(record.needs.keys)
    digests = {o["digest"] for a in actions.values() for o in a.outputs}
    return sum((store / "objects" / d[:2] / d).is_file() for d in digests), len(digests)


def test_projects_sharing_a_store_keep_each_others_outputs(tmp_path: Path) -> None:
    store = tmp_path / "shared"
    for name in ("a", "b"):
        assert run_filmc(tmp_path, "init", name).returncode == 0
        if name == "b":  # the same film would share every key: make b's first shot its own
            part = tmp_path / "b" / "scenes" / "01_opening.film"
            part.write_text(part.read_text().replace("Boats rock gently", "Boats drift"))
        r = run_filmc(tmp_path / name, "build", "--offline", "--until", "keyframe", "-q",
                      store=store)
        assert r.returncode == 0, r.stderr
    a, b = tmp_path / "a", tmp_path / "b"
    b_holds = held(store, b, "b")
    assert b_holds[0] == b_holds[1] > 5
    part = a / "scenes" / "01_opening.film"
    part.write_text(part.read_text().replace("Boats rock gently", "Boats rock hard"))
    assert run_filmc(a, "build", "--offline", "--until", "keyframe", "-q", store=store) \
        .returncode == 0

    # gc of `a` forgets a's old keyframe, its scene's storyboard pages and the index of them,
    # nothing `b` uses.  (The index names the same pages as before: its object stays.)
    r = run_filmc(a, "gc", store=store)
    assert r.returncode == 0, r.stderr
    assert "forgot 3 cached steps, deleted 2 objects" in r.stderr, r.stderr
    assert held(store, b, "b") == b_holds
    r = run_filmc(b, "plan", "--offline", "--until", "keyframe", store=store)
    assert r.returncode == 0, r.stdout  # 0: nothing to make
    record = json.loads(roots.record_path(store, a.resolve(), "a").read_text())
    assert set(record["sets"]) == {"gc"} and record["root"] == str(a.resolve())

    # b's record gone: its steps are unaccounted for, and gc refuses (dry run too).
    b_record = roots.record_path(store, b.resolve(), "b")
    saved = b_record.read_bytes()
    b_record.unlink()
    part.write_text(part.read_text().replace("Boats rock hard", "Boats rock"))
    assert run_filmc(a, "build", "--offline", "--until", "keyframe", "-q", store=store) \
        .returncode == 0
    before = objects(store)
    for args in (["gc"], ["gc", "--dry-run"]):
        r = run_filmc(a, *args, store=store)
        assert r.returncode == 1, r.stderr
        assert f"were made by `{b.resolve()}` (film `b`), which has no record in the store" \
               in r.stderr and "nothing was deleted" in r.stderr and "= help:" in r.stderr
        assert "`filmc gc --force`" in r.stderr
    assert objects(store) == before

    # b's record unreadable: refused, and --force goes on without it.
    b_record.write_text("{not json")
    r = run_filmc(a, "gc", store=store)
    assert r.returncode == 1 and "cannot read the store's record of another project" \
        in r.stderr and "build that project again" in r.stderr, r.stderr
    r = run_filmc(a, "gc", "--force", "--dry-run", store=store)
    assert r.returncode == 0 and "--force: would forget steps of `" in r.stderr, r.stderr
    b_record.write_bytes(saved)
    # An image of b's own, added as a take: named by no step until b builds, yet b's.
    image = tmp_path / "retouched.png"
    Image.new("RGB", (96, 40), (200, 40, 40)).save(image)
    assert run_filmc(b, "take", "add", "harbour_wide", str(image), store=store).returncode == 0
    take = hashlib.sha256(image.read_bytes()).hexdigest()
    r = run_filmc(a, "gc", store=store)  # a's "rock hard" keyframe, storyboard page, index
    assert r.returncode == 0 and "forgot 3 cached steps" in r.stderr, r.stderr
    assert held(store, b, "b") == b_holds and take in objects(store)

    # b's folder gone: reported and kept, until --drop-missing.
    b.rename(tmp_path / "b-moved")
    r = run_filmc(a, "gc", store=store)
    assert r.returncode == 0
    assert f"the store's record of `{b.resolve()}` (film `b`) names a folder that is gone" \
           in r.stderr and "forgot 0 cached steps" in r.stderr
    r = run_filmc(a, "gc", "--drop-missing", store=store)
    assert r.returncode == 0 and f"dropped the record of `{b.resolve()}`" in r.stderr
    # b's own steps (its first shot's keyframe, its scene's storyboard pages and their
    # index): the rest a needs too
    assert "forgot 3 cached steps" in r.stderr and "opening/harbour_wide" in r.stderr, r.stderr
    assert not b_record.exists()


# --- the parts ------------------------------------------------------------------------------------


def cached(key: str, meta: dict, age: float = 0.0, used: float | None = None) -> Cached:
    now = time.time()
    return Cached(key, ({"output": "image", "digest": key, "ext": ".png"},), meta, now - age,
                  now - (used if used is not None else age))


DAY = 86400.0


def test_the_decision_keeps_paid_recent_and_unaccounted_steps(tmp_path: Path) -> None:
    own, other = (str(tmp_path / "a"), "a"), (str(tmp_path / "b"), "b")
    (tmp_path / "b").mkdir()
    steps = [
        cached(KEY["a"], {"backend": "local", "type": "local", "cost": 0.0, "remote": False,
                          "project": own[0], "film": own[1]}, age=40 * DAY),
        cached(KEY["b"], {"backend": "kling", "cost": 0.7, "remote": True}, age=40 * DAY),
        cached(KEY["c"], {"backend": "comfyui", "cost": None, "remote": True}, age=40 * DAY),
        # made long ago, reused by a build yesterday
        cached(KEY["d"], {"backend": "local", "cost": 0.0}, age=40 * DAY, used=DAY),
        cached(KEY["e"], {"backend": "local", "cost": 0.0, "project": other[0],
                          "film": other[1]}, age=40 * DAY),
        cached(KEY["f"], {"backend": "openai", "type": "openai"}, age=40 * DAY),  # older filmc
    ]
    nothing = roots.Needs()
    recorded = frozenset({other})
    plan = gc.decide(steps, nothing, gc.Rules(own, own_store=False, recorded=recorded))
    assert {c.key for c in plan.kept_paid} == {KEY["b"], KEY["c"], KEY["f"]}
    assert {c.key for c in plan.forget} == {KEY["a"], KEY["e"]}  # e: b's record lacks it
    assert plan.unaccounted == {None: (steps[3],)}  # names no project, in a shared store
    month_ago, week_ago = time.time() - 30 * DAY, time.time() - 7 * DAY
    month = gc.decide(steps, nothing, gc.Rules(own, False, recorded, include_paid=True,
                                               since=month_ago, force=True))
    assert {c.key for c in month.forget} == {KEY["a"], KEY["b"], KEY["c"], KEY["e"], KEY["f"]}
    assert [c.key for c in month.kept_recent] == [KEY["d"]]  # used yesterday
    assert not gc.decide(steps[3:4], nothing, gc.Rules(own, False, recorded, since=week_ago,
                                                       force=True)).forget
    # b without a record: refused while its folder is there, kept while it is gone.
    needs = roots.Needs(keys=frozenset({KEY["d"]}))
    assert gc.decide(steps, needs, gc.Rules(own, False)).unaccounted == {other: (steps[4],)}
    (tmp_path / "b").rmdir()
    gone = gc.decide(steps, needs, gc.Rules(own, False))
    assert gone.kept_gone == {other: (steps[4],)} and not gone.unaccounted
    assert KEY["e"] in {c.key for c in gc.decide(steps, needs, gc.Rules(
        own, False, drop_missing=True)).forget}
    # In the project's own store, steps of no record are the project's (a copied project).
    mine = gc.decide(steps, nothing, gc.Rules(own, own_store=True))
    assert {c.key for c in mine.forget} == {KEY["a"], KEY["d"], KEY["e"]}
    assert not mine.unaccounted
    assert gc.paid({"cost": 0.0, "remote": True}) is False  # a service that charged nothing
    assert gc.paid({"cost": None, "remote": True}) is True  # one whose price is unknown
    assert gc.paid({"provided": True, "type": "openai"}) is False


def test_reuse_is_recorded_and_survives_an_index_rebuild(tmp_path: Path,
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "store"
    with Store.open(path, create=True) as store:
        store.record_action(KEY["a"], [{"output": "image", "digest": KEY["b"], "ext": ".png"}],
                            {"backend": "local"})
        store.made_by = {"project": "/films/a", "film": "a"}
        store.record_action(KEY["c"], [{"output": "image", "digest": KEY["d"], "ext": ".png"}],
                            {"backend": "local"})
        assert store.touch([KEY["a"], KEY["c"]]) == 0  # just made: nothing to log
        later = time.time() + 2 * TOUCH_EVERY
        monkeypatch.setattr(time, "time", lambda: later)
        assert store.touch([KEY["a"], KEY["e"]]) == 1  # e is not stored: not logged
        assert store.touch([KEY["a"]]) == 0  # logged within the hour
        monkeypatch.undo()
        found = {c.key: c for c in store.inventory()}
    assert found[KEY["a"]].used == pytest.approx(later) and found[KEY["a"]].created < later
    assert found[KEY["c"]].used == found[KEY["c"]].created
    assert found[KEY["c"]].meta["project"] == "/films/a" and "project" not in found[KEY["a"]].meta
    for name in ("index.db", "index.db-wal", "index.db-shm"):
        (path / name).unlink(missing_ok=True)
    with Store.open(path) as store:  # type: ignore[union-attr]
        again = {c.key: c for c in store.inventory()}
        assert again[KEY["a"]].used == pytest.approx(later)
        store.collect({KEY["c"]})
        assert [c.key for c in store.inventory()] == [KEY["c"]]
