"""Benchmark the local backend's film step (P4) and clip render (P5).

    .venv/bin/python bench/bench_media.py                  # print the figures
    .venv/bin/python bench/bench_media.py --record         # and append them to bench/BENCHMARKS.md
    .venv/bin/python bench/bench_media.py --part p4 --record   # the film step alone

P4: the film step on 3,000 shot segments / `cat` of the same bytes <= 2x.  One shot
is conformed once and copied 3,000 times under different names (the join reads
each file's header and copies its payload the same way whatever its picture);
`concat_film` joins them with a chapter per 20 shots, called in this process (the
film step runs in an already-running render worker, so Python's start-up is not
part of it; the collector is set as a worker sets it, `worker.steady`), against
`cat` writing the same files into one file.  Two sizes: tiny
64x32 1 s segments (per-file overhead dominates) and 480x200 3 s ones.  The join
remembers the headers it read (mp4join.Headers, in the user's cache: here a folder
of the benchmark's own), so these cases: cold (no header remembered: every one read);
after a one-shot edit (one segment replaced by a new file, 2,999 remembered), which
is the film step of the edit loop, in a worker that joined the film before (as
`build --watch` keeps them: the headers in its memory) and in a new one (a plain
build's, which read the headers back from the user's cache as it started, while the
build compiled: `render.preload`, measured apart); and after an edit under the
film's own sound (a `mix`): each shot's audio left out, its video copied.  Each run
starts with no output of the one before (a step writes into a new work folder; freeing
the last run's file is the file system's work).  Each figure is the median of 5 runs, as CPU time (the film step's process time; cat's from getrusage of
the child) and as wall time, with the load average: the machine is shared.  Where the time goes is
measured in the same run: reading the 3,000 headers, looking them up when
remembered, and copying the payloads (the join's own copy loop).

P5: `render_clip` / ffmpeg encoding as many frames of `testsrc2` at the same size
with the same x264 settings (`VIDEO_ARGS`) <= 1.5x, at 480x200 and 1920x804, 4 s at
24 fps, for several camera moves.  Each figure is the median of 3 runs.

Panels: one full-size (1920x804) keyframe panel with two figures and a camera move,
median of 5, against a budget of 200 ms (what keeps a 3,000-shot animatic's stills
under ten minutes on two cores).
"""

from __future__ import annotations

import argparse
import os
import resource
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


def cpu_children() -> float:
    r = resource.getrusage(resource.RUSAGE_CHILDREN)
    return r.ru_utime + r.ru_stime


def measured(fn, before=None, runs: int = 5, child: bool = False) -> tuple[float, float]:
    """(median CPU s, median wall s) of `fn`, with `before` run untimed before each."""
    cpu, wall = [], []
    for _ in range(runs):
        if before is not None:
            before()
        c0 = cpu_children() if child else time.process_time()
        t = time.perf_counter()
        fn()
        wall.append(time.perf_counter() - t)
        cpu.append((cpu_children() if child else time.process_time()) - c0)
    return statistics.median(cpu), statistics.median(wall)


def p4(work: Path, w: int, h: int, seconds: int) -> dict:
    from filmc.backends.local import mp4join, mp4read, render, worker

    worker.steady()  # the film step runs in a render worker, with its collector's settings

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

    def gone(before=None):
        """`before`, then no output left by the last run: the film step writes into its
        step's new work folder, and freeing the last run's 10-80 MB (its pages, its
        blocks) is the file system's work, not the join's or cat's."""
        def prepare() -> None:
            if before is not None:
                before()
            for f in (film, joined, work / "copy.bin"):
                f.unlink(missing_ok=True)
        return prepare

    cache = mp4join.Headers.of_user().path
    assert cache is not None and str(cache).startswith(str(work))

    def forget() -> None:
        cache.unlink(missing_ok=True)

    def edit() -> None:  # one shot re-made: a new file where the old one was
        concat_film(shots, chapters, film)  # every header remembered ...
        shutil.copyfile(one, work / "edited.mp4")
        os.replace(work / "edited.mp4", shots[SEGMENTS // 2])  # ... but this one

    out: dict = {"size": sum(p.stat().st_size for p in shots)}
    out["cat"] = measured(cat, before=gone(), child=True)
    out["cold"] = measured(lambda: concat_film(shots, chapters, film), before=gone(forget))
    out["edit"] = measured(lambda: concat_film(shots, chapters, film), before=gone(edit))
    assert mp4join.read_movie(film).payload[0] < mp4join.read_movie(film).payload[1]

    def started() -> None:  # a new render worker: nothing remembered in its memory yet
        mp4read._LOADED.clear()
        mp4read._TRACKS.clear()

    def new_worker() -> None:  # a plain build's render worker: the journal read back from
        edit()  # disk as it started, while the build compiled (render.preload)
        started()
        render.preload()
    out["fresh"] = measured(lambda: concat_film(shots, chapters, film),
                            before=gone(new_worker))
    # The film's own sound, as a film with a `mix` step has it: each shot's audio dropped,
    # its video copied.  (A mix of a few seconds: what is measured is the shots' side.)
    mix = work / "mix.m4a"
    run(["-f", "lavfi", "-i", "sine=frequency=220:duration=10:sample_rate=48000",
         "-c:a", "aac", "-b:a", "128k", "-y", mix], "make a mix")
    out["mixed"] = measured(lambda: concat_film(shots, chapters, film, audio=mix),
                            before=gone(edit))
    out["cat2"] = measured(cat, before=gone(), child=True)  # again: the load moves
    # Where the time goes.
    out["read"] = measured(lambda: [mp4join.read_movie(p) for p in shots])
    out["preload"] = measured(render.preload, before=started)
    headers = mp4join.Headers.of_user()
    out["lookup"] = measured(lambda: [headers.movie(p) for p in shots])
    movies = [mp4join.read_movie(p) for p in shots]
    pieces = [mp4join._Piece(m.path, *m.payload, 0) for m in movies]
    out["copy"] = measured(lambda: mp4join._write(work / "copy.bin", b"", pieces), before=gone())
    out["load"] = os.getloadavg()[0]
    return out


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


def _ms(x: float) -> str:
    return f"{x * 1000:.0f} ms"


def p4_table(work: Path) -> tuple[list[str], float, float]:
    """The P4 rows, and the worst ratios (after an edit, cold) by CPU time."""
    body = ["| P4: film step on 3,000 segments | cat | after a one-shot edit, worker kept "
            "(`--watch`) | ratio | after an edit, new worker (a build) | ratio "
            "| after an edit, under the film's mix | ratio | cold (no header remembered) "
            "| ratio | goal |",
            "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"]
    where = ["| where the time goes (CPU) | read 3,000 headers | a new worker reads the "
             "journal back (before its first job) | look up 3,000 remembered "
             "| copy the payloads (join's loop) | cat | load |",
             "| --- | ---: | ---: | ---: | ---: | ---: | ---: |"]
    worst_edit = worst_cold = 0.0
    for w, h, s in ((64, 32, 1), (480, 200, 3)):
        r = p4(work, w, h, s)
        cat = min(r["cat"][0], r["cat2"][0])  # the quieter of the two
        cat_wall = min(r["cat"][1], r["cat2"][1])
        worst_edit = max(worst_edit, r["edit"][0] / cat, r["fresh"][0] / cat,
                         r["mixed"][0] / cat)
        worst_cold = max(worst_cold, r["cold"][0] / cat)
        cols = ("edit", "fresh", "mixed", "cold")
        body.append(f"| {w}x{h}, {s} s each, {r['size'] / 1e6:.0f} MB: CPU | {_ms(cat)} | "
                    + " | ".join(f"{_ms(r[c][0])} | {r[c][0] / cat:.1f}x" for c in cols)
                    + f" | {GOAL_P4:g}x |")
        print(body[-1], flush=True)
        body.append(f"| {w}x{h}: wall | {_ms(cat_wall)} | "
                    + " | ".join(f"{_ms(r[c][1])} | {r[c][1] / cat_wall:.1f}x" for c in cols)
                    + " | |")
        print(body[-1], flush=True)
        where.append(f"| {w}x{h} | {_ms(r['read'][0])} | {_ms(r['preload'][0])} | "
                     f"{_ms(r['lookup'][0])} | "
                     f"{_ms(r['copy'][0])} | {_ms(cat)} | {r['load']:.1f} |")
        print(where[-1], flush=True)
    return [*body, "", *where], worst_edit, worst_cold


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--record", action="store_true", help="append to bench/BENCHMARKS.md")
    ap.add_argument("--part", choices=("all", "p4", "p5"), default="all",
                    help="run the film step (p4) or the clip render and panel (p5) alone")
    args = ap.parse_args()
    body: list[str] = []
    worst4 = worst5 = cold4 = 0.0
    with tempfile.TemporaryDirectory(prefix="filmc-bench-media-") as tmp:
        work = Path(tmp)
        # The join's remembered headers go to a cache of the benchmark's own.
        os.environ["XDG_CACHE_HOME"] = str(work / "cache")
        if args.part in ("all", "p4"):
            rows, worst4, cold4 = p4_table(work)
            body += rows
        if args.part == "p4":
            body += ["", f"- P4 film step / cat ≤ {GOAL_P4:g}x (CPU, median of 5), after a "
                     f"one-shot edit: {'PASS' if worst4 <= GOAL_P4 else 'MISS'} "
                     f"(worst {worst4:.1f}x); cold: "
                     f"{'PASS' if cold4 <= GOAL_P4 else 'MISS'} (worst {cold4:.1f}x)"]
            print(body[-1])
            if args.record:
                record("local media: film step (P4)", body)
            return
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
    body += [""]
    if args.part == "all":
        body.append(f"- P4 film step / cat ≤ {GOAL_P4:g}x (CPU, after a one-shot edit): "
                    f"{'PASS' if worst4 <= GOAL_P4 else 'MISS'} (worst {worst4:.1f}x; cold "
                    f"{cold4:.1f}x)")
    body += [f"- P5 clip / testsrc2 ≤ {GOAL_P5:g}x: {'PASS' if worst5 <= GOAL_P5 else 'MISS'} "
             f"(worst {worst5:.2f}x)",
             "",
             "x264 for both sides of P5: " + " ".join(VIDEO_ARGS) + " -g 48 -keyint_min 48."]
    print("\n".join(body[-5:]))
    if args.record:
        record("local media: film step (P4) and clip render (P5)", body)


if __name__ == "__main__":
    main()
