"""`filmc build` end to end: real ffmpeg on real files, as a user runs it.

A small film (three scenes, six shots, dialogue in two languages) at a small
frame size, built offline with the local backend.  What is checked is what a
person would check: the film's length, size and frame rate, the subtitles'
timecodes, that shots join by stream copy, which steps ran (from the build
report), and that no failure, kill or second build loses or corrupts work.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import sqlite3
import subprocess
import sys
import threading
import time
import uuid
from fractions import Fraction
from pathlib import Path

import pytest

from filmc.backends.ffmpeg import probe

FILM = """\
use std.camera
use std.light

film "Tiny" {
  language "en"
  aspect 2.4:1
  size 192x80
  fps 24
  takes 1
}

character ANA "Ana" {
  look "a tall woman in a red coat"
  voice "warm"
}

character BO "Bo" {
  look "a boy with a kite"
  voice "bright"
}

location PIER "Pier" {
  look "a wooden pier over grey water"
}

scene one "Morning" EXT PIER DAWN {
  shot a1 2s {
    camera wide eye_level static
    light blue_hour
    cast ANA
    action "Ana walks along the pier."
  }
  shot a2 1.5s {
    camera close_up low_angle dolly_in
    light golden_hour
    cast ANA
    ANA: "There you are."
  }
}

scene two "Noon" EXT PIER NOON {
  shot b1 48f {
    camera medium high_angle pan_left
    light harsh_noon
    cast ANA, BO
    BO: "Look at it fly!"
  }
  shot b2 0:03 {
    camera extreme_wide birds_eye crane_up
    light overcast
    action "The kite rises over the water."
  }
}

scene three "风筝" EXT PIER DUSK {
  shot c1 2.5s {
    camera medium_close_up dutch handheld
    light neon
    cast BO
    BO: "明天再来。"
  }
  shot c2 1s {
    camera insert eye_level zoom_in
    light low_key
    action "The string slips through his fingers."
  }
}
"""
SHOTS = {"a1": 2, "a2": 1.5, "b1": 2, "b2": 3, "c1": 2.5, "c2": 1}
STEMS = ("film.dialogue.wav", "film.music.wav", "film.effects.wav")  # beside the film


def filmc(*args: str, cwd: Path, env: dict | None = None) -> subprocess.CompletedProcess:
    env = {**os.environ, "NO_COLOR": "1", **(env or {})}
    return subprocess.run([sys.executable, "-m", "filmc", *args], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=600)


def report(project: Path) -> dict:
    return json.loads((project / "build" / "tiny" / "report.json").read_text())


def ran(project: Path) -> set[str]:
    """The steps the last build ran, but the exports: they name every shot and the
    project's folder, so they follow any edit or move (tests/test_export.py)."""
    return {s["id"] for s in report(project)["steps"] if s["status"] == "ran"
            and not s["id"].startswith("export.")}


@pytest.fixture(scope="module")
def built(tmp_path_factory) -> Path:
    project = tmp_path_factory.mktemp("tiny")
    (project / "tiny.film").write_text(FILM, encoding="utf-8")
    r = filmc("build", "--offline", "tiny.film", cwd=project)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip().endswith("build/tiny/film.mp4")
    return project


@pytest.fixture
def project(built: Path, tmp_path: Path) -> Path:
    """A copy of the built project (store included) that a test may change."""
    dest = tmp_path / "p"
    shutil.copytree(built, dest, symlinks=True)
    (dest / ".filmc" / "noop.json").unlink(missing_ok=True)  # it holds the other folder's paths
    return dest


def test_the_film_is_the_sum_of_its_shots(built: Path) -> None:
    out = built / "build" / "tiny"
    film = probe(out / "film.mp4")
    total = sum(SHOTS.values())
    assert film["frames"] == total * 24
    assert abs(film["duration"] - total) <= 1 / 24
    assert (film["width"], film["height"], film["fps"]) == (192, 80, "24")
    assert [c[0] for c in film["chapters"]] == ["Morning", "Noon", "风筝"]
    shots = sorted((out / "shots").iterdir())
    assert [p.name for p in shots] == ["a1.mp4", "a2.mp4", "b1.mp4", "b2.mp4", "c1.mp4",
                                       "c2.mp4"]
    params = []
    for p, seconds in zip(shots, SHOTS.values()):
        info = probe(p)
        assert info["frames"] == round(seconds * 24)
        params.append({k: v for k, v in info.items()
                       if k not in ("duration", "video_duration", "audio_duration", "frames")})
    assert all(p == params[0] for p in params), "every shot must be encoded identically"
    assert (out / "keyframes" / "a1.local-1.png").is_file()
    assert (out / "clips" / "a1.take1.mp4").is_file()
    # One contact sheet a scene, by its id, and the index of them all.
    assert sorted(p.name for p in (out / "storyboard").iterdir()) == [
        "index.html", "one.png", "three.png", "two.png"]


def test_subtitles_follow_the_dialogue(built: Path) -> None:
    """(Their reading rules, with longer lines and two speakers: tests/test_subtitles.py.)"""
    from filmc.compiler.pipeline import compile_film
    from filmc.engine.lengths import lookup_for

    # Timed as the build timed them: by how long each line was said (tests/test_speech_timing.py).
    film = compile_film(built / "tiny.film", offline=True, said=lookup_for).film
    expected = []
    t = Fraction(0)
    for shot in film.shots:
        for line in shot.lines:
            expected.append((float(t + line.start), float(t + line.end), line.text))
        t += shot.duration
    srt = (built / "build" / "tiny" / "film.srt").read_text(encoding="utf-8")
    blocks = [b.split("\n") for b in srt.strip().split("\n\n")]
    assert len(blocks) == len(expected) == 3

    def secs(tc: str) -> float:
        h, m, rest = tc.split(":")
        s, ms = rest.split(",")
        return int(h) * 3600 + int(m) * 60 + int(s) + int(ms) / 1000

    for (number, times, text), (start, end, words) in zip(blocks, expected, strict=True):
        assert number.isdigit()
        a, b = times.split(" --> ")
        # Each short line stays on screen as long as it is said, and at least a second.
        assert abs(secs(a) - start) < 0.002 and text == words
        assert abs(secs(b) - max(end, start + 1.0)) < 0.002


def test_nothing_changed_nothing_runs(project: Path) -> None:
    r = filmc("build", "--offline", "tiny.film", cwd=project)
    assert r.returncode == 0, r.stderr
    assert ran(project) == set()
    r = filmc("build", "--offline", "tiny.film", cwd=project)  # now through the no-op path
    assert "up to date" in r.stderr


def test_fmt_changes_nothing_to_build(project: Path) -> None:
    path = project / "tiny.film"
    path.write_text(path.read_text().replace("  cast ANA\n", "  cast ANA  // her\n\n", 1))
    assert filmc("fmt", "tiny.film", cwd=project).returncode == 0
    assert filmc("build", "--offline", "tiny.film", cwd=project).returncode == 0
    assert ran(project) == set()


def test_editing_one_camera_runs_exactly_that_shot(project: Path) -> None:
    path = project / "tiny.film"
    path.write_text(path.read_text().replace("camera medium high_angle pan_left",
                                             "camera medium high_angle pan_right"))
    r = filmc("build", "--offline", "tiny.film", cwd=project)
    assert r.returncode == 0, r.stderr
    assert ran(project) == {"keyframe.two.b1.local-1", "clip.two.b1.take1", "shot.two.b1", "film",
                            "storyboard.two", "storyboard_index"}


def test_a_damaged_object_is_detected_and_rebuilt(project: Path) -> None:
    from filmc.engine.store import Store

    digest = next(s["outputs"][0] for s in report(project)["steps"] if s["id"] == "shot.two.b1")
    with Store.open(project / ".filmc") as store:  # type: ignore[union-attr]
        obj = store.objects.path(digest)
    os.chmod(obj, 0o644)
    obj.write_bytes(b"not a video any more")  # bit rot, or someone's stray write
    r = filmc("build", "--offline", "tiny.film", cwd=project)
    assert r.returncode == 0, r.stderr
    assert "shot.two.b1" in ran(project)
    assert probe(project / "build" / "tiny" / "shots" / "b1.mp4")["frames"] == 48


def test_kill_9_midway_loses_no_finished_step_and_leaves_no_process(project: Path) -> None:
    path = project / "tiny.film"
    path.write_text(path.read_text().replace('look "a tall woman in a red coat"',
                                             'look "a tall woman in a green coat"'))
    mark = f"filmc-test-{uuid.uuid4()}"
    env = dict(os.environ, NO_COLOR="1", FILMC_TEST_MARK=mark)
    proc = subprocess.Popen([sys.executable, "-m", "filmc", "build", "--offline", "--jobs", "2",
                             "tiny.film"], cwd=project, env=env, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    log = project / ".filmc" / "actions.log"
    before = _logged(log)
    # The log, which a step's record reaches as it finishes (the index follows in batches,
    # half a second late: a fast machine finished the whole build before it showed three).
    deadline = time.monotonic() + 120
    while len(_logged(log)) < len(before) + 3 and time.monotonic() < deadline:
        time.sleep(0.01)
    assert marked(mark) - {proc.pid}, "the build had started no render worker"
    assert proc.poll() is None, "the build finished before it could be killed midway"
    proc.kill()  # SIGKILL to the build alone: its workers and their ffmpegs must follow
    proc.wait()
    assert wait_gone(mark), f"processes of the killed build are alive: {marked(mark)}"
    finished = _logged(log) - before
    assert finished, "the build was killed before it finished anything"
    r = filmc("build", "--offline", "tiny.film", cwd=project)
    assert r.returncode == 0, r.stderr
    again = {s["id"]: s for s in report(project)["steps"]}
    from filmc.compiler.pipeline import compile_film

    keys = {n: d["step"].key for n, d in compile_film(path, offline=True).graph.nodes(data=True)}
    rerun = {n for n, s in again.items() if s["status"] == "ran" and keys[n] in finished}
    assert rerun == set(), f"steps finished before the kill ran again: {rerun}"


def marked(mark: str) -> set[int]:
    """The live processes whose environment carries `mark` (zombies are dead)."""
    found = set()
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            if mark.encode() not in (entry / "environ").read_bytes():
                continue
            if (entry / "stat").read_text().rsplit(")", 1)[1].split()[0] == "Z":
                continue
        except OSError:
            continue
        found.add(int(entry.name))
    return found


def wait_gone(mark: str, seconds: float = 10) -> bool:
    deadline = time.monotonic() + seconds
    while marked(mark):
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)
    return True


def _logged(log: Path) -> set[str]:
    """The keys of the steps the store's log records (engine/actionlog.py), whole lines."""
    out = set()
    for line in log.read_bytes().splitlines(keepends=True):
        if line.endswith(b"\n"):
            with contextlib.suppress(ValueError):
                record = json.loads(line)
                if isinstance(record, dict) and "outputs" in record:
                    out.add(record["key"])
    return out


def test_two_builds_at_once_do_not_corrupt_anything(project: Path) -> None:
    path = project / "tiny.film"
    path.write_text(path.read_text().replace("camera extreme_wide birds_eye crane_up",
                                             "camera extreme_wide birds_eye crane_down"))
    env = dict(os.environ, NO_COLOR="1")
    cmd = [sys.executable, "-m", "filmc", "build", "--offline", "tiny.film"]
    from filmc.engine.lock import project_lock
    from filmc.engine.state import state_dir

    # Both started while a build holds the project (this test, standing in for it), so that
    # they meet however fast the machine is: each waits, then they build in turn.
    with project_lock(state_dir(project), True):
        procs = [subprocess.Popen(cmd, cwd=project, env=env, stdout=subprocess.PIPE,
                                  stderr=subprocess.PIPE, text=True) for _ in range(2)]
        said: list[list[str]] = [[], []]
        readers = [threading.Thread(target=lambda p=p, out=out: out.extend(p.stderr),
                                    daemon=True) for p, out in zip(procs, said)]
        for r in readers:
            r.start()
        deadline = time.monotonic() + 120
        while not all(any("waiting for another build" in line for line in out) for out in said):
            assert time.monotonic() < deadline, said
            assert all(p.poll() is None for p in procs), said
            time.sleep(0.02)
    results = [(p.wait(timeout=300), r.join(30)) for p, r in zip(procs, readers)]
    assert all(code == 0 for code, _ in results), said
    assert probe(project / "build" / "tiny" / "film.mp4")["frames"] == sum(SHOTS.values()) * 24
    with sqlite3.connect(project / ".filmc" / "index.db") as con:
        assert con.execute("PRAGMA integrity_check").fetchone()[0] == "ok"


FLAKY = """\
from filmc.backends.protocol import Adapter, BackendError


class Flaky(Adapter):
    kinds = ("keyframe",)

    async def submit(self, request, handle):
        raise BackendError("the service refused the prompt")


class Buggy(Adapter):
    kinds = ("keyframe",)

    async def submit(self, request, handle):
        return {}["no such key"]
"""


def with_adapter(project: Path, name: str) -> None:
    (project / "flaky.py").write_text(FLAKY)
    (project / "filmc.toml").write_text(f'[backends.flaky]\ntype = "flaky:{name}"\n')
    path = project / "tiny.film"
    path.write_text(path.read_text().replace('    action "The kite rises over the water."',
                                             '    action "The kite rises over the water."\n'
                                             '    backend keyframe flaky'))


def test_a_failing_step_is_reported_and_the_rest_finish(project: Path) -> None:
    with_adapter(project, "Flaky")
    r = filmc("build", "--keep-going", "tiny.film", cwd=project, env={"PYTHONPATH": str(project)})
    assert r.returncode == 1
    assert "failed keyframe.two.b2.flaky-1 (shot two/b2): the service refused the prompt" in r.stderr
    steps = {s["id"]: s["status"] for s in report(project)["steps"]}
    assert steps["keyframe.two.b2.flaky-1"] == "failed"
    assert steps["shot.two.b2"] == "skipped" and steps["film"] == "skipped"
    assert steps["shot.three.c1"] in ("ran", "cached")  # the others finish
    # The film from the build before is not this one's: it is set aside, and said so.
    out = project / "build" / "tiny"
    why = "`keyframe.two.b2.flaky-1` failed, so this build did not make"
    assert f"film.mp4 is from an earlier build: {why} `film`; moved to {out}/stale/film.mp4" \
        in r.stderr
    assert not (out / "film.mp4").exists() and (out / "stale" / "film.mp4").is_file()
    assert str(out / "film.mp4") not in r.stdout
    stale = {s["path"]: s for s in report(project)["stale"]}
    # The exports name b2's steps too: the ones an earlier build made are not this one's.
    assert set(stale) == {"film.mp4", "shots/b2.mp4", "clips/b2.take1.mp4",
                          "storyboard/two.png", "storyboard/index.html", "export/film.otio",
                          "export/film.edl",
                          "export/film.fcpxml"}
    # The mix hears no picture: it was made, and its stems are this build's.
    assert steps["mix"] in ("ran", "cached") and all((out / f).is_file() for f in STEMS)
    # A candidate of a backend the shot no longer uses is not the film's any more: gone.
    assert not (out / "keyframes" / "b2.local-1.png").exists()
    assert stale["shots/b2.mp4"]["moved_to"] == "stale/shots/b2.mp4"
    assert (out / "shots" / "b1.mp4").is_file()  # what this build made stays


def stale(project: Path) -> dict[str, str]:
    return {s["path"]: s["why"] for s in report(project)["stale"]}


def test_until_sets_aside_the_outputs_it_did_not_make(project: Path) -> None:
    """`--until keyframe` after an edit: the old film, shot and clip are not this build's
    result; with nothing edited, the film is current and stays where it is."""
    out = project / "build" / "tiny"
    r = filmc("build", "--offline", "--until", "keyframe", "tiny.film", cwd=project)
    assert r.returncode == 0, r.stderr
    # The copy lies elsewhere than the build that made it: the timelines, which name its
    # files by absolute path, are that build's (tests/test_export.py); nothing else is.
    timelines = [f"export/film.{f}" for f in ("otio", "edl", "fcpxml")]
    assert set(stale(project)) == set(timelines) and (out / "film.mp4").is_file()
    path = project / "tiny.film"
    path.write_text(path.read_text().replace("Ana walks along", "Ana runs along"))
    r = filmc("build", "--offline", "--until", "keyframe", "tiny.film", cwd=project)
    assert r.returncode == 0, r.stderr
    because = "this build stopped at `keyframe` steps (--until keyframe)"
    assert stale(project) == {
        "film.mp4": f"film.mp4 is from an earlier build: {because}",
        "clips/a1.take1.mp4": f"clips/a1.take1.mp4 is from an earlier build: {because}",
        "shots/a1.mp4": f"shots/a1.mp4 is from an earlier build: {because}",
        **{f: f"{f} is from an earlier build: {because}"
           for f in (*timelines, "export/shots.csv")}}
    assert all((out / f).is_file() for f in STEMS)  # a picture edit leaves the mix current
    assert f"film.mp4 is from an earlier build: {because}; moved to {out}/stale/film.mp4" \
        in r.stderr
    assert not (out / "film.mp4").exists() and not (out / "shots" / "a1.mp4").exists()
    assert (out / "stale" / "film.mp4").is_file() and (out / "shots" / "a2.mp4").is_file()
    assert (out / "film.srt").is_file() and (out / "timeline.json").is_file()  # still current
    # Building again to the same stage is a no-op that leaves them aside; the whole film
    # clears them.
    r = filmc("build", "--offline", "--until", "keyframe", "tiny.film", cwd=project)
    assert "up to date" in r.stderr and not (out / "film.mp4").exists()
    r = filmc("build", "--offline", "tiny.film", cwd=project)
    assert r.returncode == 0, r.stderr
    assert stale(project) == {} and not (out / "stale").exists()
    assert r.stdout.strip() == str(out / "film.mp4")


def test_select_sets_aside_the_film_it_did_not_make(project: Path) -> None:
    out = project / "build" / "tiny"
    path = project / "tiny.film"
    path.write_text(path.read_text().replace("camera medium high_angle pan_left",
                                             "camera medium high_angle pan_right"))
    r = filmc("build", "--offline", "--select", "+shot:b1", "tiny.film", cwd=project)
    assert r.returncode == 0, r.stderr
    assert "shot.two.b1" in ran(project)
    because = "is from an earlier build: this build made only what --select chose"
    # b1's panel changed too, so its scene's storyboard page is not this build's, nor the
    # index of the pages; the other scenes' pages are.  The mix's stems stay: a camera
    # edit leaves the mix as it was.
    assert stale(project) == {"film.mp4": f"film.mp4 {because}",
                              **{f"storyboard/{f}": f"storyboard/{f} {because}"
                                 for f in ("two.png", "index.html")},
                              **{f"export/{f}": f"export/{f} {because}" for f in (
                                  "film.otio", "film.edl", "film.fcpxml", "shots.csv")}}
    assert (out / "shots" / "b1.mp4").is_file()  # made by this build: in place
    assert (out / "storyboard" / "one.png").is_file()
    assert all((out / f).is_file() for f in STEMS)
    assert (out / "stale" / "film.mp4").is_file() and not (out / "film.mp4").exists()
    assert "film.mp4" not in r.stdout


def test_the_plan_estimates_time_from_what_steps_took(project: Path) -> None:
    """`plan` times each step by the median of what its backend and kind took before: here
    the store says a clip took 100 s and a keyframe 10 s (the typical figures for the
    local backend are 1 s and less); shots have no recorded time: the typical figure."""
    from filmc.compiler.pipeline import compile_film
    from filmc.compiler.plan import TYPICAL_SECONDS, duration

    log = project / ".filmc" / "actions.log"
    records = [json.loads(line) for line in log.read_text().splitlines()]
    for r in records:
        meta = r.get("meta", {})
        if "seconds" in meta:
            meta["seconds"] = 100.0 if meta["kind"] == "clip" else 10.0
            if meta["kind"] == "shot":
                del meta["seconds"]
    log.write_text("".join(json.dumps(r) + "\n" for r in records))
    (project / ".filmc" / "index.db").unlink()  # rebuilt from the log
    force = ["--force", "shot:a1", "--force", "shot:b2"]
    r = filmc("plan", "--offline", "--json", *force, "tiny.film", cwd=project)
    assert r.returncode == 2, r.stderr
    plan = json.loads(r.stdout)
    forced = [s["kind"] for s in plan["steps"] if s["status"] == "forced"]
    assert sorted(forced) == ["clip", "clip", "keyframe", "keyframe", "shot", "shot"]
    program = compile_film(project / "tiny.film", offline=True).program()
    slots = min(program.backends["local"].config.concurrency, program.concurrency)
    expected = (2 * 100 + 2 * 10 + 2 * TYPICAL_SECONDS["local"]["shot"]) / slots
    assert plan["summary"]["seconds"] == pytest.approx(expected, abs=0.01)
    r = filmc("plan", "--offline", *force, "tiny.film", cwd=project)
    assert f"time {duration(expected)}." in r.stdout, r.stdout


def test_a_bug_is_a_bug_with_its_traceback(project: Path) -> None:
    """Not a step's failure: exit 3, the traceback in report.json and with --debug."""
    with_adapter(project, "Buggy")
    env = {"PYTHONPATH": str(project)}
    r = filmc("build", "--keep-going", "tiny.film", cwd=project, env=env)
    assert r.returncode == 3, r.stderr
    assert "internal error (KeyError" in r.stderr and "report.json" in r.stderr
    assert "Traceback" not in r.stderr
    doc = report(project)
    assert "Traceback" in doc["bug"] and "no such key" in doc["bug"] and "flaky.py" in doc["bug"]
    r = filmc("--debug", "build", "tiny.film", cwd=project, env=env)
    assert r.returncode != 0 and "Traceback" in r.stderr and "KeyError" in r.stderr


def test_an_error_at_the_end_neither_hangs_a_pipe_nor_leaves_a_process(project: Path) -> None:
    """`filmc build | tee`: every process that holds the pipe must be gone when the build
    ends, even when it ends on an error after every step ran."""
    path = project / "tiny.film"
    path.write_text(path.read_text().replace("a boy with a kite", "a boy with a blue kite"))
    (project / "build" / "tiny" / "report.json").unlink()
    (project / "build" / "tiny" / "report.json").mkdir()  # writing the report will fail
    mark = f"filmc-test-{uuid.uuid4()}"
    env = dict(os.environ, NO_COLOR="1", FILMC_TEST_MARK=mark)
    r = subprocess.run([sys.executable, "-m", "filmc", "build", "--offline", "--keep-going",
                        "tiny.film"], cwd=project, env=env, capture_output=True, text=True,
                       timeout=120)
    assert r.returncode == 1, r.stderr
    assert "report.json" in r.stderr and "help:" in r.stderr and "Traceback" not in r.stderr
    assert wait_gone(mark), marked(mark)


def test_the_workers_started_while_it_compiles_stop_when_it_does_not(project: Path) -> None:
    """`filmc build` starts its render workers before it compiles, so that they import
    what their jobs use meanwhile; a film that does not compile stops them at once."""
    path = project / "tiny.film"
    path.write_text(path.read_text().replace("    camera wide eye_level static\n",
                                             "    camra wide eye_level static\n"))
    mark = f"filmc-test-{uuid.uuid4()}"
    env = dict(os.environ, NO_COLOR="1", FILMC_TEST_MARK=mark)
    with subprocess.Popen([sys.executable, "-m", "filmc", "build", "--offline", "tiny.film"],
                          cwd=project, env=env, stderr=subprocess.PIPE, text=True) as proc:
        seen: set[int] = set()
        while proc.poll() is None:  # the build and its workers, while it compiles
            seen |= marked(mark)
            time.sleep(0.01)
        err = proc.stderr.read() if proc.stderr else ""
    assert proc.returncode == 1 and "unknown attribute `camra`" in err, err
    assert len(seen) > 1, seen  # its workers were started (and are children of the build)
    assert wait_gone(mark, seconds=2), marked(mark)


def test_an_unwritable_state_folder_is_a_clear_error(project: Path) -> None:
    path = project / "tiny.film"
    path.write_text(path.read_text().replace("a boy with a kite", "a boy with a kite, grinning"))
    shutil.rmtree(project / ".filmc")
    (project / ".filmc").write_text("not a folder")
    for cmd in (["build", "--offline", "tiny.film"], ["gc", "tiny.film"]):
        r = filmc(*cmd, cwd=project)
        assert r.returncode == 1, r.stderr
        assert ".filmc" in r.stderr and "help:" in r.stderr, r.stderr
        assert "internal error" not in r.stderr and "Traceback" not in r.stderr


def test_gc_deletes_only_what_no_current_build_uses(project: Path) -> None:
    path = project / "tiny.film"
    path.write_text(path.read_text().replace("camera insert eye_level zoom_in",
                                             "camera insert eye_level zoom_out"))
    assert filmc("build", "--offline", "tiny.film", cwd=project).returncode == 0
    dry = filmc("gc", "--dry-run", "tiny.film", cwd=project)
    # c2's old keyframe (its panel draws the move), clip and shot, the film, its scene's
    # storyboard page, and the exports that named them or listed the move (the timelines,
    # the shot list); and the storyboard's index, whose object the new one still is (it
    # names the same pages)
    assert dry.returncode == 0 and "would delete 9 objects" in dry.stderr
    assert len(dry.stdout.strip().split("\n")) == 10  # one line per step: its size, if freed
    assert "storyboard_index on local, free" in dry.stdout
    r = filmc("gc", "tiny.film", cwd=project)
    assert "deleted 9 objects" in r.stderr and "forgot 10 cached steps" in r.stderr
    (project / ".filmc" / "noop.json").unlink()
    assert filmc("build", "--offline", "tiny.film", cwd=project).returncode == 0
    assert ran(project) == set()  # everything the film needs survived


def test_clean_removes_the_outputs_not_the_cache(project: Path) -> None:
    assert filmc("clean", "tiny.film", cwd=project).returncode == 0
    assert not (project / "build" / "tiny").exists()
    assert filmc("build", "--offline", "tiny.film", cwd=project).returncode == 0
    assert ran(project) == set() and (project / "build" / "tiny" / "film.mp4").is_file()


def _ffmpeg() -> str:
    from filmc.backends.ffmpeg import ffmpeg_exe

    return ffmpeg_exe()


def _frame(film: Path, seconds: float, out: Path):
    from PIL import Image

    subprocess.run([_ffmpeg(), "-nostdin", "-loglevel", "error", "-y", "-ss", str(seconds), "-i",
                    str(film), "-frames:v", "1", str(out)], check=True)
    return Image.open(out).convert("L")


def test_the_film_carries_its_subtitles_and_can_burn_them(built: Path, tmp_path: Path) -> None:
    film = built / "build" / "tiny" / "film.mp4"
    info = subprocess.run([_ffmpeg(), "-hide_banner", "-i", str(film)], capture_output=True,
                          text=True).stderr
    assert "(eng): Subtitle: mov_text" in info  # a soft track, in the film's language

    burnt = tmp_path / "burnt"
    shutil.copytree(built, burnt, symlinks=True)
    (burnt / ".filmc" / "noop.json").unlink()
    r = filmc("build", "--offline", "--burn-subtitles", "tiny.film", cwd=burnt)
    assert r.returncode == 0, r.stderr
    assert ran(burnt) == {"film"}  # only the film step changes
    from PIL import ImageChops

    t = 2 + 1.5 + 2 + 3 + 1.25  # inside shot c1's line, "明天再来。"
    plain = _frame(film, t, tmp_path / "plain.png")
    with_subs = _frame(burnt / "build" / "tiny" / "film.mp4", t, tmp_path / "subs.png")
    # the burn-in re-encodes, so every pixel moves a little: look for what moved a lot
    box = ImageChops.difference(plain, with_subs).point(lambda v: 255 if v > 80 else 0).getbbox()
    assert box is not None and box[1] > plain.height // 2  # text drawn, in the lower half


def test_ctrl_c_stops_promptly_and_keeps_finished_work(project: Path) -> None:
    """What a terminal's Ctrl-C sends (SIGINT to the foreground process group): the build
    stops, says so, exits 130; no render fails for it, no process is left."""
    path = project / "tiny.film"
    path.write_text(path.read_text().replace("size 192x80", "size 384x160"))  # all of it again
    mark = f"filmc-test-{uuid.uuid4()}"
    env = dict(os.environ, NO_COLOR="1", FILMC_TEST_MARK=mark)
    proc = subprocess.Popen([sys.executable, "-m", "filmc", "build", "--offline", "--jobs", "1",
                             "tiny.film"], cwd=project, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, start_new_session=True)
    log = project / ".filmc" / "actions.log"
    before = _logged(log)
    deadline = time.monotonic() + 60
    while len(_logged(log)) < len(before) + 2 and time.monotonic() < deadline:
        time.sleep(0.01)
    assert proc.poll() is None, "the build finished before it could be interrupted"
    os.killpg(proc.pid, signal.SIGINT)
    sent = time.monotonic()
    out, err = proc.communicate(timeout=60)
    assert time.monotonic() - sent < 10  # promptly
    assert proc.returncode == 130, err
    assert "interrupted; every finished step is kept" in err
    assert "Traceback" not in err and "FAILED" not in err and "failed" not in err
    assert wait_gone(mark), marked(mark)
    kept = _logged(log) - before
    assert kept
    assert report(project)["interrupted"] is True
    assert filmc("build", "--offline", "tiny.film", cwd=project).returncode == 0
    assert not kept & {s["key"] for s in report_steps_ran(project)}


def report_steps_ran(project: Path) -> list[dict]:
    from filmc.compiler.pipeline import compile_film

    keys = {n: d["step"].key
            for n, d in compile_film(project / "tiny.film", offline=True).graph.nodes(data=True)}
    return [{"id": s["id"], "key": keys[s["id"]]} for s in report(project)["steps"]
            if s["status"] == "ran"]


def test_the_store_can_live_elsewhere(project: Path, tmp_path: Path) -> None:
    elsewhere = tmp_path / "big-disk" / "store"
    (project / "filmc.toml").write_text(f'[build]\nstore = "{elsewhere}"\n')
    assert filmc("build", "--offline", "tiny.film", cwd=project).returncode == 0
    assert (elsewhere / "index.db").is_file() and len(ran(project)) > 20  # a new, empty store
    r = filmc("build", "--offline", "tiny.film", cwd=project)
    assert "up to date" in r.stderr  # the fast path found its record there too
    r = filmc("build", "--offline", "tiny.film", cwd=project,
              env={"FILMC_STORE": str(project / ".filmc")})  # the env var wins: the old store
    assert r.returncode == 0 and ran(project) == set()


def test_the_no_op_manifest_lists_what_the_build_read(built: Path) -> None:
    """filmc's own packages and the project's files, never a development checkout's
    virtualenv or tests."""
    doc = json.loads((built / ".filmc" / "noop.json").read_text())
    inputs = [p for p, _stat in doc["inputs"]]
    assert str(built / "tiny.film") in inputs
    assert not [p for p in inputs if "/tests/" in p]
    # of a virtualenv, only what the animatic's keys describe: the ffmpeg it runs
    assert all("ffmpeg" in Path(p).name for p in inputs if "/.venv/" in p)
    import filmc.engine.executor

    assert filmc.engine.executor.__file__ in inputs
    assert len(inputs) < 200


def test_a_new_panel_font_is_not_a_no_op(project: Path, tmp_path: Path) -> None:
    """The font enters the animatic's keys: after it changes, plan and build agree that
    the panels are to draw again, and the fast path does not say "up to date"."""
    assert "up to date" in filmc("build", "--offline", "tiny.film", cwd=project).stderr or \
        ran(project) == set()
    from filmc.backends.local.fonts import BUNDLED

    font = tmp_path / "other.otf"
    font.write_bytes(BUNDLED.read_bytes() + b"\0")
    env = {"FILMC_PANEL_FONT": str(font)}
    plan = json.loads(filmc("plan", "--offline", "--json", "tiny.film", cwd=project,
                            env=env).stdout)
    to_run = {s["id"] for s in plan["steps"] if s["status"] not in ("cached", "provided")}
    assert to_run and {s.split(".")[0] for s in to_run} >= {"keyframe", "storyboard"}
    r = filmc("build", "--offline", "tiny.film", cwd=project, env=env)
    assert r.returncode == 0 and "up to date" not in r.stderr
    assert ran(project) == {s for s in to_run if not s.startswith("export.")}


def test_another_filmc_is_never_told_up_to_date(project: Path) -> None:
    """The manifest names the filmc that wrote it: one installed elsewhere (another
    virtualenv, a checkout, whose code may differ) building the same project builds."""
    assert filmc("build", "--offline", "tiny.film", cwd=project).returncode == 0
    assert "up to date" in filmc("build", "--offline", "tiny.film", cwd=project).stderr
    path = project / ".filmc" / "noop.json"
    doc = json.loads(path.read_text())
    from filmc.engine import noop

    assert doc["filmc"] == str(Path(os.path.abspath(noop.__file__)).parents[1])
    doc["filmc"] = "/elsewhere/site-packages/filmc"
    path.write_text(json.dumps(doc))
    r = filmc("build", "--offline", "tiny.film", cwd=project)
    assert r.returncode == 0 and "up to date" not in r.stderr
    assert "up to date" in filmc("build", "--offline", "tiny.film", cwd=project).stderr
