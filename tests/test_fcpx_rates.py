"""FCPXML and EDL at the rates they hold: NTSC's 23.976 as 24000/1001 (the adapter's
own table knew it only as 23.98, and failed deep inside), and a clear refusal of a rate
FCPXML has no frame duration for."""

from __future__ import annotations

import os
import subprocess
import sys
from fractions import Fraction
from pathlib import Path

import pytest
from test_build import FILM

from filmc.backends.local.interchange import edl_rate, fcpx_rate
from filmc.backends.protocol import BackendError


def test_ntsc_rates_are_written_exactly_and_odd_rates_refused() -> None:
    assert fcpx_rate(Fraction(23976, 1000)) == Fraction(24000, 1001)  # `fps 23.976`
    assert fcpx_rate(Fraction(2398, 100)) == Fraction(24000, 1001)
    assert fcpx_rate(Fraction(30000, 1001)) == Fraction(30000, 1001)
    assert fcpx_rate(Fraction(24)) == 24 and fcpx_rate(Fraction(25)) == 25
    with pytest.raises(BackendError, match="FCPXML cannot hold a film at 12 fps"):
        fcpx_rate(Fraction(12))
    assert edl_rate(Fraction(23976, 1000)) == Fraction(24000, 1001)
    assert edl_rate(Fraction(48)) == 48
    with pytest.raises(BackendError, match="an EDL cannot hold a film at 12 fps"):
        edl_rate(Fraction(12))


def test_a_film_at_23_976_exports_to_fcpxml(tmp_path: Path) -> None:
    (tmp_path / "tiny.film").write_text(FILM.replace("fps 24", "fps 23.976"), encoding="utf-8")
    r = subprocess.run([sys.executable, "-m", "filmc", "export", "--offline", "--format",
                        "fcpxml", "tiny.film"], cwd=tmp_path, capture_output=True, text=True,
                       env={**os.environ, "NO_COLOR": "1"}, timeout=600)
    assert r.returncode == 0, r.stderr
    xml = (tmp_path / "build" / "tiny" / "export" / "film.fcpxml").read_text(encoding="utf-8")
    assert 'frameDuration="1001/24000s"' in xml
