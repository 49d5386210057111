"""What a service can make that comes nearest to what a shot asks, for adapters and for
the warnings `plan` prints before anything is spent (compiler/warnings.py).

    clip_length(Fraction(5), (4, 6, 8))        → 6   (the shortest that covers the shot)
    clip_length(Fraction(12), (5, 10))         → 10  (none does: the longest)
    aspect_ratio(1920, 804, ("16:9", "9:16"))  → "16:9"
    nearest_size(1920, 804, ((1024, 1024), (1536, 1024)))  → (1536, 1024)

A clip made longer than its shot is cut by the shot step to the exact frame
count; one made shorter holds its last frame (backends/local/media.py
`conform_shot`), so the shortest length that covers the shot is the one to ask
for. Frames of another shape are fitted (scaled and cropped) the same way.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from fractions import Fraction


def clip_length(seconds: Fraction | float, allowed: Iterable[Fraction | float | int]) -> Fraction:
    """The allowed length to generate a clip of `seconds` at: the shortest that is at least
    as long, else the longest."""
    options = sorted(Fraction(a) for a in allowed)
    if not options:
        raise ValueError("no clip length allowed")
    want = Fraction(seconds)
    return next((a for a in options if a >= want), options[-1])


def _ratio(text: str) -> float:
    w, _, h = text.partition(":")
    return float(w) / float(h)


def aspect_ratio(width: int, height: int, allowed: Sequence[str]) -> str:
    """Of `allowed` ratios ("16:9", "1280:720"), the nearest to width:height (compared in
    log space, so 2:1 is as far from 1:1 as 1:2 is)."""
    if not allowed:
        raise ValueError("no aspect ratio allowed")
    want = math.log(width / height)
    return min(allowed, key=lambda r: abs(math.log(_ratio(r)) - want))


def nearest_size(width: int, height: int,
                 allowed: Sequence[tuple[int, int]]) -> tuple[int, int]:
    """Of `allowed` sizes, the one nearest in shape to width x height, then in area."""
    if not allowed:
        raise ValueError("no size allowed")
    want = math.log(width / height)
    return min(allowed, key=lambda s: (round(abs(math.log(s[0] / s[1]) - want), 6),
                                       abs(math.log(s[0] * s[1] / (width * height)))))


def seconds_text(value: Fraction | float) -> str:
    """`6`, `5.5`: a length as a person writes it."""
    return f"{float(value):g}"
