"""`filmc plan`: statuses and reasons against a store, cost and time, rendering."""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import pytest
from golden_files import compare, to_json

from filmc.compiler.pipeline import Compiled, compile_film
from filmc.compiler.plan import DETAIL_LIMIT, make_plan, plan_json, record_changes, render_plan
from filmc.compiler.select import evaluate, parse_selector
from filmc.compiler.store import STORE_ENV, Store

ROOT = Path(__file__).resolve().parent.parent
WOLFPACK = ROOT / "examples" / "wolfpack"
GOLDEN = Path(__file__).resolve().parent / "golden_plan"
CHEN = "shot.hunt.chen_watches"
OLD_CAMERA = "camera close_up ground_level portrait_lens slow_push"
NEW_CAMERA = "camera medium ground_level portrait_lens slow_push"


@pytest.fixture(autouse=True)
def _no_env_store(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(STORE_ENV, raising=False)


@pytest.fixture
def film(tmp_path: Path) -> Path:
    shutil.copytree(WOLFPACK, tmp_path / "wolfpack", ignore=shutil.ignore_patterns(".filmc"))
    return tmp_path / "wolfpack"


def _compile(film: Path) -> Compiled:
    c = compile_film(film / "film.film")
    assert c.ok and c.graph is not None
    return c


def _build(c: Compiled, root: Path) -> Store:
    """What a finished build leaves: every step's key cached, every node recorded."""
    store = Store.open(root, create=True)
    steps = [c.graph.nodes[n]["step"] for n in c.graph]
    store.record_last_build(((s.id, s.key, s.record) for s in steps), replace=True)
    for s in steps:
        if s.backend is not None:
            store.record_action(s.key, {}, {"backend": s.backend})
    return store


def _edit(path: Path, old: str, new: str) -> None:
    text = path.read_text(encoding="utf-8")
    assert old in text
    path.write_text(text.replace(old, new, 1), encoding="utf-8")


def _edited(film: Path) -> tuple[Compiled, Store]:
    store = _build(_compile(film), film)
    _edit(film / "scenes" / "01_hunt.film", OLD_CAMERA, NEW_CAMERA)
    return _compile(film), store


def _status(plan) -> dict[str, str]:
    return {s.id: s.status for s in plan.steps}


def test_no_store_everything_new(film: Path) -> None:
    c = _compile(film)
    assert Store.open(film) is None
    plan = make_plan(c, None, None)
    provided = {n for n in c.graph if c.graph.nodes[n]["step"].backend is None}
    assert len(provided) == 3
    assert {s.id for s in plan.steps if s.status == "provided"} == provided
    assert all(s.status == "new" and s.reasons == () for s in plan.steps if s.id not in provided)
    assert plan.to_run == len(c.graph) - len(provided)
    assert not plan.had_store


def test_after_a_build_nothing_runs(film: Path) -> None:
    c = _compile(film)
    with _build(c, film) as store:
        plan = make_plan(c, store, None)
    assert plan.to_run == 0
    assert plan.counts["cached"] == len(c.graph) - plan.counts["provided"]
    assert render_plan(plan) == "No changes: everything is cached.\n"
    assert plan_json(plan)["summary"]["to_run"] == 0


def test_one_camera_edit_changes_that_shot_only(film: Path) -> None:
    c, store = _edited(film)
    with store:
        plan = make_plan(c, store, None)
    changed = {n for n, st in _status(plan).items() if st == "changed"}
    shot = [n for n in c.graph if c.graph.nodes[n]["shot"] == "chen_watches"
            and c.graph.nodes[n]["kind"] in ("keyframe", "clip", "shot")]
    assert len(shot) == 4 * 2 + 1  # takes 4
    assert changed == {*shot, "film", "storyboard"}
    assert plan.to_run == len(changed)
    assert not [s for s in plan.steps if s.status in ("new", "missing")]
    why = {s.id: s.reasons for s in plan.steps}
    assert "prompt" in why["keyframe.hunt.chen_watches.take1"]
    assert "params.camera" in why["keyframe.hunt.chen_watches.take1"]
    assert "input keyframe.hunt.chen_watches.take2" in why["clip.hunt.chen_watches.take2"]
    assert why[CHEN] == ("input clip.hunt.chen_watches.take1",)
    assert why["film"] == (f"input {CHEN}",)
    assert why["storyboard"] == ("input keyframe.hunt.chen_watches.take1",)
    # the speech line of that shot did not change
    assert _status(plan)["speech.hunt.chen_watches.1"] == "cached"
    text = render_plan(plan)
    assert "~ keyframe.hunt.chen_watches.take1  (changed: prompt, params.camera) local" in text
    assert "    1 cached" in text


def test_reverting_an_edit_is_cached_again(film: Path) -> None:
    c, store = _edited(film)
    with store:
        store.record_last_build((n, c.graph.nodes[n]["step"].key, c.graph.nodes[n]["step"].record)
                                for n in c.graph)
        _edit(film / "scenes" / "01_hunt.film", NEW_CAMERA, OLD_CAMERA)
        plan = make_plan(_compile(film), store, None)
    assert plan.to_run == 0


def test_cleaned_cache_is_missing(film: Path) -> None:
    c = _compile(film)
    with Store.open(film, create=True) as store:
        store.record_last_build((n, c.graph.nodes[n]["step"].key, c.graph.nodes[n]["step"].record)
                                for n in c.graph)
        plan = make_plan(c, store, None)
    run = [s for s in plan.steps if s.to_run]
    assert run and all(s.status == "missing" and s.reasons == ("not in the cache",) for s in run)
    assert "! film  (missing: not in the cache) local" in render_plan(plan, verbose=True)


def test_backend_switch_names_backend_and_settings(film: Path) -> None:
    c = _compile(film)
    store = _build(c, film)
    _edit(film / "filmc.toml", 'keyframe = "local"', 'keyframe = "fal"')
    with store:
        plan = make_plan(_compile(film), store, None)
    kf = next(s for s in plan.steps if s.id == "keyframe.hunt.steppe_vista.take1")
    assert kf.status == "changed"
    assert kf.reasons[0] == "backend"
    assert {"settings.type", "settings.model", "settings.guidance_scale"} <= set(kf.reasons)
    assert kf.backend == "fal" and kf.cost == pytest.approx(0.025)
    # and the kling clips, whose keyframes changed
    assert plan.cost == pytest.approx(73 * 0.025 + 20.44)


def test_cost_uses_the_price_table(film: Path) -> None:
    plan = make_plan(_compile(film), None, None)
    # kling: clip = 0.28 per second; its shots (takes x seconds): pack_closes_in 2 x 5 s,
    # gazelle_chase 6 x 4 s, horses_panic 6 x 4 s, ice_breaks 3 x 5 s = 73 s -> 20.44
    kling = [s for s in plan.steps if s.backend == "kling"]
    assert len(kling) == 17
    assert sum(s.cost for s in kling) == pytest.approx(20.44)
    assert plan.cost == pytest.approx(20.44)  # everything else runs on local, free
    assert plan.currency == "USD" and plan.unpriced == 0
    assert next(s for s in kling if s.id == "clip.hunt.gazelle_chase.take3").cost == \
        pytest.approx(1.12)
    summary = render_plan(plan).splitlines()[-1]
    assert "17 clip on kling" in summary
    assert "estimated cost $20.44," in summary
    # kling runs 2 at once, ~60 s a clip: over 8 minutes of the estimate
    assert plan.seconds > 17 * 60 / 2


def test_unpriced_steps_are_counted(film: Path) -> None:
    _edit(film / "filmc.toml", 'clip = "local"', 'clip = "local"\nspeech = "openai"')
    plan = make_plan(_compile(film), None, None)
    # openai prices speech per second, and a line has no duration to price it by
    assert plan.unpriced == 12
    assert "(12 steps have no price)" in render_plan(plan)
    assert sum(1 for s in plan_json(plan)["steps"] if s["cost"] is None) == 12


def test_selection_restricts_the_listing(film: Path) -> None:
    c, store = _edited(film)
    sel = evaluate(c.graph, parse_selector("shot:chen_watches")).nodes
    with store:
        plan = make_plan(c, store, sel)
    assert {s.id for s in plan.steps} == set(sel)
    assert plan.to_run == 9 and plan.selected
    text = render_plan(plan)
    assert "film  (" not in text and "storyboard" not in text
    assert "Plan: 9 to run (4 keyframe on local, 4 clip on local, 1 shot on local)" in text


def test_record_changes() -> None:
    old = {"kind": "clip", "backend": "kling", "settings": {"model": "a"}, "template": "t1",
           "prompt": "p", "params": {"seed": 1, "duration": 4},
           "inputs": {"keyframe.x": "k1", "sheet.A": "s"}, "files": {"a.png": "d1"}}
    new = {**old, "settings": {"model": "b"}, "template": "t2",
           "params": {"seed": 2, "duration": 4}, "inputs": {"keyframe.x": "k2", "plate.P": "p"},
           "files": {"a.png": "d2"}}
    assert record_changes(old, new) == (
        "settings.model", "template", "params.seed", "input keyframe.x", "input plate.P added",
        "input sheet.A removed", "file a.png")
    assert record_changes(old, old) == ("key",)


def test_big_plans_stay_short(film: Path) -> None:
    """A first build is one line per scene; past DETAIL_LIMIT changed steps, one line
    per shot, with the causes found inside it."""
    c = _compile(film)
    plan = make_plan(c, None, None)
    lines = render_plan(plan).splitlines()
    assert "+ scene hunt: 10 shots, 70 steps new  $9.52" in lines
    assert len(lines) < 30
    assert len(render_plan(plan, verbose=True).splitlines()) > plan.to_run
    store = _build(c, film)
    _edit(film / "filmc.toml", "[backends.local]\n", "[backends.local]\nquality = 2\n")
    with store:
        plan = make_plan(_compile(film), store, None)
    assert plan.counts["changed"] > DETAIL_LIMIT
    text = render_plan(plan)
    lines = text.splitlines()
    assert "  ~ shot hunt/chen_watches: 10 changed (settings.quality, input plate.STEPPE.DUSK)" \
        in lines
    assert "  ~ film  (changed: settings.quality, input shot.cub.batu_warns, input " \
        "shot.cub.den_entrance, 27 more inputs) local" in lines  # 28 shots and the subtitles
    assert not re.search(r"^\s+~ keyframe\.", text, re.M)


def test_golden_renderings(film: Path, bless: bool, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("NO_COLOR", "1")
    c = _compile(film)
    sel = evaluate(c.graph, parse_selector("shot:chen_watches,kind:keyframe+1")).nodes
    compare(GOLDEN / "first_build.txt", render_plan(make_plan(c, None, None)), bless)
    first = make_plan(c, None, sel)
    compare(GOLDEN / "selection_verbose.txt", render_plan(first, verbose=True), bless)
    compare(GOLDEN / "selection.json", to_json(plan_json(first)), bless)
    c, store = _edited(film)
    with store:
        edited = make_plan(c, store, None)
    compare(GOLDEN / "camera_edit.txt", render_plan(edited), bless)
    assert "\x1b[" in render_plan(edited, color=True)
