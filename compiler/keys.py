"""Content keys: what decides whether a step ever runs again.

A step's key is the sha256 of a canonical JSON record of everything that can
change its output, and nothing else:

- its kind and `KEY_SCHEMA` (bumped when the record's shape or meaning changes);
- the backend's adapter type and version, the settings that change its output
  (the model, quality...; a file setting by its content; never its name in
  filmc.toml, which is a label, nor API keys, hosts, concurrency or timeouts:
  see `compiler.config`), and the facts of this machine the adapter says
  matter (the local renderer's version, ffmpeg's, the panel font);
- the request fields the adapter says change its output (`key_fields`: a
  service with no seed is not re-keyed by a seed), always the take, and the
  template's digest when the prompt is one of them;
- the step's other parameters, only for an adapter that draws from them (the
  animatic: a light preset's palette never re-keys a paid keyframe);
- the keys of its input steps, in order, each with the part it plays and what it
  shows (the character, outfit, location, time of day: an adapter may name them to
  the service), and the content hashes of its input files (never their paths, so
  renaming a file changes nothing).

Display-only fields (notes, tags, titles, file names, positions in files)
never enter the record, so `filmc fmt`, comments, reordering shots or editing
other shots leave a key unchanged.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from fractions import Fraction

KEY_SCHEMA = 2


def _default(o: object) -> object:
    if isinstance(o, Fraction):
        return f"{o.numerator}/{o.denominator}" if o.denominator != 1 else o.numerator
    if isinstance(o, (tuple, frozenset, set)):
        return sorted(o) if isinstance(o, (set, frozenset)) else list(o)
    raise TypeError(f"cannot put {type(o).__name__} in a key")


# One encoder for every key: json.dumps with options builds a new one on every call.
_ENCODER = json.JSONEncoder(sort_keys=True, separators=(",", ":"), ensure_ascii=False,
                            default=_default)


Spliced = Mapping[tuple[str, ...], str]


def canonical(record: object, spliced: Spliced | None = None) -> str:
    """The one JSON text of a record (or of any value a key holds): sorted keys, no
    spaces, exact fractions.

    `spliced`: the canonical text of some of its values, by their path of keys, made
    before (a process that compiles again keeps each shot's media's entries in an
    export's inputs: see compiler/exports.py), put in place of encoding them again.  The text is the same:
    a dict on the way to one is written as the encoder writes it, key by key in order."""
    if not spliced:
        return _ENCODER.encode(record)
    return _assembled(record, (), spliced)


def _assembled(value: object, path: tuple[str, ...], spliced: Spliced) -> str:
    text = spliced.get(path)
    if text is not None:
        return text
    if isinstance(value, dict) and all(isinstance(k, str) for k in value) \
            and any(p[:len(path)] == path for p in spliced):
        return "{" + ",".join(f"{_ENCODER.encode(k)}:{_assembled(v, (*path, k), spliced)}"
                              for k, v in sorted(value.items())) + "}"
    return _ENCODER.encode(value)


def step_key(material: dict, spliced: Spliced | None = None) -> str:
    """The key of a step: the sha256 of its key material's canonical JSON (`spliced`:
    the text of some of its parts, made before: see `canonical`)."""
    return hashlib.sha256(canonical({"v": KEY_SCHEMA, **material}, spliced).encode()).hexdigest()
