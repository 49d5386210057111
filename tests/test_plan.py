"""`filmc plan`: statuses and reasons against a store, cost and time, rendering."""

from __future__ import annotations

import contextlib
import json
import re
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import copy_example
from golden_files import compare, to_json

from filmc.compiler.pipeline import Compiled, compile_film
from filmc.compiler.plan import (
    DETAIL_LIMIT,
    decide,
    make_plan,
    plan_json,
    record_changes,
    render_plan,
)
from filmc.compiler.select import evaluate, parse_selector
from filmc.engine.history import History
from filmc.engine.state import State
from filmc.engine.store import Store

GOLDEN = Path(__file__).resolve().parent / "golden_plan"
CHEN = "shot.hunt.chen_watches"
OLD_CAMERA = "camera close_up ground_level portrait_lens slow_push"
NEW_CAMERA = "camera medium ground_level portrait_lens slow_push"
# The example film with backends whose prices make the sums easy to check: every step
# local, except the four animal shots' keyframes on ComfyUI (their `backend` lines).
TOML = """\
[steps]
keyframe = "local"
speech = "local"

[backends.comfyui]
type = "comfyui"
workflow = "workflows/keyframe_api.json"
concurrency = 2
prices = { keyframe = 0.04, clip = { per_second = 0.28 } }

[backends.openai]
type = "openai"
api_key_env = "OPENAI_API_KEY"
model = "gpt-image-1"
prices = { keyframe = 0.17, sheet = 0.17, speech = { per_second = 0.0003 } }
"""


@pytest.fixture
def film(tmp_path: Path) -> Path:
    project = copy_example(tmp_path / "wolfpack")
    (project / "filmc.toml").write_text(TOML, encoding="utf-8")
    return project


def _compile(film: Path) -> Compiled:
    c = compile_film(film / "film.film")
    assert c.ok and c.graph is not None, [d.message for d in c.diags.errors]
    return c


@contextlib.contextmanager
def _history(root: Path) -> Iterator[History]:
    store = Store.open(root / ".filmc", create=True)
    state = State.open(root, create=True)
    assert store is not None and state is not None
    with store, state:
        yield History(store, state, root / ".filmc" / "journal.log")


def _record(c: Compiled, h: History, cache: bool = True) -> None:
    """What a finished build leaves: every node recorded, every step's key cached."""
    steps = [c.graph.nodes[n]["step"] for n in c.graph]
    h.state.record_last((s.id, s.key, s.record) for s in steps)
    for s in steps:
        if cache and s.backend is not None:
            h.store.record_action(s.key, [], {"backend": s.backend})


def plan(c: Compiled, history: History | None, selection=None, **kw):  # noqa: ANN001
    return make_plan(c.program(), history, selection, **kw)


def _edit(path: Path, old: str, new: str) -> None:
    text = path.read_text(encoding="utf-8")
    assert old in text
    path.write_text(text.replace(old, new, 1), encoding="utf-8")


def _edited(film: Path, h: History) -> Compiled:
    _record(_compile(film), h)
    _edit(film / "scenes" / "01_hunt.film", OLD_CAMERA, NEW_CAMERA)
    return _compile(film)


def _status(p) -> dict[str, str]:  # noqa: ANN001
    return {s.id: s.status for s in p.steps}


def test_no_store_everything_new(film: Path) -> None:
    c = _compile(film)
    p = plan(c, None)
    provided = {n for n in c.graph if c.graph.nodes[n]["step"].backend is None}
    assert len(provided) == 6  # the user's images: four characters, an outfit, a plate
    assert {s.id for s in p.steps if s.status == "provided"} == provided
    assert all(s.status == "new" and s.reasons == () for s in p.steps if s.id not in provided)
    assert p.to_run == len(c.graph) - len(provided)
    assert not p.had_store


def test_after_a_build_nothing_runs(film: Path) -> None:
    c = _compile(film)
    with _history(film) as h:
        _record(c, h)
        p = plan(c, h)
    assert p.to_run == 0
    assert p.counts["cached"] == len(c.graph) - p.counts["provided"]
    assert render_plan(p) == "No changes: everything is cached.\n"
    assert plan_json(p)["summary"]["to_run"] == 0


def test_one_camera_edit_changes_that_shot_only(film: Path) -> None:
    with _history(film) as h:
        c = _edited(film, h)
        p = plan(c, h)
    changed = {n for n, st in _status(p).items() if st == "changed"}
    shot = [n for n in c.graph if c.graph.nodes[n]["shot"] == "chen_watches"
            and c.graph.nodes[n]["kind"] in ("keyframe", "clip", "shot")]
    assert len(shot) == 4 + 2 + 1  # 4 candidates, 2 takes, the shot
    # The timelines name its steps and the shot list shows its camera: the subtitles stay.
    exports = {"export.otio", "export.edl", "export.fcpxml", "export.csv"}
    # Of the storyboard, the pages of its scene and the index of every scene's pages.
    assert changed == {*shot, "film", "storyboard.hunt", "storyboard_index", *exports}
    assert _status(p)["export.srt"] == "cached"
    assert p.to_run == len(changed)
    assert not [s for s in p.steps if s.status in ("new", "missing")]
    why = {s.id: s.reasons for s in p.steps}
    # the services read the prompt; the animatic's own camera parameters are not theirs
    assert why["keyframe.hunt.chen_watches.comfyui-1"] == ("prompt",)
    assert why["keyframe.hunt.chen_watches.openai-1"] == ("prompt",)
    # both takes are made from the first candidate until a pick
    assert "input keyframe.hunt.chen_watches.openai-1" in why["clip.hunt.chen_watches.take2"]
    assert why[CHEN] == ("input clip.hunt.chen_watches.take1",)
    assert why["film"] == (f"input {CHEN}",)
    assert why["storyboard.hunt"] == ("input keyframe.hunt.chen_watches.openai-1",)
    assert why["storyboard_index"] == ("input storyboard.hunt",)
    # the speech line of that shot did not change
    assert _status(p)["speech.hunt.chen_watches.1"] == "cached"
    text = render_plan(p)
    assert "~ keyframe.hunt.chen_watches.comfyui-1  (changed: prompt) comfyui  $0.04" in text
    assert "    1 cached" in text


def test_reverting_an_edit_is_cached_again(film: Path) -> None:
    with _history(film) as h:
        c = _edited(film, h)
        _record(c, h)
        _edit(film / "scenes" / "01_hunt.film", NEW_CAMERA, OLD_CAMERA)
        p = plan(_compile(film), h)
    assert p.to_run == 0


def test_cleaned_cache_is_missing(film: Path) -> None:
    c = _compile(film)
    with _history(film) as h:
        _record(c, h, cache=False)
        p = plan(c, h)
    run = [s for s in p.steps if s.to_run]
    assert run and all(s.status == "missing" and s.reasons == ("not in the cache",) for s in run)
    assert "! film  (missing: not in the cache) local" in render_plan(p, verbose=True)


def test_forced_and_running_steps(film: Path) -> None:
    c = _compile(film)
    kf = c.graph.nodes["keyframe.hunt.pack_closes_in.comfyui-1"]["step"]
    with _history(film) as h:
        _record(c, h)
        (film / ".filmc" / "journal.log").write_text(json.dumps(
            {"op": "accepted", "key": kf.key, "step": kf.id, "backend": "comfyui",
             "handle": {"id": "job-1", "data": {}}}) + "\n")
        h.store.log.append([{"forget": [kf.key]}])
        h.store.close()
        reopened = Store.open(film / ".filmc")
        assert reopened is not None
        with reopened:
            past = History(reopened, h.state, h.journal)
            p = plan(c, past, force=frozenset({"keyframe.hunt.steppe_vista.local-1"}))
    st = {s.id: s for s in p.steps if s.to_run}
    assert st["keyframe.hunt.pack_closes_in.comfyui-1"].status == "running"
    assert st["keyframe.hunt.pack_closes_in.comfyui-1"].cost == 0  # paid already
    assert st["keyframe.hunt.steppe_vista.local-1"].status == "forced"
    text = render_plan(p, verbose=True)
    assert "> keyframe.hunt.pack_closes_in.comfyui-1  (running: a paid job still running" in text
    assert "* keyframe.hunt.steppe_vista.local-1  (forced: --force) local" in text


def test_backend_switch_names_backend_and_settings(film: Path) -> None:
    c = _compile(film)
    with _history(film) as h:
        _record(c, h)
        _edit(film / "filmc.toml", 'keyframe = "local"', 'keyframe = "openai"')
        p = plan(_compile(film), h)
    # Candidates are named after their backend: the local ones are replaced by new ones.
    kf = next(s for s in p.steps if s.id == "keyframe.hunt.steppe_vista.openai-1")
    assert kf.status == "new"
    assert "keyframe.hunt.steppe_vista.local-1" not in {s.id for s in p.steps}
    assert kf.backend == "openai" and kf.cost == pytest.approx(0.17)
    # the clips made from it say why they change
    clip = next(s for s in p.steps if s.id == "clip.hunt.steppe_vista.take1")
    assert clip.status == "changed" and clip.reasons == (
        "input keyframe.hunt.steppe_vista.local-1 removed",
        "input keyframe.hunt.steppe_vista.openai-1 added") or clip.reasons
    # 73 keyframes but the 17 on comfyui and the 4 named on openai, which did not change
    assert p.cost == pytest.approx(52 * 0.17)
    assert p.needs and p.needs[0].variable == "OPENAI_API_KEY"


def test_cost_uses_the_price_table(film: Path) -> None:
    p = plan(_compile(film), None)
    comfy = [s for s in p.steps if s.backend == "comfyui"]
    # chen_watches 2, pack_closes_in 2, gazelle_chase 4, horses_panic 6, ice_breaks 3
    assert len(comfy) == 17
    assert sum(s.cost for s in comfy) == pytest.approx(0.68)
    openai = [s for s in p.steps if s.backend == "openai"]
    assert len(openai) == 4  # chen_watches and gazelle_chase name 2 candidates on openai each
    assert p.cost == pytest.approx(0.68 + 4 * 0.17)  # everything else runs on local, free
    assert p.currency == "USD" and p.unpriced == 0
    summary = next(line for line in render_plan(p).splitlines() if line.startswith("Plan:"))
    assert "17 keyframe on comfyui" in summary
    assert "4 keyframe on openai" in summary
    assert "estimated cost $1.36," in summary
    # comfyui runs 2 at once, ~20 s a keyframe
    assert p.seconds > 17 * 20 / 2


def test_speech_is_priced_by_the_time_it_takes_to_say(film: Path) -> None:
    _edit(film / "filmc.toml", 'speech = "local"', 'speech = "openai"')
    p = plan(_compile(film), None)
    speech = [s for s in p.steps if s.kind == "speech"]
    assert len(speech) == 12 and all(s.cost and s.cost < 0.01 for s in speech)
    line = next(s for s in speech if s.id == "speech.hunt.chen_watches.1")
    assert line.cost == pytest.approx(4 / 2.5 * 0.0003)  # "They're circling the herd."


def test_unpriced_steps_are_counted(film: Path) -> None:
    _edit(film / "filmc.toml", "prices = { keyframe = 0.04, clip = { per_second = 0.28 } }\n",
          "")
    p = plan(_compile(film), None)
    assert p.unpriced == 17
    assert "(17 steps have no price)" in render_plan(p)
    assert sum(1 for s in plan_json(p)["steps"] if s["cost"] is None) == 17


def test_selection_plans_what_build_would_make(film: Path) -> None:
    """A selection plans the selected steps and everything they need, as `build` runs."""
    with _history(film) as h:
        c = _edited(film, h)
        sel = evaluate(c.graph, parse_selector("shot:chen_watches")).nodes
        p = plan(c, h, sel)
    needed = set(decide(c.graph, sel, None, (), lambda keys: set()).nodes)
    assert {s.id for s in p.steps} == needed > set(sel)
    assert p.to_run == 7 and p.selected
    text = render_plan(p)
    assert "film  (" not in text and "storyboard" not in text
    assert "Plan: 7 to run (2 keyframe on comfyui, 2 keyframe on openai, 2 clip on local, " \
        "1 shot on local)" in text


def test_until_cuts_the_plan(film: Path) -> None:
    p = plan(_compile(film), None, until="keyframe")
    kinds = {s.kind for s in p.steps}
    assert kinds == {"sheet", "plate", "keyframe", "storyboard", "storyboard_index"}


def test_record_changes() -> None:
    old = {"kind": "clip", "backend": "comfyui", "adapter": {"type": "comfyui", "version": "1"},
           "template": "t1", "prompt": "p", "seed": 1, "params": {"camera": 1, "duration": 4},
           "inputs": {"keyframe.x": "k1", "sheet.A": "s"}, "files": {"a.png": "d1"}}
    new = {**old, "adapter": {"type": "comfyui", "version": "2"}, "template": "t2", "seed": 2,
           "params": {"camera": 2, "duration": 4}, "inputs": {"keyframe.x": "k2", "plate.P": "p"},
           "files": {"a.png": "d2"}}
    assert record_changes(old, new) == (
        "adapter.version", "template", "seed", "params.camera", "input keyframe.x",
        "input plate.P added", "input sheet.A removed", "file a.png")
    assert record_changes(old, old) == ("key",)


def test_big_plans_stay_short(film: Path) -> None:
    """A first build is one line per scene; past DETAIL_LIMIT changed steps, one line
    per shot, with the causes found inside it."""
    c = _compile(film)
    p = plan(c, None)
    lines = render_plan(p).splitlines()
    # its music, ambience and storyboard pages too
    assert "+ scene hunt: 10 shots, 56 steps new  $1.00" in lines
    assert len(lines) < 30
    assert len(render_plan(p, verbose=True).splitlines()) > p.to_run
    with _history(film) as h:
        _record(c, h)
        _edit(film / "filmc.toml", "[steps]\n", "[backends.local]\nquality = 2\n\n[steps]\n")
        p = plan(_compile(film), h)
    assert p.counts["changed"] > DETAIL_LIMIT
    text = render_plan(p)
    lines = text.splitlines()
    # its candidates on services change with the plate they are given
    assert "  ~ shot hunt/chen_watches: 8 changed (input plate.STEPPE.DUSK, adapter.settings)" \
        "  $0.42" in lines
    assert "  ~ mix  (changed: adapter.settings, input music.hunt, input " \
        "music.white_storm, 17 more inputs) local" in lines  # 12 lines, 7 sounds
    assert "  ~ film  (changed: adapter.settings, input mix, input " \
        "shot.cub.batu_warns, 28 more inputs) local" in lines  # 28 shots, subtitles, the mix
    assert not re.search(r"^\s+~ keyframe\.", text, re.M)


def test_golden_renderings(film: Path, bless: bool, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("NO_COLOR", "1")
    c = _compile(film)
    sel = evaluate(c.graph, parse_selector("shot:chen_watches,kind:keyframe+1")).nodes
    compare(GOLDEN / "first_build.txt", render_plan(plan(c, None)), bless)
    first = plan(c, None, sel)
    compare(GOLDEN / "selection_verbose.txt", render_plan(first, verbose=True), bless)
    compare(GOLDEN / "selection.json", to_json(plan_json(first)), bless)
    with _history(film) as h:
        c = _edited(film, h)
        edited = plan(c, h)
    compare(GOLDEN / "camera_edit.txt", render_plan(edited), bless)
    assert "\x1b[" in render_plan(edited, color=True)
