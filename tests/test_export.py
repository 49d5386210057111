"""The exports, end to end: a small film built offline, then each export read back as an
editor's or a spreadsheet's tool would read it: OpenTimelineIO itself, its CMX 3600 and
FCPXML adapter plugins, an SRT parser, the csv module.

What is checked is what the person handed the file would check: every shot in order
at its exact length, every take and candidate there to swap to with the pick active,
the dialogue where it is said, the files named actually there; that exporting again
makes nothing, that an edit makes the exports again, and that a pick passed over
stays an alternative without ever being made by an export.
"""

from __future__ import annotations

import csv
import json
import os
import re
import shutil
import subprocess
import sys
from fractions import Fraction
from pathlib import Path
from urllib.parse import unquote, urlparse

import opentimelineio as otio
import pytest

from filmc.backends.ffmpeg import probe

FILM = """\
use std.camera
use std.light

film "Cut" {
  language "en"
  aspect 2.4:1
  size 192x80
  fps 24
}

character ANA "Ana" {
  look "a tall woman in a red coat"
}

character BO "Bo" {
  look "a boy with a kite"
}

location PIER "Pier" {
  look "a wooden pier over grey water"
}

scene one "Morning" EXT PIER DAWN {
  shot a1 2s {
    camera wide eye_level 35mm static
    light blue_hour
    cast ANA
    candidates 2
    takes 2
    action "Ana walks along the pier."
    ANA: "There you are."
  }
  shot a2 1.5s {
    camera close_up low_angle dolly_in
    cast ANA, BO
    BO (shouting): "Look at it fly!"
  }
}

scene two "Noon" EXT PIER NOON {
  shot b1 48f {
    camera medium high_angle pan_left
    cast BO
    action "The kite rises over the water."
  }
}
"""
FRAMES = {"a1": 48, "a2": 36, "b1": 48}
OUT = Path("build") / "cut"


def export_jobs(project: Path) -> list[tuple[str, dict, list[list]]]:
    """(format, spec, inputs) of the example's otio, edl and fcpxml exports, as the local
    renderer is handed them: each input named (a store object, its name without an
    extension) with its kind's extension beside it."""
    from filmc.compiler.pipeline import compile_film
    from filmc.lang.steps import MEDIA

    graph = compile_film(project / "film.film", offline=True).graph
    ext = {"clip": ".mp4", "shot": ".mp4", "keyframe": ".png", "speech": ".wav", "mix": ".wav"}
    jobs = []
    for fmt in ("otio", "edl", "fcpxml"):
        step = graph.nodes[f"export.{fmt}"]["step"]
        spec = {**step.params, "folder": str(project / "build" / "wolfpack")}
        inputs = [[MEDIA, f"objects/{n:064x}", None, None, None, i.step,
                   ext[graph.nodes[i.step]['kind']]] for n, i in enumerate(step.inputs)]
        jobs.append((fmt, spec, inputs))
    return jobs


def filmc(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "NO_COLOR": "1"}
    return subprocess.run([sys.executable, "-m", "filmc", *args], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=600)


def statuses(project: Path) -> dict[str, str]:
    doc = json.loads((project / OUT / "report.json").read_text(encoding="utf-8"))
    return {s["id"]: s["status"] for s in doc["steps"]}


def py(value: object) -> object:
    """OpenTimelineIO's metadata (AnyDictionary, AnyVector) as plain dicts and lists."""
    if hasattr(value, "items"):
        return {k: py(v) for k, v in value.items()}
    if isinstance(value, (str, bytes)):
        return value
    if hasattr(value, "__iter__"):
        return [py(v) for v in value]
    return value


def path_of(url: str) -> Path:
    parsed = urlparse(url)
    assert parsed.scheme == "file", url
    return Path(unquote(parsed.path))


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> Path:
    project = tmp_path_factory.mktemp("cut")
    (project / "cut.film").write_text(FILM, encoding="utf-8")
    r = filmc("build", "--offline", "cut.film", cwd=project)
    assert r.returncode == 0, r.stderr
    return project


@pytest.fixture
def project(built: Path, tmp_path: Path) -> Path:
    """A copy of the built project (store included) that a test may change."""
    dest = tmp_path / "p"
    shutil.copytree(built, dest, symlinks=True)
    return dest


def timeline(project: Path) -> otio.schema.Timeline:
    return otio.adapters.read_from_file(str(project / OUT / "export" / "film.otio"))


def test_a_whole_build_lays_out_every_export(built: Path) -> None:
    export = built / OUT / "export"
    assert sorted(p.name for p in export.iterdir()) == [
        "film.edl", "film.fcpxml", "film.otio", "film.srt", "shots.csv"]
    done = statuses(built)
    assert {done[f"export.{f}"] for f in ("otio", "edl", "fcpxml", "srt", "csv")} == {"ran"}


def test_otio_every_shot_at_its_length_with_every_take_and_the_pick_active(built: Path) -> None:
    tl = timeline(built)
    picture, dialogue, *stems = tl.tracks
    assert picture.kind == otio.schema.TrackKind.Video and dialogue.kind == "Audio"
    # The mix's stems, each one clip the film's length naming the file beside film.mp4.
    assert [t.name for t in stems] == ["Dialogue stem", "Music stem", "Effects stem"]
    for track, name in zip(stems, ("dialogue", "music", "effects")):
        [clip] = list(track)
        assert clip.duration().value == sum(FRAMES.values())
        assert path_of(clip.media_reference.target_url) == built / OUT / f"film.{name}.wav"
        assert path_of(clip.media_reference.target_url).is_file()
        assert clip.metadata["filmc"] == {"stem": name, "step": "mix"}  # the mix step's
    clips = list(picture)
    assert [c.name for c in clips] == list(FRAMES)
    assert [c.duration().value for c in clips] == list(FRAMES.values())
    assert {c.duration().rate for c in clips} == {24}
    film = probe(built / OUT / "film.mp4")
    assert tl.duration().value == film["frames"] == sum(FRAMES.values())
    a1 = clips[0]
    refs = a1.media_references()
    assert set(refs) == {"take1", "take2", "keyframe:local-1", "keyframe:local-2", "conformed"}
    assert a1.active_media_reference_key == "take1"  # nobody picked: the film uses the first
    for name, ref in refs.items():
        assert path_of(ref.target_url).is_file(), name  # each names a file the build laid out
    assert path_of(refs["take2"].target_url) == built / OUT / "clips" / "a1.take2.mp4"
    assert path_of(refs["conformed"].target_url) == built / OUT / "shots" / "a1.mp4"
    assert refs["take1"].available_range.duration.value == 48
    meta = py(a1.metadata["filmc"])
    assert isinstance(meta, dict)
    assert meta["scene"] == "one" and meta["shot"] == "a1" and meta["number"] == 1
    assert meta["camera"]["size"] == "wide" and meta["camera"]["lens_mm"] == "35"
    assert meta["light"] == "blue_hour" and "blue" in meta["prompt"]
    assert meta["cast"] == [{"character": "ANA", "outfit": "", "framing": "figure"}]
    assert "Ana walks along the pier." in meta["prompt"]
    assert meta["backend"] == {"keyframe": "local", "clip": "local", "shot": "local"}
    assert len(meta["key"]) == 64 and meta["cost"] == 0.0
    assert meta["keyframe"] == {"used": "local-1", "status": "unpicked"}
    assert refs["take2"].metadata["filmc"]["step"] == "clip.one.a1.take2"
    # Scene markers, and the dialogue where each line is said.
    assert [(m.name, m.marked_range.start_time.value) for m in picture.markers] == [
        ("Morning", 0), ("Noon", 84)]
    said = [c for c in dialogue if isinstance(c, otio.schema.Clip)]
    assert [(c.metadata["filmc"]["speaker"], c.metadata["filmc"]["text"]) for c in said] == [
        ("ANA", "There you are."), ("BO", "Look at it fly!")]
    assert said[1].metadata["filmc"]["paren"] == "shouting"
    starts = [dialogue.range_of_child(c).start_time.value for c in said]
    assert 0 <= starts[0] < 48 and 48 <= starts[1] < 84  # inside their shots
    assert all(path_of(c.media_reference.target_url).is_file() for c in said)


def test_edl_and_fcpxml_hold_the_active_take(built: Path) -> None:
    export = built / OUT / "export"
    edl = otio.adapters.read_from_file(str(export / "film.edl"), rate=24)
    events = list(edl.tracks[0])
    assert [e.name for e in events] == list(FRAMES)  # clip names are shot ids
    assert [e.duration().value for e in events] == list(FRAMES.values())
    assert path_of(events[0].media_reference.target_url) == \
        built / OUT / "clips" / "a1.take1.mp4"
    fcp = otio.adapters.read_from_file(str(export / "film.fcpxml"))
    tracks = {tuple(c.name for c in t): t for t in fcp.tracks}
    picture = tracks[tuple(FRAMES)]
    assert [c.duration().value for c in picture] == list(FRAMES.values())
    assert all(len(c.media_references()) == 1 for c in picture)
    assert path_of(picture[0].media_reference.target_url) == \
        built / OUT / "clips" / "a1.take1.mp4"
    lines = [c.name for t in fcp.tracks for c in t if c.name.endswith(".1")]
    assert sorted(lines) == ["a1.1", "a2.1"]


def test_srt_is_the_films_subtitles(built: Path) -> None:
    text = (built / OUT / "export" / "film.srt").read_text(encoding="utf-8")
    assert text == (built / OUT / "film.srt").read_text(encoding="utf-8")
    cues = re.findall(r"(\d+)\n(\d\d:\d\d:\d\d,\d{3}) --> (\d\d:\d\d:\d\d,\d{3})\n(.+?)\n\n",
                      text + "\n", re.S)
    assert [c[3] for c in cues] == ["There you are.", "Look at it fly!"]
    assert cues[0][1] < cues[0][2] <= cues[1][1] < "00:00:03,500"  # both in the first scene


def test_csv_shot_list_opens_as_a_table(built: Path) -> None:
    with open(built / OUT / "export" / "shots.csv", encoding="utf-8-sig", newline="") as f:
        rows = list(csv.DictReader(f))
    assert [r["shot"] for r in rows] == list(FRAMES)
    a1, a2, b1 = rows
    assert (a1["scene"], a1["size"], a1["angle"], a1["lens"], a1["movement"]) == \
        ("one", "wide", "eye_level", "35mm", "static")
    assert (a1["light"], a1["cast"], a1["duration"]) == ("blue_hour", "ANA", "2")
    assert (a1["candidates"], a1["pick"], a1["takes"], a1["status"]) == \
        ("local-1 local-2", "", "take1 take2", "unpicked")
    assert a1["cost (USD)"] == "0.0" and a1["action"] == "Ana walks along the pier."
    assert (a2["cast"], a2["duration"], a2["pick"], a2["take"], a2["status"]) == \
        ("ANA, BO", "1.5", "local-1", "take1", "single")
    assert b1["duration"] == "2" and b1["number"] == "3"


def test_export_command_builds_one_and_copies_it(project: Path) -> None:
    r = filmc("export", "cut.film", "--format", "csv", "-o", "lists/cut.csv", cwd=project)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == "lists/cut.csv"
    assert (project / "lists" / "cut.csv").read_bytes() == \
        (project / OUT / "export" / "shots.csv").read_bytes()
    done = statuses(project)
    assert done["export.csv"] in ("ran", "cached") and "export.otio" not in done
    again = filmc("export", "cut.film", "--format", "csv", cwd=project)
    assert again.returncode == 0 and again.stdout.strip().endswith("export/shots.csv")
    assert statuses(project)["export.csv"] == "cached"  # nothing it holds changed
    bad = filmc("export", "cut.film", "--format", "aaf", cwd=project)
    assert bad.returncode == 64
    assert "invalid choice: 'aaf'" in bad.stderr and "Traceback" not in bad.stderr


def test_exports_follow_what_they_hold(project: Path) -> None:
    """A moved project renames every file; a note changes nothing exported; a camera
    edit changes the shot list and the timelines; the exports are made again only then."""
    r = filmc("build", "--offline", "cut.film", cwd=project)  # the copy: a new folder
    assert r.returncode == 0, r.stderr
    ran = {i for i, s in statuses(project).items() if s == "ran"}
    assert ran == {"export.otio", "export.edl", "export.fcpxml"}  # they name the folder
    assert path_of(list(timeline(project).tracks[0])[0].media_reference.target_url) \
        .is_relative_to(project)
    film = project / "cut.film"
    film.write_text(film.read_text().replace('cast BO\n', 'cast BO\n    note "reshoot"\n'))
    r = filmc("build", "--offline", "cut.film", cwd=project)
    assert r.returncode == 0, r.stderr
    assert {s for s in statuses(project).values()} <= {"cached", "provided"}
    film.write_text(film.read_text().replace("medium high_angle", "full high_angle"))
    r = filmc("build", "--offline", "cut.film", cwd=project)
    assert r.returncode == 0, r.stderr
    done = statuses(project)
    assert {i for i, s in done.items() if s == "ran" and i.startswith("export.")} == {
        "export.otio", "export.edl", "export.fcpxml", "export.csv"}
    assert done["export.srt"] == "cached"
    with open(project / OUT / "export" / "shots.csv", encoding="utf-8-sig") as f:
        assert [r["size"] for r in csv.DictReader(f)] == ["wide", "close_up", "full"]


def test_an_exports_key_holds_each_shots_entry_by_its_digest(project: Path) -> None:
    """A timeline's key holds each shot's entry, and each shot's lines, by the sha256 of
    its canonical text (the shot list each row), the same whether the compile kept a memo
    or not; the record the last build keeps is that, not a second copy of the cut."""
    from filmc.compiler import exports, pipeline
    from filmc.compiler.keys import canonical

    fresh = pipeline.compile_film(project / "cut.film", offline=True).graph
    memo = pipeline.Memo()
    pipeline.compile_film(project / "cut.film", offline=True, memo=memo)
    again = pipeline.compile_film(project / "cut.film", offline=True, memo=memo).graph
    assert memo.graph.reused > 0
    for fmt in ("otio", "edl", "fcpxml", "csv"):
        step = fresh.nodes[f"export.{fmt}"]["step"]
        assert again.nodes[f"export.{fmt}"]["step"].key == step.key
        params, keyed = step.params, step.record["params"]
        held = "rows" if fmt == "csv" else "shots"
        assert keyed[held] == [exports.digest(canonical(e)) for e in params[held]]
        assert {k: v for k, v in keyed.items() if k not in (held, "lines")} == \
            {k: v for k, v in params.items() if k not in (held, "lines")}
        if fmt in ("otio", "fcpxml"):
            said: dict[str, list] = {}
            for line in params["lines"]:
                said.setdefault(line["shot"], []).append(line)
            assert len(said) == 2  # a1's line, and b1's
            assert keyed["lines"] == [exports.digest(canonical(v)) for v in said.values()]


def test_a_pick_is_active_and_what_it_passed_over_stays_without_being_made(
        project: Path) -> None:
    r = filmc("pick", "cut.film", "a1", "local-2", cwd=project)
    assert r.returncode == 0, r.stderr
    r = filmc("export", "cut.film", "--format", "otio", cwd=project)  # makes the takes anew
    assert r.returncode == 0, r.stderr
    assert statuses(project)["clip.one.a1.take2"] == "ran"
    r = filmc("pick", "cut.film", "a1", "--clip", "take2", cwd=project)
    assert r.returncode == 0, r.stderr
    r = filmc("export", "cut.film", "--format", "otio", cwd=project)
    assert r.returncode == 0, r.stderr
    assert "clip.one.a1.take1" not in statuses(project)  # passed over: not even looked at
    a1 = list(timeline(project).tracks[0])[0]
    assert a1.active_media_reference_key == "take2"
    refs = a1.media_references()
    assert {"take1", "keyframe:local-1"} <= set(refs)  # passed over, still there to swap to
    assert a1.metadata["filmc"]["keyframe"] == {"used": "local-2", "status": "picked"}
    # A third candidate after the pick: the film does not need it, and an export never
    # makes one; once made, the export names it.
    film = project / "cut.film"
    film.write_text(film.read_text().replace("candidates 2", "candidates 3"))
    r = filmc("export", "cut.film", "--format", "otio", cwd=project)
    assert r.returncode == 0, r.stderr
    assert "keyframe.one.a1.local-3" not in statuses(project)
    assert "keyframe:local-3" not in list(timeline(project).tracks[0])[0].media_references()
    r = filmc("build", "--offline", "cut.film", "--select", "keyframe.one.a1.local-3",
              cwd=project)
    assert r.returncode == 0, r.stderr
    r = filmc("export", "cut.film", "--format", "otio", cwd=project)
    assert r.returncode == 0, r.stderr
    assert statuses(project)["export.otio"] == "ran"  # the store gained what it names
    ref = list(timeline(project).tracks[0])[0].media_references()["keyframe:local-3"]
    assert path_of(ref.target_url) == project / OUT / "keyframes" / "a1.local-3.png"


def test_shot_files_keep_their_names_when_shots_are_reordered(project: Path) -> None:
    before = sorted(p.name for p in (project / OUT / "shots").iterdir())
    film = project / "cut.film"
    text = film.read_text()
    a1 = text[text.index("  shot a1"):text.index("  shot a2")]
    film.write_text(text.replace(a1, "").replace("  }\n}\n\nscene two", "  }\n" + a1.rstrip()
                                                 + "\n}\n\nscene two"))
    r = filmc("build", "--offline", "cut.film", cwd=project)
    assert r.returncode == 0, r.stderr
    assert sorted(p.name for p in (project / OUT / "shots").iterdir()) == before
    clips = list(timeline(project).tracks[0])
    assert [c.name for c in clips] == ["a2", "a1", "b1"]
    assert path_of(clips[1].media_references()["conformed"].target_url) == \
        project / OUT / "shots" / "a1.mp4"
    cut = json.loads((project / OUT / "timeline.json").read_text())
    assert [(c["shot"], c["file"]) for c in cut["clips"]] == [
        ("a2", "shots/a2.mp4"), ("a1", "shots/a1.mp4"), ("b1", "shots/b1.mp4")]


def test_the_example_film_exports_to_every_format_and_each_loads_back(tmp_path: Path) -> None:
    """examples/wolfpack, 28 shots over four scenes (one shot id in Chinese): the shot list
    and subtitles through `filmc export`; the timelines written by the export step's own
    writer from the compiled graph (building the example's media takes minutes), each read
    back by OpenTimelineIO and its adapters."""
    from conftest import copy_example

    from filmc.backends.local.interchange import write_export

    project = copy_example(tmp_path / "wolfpack")
    for fmt in ("csv", "srt"):
        r = filmc("export", "--offline", "--format", fmt, "-o", str(tmp_path), cwd=project)
        assert r.returncode == 0, r.stderr
    with open(tmp_path / "shots.csv", encoding="utf-8-sig", newline="") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 28 and rows[17]["shot"] == "小狼" and rows[3]["takes"] == "take1 take2"
    assert len(re.findall(r" --> ", (tmp_path / "film.srt").read_text(encoding="utf-8"))) == 12
    for fmt, spec, inputs in export_jobs(project):
        out = tmp_path / fmt
        out.mkdir()
        written = write_export(spec, inputs, out)
        tl = otio.adapters.read_from_file(str(written), **({"rate": 24} if fmt == "edl" else {}))
        picture = next(t for t in tl.tracks if len(t) == 28)
        assert sum(c.duration().value for c in picture) == 2784  # 1:56 at 24 fps
        assert [c.name for c in picture][17] == "小狼"
        if fmt == "otio":
            clip = picture[3]
            assert clip.name == "chen_watches" and clip.active_media_reference_key == "take1"
            assert len(clip.media_references()) == 7  # 2 takes, 4 candidates, the shot
            assert [m.name for m in picture.markers][2] == "狼崽"
            stems = [t for t in tl.tracks if t.name.endswith(" stem")]
            assert [len(t) for t in stems] == [1, 1, 1]
            assert all(t[0].duration().value == 2784 for t in stems)


def _timeline_by_api(spec: dict, media: dict, rate: float) -> otio.schema.Timeline:
    """The timeline made object by object through OpenTimelineIO's Python API: what
    interchange.py made before it wrote OTIO's JSON for the reader (the oracle)."""
    from opentimelineio.opentime import RationalTime, TimeRange

    folder = Path(spec["folder"])

    def span(start: int, frames: int) -> TimeRange:
        return TimeRange(RationalTime(start, rate), RationalTime(frames, rate))

    def url(ref: dict) -> str | None:
        ext = media.get(ref["step"])
        return None if ext is None else (folder / (ref["file"] + ext)).as_uri()

    tl = otio.schema.Timeline(name=spec["title"], global_start_time=RationalTime(0, rate))
    tl.metadata["filmc"] = {k: spec[k] for k in ("title", "fps", "width", "height",
                                                 "language")}
    picture = otio.schema.Track(name="Picture", kind=otio.schema.TrackKind.Video)
    tl.tracks.append(picture)
    for shot in spec["shots"]:
        clip = otio.schema.Clip(name=shot["id"], source_range=span(0, shot["frames"]))
        if "meta" in shot:
            clip.metadata["filmc"] = shot["meta"]
        refs = {}
        for ref in shot["refs"]:
            if url(ref) is None:
                continue
            r = otio.schema.ExternalReference(target_url=url(ref))
            if ref["kind"] != "keyframe":
                r.available_range = span(0, shot["frames"])
            r.metadata["filmc"] = {k: ref[k] for k in ("kind", "step", "key", "backend", "seed")}
            refs[ref["name"]] = r
        if spec["format"] != "otio":
            clip.media_reference = refs[shot["active"]]
        else:
            clip.set_media_references(refs, shot["active"])
        picture.append(clip)
    colors = ("RED", "ORANGE", "YELLOW", "GREEN", "CYAN", "BLUE", "PURPLE", "MAGENTA")
    for n, scene in enumerate(spec["scenes"]):
        marker = otio.schema.Marker(name=scene["title"] or scene["id"], color=colors[n % 8],
                                    marked_range=span(scene["start"], scene["frames"]))
        marker.metadata["filmc"] = {"scene": scene["id"], "place": scene["place"]}
        picture.markers.append(marker)
    if spec["lines"]:
        track = otio.schema.Track(name="Dialogue", kind=otio.schema.TrackKind.Audio)
        at = 0
        for line in sorted(spec["lines"], key=lambda x: x["start"]):
            start = max(line["start"], at)
            frames = line["start"] + line["frames"] - start
            if frames <= 0:
                continue
            if start > at:
                track.append(otio.schema.Gap(source_range=span(0, start - at)))
            target = url(line)
            ref = otio.schema.ExternalReference(target_url=target,
                                                available_range=span(0, frames)) \
                if target is not None else otio.schema.MissingReference()
            clip = otio.schema.Clip(name=line["name"], media_reference=ref,
                                    source_range=span(0, frames))
            clip.metadata["filmc"] = {k: line[k] for k in ("speaker", "paren", "text", "scene",
                                                           "shot", "line", "step", "key")}
            track.append(clip)
            at = start + frames
        tl.tracks.append(track)
    if spec.get("stems") and "mix" in media:
        for name in spec["stems"]:
            track = otio.schema.Track(name=f"{name.capitalize()} stem",
                                      kind=otio.schema.TrackKind.Audio)
            ref = otio.schema.ExternalReference(
                target_url=(folder / f"film.{name}.wav").as_uri(),
                available_range=span(0, spec["frames"]))
            clip = otio.schema.Clip(name=f"film.{name}", media_reference=ref,
                                    source_range=span(0, spec["frames"]))
            clip.metadata["filmc"] = {"stem": name, "step": "mix"}
            track.append(clip)
            tl.tracks.append(track)
    return tl


@pytest.mark.parametrize("made", [True, False], ids=["all-made", "some-not-made"])
def test_the_timeline_is_what_opentimelineios_api_makes_byte_for_byte(
        tmp_path: Path, made: bool) -> None:
    """The timelines are built as OTIO's JSON (a 3,000-shot film spent seconds in its
    Python API): the OTIO file is that JSON as it is, the EDL and FCPXML what the
    adapters write of the timeline OpenTimelineIO's reader makes of it.  Each format's
    file is the one the API-built timeline gives (OTIO's without indentation), byte for
    byte, on the example film (a Chinese shot id; a project folder with a space and
    accents, which its URLs quote), with every file there, and with some not (the
    keyframe candidates, as a pick passed over: no reference named; a line of dialogue:
    a missing reference; the mix: no stems)."""
    from conftest import copy_example

    from filmc.backends.local import interchange

    project = copy_example(tmp_path / "mes films" / "loup é")
    for fmt, spec, inputs in export_jobs(project):
        first_line = next((i[5] for i in inputs if i[5].startswith("speech.")), None)
        if not made:
            inputs = [i for i in inputs if not i[5].startswith("keyframe.")
                      and i[5] not in ("mix", first_line)]
        out = tmp_path / fmt
        out.mkdir()
        written = interchange.write_export(spec, inputs, out).read_text(encoding="utf-8")
        rate = interchange.fcpx_rate(Fraction(spec["fps"])) if fmt == "fcpxml" else \
            interchange.edl_rate(Fraction(spec["fps"])) if fmt == "edl" else Fraction(spec["fps"])
        media = {i[5]: i[6] for i in inputs}
        adapter = {"otio": "otio_json", "edl": "cmx_3600", "fcpxml": "fcpx_xml"}[fmt]
        oracle = otio.adapters.write_to_string(_timeline_by_api(spec, media, float(rate)),
                                               adapter, **({"indent": -1} if fmt == "otio"
                                                           else {}))
        assert written == oracle, fmt
        if fmt == "otio":
            assert "mes%20films/loup%20%C3%A9/build/wolfpack/shots/%E5%B0%8F%E7%8B%BC.mp4" \
                in written
            assert ("MissingReference" in written) != made and ("stem" in written) == made


def test_a_worker_writing_the_timeline_again_encodes_only_the_clips_that_changed(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A render worker keeps the clips of the timelines it wrote (`build --watch` keeps
    its workers): the next timeline encodes only the shots whose entry or media changed,
    and its text is the one encoding the whole timeline gives."""
    import copy

    from conftest import copy_example

    from filmc.backends.local import interchange

    project = copy_example(tmp_path / "p")
    for fmt, spec, inputs in export_jobs(project):
        media = {i[5]: i[6] for i in inputs}

        def whole(spec: dict, media: dict) -> str:
            return json.dumps(interchange.timeline_json(spec, media), ensure_ascii=False,
                              separators=(",", ":"))

        first = interchange.timeline_text(spec, media)
        assert first == whole(spec, media), fmt
        made: list[str] = []
        clip = interchange._Parts.clip
        with monkeypatch.context() as m:
            m.setattr(interchange._Parts, "clip",
                      lambda self, shot, made=made, clip=clip:
                      made.append(shot["id"]) or clip(self, shot))
            assert interchange.timeline_text(spec, media) == first and made == [], fmt
            edited, moved = copy.deepcopy(spec), dict(media)
            one, two = edited["shots"][1], edited["shots"][2]
            one["frames"] += 1  # its own entry: its clip again
            moved[two["refs"][0]["step"]] = ".mov"  # another's take, made as another file
            again = interchange.timeline_text(edited, moved)
            assert made == [one["id"], two["id"]], (fmt, made)
        assert again == whole(edited, moved), fmt


def test_a_new_worker_reads_back_the_clips_the_last_one_kept(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A worker keeps the clips of the timeline it wrote in the user's cache once it has
    answered (`save_clips`); a worker started after it (a plain build's) encodes only
    the clips that changed since, and writes the text encoding the whole gives.  A file
    of clips that is damaged is none."""
    import copy

    from conftest import copy_example

    from filmc.backends.local import interchange

    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    interchange._clips.clear()
    project = copy_example(tmp_path / "p")
    fmt, spec, inputs = next(j for j in export_jobs(project) if j[0] == "otio")
    media = {i[5]: i[6] for i in inputs}
    first = interchange.timeline_text(spec, media)
    interchange.save_clips()
    (kept,) = (tmp_path / "cache" / "filmc" / "timelines").glob("*.clips")
    interchange._clips.clear()  # a new worker
    made: list[str] = []
    clip = interchange._Parts.clip
    monkeypatch.setattr(interchange._Parts, "clip",
                        lambda self, shot: made.append(shot["id"]) or clip(self, shot))
    edited = copy.deepcopy(spec)
    edited["shots"][3]["frames"] += 2
    again = interchange.timeline_text(edited, media)
    assert made == [edited["shots"][3]["id"]]
    assert again == json.dumps(interchange.timeline_json(edited, media), ensure_ascii=False,
                               separators=(",", ":"))
    interchange.save_clips()

    kept.write_bytes(b"filmc-clips 1\n" + b"\x80garbage")
    interchange._clips.clear()
    made.clear()
    assert interchange.timeline_text(spec, media) == first
    assert len(made) == len(spec["shots"])  # nothing read back: every clip encoded
    interchange._unsaved.clear()


def test_a_film_with_no_shots_has_no_edl_and_says_why(tmp_path: Path) -> None:
    """OpenTimelineIO's EDL writer fails on an empty track (IndexError, a bug's traceback
    that ended `build --watch`, which had read a file while an editor wrote it): the step
    fails with a message; the OTIO and FCPXML of such a film are written."""
    from conftest import copy_example

    from filmc.backends.local.interchange import write_export
    from filmc.backends.protocol import BackendError

    project = copy_example(tmp_path / "p")
    for fmt, spec, _inputs in export_jobs(project):
        empty = {**spec, "shots": [], "scenes": [], "lines": [], "frames": 0}
        out = tmp_path / fmt
        out.mkdir()
        if fmt == "edl":
            with pytest.raises(BackendError, match="a film with no shots has no EDL"):
                write_export(empty, [], out)
        else:
            assert write_export(empty, [], out).stat().st_size > 0
