"""What each block accepts: its attributes, their value types, and nested blocks.

This table is the language's vocabulary.  The checker validates against it
(unknown attribute → did-you-mean over the keys of the block), the formatter
reads `comma` from it, docs/language.md documents it, and the compiler reads the
same attributes.  A value type is one of:

    string      "text"
    name        an identifier (checked by the attribute's own rule)
    int         a whole number           number   any number
    duration    4s · 1.5s · 500ms · 0:04 · 1:02.5 · 96f (frames at the film's fps)
    size        1920x1080                ratio    2.39:1 · 16:9
    lens        35mm                     color    #f4a259
    path        "refs/chen.png" (a reference image inside the project)
    camera      a camera preset name, a lens (`85mm`) or extra prompt words ("...")
    light       a light preset name or extra prompt words
    style       a style preset name or extra prompt words
    cast        a character id, with an outfit: `CHEN(winter)`
    tag         a name or a string
    step        a step kind (see STEP_KINDS)
    motion      a camera motion kind (see MOTIONS)
    direction   where a key light comes from (see KEY_DIRECTIONS)
    slot        a camera slot (see CAMERA_SLOTS)
    time        a time of day (see TIMES_OF_DAY)
    framing     what of a character is in frame (see FRAMINGS)
    being       what a character is (see BEINGS)
    previous    the word `previous` (the shot before, in film order)
    at          the word `at` (`sfx "ice cracks" at 2.5s`)
    for         the word `for` (`music "tense drums" for 20s`)
    next        the word `next` (the shot after, in film order)

`sig` lists the value types in order; a trailing `+` means one or more of the
last type, `*` zero or more, `?` an optional value (only at the end: `for? duration?`
takes both or neither, which the checker says when one comes alone).
"""

from __future__ import annotations

import attrs

from .steps import ASSIGNABLE

_field = attrs.field  # BlockSpec has a field called `attrs`


@attrs.frozen
class AttrSpec:
    key: str
    sig: tuple[str, ...]
    doc: str
    repeat: bool = False  # may appear more than once in a block
    comma: bool = False  # fmt separates values with ", "


@attrs.frozen
class BlockSpec:
    """A kind of block: its attributes and the nested blocks it may hold."""

    name: str  # how diagnostics call it: "shot", "character", ...
    attrs: dict[str, AttrSpec]
    blocks: dict[str, BlockHeader] = _field(factory=dict)
    dialogue: bool = False


@attrs.frozen
class BlockHeader:
    """A nested block such as `outfit winter "coat" { ... }`: header values and body."""

    key: str
    sig: tuple[str, ...]
    doc: str
    body: str  # key into BLOCKS
    repeat: bool = True
    inline: bool = False  # may also be written as a plain attribute line, without a body


STEP_KINDS = ASSIGNABLE  # the kinds `backend STEP NAME` may name (lang/steps.py)
CAMERA_SLOTS = ("size", "angle", "lens", "movement")
MOTIONS = (
    "static", "pan_left", "pan_right", "tilt_up", "tilt_down", "push_in", "pull_out",
    "truck_left", "truck_right", "crane_up", "crane_down", "zoom_in", "zoom_out",
    "handheld", "orbit", "tracking",
)
TIMES_OF_DAY = (
    "DAWN", "SUNRISE", "MORNING", "DAY", "NOON", "AFTERNOON", "GOLDEN_HOUR", "SUNSET", "DUSK",
    "EVENING", "NIGHT", "MIDNIGHT", "CONTINUOUS", "LATER",
)
PRESET_KINDS = ("camera", "light", "style")
KEY_DIRECTIONS = ("left", "right", "front", "back", "top")
# What of a character a shot shows (`framing CHEN hands`): the prompt and the references
# the keyframe gets follow it (compiler/graph.py).
FRAMINGS = ("face", "figure", "hands", "back", "silhouette", "voice")
# What a character is (`kind animal`): the animatic draws a person, a four-legged animal
# or a creature; the prompts do not change (the look says what it is).
BEINGS = ("person", "animal", "creature")
# Parentheticals that mean the speaker is not in frame: no "not in the cast" warning.
OFF_SCREEN = ("V.O.", "O.S.", "O.C.", "VO", "OS", "OC", "voice-over", "off screen", "off-screen")


def _a(key: str, sig: str, doc: str, **kw) -> AttrSpec:
    return AttrSpec(key, tuple(sig.split()), doc, **kw)


# Attributes that set shot defaults: allowed in film, scene and shot blocks.
_SHOT_DEFAULTS = {
    a.key: a
    for a in [
        _a("camera", "camera+", "shot size, angle, lens and movement presets, a lens like `35mm`, extra words"),
        _a("light", "light+", "light presets and extra words"),
        _a("style", "style+", "style presets and extra words"),
        _a("negative", "string", "what the image must not show (negative prompt)"),
        _a("candidates", "int name?",
           "how many keyframe candidates to make, on a backend: `candidates 2 openai`; "
           "one line per backend", repeat=True),
        _a("takes", "int", "how many clips to make from the picked keyframe (at least 1)"),
        _a("seed", "int", "the generation seed, for repeatable results"),
        _a("backend", "step name", "the backend for one step kind: `backend clip kling`", repeat=True),
        _a("fallback", "step name",
           "the backend that makes a step kind when its backend refuses the content: "
           "`fallback clip runway`", repeat=True),
        _a("tags", "tag+", "free tags, for selection and reports"),
        _a("note", "string", "a note for people; never part of a prompt", repeat=True),
        _a("language", "string", "the language of the dialogue, like `en` or `zh`"),
    ]
}

_FILM_ATTRS = {
    a.key: a
    for a in [
        _a("aspect", "ratio", "the aspect ratio, like `2.39:1`"),
        _a("size", "size", "the frame size in pixels, like `1920x804`"),
        _a("fps", "number", "frames per second, like `24` or `23.976`"),
        _a("part", "path", "a file holding the next scenes of the film, in order", repeat=True),
        _a("duration", "duration", "the default duration of a shot that names none"),
    ]
}

# Music: described for a generator, or a file of the project (a string ending in an
# audio extension); from its scene's or shot's start to the next cue or the scene's end.
AUDIO_EXTENSIONS = (".wav", ".mp3", ".flac", ".ogg", ".m4a", ".aac")
_MUSIC_DOC = ("a music cue from here to the next cue or the scene's end, described "
              "(`music \"sparse erhu, tense\"`) or a file (`music \"music/theme.wav\"`); "
              "`for 20s` sets its length")

_SHOT_ATTRS = {
    a.key: a
    for a in [
        _a("cast", "cast*", "who is in frame, with outfits: `CHEN(winter), WOLF`; "
                            "a bare `cast` means nobody", comma=True),
        _a("action", "string", "what happens in the shot, in screenplay prose"),
        _a("framing", "name framing",
           "what of a character is in frame: `framing CHEN hands`", repeat=True),
        _a("sfx", "string at duration",
           "a sound effect at a time inside the shot: `sfx \"ice cracks\" at 2.5s`", repeat=True),
        _a("music", "string for? duration?", _MUSIC_DOC),
        _a("first_frame", "previous",
           "`first_frame previous`: the clip starts from the last frame of the shot before"),
        _a("last_frame", "next",
           "`last_frame next`: the clip ends on the next shot's picked keyframe"),
    ]
}

_SCENE_ATTRS = {
    a.key: a
    for a in [
        _a("duration", "duration", "the default duration of this scene's shots"),
        _a("cast", "cast+", "the default cast of this scene's shots", comma=True),
        _a("music", "string for? duration?", _MUSIC_DOC),
        _a("ambience", "string", "the scene's background sound: `ambience \"wind over grass\"`"),
    ]
}

_CHARACTER_ATTRS = {
    a.key: a
    for a in [
        _a("look", "string", "how the character looks: the words every prompt showing them uses"),
        _a("ref", "path", "a reference image of the character", repeat=True),
        _a("voice", "string", "how the character sounds, for speech generation"),
        _a("kind", "being", "what the character is: `person` (the default), `animal` or `creature`"),
        _a("outfit", "name string", "a named outfit: `outfit winter \"sheepskin coat\"`", repeat=True),
        _a("tags", "tag+", "free tags"),
        _a("note", "string", "a note for people", repeat=True),
    ]
}

_OUTFIT_ATTRS = {
    a.key: a
    for a in [
        _a("look", "string", "the outfit, when not given in the header"),
        _a("ref", "path", "a reference image of the character in this outfit", repeat=True),
        _a("note", "string", "a note for people", repeat=True),
    ]
}

_LOCATION_ATTRS = {
    a.key: a
    for a in [
        _a("look", "string", "how the place looks"),
        _a("ref", "path", "a reference image of the place", repeat=True),
        _a("light", "light+", "the default light of scenes set here"),
        _a("ambience", "string", "the background sound of scenes set here"),
        _a("tags", "tag+", "free tags"),
        _a("note", "string", "a note for people", repeat=True),
    ]
}

_AT_ATTRS = {
    a.key: a
    for a in [
        _a("look", "string", "how the place looks at this time of day"),
        _a("ref", "path", "a reference image at this time of day", repeat=True),
        _a("light", "light+", "the default light at this time of day"),
        _a("note", "string", "a note for people", repeat=True),
    ]
}

_PRESET_COMMON = {
    a.key: a
    for a in [
        _a("prompt", "string", "the words a prompt template uses for this preset"),
        _a("negative", "string", "words for the negative prompt"),
        _a("note", "string", "a note for people", repeat=True),
    ]
}

_CAMERA_PRESET_ATTRS = _PRESET_COMMON | {
    a.key: a
    for a in [
        _a("slot", "slot", "which part of the camera line it sets: size, angle, lens or movement"),
        _a("camera", "camera+", "other camera presets this one bundles, in order"),
        _a("lens", "lens", "the focal length"),
        _a("scale", "number", "animatic: subject height as a fraction of the frame (1 = full height)"),
        _a("tilt", "number", "animatic: camera pitch in degrees (positive looks up at the subject)"),
        _a("roll", "number", "animatic: horizon roll in degrees (dutch angle)"),
        _a("overhead", "number", "animatic: 1 for a top-down view, 0 for none"),
        _a("motion", "motion", "animatic: how the camera moves during the clip"),
        _a("amount", "number", "animatic: how far the motion goes (1 = the usual amount)"),
    ]
}

_LIGHT_PRESET_ATTRS = _PRESET_COMMON | {
    a.key: a
    for a in [
        _a("light", "light+", "other light presets this one bundles, in order"),
        _a("palette", "color color color color",
           "animatic: sky/background, ground, key light and shadow colours"),
        _a("contrast", "number", "animatic: contrast multiplier (1 = neutral)"),
        _a("brightness", "number", "animatic: brightness multiplier (1 = neutral)"),
        _a("key", "direction", "animatic: where the key light comes from: left, right, front, back, top"),
    ]
}

_STYLE_PRESET_ATTRS = _PRESET_COMMON | {
    a.key: a
    for a in [
        _a("style", "style+", "other style presets this one bundles, in order"),
        _a("palette", "color+", "animatic: colours that tint the frame"),
        _a("grain", "number", "animatic: film grain strength, 0 to 1"),
        _a("saturation", "number", "animatic: saturation multiplier (0 = black and white)"),
    ]
}

BLOCKS: dict[str, BlockSpec] = {
    "film": BlockSpec("film", _FILM_ATTRS | _SHOT_DEFAULTS),
    "scene": BlockSpec("scene", _SCENE_ATTRS | _SHOT_DEFAULTS),
    "shot": BlockSpec("shot", _SHOT_ATTRS | _SHOT_DEFAULTS, dialogue=True),
    "character": BlockSpec(
        "character", _CHARACTER_ATTRS,
        {"outfit": BlockHeader("outfit", ("name", "string?"), "a named outfit with its own references",
                               "outfit", inline=True)},
    ),
    "outfit": BlockSpec("outfit", _OUTFIT_ATTRS),
    "location": BlockSpec(
        "location", _LOCATION_ATTRS,
        {"at": BlockHeader("at", ("time",), "how the place looks at one time of day", "at")},
    ),
    "at": BlockSpec("time-of-day variant", _AT_ATTRS),
    "preset camera": BlockSpec("camera preset", _CAMERA_PRESET_ATTRS),
    "preset light": BlockSpec("light preset", _LIGHT_PRESET_ATTRS),
    "preset style": BlockSpec("style preset", _STYLE_PRESET_ATTRS),
}
