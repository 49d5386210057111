"""The `local` backend: an offline animatic, rendered on this machine.

Steps run in a process pool sized to the cores (Pillow and ffmpeg are CPU
work); `render` is the function each worker runs, dispatching on the step kind
to `panels` (stills) and `media` (ffmpeg).  Deterministic: the same step gives
the same picture.
"""

from __future__ import annotations

import asyncio
import multiprocessing
import os
from collections.abc import Sequence
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

from ..base import BackendError, Job


class LocalBackend:
    type = "local"

    def __init__(self, name: str, settings: dict, jobs: int) -> None:
        self.name = name
        self.settings = settings
        self.workers = max(1, min(jobs, os.cpu_count() or 1))
        self._pool: ProcessPoolExecutor | None = None

    def _get_pool(self) -> ProcessPoolExecutor:
        if self._pool is None:
            # forkserver: workers start clean, never inheriting the build's threads or
            # database connections.
            ctx = multiprocessing.get_context("forkserver")
            self._pool = ProcessPoolExecutor(self.workers, mp_context=ctx,
                                             initializer=_warm_up)
        return self._pool

    async def run(self, job: Job) -> Sequence[Path]:
        step = job.step
        inputs = [(node, [str(p) for p in paths]) for node, paths in job.inputs]
        loop = asyncio.get_running_loop()
        try:
            outs = await loop.run_in_executor(
                self._get_pool(), render, step.kind, step.params, step.prompt, inputs,
                str(job.workdir), job.film)
        except BackendError:
            raise
        except Exception as e:  # a worker's failure, made readable
            raise BackendError(f"{type(e).__name__}: {e}") from None
        return [Path(o) for o in outs]

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=True)
            self._pool = None


def _warm_up() -> None:
    import signal

    # Ctrl-C reaches the whole process group: the build itself stops the pool, so a
    # worker must not die mid-render printing a traceback of its own.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    from . import media, panels  # noqa: F401  (import once per worker, not per step)


def render(kind: str, params: dict, prompt: str, inputs: list[tuple[str, list[str]]],
           workdir: str, film: dict) -> list[str]:
    """Render one step into `workdir`; return the files written."""
    from . import media, panels

    out_dir = Path(workdir)
    files = [Path(p) for _node, paths in inputs for p in paths]

    def of(prefix: str) -> list[Path]:
        return [Path(p) for node, paths in inputs if node.startswith(prefix) for p in paths]

    if kind in ("sheet", "plate", "keyframe"):
        out = out_dir / f"{kind}.png"
        fn = {"sheet": panels.render_sheet, "plate": panels.render_plate,
              "keyframe": panels.render_keyframe}[kind]
        fn(params, prompt, files, out)
    elif kind == "clip":
        out = out_dir / "clip.mp4"
        media.render_clip(of("keyframe.")[0], params, out)
    elif kind == "speech":
        out = out_dir / "speech.wav"
        media.render_speech(params, out)
    elif kind == "shot":
        out = out_dir / "shot.mp4"
        media.conform_shot(of("clip.")[0], of("speech."), params, out)
    elif kind == "film":
        out = out_dir / "film.mp4"
        chapters = [(title, float(start)) for title, start in params.get("chapters", [])]
        srt = of("subtitles")
        media.concat_film(of("shot."), chapters, out, subtitles=srt[0] if srt else None,
                          burn=bool(params.get("burn_subtitles")))
    elif kind == "subtitles":
        out = out_dir / "film.srt"
        media.write_srt([(float(a), float(b), text) for a, b, text in params["lines"]], out)
    elif kind == "timeline":
        out = out_dir / "timeline.json"
        _write_timeline(params, out)
    elif kind == "storyboard":
        out = out_dir / "storyboard.png"
        labels = [f"{scene}/{shot}" for scene, shot in params.get("shots", [])]
        panels.render_storyboard(of("keyframe."), labels, out)
    else:
        raise BackendError(f"the local backend cannot make `{kind}` steps")
    return [str(out)]


def _write_timeline(params: dict, out: Path) -> None:
    """The cut as data: each shot's file, scene and place in the film, in frames."""
    import json
    from fractions import Fraction

    fps = Fraction(params["fps"])
    t = Fraction(0)
    clips = []
    for n, (scene, shot, duration) in enumerate(params["shots"], 1):
        d = Fraction(duration)
        clips.append({"number": n, "scene": scene, "shot": shot,
                      "file": f"shots/{n:03d}_{scene}_{shot}.mp4",
                      "start_frame": round(t * fps), "frames": round(d * fps)})
        t += d
    doc = {"fps": str(fps), "width": params["width"], "height": params["height"],
           "frames": round(t * fps), "clips": clips}
    out.write_text(json.dumps(doc, ensure_ascii=False, indent=1) + "\n", encoding="utf-8")
