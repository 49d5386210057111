"""Where outputs go: the one module that decides every path under `build/<film>/`.

    build/<film>/film.mp4                      the film, with chapters and subtitles
                 film.srt                      the dialogue, timed
                 film.dialogue.wav ...         the mix step's stems: dialogue, music, effects
                 shots/steppe.mp4              each shot, by its id
                 keyframes/steppe.openai-2.png each keyframe candidate built
                 clips/steppe.take1.mp4        each clip take built
                 dialogue/steppe.1.wav         each line of dialogue, as audio
                 storyboard/hunt.png, hunt-2.png...   each scene's contact sheets, page by
                                               page, by scene id (one step a scene)
                 storyboard/index.html         every scene with its title, shots and pages
                 timeline.json                 the cut, naming each shot's file
                 export/film.otio ...          the exports (compiler/exports.py)
                 report.json                   what the build did (engine/report.py)
                 stale/film.mp4 ...            results of an earlier build that this one
                                               did not make (`--until`, `--select`, a failure)

The names are lang/files.py's: stable, so that reordering shots renames nothing
an editor linked to.  Everything but the timeline and the report is a hard link
to a store object (a copy across disks), replaced atomically, so a reader sees
the old file or the new one.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
from collections.abc import Collection, Iterable
from pathlib import Path
from typing import Any

import attrs

from ..lang.files import (
    EXPORT_FOLDER,
    STORYBOARD_FOLDER,
    STORYBOARD_INDEX,
    clip_file,
    export_file,
    film_dir,
    keyframe_file,
    shot_file,
    speech_file,
    stem,
    storyboard_file,
    storyboard_scene,
)
from ..lang.steps import FILM_STEMS as STEMS
from ..lang.steps import Addressed
from .db import disk_error
from .store import Store

__all__ = ["clip_file", "film_dir", "keyframe_file", "shot_file", "speech_file",
           "storyboard_file"]


def places(outcome: Any) -> list[tuple[str, str]]:
    """(path under build/<film>/, object digest) for what a person looks for in a step's
    outputs (the candidates and takes to pick from, the shots, the dialogue, the film,
    the exports); steps that are only means to an end (sheets, last frames) have none."""
    kind, out = outcome.kind, outcome.outputs
    if kind == "film":
        return [("film" + (out[0].ext or ".mp4"), out[0].digest)]
    if kind == "mix":  # its stems beside the film: film.dialogue.wav, film.music.wav, ...
        # (its audio track is in film.mp4: not laid out on its own)
        return [(f"film.{name}{o.ext or '.wav'}", o.digest) for name, o in zip(STEMS, out[1:])]
    if kind == "subtitles":
        return [("film.srt", out[0].digest)]
    if kind == "storyboard":  # storyboard/hunt.png, storyboard/hunt-2.png, ...
        return [(storyboard_file(outcome.scene, i, o.ext), o.digest)
                for i, o in enumerate(out, 1)]
    if kind == "storyboard_index":
        return [(STORYBOARD_INDEX, out[0].digest)]
    if kind == "shot":
        return [(shot_file(outcome.shot), out[0].digest)]
    if kind in ("keyframe", "clip"):
        name = keyframe_file if kind == "keyframe" else clip_file
        return [(name(outcome.shot, outcome.sid.candidate, out[0].ext), out[0].digest)]
    if kind == "speech":
        return [(speech_file(outcome.shot, outcome.sid.line, out[0].ext), out[0].digest)]
    if kind == "export":
        return [(export_file(outcome.sid.subject), out[0].digest)]
    return []


# The outputs that stand for a build's result: an old one of these left in place could
# be taken for this build's (film.mp4 above all), so one this build did not make is
# moved aside to stale/ and named in the summary and report.json.  (What the review
# page shows, the store's candidates for the current sources, is laid out as `extra`.)
RESULT_KINDS = ("film", "mix", "subtitles", "timeline", "storyboard", "shot", "keyframe",
                "clip", "speech", "export", "storyboard_index")
FOLDERS = ("shots", "keyframes", "clips", "dialogue", EXPORT_FOLDER, STORYBOARD_FOLDER)
STALE = "stale"


@attrs.frozen
class Laid:
    folder: Path
    # {"path", "why", "moved_to"}: outputs an earlier build made that are not this one's
    stale: tuple[dict[str, str], ...] = ()


def materialize(program: Any, store: Store, outcomes: Iterable[Any], full: bool,
                extra: Iterable[tuple[str, str]] = (), cause: str = "") -> Laid:
    """Lay out the outputs of the steps that succeeded, and `extra` (path, digest) files
    (the candidates the review page links, built or not by this build).

    The result files (RESULT_KINDS) are this build's or are moved to `stale/` (see
    `set_aside`): one whose step this build did not run is laid out from the store when
    the store holds it under the current key, else it is stale.  With `full` (a build of
    the whole film), files that no step of the film makes any more are removed.  `cause`
    says why this build made less than the whole film ("it stopped at `keyframe`")."""
    out = film_dir(program.root, program.name)
    # Paths as strings (out/ then the name): a feature lays out some 30,000 files, and a
    # path object each was a third of laying them out.
    at = os.fspath(out) + os.sep
    outcomes = list(outcomes)
    wanted: dict[str, str] = {}
    timeline: str | None = None
    for o in outcomes:
        if o.status not in ("ran", "cached", "provided") or not o.outputs:
            continue
        if o.kind == "timeline":
            timeline = o.outputs[0].digest
        for rel, digest in places(o):
            wanted[at + rel] = digest
    # What this build did not run but the store holds for the current sources is current.
    owners = _result_steps(program)
    done = {o.id for o in outcomes if o.status in ("ran", "cached", "provided")}
    todo: dict[str, list[Any]] = {}  # key → its steps (twin shots share one)
    for step, _rel in owners.values():
        if step.id not in done:
            todo.setdefault(step.key, []).append(step)
    current = set(done)
    here = str(film_dir(Path(program.root).resolve(), program.name))
    for key, action in store.get_actions(todo).items():
        stored = tuple(_Out(d["digest"], d.get("ext", "")) for d in action.outputs)
        if not stored or not all(store.objects.exists(s.digest) for s in stored):
            continue
        if action.meta.get("folder", here) != here:
            continue  # an export made where the project was before: it names old paths
        for step in todo[key]:
            made = _Made(step.sid, stored)
            current.add(made.id)
            if made.kind == "timeline":
                timeline = stored[0].digest
            for rel, digest in places(made):
                wanted[at + rel] = digest
    for rel, digest in extra:
        wanted.setdefault(at + rel, digest)
    timeline_path = at + "timeline.json"  # written, not linked: see _write_timeline
    if timeline is not None:
        wanted[timeline_path] = timeline
    try:
        folders = _Folders()
        # An object's inode as the store verified it (this build checked each it reused
        # by its signature): a file already linked to it needs no stat of the object.
        objects = store.objects
        device = os.stat(objects.root).st_dev
        for path, digest in wanted.items():
            if path != timeline_path:
                sig = objects.known.get(digest)
                _place(objects.where(digest), path, folders,
                       None if sig is None else (device, sig[2]))
        if timeline is not None:
            _write_timeline(store.objects.path(timeline), out / "timeline.json", timeline)
        stale = set_aside(out, set(wanted), owners, current, outcomes, cause, full)
    except OSError as e:
        raise disk_error(f"lay out the build in `{out}`", e, out) from None
    return Laid(out, tuple(stale))


@attrs.frozen
class _Out:
    digest: str
    ext: str


@attrs.frozen
class _Made(Addressed):
    """A step's outputs as the store holds them, shaped like an outcome for `places`."""

    sid: Any
    outputs: tuple[_Out, ...]


def _result_steps(program: Any) -> dict[str, tuple[Any, Any]]:
    """step id → (step, its path under build/<film>/: for a keyframe, clip or line without
    its extension, for a scene's storyboard its first page's, or a pattern)."""
    found: dict[str, tuple[Any, Any]] = {}
    for _n, data in program.graph.nodes(data=True):
        step = data["step"]
        if step.kind not in RESULT_KINDS:
            continue
        if step.kind == "shot":
            rel: Any = shot_file(step.shot)
        elif step.kind in ("keyframe", "clip"):  # named without the extension a service picks
            name = keyframe_file if step.kind == "keyframe" else clip_file
            rel = stem(name(step.shot, step.sid.candidate))
        elif step.kind == "speech":
            rel = stem(speech_file(step.shot, step.sid.line))
        elif step.kind == "export":
            rel = export_file(step.sid.subject)
        elif step.kind == "storyboard":  # its pages, however many: see `set_aside`
            rel = stem(storyboard_file(step.scene, 1))
        elif step.kind == "storyboard_index":
            rel = STORYBOARD_INDEX
        else:
            rel = {"film": "film.mp4", "mix": "film.*.wav", "subtitles": "film.srt",
                   "timeline": "timeline.json"}[step.kind]
        found[step.id] = (step, rel)
    return found


def _results(out: Path, laid: Collection[str] = ()) -> list[Path]:
    """The result files under `out` (or under its stale/): film, subtitles, timeline,
    storyboard pages and shots, but those of `laid` (paths as strings: the thousands a
    build laid out, told apart without a path object or a stat each).  (`storyboard*.png`
    beside the film: the whole-film contact sheets of builds before the storyboard had a
    page a scene, which no step makes any more.)"""
    files = [f for f in (*out.glob("film.*"), *out.glob("storyboard*"), out / "timeline.json")
             if os.fspath(f) not in laid and f.is_file()]
    found: list[str] = []
    for sub in FOLDERS:
        with contextlib.suppress(FileNotFoundError, NotADirectoryError), \
                os.scandir(out / sub) as entries:
            found += [e.path for e in entries if e.path not in laid and e.is_file()]
    return files + [Path(f) for f in found]


def set_aside(out: Path, wanted: set[str], owners: dict[str, tuple[Any, Any]],
              current: set[str], outcomes: list[Any], cause: str,
              full: bool) -> list[dict[str, str]]:
    """Move each result file this build did not lay out to `stale/` (same relative path),
    and return what is stale and why, sorted by path.  A file in `stale/` whose place now
    holds this build's output goes, and so does one that its step, laid out (`current`),
    no longer makes (a storyboard page fewer); with `full`, so does one that no step of
    the film makes (a shot taken out of the film), in either place."""
    by_path = {pattern: step_id for step_id, (_step, pattern) in owners.items()}
    status = {o.id: o for o in outcomes}
    failed = next((o.id for o in outcomes if o.status == "failed"), None)

    def owner(rel: str) -> str | None:
        scene = storyboard_scene(rel)
        if scene is not None:  # storyboard/hunt-2.png: page 2 of `storyboard.hunt`
            return by_path.get(stem(storyboard_file(scene, 1)))
        if rel.startswith(("keyframes/", "clips/", "dialogue/")):
            return by_path.get(stem(rel))
        if rel.startswith("film.") and rel.endswith(".wav"):  # the mix's stems
            return by_path.get("film.*.wav")
        return by_path.get(rel) or (by_path.get("film.mp4") if rel.startswith("film.")
                                    and rel != "film.srt" else None)

    def why(rel: str, sid: str | None) -> str:
        o = status.get(sid) if sid else None
        if sid is None:
            return f"{rel} is from an earlier build: it is not in the film any more"
        if o is not None and o.status == "failed":
            because = f"`{sid}` failed"
        elif o is not None and o.status == "waiting":
            because = f"`{sid}` waits for a pick"
        elif o is not None and o.status == "skipped":
            because = (f"`{failed}` failed, so this build did not make `{sid}`" if failed
                       else f"this build did not make `{sid}` ({o.error})")
        else:
            because = cause or f"this build did not make `{sid}`"
        return f"{rel} is from an earlier build: {because}"

    aside = out / STALE
    stale: list[dict[str, str]] = []
    for f in _results(out, wanted):
        rel = f.relative_to(out).as_posix()
        sid = owner(rel)
        if sid in current or (full and sid is None):
            f.unlink()
            continue
        dest = aside / rel
        dest.parent.mkdir(parents=True, exist_ok=True)
        os.replace(f, dest)
    if aside.is_dir():
        for f in _results(aside):
            rel = f.relative_to(aside).as_posix()
            sid = owner(rel)
            if os.fspath(out / rel) in wanted or sid in current or (full and sid is None):
                f.unlink()
                continue
            stale.append({"path": rel, "why": why(rel, sid), "moved_to": f"{STALE}/{rel}"})
        for d in sorted((p for p in aside.rglob("*") if p.is_dir()), reverse=True):
            with contextlib.suppress(OSError):
                d.rmdir()
        with contextlib.suppress(OSError):
            aside.rmdir()
    return sorted(stale, key=lambda s: ("/" in s["path"], s["path"]))


def _write_timeline(obj: Path, dest: Path, digest: str) -> None:
    """The timeline step's cut, with each shot's file as laid out here; left as it is when
    it says that already (an edit that moves no cut writes nothing: a feature's timeline
    is some 3,000 clips, and Python's indenting encoder is slow)."""
    text = _timelines.get(digest)
    if text is None:
        doc = json.loads(obj.read_text(encoding="utf-8"))
        for clip in doc.get("clips", []):
            clip["file"] = shot_file(clip["shot"])
        text = json.dumps(doc, ensure_ascii=False, indent=1) + "\n"
        _timelines.clear()  # the latest alone
        _timelines[digest] = text
    with contextlib.suppress(OSError):
        if dest.read_text(encoding="utf-8") == text:
            return
    write_atomic(dest, text)


_timelines: dict[str, str] = {}  # the timeline object's digest → the text laid out for it


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


class _Folders:
    """The folders of build/<film>/ as one listing each: what is there, by name → inode.

    A build after a one-shot edit lays out the same thousands of files as the last one;
    a file already linked to its object is left alone after a look at its folder's
    listing (no stat of the file, no mkdir), so laying out costs what changed."""

    def __init__(self) -> None:
        self._seen: dict[str, tuple[int, dict[str, int]]] = {}  # folder → (device, names)

    def inode(self, folder: str, name: str) -> tuple[int, int] | None:
        """(device, inode) of `folder/name` as the folder was when first listed; None when
        it was not there (the folder is made if it was missing)."""
        seen = self._seen.get(folder)
        if seen is None:
            os.makedirs(folder, exist_ok=True)
            with os.scandir(folder) as entries:
                names = {e.name: e.inode() for e in entries}
            seen = self._seen[folder] = (os.stat(folder).st_dev, names)
        found = seen[1].get(name)
        return None if found is None else (seen[0], found)


def _place(obj: str | Path, dest: str | Path, folders: _Folders | None = None,
           ident: tuple[int, int] | None = None) -> None:
    """`dest` becomes the object: a hard link when possible (objects are read-only), else
    a copy; replaced atomically, so a reader sees the old file or the new one.  With
    `folders`, a `dest` that already is the object (the same inode: `ident`, the object's
    (device, inode) where known, else its stat) is left as it is."""
    parent, name = os.path.split(dest)
    if folders is not None:
        there = folders.inode(parent, name)
        if there is not None:
            if ident == there:
                return
            with contextlib.suppress(OSError):
                st = os.stat(obj)
                if (st.st_dev, st.st_ino) == there:
                    return
    else:
        os.makedirs(parent, exist_ok=True)
        with contextlib.suppress(OSError):
            if os.path.samefile(obj, dest):
                return
    tmp = os.path.join(parent, f".{name}.tmp")
    with contextlib.suppress(FileNotFoundError):
        os.unlink(tmp)
    try:
        os.link(obj, tmp)
    except OSError:
        shutil.copyfile(obj, tmp)
    os.replace(tmp, dest)
