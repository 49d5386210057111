"""How long each line of dialogue was said: what the compiler times dialogue by, once known.

The IR times a shot's lines by an estimate (2.5 words a second, lang/check.py
`speaking_time`) until their speech exists; from then on by the real length of
the audio the speech step made.  The engine records that length with the step's
action (`audio_seconds`, engine/executor.py); the compiler asks for it by step key
through `lookup_for` (it never opens the store itself: compiler/pipeline.py takes
the lookup as an argument, so the compiler stays pure).

    lookup = lookup_for(root, config_store)   # None: no store yet, nothing known
    lookup(["9f2c…", ...])                    # → {key: Fraction(seconds)}

A speech action recorded before lengths were (no `audio_seconds`) is measured from
its stored WAV's header, which is cheap; another format, from such an action, stays
unknown (its line keeps the estimate).
"""

from __future__ import annotations

import contextlib
import wave
from collections.abc import Callable, Iterable, Mapping
from fractions import Fraction
from pathlib import Path

from .db import StoreError
from .store import Store, location

__all__ = ["measure", "lookup_for", "Lookup", "repairs"]

Lookup = Callable[[Iterable[str]], Mapping[str, Fraction]]


def measure(path: Path) -> float | None:
    """An audio file's length in seconds: a WAV's from its header, anything else from
    ffprobe; None when it cannot be read."""
    try:
        with wave.open(str(path)) as f:
            return round(f.getnframes() / f.getframerate(), 6)
    except (OSError, wave.Error, EOFError, ZeroDivisionError):
        pass
    from ..backends.ffmpeg import MediaError, probe

    try:
        seconds = probe(path).get("audio_duration")
    except (MediaError, OSError):
        return None
    return round(float(seconds), 6) if seconds else None


_repairs: list[str] = []


def repairs() -> list[str]:
    """What opening the store for a lookup had to repair (its index rebuilt from the log),
    once: the build that compiled with the lookup says it, as if it had opened the store
    first."""
    found = list(_repairs)
    _repairs.clear()
    return found


def _exact(seconds: float) -> Fraction:
    return Fraction(round(seconds * 1000), 1000)  # milliseconds, as the IR's estimates


def lookup_for(root: Path, configured: str | None) -> Lookup | None:
    """The lengths the store at `root`'s location knows, by speech step key; None when
    the project has no store (a fresh clone: every line keeps its estimate)."""
    where = location(root, configured)
    if not (where / "index.db").exists() and not (where / "actions.log").exists():
        return None

    def lookup(keys: Iterable[str]) -> Mapping[str, Fraction]:
        wanted = list(keys)
        if not wanted:
            return {}
        try:
            store = Store.open(where, objects=False)
        except StoreError:
            return {}  # the build says what is wrong with the store; timing keeps estimates
        if store is None:
            return {}
        _repairs.extend(store.notes)  # said by the build that follows (`repairs`)
        found: dict[str, Fraction] = {}
        with store:
            for key, action in store.get_actions(wanted).items():
                seconds = action.meta.get("audio_seconds")
                if seconds is None and action.outputs and \
                        action.outputs[0].get("ext", "").lower() == ".wav":
                    with contextlib.suppress(ValueError, OSError):
                        seconds = measure(store.objects.path(action.outputs[0]["digest"]))
                if isinstance(seconds, (int, float)) and seconds > 0:
                    found[key] = _exact(float(seconds))
        return found

    return lookup
