"""Content keys decide what ever runs again, so they must change exactly when a step's
output would: a user relies on them to never see a stale shot and never pay twice.

Each test copies examples/wolfpack to a temp folder, compiles it, edits the copy the
way a user would, compiles again and compares the `{node: key}` maps."""

from __future__ import annotations

import os
import re
from pathlib import Path

import networkx as nx
import pytest
from conftest import copy_example
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from filmc.compiler.keys import canonical
from filmc.compiler.pipeline import compile_film
from filmc.lang.diagnostics import Diagnostics
from filmc.lang.fmt import format_text

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "wolfpack"
FILMS = ("film.film", "cast.film", "scenes/01_hunt.film", "scenes/02_yurt.film",
         "scenes/03_cub.film", "scenes/04_storm.film")
SHOT_KINDS = ("keyframe", "clip", "speech", "shot")
FILM_WIDE = {"film", "mix", "subtitles", "timeline", "storyboard_index"}
HYPOTHESIS = settings(max_examples=20, deadline=None,
                      suppress_health_check=[HealthCheck.function_scoped_fixture])


# --- helpers ---------------------------------------------------------------------------


def graph_of(project: Path) -> nx.DiGraph:
    c = compile_film(project / "film.film")
    assert c.ok, [f"{d.code}: {d.message}" for d in c.diags.errors]
    assert c.graph is not None
    return c.graph


def keys_of(project: Path) -> dict[str, str]:
    return {n: d["step"].key for n, d in graph_of(project).nodes(data=True)}


def changed(a: dict[str, str], b: dict[str, str]) -> set[str]:
    """The nodes whose key differs, or that exist on one side only; not the exports,
    which name every shot's steps and change with any of them (tests/test_export.py)."""
    return {n for n in a.keys() | b.keys() if a.get(n) != b.get(n)
            and not n.startswith("export.")}


def edit(project: Path, file: str, old: str, new: str) -> None:
    path = project / file
    text = path.read_text(encoding="utf-8")
    assert text.count(old) == 1, f"{old!r} should occur once in {file}"
    path.write_text(text.replace(old, new), encoding="utf-8")


def shot_steps(g: nx.DiGraph, *shots: str, kinds: tuple[str, ...] = ("keyframe", "clip", "shot")
               ) -> set[str]:
    """The steps of the given `scene.shot`s, of the given kinds."""
    return {n for n, d in g.nodes(data=True)
            if d["kind"] in kinds and f"{d['scene']}.{d['shot']}" in shots}


def shots_with(g: nx.DiGraph, character: str, outfit: str | None = "*") -> set[str]:
    """`scene.shot` of every shot whose keyframes use that character's sheet (any outfit
    with "*")."""
    sheets = {n for n, d in g.nodes(data=True) if d["kind"] == "sheet"
              and (n.startswith(f"sheet.{character}.") or n == f"sheet.{character}")
              and (outfit == "*" or n == f"sheet.{character}" + (f".{outfit}" if outfit else ""))}
    return {f"{g.nodes[k]['scene']}.{g.nodes[k]['shot']}" for s in sheets
            for k in g.successors(s) if g.nodes[k]["kind"] == "keyframe"}


def boards(*shots: str) -> set[str]:
    """The storyboard steps that show the given `scene.shot`s: their scenes' pages (and no
    other scene's), and the index of every scene."""
    return {f"storyboard.{s.split('.')[0]}" for s in shots} | {"storyboard_index"}


def with_descendants(g: nx.DiGraph, nodes: set[str]) -> set[str]:
    """`nodes` and what is made from them, but the exports (see `changed`)."""
    out = set(nodes)
    for n in nodes:
        out |= nx.descendants(g, n)
    return {n for n in out if not n.startswith("export.")}


@pytest.fixture
def project(tmp_path: Path) -> Path:
    return copy_example(tmp_path / "wolfpack")


@pytest.fixture
def base(project: Path) -> dict[str, str]:
    return keys_of(project)


# --- what must leave every key alone ----------------------------------------------------


def test_fmt_leaves_every_key(project: Path, base: dict[str, str]) -> None:
    # Mangle the layout first so that formatting has something to do.
    edit(project, "scenes/01_hunt.film", "  shot chen_watches 3s {\n    camera",
         "  shot   chen_watches   3s {\n\n\n        camera")
    edit(project, "cast.film", '  voice "old, slow', '\t\t voice    "old, slow')
    assert keys_of(project) == base
    for name in FILMS:
        path = project / name
        text = format_text(path.read_text(encoding="utf-8"), name, Diagnostics())
        assert text is not None
        path.write_text(text, encoding="utf-8")
    assert keys_of(project) == base


def test_comments_notes_tags_and_display_names_leave_every_key(project: Path,
                                                              base: dict[str, str]) -> None:
    edit(project, "scenes/01_hunt.film", '    note "the opening image: hold it"\n',
         '    note "the opening image: hold it for longer"\n    // a new comment\n')
    edit(project, "scenes/01_hunt.film", "    tags opening\n", "    tags opening title\n")
    edit(project, "cast.film", '    note "the coat is', '    // why\n    note "this coat is')
    edit(project, "cast.film", "  tags animal\n", '  tags animal wolf\n  note "a new note"\n')
    edit(project, "cast.film", 'character CHEN "Chen Zhen"', 'character CHEN "Zhen Chen"')
    edit(project, "cast.film", 'location YURT "Bilgee\'s yurt"', 'location YURT "The yurt"')
    edit(project, "film.film", 'film "Wolf Pack"', 'film "Wolf Totem"')
    edit(project, "scenes/03_cub.film", "  tags act_two\n", "  tags act_two night\n")
    assert changed(base, keys_of(project)) == set()


def test_scene_title_changes_only_the_film_and_its_storyboard_pages(
        project: Path, base: dict[str, str]) -> None:
    # The film's chapters carry the scene titles, and so do the scene's storyboard pages
    # (their header) and the storyboard's index; nothing else reads them.
    edit(project, "scenes/02_yurt.film", 'scene yurt_talk "Bilgee\'s Yurt"',
         'scene yurt_talk "In the Yurt"')
    assert changed(base, keys_of(project)) == {"film", "storyboard.yurt_talk",
                                               "storyboard_index"}


def test_renaming_files_leaves_every_key(project: Path, base: dict[str, str]) -> None:
    (project / "scenes/01_hunt.film").rename(project / "scenes/hunt.film")
    edit(project, "film.film", 'part "scenes/01_hunt.film"', 'part "scenes/hunt.film"')
    (project / "refs").rename(project / "images")
    (project / "images/chen_winter.png").rename(project / "images/chen_in_winter.png")
    text = (project / "cast.film").read_text(encoding="utf-8")
    (project / "cast.film").write_text(
        text.replace('"refs/', '"images/').replace("chen_winter.png", "chen_in_winter.png"),
        encoding="utf-8")
    (project / "cast.film").rename(project / "people.film")
    edit(project, "film.film", 'use "cast.film"', 'use "people.film"')
    assert changed(base, keys_of(project)) == set()


def test_moving_a_scene_to_another_part_keeps_every_key(project: Path,
                                                       base: dict[str, str]) -> None:
    cub = (project / "scenes/03_cub.film").read_text(encoding="utf-8")
    scene = cub[cub.index("scene cub"):]
    with open(project / "scenes/02_yurt.film", "a", encoding="utf-8") as f:
        f.write("\n" + scene)
    (project / "scenes/03_cub.film").unlink()
    edit(project, "film.film", '  part "scenes/03_cub.film"\n', "")
    assert changed(base, keys_of(project)) == set()


def test_keys_hold_no_absolute_paths(tmp_path: Path) -> None:
    a = copy_example(tmp_path / "one")
    b = copy_example(tmp_path / "two" / "deeper" / "still")
    assert keys_of(a) == keys_of(b)
    for _, d in graph_of(b).nodes(data=True):
        step = d["step"]
        assert str(tmp_path) not in canonical(step.record) + step.prompt + (step.template or "")
        assert all(not Path(f.path).is_absolute() for f in step.files)


def test_keys_hold_no_timestamps(project: Path, base: dict[str, str]) -> None:
    for path in project.rglob("*"):
        os.utime(path, (1_000_000_000, 1_000_000_000))
    assert keys_of(project) == base


def test_keys_hold_no_secrets(project: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # The example routes keyframes and speech through services, so their settings enter keys.
    edit(project, "filmc.toml", 'speech = "openai"', 'speech = "openai"\nsheet = "openai"')
    secrets = ("OPENAI_API_KEY", "COMFYUI_TOKEN")
    for name in secrets:
        monkeypatch.delenv(name, raising=False)
    without = keys_of(project)
    for i, name in enumerate(secrets):
        monkeypatch.setenv(name, f"sekrit{i}")
    g = graph_of(project)
    assert {n: d["step"].key for n, d in g.nodes(data=True)} == without
    backends = set()
    for _, d in g.nodes(data=True):
        step = d["step"]
        backends.add(step.backend)
        text = canonical(step.record) + step.prompt + canonical(step.params)
        assert "sekrit" not in text and "OPENAI_API_KEY" not in text
        if step.backend is not None:
            assert not any(k.endswith("_env") for k in step.record["adapter"]["settings"])
    assert {"openai", "comfyui", "local"} <= backends


def test_settings_that_do_not_change_output_leave_every_key(project: Path,
                                                             base: dict[str, str]) -> None:
    edit(project, "filmc.toml", "concurrency = 2\n", "concurrency = 5\n")
    edit(project, "filmc.toml", 'url = "http://127.0.0.1:8188"', 'url = ["http://gpu1:8188"]')
    edit(project, "filmc.toml", '# base_url = "http://127.0.0.1:8000/v1"',
         'base_url = "http://127.0.0.1:8000/v1"\ntimeout_s = 60')
    edit(project, "filmc.toml", "prices = { keyframe = 0 }", "prices = { keyframe = 0.01 }")
    assert changed(base, keys_of(project)) == set()


def test_renaming_a_backend_leaves_every_key(project: Path, base: dict[str, str]) -> None:
    """A backend's name in filmc.toml is a label: what it produces is its type and settings."""
    edit(project, "filmc.toml", "[backends.comfyui]", "[backends.comfy_main]")
    for part in FILMS:
        path = project / part
        text = path.read_text(encoding="utf-8")
        text = re.sub(r"(backend keyframe|candidates \d+) comfyui\b", r"\1 comfy_main", text)
        path.write_text(text, encoding="utf-8")
    # Its candidates are named after it (`comfy_main-1`): the same steps, the same keys.
    renamed = keys_of(project)
    # (But the exports', which show the candidates' names.)
    assert sorted(v for k, v in renamed.items() if not k.startswith("export.")) == \
        sorted(v for k, v in base.items() if not k.startswith("export."))
    assert renamed["keyframe.hunt.chen_watches.comfy_main-2"] == \
        base["keyframe.hunt.chen_watches.comfyui-2"]


def test_a_backend_setting_changes_exactly_its_steps(project: Path,
                                                     base: dict[str, str]) -> None:
    """An image setting re-keys that backend's images, not its speech."""
    g = graph_of(project)
    images = {n for n, d in g.nodes(data=True)
              if d["step"].backend == "openai" and d["kind"] != "speech"}
    edit(project, "filmc.toml", 'quality = "high"', 'quality = "medium"')
    assert images
    assert changed(base, keys_of(project)) == with_descendants(g, images)


def test_one_characters_voice_setting_changes_only_their_lines(project: Path,
                                                              base: dict[str, str]) -> None:
    g = graph_of(project)
    chen = {n for n, d in g.nodes(data=True)
            if d["kind"] == "speech" and d["step"].fields.speaker == "CHEN"}
    edit(project, "filmc.toml", 'CHEN = "onyx"', 'CHEN = "echo"')
    assert chen
    assert changed(base, keys_of(project)) == with_descendants(g, chen)


def test_a_workflow_enters_keys_by_its_content(project: Path, base: dict[str, str]) -> None:
    g = graph_of(project)
    comfy = {n for n, d in g.nodes(data=True) if d["step"].backend == "comfyui"}
    (project / "workflows").rename(project / "flows")
    edit(project, "filmc.toml", '"workflows/keyframe_api.json"', '"flows/keyframe_api.json"')
    assert changed(base, keys_of(project)) == set()  # moved: the same workflow
    path = project / "flows/keyframe_api.json"
    path.write_text(path.read_text(encoding="utf-8").replace('"steps": 28', '"steps": 30'),
                    encoding="utf-8")
    assert comfy and changed(base, keys_of(project)) == with_descendants(g, comfy)


def test_animatic_parameters_leave_paid_keyframes_alone(project: Path,
                                                        base: dict[str, str]) -> None:
    """A light preset's palette draws the animatic; a service never sees it."""
    offline = offline_keys(project)
    edit(project, "cast.film", "  light golden_hour volumetric\n",
         "  light golden_hour volumetric\n  palette #402010 #a05020 #f0a040 #fff0c0\n")
    assert changed(base, keys_of(project)) == set()  # openai and comfyui keyframes: as they were
    redrawn = changed(offline, offline_keys(project))
    assert {n for n in redrawn if n.startswith("keyframe.hunt.")}  # the animatic's do change


def offline_keys(project: Path) -> dict[str, str]:
    c = compile_film(project / "film.film", offline=True)
    assert c.ok and c.graph is not None
    return {n: d["step"].key for n, d in c.graph.nodes(data=True)}


# --- editing one shot ---------------------------------------------------------------------


def test_camera_change_changes_exactly_that_shot(project: Path, base: dict[str, str]) -> None:
    g = graph_of(project)
    edit(project, "scenes/01_hunt.film", "camera close_up ground_level portrait_lens slow_push",
         "camera medium ground_level portrait_lens slow_push")
    expected = shot_steps(g, "hunt.chen_watches") | {"film"} | boards("hunt.chen_watches")
    assert len(shot_steps(g, "hunt.chen_watches", kinds=("keyframe",))) == 4
    assert changed(base, keys_of(project)) == expected


def test_camera_movement_change_changes_exactly_that_shot(project: Path,
                                                          base: dict[str, str]) -> None:
    g = graph_of(project)
    edit(project, "scenes/02_yurt.film", "camera pov worms_eye wide_lens tilt_up",
         "camera pov worms_eye wide_lens static")
    expected = shot_steps(g, "yurt_talk.smoke_hole") | {"film"} | boards("yurt_talk.smoke_hole")
    assert changed(base, keys_of(project)) == expected


def test_editing_a_line_of_dialogue_changes_its_speech_shot_and_subtitles(
        project: Path, base: dict[str, str]) -> None:
    edit(project, "scenes/01_hunt.film", '"They planned it."', '"They planned all of it."')
    assert changed(base, keys_of(project)) == {
        "speech.hunt.chen_understands.1", "shot.hunt.chen_understands", "mix", "film",
        "subtitles"}


def test_duration_change_changes_that_shot_and_the_timing_outputs(
        project: Path, base: dict[str, str]) -> None:
    g = graph_of(project)
    edit(project, "scenes/03_cub.film", "shot eyes_on_ridge 3s", "shot eyes_on_ridge 2s")
    # the clips' duration changes, hence the shot; later subtitles and lines move; the
    # scene's ambience bed is as long as the scene
    expected = shot_steps(g, "cub.eyes_on_ridge", kinds=("clip", "shot"))
    assert changed(base, keys_of(project)) == expected | {"film", "timeline", "subtitles",
                                                          "mix", "sfx.cub.ambience"}


# --- editing the cast ------------------------------------------------------------------


def test_character_look_changes_exactly_the_shots_showing_them(project: Path,
                                                               base: dict[str, str]) -> None:
    g = graph_of(project)
    edit(project, "cast.film", "thin scar above the left eyebrow", "thin scar above the right eyebrow")
    shots = shots_with(g, "CHEN")
    assert shots >= {"hunt.chen_watches", "yurt_talk.chen_listens", "white_storm.alone_on_ice"}
    # the winter outfit's sheet is the user's own image: the look does not change it
    expected = shot_steps(g, *shots) | {"sheet.CHEN.student", "film"} | boards(*shots)
    assert changed(base, keys_of(project)) == expected


def test_outfit_look_changes_exactly_the_shots_with_that_outfit(project: Path,
                                                                base: dict[str, str]) -> None:
    g = graph_of(project)
    edit(project, "cast.film", "leather belt with a knife", "leather belt with a sword")
    shots = shots_with(g, "BILGEE", "hunting_coat")
    assert shots == {"hunt.ridge_lookout", "hunt.bilgee_explains", "hunt.chen_understands"}
    expected = shot_steps(g, *shots) | {"sheet.BILGEE.hunting_coat", "film"} | boards(*shots)
    assert changed(base, keys_of(project)) == expected


def test_voice_changes_exactly_that_characters_speech(project: Path,
                                                      base: dict[str, str]) -> None:
    g = graph_of(project)
    edit(project, "cast.film", 'voice "warm, brisk, clear"', 'voice "warm, brisk, husky"')
    speech = {n for n, d in g.nodes(data=True)
              if d["kind"] == "speech" and d["step"].fields.speaker == "GAMA"}
    assert speech == {"speech.cub.gama_holds_cub.1", "speech.cub.ride_away.1"}
    expected = speech | {"shot.cub.gama_holds_cub", "shot.cub.ride_away", "mix", "film"}
    assert changed(base, keys_of(project)) == expected


def flip_a_byte(path: Path, keep_mtime: bool = True) -> None:
    """New bytes, same size and (by default) the same modification time: what `cp -p` or
    an unpacked archive can leave behind."""
    before = path.stat()
    data = bytearray(path.read_bytes())
    data[-1] ^= 0xFF
    path.write_bytes(bytes(data))
    if keep_mtime:
        os.utime(path, ns=(before.st_atime_ns, before.st_mtime_ns))


def test_outfit_reference_bytes_change_exactly_the_shots_with_that_outfit(
        project: Path, base: dict[str, str]) -> None:
    g = graph_of(project)
    flip_a_byte(project / "refs/chen_winter.png")
    shots = shots_with(g, "CHEN", "winter")
    assert shots == {"hunt.ridge_lookout", "hunt.chen_watches", "hunt.chen_understands",
                     "white_storm.chen_rides", "white_storm.alone_on_ice"}
    expected = shot_steps(g, *shots) | {"sheet.CHEN.winter", "film"} | boards(*shots)
    assert changed(base, keys_of(project)) == expected


def test_character_reference_bytes_change_the_sheets_made_from_them(
        project: Path, base: dict[str, str]) -> None:
    g = graph_of(project)
    flip_a_byte(project / "refs/chen_front.png", keep_mtime=False)
    # his own sheet is this image: every shot that shows his face reads it, and the
    # student sheet is generated from it (the winter outfit has its own image)
    shots = shots_with(g, "CHEN", "student") | shots_with(g, "CHEN", "winter")
    assert shots == {"yurt_talk.at_the_stove", "yurt_talk.chen_listens", "yurt_talk.smoke_hole",
                     "hunt.ridge_lookout", "hunt.chen_watches", "hunt.chen_understands",
                     "white_storm.chen_rides", "white_storm.alone_on_ice"}
    expected = shot_steps(g, *shots) | {"sheet.CHEN", "sheet.CHEN.student", "film"} | boards(*shots)
    assert changed(base, keys_of(project)) == expected


def test_location_reference_bytes_change_exactly_the_shots_set_there(
        project: Path, base: dict[str, str]) -> None:
    g = graph_of(project)
    flip_a_byte(project / "refs/steppe_night.png")
    plate = "plate.STEPPE.NIGHT"
    assert with_descendants(g, {plate}) - {plate} == \
        shot_steps(g, *(f"cub.{s}" for s in ("den_entrance", "小狼", "gama_holds_cub", "batu_warns",
                                              "eyes_on_ridge", "ride_away"))) | {"film"} | boards("cub.x")
    assert changed(base, keys_of(project)) == with_descendants(g, {plate})


# --- templates -------------------------------------------------------------------------


def rendered_by(g: nx.DiGraph, template: str) -> set[str]:
    return {n for n, d in g.nodes(data=True) if d["step"].template == template}


def std_template(name: str) -> str:
    return (Path(__file__).resolve().parents[1] / "stdlib" / "templates" / name).read_text(
        encoding="utf-8")


def test_project_keyframe_template_changes_what_it_renders(project: Path,
                                                           base: dict[str, str]) -> None:
    (project / "templates").mkdir()
    (project / "templates/keyframe.j2").write_text(
        std_template("keyframe.j2") + "\n{{ shot.action }} (again)\n", encoding="utf-8")
    g = graph_of(project)
    rendered = rendered_by(g, "templates/keyframe.j2")
    assert rendered == {n for n, d in g.nodes(data=True) if d["kind"] == "keyframe"}
    now = {n: d["step"].key for n, d in g.nodes(data=True)}
    assert changed(base, now) == with_descendants(g, rendered)
    assert not changed(base, now) & {"subtitles", "timeline"}


def test_backend_template_changes_only_that_backends_steps(project: Path,
                                                           base: dict[str, str]) -> None:
    (project / "templates").mkdir()
    (project / "templates/keyframe.comfyui.j2").write_text(
        "{{ shot.action }} Detailed animal anatomy.\n", encoding="utf-8")
    g = graph_of(project)
    rendered = rendered_by(g, "templates/keyframe.comfyui.j2")
    assert rendered == {n for n, d in g.nodes(data=True)
                        if d["kind"] == "keyframe" and d["step"].backend == "comfyui"}
    now = {n: d["step"].key for n, d in g.nodes(data=True)}
    assert changed(base, now) == with_descendants(g, rendered)
    assert "shot.hunt.gazelle_chase" in changed(base, now)
    assert {"storyboard.hunt", "storyboard_index"} <= changed(base, now)


def test_a_project_copy_of_a_std_template_changes_nothing(project: Path,
                                                         base: dict[str, str]) -> None:
    (project / "templates").mkdir()
    (project / "templates/sheet.j2").write_text(std_template("sheet.j2"), encoding="utf-8")
    assert changed(base, keys_of(project)) == set()


# --- properties --------------------------------------------------------------------------


def split_shots(text: str) -> tuple[str, list[str], str]:
    """A scene file as (head, shot blocks, tail)."""
    lines = text.splitlines(keepends=True)
    starts = [i for i, line in enumerate(lines) if line.startswith("  shot ")]
    blocks, end = [], 0
    for s in starts:
        end = next(i for i in range(s, len(lines)) if lines[i] == "  }\n") + 1
        blocks.append("".join(lines[s:end]))
    return "".join(lines[:starts[0]]), blocks, "".join(lines[end:])


@HYPOTHESIS
@given(data=st.data())
def test_reordering_shots_keeps_every_shot_key(project: Path, base: dict[str, str],
                                               data: st.DataObject) -> None:
    file = data.draw(st.sampled_from(["scenes/01_hunt.film", "scenes/02_yurt.film"]))
    original = (EXAMPLE / file).read_text(encoding="utf-8")
    head, blocks, tail = split_shots(original)
    order = data.draw(st.permutations(range(len(blocks))))
    (project / file).write_text(head + "\n".join(blocks[i] for i in order) + tail,
                                encoding="utf-8")
    diff = changed(base, keys_of(project))
    scene = {"scenes/01_hunt.film": "hunt", "scenes/02_yurt.film": "yurt_talk"}[file]
    # every sheet, plate, keyframe, clip, speech and shot is kept, and every other scene's
    # storyboard pages
    assert diff <= FILM_WIDE | {f"storyboard.{scene}"}
    if list(order) != sorted(order):
        assert {"film", "timeline", f"storyboard.{scene}", "storyboard_index"} <= diff
    (project / file).write_text(original, encoding="utf-8")


LAYOUT = st.tuples(st.integers(0, 10_000),
                   st.sampled_from(["blank", "comment", "indent", "trailing"]),
                   st.text(st.sampled_from(list('ab Z19"{}()/*#:,.狼é\\')), max_size=12))


@HYPOTHESIS
@given(file=st.sampled_from(FILMS), changes=st.lists(LAYOUT, min_size=1, max_size=6))
def test_comments_blank_lines_and_indentation_change_nothing(
        project: Path, base: dict[str, str], file: str,
        changes: list[tuple[int, str, str]]) -> None:
    original = (EXAMPLE / file).read_text(encoding="utf-8")
    lines = original.splitlines()
    for at, what, text in changes:
        i = at % (len(lines) + 1)
        if what == "blank":
            lines.insert(i, " " * (at % 5))
        elif what == "comment":
            lines.insert(i, " " * (at % 7) + "// " + text)
        elif i < len(lines) and lines[i].strip() and not lines[i].lstrip().startswith("//"):
            if what == "indent":
                lines[i] = " " * (at % 9) + "\t" * (at % 2) + lines[i].lstrip()
            else:
                lines[i] += "  // " + text
    (project / file).write_text("\n".join(lines) + "\n", encoding="utf-8")
    assert changed(base, keys_of(project)) == set()
    (project / file).write_text(original, encoding="utf-8")


def test_a_workflow_for_another_kind_leaves_these_keys(project: Path,
                                                      base: dict[str, str]) -> None:
    """A ComfyUI backend keys, for each kind, the workflow and output node that kind uses."""
    (project / "workflows" / "clip_api.json").write_text(
        (project / "workflows" / "keyframe_api.json").read_text(encoding="utf-8"))
    edit(project, "filmc.toml", 'workflow = "workflows/keyframe_api.json"\n',
         'workflow = "workflows/keyframe_api.json"\nworkflow_clip = "workflows/clip_api.json"\n'
         'output_node_clip = "9"\n')
    assert changed(base, keys_of(project)) == set()


def test_what_an_input_shows_is_keyed(project: Path, base: dict[str, str]) -> None:
    """OpenAI's prompt says what each reference image shows ("Image 1 shows CHEN (winter
    outfit)"): renaming an outfit re-makes the keyframes that name it."""
    g = graph_of(project)
    for name in ("cast.film", "scenes/01_hunt.film", "scenes/04_storm.film"):
        path = project / name
        path.write_text(path.read_text(encoding="utf-8").replace("(winter)", "(snow)")
                        .replace("outfit winter", "outfit snow"), encoding="utf-8")
    shots = shots_with(g, "CHEN", "winter")
    assert shots
    now = keys_of(project)
    assert shot_steps(g, *shots, kinds=("keyframe",)) <= changed(base, now)


_JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=5), inner,
                                                                max_size=4),
    max_leaves=20)


@settings(max_examples=200, suppress_health_check=[HealthCheck.too_slow])
@given(st.dictionaries(st.text(max_size=5), _JSON, max_size=4), st.text(max_size=5),
       st.text(max_size=5), st.lists(_JSON, max_size=4))
def test_spliced_parts_give_the_same_text(record: dict, outer: str, inner: str,
                                          part: list) -> None:
    """A record encoded with the text of one of its parts made before (what a process that
    compiles again keeps of an export's shots) is the text encoding it whole gives."""
    record = {**record, outer: {"x": 1, inner: part}}
    spliced = {(outer, inner): canonical(part)}  # type: ignore[arg-type]
    assert canonical(record, spliced) == canonical(record)
    assert canonical(record, {("absent", "path"): "[]"}) == canonical(record)


def test_a_clock_sums_times_exactly_and_rounds_frames_as_a_fraction_does() -> None:
    """The compiler's running sum of shot durations (ir.Clock), kept in integers, is the
    Fraction sum, and its frames are round(sum x fps), a half to the even number."""
    import random
    from fractions import Fraction

    from filmc.compiler.ir import Clock

    rng = random.Random(3)
    for fps in (Fraction(24), Fraction(24000, 1001), Fraction(25), Fraction(2)):
        clock, total = Clock(), Fraction(0)
        for _ in range(300):
            t = Fraction(rng.randint(1, 4000), rng.choice((1, 2, 3, 4, 10, 1000)))
            clock.add(t)
            total += t
            assert clock.value == total
            assert clock.frames(fps) == round(total * fps)
    halves = Clock()
    halves.add(Fraction(1, 48))  # half a frame at 24 fps: rounds to 0, 3/48 to 2
    assert halves.frames(Fraction(24)) == 0
    halves.add(Fraction(2, 48))
    assert halves.frames(Fraction(24)) == 2
