"""The build report says how long filmc took to start building, and where its CPU went: filmc's own processes (the build and
the local backend's render workers) against the programs they ran (ffmpeg), as the
kernel accounts for them (issue 12 measures filmc's share on a feature with it)."""

from __future__ import annotations

import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

from test_build import FILM


def test_the_report_splits_the_cpu_between_filmc_and_ffmpeg(tmp_path: Path) -> None:
    (tmp_path / "tiny.film").write_text(FILM, encoding="utf-8")
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.monotonic()
    r = subprocess.run([sys.executable, "-m", "filmc", "build", "--offline", "tiny.film"],
                       cwd=tmp_path, env={**os.environ, "NO_COLOR": "1"},
                       capture_output=True, text=True, timeout=600)
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    wall = time.monotonic() - started
    assert r.returncode == 0, r.stderr
    total = (after.ru_utime + after.ru_stime) - (before.ru_utime + before.ru_stime)
    report = json.loads((tmp_path / "build" / "tiny" / "report.json").read_text())
    cpu = report["cpu"]
    # Reading and compiling came before the first step: part of the run, not all of it.
    assert 0 < report["prepared"] < wall
    assert cpu["filmc"] > 0 and cpu["tools"] > 0  # the film was drawn, and encoded
    # Everything the build's process tree used, as the kernel counted it when it ended:
    # the report's two parts are that, less what happened after the report was written
    # (printing, exiting) and what a worker did after its last answer.
    assert cpu["filmc"] + cpu["tools"] <= total + 0.05
    assert cpu["filmc"] + cpu["tools"] >= 0.8 * total


def test_a_build_that_runs_nothing_reports_no_tool_time(tmp_path: Path) -> None:
    (tmp_path / "tiny.film").write_text(FILM, encoding="utf-8")
    build = [sys.executable, "-m", "filmc", "build", "--offline", "tiny.film"]
    env = {**os.environ, "NO_COLOR": "1"}
    subprocess.run(build, cwd=tmp_path, env=env, check=True, capture_output=True, timeout=600)
    (tmp_path / ".filmc" / "noop.json").unlink(missing_ok=True)  # past the no-op fast path
    subprocess.run(build, cwd=tmp_path, env=env, check=True, capture_output=True, timeout=600)
    cpu = json.loads((tmp_path / "build" / "tiny" / "report.json").read_text())["cpu"]
    assert cpu["tools"] == 0 and cpu["filmc"] > 0
