"""The IR: a film fully resolved, ready to become a step graph.

Frozen attrs classes and tuples.  Everything a generation step needs is here
and nothing needs looking up again: presets are expanded into prompt words and
animatic parameters, defaults have flowed film → scene → shot, each cast member
carries the outfit the shot uses, dialogue lines carry their timing inside the
shot, and every step kind of every shot knows its backend.  Display-only
fields (notes, tags, titles) are kept for reports but never reach a prompt or
a content key.
"""

from __future__ import annotations

import math
from fractions import Fraction

import attrs


@attrs.frozen
class RefFile:
    """A reference image: its path relative to the project, and its content hash."""

    path: str
    digest: str


@attrs.frozen
class Look:
    """Prompt words and animatic parameters merged from presets and free words."""

    words: tuple[str, ...] = ()
    negative: tuple[str, ...] = ()
    presets: tuple[str, ...] = ()  # the preset names used, for reports
    params: tuple[tuple[str, object], ...] = ()  # animatic parameters (scale, tilt, palette...)

    def param(self, name: str, default: object = None) -> object:
        for k, v in self.params:
            if k == name:
                return v
        return default


@attrs.frozen
class Camera:
    size: str | None = None
    angle: str | None = None
    lens_mm: Fraction | None = None
    movement: str | None = None
    look: Look = Look()
    movement_words: str = ""  # the movement preset's own prompt, for clip prompts


@attrs.frozen
class Outfit:
    name: str
    look: str
    refs: tuple[RefFile, ...] = ()


@attrs.frozen
class Character:
    id: str
    name: str
    look: str
    voice: str
    refs: tuple[RefFile, ...]
    outfits: tuple[Outfit, ...]
    tags: tuple[str, ...] = attrs.field(default=(), eq=False)
    kind: str = "person"  # person, animal or creature: how the animatic draws them

    def outfit(self, name: str | None) -> Outfit | None:
        return next((o for o in self.outfits if o.name == name), None)


@attrs.frozen
class TimeOfDay:
    time: str
    look: str
    refs: tuple[RefFile, ...]


@attrs.frozen
class Location:
    id: str
    name: str
    look: str
    refs: tuple[RefFile, ...]
    times: tuple[TimeOfDay, ...]

    def at(self, time: str | None) -> TimeOfDay | None:
        return next((t for t in self.times if t.time == time), None)


@attrs.frozen
class CastMember:
    character: str
    outfit: str | None


@attrs.frozen
class Line:
    """A line of dialogue, timed inside its shot (seconds from the shot's start)."""

    index: int  # 1-based within the shot
    speaker: str
    paren: str | None
    text: str
    start: Fraction
    end: Fraction
    language: str | None


@attrs.frozen
class Shot:
    id: str
    scene: str
    number: int  # 1-based position in the film
    duration: Fraction
    camera: Camera
    light: Look
    style: Look
    cast: tuple[CastMember, ...]
    action: str
    negative: str
    # keyframe candidates: (backend, how many), in the order written; the backend is None
    # until the backends pass names the shot's keyframe backend
    candidates: tuple[tuple[str | None, int], ...]
    takes: int  # clips made from the picked keyframe
    seed: int | None
    backends: tuple[tuple[str, str], ...]  # (step kind, backend name) for every step kind
    lines: tuple[Line, ...]
    language: str | None
    location: str | None
    time: str | None
    framing: tuple[tuple[str, str], ...] = ()  # (character, framing) where not `figure`
    # (step kind, backend) that makes a step the shot's backend refuses: its `fallback`
    # lines until the backends pass, then every kind that has one (from filmc.toml too)
    fallbacks: tuple[tuple[str, str], ...] = ()
    continues: bool = False  # `first_frame previous`
    ends_on_next: bool = False  # `last_frame next`
    tags: tuple[str, ...] = attrs.field(default=(), eq=False)
    notes: tuple[str, ...] = attrs.field(default=(), eq=False)

    def backend(self, kind: str) -> str:
        return dict(self.backends)[kind]

    def fallback(self, kind: str) -> str | None:
        return dict(self.fallbacks).get(kind)

    def framed(self, character: str) -> str:
        """What of `character` is in frame: face, figure, hands, back, silhouette, voice."""
        return dict(self.framing).get(character, "figure")


@attrs.frozen
class Scene:
    id: str
    title: str = attrs.field(eq=False)
    setting: str | None
    location: str | None
    time: str | None
    shots: tuple[Shot, ...]


@attrs.frozen
class Sound:
    """A sound placed in the film (lang/cues.py): a music cue, a scene's ambience or an
    effect, in film time.  `file`: a music cue given as a file of the project."""

    kind: str  # music | ambience | effect
    scene: str
    shot: str | None  # the shot a music cue starts at or an effect is in; None: the scene's
    index: int  # an effect's number within its shot (1-based); 0 otherwise
    description: str
    start: Fraction
    end: Fraction
    backend: str  # of the `music` or `sfx` step that makes it (a file cue: none is made)
    file: RefFile | None = None


@attrs.frozen
class Film:
    title: str = attrs.field(eq=False)
    width: int
    height: int
    fps: Fraction
    language: str | None
    style: Look  # the film's own style: sheets and plates use it
    characters: tuple[Character, ...]
    locations: tuple[Location, ...]
    scenes: tuple[Scene, ...]
    sound: tuple[Sound, ...] = ()

    @property
    def shots(self) -> tuple[Shot, ...]:
        return tuple(s for sc in self.scenes for s in sc.shots)

    def character(self, cid: str) -> Character:
        return next(c for c in self.characters if c.id == cid)

    def location(self, lid: str) -> Location | None:
        return next((loc for loc in self.locations if loc.id == lid), None)


class Clock:
    """An exact running sum of times (Fractions) kept in integers, num / den with den the
    least common multiple of what was added: a feature's 3,000 shots summed, and their
    frames counted, without 3,000 Fraction additions (each a gcd and two objects), which
    were a tenth of a compile that put every shot back."""

    __slots__ = ("num", "den")

    def __init__(self) -> None:
        self.num, self.den = 0, 1

    def add(self, t: Fraction) -> None:
        n, d = t.numerator, t.denominator
        if self.den % d:
            lcm = self.den * d // math.gcd(self.den, d)
            self.num, self.den = self.num * (lcm // self.den), lcm
        self.num += n * (self.den // d)

    @property
    def value(self) -> Fraction:
        return Fraction(self.num, self.den)

    def frames(self, fps: Fraction) -> int:
        """round(the sum x fps), a half to the even number, as Python rounds a Fraction."""
        d = self.den * fps.denominator
        q, r = divmod(self.num * fps.numerator, d)
        return q + 1 if 2 * r > d or (2 * r == d and q % 2) else q
