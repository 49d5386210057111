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
- the location has one landmark on its horizon (a peak, a lone tree, a mesa: its
  kind and size hashed from the location's id), so its shots and its plate agree;
  a location with a picture of its own (`panel.backdrop`) is that picture instead,
  fitted to the frame and graded by the light (`_backdrop`), in its plate and in
  every panel set there;
- a character declared an animal stands on four legs, a creature is no person
  (`kind`: see figures.py); the user's own pictures of the cast (`insets`) are
  small framed pictures in the top-left corner, labelled with the character;
- a header names scene, shot, candidate, place and time; the action is written at
  the bottom, wrapped by words or, for CJK, by characters.

A shot's keyframe candidates (offline, every backend's candidates are drawn
here) are different sketches of the same shot, so that a user rehearsing a pick
sees alternatives at a glance. `figures.sketch` makes each from the candidate's
identity: its index within its backend (`take`) stands the cast on the left
third, the right third or in the middle (so a backend's first three candidates
take all three) and picks the family of gestures; a hash of its name
(`candidate`, e.g. "openai-2", else the take) and `seed` picks the rest: the
cast's spacing, each figure's pose (arms, lean, head turned and cocked), a few
percent of re-framing (up or down, in or out), an extra degree or three of cant
on a camera that is already canted, where the landmark stands (across the frame
from the cast) and how the hills lie. The shot size, the angle, the light and
the cast's colours and labels are the shot's in every candidate. The header
names the candidate (`CAND openai-2`, or `TAKE 2` when the step has no name).

Pure and deterministic: the same inputs give byte-identical PNGs (randomness comes
from `random.Random` seeded with a hash of the candidate, files are written with
fixed options and no metadata). A 1920x804 keyframe takes about 30 ms (see
bench/bench_media.py).
"""

from __future__ import annotations

import hashlib
import math
import random
from dataclasses import dataclass
from pathlib import Path

from PIL import Image, ImageChops, ImageDraw, ImageEnhance, ImageOps

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
from .figures import _animal, _creature, _draw_cast, _figure, _label, _Pen, sketch
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


@dataclass(frozen=True)
class Landmark:
    """The one feature a location shows on its horizon. Its `kind` ("peak", "tree" or
    "mesa") and `height` (a fraction of the frame's) are the location's, hashed from
    its id, so every shot there and its plate show the same one; where it stands
    (`x`, a fraction of the width) is each candidate's, as the camera looks another
    way along the same horizon."""

    kind: str
    height: float
    x: float


_LANDMARK_HEIGHT = {"peak": 0.2, "tree": 0.15, "mesa": 0.1}
# Outlines in units of the landmark's height: along the horizon, and up from it (the
# feet below it are covered by the land).
_LANDMARK_SHAPES: dict[str, list[list[Point]]] = {
    "peak": [[(-1.7, -0.3), (-0.9, 0.45), (-0.35, 0.85), (0.0, 1.0), (0.25, 0.9), (0.55, 0.7),
              (1.0, 0.42), (2.0, -0.3)],
             [(-0.35, 0.85), (0.0, 1.0), (0.25, 0.9), (0.36, 0.78), (0.14, 0.81), (-0.04, 0.72),
              (-0.2, 0.79)]],  # the mountain, its snow
    "tree": [[(-0.05, -0.3), (0.05, -0.3), (0.04, 0.5), (-0.04, 0.5)],
             [(0.4 * math.cos(t), 0.68 + 0.3 * math.sin(t))
              for t in (2 * math.pi * i / 24 for i in range(24))]],  # the trunk, the crown
    "mesa": [[(-1.3, -0.3), (-0.95, 0.55), (-0.8, 0.62), (0.55, 0.64), (0.7, 0.55), (1.2, -0.3)]],
}


def _landmark(params: dict, x: float | None = None) -> Landmark:
    """The location's landmark (see `Landmark`), at `x`, or where its plate shows it."""
    where = str((params.get("panel") or {}).get("location") or "")
    d = hashlib.sha256(f"landmark {where}".encode()).digest()
    kind = sorted(_LANDMARK_SHAPES)[d[0] % len(_LANDMARK_SHAPES)]
    height = _LANDMARK_HEIGHT[kind] * (0.85 + d[1] / 255 * 0.4)
    return Landmark(kind, height, 0.25 + d[2] / 255 * 0.5 if x is None else x)


def _on_horizon(horizon: float, roll: float, cx: float, x: float,
                pts: list[Point], size: float) -> list[Point]:
    """`pts` (along the horizon and up from it, in units of `size` px) placed at `x` on
    a horizon at height `horizon` in the middle `cx`, canted by `roll` degrees."""
    a = math.radians(roll)
    y = horizon - (x - cx) * math.tan(a)  # y grows down; a positive roll turns counter-clockwise
    (dx, dy), (nx, ny) = (math.cos(a), -math.sin(a)), (-math.sin(a), -math.cos(a))
    return [(x + (dx * p + nx * q) * size, y + (dy * p + ny * q) * size) for p, q in pts]


def _draw_landmark(d: ImageDraw.ImageDraw, landmark: Landmark, horizon: float, roll: float,
                   w: int, h: int, light: tuple[RGB, RGB, RGB, RGB]) -> None:
    """The landmark on the horizon: a far peak hazy with the sky, its snow catching the
    key light; a tree or a mesa darker, in the shadow's colour."""
    sky, ground, key, shadow = light
    if landmark.kind == "peak":
        colours = [mix(mix(ground, shadow, 0.3), sky, 0.4), mix(key, sky, 0.3)]
    else:
        colours = [mix(ground, shadow, 0.55 if landmark.kind == "tree" else 0.4)] * 2
    for pts, colour in zip(_LANDMARK_SHAPES[landmark.kind], colours):
        d.polygon(_on_horizon(horizon, roll, w / 2, landmark.x * w, pts, landmark.height * h),
                  fill=colour)


def _world(params: dict, w: int, h: int, horizon: float | None, roll: float,
           rng: random.Random, landmark: Landmark | None = None) -> Image.Image:
    """Sky and ground in the light's colours, lit from the key side, graded and grained,
    with hills along the horizon (from `rng`) and the location's `landmark`.

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
            d.ellipse((x - r, y - r * 0.6, x + r, y + r * 0.6),
                      fill=dark if rng.random() < 0.6 else lite)
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
        ya = horizon - (-w - cx) * slope  # y grows down; a positive roll turns counter-clockwise
        yb = horizon - (2 * w - cx) * slope
        deep = 4 * h + 4 * w
        ImageDraw.Draw(mask).polygon([(-w, ya), (2 * w, yb), (2 * w, deep), (-w, deep)], fill=255)
        # distant hills along the horizon, seeded, so the land is not a ruler line, and the
        # landmark (a peak behind the hills, a tree or a mesa in front of them), painted on
        # the sky with their feet below the horizon; then the land covers the feet, so the
        # horizon is one exact line under any cant, with no sky showing beneath them
        d = ImageDraw.Draw(img)
        hill = mix(ground, shadow, 0.2)
        half = [(math.cos(t), math.sin(t)) for t in (math.pi * i / 24 for i in range(25))]
        half += [(-1.0, -1.0), (1.0, -1.0)]
        behind = landmark is not None and landmark.kind == "peak"
        if landmark is not None and behind:
            _draw_landmark(d, landmark, horizon, roll, w, h, (sky, ground, key, shadow))
        for _ in range(5):
            x, r = rng.uniform(-0.1, 1.1) * w, rng.uniform(0.08, 0.25) * w
            flat = rng.uniform(0.05, 0.12)
            d.polygon(_on_horizon(horizon, roll, cx, x, [(p, q * flat) for p, q in half], r),
                      fill=hill)
        if landmark is not None and not behind:
            _draw_landmark(d, landmark, horizon, roll, w, h, (sky, ground, key, shadow))
        img.paste(ground_img, (0, 0), mask)
    img = _lit(img, key, shadow, key_side, 45, 30)
    img = _grain(_grade(img, params, contrast, brightness), params, rng)
    return img.resize((w * CELL, h * CELL), Image.Resampling.NEAREST).crop((0, 0, fw, fh))


def _lit(img: Image.Image, key: RGB, shadow: RGB, key_side: str, glow_pc: int,
         shade_pc: int) -> Image.Image:
    """The key light: a glow of the key colour from its side (`glow_pc` percent at its
    strongest), the shadow's colour on the other (`shade_pc`)."""
    w, h = img.size
    if key_side in ("left", "right", "top"):
        glow = _gradient((w, h), key_side)
    elif key_side == "back":  # behind the subject: the horizon / centre glows
        glow = Image.radial_gradient("L").resize((w, h), Image.Resampling.BILINEAR)
        glow = ImageChops.invert(glow)
    else:  # front: flat, even
        glow = Image.new("L", (w, h), 110)
    img = Image.composite(Image.new("RGB", (w, h), key), img,
                          glow.point([v * glow_pc // 100 for v in range(256)]))
    return Image.composite(Image.new("RGB", (w, h), shadow), img,
                           ImageChops.invert(glow).point([v * shade_pc // 100 for v in range(256)]))


def _backdrop(params: dict, w: int, h: int, picture: Path, roll: float,
              rng: random.Random) -> Image.Image | None:
    """The location's own picture as the panel's background, in place of a drawn sky and
    land: scaled to cover the frame (and turned with a canted camera, still covering it),
    then lit and graded by the shot's light and style like the drawn world (the key
    light's glow only when the light names its colours).  None if it cannot be read.

    Painted in the drawn world's 3x3 px cells, grain included: a film of thousands of
    panels deflates fast and small, and the picture looks of a piece with the drawing."""
    try:
        with Image.open(picture) as src:
            src.draft("RGB", (w, h))
            photo = src.convert("RGB")
    except (OSError, ValueError):
        return None
    fw, fh = w, h
    w, h = max(8, -(-w // CELL)), max(8, -(-h // CELL))
    a = math.radians(abs(roll))
    need_w, need_h = w * math.cos(a) + h * math.sin(a), w * math.sin(a) + h * math.cos(a)
    k = max(need_w / photo.width, need_h / photo.height)
    big = photo.resize((max(w, math.ceil(photo.width * k)), max(h, math.ceil(photo.height * k))),
                       Image.Resampling.BILINEAR)
    if roll:
        big = big.rotate(roll, Image.Resampling.BILINEAR)
    left, top = (big.width - w) // 2, (big.height - h) // 2
    img = big.crop((left, top, left + w, top + h))
    (_sky, _ground, key, shadow), contrast, brightness, key_side = _light(params)
    if (params.get("light") or {}).get("palette"):
        img = _lit(img, key, shadow, key_side, 25, 20)
    img = _grain(_grade(img, params, contrast, brightness), params, rng)
    return img.resize((w * CELL, h * CELL), Image.Resampling.NEAREST).crop((0, 0, fw, fh))


def _insets(img: Image.Image, params: dict, sheets: dict[tuple[str | None, str | None], Path],
            top: int) -> None:
    """The user's own images of the cast (`insets`: character → outfit or None), small in
    the top left corner under the header, each framed in the character's colour and
    labelled with its id: what a service would be shown of them."""
    w, h = img.size
    th, pad = round(h * 0.2), max(3, round(h * 0.012))
    size = max(12, round(h * 0.026))
    draw = ImageDraw.Draw(img)
    x = pad * 2
    for cid, outfit in (params.get("insets") or {}).items():
        path = sheets.get((str(cid), outfit))
        if path is None:
            continue
        try:
            with Image.open(path) as src:
                photo = src.convert("RGB")
        except (OSError, ValueError):
            continue
        tw = max(8, min(round(h * 0.36), round(photo.width * th / max(1, photo.height))))
        if x + tw + pad * 2 > w:
            break
        colour = character_colour(str(cid))
        y = top + pad * 2
        draw.rectangle((x - pad, y - pad, x + tw + pad - 1, y + th + pad - 1), fill=colour)
        img.paste(ImageOps.fit(photo, (tw, th), Image.Resampling.BILINEAR), (x, y))
        _label(draw, x + tw / 2, y + th + pad * 2, str(cid), colour, size, w, h)
        x += tw + pad * 4


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
    """The noise of a still that has no candidates (a plate)."""
    return int(_num(params, "seed", 0)) * 1009 + int(_num(params, "take", 1))


def _caption(params: dict, info: dict) -> str:
    """The header's left side: scene, shot and which candidate this is, by its name
    (`CAND openai-2`) when the step has one, else by its take (`TAKE 2`)."""
    scene, shot = info.get("scene"), info.get("shot")
    cand, take = params.get("candidate"), params.get("take")
    which = f"CAND {cand}" if cand not in (None, "") else f"TAKE {take}" if take is not None else ""
    return "   ".join(x for x in (f"SC {scene}" if scene else "", f"SHOT {shot}" if shot else "",
                                  which) if x)


# ---------------------------------------------------------------- public API


def render_keyframe(params: dict, prompt: str, refs: list[Path], out: Path,
                    sheets: dict[tuple[str | None, str | None], Path] | None = None) -> None:
    """One storyboard panel for a keyframe step, at the film's size, as its candidate
    sketches the shot (`figures.sketch`).

    `refs` is the location's plate: the background when the location has pictures of
    its own (`panel.backdrop`); `sheets` the cast's sheets by (character, outfit), of
    which `insets` names those to show."""
    w, h = _size(params)
    cam = params.get("camera") or {}
    sk = sketch(params)
    rng = random.Random(sk.seed)
    roll = _num(cam, "roll", 0.0)
    if roll:  # a canted camera: this candidate cants it up to 3 degrees more or less
        roll += sk.dutch * min(3.0, 0.25 * abs(roll))
    tilt = max(-89.0, min(89.0, _num(cam, "tilt", 0.0)))
    overhead = _num(cam, "overhead", 0.0) >= 0.5 or tilt <= -80
    horizon = None if overhead else h * (0.5 + 0.7 * math.sin(math.radians(tilt)) + sk.lift)
    backdrop = None
    if (params.get("panel") or {}).get("backdrop") and refs:
        backdrop = _backdrop(params, w, h, refs[0], roll, rng)
    img = backdrop or _world(params, w, h, horizon, roll, rng, _landmark(params, sk.landmark))
    _draw_cast(img, params, horizon, roll, sk)
    info = _panel_info(params, prompt)
    right = " — ".join(str(x) for x in (info.get("location"), info.get("time")) if x)
    band = _header(img, _caption(params, info), right)
    _insets(img, params, sheets or {}, band)
    _motion(ImageDraw.Draw(img), cam, w, h)
    _footer(img, str(info.get("action") or ""))
    _save(img, out)


def _subject(params: dict, prompt: str) -> str:
    """Whose sheet this is: the character the step names (as the graph gives it, in
    `panel`), else the first word of the prompt."""
    panel = params.get("panel") or {}
    for d, key in ((panel, "character"), (params, "character"), (params, "id"), (params, "name")):
        if d.get(key):
            return str(d[key])
    cast = params.get("cast") or []
    if cast:
        return str(cast[0])
    words = (prompt or "").split()
    return words[0].strip(",.:;") if words else "?"


def render_sheet(params: dict, prompt: str, refs: list[Path], out: Path) -> None:
    """A character sheet card: the figure front and side in its colour (an animal from
    the side, a creature from the front: `panel.kind`), with its look."""
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
    lsize = max(14, round(h * 0.028))
    kind = str((params.get("panel") or {}).get("kind") or "person")
    if kind == "animal":
        size = min(body * 0.75, w * 0.42)
        _animal(pen, w * 0.45, top + body, size, colour, None, True)
        _text(draw, (w / 2, top + body + lsize * 0.6), "ANIMAL", lsize, INK, "ma")
    elif kind == "creature":
        _creature(pen, w / 2, top, body, colour, None, True)
        _text(draw, (w / 2, top + body + lsize * 0.6), "CREATURE", lsize, INK, "ma")
    else:
        _figure(pen, w * 0.3, top, body, colour, None, eyes=True)
        _side_view(pen, w * 0.7, top, body / HEADS, colour)
        _text(draw, (w * 0.3, top + body + lsize * 0.6), "FRONT", lsize, INK, "ma")
        _text(draw, (w * 0.7, top + body + lsize * 0.6), "SIDE", lsize, INK, "ma")
    swatch_y = top + body + lsize * 2.2
    draw.rectangle((w * 0.04, swatch_y, w * 0.04 + lsize * 2, swatch_y + lsize * 1.4),
                   fill=colour, outline=INK)
    _text(draw, (w * 0.04 + lsize * 2.6, swatch_y + lsize * 0.1),
          f"{cid}  #%02x%02x%02x" % colour, lsize, INK)
    look = " ".join((prompt or "").split("\n")[1:2]) or (prompt or "")
    f = font(lsize, look)
    y = top + body + lsize * 4.2
    for line in wrap(look.strip(), w * 0.92, f.getlength)[:6]:
        draw.text((w * 0.04, y), line, font=f, fill=INK)
        y += lsize * 1.35
    _save(img, out)


def _side_view(pen: _Pen, side: float, top: float, u: float, colour: RGB) -> None:
    """A person from the side, `u` px a head: a narrower body, the head turned."""
    pen.poly([(side - 0.45 * u, top + 1.3 * u), (side + 0.4 * u, top + 1.3 * u),
              (side + 0.35 * u, top + 4.0 * u), (side - 0.4 * u, top + 4.0 * u)],
             colour, mix(colour, INK, 0.55), 2)
    pen.poly([(side - 0.25 * u, top + 4.0 * u), (side + 0.25 * u, top + 4.0 * u),
              (side + 0.2 * u, top + 7.5 * u), (side - 0.2 * u, top + 7.5 * u)],
             colour, mix(colour, INK, 0.55), 2)
    pen.poly(_ellipse(side + 0.05 * u, top + 0.55 * u, 0.42 * u, 0.52 * u, 64),
             mix(colour, WHITE, 0.35), mix(colour, INK, 0.55), 2)
    pen.poly([(side + 0.45 * u, top + 0.5 * u), (side + 0.6 * u, top + 0.68 * u),
              (side + 0.42 * u, top + 0.7 * u)], mix(colour, WHITE, 0.35))


def render_plate(params: dict, prompt: str, refs: list[Path], out: Path) -> None:
    """The empty location in the light of its time of day: the location's own picture
    (`refs`, the first that reads), fitted to the frame, bare, since it is the
    background of the panels set there; else drawn with its landmark, its header and
    its description."""
    w, h = _size(params)
    rng = random.Random(_seed(params))
    picture = next((b for b in (_backdrop(params, w, h, ref, 0.0, rng) for ref in refs or [])
                    if b is not None), None)
    if picture is not None:
        _save(picture, out)
        return
    img = _world(params, w, h, h * 0.55, 0.0, rng, _landmark(params))
    info = _panel_info(params, prompt)
    where = " — ".join(str(x) for x in (info.get("location"), info.get("time")) if x)
    _header(img, "PLATE", where)
    _footer(img, (prompt or "").strip().splitlines()[0] if (prompt or "").strip() else "")
    _save(img, out)


THUMB_W = 320
MAX_SHEET_H = 30000  # px; beyond it, further pages: hunt-2.png, hunt-3.png, ...
HEADER_SIZE = 20  # px: the page header's text


def render_storyboard(keyframes: list[Path], labels: list[str], out: Path,
                      columns: int = 4, heading: tuple[str, str] | None = None) -> list[Path]:
    """A contact sheet: every keyframe as a 320 px thumbnail with its label, in reading order.

    A long scene gives a tall sheet; when it would pass 30,000 px (about 300 panels
    of a 2.39:1 film in four columns) the rest goes to `<stem>-2.png`, `<stem>-3.png`...
    beside `out`, so every page stays an image a viewer opens.  `heading` (left, right)
    is a band at the top of every page naming what it shows (the scene's number and
    title; its id), with `page 2/3` on a page of several, so a page opened on its own
    says where it belongs.  Returns the pages.
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
    band = round(HEADER_SIZE * 1.8) + gap if heading is not None else 0
    cell_w, cell_h = THUMB_W + gap, th + label_h + gap
    rows_per_page = max(1, (MAX_SHEET_H - gap - band) // cell_h)
    per_page = rows_per_page * columns
    pages = [list(range(i, min(i + per_page, len(keyframes))))
             for i in range(0, max(1, len(keyframes)), per_page)] or [[]]
    written: list[Path] = []
    for p, idx in enumerate(pages):
        rows = max(1, math.ceil(len(idx) / columns))
        width = gap + columns * cell_w
        sheet = Image.new("RGB", (width, band + gap + rows * cell_h), (24, 24, 28))
        draw = ImageDraw.Draw(sheet)
        if heading is not None:
            left, right = heading
            if len(pages) > 1:
                right = f"{right}   page {p + 1}/{len(pages)}".strip()
            draw.rectangle((0, 0, width, band - gap // 2), fill=(40, 40, 46))
            mid = (band - gap // 2) / 2
            if right:
                _text(draw, (width - gap, mid), right, HEADER_SIZE - 4, fill=(170, 170, 178),
                      anchor="rm")
                room = width - 3 * gap - font(HEADER_SIZE - 4, right).getlength(right)
            else:
                room = width - 2 * gap
            f = font(HEADER_SIZE, left)
            while len(left) > 4 and f.getlength(left) > room:
                left = left[:-2] + "…"
            draw.text((gap, mid), left, font=f, fill=WHITE, anchor="lm")
        for k, i in enumerate(idx):
            x, y = gap + (k % columns) * cell_w, band + gap + (k // columns) * cell_h
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
