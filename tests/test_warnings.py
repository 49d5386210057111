"""`filmc plan` says, before anything is spent, what a backend cannot honour and what
filmc does about it: from the adapter's own capabilities, here an adapter in the
project's own code (`type = "module:Class"`) that makes clips of 4, 6 or 8 s at 16:9
or 9:16, takes no seed and no last frame."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ADAPTER = '''\
from fractions import Fraction

from filmc.backends.protocol import Adapter, Capabilities


class Video(Adapter):
    type = "video"
    kinds = ("clip",)

    @classmethod
    def capabilities(cls, kind, settings, root):
        if kind != "clip":
            return None
        return Capabilities(seed=False, references=1, last_frame=False,
                            durations=(Fraction(4), Fraction(6), Fraction(8)),
                            aspect_ratios=("16:9", "9:16"))
'''

FILM = """\
film "Warn" {
  aspect 2.4:1
  size 192x80
  fps 24
}

character ANA "Ana" {
  look "a tall woman in a red coat"
}

location PIER "Pier" {
  look "a wooden pier over grey water"
}

scene one "Morning" EXT PIER DAWN {
  shot a1 5s {
    cast ANA
    seed 7
    last_frame next
    action "Ana walks along the pier."
  }
  shot a2 10s {
    cast ANA
    action "She waits a long time."
  }
}
"""


def plan(tmp_path: Path) -> subprocess.CompletedProcess:
    (tmp_path / "studio_video.py").write_text(ADAPTER, encoding="utf-8")
    (tmp_path / "w.film").write_text(FILM, encoding="utf-8")
    (tmp_path / "filmc.toml").write_text(
        '[steps]\nclip = "vid"\n\n[backends.vid]\ntype = "studio_video:Video"\n',
        encoding="utf-8")
    env = {k: v for k, v in os.environ.items() if not k.startswith("FILMC_")}
    env.update(NO_COLOR="1", PYTHONPATH=str(tmp_path), FILMC_STORE=str(tmp_path / "store"))
    r = subprocess.run([sys.executable, "-m", "filmc", "plan", "w.film"], cwd=tmp_path,
                       env=env, capture_output=True, text=True, timeout=120)
    assert "Traceback" not in r.stderr, r.stderr
    return r


def test_plan_says_what_the_clip_backend_cannot_honour_and_what_filmc_does(
        tmp_path: Path) -> None:
    r = plan(tmp_path)
    assert r.returncode == 2, r.stderr
    err = " ".join(r.stderr.split())  # one line: the help wraps nowhere, but be safe
    vid = "backend `vid` (studio_video:Video) cannot honour"
    assert f"{vid} a seed for `clip` steps in shot `one/a1`" in err
    assert f"{vid} a length of 5 s for `clip` steps in shot `one/a1`" in err
    assert "it makes 4, 6 or 8 s: generated at 6 s and cut to 5 s by the shot step" in err
    assert f"{vid} a length of 10 s for `clip` steps in shot `one/a2`" in err
    assert "generated at 8 s, its last frame held for the other 2 s by the shot step" in err
    assert f"{vid} the frame 192x80 for `clip` steps in shots `one/a1`, `one/a2`" in err
    assert "it makes 16:9 or 9:16: generated at 16:9, then scaled and cropped" in err
    assert f"{vid} a last frame (`last_frame next`) for `clip` steps in shot `one/a1`" in err
    assert "w.film:16:" in r.stderr  # pointing at the first shot concerned
