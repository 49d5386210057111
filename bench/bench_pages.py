"""What a one-shot edit costs the pages a build draws: the storyboard and the review page.

    .venv/bin/python bench/bench_pages.py            # print the figures
    .venv/bin/python bench/bench_pages.py --record   # and append them to bench/BENCHMARKS.md

On the 3,000-shot synthetic film (bench/make_film.py, at 96x40 so that drawing is
cheap and what is measured is how much is drawn), one shot's camera is edited, and
each of the two is measured before and after, in this run, by CPU time of this
process (the machine is shared; CPU time is what the work costs, wall time what the
neighbours leave):

- the storyboard: before, one step drew every shot's panel into the whole film's
  contact sheets (`render_storyboard` over 3,000 panels); now the edit redraws its
  scene's sheets (`storyboard.<scene>`) and the index of every scene's pages, which
  names them and reads none (`write_index`).  The panels are the film's own
  keyframes, drawn once beforehand by the local backend's `render_keyframe`.
- the review page (build/<film>/review/, engine/review.py `write_static`): before,
  every build rendered every card and wrote every page (61 files); now it writes
  only the pages whose digest changed.  "Before" is measured as a write with no
  `.pages.json` (which renders and writes every page, as every build did); "after"
  is the write a build makes after the edit, with the pages of the film before the
  edit on disk.  Both are given the same cards (`contact_sheet`, which a build
  computes anyway for its layout).

Each figure is the median of `--runs` runs; the ratio is after ÷ before.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from bench_check import machine, record  # noqa: E402
from make_film import write_film  # noqa: E402

SHOTS = 3000
SIZE = "96x40"


def cpu(fn: Callable[[], object], runs: int) -> tuple[float, float, object]:
    """Median CPU seconds and median wall seconds of `runs` calls, and the last result."""
    cpus, walls, out = [], [], None
    for _ in range(runs):
        c, w = time.process_time(), time.perf_counter()
        out = fn()
        cpus.append(time.process_time() - c)
        walls.append(time.perf_counter() - w)
    return statistics.median(cpus), statistics.median(walls), out


def compile_program(main: Path):
    from filmc.compiler.pipeline import compile_film

    c = compile_film(main, offline=True)
    assert c.ok, [d.message for d in c.diags.errors]
    return c.program()


def edit_one_camera(main: Path) -> str:
    """Edit the camera line of the film's middle shot; its id."""
    import re

    parts = sorted((main.parent / "seq").glob("*.film"))
    part = parts[len(parts) // 2]
    text = part.read_text(encoding="utf-8")
    m = list(re.finditer(r"^  shot (\w+)[^\n]*\n    camera ([^\n]*)$", text, re.M))[5]
    words = m.group(2).split()
    words[0] = "extreme_close_up" if words[0] != "extreme_close_up" else "wide"
    part.write_text(text[:m.start(2)] + " ".join(words) + text[m.end(2):], encoding="utf-8")
    return m.group(1)


def draw_keyframes(program, folder: Path) -> dict[str, Path]:
    """Each panel a storyboard shows (node id → PNG), drawn as the local backend draws it."""
    from filmc.backends.local.panels import render_keyframe

    wanted = {i.step for n, d in program.graph.nodes(data=True) if d["kind"] == "storyboard"
              for i in d["step"].inputs}
    out = {}
    for node in sorted(wanted):
        step = program.graph.nodes[node]["step"]
        path = folder / f"{len(out):05d}.png"
        render_keyframe({**step.fields.as_dict(), **step.params}, step.prompt, [], path, {})
        out[node] = path
    return out


def storyboard(program, edited: str, drawn: dict[str, Path], work: Path, runs: int) -> dict:
    """CPU of drawing the whole film's sheets vs one scene's and the index."""
    from filmc.backends.local import panels
    from filmc.backends.local import storyboard as index
    from filmc.lang import steps as S

    g = program.graph
    boards = [d["step"] for _n, d in g.nodes(data=True) if d["kind"] == "storyboard"]
    every = [i for b in boards for i in b.inputs]
    scene = next(b for b in boards if any(i.tags.label == edited for i in b.inputs))
    out = work / "sb"

    def fresh() -> Path:
        shutil.rmtree(out, ignore_errors=True)
        out.mkdir()
        return out

    def whole() -> list[Path]:
        return panels.render_storyboard([drawn[i.step] for i in every],
                                        [i.tags.label or "" for i in every], fresh() / "s.png")

    made: dict[str, list[Path]] = {}

    def one_scene() -> None:
        d = fresh()
        info = scene.params["scene"]
        made[scene.id] = panels.render_storyboard(
            [drawn[i.step] for i in scene.inputs], [i.tags.label or "" for i in scene.inputs],
            d / "page.png", heading=(f"SCENE {info['number']}  {info['title']}", info["id"]))
        step = g.nodes["storyboard_index"]["step"]
        inputs = [[S.PAGES, str(made[scene.id][0] if ref.step == scene.id else
                                 d / "other.png"), None, None, None, ref.step]
                  for ref in step.inputs]  # one page each (the edited one's, really made)
        index.write_index(step.params, inputs, d / "index.html")

    before_cpu, before_wall, pages = cpu(whole, 1 if runs < 3 else 2)
    after_cpu, after_wall, _ = cpu(one_scene, runs)
    return {"before_cpu": before_cpu, "before_wall": before_wall, "pages": len(pages),
            "after_cpu": after_cpu, "after_wall": after_wall, "scene": scene.scene,
            "scene_panels": len(scene.inputs), "panels": len(every), "scenes": len(boards)}


def review_page(program, edited_program, work: Path, runs: int) -> dict:
    from filmc.engine import review

    cards = review.contact_sheet(program, None)
    edited_cards = review.contact_sheet(edited_program, None)
    folder = work / "review"
    review.write_static(program, None, folder, cards)
    size = sum(p.stat().st_size for p in folder.glob("*.html"))
    n_pages = len(list(folder.glob("*.html")))

    def full() -> list:
        (folder / review.DIGESTS).unlink(missing_ok=True)
        return review.write_static(edited_program, None, folder, edited_cards)

    def incremental() -> list:
        review.write_static(program, None, folder, cards)  # the film before the edit: on disk
        c, w = time.process_time(), time.perf_counter()
        written = review.write_static(edited_program, None, folder, edited_cards)
        timed.append((time.process_time() - c, time.perf_counter() - w))
        return written

    timed: list[tuple[float, float]] = []
    before_cpu, before_wall, all_written = cpu(full, runs)
    for _ in range(runs):
        written = incremental()
    after_cpu = statistics.median(t[0] for t in timed)
    after_wall = statistics.median(t[1] for t in timed)
    same = review.write_static(edited_program, None, folder, edited_cards)
    return {"before_cpu": before_cpu, "before_wall": before_wall, "after_cpu": after_cpu,
            "after_wall": after_wall, "pages": n_pages, "mb": size / 1e6,
            "written_before": len(all_written), "written_after": sorted(p.name for p in written),
            "unchanged": len(same)}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--runs", type=int, default=3)
    p.add_argument("--shots", type=int, default=SHOTS)
    p.add_argument("--record", action="store_true", help="append to bench/BENCHMARKS.md")
    args = p.parse_args(argv)
    work = Path(tempfile.mkdtemp(prefix="filmc-pages-"))
    try:
        load = os.getloadavg()
        main_file = write_film(work / "film", args.shots, 1, SIZE)
        program = compile_program(main_file)
        drawn_dir = work / "kf"
        drawn_dir.mkdir()
        t = time.perf_counter()
        drawn = draw_keyframes(program, drawn_dir)
        print(f"drew {len(drawn)} panels at {SIZE} in {time.perf_counter() - t:.1f} s")
        edited = edit_one_camera(main_file)
        edited_program = compile_program(main_file)
        # The edited shot's new panel: drawn like the others.
        drawn.update(draw_keyframes_of(edited_program, edited, drawn_dir))
        sb = storyboard(edited_program, edited, drawn, work, args.runs)
        rv = review_page(program, edited_program, work, args.runs)
        load_after = os.getloadavg()
    finally:
        shutil.rmtree(work, ignore_errors=True)
    lines = report(args, edited, sb, rv, load, load_after)
    print("\n".join(lines))
    if args.record:
        record("Pages after a one-shot edit: storyboard a scene, review page by digest", lines)
    return 0


def draw_keyframes_of(program, shot: str, folder: Path) -> dict[str, Path]:
    from filmc.backends.local.panels import render_keyframe

    out = {}
    for n, d in program.graph.nodes(data=True):
        if d["kind"] == "keyframe" and d["shot"] == shot:
            step = d["step"]
            path = folder / f"edited-{len(out)}.png"
            render_keyframe({**step.fields.as_dict(), **step.params}, step.prompt, [], path, {})
            out[n] = path
    return out


def report(args, shot: str, sb: dict, rv: dict, load: tuple, after: tuple) -> list[str]:
    m = machine()
    return [
        f"{args.shots:,}-shot film at {SIZE}, shot `{shot}`'s camera edited; CPU time of this "
        f"process, median of {args.runs} runs; load average {load[0]:.1f} before, "
        f"{after[0]:.1f} after ({m['nproc']} CPUs).",
        "",
        "| what the edit redraws | before | after | after ÷ before |",
        "| --- | --- | --- | --- |",
        f"| storyboard: the whole film's sheets ({sb['panels']:,} panels, {sb['pages']} pages) "
        f"→ scene `{sb['scene']}`'s ({sb['scene_panels']} panels) and the index of "
        f"{sb['scenes']} scenes | {sb['before_cpu']:.2f} s CPU ({sb['before_wall']:.2f} s wall) "
        f"| {sb['after_cpu']:.3f} s CPU ({sb['after_wall']:.3f} s wall) "
        f"| {sb['after_cpu'] / sb['before_cpu']:.4f} |",
        f"| review page: every page ({rv['written_before']} files, {rv['mb']:.1f} MB) "
        f"→ {', '.join(rv['written_after'])} | {rv['before_cpu']:.2f} s CPU "
        f"({rv['before_wall']:.2f} s wall) | {rv['after_cpu']:.3f} s CPU "
        f"({rv['after_wall']:.3f} s wall) | {rv['after_cpu'] / rv['before_cpu']:.3f} |",
        "",
        f"- A build after the edit writes {len(rv['written_after'])} of {rv['pages']} review "
        f"pages; one with nothing changed writes {rv['unchanged']}.",
        "- The review figure's floor is the digest of every card (a build does not know which "
        "shots changed): the cards as plain tuples, marshalled and hashed.",
    ]


if __name__ == "__main__":
    sys.exit(main())
