"""Drawing helpers shared by the storyboard panels and their figures: colours,
sizes, text wrapping and the constants of the panel style."""

from __future__ import annotations

import colorsys
import hashlib
import math
from collections.abc import Callable
from pathlib import Path

from PIL import Image, ImageDraw

from .fonts import font

RGB = tuple[int, int, int]
Point = tuple[float, float]

DEFAULT_LIGHT = ["#8fb8de", "#7a8450", "#fff6e5", "#3d4a5c"]  # std.light daylight
WHITE: RGB = (255, 255, 255)
INK: RGB = (20, 20, 24)

# Shot scale (std.camera `scale`) -> height of a whole standing figure, in frames.
# A full shot shows all of it; a close-up would need a figure 4.5 frames tall to
# frame the head and shoulders; an extreme close-up shows part of the face.
_SCALE_TO_BODY = [(0.0, 0.0), (0.08, 0.07), (0.25, 0.3), (0.45, 0.8), (0.6, 1.3),
                  (0.8, 1.8), (1.1, 2.8), (1.6, 4.6), (2.5, 9.0), (3.0, 11.0)]
HEADS = 7.5  # a figure is 7.5 heads tall
CELL = 3  # the sky and ground are painted in 3x3 px cells (the grain's size)


# ---------------------------------------------------------------- small helpers


def hex_rgb(value: object, default: RGB = (128, 128, 128)) -> RGB:
    s = str(value).strip().lstrip("#")
    if len(s) == 3:
        s = "".join(c * 2 for c in s)
    try:
        return (int(s[0:2], 16), int(s[2:4], 16), int(s[4:6], 16))
    except (ValueError, IndexError):
        return default


def mix(a: RGB, b: RGB, t: float) -> RGB:
    return tuple(round(x + (y - x) * t) for x, y in zip(a, b))  # type: ignore[return-value]


def character_colour(cid: str) -> RGB:
    """The colour a character is drawn in, in every panel: a hue from its id's hash."""
    h = hashlib.sha256(cid.encode("utf-8")).digest()
    hue = int.from_bytes(h[:2], "big") / 65536
    light = 0.45 + h[2] / 255 * 0.12
    sat = 0.55 + h[3] / 255 * 0.25
    r, g, b = colorsys.hls_to_rgb(hue, light, sat)
    return (round(r * 255), round(g * 255), round(b * 255))


def _num(d: dict, key: str, default: float) -> float:
    try:
        v = d.get(key, default)
        return default if v is None else float(v)
    except (TypeError, ValueError):
        return default


def _save(img: Image.Image, out: Path) -> None:
    """PNG with fixed options and no metadata: same pixels, same bytes."""
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    img.save(out, format="PNG", compress_level=1, optimize=False)


def _body_frames(scale: float) -> float:
    pts = _SCALE_TO_BODY
    if scale >= pts[-1][0]:
        return pts[-1][1] * scale / pts[-1][0]
    for (x0, y0), (x1, y1) in zip(pts, pts[1:]):
        if scale <= x1:
            return y0 + (y1 - y0) * (scale - x0) / (x1 - x0)
    return pts[-1][1]


def _ellipse(cx: float, cy: float, rx: float, ry: float, n: int = 40) -> list[Point]:
    return [(cx + rx * math.cos(2 * math.pi * i / n), cy + ry * math.sin(2 * math.pi * i / n))
            for i in range(n)]


def _is_cjk(ch: str) -> bool:
    o = ord(ch)
    return (0x2E80 <= o <= 0x9FFF or 0xAC00 <= o <= 0xD7AF or 0xF900 <= o <= 0xFAFF
            or 0xFF00 <= o <= 0xFFEF or 0x20000 <= o <= 0x3FFFF)


def wrap(text: str, width: float, measure: Callable[[str], float]) -> list[str]:
    """Greedy line breaking: at spaces for alphabetic text, between any two CJK characters."""
    lines: list[str] = []
    for para in text.splitlines() or [""]:
        units: list[str] = []
        word = ""
        for ch in para:
            if ch == " " or _is_cjk(ch):
                if word:
                    units.append(word)
                    word = ""
                units.append(ch)
            else:
                word += ch
        if word:
            units.append(word)
        line = ""
        for u in units:
            trial = line + u
            if line and measure(trial.rstrip()) > width:
                lines.append(line.rstrip())
                line = "" if u == " " else u
            else:
                line = trial
        lines.append(line.rstrip())
    return lines


def _shade(img: Image.Image, box: tuple[int, int, int, int], factor: float) -> None:
    """Darken a band of the picture in place, so that text over it stays readable."""
    box = (max(0, box[0]), max(0, box[1]), min(img.width, box[2]), min(img.height, box[3]))
    if box[2] <= box[0] or box[3] <= box[1]:
        return
    band = img.crop(box).point([round(v * factor) for v in range(256)] * 3)
    img.paste(band, box[:2])


def _text(draw: ImageDraw.ImageDraw, xy: Point, text: str, size: int, fill: RGB = WHITE,
          anchor: str = "la", stroke: int = 0) -> None:
    draw.text(xy, text, font=font(size, text), fill=fill, anchor=anchor,
              stroke_width=stroke, stroke_fill=INK if stroke else None)

def _light(params: dict) -> tuple[list[RGB], float, float, str]:
    light = params.get("light") or {}
    pal = list(light.get("palette") or DEFAULT_LIGHT)
    pal += DEFAULT_LIGHT[len(pal):]
    colours = [hex_rgb(c) for c in pal[:4]]
    return (colours, _num(light, "contrast", 1.0), _num(light, "brightness", 1.0),
            str(light.get("key") or "front"))
