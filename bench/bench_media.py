"""Benchmark the local backend's film step (P4) and clip render (P5).

    .venv/bin/python bench/bench_media.py            # print the figures
    .venv/bin/python bench/bench_media.py --record   # and append them to bench/BENCHMARKS.md

P4: the film step on 3,000 shot segments / `cat` of the same bytes <= 2x.  One shot
is conformed once and copied 3,000 times under different names (stream-copy concat
reads each file the same way whatever its picture); `concat_film` joins them with a
chapter per 20 shots, against `cat` writing the same files into one file.  Two
sizes: tiny 64x32 1 s segments (per-file overhead dominates) and 480x200 3 s ones.

P5: `render_clip` / ffmpeg encoding as many frames of `testsrc2` at the same size
with the same x264 settings (`VIDEO_ARGS`) <= 1.5x, at 480x200 and 1920x804, 4 s at
24 fps, for several camera moves.  Each figure is the median of 3 runs.

Panels: one full-size (1920x804) keyframe panel with two figures and a camera move,
median of 5, against a budget of 200 ms (what keeps a 3,000-shot animatic's stills
under ten minutes on two cores).
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(HERE))
from bench_check import record  # noqa: E402

from filmc.backends.ffmpeg import run  # noqa: E402
from filmc.backends.local.media import (  # noqa: E402
    VIDEO_ARGS,
    concat_film,
    conform_shot,
    fraction,
    gop_args,
    render_clip,
)

GOAL_P4, GOAL_P5 = 2.0, 1.5
SEGMENTS = 3000
KEYFRAME = ROOT / "examples" / "wolfpack" / "refs" / "steppe_dusk.png"
MOTIONS = ("static", "push_in", "pan_left", "handheld", "orbit")


def timed(fn, runs: int = 3) -> float:
    times = []
    for _ in range(runs):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return statistics.median(times)


def p4(work: Path, w: int, h: int, seconds: int) -> tuple[float, float, int]:
    clip = work / f"clip_{w}.mp4"
    render_clip(KEYFRAME, {"width": w, "height": h, "duration": seconds, "fps": 24,
                           "camera": {"motion": "push_in"}}, clip)
    one = work / f"shot_{w}.mp4"
    conform_shot(clip, [], {"width": w, "height": h, "fps": 24, "duration": seconds,
                            "lines": []}, one)
    folder = work / f"segments_{w}"
    folder.mkdir()
    shots = []
    for i in range(SEGMENTS):
        shots.append(folder / f"shot_{i:04d}.mp4")
        shutil.copyfile(one, shots[-1])
    chapters = [(f"第{i // 20 + 1}场", i * seconds) for i in range(0, SEGMENTS, 20)]
    film, joined = work / f"film_{w}.mp4", work / f"cat_{w}.bin"

    def cat() -> None:
        with open(joined, "wb") as f:
            subprocess.run(["cat", *map(str, shots)], stdout=f, check=True)

    t_film = timed(lambda: concat_film(shots, chapters, film))
    t_cat = timed(cat)
    return t_film, t_cat, sum(p.stat().st_size for p in shots)


def p5(work: Path, w: int, h: int, motion: str) -> tuple[float, float]:
    out = work / f"p5_{w}_{motion}.mp4"
    params = {"width": w, "height": h, "duration": 4, "fps": 24,
              "camera": {"motion": motion}, "seed": 1}
    t_clip = timed(lambda: render_clip(KEYFRAME, params, out))
    base = ["-f", "lavfi", "-i", f"testsrc2=size={w}x{h}:rate=24", "-frames:v", "96",
            *VIDEO_ARGS, *gop_args(fraction(24)), "-y", work / "testsrc2.mp4"]
    t_base = timed(lambda: run(base, "encode testsrc2"))
    return t_clip, t_base


def panel_ms(work: Path) -> float:
    from filmc.backends.local import panels

    p = {"width": 1920, "height": 804, "seed": 1, "take": 1, "cast": ["CHEN", "BILGEE"],
         "camera": {"motion": "pan_left"}, "light": {}, "style": {},
         "panel": {"scene": "hunt", "shot": "chen_watches", "action": "Chen watches."}}
    panels.render_keyframe(p, "", [], work / "warm.png")
    return timed(lambda: panels.render_keyframe(p, "", [], work / "panel.png"), runs=5) * 1000


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--record", action="store_true", help="append to bench/BENCHMARKS.md")
    args = ap.parse_args()
    body = ["| P4: film step on 3,000 segments | film step | cat | ratio | goal |",
            "| --- | ---: | ---: | ---: | ---: |"]
    worst4 = worst5 = 0.0
    with tempfile.TemporaryDirectory(prefix="filmc-bench-media-") as tmp:
        work = Path(tmp)
        for w, h, s in ((64, 32, 1), (480, 200, 3)):
            t_film, t_cat, size = p4(work, w, h, s)
            worst4 = max(worst4, t_film / t_cat)
            body.append(f"| {w}x{h}, {s} s each, {size / 1e6:.0f} MB | {t_film * 1000:.0f} ms | "
                        f"{t_cat * 1000:.0f} ms | {t_film / t_cat:.1f}x | {GOAL_P4:g}x |")
            print(body[-1], flush=True)
        body += ["", "| P5: clip render, 4 s at 24 fps | clip | testsrc2 | ratio | goal |",
                 "| --- | ---: | ---: | ---: | ---: |"]
        for w, h in ((480, 200), (1920, 804)):
            for motion in MOTIONS:
                t_clip, t_base = p5(work, w, h, motion)
                worst5 = max(worst5, t_clip / t_base)
                body.append(f"| {w}x{h} {motion} | {t_clip * 1000:.0f} ms | "
                            f"{t_base * 1000:.0f} ms | {t_clip / t_base:.2f}x | {GOAL_P5:g}x |")
                print(body[-1], flush=True)
        ms = panel_ms(work)
        body += ["", "| panel | median of 5 | budget |", "| --- | ---: | ---: |",
                 f"| full-size keyframe, 1920x804 | {ms:.0f} ms | 200 ms |"]
        print(body[-1], flush=True)
    body += ["",
             f"- P4 film step / cat ≤ {GOAL_P4:g}x: {'PASS' if worst4 <= GOAL_P4 else 'MISS'} "
             f"(worst {worst4:.1f}x)",
             f"- P5 clip / testsrc2 ≤ {GOAL_P5:g}x: {'PASS' if worst5 <= GOAL_P5 else 'MISS'} "
             f"(worst {worst5:.2f}x)",
             "",
             "x264 for both sides of P5: " + " ".join(VIDEO_ARGS) + " -g 48 -keyint_min 48."]
    print("\n".join(body[-5:]))
    if args.record:
        record("local media: film step (P4) and clip render (P5)", body)


if __name__ == "__main__":
    main()
