"""The vocabulary of steps that every stage speaks: step kinds, step ids, request fields.

It sits in `lang/`, the bottom stage, because every other stage names steps:
the language (`backend clip kling`), filmc.toml's `[steps]`, the compiler's
graph and keys, the engine's scheduling and output layout, and the backend
protocol's requests.  One registry, `KINDS`, answers every question about a
step kind (its stage, the `--until` level that includes it, what it outputs,
whether a user chooses its backend); nothing else keeps a list of kinds.

    KINDS["clip"].outputs        (Output("video", "video"),)
    reaches("clip", "keyframe")  False: `--until keyframe` stops before clips
    StepId.keyframe("hunt", "chen_watches", "openai-2")  → keyframe.hunt.chen_watches.openai-2

A `StepId` is data with a printed form; no stage parses the printed form back.
"""

from __future__ import annotations

from fractions import Fraction

import attrs


@attrs.frozen
class Output:
    """One declared output of a step kind: its name, its media type, whether a step may
    make several of them (storyboard pages), and whether it may be empty (the subtitles
    of a film with no dialogue)."""

    name: str
    media: str  # image | video | audio | text
    many: bool = False
    empty: bool = False


@attrs.frozen
class StepKind:
    name: str
    until: str  # the lowest `--until` level whose builds include this kind
    outputs: tuple[Output, ...]
    assignable: bool  # a user chooses its backend: `[steps]`, `backend STEP NAME`
    group: str  # where `plan` lists it: "reference", "shot" or "film"
    doc: str


# The `--until` levels, cheapest first: a build `--until clip` makes every kind whose
# level is keyframe or clip.
UNTIL = ("keyframe", "clip", "shot", "film")

_IMAGE = (Output("image", "image"),)
# The mix's stems, in the order of its `stems` output: laid out beside the film as
# film.dialogue.wav, film.music.wav, film.effects.wav.
FILM_STEMS = ("dialogue", "music", "effects")
_VIDEO = (Output("video", "video"),)

KINDS: dict[str, StepKind] = {k.name: k for k in (
    StepKind("sheet", "keyframe", _IMAGE, True, "reference",
             "a character's reference image in one outfit"),
    StepKind("plate", "keyframe", _IMAGE, True, "reference",
             "a location's reference image at one time of day"),
    StepKind("keyframe", "keyframe", _IMAGE, True, "shot",
             "one candidate still of a shot: text and references → image"),
    StepKind("clip", "clip", _VIDEO, True, "shot",
             "one take of a shot's motion, from its picked keyframe: image → video"),
    StepKind("lastframe", "clip", _IMAGE, False, "shot",
             "the last frame of a shot's picked clip, where the next shot's clip starts"),
    StepKind("speech", "clip", (Output("audio", "audio"),), True, "shot",
             "one line of dialogue as audio"),
    StepKind("music", "clip", (Output("audio", "audio"),), True, "shot",
             "one music cue as audio: described for a generator (a file cue is the file)"),
    StepKind("sfx", "clip", (Output("audio", "audio"),), True, "shot",
             "one sound effect, or a scene's ambience, as audio"),
    StepKind("shot", "shot", _VIDEO, True, "shot",
             "the chosen clip conformed to the film's size, rate and length, with its audio"),
    StepKind("mix", "film", (Output("audio", "audio"), Output("stems", "audio", many=True)),
             True, "film", "the film's sound: every line, music cue, ambience and effect mixed "
             "to its loudness, with stems (it hears no picture, so a camera edit keeps it)"),
    StepKind("film", "film", _VIDEO, True, "film",
             "every shot joined, with chapters and subtitles, and the mix as its sound"),
    StepKind("subtitles", "shot", (Output("subtitles", "text", empty=True),), False, "film",
             "the dialogue as SubRip subtitles"),
    StepKind("timeline", "shot", (Output("timeline", "text"),), False, "film",
             "the cut as data: each shot's place in the film"),
    StepKind("storyboard", "keyframe", (Output("page", "image", many=True),), False, "film",
             "one scene's contact sheets: its shots' picked keyframes (the first candidate "
             "until a pick), page by page"),
    StepKind("storyboard_index", "keyframe", (Output("index", "text"),), False, "film",
             "the storyboard's index: every scene with its title, shots and pages (HTML)"),
    StepKind("export", "shot", (Output("export", "text", empty=True),), False, "film",
             "the cut for an editor or a spreadsheet: OpenTimelineIO, EDL, FCPXML, SRT, CSV"),
)}

# The kinds a user assigns a backend to, in stage order (`backend STEP NAME`, `[steps]`).
ASSIGNABLE = tuple(k for k, v in KINDS.items() if v.assignable)
REFERENCE_KINDS = tuple(k for k, v in KINDS.items() if v.group == "reference")


def reaches(kind: str, until: str | None) -> bool:
    """Whether a build `--until until` (None: the whole film) includes steps of `kind`."""
    if until is None:
        return True
    return UNTIL.index(KINDS[kind].until) <= UNTIL.index(until)


@attrs.frozen
class StepId:
    """The address of a step, as parts.  `str()` is its node id in the graph:

        sheet.CHEN.winter   plate.STEPPE.NIGHT   keyframe.hunt.chen.openai-2
        clip.hunt.chen.take2   lastframe.hunt.chen   speech.hunt.chen.1   shot.hunt.chen   mix   film
        music.hunt   music.hunt.chen   sfx.hunt.ambience   sfx.hunt.chen.1
        storyboard.hunt   storyboard_index   export.otio
    """

    kind: str
    scene: str | None = None
    shot: str | None = None
    # the candidate (keyframe: `openai-2`, `import-1`) or take (clip: `take2`, `import-1`)
    candidate: str | None = None
    line: int | None = None  # the line of dialogue (speech), 1-based within its shot
    subject: str | None = None  # the character (sheet), location (plate) or format (export)
    variant: str | None = None  # the outfit (sheet) or time of day (plate)
    # `str()`, made once: a feature's build asks each step's id tens of times (the graph,
    # the executor, the layout, the review page, the report: 180,000 asks a rebuild).
    _id: str = attrs.field(init=False, eq=False, hash=False, repr=False)

    def __attrs_post_init__(self) -> None:
        parts: list[str] = [self.kind]
        if self.subject is not None:
            parts.append(self.subject)
            if self.variant is not None:
                parts.append(self.variant)
        if self.scene is not None:  # a scene's own step (music.hunt) has no shot
            parts += [self.scene] if self.shot is None else [self.scene, self.shot]
        if self.candidate is not None:
            parts.append(self.candidate)
        if self.line is not None:
            parts.append(str(self.line))
        object.__setattr__(self, "_id", ".".join(parts))

    @classmethod
    def sheet(cls, character: str, outfit: str | None) -> StepId:
        return cls("sheet", subject=character, variant=outfit)

    @classmethod
    def plate(cls, location: str, time: str | None) -> StepId:
        return cls("plate", subject=location, variant=time)

    @classmethod
    def keyframe(cls, scene: str, shot: str, candidate: str) -> StepId:
        return cls("keyframe", scene, shot, candidate=candidate)

    @classmethod
    def clip(cls, scene: str, shot: str, take: str) -> StepId:
        return cls("clip", scene, shot, candidate=take)

    @classmethod
    def lastframe(cls, scene: str, shot: str) -> StepId:
        return cls("lastframe", scene, shot)

    @classmethod
    def speech(cls, scene: str, shot: str, line: int) -> StepId:
        return cls("speech", scene, shot, line=line)

    @classmethod
    def music(cls, scene: str, shot: str | None) -> StepId:
        """music.hunt (the scene's cue), music.hunt.chen_watches (a cue from that shot)"""
        return cls("music", scene, shot)

    @classmethod
    def ambience(cls, scene: str) -> StepId:
        """sfx.hunt.ambience: a step of the scene, of no shot"""
        return cls("sfx", scene, candidate="ambience")

    @classmethod
    def effect(cls, scene: str, shot: str, n: int) -> StepId:
        return cls("sfx", scene, shot, line=n)

    @classmethod
    def of_shot(cls, scene: str, shot: str) -> StepId:
        return cls("shot", scene, shot)

    @classmethod
    def storyboard(cls, scene: str) -> StepId:
        """storyboard.hunt: the contact sheets of one scene, a step of the scene, of no shot"""
        return cls("storyboard", scene)

    @classmethod
    def export(cls, fmt: str) -> StepId:
        return cls("export", subject=fmt)

    def __str__(self) -> str:
        return self._id


class Addressed:
    """`id`, `kind`, `scene` and `shot`, read off the `sid` of the class that mixes it in
    (a graph step, a build outcome)."""

    __slots__ = ()
    sid: StepId

    @property
    def id(self) -> str:
        return self.sid._id  # (str(self.sid), a call less: asked 90,000 times a rebuild)

    @property
    def kind(self) -> str:
        return self.sid.kind

    @property
    def scene(self) -> str | None:
        return self.sid.scene

    @property
    def shot(self) -> str | None:
        return self.sid.shot


@attrs.frozen
class Fields:
    """What a generation request asks for, by name.  A backend adapter declares which of
    these change its output (`key_fields`); only those enter its steps' content keys,
    with `take` always (two candidates must never share a key).  `take` is the
    candidate's number among its backend's candidates (keyframes: `openai-2` is 2), or
    the clip's take number."""

    prompt: str = ""
    negative: str = ""
    seed: int | None = None
    width: int | None = None
    height: int | None = None
    fps: Fraction | None = None
    duration: Fraction | None = None
    text: str = ""  # speech: the words of the line
    voice: str = ""  # speech: the speaker's voice and the line's direction
    speaker: str | None = None  # speech: the character who says it
    language: str | None = None
    take: int | None = None

    def as_dict(self) -> dict[str, object]:
        return attrs.asdict(self, recurse=False)


FIELD_NAMES = tuple(a.name for a in attrs.fields(Fields))


# The part an input plays in the step that uses it.
FIRST_FRAME = "first_frame"  # clip: the picked keyframe (or the shot before's last frame)
LAST_FRAME = "last_frame"  # clip: where the motion ends: the next shot's picked keyframe
CHARACTER = "character"  # keyframe: a character's sheet in the outfit the shot uses
LOCATION = "location"  # keyframe: the location plate at the shot's time of day
SPEECH = "speech"  # shot, mix: a line's audio, placed at `start` (mix: in film time)
CLIP = "clip"  # shot: the picked clip; lastframe: the clip whose last frame it is
SHOT = "shot"  # film: one conformed shot, in film order
MIX = "mix"  # film: the mixed sound, its audio track
MUSIC = "music"  # mix: a music cue, placed at `start` (film time) until `end`
AMBIENCE = "ambience"  # mix: a scene's background sound, from `start` to `end`
EFFECT = "effect"  # mix: a sound effect, at `start`
SUBTITLES = "subtitles"  # film: the subtitle track
PANEL = "panel"  # storyboard: a keyframe with its label
PAGES = "pages"  # storyboard_index: a scene's storyboard pages (named, never read)
REFERENCE = "reference"  # sheet, plate: the user's own images of the subject
MEDIA = "media"  # export: a file the export names
ROLES = (FIRST_FRAME, LAST_FRAME, CHARACTER, LOCATION, SPEECH, CLIP, SHOT, SUBTITLES, PANEL,
         REFERENCE, MEDIA, MUSIC, AMBIENCE, EFFECT, MIX, PAGES)
# The roles whose files a step names and never reads: handed over as the store's objects
# themselves, their extensions beside them (backends/protocol.py `Input.ext`), not linked
# into its work folder one by one (an export of a feature names some 15,000).
NAMED = frozenset({PAGES, MEDIA})
# The roles whose files the built-in `local` renderer reads where the store keeps them, by
# their content whatever their name: handed over as NAMED ones are (the film's 3,000
# shots were linked into its work folder and unlinked again, 60 ms of every edit's film).
IN_PLACE = frozenset({SHOT})


@attrs.frozen
class Tags:
    """What an input shows, beyond its role."""

    character: str | None = None
    outfit: str | None = None
    location: str | None = None
    time: str | None = None
    start: Fraction | None = None  # speech: seconds from the shot's start
    end: Fraction | None = None
    label: str | None = None  # storyboard: the panel's caption


@attrs.frozen
class InputRef:
    """An edge of the step graph, as the dependent step sees it."""

    step: str  # the node id of the step whose outputs this is
    role: str
    tags: Tags = Tags()
