"""Content keys: what decides whether a step ever runs again.

A step's key is the sha256 of a canonical JSON record of everything that can
change its output, and nothing else:

- its kind and `KEY_SCHEMA` (bumped when the record's shape or meaning changes);
- the backend's adapter type and the settings that change its output (the
  model, quality...; never its name in filmc.toml, which is a label, nor API
  keys, hosts, concurrency or timeouts: see `compiler.config`);
- the digest of the template it was rendered with, and the rendered prompt;
- its parameters (seed, size, duration...);
- the keys of its input steps, in order, and the content hashes of its input
  files (never their paths, so renaming a file changes nothing).

Display-only fields (notes, tags, titles, file names, positions in files)
never enter the record, so `filmc fmt`, comments, reordering shots or editing
other shots leave a key unchanged.
"""

from __future__ import annotations

import hashlib
import json
from fractions import Fraction

KEY_SCHEMA = 1


def _default(o: object) -> object:
    if isinstance(o, Fraction):
        return f"{o.numerator}/{o.denominator}" if o.denominator != 1 else o.numerator
    if isinstance(o, (tuple, frozenset, set)):
        return sorted(o) if isinstance(o, (set, frozenset)) else list(o)
    raise TypeError(f"cannot put {type(o).__name__} in a key")


def canonical(record: dict) -> str:
    """The one JSON text of a record: sorted keys, no spaces, exact fractions."""
    return json.dumps(record, sort_keys=True, separators=(",", ":"), ensure_ascii=False,
                      default=_default)


def step_key(kind: str, settings: dict, template: str | None, prompt: str,
             params: dict, input_keys: list[str], file_digests: list[str]) -> str:
    """`settings` identifies the backend: its adapter `type` and output-changing settings
    (empty for the user's own files)."""
    record = {
        "v": KEY_SCHEMA,
        "kind": kind,
        "settings": settings,
        "template": template,
        "prompt": prompt,
        "params": params,
        "inputs": input_keys,
        "files": file_digests,
    }
    return hashlib.sha256(canonical(record).encode()).hexdigest()
