"""`[build] exports`: which exports a whole build writes.  An editor's FCPXML of a
3,000-shot film takes its writer (the OpenTimelineIO adapter) minutes, so a project may
build the cheap ones on every edit and the others when it asks (`filmc export`)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from test_build import FILM

from filmc.compiler.pipeline import compile_film
from filmc.compiler.plan import needed


def project(tmp_path: Path, toml: str) -> Path:
    (tmp_path / "tiny.film").write_text(FILM, encoding="utf-8")
    (tmp_path / "filmc.toml").write_text(toml, encoding="utf-8")
    return tmp_path / "tiny.film"


def test_a_whole_build_makes_the_listed_exports_and_export_makes_any(tmp_path: Path) -> None:
    film = project(tmp_path, '[build]\nexports = ["otio", "srt"]\n')
    graph = compile_film(film, offline=True).graph
    whole = set(needed(graph, None, None))
    assert {"export.otio", "export.srt"} <= whole
    assert not {"export.edl", "export.fcpxml", "export.csv"} & whole
    assert graph.nodes["export.edl"]["optional"]
    r = subprocess.run([sys.executable, "-m", "filmc", "export", "--offline", "--format", "csv",
                        "tiny.film"], cwd=tmp_path, capture_output=True, text=True,
                       env={**os.environ, "NO_COLOR": "1"}, timeout=600)
    assert r.returncode == 0, r.stderr
    assert (tmp_path / "build" / "tiny" / "export" / "shots.csv").is_file()


def test_every_export_by_default(tmp_path: Path) -> None:
    graph = compile_film(project(tmp_path, ""), offline=True).graph
    assert {f"export.{f}" for f in ("otio", "edl", "fcpxml", "srt", "csv")} <= \
        set(needed(graph, None, None))


def test_an_unknown_format_is_pointed_at(tmp_path: Path) -> None:
    result = compile_film(project(tmp_path, '[build]\nexports = ["otoi"]\n'), offline=True)
    (d,) = [d for d in result.diags.errors if d.code == "F0502"]
    assert "unknown export format `otoi`" in d.message and "otio" in (d.help or "")
    assert d.span is not None and d.span.line == 2
