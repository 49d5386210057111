"""A three-way merge of `film.lock`, shot by shot: git's merge driver for it.

Two branches that pick different shots merge cleanly; so do a pick on one side
and a take added on the other to the same shot.  Each of a shot's entries (its
keyframe pick, its clip pick, each take by kind and name) is merged on its own
against the common ancestor: what changed on one side only is taken, what both
sides changed alike is taken once, and what both changed differently is a
conflict.  A conflicting shot's table is written twice between git's markers,
each side's whole table (its other entries merged), so that keeping one side
of each conflict is the whole resolution; the lock reader reports the markers
(F0801) until then.

    merged = merge(base, ours, theirs)          # three compiler.lock.Lock
    text = render(merged, title, "ours", "theirs")
"""

from __future__ import annotations

import re
import tomllib
from collections.abc import Mapping
from typing import TypeVar

import attrs

from .lock import CLIP, KEYFRAME, Lock, Pick, ShotLock, Take, render_lock

T = TypeVar("T")
MARKER = 7  # git's conflict-marker size, the one the lock reader knows
_TITLE = re.compile(r'^# The picks of ("(?:[^"\\]|\\.)*"):', re.M)


class _Conflict:
    pass


CONFLICT = _Conflict()


@attrs.frozen
class MergedShot:
    """One shot: its merged table, or both sides of a conflict."""

    shot: str
    entry: ShotLock | None  # None: in conflict
    ours: ShotLock = ShotLock()  # the conflict's sides: the merge, with each side's choices
    theirs: ShotLock = ShotLock()
    why: tuple[str, ...] = ()  # what conflicts: "keyframe", "clip", "take retouch-1"


@attrs.frozen
class Merged:
    shots: tuple[MergedShot, ...]

    @property
    def conflicts(self) -> tuple[MergedShot, ...]:
        return tuple(s for s in self.shots if s.entry is None)


def _three(base: T, ours: T, theirs: T) -> T | _Conflict:
    if ours == theirs:
        return ours
    if ours == base:
        return theirs
    if theirs == base:
        return ours
    return CONFLICT


def merge(base: Lock, ours: Lock, theirs: Lock) -> Merged:
    out = []
    empty = ShotLock()
    for shot in sorted(set(base.shots) | set(ours.shots) | set(theirs.shots)):
        b, o, t = (lock.shots.get(shot, empty) for lock in (base, ours, theirs))
        why: list[str] = []
        mine: dict[str, Pick | None] = {}
        yours: dict[str, Pick | None] = {}
        for kind in (KEYFRAME, CLIP):
            got = _three(b.pick(kind), o.pick(kind), t.pick(kind))
            if isinstance(got, _Conflict):
                why.append(kind)
                mine[kind], yours[kind] = o.pick(kind), t.pick(kind)
            else:
                mine[kind] = yours[kind] = got
        takes_mine, takes_yours = _takes(b.takes, o.takes, t.takes, why)
        ours_entry = ShotLock(mine[KEYFRAME], mine[CLIP], takes_mine)
        theirs_entry = ShotLock(yours[KEYFRAME], yours[CLIP], takes_yours)
        if why:
            out.append(MergedShot(shot, None, ours_entry, theirs_entry, tuple(why)))
        else:
            out.append(MergedShot(shot, ours_entry))
    return Merged(tuple(out))


def _takes(base: tuple[Take, ...], ours: tuple[Take, ...], theirs: tuple[Take, ...],
           why: list[str]) -> tuple[tuple[Take, ...], tuple[Take, ...]]:
    """The takes merged one by one (by kind and name): (ours' side, theirs' side), the
    same unless a take conflicts."""
    def by_name(takes: tuple[Take, ...]) -> Mapping[tuple[str, str], Take]:
        return {(t.kind, t.name): t for t in takes}

    b, o, t = by_name(base), by_name(ours), by_name(theirs)
    mine: list[Take] = []
    yours: list[Take] = []
    for name in sorted(set(b) | set(o) | set(t)):
        got = _three(b.get(name), o.get(name), t.get(name))
        if isinstance(got, _Conflict):
            why.append(f"{name[0]} take {name[1]}")
            mine += [o[name]] if name in o else []
            yours += [t[name]] if name in t else []
        elif isinstance(got, Take):
            mine.append(got)
            yours.append(got)
    return tuple(mine), tuple(yours)


def title_of(text: str) -> str | None:
    """The film's title, as the lock's header comment names it."""
    m = _TITLE.search(text)
    if m is None:
        return None
    try:
        value = tomllib.loads(f"t = {m[1]}")["t"]
    except tomllib.TOMLDecodeError:
        return None
    return value if isinstance(value, str) else None


def render(merged: Merged, title: str, ours: str = "ours", theirs: str = "theirs") -> str:
    """The merged lock's text: `render_lock`'s when nothing conflicts; else each
    conflicting shot's two tables between conflict markers, in the shots' order."""
    if not merged.conflicts:
        return render_lock(title, {s.shot: s.entry for s in merged.shots
                                   if s.entry is not None})
    out = [render_lock(title, {})]
    for s in merged.shots:
        if s.entry is not None:
            out.append(_table(title, s.shot, s.entry))
            continue
        out.append(f"\n{'<' * MARKER} {ours}\n")
        out.append(_table(title, s.shot, s.ours).lstrip("\n"))
        out.append(f"{'=' * MARKER}\n")
        out.append(_table(title, s.shot, s.theirs).lstrip("\n"))
        out.append(f"{'>' * MARKER} {theirs}\n")
    return "".join(out)


def _table(title: str, shot: str, entry: ShotLock) -> str:
    """One shot's table as render_lock writes it (`\\n[shot]\\n...`); empty for none."""
    header = render_lock(title, {})
    return render_lock(title, {shot: entry})[len(header):]
