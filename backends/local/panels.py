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

import math
import random
from pathlib import Path

from PIL import Image, ImageChops, ImageDraw, ImageEnhance

from .draw import (
    CELL,
    HEADS,
    INK,
    RGB,
    WHITE,
    Point,
    _ellipse,
    _light,
    _num,
    _save,
    _shade,
    _text,
    character_colour,
    hex_rgb,
    mix,
    wrap,
)
from .figures import _draw_cast, _figure, _Pen
from .fonts import font

# ---------------------------------------------------------------- the world




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


def render_storyboard(keyframes: list[Path], labels: list[str], out: Path,
                      columns: int = 4) -> list[Path]:
    """A contact sheet: every keyframe as a 320 px thumbnail with its label, in reading order.

    A long film gives a tall sheet; when it would pass 30,000 px (about 300 panels
    of a 2.39:1 film in four columns) the rest goes to `<stem>-2.png`, `<stem>-3.png`...
    beside `out`, so every page stays an image a viewer opens.  Returns the pages.
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
    written: list[Path] = []
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
        page = out if p == 0 else out.with_name(f"{out.stem}-{p + 1}{out.suffix}")
        _save(sheet, page)
        written.append(page)
    return written
