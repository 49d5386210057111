"""The cast of a storyboard panel, and how one candidate of a shot blocks it.

Each character is a labelled figure in its own colour, sized by the shot's scale
(specks on the land in a wide shot, a face filling the frame in an extreme
close-up), standing on the horizon or seen from overhead. A character the shot's
`kind` parameter calls an animal is drawn on four legs, half a person's height
and twice as long as tall, facing the way the pose turns its head; a creature as
a horned, three-eyed body on six legs waving two tentacles.

A shot asks for several candidates (keyframes a user compares and picks from), and
offline every one is drawn here; they must look like alternatives a storyboard
artist would sketch, not one drawing with different grain. `sketch(params)` turns
the candidate's identity into such an alternative: where the cast stands (on a
third or in the middle, closer together or further apart, looking into the frame),
each figure's pose (a gesture of the arms, a lean, the head turned and cocked), a
few percent of re-framing, a slight extra cant on a camera that is already canted,
and where the location's landmark shows on the horizon. What the shot declares
stays: the shot size, the angle, the light, each character's colour and label.
"""

from __future__ import annotations

import hashlib
import math
import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace

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

# ---------------------------------------------------------------- poses and sketches

Arm = tuple[float, float, float]  # upper arm and forearm angles (degrees), upper arm's length


@dataclass(frozen=True)
class Pose:
    """How a figure stands, in the picture's plane.

    An arm is two angles in degrees from hanging straight down, positive away from
    the body (90: held straight out, 180: straight up, below 0: across the chest),
    and its upper arm's length as a fraction (below 1: foreshortened, reaching
    toward the camera). `lean` tips the upper body (degrees, positive to the
    picture's right), `turn` the face (-1 looks left, 1 right), `tilt` cocks the
    head (degrees), `stance` sets the feet apart (1: side by side).
    """

    left: Arm = (8.0, 4.0, 1.0)
    right: Arm = (8.0, 4.0, 1.0)
    lean: float = 0.0
    turn: float = 0.0
    tilt: float = 0.0
    stance: float = 1.0


STANDING = Pose()  # the character sheet's pose, and the neutral one

# Gestures a storyboard artist reaches for: (the gesturing arm, the other arm), in two
# families that alternate with each round of three takes: arms out from the body, arms
# at it. Take 4 stands where take 1 stood, so it holds its arms the other way.
_REST: Arm = (8.0, 4.0, 1.0)
GESTURES: dict[str, tuple[Arm, Arm]] = {
    "rest": (_REST, _REST),
    "point": ((80.0, 86.0, 1.0), _REST),
    "wave": ((95.0, 170.0, 1.0), (10.0, 5.0, 1.0)),
    "reach": ((120.0, 125.0, 1.0), (12.0, 6.0, 1.0)),
    "hips": ((40.0, -50.0, 1.0), (40.0, -50.0, 1.0)),
    "chin": ((-40.0, -155.0, 0.35), _REST),
    "binoculars": ((-40.0, -155.0, 0.35), (-40.0, -155.0, 0.35)),
    "open": ((35.0, 30.0, 1.0), (35.0, 30.0, 1.0)),
}
_FAMILIES = (("hips", "open", "point", "reach", "wave"), ("binoculars", "chin", "rest"))


@dataclass(frozen=True)
class Sketch:
    """One candidate's blocking of a shot, drawn from its identity alone.

    `centre` is where the cast's group stands across the frame (a fraction of the
    width: a third or the middle), `spacing` multiplies the gaps between the
    figures, `lift` re-frames up or down (a fraction of the height: it moves the
    horizon and the cast together), `zoom` re-frames in or out (a factor of a few
    percent on the figures' size), `dutch` adds to a canted camera's roll (from -1
    to 1, times 3 degrees or a quarter of the roll if less; a level camera stays
    level), `landmark` is where the location's landmark stands on the horizon (a
    fraction of the width), `turn` the angle of the line the cast stands on, seen
    from overhead. `seed` seeds the texture (hills, the ground seen from above,
    grain). A sketch never changes the shot size, the angle, the light, or a
    character's colour and label.
    """

    seed: int
    centre: float
    spacing: float
    lift: float
    zoom: float
    dutch: float
    landmark: float
    turn: float
    poses: tuple[Pose, ...]

    def pose(self, i: int) -> Pose:
        """The pose of the `i`-th cast member (the poses repeat in a large cast)."""
        return self.poses[i % len(self.poses)]


def identity(params: dict) -> str:
    """What makes a candidate itself: its name (`candidate`, e.g. "openai-2") when the
    step has one, else its take, and the shot's seed."""
    cand = params.get("candidate")
    who = f"candidate {cand}" if cand not in (None, "") else f"take {int(_num(params, 'take', 1))}"
    return f"{who} seed {int(_num(params, 'seed', 0))}"


def sketch(params: dict) -> Sketch:
    """The candidate's blocking of its shot: the same params, the same sketch.

    Where the cast stands, and the family of its gestures, follow the take (the
    candidate's index within its backend); everything else comes from a hash of
    `identity(params)`. So a candidate drawn on any machine, by any worker, in any
    order, looks the same; one backend's takes stand the cast on different thirds
    (and the fourth, back on the first's, holds its arms another way); candidates
    of different backends with the same index differ in every other choice.
    """
    digest = hashlib.sha256(identity(params).encode("utf-8")).digest()
    rng = random.Random(int.from_bytes(digest[8:16], "big"))
    # the cast on the left third, the right third or in the middle: by the take, so that
    # the first three candidates of a backend take all three, whatever their names hash to
    take = max(1, int(_num(params, "take", 1)))
    third = (1 / 3, 2 / 3, 1 / 2)[(take - 1) % 3]
    family = _FAMILIES[(take - 1) // 3 % 2]
    centre = third + rng.uniform(-0.05, 0.05)
    # the landmark balances the cast from the other side of the frame, clear of its edges
    on_right = centre < 0.45 or (centre <= 0.55 and rng.random() < 0.5)
    landmark = rng.uniform(0.58, 0.84) if on_right else rng.uniform(0.16, 0.42)
    # faces turn into the frame, so that a figure on a third has room to look
    looks = 1.0 if centre < 0.45 else -1.0 if centre > 0.55 else rng.choice((-1.0, 1.0))
    poses = []
    for _ in range(8):
        gesturing, other = GESTURES[rng.choice(family)]
        left, right = (gesturing, other) if rng.random() < 0.5 else (other, gesturing)
        poses.append(Pose(left, right, lean=rng.uniform(-8.0, 8.0),
                          turn=looks * rng.uniform(0.3, 1.0), tilt=rng.uniform(-8.0, 8.0),
                          stance=rng.uniform(0.8, 1.4)))
    return Sketch(seed=int.from_bytes(digest[:8], "big"), centre=centre,
                  spacing=rng.uniform(0.75, 1.15), lift=rng.uniform(-0.02, 0.02),
                  zoom=rng.uniform(0.96, 1.04), dutch=rng.uniform(-1.0, 1.0),
                  landmark=landmark, turn=rng.uniform(-35.0, 35.0), poses=tuple(poses))


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

    def poly(self, pts: Sequence[Point], fill: RGB, outline: RGB | None = None,
             width: int = 1) -> None:
        q = [self.xy(p) for p in pts]
        self.draw.polygon(q, fill=fill)
        if outline is not None and width > 0:
            self.draw.line([*q, q[0]], fill=outline, width=width, joint="curve")


def _turned(pts: Sequence[Point], about: Point, degrees: float) -> list[Point]:
    """`pts` turned about `about` (positive: clockwise on screen, the top to the right)."""
    if not degrees:
        return list(pts)
    a = math.radians(degrees)
    c, s = math.cos(a), math.sin(a)
    ox, oy = about
    return [(ox + (x - ox) * c - (y - oy) * s, oy + (x - ox) * s + (y - oy) * c) for x, y in pts]


def _limb(a: Point, b: Point, wa: float, wb: float) -> list[Point]:
    """A tapering quad from `a` (`wa` wide) to `b` (`wb` wide)."""
    dx, dy = b[0] - a[0], b[1] - a[1]
    n = math.hypot(dx, dy) or 1.0
    nx, ny = -dy / n, dx / n
    return [(a[0] + nx * wa / 2, a[1] + ny * wa / 2), (b[0] + nx * wb / 2, b[1] + ny * wb / 2),
            (b[0] - nx * wb / 2, b[1] - ny * wb / 2), (a[0] - nx * wa / 2, a[1] - ny * wa / 2)]


def _arm_joints(arm: Arm, side: int, u: float) -> tuple[Point, Point, Point]:
    """Shoulder, elbow and hand of one arm, relative to the top of the head's centre."""
    upper, fore, length = arm
    shoulder = (side * 1.17 * u, 1.63 * u)
    a, b = math.radians(upper), math.radians(fore)
    elbow = (shoulder[0] + side * math.sin(a) * 1.35 * u * length,
             shoulder[1] + math.cos(a) * 1.35 * u * length)
    hand = (elbow[0] + side * math.sin(b) * 1.3 * u, elbow[1] + math.cos(b) * 1.3 * u)
    return shoulder, elbow, hand


def reach(pose: Pose) -> tuple[float, float]:
    """How far a standing figure in `pose` spreads to the left and to the right of its
    centre, in heads: its hands, elbows, hips and feet, and the room its lean takes."""
    left = right = 0.75 + 0.4 * max(0.0, pose.stance - 1.0)  # the feet
    for side, arm in ((-1, pose.left), (1, pose.right)):
        for x, _y in _arm_joints(arm, side, 1.0):
            left, right = max(left, -x + 0.2), max(right, x + 0.2)
    lean = 4.0 * abs(math.sin(math.radians(pose.lean)))
    return left + lean, right + lean


def _close(pose: Pose) -> Pose:
    """`pose` for a close framing: an arm flung wide would cross the next face or leave
    the frame, so it hangs at rest; gestures near the body (hands on the hips, at the
    chin, raising binoculars) stay."""
    def near(arm: Arm, side: int) -> Arm:
        return arm if all(abs(x) < 2.2 for x, _y in _arm_joints(arm, side, 1.0)) else _REST
    return replace(pose, left=near(pose.left, -1), right=near(pose.right, 1))


def _figure(pen: _Pen, cx: float, top: float, body: float, colour: RGB, rim: RGB | None,
            eyes: bool, pose: Pose = STANDING, pivot: float | None = None) -> None:
    """A storyboard figure `body` px tall in `pose`, the top of its head at `top`.

    The upper body leans about `pivot` (a height in px; by default the hips, so the
    feet stay put; a close framing passes the head's, so the face stays framed).
    """
    u = body / HEADS  # one head
    head_c = mix(colour, WHITE, 0.35)
    edge = rim or mix(colour, INK, 0.55)
    lw = max(1, min(round(u * 0.06), round(pen.cy * 0.012)))
    sh_y = top + 1.45 * u  # shoulders
    hip_y = top + 4.0 * u
    sw, hw = 1.05 * u, 0.72 * u  # half widths at shoulders and hips
    about = (cx, hip_y if pivot is None else pivot)

    def upper(pts: Sequence[Point]) -> list[Point]:  # the upper body leans
        return _turned(pts, about, pose.lean)

    neck = (cx, top + 1.1 * u)

    def head(pts: Sequence[Point]) -> list[Point]:  # the head leans and is cocked too
        return upper(_turned(pts, neck, pose.tilt))

    spread = (pose.stance - 1.0) * 0.4 * u
    for side in (-1, 1):  # legs
        pen.poly([(cx + side * 0.12 * u, hip_y - 0.2 * u), (cx + side * 0.7 * u, hip_y - 0.1 * u),
                  (cx + side * (0.55 * u + spread), top + 7.5 * u),
                  (cx + side * (0.15 * u + spread), top + 7.5 * u)], colour, edge, lw)
    arms = []
    for side, arm in ((-1, pose.left), (1, pose.right)):
        s, e, hnd = ((cx + x, top + y) for x, y in _arm_joints(arm, side, u))
        front = arm[0] < 0 or arm[1] < -20  # an arm across the body is drawn over it
        arms.append((front, s, e, hnd))
    for front, s, e, hnd in arms:
        if not front:
            _arm(pen, upper, s, e, hnd, u, colour, head_c, edge, lw)
    pen.poly(upper([(cx - sw, sh_y), (cx - sw * 0.6, sh_y - 0.25 * u),
                    (cx + sw * 0.6, sh_y - 0.25 * u), (cx + sw, sh_y), (cx + hw, hip_y),
                    (cx - hw, hip_y)]), colour, edge, lw)
    for front, s, e, hnd in arms:
        if front:
            _arm(pen, upper, s, e, hnd, u, colour, head_c, edge, lw)
    hx = cx + pose.turn * 0.05 * u  # a turned head shows a little more of one cheek
    pen.poly(upper([(cx - 0.2 * u, top + 0.8 * u), (cx + 0.2 * u, top + 0.8 * u),
                    (cx + 0.24 * u, sh_y - 0.1 * u), (cx - 0.24 * u, sh_y - 0.1 * u)]),
             head_c, edge, lw)
    pen.poly(head(_ellipse(hx, top + 0.5 * u, 0.4 * u, 0.52 * u, 64)), head_c, edge, lw)
    if eyes:  # close enough to read a face: eyes, brows, nose, mouth, turned with the head
        ink = mix(colour, INK, 0.75)
        fx = cx + pose.turn * 0.11 * u
        for side in (-1, 1):
            ex = fx + side * 0.16 * u
            pen.poly(head(_ellipse(ex, top + 0.5 * u, 0.07 * u, 0.035 * u, 24)), WHITE, ink,
                     max(1, lw // 2))
            px = ex + pose.turn * 0.035 * u  # the pupils look the way the head turns
            pen.poly(head(_ellipse(px, top + 0.5 * u, 0.028 * u, 0.028 * u, 16)), ink)
            brow = [(ex - 0.09 * u, top + 0.41 * u), (ex + 0.09 * u, top + 0.41 * u),
                    (ex + 0.09 * u, top + 0.425 * u), (ex - 0.09 * u, top + 0.425 * u)]
            pen.poly(head(brow), ink)
        nx = fx + pose.turn * 0.05 * u
        pen.poly(head([(nx, top + 0.55 * u), (nx + 0.05 * u, top + 0.68 * u),
                       (nx - 0.03 * u, top + 0.68 * u)]), mix(head_c, INK, 0.25))
        pen.poly(head(_ellipse(nx, top + 0.8 * u, 0.12 * u, 0.02 * u, 24)), mix(head_c, INK, 0.45))


def _arm(pen: _Pen, upper: Callable[[Sequence[Point]], list[Point]], s: Point, e: Point,
         hnd: Point, u: float, colour: RGB, head_c: RGB, edge: RGB, lw: int) -> None:
    """One arm, shoulder to hand; `upper` applies the figure's lean."""
    pen.poly(upper(_limb(e, hnd, 0.32 * u, 0.26 * u)), colour, edge, lw)
    pen.poly(upper(_limb(s, e, 0.4 * u, 0.32 * u)), colour, edge, lw)
    pen.poly(upper(_ellipse(e[0], e[1], 0.14 * u, 0.14 * u, 16)), colour)  # hides the elbow's seam
    pen.poly(upper(_ellipse(hnd[0], hnd[1], 0.15 * u, 0.15 * u, 20)), head_c, edge, lw)


def _figure_overhead(pen: _Pen, cx: float, cy: float, size: float, colour: RGB, rim: RGB | None,
                     angle: float = 0.0) -> None:
    """A figure seen from straight above, its shoulders turned by `angle` degrees."""
    edge = rim or mix(colour, INK, 0.55)
    lw = max(1, round(size * 0.04))
    shoulders = _turned(_ellipse(cx, cy, size * 0.5, size * 0.22, 48), (cx, cy), angle)
    pen.poly(shoulders, colour, edge, lw)
    pen.poly(_ellipse(cx, cy, size * 0.18, size * 0.18, 48), mix(colour, WHITE, 0.35), edge, lw)


# ---------------------------------------------------------------- animals and creatures

# A four-legged animal seen from the side, in units of its height (ear tips at 1), x toward
# its head, y up from the ground: the body, the chest, the neck, the head and the muzzle.
_BEAST_HEIGHT = 0.5  # of a standing person's: a wolf, a dog, a deer to the shoulder
_BEAST_REACH = (0.9, 1.15)  # how far it spreads behind and ahead of its centre, in heights
_BEAST_EYE = (0.8, 0.9)


def _animal(pen: _Pen, cx: float, ground: float, size: float, colour: RGB, rim: RGB | None,
            eyes: bool, pose: Pose = STANDING) -> None:
    """A four-legged animal `size` px tall (to its ear tips), standing on `ground`, facing
    the way the pose turns its head, its legs in a stride that the pose's lean sets."""
    face = 1.0 if pose.turn >= 0 else -1.0
    edge = rim or mix(colour, INK, 0.55)
    pale = mix(colour, WHITE, 0.35)
    lw = max(1, min(round(size * 0.02), round(pen.cy * 0.012)))

    def at(pts: Sequence[Point]) -> list[Point]:
        return [(cx + face * x * size, ground - y * size) for x, y in pts]

    stride = 0.06 + abs(pose.lean) / 8.0 * 0.08
    for x, swing, dark in ((-0.42, -stride, True), (0.36, stride, True),
                           (-0.32, stride, False), (0.46, -stride, False)):
        fill = mix(colour, INK, 0.25) if dark else colour  # the far legs in shadow
        hock = (x - 0.08, 0.3) if x < 0 else (x + swing * 0.5, 0.28)
        pen.poly(at(_limb((x, 0.58), hock, 0.14, 0.09)), fill, edge, lw)
        pen.poly(at(_limb(hock, (x + swing, 0.0), 0.09, 0.07)), fill, edge, lw)
    wag = math.radians(pose.tilt * 3)
    tip = (-0.55 - 0.3 * math.cos(0.6 + wag), 0.66 - 0.3 * math.sin(0.6 + wag))
    pen.poly(at(_limb((-0.52, 0.68), tip, 0.11, 0.04)), colour, edge, lw)
    pen.poly(at(_ellipse(0.0, 0.63, 0.56, 0.2, 48)), colour, edge, lw)
    pen.poly(at(_ellipse(0.38, 0.6, 0.2, 0.22, 32)), pale, edge, lw)
    pen.poly(at(_limb((0.38, 0.66), (0.72, 0.86), 0.26, 0.18)), colour, edge, lw)
    for dx in (-0.06, 0.04):  # the ears
        pen.poly(at([(0.7 + dx, 0.92), (0.75 + dx, 1.0), (0.8 + dx, 0.9)]), colour, edge, lw)
    pen.poly(at(_ellipse(0.78, 0.86, 0.16, 0.12, 40)), colour, edge, lw)
    pen.poly(at([(0.86, 0.93), (1.12, 0.83), (1.12, 0.77), (0.84, 0.77)]), pale, edge, lw)
    pen.poly(at(_ellipse(1.11, 0.83, 0.025, 0.025, 12)), INK)  # the nose
    if eyes:
        ex, ey = _BEAST_EYE
        pen.poly(at(_ellipse(ex + 0.04, ey, 0.03, 0.018, 16)), WHITE, INK, max(1, lw // 2))
        pen.poly(at(_ellipse(ex + 0.05, ey, 0.012, 0.012, 12)), INK)


def _creature(pen: _Pen, cx: float, top: float, body: float, colour: RGB, rim: RGB | None,
              eyes: bool, pose: Pose = STANDING) -> None:
    """Something that is neither a person nor an animal, as tall as a person: a hunched
    round body with horns and three eyes on six spindly legs, waving two tentacles as
    the pose holds its arms."""
    edge = rim or mix(colour, INK, 0.55)
    pale = mix(colour, WHITE, 0.35)
    lw = max(1, min(round(body * 0.01), round(pen.cy * 0.012)))
    ground = top + body
    cy = top + 0.42 * body
    for i in range(6):  # legs, splayed like a spider's
        side = -1 if i % 2 else 1
        k = i // 2
        knee = (cx + side * (0.3 + 0.08 * k) * body, cy + (0.12 + 0.06 * k) * body)
        foot = (cx + side * (0.16 + 0.14 * k) * body, ground)
        hip = (cx + side * 0.1 * body, cy + 0.18 * body)
        pen.poly(_limb(hip, knee, 0.05 * body, 0.035 * body), mix(colour, INK, 0.2), edge, lw)
        pen.poly(_limb(knee, foot, 0.035 * body, 0.015 * body), mix(colour, INK, 0.2), edge, lw)
    for side, arm in ((-1, pose.left), (1, pose.right)):  # tentacles
        a, b = math.radians(arm[0]), math.radians(arm[1])
        s = (cx + side * 0.22 * body, cy - 0.05 * body)
        e = (s[0] + side * math.sin(a) * 0.2 * body, s[1] + math.cos(a) * 0.2 * body)
        t = (e[0] + side * math.sin(b) * 0.2 * body, e[1] + math.cos(b) * 0.2 * body)
        pen.poly(_limb(s, e, 0.06 * body, 0.04 * body), colour, edge, lw)
        pen.poly(_limb(e, t, 0.04 * body, 0.01 * body), colour, edge, lw)
    hunch = _turned(_ellipse(cx, cy, 0.27 * body, 0.3 * body, 64), (cx, ground), pose.lean)
    pen.poly(hunch, colour, edge, lw)
    for side in (-1, 1):  # horns
        pen.poly(_turned([(cx + side * 0.08 * body, top + 0.16 * body),
                          (cx + side * 0.2 * body, top), (cx + side * 0.16 * body, top + 0.2 * body)],
                         (cx, ground), pose.lean), pale, edge, lw)
    pen.poly(_turned(_ellipse(cx, cy + 0.12 * body, 0.16 * body, 0.1 * body, 40), (cx, ground),
                     pose.lean), pale)  # the belly
    if eyes:
        for dx in (-0.09, 0.0, 0.09):
            ex, ey = cx + (dx + pose.turn * 0.03) * body, top + 0.3 * body
            pen.poly(_turned(_ellipse(ex, ey, 0.035 * body, 0.035 * body, 24), (cx, ground),
                             pose.lean), WHITE, INK, max(1, lw // 2))
            pen.poly(_turned(_ellipse(ex + pose.turn * 0.012 * body, ey, 0.015 * body,
                                      0.015 * body, 12), (cx, ground), pose.lean), INK)


def _being_overhead(pen: _Pen, kind: str, cx: float, cy: float, size: float, colour: RGB,
                    rim: RGB | None, angle: float = 0.0) -> None:
    """An animal (a long body and a head in front) or a creature (a spiked disc) seen from
    straight above; a person is `_figure_overhead`."""
    edge = rim or mix(colour, INK, 0.55)
    lw = max(1, round(size * 0.04))
    if kind == "animal":
        pen.poly(_turned(_ellipse(cx, cy, size * 0.6, size * 0.2, 48), (cx, cy), angle),
                 colour, edge, lw)
        a = math.radians(angle)
        hx, hy = cx + math.cos(a) * size * 0.7, cy + math.sin(a) * size * 0.7
        pen.poly(_ellipse(hx, hy, size * 0.16, size * 0.16, 32), mix(colour, WHITE, 0.35), edge, lw)
        return
    spikes = [(cx + math.cos(2 * math.pi * i / 18 + math.radians(angle)) * size * r,
               cy + math.sin(2 * math.pi * i / 18 + math.radians(angle)) * size * r)
              for i, r in ((i, 0.55 if i % 2 else 0.35) for i in range(18))]
    pen.poly(spikes, colour, edge, lw)
    pen.poly(_ellipse(cx, cy, size * 0.16, size * 0.16, 32), mix(colour, WHITE, 0.35), edge, lw)


def _label(draw: ImageDraw.ImageDraw, x: float, y: float, text: str, colour: RGB, size: int,
           w: int, h: int) -> None:
    f = font(size, text)
    tw = f.getlength(text)
    pad = size * 0.3
    x = max(pad, min(w - tw - pad * 2, x - tw / 2))
    y = max(pad, min(h - size * 1.6, y))
    draw.rectangle((x - pad, y - pad * 0.5, x + tw + pad, y + size * 1.25), fill=colour,
                   outline=INK)
    draw.text((x, y), text, font=f, fill=WHITE if sum(colour) < 450 else INK, anchor="la")


# ---------------------------------------------------------------- blocking


def _place(offsets: list[float], extents: list[tuple[float, float]], centre: float,
           lo: float, hi: float) -> list[float]:
    """Where each figure stands across the frame: `offsets` from the group's `centre`,
    squeezed when the group is wider than [`lo`, `hi`] and shifted to stay inside it.
    `extents` is how far each figure spreads to its left and right."""
    first, last = offsets[0], offsets[-1]
    room = hi - lo - extents[0][0] - extents[-1][1]
    k = 1.0 if last - first <= 0 else max(0.0, min(1.0, room / (last - first)))
    xs = [centre + o * k for o in offsets]
    left = min(x - e[0] for x, e in zip(xs, extents))
    right = max(x + e[1] for x, e in zip(xs, extents))
    if right - left > hi - lo:  # wider than the frame however squeezed: keep it centred
        shift = (lo + hi) / 2 - (left + right) / 2
    else:
        shift = max(0.0, lo - left) - max(0.0, right - hi)
    return [x + shift for x in xs]


def _draw_cast(img: Image.Image, params: dict, horizon: float | None, roll: float,
               sk: Sketch) -> None:
    """Every character of the cast, blocked as the candidate's sketch says."""
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
    kinds = {str(k): str(v) for k, v in (params.get("kind") or {}).items()}
    n = len(cast)
    label_size = max(14, round(h * 0.03))
    if horizon is None:
        size = max(6.0, h * min(1.6, scale * 0.5) * sk.zoom)
        a = math.radians(sk.turn)
        step = w / (n + 1) * sk.spacing
        gx, gy = w * sk.centre, h * (0.5 + sk.lift * 3)
        for i, cid in enumerate(cast):
            o = (i - (n - 1) / 2) * step
            x = min(w - size * 0.6, max(size * 0.6, gx + o * math.cos(a)))
            y = min(h * 0.8, max(h * 0.15, gy + o * math.sin(a)))
            colour = character_colour(cid)
            if kinds.get(cid, "person") == "person":
                _figure_overhead(pen, x, y, size, colour, rim, sk.turn + sk.pose(i).lean * 6)
            else:
                _being_overhead(pen, kinds[cid], x, y, size, colour, rim,
                                sk.turn + sk.pose(i).lean * 6)
            lx, ly = pen.xy((x, y + size * 0.3))
            _label(draw, lx, ly, cid, colour, label_size, w, h)
        return
    body = h * _body_frames(scale) * sk.zoom
    u = body / HEADS
    whole = body <= 0.9 * h  # the whole figure shows: feet on the ground, below the horizon
    if whole:
        feet = min(h * 0.95, max(horizon, 0) + (h - max(horizon, 0)) * min(0.8, 0.15 + body / h))
        feet = max(feet, body + h * 0.04)
        top = feet - body
    else:  # framed closer: the eyes sit on the upper third, the rest is cropped
        eye_line = h * ((0.36 if scale < 2.0 else 0.46) + sk.lift)
        top = eye_line - 0.5 * u
    spread = 1.0 if n == 1 else min(1.0, 0.35 + 0.65 * (1 - min(1.0, u * 0.9 / (w / n))))
    offsets = [(w * (i + 1) / (n + 1) - w / 2) * spread * sk.spacing for i in range(n)]
    beast = body * _BEAST_HEIGHT  # an animal's height, to its ear tips
    if whole:  # all of each figure stays in the frame, hands and feet included
        extents = [(a * u, b * u) for a, b in (reach(sk.pose(i)) for i in range(n))]
        for i, cid in enumerate(cast):
            if kinds.get(cid) == "animal":
                extents[i] = (_BEAST_REACH[1] * beast,) * 2
            elif kinds.get(cid) == "creature":
                extents[i] = (0.45 * body, 0.45 * body)
    else:  # a close framing keeps every face in the frame
        extents = [(0.45 * u, 0.45 * u)] * n
    xs = _place(offsets, extents, w * sk.centre, w * 0.02, w * 0.98)
    ground_shadow = mix(shadow, INK, 0.3)
    for i, cid in enumerate(cast):
        x = xs[i]
        if whole:  # a cast shadow away from the key light
            dx = {"left": 1.5, "right": -1.5}.get(key_side, 0.0) * u
            pen.poly(_ellipse(x + dx, top + body, 0.9 * u + abs(dx) * 0.6, 0.18 * u, 32),
                     ground_shadow)
        colour = character_colour(cid)
        kind = kinds.get(cid, "person")
        pose = sk.pose(i) if whole else _close(sk.pose(i))
        crown = top  # the top of the figure, for its label
        if kind == "animal":  # on the same ground; framed closer, its eye on the eye line
            face = 1.0 if pose.turn >= 0 else -1.0
            ground = top + body if whole else top + 0.5 * u + _BEAST_EYE[1] * beast
            ax = x if whole else x - face * _BEAST_EYE[0] * beast
            _animal(pen, ax, ground, beast, colour, rim, eyes=beast * 0.12 > h * 0.02, pose=pose)
            crown = ground - beast
        elif kind == "creature":  # framed closer, its eyes on the eye line
            ctop = top if whole else top + 0.5 * u - 0.3 * body
            _creature(pen, x, ctop, body, colour, rim, eyes=body * 0.035 > h * 0.006, pose=pose)
        else:
            _figure(pen, x, top, body, colour, rim, eyes=u > h * 0.12, pose=pose,
                    pivot=None if whole else top + 0.5 * u)
        if whole:
            lx, ly = pen.xy((x, crown - label_size * 1.8))
        else:
            lx, ly = pen.xy((x, min(h * 0.8, top + 2.6 * u)))
        _label(draw, lx, ly, cid, colour, label_size, w, h)
