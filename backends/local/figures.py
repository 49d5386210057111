"""The cast of a storyboard panel: each character a labelled figure in its own colour,
sized by the shot's scale (specks on the land in a wide shot, a face filling the
frame in an extreme close-up), standing on the horizon or seen from overhead."""

from __future__ import annotations

import math
import random
from collections.abc import Sequence

from PIL import Image, ImageDraw

from .draw import (
    HEADS,
    INK,
    RGB,
    WHITE,
    Point,
    _body_frames,
    _ellipse,
    _light,
    _num,
    character_colour,
    mix,
)
from .fonts import font

# ---------------------------------------------------------------- figures


class _Pen:
    """Draws polygons in scene coordinates, turned by the camera's roll about the centre."""

    def __init__(self, draw: ImageDraw.ImageDraw, w: int, h: int, roll: float) -> None:
        self.draw, self.cx, self.cy = draw, w / 2, h / 2
        a = math.radians(-roll)
        self.c, self.s = math.cos(a), math.sin(a)

    def xy(self, p: Point) -> Point:
        x, y = p[0] - self.cx, p[1] - self.cy
        return (self.cx + x * self.c - y * self.s, self.cy + x * self.s + y * self.c)

    def poly(self, pts: Sequence[Point], fill: RGB, outline: RGB | None = None, width: int = 1) -> None:
        q = [self.xy(p) for p in pts]
        self.draw.polygon(q, fill=fill)
        if outline is not None and width > 0:
            self.draw.line([*q, q[0]], fill=outline, width=width, joint="curve")


def _figure(pen: _Pen, cx: float, top: float, body: float, colour: RGB, rim: RGB | None,
            eyes: bool) -> None:
    """A standing storyboard figure `body` px tall whose head's top is at `top`."""
    u = body / HEADS  # one head
    head_c = mix(colour, WHITE, 0.35)
    edge = rim or mix(colour, INK, 0.55)
    lw = max(1, min(round(u * 0.06), round(pen.cy * 0.012)))
    sh_y = top + 1.45 * u  # shoulders
    hip_y = top + 4.0 * u
    sw, hw = 1.05 * u, 0.72 * u  # half widths at shoulders and hips
    # legs, arms, torso, neck, head: back to front
    for side in (-1, 1):
        pen.poly([(cx + side * 0.12 * u, hip_y - 0.2 * u), (cx + side * 0.7 * u, hip_y - 0.1 * u),
                  (cx + side * 0.55 * u, top + 7.5 * u), (cx + side * 0.15 * u, top + 7.5 * u)],
                 colour, edge, lw)
        pen.poly([(cx + side * sw, sh_y + 0.1 * u), (cx + side * (sw + 0.35 * u), sh_y + 0.25 * u),
                  (cx + side * (sw + 0.25 * u), top + 4.1 * u), (cx + side * (sw - 0.1 * u), top + 4.1 * u)],
                 colour, edge, lw)
    pen.poly([(cx - sw, sh_y), (cx - sw * 0.6, sh_y - 0.25 * u), (cx + sw * 0.6, sh_y - 0.25 * u),
              (cx + sw, sh_y), (cx + hw, hip_y), (cx - hw, hip_y)], colour, edge, lw)
    pen.poly([(cx - 0.2 * u, top + 0.8 * u), (cx + 0.2 * u, top + 0.8 * u),
              (cx + 0.24 * u, sh_y - 0.1 * u), (cx - 0.24 * u, sh_y - 0.1 * u)], head_c, edge, lw)
    pen.poly(_ellipse(cx, top + 0.5 * u, 0.4 * u, 0.52 * u, 64), head_c, edge, lw)
    if eyes:  # close enough to read a face: eyes, brows, nose, mouth
        ink = mix(colour, INK, 0.75)
        for side in (-1, 1):
            ex = cx + side * 0.16 * u
            pen.poly(_ellipse(ex, top + 0.5 * u, 0.07 * u, 0.035 * u, 24), WHITE, ink, max(1, lw // 2))
            pen.poly(_ellipse(ex, top + 0.5 * u, 0.028 * u, 0.028 * u, 16), ink)
            pen.poly([(ex - 0.09 * u, top + 0.41 * u), (ex + 0.09 * u, top + 0.41 * u),
                      (ex + 0.09 * u, top + 0.425 * u), (ex - 0.09 * u, top + 0.425 * u)], ink)
        pen.poly([(cx, top + 0.55 * u), (cx + 0.05 * u, top + 0.68 * u), (cx - 0.03 * u, top + 0.68 * u)],
                 mix(head_c, INK, 0.25))
        pen.poly(_ellipse(cx, top + 0.8 * u, 0.12 * u, 0.02 * u, 24), mix(head_c, INK, 0.45))


def _figure_overhead(pen: _Pen, cx: float, cy: float, size: float, colour: RGB, rim: RGB | None) -> None:
    """A figure seen from straight above: shoulders and the top of the head."""
    edge = rim or mix(colour, INK, 0.55)
    lw = max(1, round(size * 0.04))
    pen.poly(_ellipse(cx, cy, size * 0.5, size * 0.22, 48), colour, edge, lw)
    pen.poly(_ellipse(cx, cy, size * 0.18, size * 0.18, 48), mix(colour, WHITE, 0.35), edge, lw)


def _label(draw: ImageDraw.ImageDraw, x: float, y: float, text: str, colour: RGB, size: int,
           w: int, h: int) -> None:
    f = font(size, text)
    tw = f.getlength(text)
    pad = size * 0.3
    x = max(pad, min(w - tw - pad * 2, x - tw / 2))
    y = max(pad, min(h - size * 1.6, y))
    draw.rectangle((x - pad, y - pad * 0.5, x + tw + pad, y + size * 1.25), fill=colour, outline=INK)
    draw.text((x, y), text, font=f, fill=WHITE if sum(colour) < 450 else INK, anchor="la")


def _draw_cast(img: Image.Image, params: dict, horizon: float | None, roll: float,
               rng: random.Random) -> None:
    w, h = img.size
    cam = params.get("camera") or {}
    cast = [str(c) for c in (params.get("cast") or [])]
    if not cast:
        return
    (_sky, _ground, key, shadow), _c, _b, key_side = _light(params)
    rim = key if key_side == "back" else None
    draw = ImageDraw.Draw(img)
    pen = _Pen(draw, w, h, roll)
    scale = max(0.01, _num(cam, "scale", 0.45))
    n = len(cast)
    label_size = max(14, round(h * 0.03))
    if horizon is None:
        size = max(6.0, h * min(1.6, scale * 0.5))
        for i, cid in enumerate(cast):
            x = w * (i + 1) / (n + 1)
            y = h * (0.5 + rng.uniform(-0.06, 0.06))
            _figure_overhead(pen, x, y, size, character_colour(cid), rim)
            lx, ly = pen.xy((x, y + size * 0.3))
            _label(draw, lx, ly, cid, character_colour(cid), label_size, w, h)
        return
    body = h * _body_frames(scale)
    u = body / HEADS
    if body <= 0.9 * h:  # the whole figure shows: feet on the ground, below the horizon
        feet = min(h * 0.95, max(horizon, 0) + (h - max(horizon, 0)) * min(0.8, 0.15 + body / h))
        feet = max(feet, body + h * 0.04)
        top = feet - body
    else:  # framed closer: the eyes sit on the upper third, the rest is cropped
        eye_line = h * (0.36 if scale < 2.0 else 0.46)
        top = eye_line - 0.5 * u
    spread = 1.0 if n == 1 else min(1.0, 0.35 + 0.65 * (1 - min(1.0, u * 0.9 / (w / n))))
    ground_shadow = mix(shadow, INK, 0.3)
    for i, cid in enumerate(cast):
        x = w / 2 + (w * (i + 1) / (n + 1) - w / 2) * spread
        if body <= 0.9 * h:  # a cast shadow away from the key light
            dx = {"left": 1.5, "right": -1.5}.get(key_side, 0.0) * u
            pen.poly(_ellipse(x + dx, top + body, 0.9 * u + abs(dx) * 0.6, 0.18 * u, 32), ground_shadow)
        colour = character_colour(cid)
        _figure(pen, x, top, body, colour, rim, eyes=u > h * 0.12)
        if body <= 0.9 * h:
            lx, ly = pen.xy((x, top - label_size * 1.8))
        else:
            lx, ly = pen.xy((x, min(h * 0.8, top + 2.6 * u)))
        _label(draw, lx, ly, cid, colour, label_size, w, h)
