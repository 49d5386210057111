"""What each Runway model takes, the settings that choose one, and what a request says.

Runway's API reference documents, per model, the resolutions (`ratio`) it
makes, the clip lengths, whether it takes a seed, a negative prompt, a last
frame, and how many reference images.  `CLIP_MODELS` and `IMAGE_MODELS` hold
that; `ratios`, `durations` and `references` override it for a model filmc
does not know yet (a Gen-4 model's limits are assumed meanwhile, with a
warning at the setting).

A text_to_image request names each reference by a tag (`@CHEN`), so the
prompt opens by saying what each tagged image shows; a prompt longer than the
model's limit loses its last lines first (the action comes first, the style
last).
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import Any

import attrs

from ...lang.steps import CHARACTER, LOCATION
from ..protocol import Input, SettingProblem
from ..settings import ENGINE, Problems, number

DEFAULT_BASE_URL = "https://api.dev.runwayml.com"
DEFAULT_CLIP_MODEL = "gen4_turbo"
DEFAULT_IMAGE_MODEL = "gen4_image"


@attrs.frozen
class Model:
    """What one Runway model takes, as its API reference documents it."""

    ratios: tuple[str, ...]
    durations: tuple[int, ...] = ()  # clip lengths in whole seconds
    seed: bool = True
    negative: bool = False
    last_frame: bool = False
    references: int = 0  # reference images (text_to_image)
    needs_reference: bool = False
    prompt_limit: int = 1000  # UTF-16 code units


GEN4_CLIP = ("1280:720", "720:1280", "1104:832", "832:1104", "960:960", "1584:672")
VEO_CLIP = ("1280:720", "720:1280", "1080:1920", "1920:1080")
GEN4_IMAGE = ("1920:1080", "1080:1920", "1024:1024", "1360:768", "1080:1080", "1168:880",
              "1440:1080", "1080:1440", "1808:768", "2112:912", "1280:720", "720:1280",
              "720:720", "960:720", "720:960", "1680:720")
TWO_TO_TEN = tuple(range(2, 11))
CLIP_MODELS = {
    "gen4_turbo": Model(GEN4_CLIP, TWO_TO_TEN),
    "gen4.5": Model(GEN4_CLIP, TWO_TO_TEN),
    "veo3.1": Model(VEO_CLIP, (4, 6, 8), seed=False, negative=True, last_frame=True),
    "veo3.1_fast": Model(VEO_CLIP, (4, 6, 8), seed=False, negative=True, last_frame=True),
    "veo3": Model(VEO_CLIP, (8,), seed=False, negative=True),
}
IMAGE_MODELS = {
    "gen4_image": Model(GEN4_IMAGE, references=3),
    "gen4_image_turbo": Model(GEN4_IMAGE, references=3, needs_reference=True),
}

# What each kind of step reads (for content keys; the rest is where and how fast).
CLIP_SETTINGS = frozenset({"model", "ratios", "durations", "public_figure_threshold"})
IMAGE_SETTINGS = frozenset({"image_model", "image_ratios", "references",
                            "public_figure_threshold"})
KNOWN = CLIP_SETTINGS | IMAGE_SETTINGS | {*ENGINE, "base_url", "api_version"}


# -- what a model takes ---------------------------------------------------------------------


def model_name(kind: str, settings: Mapping[str, Any]) -> str:
    if kind == "clip":
        return str(settings.get("model") or DEFAULT_CLIP_MODEL)
    return str(settings.get("image_model") or DEFAULT_IMAGE_MODEL)


def model_of(kind: str, settings: Mapping[str, Any]) -> Model:
    """The model's documented limits (a Gen-4 model's, for one filmc does not know)."""
    name = model_name(kind, settings)
    if kind == "clip":
        return CLIP_MODELS.get(name, CLIP_MODELS[DEFAULT_CLIP_MODEL])
    return IMAGE_MODELS.get(name, IMAGE_MODELS[DEFAULT_IMAGE_MODEL])


def ratios_of(kind: str, settings: Mapping[str, Any]) -> tuple[str, ...]:
    given = settings.get("ratios" if kind == "clip" else "image_ratios")
    if isinstance(given, list) and given and all(ratio_size(r) for r in given):
        return tuple(str(r) for r in given)
    return model_of(kind, settings).ratios


def durations_of(settings: Mapping[str, Any]) -> tuple[int, ...]:
    given = settings.get("durations")
    if isinstance(given, list) and given and all(_whole(d) for d in given):
        return tuple(sorted(int(d) for d in given))
    return model_of("clip", settings).durations or TWO_TO_TEN


def references_of(settings: Mapping[str, Any]) -> int:
    given = settings.get("references")
    return given if isinstance(given, int) and _whole(given, low=0) else \
        model_of("keyframe", settings).references


def ratio_size(ratio: Any) -> tuple[int, int] | None:
    m = re.fullmatch(r"(\d+):(\d+)", ratio) if isinstance(ratio, str) else None
    return (int(m[1]), int(m[2])) if m and int(m[1]) and int(m[2]) else None


def _whole(value: Any, low: int = 1) -> bool:
    return number(value, low, whole=True)


# -- prompts and references -----------------------------------------------------------------


def tag_all(refs: Sequence[Input]) -> list[str]:
    """Each reference's `@tag`: the character's or location's id (`CHEN`), the outfit added
    where one character has several sheets (`CHEN_winter`), made to Runway's rule (3-16
    letters, digits and `_`, a letter first) and unique."""
    names = [r.tags.character or r.tags.location or "ref" for r in refs]
    tags: list[str] = []
    for ref, name in zip(refs, names):
        if names.count(name) > 1 and ref.tags.outfit:
            name = f"{name}_{ref.tags.outfit}"
        tag = re.sub(r"[^A-Za-z0-9_]", "_", name)
        tag = (tag if tag[:1].isalpha() else f"R{tag}").ljust(3, "_")[:16]
        unique, n = tag, 2
        while unique in tags:
            unique = f"{tag[:16 - len(str(n)) - 1]}_{n}"
            n += 1
        tags.append(unique)
    return tags


def describe(refs: Sequence[Input], tags: Sequence[str]) -> str:
    """What each tagged reference shows, as the prompt's opening sentence."""
    said = []
    for ref, tag in zip(refs, tags):
        t = ref.tags
        if ref.role == CHARACTER and t.character:
            said.append(f"@{tag} is {t.character}" + (f" ({t.outfit} outfit)" if t.outfit else ""))
        elif ref.role == LOCATION and t.location:
            said.append(f"@{tag} is the location {t.location}" + (f" ({t.time})" if t.time else ""))
        else:
            subject = t.character or t.location
            said.append(f"@{tag} is a reference image" + (f" of {subject}" if subject else ""))
    return "; ".join(said) + ".\n" if said else ""


def fit_prompt(text: str, limit: int) -> str:
    """`text` within `limit` UTF-16 code units (Runway's measure): whole lines dropped from
    the end (the style, light and camera lines come last), then words."""
    def size(s: str) -> int:
        return len(s.encode("utf-16-le")) // 2

    text = text.strip()
    if size(text) <= limit:
        return text
    lines = text.splitlines()
    while len(lines) > 1 and size("\n".join(lines)) > limit:
        lines.pop()
    text = "\n".join(lines)
    while size(text) > limit:
        cut = text.rfind(" ", 0, len(text) - 1)
        text = text[:cut] if cut > 0 else text[:-1]
    return text.rstrip()


# -- settings -------------------------------------------------------------------------------


def check(settings: Mapping[str, Any]) -> list[SettingProblem]:
    problem = Problems()
    problem.strings(settings, ("model", "image_model", "base_url", "api_version"))
    for name, table, kind in (("model", CLIP_MODELS, "clip"),
                              ("image_model", IMAGE_MODELS, "keyframe")):
        value = settings.get(name)
        if isinstance(value, str) and value and value not in table:
            listed = ", ".join(f"`{m}`" for m in table)
            extra = ("`ratios` and `durations`" if kind == "clip"
                     else "`image_ratios` and `references`")
            problem(name, f"filmc does not know Runway's model `{value}`",
                    f"it knows {listed}; for another, set {extra} as its API reference says "
                    f"(filmc assumes a Gen-4 model's meanwhile)", warning=True)
    problem.http_url(settings, "base_url",
                     f"for Runway itself leave it out (it is `{DEFAULT_BASE_URL}`)")
    for name, kind in (("ratios", "clip"), ("image_ratios", "keyframe")):
        if name not in settings:
            continue
        value = settings[name]
        if not (isinstance(value, list) and value and all(ratio_size(r) for r in value)):
            problem(name, f"`{name}` must be a list of resolutions such as `\"1280:720\"`")
            continue
        known = model_of(kind, settings).ratios
        odd = [r for r in value if r not in known]
        setting = "model" if kind == "clip" else "image_model"
        if odd and settings.get(setting, "") in (CLIP_MODELS if kind == "clip" else IMAGE_MODELS):
            problem(name, f"Runway's `{model_name(kind, settings)}` does not make "
                    + ", ".join(f"`{r}`" for r in odd),
                    "it makes " + ", ".join(f"`{r}`" for r in known), warning=True)
    if "durations" in settings:
        value = settings["durations"]
        if not (isinstance(value, list) and value and all(_whole(d) for d in value)):
            problem("durations", "`durations` must be a list of whole seconds, such as `[5, 10]`")
    if "references" in settings and not _whole(settings["references"], low=0):
        problem("references", "`references` must be a whole number ≥ 0",
                "how many reference images the image model takes (3 for gen4_image)")
    threshold = settings.get("public_figure_threshold")
    if threshold is not None and threshold not in ("auto", "low"):
        problem("public_figure_threshold", "`public_figure_threshold` must be `auto` or `low`")
    problem.near_misses(settings, KNOWN, "runway")
    return problem
