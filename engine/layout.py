"""Where outputs go: the one module that decides every path under `build/<film>/`.

    build/<film>/film.mp4                      the film, with chapters and subtitles
                 film.srt                      the dialogue, timed
                 shots/001_hunt_steppe.mp4     each shot, numbered in film order
                 keyframes/001_hunt_steppe_openai-2.png   each keyframe candidate built
                 clips/001_hunt_steppe_take1.mp4          each clip take built
                 storyboard.png, storyboard-2.png...   the contact sheets, page by page
                 timeline.json                 the cut, naming each shot's file
                 report.json                   what the build did (engine/report.py)

Everything but the timeline and the report is a hard link to a store object (a
copy across disks), replaced atomically, so a reader sees the old file or the
new one.  Later exports (OpenTimelineIO, EDL) take their paths from here too.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from .db import disk_error
from .store import Store


def film_dir(root: Path, name: str) -> Path:
    return Path(root) / "build" / name


def shot_file(number: int, scene: str, shot: str) -> str:
    return f"shots/{number:03d}_{scene}_{shot}.mp4"


def keyframe_file(number: int, scene: str, shot: str, candidate: str, ext: str = ".png") -> str:
    return f"keyframes/{number:03d}_{scene}_{shot}_{candidate}{ext or '.png'}"


def clip_file(number: int, scene: str, shot: str, take: str, ext: str = ".mp4") -> str:
    return f"clips/{number:03d}_{scene}_{shot}_{take}{ext or '.mp4'}"


def storyboard_file(page: int, ext: str = ".png") -> str:
    return f"storyboard{'' if page == 1 else f'-{page}'}{ext or '.png'}"


def places(outcome: Any, numbers: dict[tuple[str, str], int]) -> list[tuple[str, str]]:
    """(path under build/<film>/, object digest) for what a person looks for in a step's
    outputs (the candidates and takes to pick from, the shots, the film); steps that are
    only means to an end (speech, sheets, last frames) have none."""
    kind, out = outcome.kind, outcome.outputs
    if kind == "film":
        return [("film" + (out[0].ext or ".mp4"), out[0].digest)]
    if kind == "subtitles":
        return [("film.srt", out[0].digest)]
    if kind == "storyboard":
        return [(storyboard_file(i, o.ext), o.digest) for i, o in enumerate(out, 1)]
    if kind == "shot":
        return [(shot_file(numbers[(outcome.scene, outcome.shot)], outcome.scene, outcome.shot),
                 out[0].digest)]
    if kind in ("keyframe", "clip"):
        n = numbers[(outcome.scene, outcome.shot)]
        name = keyframe_file if kind == "keyframe" else clip_file
        return [(name(n, outcome.scene, outcome.shot, outcome.sid.candidate, out[0].ext),
                 out[0].digest)]
    return []


def materialize(program: Any, store: Store, outcomes: Iterable[Any], full: bool,
                extra: Iterable[tuple[str, str]] = ()) -> Path:
    """Lay out the outputs of the steps that succeeded, and `extra` (path, digest) files
    (the candidates the review page links, built or not by this build); with `full` (a
    build of the whole film), remove the files of shots and takes that no longer exist."""
    out = film_dir(program.root, program.name)
    numbers = {(s.scene, s.id): s.number for s in program.shots}
    wanted: dict[Path, str] = {}
    timeline: str | None = None
    for o in outcomes:
        if o.status not in ("ran", "cached", "provided") or not o.outputs:
            continue
        if o.kind == "timeline":
            timeline = o.outputs[0].digest
        for rel, digest in places(o, numbers):
            wanted[out / rel] = digest
    for rel, digest in extra:
        wanted.setdefault(out / rel, digest)
    try:
        for path, digest in wanted.items():
            _place(store.objects.path(digest), path)
        if timeline is not None:
            _write_timeline(store.objects.path(timeline), out / "timeline.json")
        if full:
            for sub in ("shots", "keyframes", "clips"):
                folder = out / sub
                if folder.is_dir():
                    for f in folder.iterdir():
                        if f not in wanted:
                            f.unlink()
            for f in out.glob("storyboard*.png"):
                if f not in wanted:
                    f.unlink()
    except OSError as e:
        raise disk_error(f"lay out the build in `{out}`", e, out) from None
    return out


def _write_timeline(obj: Path, dest: Path) -> None:
    """The timeline step's cut, with each shot's file as laid out here."""
    doc = json.loads(obj.read_text(encoding="utf-8"))
    for clip in doc.get("clips", []):
        clip["file"] = shot_file(clip["number"], clip["scene"], clip["shot"])
    write_atomic(dest, json.dumps(doc, ensure_ascii=False, indent=1) + "\n")


def write_atomic(dest: Path, text: str) -> None:
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = dest.with_name(f".{dest.name}.tmp")
    try:
        with open(tmp, "w", encoding="utf-8") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, dest)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def _place(obj: Path, dest: Path) -> None:
    """`dest` becomes the object: a hard link when possible (objects are read-only), else
    a copy; replaced atomically, so a reader sees the old file or the new one."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    with contextlib.suppress(OSError):
        if os.path.samefile(obj, dest):
            return
    tmp = dest.with_name(f".{dest.name}.tmp")
    tmp.unlink(missing_ok=True)
    try:
        os.link(obj, tmp)
    except OSError:
        shutil.copyfile(obj, tmp)
    os.replace(tmp, dest)
