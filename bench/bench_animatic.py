"""Benchmark the example's offline animatic against one encode of its frames (P7).

    .venv/bin/python bench/bench_animatic.py            # print the figures
    .venv/bin/python bench/bench_animatic.py --record   # and append them to bench/BENCHMARKS.md

P7: `filmc build --offline` of the example film (examples/wolfpack, what `make demo`
builds) at 1920x804, from an empty store, ÷ one ffmpeg encode of as many frames as the
film has, at the same size with the same x264 settings (`VIDEO_ARGS` + `gop_args`),
≤ 1.3.  The baseline's frames are the stills the build drew, each shot's keyframe held
for the shot's frames (the concat demuxer, one decode a still): the cheapest source of
those frames there is, so the ratio is what the build costs beyond encoding its frames
once.  A second baseline, `testsrc2` (moving, harder to encode), is printed beside it.
All three run in the same process, one after the other, on a copy of the example in a
temp folder with its own store and cache (`FILMC_STORE`, `XDG_CACHE_HOME`); the user's
`FILMC_*` variables are dropped.

Where the build's time goes: a second build from another empty store runs ffmpeg through
a small shell wrapper (`FILMC_FFMPEG`) that logs each run's wall and CPU time and what it
wrote (clip, shot, film, speech...), and stops first at `--until keyframe` (the stills:
Pillow), so that the CPU of the panels, of each kind of ffmpeg run and of everything else
(filmc itself: compile, scheduling, workers, eSpeak) is measured by the children's
process accounting (`getrusage(RUSAGE_CHILDREN)`).  The machine is shared: CPU times
are the steady figures, walls move with the load, which is printed.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import resource
import shutil
import stat
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from fractions import Fraction
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(HERE))
from bench_check import record  # noqa: E402

from filmc.backends.ffmpeg import ffmpeg_exe  # noqa: E402
from filmc.backends.local.media import VIDEO_ARGS, gop_args  # noqa: E402
from filmc.backends.local.mp4head import video_track  # noqa: E402

GOAL_P7 = 1.3
EXAMPLE = ROOT / "examples" / "wolfpack"
MAIN = "film.film"
SIZE = (1920, 804)

# Logs each ffmpeg run: the file it wrote (its last argument), wall ns, and the shell's
# children's user and system time (bash's `times`, second line; run in this shell, not a
# subshell, which has no children).
_WRAPPER = """#!/bin/bash
s=$(date +%s%N)
"$FILMC_BENCH_REAL" "$@"
rc=$?
e=$(date +%s%N)
times > "$FILMC_BENCH_LOG.$$"
t=$(tail -n 1 "$FILMC_BENCH_LOG.$$")
rm -f "$FILMC_BENCH_LOG.$$"
printf '%s\\t%s\\t%s\\n' "${@: -1}" "$((e - s))" "$t" >> "$FILMC_BENCH_LOG"
exit $rc
"""
# What each ffmpeg run made, by the name of the file it wrote (backends/local/render.py).
_MADE = {"clip.mp4": "clip", "shot.mp4": "shot", "film.mp4": "film", "joined.mp4": "film",
         "frame.png": "lastframe", "speech.wav": "speech", "music.wav": "music",
         "sfx.wav": "sfx", "-": "probe", "-version": "version",
         "frame.mp4": "shot: the header to match (one frame, once a worker)",
         # a shot's sound, which mp4join writes behind its clip's video (media.conform_shot)
         "shot.audio.m4a": "shot", "shot.mix.wav": "shot"}


def children() -> float:
    r = resource.getrusage(resource.RUSAGE_CHILDREN)
    return r.ru_utime + r.ru_stime


def timed(argv: list, env: dict[str, str] | None = None, cwd: Path | None = None) -> dict:
    """Run argv to the end; its wall and its (and its descendants') CPU seconds."""
    cpu, t = children(), time.perf_counter()
    p = subprocess.run([str(a) for a in argv], env=env, cwd=cwd, capture_output=True, text=True)
    wall = time.perf_counter() - t
    if p.returncode != 0:
        raise SystemExit(f"`{' '.join(map(str, argv[:4]))} ...` failed:\n{p.stdout}{p.stderr}")
    return {"wall": wall, "cpu": children() - cpu, "out": p.stdout}


def prepare(work: Path, name: str) -> Path:
    """A copy of the example, as git has it, at 1920x804."""
    project = work / name
    shutil.copytree(EXAMPLE, project, ignore=shutil.ignore_patterns(".filmc", "build"))
    main = project / MAIN
    text = main.read_text(encoding="utf-8")
    sized = re.sub(r"(?m)^(\s*)size \d+x\d+$", rf"\g<1>size {SIZE[0]}x{SIZE[1]}", text, count=1)
    if f"size {SIZE[0]}x{SIZE[1]}" not in sized:
        raise SystemExit(f"{MAIN} has no `size` line to set to {SIZE[0]}x{SIZE[1]}")
    main.write_text(sized, encoding="utf-8")
    return project


def environment(work: Path, name: str, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("FILMC_")}
    (work / f"{name}-cache").mkdir()
    env.update(NO_COLOR="1", FILMC_STORE=str(work / f"{name}-store"),
               XDG_CACHE_HOME=str(work / f"{name}-cache"), **extra)
    return env


def filmc(*args: str) -> list[str]:
    """The `filmc` command installed next to this interpreter, as users run it."""
    script = Path(sys.executable).parent / "filmc"
    return [str(script), *args] if script.is_file() else [sys.executable, "-m", "filmc", *args]


def output(project: Path) -> Path:
    """`build/<film>/` of the built copy."""
    (report,) = (project / "build").glob("*/report.json")
    return report.parent


def stills(out: Path) -> tuple[list[tuple[Path, int]], Fraction]:
    """(still, frames) per shot of the built film, in film order, and its frame rate: the
    shot's first keyframe candidate, or the one before for a shot that has none (it
    starts from the last frame of the shot before)."""
    timeline = json.loads((out / "timeline.json").read_text(encoding="utf-8"))
    drawn = sorted((out / "keyframes").glob("*.png"))
    made: list[tuple[Path, int]] = []
    for clip in timeline["clips"]:
        own = [p for p in drawn if p.name.startswith(f"{clip['shot']}.")]
        still = own[0] if own else made[-1][0]
        made.append((still, int(clip["frames"])))
    return made, Fraction(timeline["fps"])


def encode_stills(work: Path, shots: list[tuple[Path, int]], fps: Fraction) -> dict:
    total = sum(n for _, n in shots)
    listing = work / "stills.ffconcat"
    lines = ["ffconcat version 1.0"]
    for still, n in shots:
        lines += [f"file '{still}'", f"duration {float(Fraction(n) / fps):.6f}"]
    lines.append(f"file '{shots[-1][0]}'")
    listing.write_text("\n".join(lines) + "\n", encoding="utf-8")
    out = work / "stills.mp4"
    r = timed([ffmpeg_exe(), "-nostdin", "-loglevel", "error", "-f", "concat", "-safe", "0",
               "-i", listing, "-vf", f"scale={SIZE[0]}:{SIZE[1]},format=yuv420p,fps={fps}",
               "-frames:v", total, *VIDEO_ARGS, *gop_args(fps), "-an", "-y", out])
    track = video_track(out)
    r["frames"] = track.frames if track else 0
    return r


def encode_testsrc2(work: Path, frames: int, fps: Fraction) -> dict:
    r = timed([ffmpeg_exe(), "-nostdin", "-loglevel", "error", "-f", "lavfi", "-i",
               f"testsrc2=size={SIZE[0]}x{SIZE[1]}:rate={fps}", "-frames:v", frames,
               *VIDEO_ARGS, *gop_args(fps), "-an", "-y", work / "testsrc2.mp4"])
    r["frames"] = frames
    return r


def encode_film(work: Path, film: Path, frames: int, fps: Fraction) -> dict:
    """The film's own pictures, decoded and encoded once (the decode is extra work)."""
    r = timed([ffmpeg_exe(), "-nostdin", "-loglevel", "error", "-i", film, "-map", "0:v",
               "-frames:v", frames, *VIDEO_ARGS, *gop_args(fps), "-an", "-y",
               work / "again.mp4"])
    track = video_track(work / "again.mp4")
    r["frames"] = track.frames if track else 0
    return r


def breakdown(work: Path) -> dict:
    """The second build, through the logging wrapper: CPU and wall by what ran."""
    project = prepare(work, "profiled")
    wrapper = work / "ffmpeg-logged"
    wrapper.write_text(_WRAPPER, encoding="utf-8")
    wrapper.chmod(wrapper.stat().st_mode | stat.S_IXUSR)
    log = work / "ffmpeg.log"
    env = environment(work, "profiled", FILMC_FFMPEG=str(wrapper),
                      FILMC_BENCH_REAL=ffmpeg_exe(), FILMC_BENCH_LOG=str(log))
    stills_only = timed(filmc("build", "--offline", "--quiet", "--until", "keyframe", MAIN),
                        env, project)
    before = log.read_text().count("\n") if log.exists() else 0
    rest = timed(filmc("build", "--offline", "--quiet", MAIN), env, project)
    runs: dict[str, list[float]] = defaultdict(lambda: [0, 0.0, 0.0])  # count, wall, cpu
    for n, line in enumerate(log.read_text().splitlines()):
        made, ns, times = line.split("\t")
        cpu = sum(int(m) * 60 + float(s) for m, s in re.findall(r"(\d+)m([\d.]+)s", times))
        kind = _MADE.get(Path(made).name, "other: " + Path(made).name)
        if n < before:
            kind += " (before the stills)"
        runs[kind][0] += 1
        runs[kind][1] += int(ns) / 1e9
        runs[kind][2] += cpu
    report = json.loads((output(project) / "report.json").read_text())
    return {"stills": stills_only, "rest": rest, "ffmpeg": dict(runs), "report": report}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--record", action="store_true", help="append to bench/BENCHMARKS.md")
    ap.add_argument("--no-breakdown", action="store_true",
                    help="skip the second, profiled build")
    args = ap.parse_args()
    load = [os.getloadavg()[0]]
    with tempfile.TemporaryDirectory(prefix="filmc-bench-animatic-") as tmp:
        work = Path(tmp)
        project = prepare(work, "timed")
        env = environment(work, "timed")
        build = timed(filmc("build", "--offline", "--quiet", MAIN), env, project)
        load.append(os.getloadavg()[0])
        out = output(project)
        shots, fps = stills(out)
        frames = sum(n for _, n in shots)
        base = encode_stills(work, shots, fps)
        load.append(os.getloadavg()[0])
        again = encode_film(work, out / "film.mp4", frames, fps)
        load.append(os.getloadavg()[0])
        moving = encode_testsrc2(work, frames, fps)
        load.append(os.getloadavg()[0])
        report = json.loads((out / "report.json").read_text())
        prof = None if args.no_breakdown else breakdown(work)
        load.append(os.getloadavg()[0])

    ratio, cpu_ratio = build["wall"] / base["wall"], build["cpu"] / base["cpu"]
    body = [
        f"The example film ({len(shots)} shots, {frames} frames at {fps} fps, "
        f"{SIZE[0]}x{SIZE[1]}; {report['counts'].get('ran', 0)} steps ran), built offline "
        f"from an empty store; load average {min(load):.1f}–{max(load):.1f} on "
        f"{os.cpu_count()} CPUs during the run.", "",
        "| run | wall | CPU (user+sys) | wall ratio | CPU ratio |",
        "| --- | ---: | ---: | ---: | ---: |",
        f"| `filmc build --offline` | {build['wall']:.1f} s | {build['cpu']:.1f} s | | |",
    ]
    for label, r in ((f"P7 baseline: one encode of the stills, each held for its shot "
                      f"({base['frames']} frames)", base),
                     (f"one decode and encode of the film's own frames ({again['frames']})", again),
                     (f"one encode of testsrc2 ({moving['frames']} frames)", moving)):
        body.append(f"| {label} | {r['wall']:.1f} s | {r['cpu']:.1f} s | build ÷ this "
                    f"{build['wall'] / r['wall']:.2f}x | {build['cpu'] / r['cpu']:.2f}x |")
    if prof is not None:
        total = prof["stills"]["cpu"] + prof["rest"]["cpu"]
        ff = sum(v[2] for v in prof["ffmpeg"].values())
        before = sum(v[2] for k, v in prof["ffmpeg"].items() if k.endswith("(before the stills)"))
        body += [
            "", "Where a build's time goes (a second build, ffmpeg runs logged):", "",
            "| part | runs | wall (summed) | CPU |", "| --- | ---: | ---: | ---: |",
            f"| `--until keyframe`: compile, sheets, plates, keyframes (Pillow) | 1 | "
            f"{prof['stills']['wall']:.1f} s | {prof['stills']['cpu'] - before:.1f} s |",
        ]
        for kind, (n, wall, cpu) in sorted(prof["ffmpeg"].items(), key=lambda kv: -kv[1][2]):
            body.append(f"| ffmpeg: {kind} | {n} | {wall:.1f} s | {cpu:.1f} s |")
        rest = prof["rest"]["cpu"] - (ff - before)
        body += [f"| the rest of the second build, outside ffmpeg (filmc, workers, storyboard, "
                 f"eSpeak) | | | {rest:.1f} s |",
                 f"| total | | {prof['stills']['wall'] + prof['rest']['wall']:.1f} s (wall) | "
                 f"{total:.1f} s |"]
    verdict = "PASS" if ratio <= GOAL_P7 else "MISS"
    body += ["", f"- P7 build ÷ one encode of its frames ≤ {GOAL_P7:g}: {verdict} "
                 f"({ratio:.2f}x wall, {cpu_ratio:.2f}x CPU)"]
    if prof is not None:
        clips = prof["ffmpeg"].get("clip", [0, 0.0, 0.0])[2]
        shots = prof["ffmpeg"].get("shot", [0, 0.0, 0.0])[2]
        body += [
            f"- the floor: rendering the clips (each frame encoded once, camera moves "
            f"included) takes {clips:.1f} s of CPU, {clips / base['cpu']:.2f}x the held "
            f"stills' encode and {clips / again['cpu']:.2f}x the decode and encode of the "
            f"film's own frames; the shots, which copy their clips' video and encode only "
            f"their audio, take {shots:.1f} s ({shots / max(clips, 1e-9):.0%} of the clips'), "
            f"where encoding every frame again cost about as much as the clips"]
    body += ["", "x264 for the build and the baselines: " + " ".join(VIDEO_ARGS) + " "
             + " ".join(gop_args(fps)[:4]) + "."]
    print("\n".join(body))
    if args.record:
        record("offline animatic of the example at 1920x804 (P7)", body)


if __name__ == "__main__":
    main()
