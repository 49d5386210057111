"""Fonts for the storyboard panels: one bundled face that covers Latin and CJK.

The panels print character names, places and action lines in whatever script the
film is written in, on any machine, offline, with the same pixels everywhere. So
the font ships with filmc instead of being looked up on the system (a CI runner
or a fresh container has no CJK font, and a different system font would change
every panel):

    fonts/FilmcPanelSans-Regular.otf   3.0 MB, SIL Open Font License 1.1 (fonts/OFL.txt)

It is a subset of Noto Sans CJK SC Regular 2.004 (taken from the
`noto-cjk-sans-otc` wheel on PyPI, NotoSansCJK-Regular.ttc), cut with fontTools'
subsetter to Latin, Greek, Cyrillic, punctuation, arrows, kana, the 6,763 hanzi of
GB 2312, the kanji of JIS X 0208, the hangul and hanja of KS X 1001 and the level-1
hanzi of Big5: about 15,000 characters, everything a screenplay in Chinese,
Japanese, Korean or a European language uses. The whole collection (19 MB, and
not on every package index) would only add rare characters.

A project that needs more (a rare character, another script) points the
`FILMC_PANEL_FONT` environment variable at a font file of its own; it is tried
first, and the bundled face stays the fallback for the characters it lacks.
"""

from __future__ import annotations

import os
from functools import lru_cache
from pathlib import Path

from PIL import ImageFont

FONT_DIR = Path(__file__).parent / "fonts"
BUNDLED = FONT_DIR / "FilmcPanelSans-Regular.otf"
_PROBE = "\ue000"  # a private-use code point no font here maps: renders as .notdef


@lru_cache(maxsize=64)
def _load(path: str, size: int) -> ImageFont.FreeTypeFont:
    return ImageFont.truetype(path, size)


def _candidates() -> list[str]:
    own = os.environ.get("FILMC_PANEL_FONT")
    paths = [own] if own and Path(own).is_file() else []
    return [*paths, str(BUNDLED)]


@lru_cache(maxsize=4096)
def _tofu(path: str, ch: str) -> bool:
    """True when `path` has no glyph for `ch` (it would draw the .notdef box)."""
    if ch.isspace():
        return False
    f = _load(path, 32)
    return glyph_bitmap(f, ch) == glyph_bitmap(f, _PROBE)


def glyph_bitmap(f: ImageFont.FreeTypeFont, ch: str) -> tuple[tuple[int, int], bytes]:
    """The rendered 8-bit mask of one character: its size and its pixels."""
    mask = f.getmask(ch, mode="L")
    return mask.size, bytes(mask)


def missing(text: str, path: str | Path = BUNDLED) -> str:
    """The characters of `text` that the font at `path` cannot draw."""
    return "".join(sorted({c for c in text if _tofu(str(path), c)}))


def font(size: int, text: str = "") -> ImageFont.FreeTypeFont:
    """A font at `size` px that draws `text` (Latin and CJK) with real glyphs.

    The first candidate that covers all of `text` wins; when none does, the one
    that misses the fewest characters (the bundled face, unless a project font
    does better). Loaded fonts are cached: calling this per panel costs nothing.
    """
    size = max(6, int(size))
    paths = _candidates()
    if text and len(paths) > 1:
        best = min(paths, key=lambda p: len(missing(text, p)))
        return _load(best, size)
    return _load(paths[0], size)
