"""Picking candidates and adding takes: the one code that writes `film.lock`.

`filmc pick`, `filmc take add` and the review page's clicks all come here, so
a pick made in the browser and one made on the command line are the same
pick.

    shot = find_shot(program, "chen_watches")          # or "hunt/chen_watches"
    entry = pick(program, store, shot, "keyframe", "openai-2")
    take = add_take(program, store, shot, Path("fixed.png"), source="openai-2")

A pick names a candidate that is built: its output's digest, read from the
store, goes into the lock with the candidate's step key (a candidate not built
yet has no digest to pin, and nobody has seen it).  Every write re-reads the
lock from disk under a file lock (`.filmc/picks.lock`), changes one shot's
entry and replaces the file atomically: two writers (the review page and a
terminal) never lose each other's picks.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import attrs

from ..backends.protocol import BackendError
from ..compiler.lock import (
    CLIP,
    IMPORTED,
    KEYFRAME,
    RETOUCHED,
    Pick,
    ShotLock,
    ShotPicks,
    Take,
    read_lock,
    render_lock,
)
from ..lang.diagnostics import Diagnostics, did_you_mean
from ..lang.steps import KINDS, StepId
from . import roots, verify
from .db import disk_error
from .lock import held
from .state import state_dir
from .store import Store

IMAGE_EXTS = (".png", ".jpg", ".jpeg", ".webp")
VIDEO_EXTS = (".mp4", ".mov", ".webm", ".mkv")


class PickError(Exception):
    """A pick or take that cannot be made: what is wrong and what to do."""

    def __init__(self, message: str, hint: str | None = None) -> None:
        super().__init__(message)
        self.message, self.hint = message, hint


# --- finding what to pick -------------------------------------------------------------------


def find_shot(program: Any, text: str) -> ShotPicks:
    """The shot a user named: its id, or `scene/shot`."""
    shot = text.split("/", 1)[1] if "/" in text else text
    for p in program.picks.values():
        if p.shot == shot and ("/" not in text or p.scene == text.split("/", 1)[0]):
            return p
    names = [p.shot for p in program.picks.values()]
    raise PickError(f"no shot `{text}` in the film",
                    did_you_mean(shot, names) or "name a shot by its id, as in the .film file")


def candidate(shot: ShotPicks, kind: str, text: str) -> str:
    """The candidate a user named: its name (`openai-2`, `take2`, `retouch-1`), or its
    number in the order `filmc lock` and the review page list them (1-based)."""
    choice = shot.keyframe if kind == KEYFRAME else shot.clip
    names = choice.candidates
    if text in names:
        return text
    if text.isdigit() and 1 <= int(text) <= len(names):
        return names[int(text) - 1]
    if kind == CLIP and text.isdigit() and f"take{text}" in names:
        return f"take{text}"
    what = "keyframe candidate" if kind == KEYFRAME else "clip take"
    if not names:
        raise PickError(f"shot `{shot.shot}` has no {what}s",
                        "it starts from the shot before's last frame (`first_frame previous`)"
                        if kind == KEYFRAME else None)
    raise PickError(f"shot `{shot.shot}` has no {what} `{text}`",
                    did_you_mean(text, names) or f"its {what}s: " + ", ".join(names))


def output_of(program: Any, store: Store | None, shot: ShotPicks, kind: str,
              name: str) -> Pick:
    """The lock entry that pins candidate `name`: its key and its output's digest, which
    the store must hold (a candidate not built yet cannot be picked)."""
    step = program.graph._node[str(StepId(kind, shot.scene, shot.shot, candidate=name))]["step"]
    if step.pin is not None and step.backend is None:  # a take the user added
        return Pick(name, step.key, step.pin)
    action = store.get_actions([step.key]).get(step.key) if store is not None else None
    digest = action.outputs[0]["digest"] if action is not None and action.outputs else None
    if digest is None or store is None or not store.objects.ok(digest):
        if step.waits is not None:
            hint = (f"it waits for the keyframe pick: pick one first (`filmc pick {shot.shot} "
                    f"CANDIDATE`), then `filmc build --until clip --select {shot.shot}`")
        else:
            hint = f"build it first: `filmc build --until {kind} --select {shot.shot}`"
        raise PickError(f"{'candidate' if kind == KEYFRAME else 'take'} `{name}` of shot "
                        f"`{shot.shot}` is not built yet (or not in this store)", hint)
    return Pick(name, step.key, digest)


# --- writing the lock -----------------------------------------------------------------------


def _writing(program: Any) -> contextlib.AbstractContextManager[None]:
    """One change of the lock at a time (`.filmc/picks.lock`, held for milliseconds)."""
    folder = state_dir(Path(program.root))
    return held(folder / "picks.lock", folder)


def update_lock(program: Any, change: Callable[[dict[str, ShotLock]], None]) -> Path:
    """Re-read the lock, let `change` edit its shots, write it back atomically."""
    path: Path = program.lock
    with _writing(program):
        diags = Diagnostics()
        current = read_lock(path, diags)
        if diags.errors:
            d = diags.errors[0]
            raise PickError(f"`{path.name}` cannot be read: {d.message} ({d.span})",
                            "fix it (or restore it from git), then pick again")
        shots = dict(current.shots)
        change(shots)
        text = render_lock(program.title, shots)
        try:
            fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
            with os.fdopen(fd, "w", encoding="utf-8", newline="\n") as f:
                f.write(text)
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, path)
        except OSError as e:
            with contextlib.suppress(OSError, UnboundLocalError):
                os.unlink(tmp)
            raise disk_error(f"write `{path}`", e, path.parent) from None
    return path


def pick(program: Any, store: Store | None, shot: ShotPicks, kind: str, name: str) -> Pick:
    """Pin candidate `name` of `kind` (keyframe or clip) for `shot` in the lock."""
    entry = output_of(program, store, shot, kind, candidate(shot, kind, name))

    def change(shots: dict[str, ShotLock]) -> None:
        old = shots.get(shot.shot, ShotLock())
        shots[shot.shot] = attrs.evolve(old, keyframe=entry) if kind == KEYFRAME \
            else attrs.evolve(old, clip=entry)

    update_lock(program, change)
    return entry


def restore(program: Any, shot: str, entry: ShotLock | None) -> None:
    """Put back `shot`'s entry as it was (None: no entry), undoing a pick."""
    def change(shots: dict[str, ShotLock]) -> None:
        if entry is None:
            shots.pop(shot, None)
        else:
            shots[shot] = entry

    update_lock(program, change)


def clear(program: Any, shot: ShotPicks, kind: str | None) -> None:
    """Forget `shot`'s pick of `kind` (both when None); its added takes stay."""
    def change(shots: dict[str, ShotLock]) -> None:
        old = shots.get(shot.shot)
        if old is not None:
            shots[shot.shot] = attrs.evolve(
                old, keyframe=None if kind in (None, KEYFRAME) else old.keyframe,
                clip=None if kind in (None, CLIP) else old.clip)

    update_lock(program, change)


def prune(program: Any) -> list[str]:
    """Drop the entries of shots the film no longer has; their names."""
    known = {p.shot for p in program.picks.values()}
    gone: list[str] = []

    def change(shots: dict[str, ShotLock]) -> None:
        for name in list(shots):
            if name not in known:
                gone.append(name)
                del shots[name]

    update_lock(program, change)
    return gone


# --- takes the user adds -------------------------------------------------------------------


def media_kind(path: Path) -> str:
    """keyframe for an image, clip for a video, by the file's name; PickError otherwise."""
    ext = path.suffix.lower()
    if ext in IMAGE_EXTS:
        return KEYFRAME
    if ext in VIDEO_EXTS:
        return CLIP
    raise PickError(f"`{path.name}` is neither an image nor a video filmc takes",
                    "add a PNG, JPEG or WebP image as a keyframe, or an MP4, MOV, WebM or MKV "
                    "video as a clip")


def add_take(program: Any, store: Store, shot: ShotPicks, file: Path,
             source: str | None = None) -> Take:
    """Put the user's image (a keyframe candidate) or video (a clip take) in the store by
    digest and list it in the lock: `retouch-N` when made from candidate `source`,
    `import-N` otherwise."""
    kind = media_kind(file)
    if not file.is_file():
        raise PickError(f"`{file}` is not a file")
    if kind == KEYFRAME and not shot.keyframe.candidates:
        raise PickError(f"shot `{shot.shot}` has no keyframe of its own",
                        "it starts from the shot before's last frame (`first_frame "
                        "previous`): add a clip instead, or remove that line")
    if source is not None:
        source = candidate(shot, kind, source)
    output = KINDS[kind].outputs[0]
    try:
        verify.check_media(output, file)
    except BackendError as e:
        raise PickError(f"`{file.name}` is not a usable {output.media}: "
                        f"{e.message.replace('the service sent ', '')}",
                        "export it again (PNG or JPEG for images, H.264 MP4 for clips)") from None
    # Named by no action until a build uses it: the project's record in the store keeps it
    # from a gc of another project sharing the store, and the lock (written under the
    # store's lock, which a gc waits for) from this project's own (engine/roots.py).
    with roots.store_lock(store.path, "take add", shared=True):
        try:
            digest = store.objects.put(file)
        except OSError as e:
            raise disk_error(f"store `{file}`", e, store.path) from None
        roots.record_take(store.path, program, [digest])
        return _list_take(program, shot, kind, digest, file, source)


def _list_take(program: Any, shot: ShotPicks, kind: str, digest: str, file: Path,
               source: str | None) -> Take:
    """List a stored take in the lock (`retouch-N` or `import-N`); the take."""
    prefix = RETOUCHED if source else IMPORTED
    made: list[Take] = []

    def change(shots: dict[str, ShotLock]) -> None:
        old = shots.get(shot.shot, ShotLock())
        same = next((t for t in old.takes if t.kind == kind and t.digest == digest), None)
        if same is not None:  # the same bytes again: the take it already is
            made.append(same)
            return
        taken = {t.name for t in old.takes if t.kind == kind}
        n = 1
        while f"{prefix}-{n}" in taken:
            n += 1
        take = Take(f"{prefix}-{n}", kind, digest, file.name, source)
        made.append(take)
        shots[shot.shot] = attrs.evolve(old, takes=(*old.takes, take))

    update_lock(program, change)
    return made[0]
