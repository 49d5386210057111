"""Storyboard panels for the `local` backend: keyframes, character sheets, plates.

Each function draws one PNG with Pillow from a step's parameters, the way a
storyboard artist would block the shot:

- the camera line sets the framing: `scale` (subject height as a fraction of the
  frame) picks how much of a figure shows, from specks on the land (extreme wide)
  to a face filling the frame (extreme close-up); `tilt` moves the horizon (a low
  angle looks up, so the horizon drops; a high angle raises it); `roll` cants it
  (dutch); `overhead` looks straight down at the ground; `motion` adds an arrow;
- the light line paints the world: its four colours (sky, ground, key, shadow), a
  key-light glow from the `key` side, `contrast` and `brightness`;
- the style line tints, saturates and adds grain;
- every character in the cast is a labelled figure in a colour of its own, taken
  from a hash of its id, so it looks the same in every panel and under any light
  (the light grades the world, never the figures' colours);
- a header names scene, shot, take, place and time; the action is written at
  the bottom, wrapped by words or, for CJK, by characters.

Pure and deterministic: the same inputs give byte-identical PNGs (randomness comes
from `random.Random(seed)`, files are written with fixed options and no metadata).
A 1920x804 keyframe takes about 30 ms (see tests/test_panels.py).
"""

from __future__ import annotations

import colorsys
import hashlib
import math
import random
from collections.abc import Callable, Sequence
from pathlib import Path

from PIL import Image, ImageChops, ImageDraw, ImageEnhance

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


# ---------------------------------------------------------------- the world


def _light(params: dict) -> tuple[list[RGB], float, float, str]:
    light = params.get("light") or {}
    pal = list(light.get("palette") or DEFAULT_LIGHT)
    pal += DEFAULT_LIGHT[len(pal):]
    colours = [hex_rgb(c) for c in pal[:4]]
    return (colours, _num(light, "contrast", 1.0), _num(light, "brightness", 1.0),
            str(light.get("key") or "front"))


def _gradient(size: tuple[int, int], direction: str) -> Image.Image:
    """An 'L' ramp, 255 on the `direction` side of the frame, 0 on the other."""
    g = Image.linear_gradient("L")  # 0 at the top, 255 at the bottom
    if direction == "top":
        g = g.transpose(Image.Transpose.FLIP_TOP_BOTTOM)
    elif direction == "left":
        g = g.transpose(Image.Transpose.ROTATE_270)
    elif direction == "right":
        g = g.transpose(Image.Transpose.ROTATE_90)
    return g.resize(size, Image.Resampling.BILINEAR)


def _world(params: dict, w: int, h: int, horizon: float | None, roll: float,
           rng: random.Random) -> Image.Image:
    """Sky and ground in the light's colours, lit from the key side, graded and grained.

    Painted at a third of the size, grain cells included, and scaled up without
    smoothing: 9x less work, and a PNG that deflates fast and small (rows and runs
    repeat), which matters for a film of thousands of panels.
    """
    fw, fh = w, h
    w, h = max(8, -(-w // CELL)), max(8, -(-h // CELL))
    horizon = None if horizon is None else horizon * h / fh
    (sky, ground, key, shadow), contrast, brightness, key_side = _light(params)
    if horizon is None:  # overhead: all ground, textured so the eye reads a surface
        img = Image.new("RGB", (w, h), ground)
        d = ImageDraw.Draw(img)
        dark, lite = mix(ground, shadow, 0.35), mix(ground, key, 0.18)
        for _ in range(140):
            x, y = rng.uniform(0, w), rng.uniform(0, h)
            r = rng.uniform(0.004, 0.02) * w
            d.ellipse((x - r, y - r * 0.6, x + r, y + r * 0.6), fill=dark if rng.random() < 0.6 else lite)
    else:
        top = Image.new("RGB", (w, h), sky)
        low = Image.new("RGB", (w, h), mix(sky, key, 0.45))
        img = Image.composite(top, low, _gradient((w, h), "top"))
        far, near = mix(ground, sky, 0.25), mix(ground, shadow, 0.45)
        ground_img = Image.composite(Image.new("RGB", (w, h), far), Image.new("RGB", (w, h), near),
                                     _gradient((w, h), "top"))
        mask = Image.new("L", (w, h), 0)
        slope = math.tan(math.radians(roll))
        cx = w / 2
        ya = horizon - (-w - cx) * slope  # screen y grows down; positive roll turns counter-clockwise
        yb = horizon - (2 * w - cx) * slope
        ImageDraw.Draw(mask).polygon([(-w, ya), (2 * w, yb), (2 * w, 4 * h + 4 * w), (-w, 4 * h + 4 * w)],
                                     fill=255)
        img.paste(ground_img, (0, 0), mask)
        # distant hills along the horizon, seeded, so the land is not a ruler line
        d = ImageDraw.Draw(img)
        hill = mix(ground, shadow, 0.2)
        for _ in range(5):
            x = rng.uniform(-0.1, 1.1) * w
            r = rng.uniform(0.08, 0.25) * w
            hh = r * rng.uniform(0.05, 0.12)
            y = horizon - (x - cx) * slope
            a = math.radians(roll)  # along the horizon, and up from it
            (dx, dy), (nx, ny) = (math.cos(a), -math.sin(a)), (-math.sin(a), -math.cos(a))
            d.polygon([(x + dx * r * math.cos(t) + nx * hh * math.sin(t),
                        y + dy * r * math.cos(t) + ny * hh * math.sin(t))
                       for t in (math.pi * i / 24 for i in range(25))], fill=hill)
    # key light: a glow of the key colour from its side, shadow on the other
    if key_side in ("left", "right", "top"):
        glow = _gradient((w, h), key_side)
    elif key_side == "back":  # behind the subject: the horizon / centre glows
        glow = Image.radial_gradient("L").resize((w, h), Image.Resampling.BILINEAR)
        glow = ImageChops.invert(glow)
    else:  # front: flat, even
        glow = Image.new("L", (w, h), 110)
    img = Image.composite(Image.new("RGB", (w, h), key), img, glow.point([v * 45 // 100 for v in range(256)]))
    img = Image.composite(Image.new("RGB", (w, h), shadow), img,
                          ImageChops.invert(glow).point([v * 30 // 100 for v in range(256)]))
    img = _grain(_grade(img, params, contrast, brightness), params, rng)
    return img.resize((w * CELL, h * CELL), Image.Resampling.NEAREST).crop((0, 0, fw, fh))


def _grade(img: Image.Image, params: dict, contrast: float, brightness: float) -> Image.Image:
    style = params.get("style") or {}
    tints = [hex_rgb(c) for c in (style.get("palette") or [])]
    hi = tints[0] if tints else None
    lo = tints[-1] if len(tints) > 1 else None
    lut: list[int] = []
    for ch in range(3):
        for v in range(256):
            x = ((v - 128) * contrast + 128) * brightness
            x = max(0.0, min(255.0, x))
            if hi is not None:  # split toning: shadows toward the last tint, highlights the first
                t = x / 255
                target = (lo[ch] if lo else 0) * (1 - t) + hi[ch] * t
                x += (target - x) * 0.18
            lut.append(round(max(0.0, min(255.0, x))))
    img = img.point(lut)
    sat = _num(style, "saturation", 1.0)
    if abs(sat - 1.0) > 1e-3:
        img = ImageEnhance.Color(img).enhance(max(0.0, sat))
    return img


def _grain(img: Image.Image, params: dict, rng: random.Random) -> Image.Image:
    """Film grain: seeded noise, one value per pixel of the (small) world picture."""
    style = params.get("style") or {}
    grain = max(0.0, min(1.0, _num(style, "grain", 0.0)))
    if grain > 0.01:
        amp = 0.16 * grain
        noise = Image.frombytes("L", img.size, rng.randbytes(img.width * img.height))
        noise = noise.point([128 + round((v - 128) * amp) for v in range(256)])
        img = ImageChops.add(img, Image.merge("RGB", (noise, noise, noise)), 1.0, -128)
    return img


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


# ---------------------------------------------------------------- overlays

_MOTION_WORDS = {"push_in": "PUSH IN", "pull_out": "PULL OUT", "pan_left": "PAN LEFT",
                 "pan_right": "PAN RIGHT", "tilt_up": "TILT UP", "tilt_down": "TILT DOWN",
                 "truck_left": "TRUCK LEFT", "truck_right": "TRUCK RIGHT", "crane_up": "CRANE UP",
                 "crane_down": "CRANE DOWN", "zoom_in": "ZOOM IN", "zoom_out": "ZOOM OUT",
                 "handheld": "HANDHELD", "tracking": "TRACKING", "orbit": "ORBIT"}


def _arrow(draw: ImageDraw.ImageDraw, a: Point, b: Point, width: int, colour: RGB = WHITE) -> None:
    ang = math.atan2(b[1] - a[1], b[0] - a[0])
    head = width * 3.2
    base = (b[0] - head * math.cos(ang), b[1] - head * math.sin(ang))
    for col, wd in ((INK, width + 4), (colour, width)):
        draw.line([a, base], fill=col, width=wd)
    left = (base[0] + head * 0.6 * math.sin(ang), base[1] - head * 0.6 * math.cos(ang))
    right = (base[0] - head * 0.6 * math.sin(ang), base[1] + head * 0.6 * math.cos(ang))
    draw.polygon([b, left, right], fill=colour, outline=INK)


def _motion(draw: ImageDraw.ImageDraw, cam: dict, w: int, h: int) -> None:
    motion = str(cam.get("motion") or "static")
    if motion not in _MOTION_WORDS:
        return
    amount = max(0.2, min(3.0, _num(cam, "amount", 1.0)))
    s = h * 0.07 * (0.7 + 0.3 * amount)
    lw = max(2, round(h * 0.006))
    cx, cy = w * 0.9, h * 0.2
    dirs = {"pan_left": (-1, 0), "truck_left": (-1, 0), "pan_right": (1, 0), "truck_right": (1, 0),
            "tracking": (1, 0), "tilt_up": (0, -1), "crane_up": (0, -1), "tilt_down": (0, 1),
            "crane_down": (0, 1)}
    if motion in dirs:
        dx, dy = dirs[motion]
        _arrow(draw, (cx - dx * s, cy - dy * s), (cx + dx * s, cy + dy * s), lw)
    elif motion in ("push_in", "zoom_in", "pull_out", "zoom_out"):
        inward = motion in ("push_in", "zoom_in")
        for sx, sy in ((-1, -1), (1, -1), (1, 1), (-1, 1)):
            outer, inner = (cx + sx * s, cy + sy * s * 0.6), (cx + sx * s * 0.35, cy + sy * s * 0.2)
            _arrow(draw, outer if inward else inner, inner if inward else outer, lw)
    elif motion == "orbit":
        box = (cx - s, cy - s * 0.45, cx + s, cy + s * 0.45)
        draw.arc(box, 200, 520, fill=WHITE, width=lw)
        _arrow(draw, (cx - s * 0.6, cy + s * 0.4), (cx - s, cy + s * 0.05), lw)
    elif motion == "handheld":
        pts = [(cx - s + i * s / 4, cy + (s * 0.2 if i % 2 else -s * 0.2)) for i in range(9)]
        draw.line(pts, fill=WHITE, width=lw, joint="curve")
    _text(draw, (cx, cy + s + h * 0.01), _MOTION_WORDS[motion], max(12, round(h * 0.024)),
          anchor="ma", stroke=2)


def _header(img: Image.Image, left: str, right: str) -> int:
    w, h = img.size
    size = max(12, round(h * 0.03))
    band = round(size * 1.7)
    _shade(img, (0, 0, w, band), 0.35)
    d = ImageDraw.Draw(img)
    pad = size * 0.6
    _text(d, (pad, band / 2), left, size, anchor="lm")
    if right:
        _text(d, (w - pad, band / 2), right, size, anchor="rm")
    return band


def _footer(img: Image.Image, text: str, max_lines: int = 3) -> None:
    if not text:
        return
    w, h = img.size
    size = max(12, round(h * 0.034))
    f = font(size, text)
    lines = wrap(text, w * 0.9, f.getlength)
    if len(lines) > max_lines:
        lines = lines[:max_lines]
        lines[-1] = lines[-1].rstrip() + " …"
    line_h = round(size * 1.35)
    top = h - line_h * len(lines) - round(size * 0.8)
    _shade(img, (0, top - round(size * 0.4), w, h), 0.4)
    d = ImageDraw.Draw(img)
    for i, line in enumerate(lines):
        d.text((w / 2, top + i * line_h), line, font=f, fill=WHITE, anchor="ma")


def _panel_info(params: dict, prompt: str) -> dict:
    info = dict(params.get("panel") or {})
    if not info.get("action"):
        info["action"] = (prompt or "").strip().splitlines()[0] if (prompt or "").strip() else ""
    return info


def _size(params: dict, w: int = 1920, h: int = 804) -> tuple[int, int]:
    return max(16, int(_num(params, "width", w))), max(16, int(_num(params, "height", h)))


def _seed(params: dict) -> int:
    return int(_num(params, "seed", 0)) * 1009 + int(_num(params, "take", 1))


# ---------------------------------------------------------------- public API


def render_keyframe(params: dict, prompt: str, refs: list[Path], out: Path) -> None:
    """One storyboard panel for a keyframe step, at the film's size."""
    w, h = _size(params)
    cam = params.get("camera") or {}
    rng = random.Random(_seed(params))
    roll = _num(cam, "roll", 0.0)
    tilt = max(-89.0, min(89.0, _num(cam, "tilt", 0.0)))
    overhead = _num(cam, "overhead", 0.0) >= 0.5 or tilt <= -80
    horizon = None if overhead else h * (0.5 + 0.7 * math.sin(math.radians(tilt)))
    img = _world(params, w, h, horizon, roll, rng)
    _draw_cast(img, params, horizon, roll, rng)
    info = _panel_info(params, prompt)
    scene, shot = info.get("scene"), info.get("shot")
    take = params.get("take")
    left = "   ".join(x for x in (
        f"SC {scene}" if scene else "", f"SHOT {shot}" if shot else "",
        f"TAKE {take}" if take is not None else "") if x)
    right = " — ".join(str(x) for x in (info.get("location"), info.get("time")) if x)
    _header(img, left, right)
    _motion(ImageDraw.Draw(img), cam, w, h)
    _footer(img, str(info.get("action") or ""))
    _save(img, out)


def _subject(params: dict, prompt: str) -> str:
    for key in ("character", "id", "name"):
        if params.get(key):
            return str(params[key])
    cast = params.get("cast") or []
    if cast:
        return str(cast[0])
    words = (prompt or "").split()
    return words[0].strip(",.:;") if words else "?"


def render_sheet(params: dict, prompt: str, refs: list[Path], out: Path) -> None:
    """A character sheet card: the figure front and side in its colour, with its look."""
    w, h = _size(params, 1024, 1024)
    cid = _subject(params, prompt)
    colour = character_colour(cid)
    img = Image.new("RGB", (w, h), (214, 216, 218))
    img = Image.composite(img, Image.new("RGB", (w, h), (188, 190, 194)), _gradient((w, h), "top"))
    draw = ImageDraw.Draw(img)
    pen = _Pen(draw, w, h, 0.0)
    band = _header(img, f"CHARACTER {cid}", str(params.get("outfit") or ""))
    body = (h - band) * 0.62
    top = band + h * 0.06
    _figure(pen, w * 0.3, top, body, colour, None, eyes=True)
    # the side view: a narrower body, the head turned
    u = body / HEADS
    side = w * 0.7
    pen.poly([(side - 0.45 * u, top + 1.3 * u), (side + 0.4 * u, top + 1.3 * u),
              (side + 0.35 * u, top + 4.0 * u), (side - 0.4 * u, top + 4.0 * u)],
             colour, mix(colour, INK, 0.55), 2)
    pen.poly([(side - 0.25 * u, top + 4.0 * u), (side + 0.25 * u, top + 4.0 * u),
              (side + 0.2 * u, top + 7.5 * u), (side - 0.2 * u, top + 7.5 * u)],
             colour, mix(colour, INK, 0.55), 2)
    pen.poly(_ellipse(side + 0.05 * u, top + 0.55 * u, 0.42 * u, 0.52 * u, 64), mix(colour, WHITE, 0.35),
             mix(colour, INK, 0.55), 2)
    pen.poly([(side + 0.45 * u, top + 0.5 * u), (side + 0.6 * u, top + 0.68 * u),
              (side + 0.42 * u, top + 0.7 * u)], mix(colour, WHITE, 0.35))
    lsize = max(14, round(h * 0.028))
    _text(draw, (w * 0.3, top + body + lsize * 0.6), "FRONT", lsize, INK, "ma")
    _text(draw, (side, top + body + lsize * 0.6), "SIDE", lsize, INK, "ma")
    draw.rectangle((w * 0.04, top + body + lsize * 2.2, w * 0.04 + lsize * 2, top + body + lsize * 3.6),
                   fill=colour, outline=INK)
    _text(draw, (w * 0.04 + lsize * 2.6, top + body + lsize * 2.3), f"{cid}  #%02x%02x%02x" % colour,
          lsize, INK)
    look = " ".join((prompt or "").split("\n")[1:2]) or (prompt or "")
    f = font(lsize, look)
    y = top + body + lsize * 4.2
    for line in wrap(look.strip(), w * 0.92, f.getlength)[:6]:
        draw.text((w * 0.04, y), line, font=f, fill=INK)
        y += lsize * 1.35
    _save(img, out)


def render_plate(params: dict, prompt: str, refs: list[Path], out: Path) -> None:
    """The empty location in the light of its time of day, with its description."""
    w, h = _size(params)
    rng = random.Random(_seed(params))
    img = _world(params, w, h, h * 0.55, 0.0, rng)
    for ref in refs or []:  # the user's own plate, faded under the light, when given
        try:
            with Image.open(ref) as src:
                photo = src.convert("RGB").resize((w, h), Image.Resampling.BILINEAR)
            img = Image.blend(img, photo, 0.55)
            break
        except (OSError, ValueError):
            continue
    info = _panel_info(params, prompt)
    where = " — ".join(str(x) for x in (info.get("location"), info.get("time")) if x)
    _header(img, "PLATE", where)
    _footer(img, (prompt or "").strip().splitlines()[0] if (prompt or "").strip() else "")
    _save(img, out)


THUMB_W = 320
MAX_SHEET_H = 30000  # px; beyond it, further pages: storyboard-2.png, storyboard-3.png, ...


def render_storyboard(keyframes: list[Path], labels: list[str], out: Path, columns: int = 4) -> None:
    """A contact sheet: every keyframe as a 320 px thumbnail with its label, in reading order.

    A long film gives a tall sheet; when it would pass 30,000 px (about 300 panels
    of a 2.39:1 film in four columns) the rest goes to `<stem>-2.png`, `<stem>-3.png`...
    beside `out`, so every page stays an image a viewer opens.
    """
    out = Path(out)
    columns = max(1, columns)
    aspect = 804 / 1920
    if keyframes:
        with Image.open(keyframes[0]) as first:
            aspect = first.height / first.width
    th = max(1, round(THUMB_W * aspect))
    lsize = 15
    gap, label_h = 8, round(lsize * 1.8)
    cell_w, cell_h = THUMB_W + gap, th + label_h + gap
    rows_per_page = max(1, (MAX_SHEET_H - gap) // cell_h)
    per_page = rows_per_page * columns
    pages = [list(range(i, min(i + per_page, len(keyframes))))
             for i in range(0, max(1, len(keyframes)), per_page)] or [[]]
    for p, idx in enumerate(pages):
        rows = max(1, math.ceil(len(idx) / columns))
        sheet = Image.new("RGB", (gap + columns * cell_w, gap + rows * cell_h), (24, 24, 28))
        draw = ImageDraw.Draw(sheet)
        for k, i in enumerate(idx):
            x, y = gap + (k % columns) * cell_w, gap + (k // columns) * cell_h
            with Image.open(keyframes[i]) as im:
                im.draft("RGB", (THUMB_W, th))
                thumb = im.convert("RGB").resize((THUMB_W, th), Image.Resampling.BILINEAR)
            sheet.paste(thumb, (x, y))
            label = f"{i + 1}  {labels[i] if i < len(labels) else keyframes[i].stem}"
            f = font(lsize, label)
            while len(label) > 4 and f.getlength(label) > THUMB_W:
                label = label[:-2] + "…"
            draw.text((x, y + th + 4), label, font=f, fill=(230, 230, 230))
        _save(sheet, out if p == 0 else out.with_name(f"{out.stem}-{p + 1}{out.suffix}"))
