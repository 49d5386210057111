"""Dialogue timed by the real length of its speech, where it is known (issue 14).

Until a line has been said, the IR times it by an estimate of its words; once its
speech step has run, the store knows how long it is (`audio_seconds` in its action)
and every compile times the line by that (engine/lengths.py).  A build that is about
to say lines says them first and compiles again, so the shots, subtitles and mix it
makes are timed by the speech itself, and the next build finds everything current."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import wave
from fractions import Fraction
from pathlib import Path

import pytest
from test_build import FILM

from filmc.compiler.pipeline import compile_film
from filmc.engine.lengths import lookup_for


def lines(film) -> dict[tuple[str, int], tuple[Fraction, Fraction]]:
    return {(s.id, ln.index): (ln.start, ln.end) for s in film.shots for ln in s.lines}


def filmc(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "filmc", *args], cwd=cwd, timeout=600,
                          env={**os.environ, "NO_COLOR": "1"}, capture_output=True, text=True)


def test_a_known_length_times_its_line_and_keys_follow(tmp_path: Path) -> None:
    (tmp_path / "tiny.film").write_text(FILM, encoding="utf-8")
    plain = compile_film(tmp_path / "tiny.film", offline=True)
    speech = {n: d["step"].key for n, d in plain.graph.nodes(data=True) if d["kind"] == "speech"}
    b1 = next(n for n in speech if ".b1." in n)
    asked: list[list[str]] = []

    def said(root: Path, store: str | None):
        def lookup(keys: list[str]) -> dict[str, Fraction]:
            asked.append(list(keys))
            return {speech[b1]: Fraction(3, 4)}
        return lookup

    timed = compile_film(tmp_path / "tiny.film", offline=True, said=said)
    assert sorted(asked[0]) == sorted(speech.values())  # every line, asked once
    before, after = lines(plain.film), lines(timed.film)
    start, end = after[("b1", 1)]
    assert end - start == Fraction(3, 4)  # said in 0.75 s: placed with equal pauses
    assert start == (2 - Fraction(3, 4)) / 2  # b1 is 2 s long
    assert before[("b1", 1)] != after[("b1", 1)]
    assert {k: v for k, v in after.items() if k[0] != "b1"} == \
        {k: v for k, v in before.items() if k[0] != "b1"}
    keys = {n: d["step"].key for n, d in timed.graph.nodes(data=True)}
    old = {n: d["step"].key for n, d in plain.graph.nodes(data=True)}
    assert set(keys) == set(old) and list(timed.graph) == list(plain.graph)  # same steps
    changed = {n for n in keys if keys[n] != old[n]}
    assert "shot.two.b1" in changed and "subtitles" in changed and "film" in changed
    assert not any(n.startswith("speech.") for n in changed)  # speech is not timed by itself
    assert not any(".a1" in n or ".a2" in n or ".c" in n for n in changed
                   if n.startswith(("shot.", "clip.", "keyframe.")))
    assert timed.graph.graph["retimed"] == 1


@pytest.fixture(scope="module")
def built(tmp_path_factory) -> Path:
    project = tmp_path_factory.mktemp("said")
    (project / "tiny.film").write_text(FILM, encoding="utf-8")
    r = filmc("build", "--offline", "tiny.film", cwd=project)
    assert r.returncode == 0, r.stderr
    assert "saying 3 lines of dialogue first" in r.stderr
    return project


def test_a_build_times_the_shots_by_the_lines_it_said(built: Path) -> None:
    out = built / "build" / "tiny"
    timed = compile_film(built / "tiny.film", offline=True, said=lookup_for)
    assert timed.graph.graph["retimed"] == 3
    durations = {s.id: s.duration for s in timed.film.shots}
    for (shot, n), (start, end) in lines(timed.film).items():
        with wave.open(str(out / "dialogue" / f"{shot}.{n}.wav")) as w:
            said = Fraction(round(w.getnframes() / w.getframerate() * 1000), 1000)
        # As long as eSpeak said it, or the whole shot when it is longer than the shot.
        assert end - start == min(said, durations[shot]), (shot, n)
    # What the build made is what that compile asks for: nothing to run.
    report = json.loads((out / "report.json").read_text())
    ran = {s["id"] for s in report["steps"] if s["status"] == "ran"}
    assert {s for s in ran if s.startswith("speech.")} == \
        {n for n, d in timed.graph.nodes(data=True) if d["kind"] == "speech"}
    keys = {d["step"].key for _n, d in timed.graph.nodes(data=True) if d["step"].backend}
    made = set()
    with open(built / ".filmc" / "actions.log", encoding="utf-8") as f:
        for line in f:
            rec = json.loads(line)
            made.add(rec["key"])
            if rec["meta"].get("kind") == "speech":
                assert rec["meta"]["audio_seconds"] > 0
    assert keys <= made


def test_the_next_build_runs_nothing(built: Path) -> None:
    (built / ".filmc" / "noop.json").unlink(missing_ok=True)  # past the no-op fast path
    r = filmc("build", "--offline", "tiny.film", cwd=built)
    assert r.returncode == 0, r.stderr
    assert "saying" not in r.stderr
    report = json.loads((built / "build" / "tiny" / "report.json").read_text())
    assert not [s["id"] for s in report["steps"] if s["status"] == "ran"]


def test_plan_sees_what_build_made(built: Path) -> None:
    r = filmc("plan", "--offline", "tiny.film", cwd=built)
    assert r.returncode == 0, r.stdout + r.stderr  # 0: nothing would run
