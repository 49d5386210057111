"""Camera moves render the same bytes every run, and zooms keep the camera's window.

A build promises byte-identical output from the same inputs (on one machine or a Dask
cluster).  Zooms used to be drawn by `scale` with per-frame sizes and a `crop`, and a
pull-out came out different from one run to the next; they are drawn by `zoompan` now.
These render real clips with real ffmpeg and compare what a user would: the files'
bytes, and which part of the still each frame shows.
"""

from __future__ import annotations

import random
import subprocess
from pathlib import Path

import pytest
from PIL import Image, ImageChops, ImageDraw, ImageStat

from filmc.backends.ffmpeg import ffmpeg_exe
from filmc.backends.local.media import ZOOM, render_clip

W, H, FRAMES = 480, 200, 16


@pytest.fixture(scope="module")
def work(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("zoom")


@pytest.fixture(scope="module")
def still(work: Path) -> Path:
    """A W x H still full of detail: blocks of many colours, each edge in its own place."""
    rng = random.Random(5)
    im = Image.new("RGB", (W, H), (30, 30, 40))
    d = ImageDraw.Draw(im)
    for _ in range(90):
        x, y = rng.randrange(W), rng.randrange(H)
        d.rectangle([x, y, x + rng.randrange(8, 60), y + rng.randrange(6, 40)],
                    fill=(rng.randrange(256), rng.randrange(256), rng.randrange(256)))
    path = work / "still.png"
    im.save(path)
    return path


def render(still: Path, out: Path, motion: str) -> Path:
    render_clip(still, {"width": W, "height": H, "duration": f"{FRAMES}/24", "fps": 24,
                        "camera": {"motion": motion, "amount": 1}, "seed": 3}, out)
    return out


def frames(video: Path) -> list[Image.Image]:
    """Every frame of `video`, decoded, as greyscale Pillow images."""
    raw = subprocess.run([ffmpeg_exe(), "-nostdin", "-loglevel", "error", "-i", str(video),
                          "-f", "rawvideo", "-pix_fmt", "gray", "-"],
                         capture_output=True, check=True).stdout
    size = W * H
    return [Image.frombytes("L", (W, H), raw[i:i + size]) for i in range(0, len(raw), size)]


def window(still: Path, zoom: float, left: float, top: float) -> Image.Image:
    """What a camera magnifying `zoom` times sees of the still, its corner at (left, top)."""
    box = (left, top, left + W / zoom, top + H / zoom)
    return Image.open(still).convert("L").resize((W, H), Image.Resampling.BICUBIC, box=box)


def diff(a: Image.Image, b: Image.Image) -> float:
    """Mean absolute difference, 0-255: about 1-2 for a frame and the window it shows (what
    x264 loses), about 50 for two different windows onto this still."""
    return ImageStat.Stat(ImageChops.difference(a, b)).mean[0]


@pytest.mark.parametrize("motion", ["pull_out", "zoom_out", "push_in", "pan_left", "orbit"])
def test_a_camera_move_renders_the_same_bytes_twice(still, work, motion):
    a = render(still, work / f"{motion}_a.mp4", motion)
    b = render(still, work / f"{motion}_b.mp4", motion)
    assert a.read_bytes() == b.read_bytes()


def test_a_pull_out_starts_on_the_middle_and_ends_on_the_whole_still(still, work):
    first, *_, last = frames(render(still, work / "pull_out_window.mp4", "pull_out"))
    z = 1 + ZOOM
    assert diff(first, window(still, z, (W - W / z) / 2, (H - H / z) / 2)) < 5
    assert diff(last, window(still, 1, 0, 0)) < 5


def test_a_push_in_closes_in_on_the_middle_not_a_corner(still, work):
    first, *_, last = frames(render(still, work / "push_in_window.mp4", "push_in"))
    z = 1 + ZOOM
    assert diff(first, window(still, 1, 0, 0)) < 5
    assert diff(last, window(still, z, (W - W / z) / 2, (H - H / z) / 2)) < 5
    assert diff(last, window(still, z, 0, 0)) > 20
