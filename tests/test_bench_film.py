"""The benchmark's synthetic film is a valid film: `filmc check --strict` passes on it."""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from pathlib import Path

MAKE_FILM = Path(__file__).resolve().parent.parent / "bench" / "make_film.py"


def _make_film():
    spec = importlib.util.spec_from_file_location("make_film", MAKE_FILM)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_synthetic_film_checks_clean(tmp_path: Path) -> None:
    main = _make_film().write_film(tmp_path / "film", shots=200, seed=3)
    parts = sorted((tmp_path / "film" / "seq").glob("*.film"))
    assert len(parts) == 2
    assert list((tmp_path / "film" / "refs").rglob("*.png"))
    r = subprocess.run([sys.executable, "-m", "filmc", "check", "--strict", str(main)],
                       capture_output=True, text=True, cwd=tmp_path)
    assert r.returncode == 0, r.stdout + r.stderr
    assert r.stderr == ""
    assert "200 shots" in r.stdout


def test_synthetic_film_is_deterministic(tmp_path: Path) -> None:
    make_film = _make_film()
    a = make_film.FilmWriter(120, seed=9).build()
    b = make_film.FilmWriter(120, seed=9).build()
    c = make_film.FilmWriter(120, seed=10).build()
    assert a == b
    assert a != c
