"""Any hosted model, for the generic services (fal, Replicate): filmc.toml says, per step
kind, which model makes it and which of the model's inputs gets each of filmc's fields
and images; what the backend honours follows from that mapping.

    [backends.fal_kling]
    type = "fal"
    api_key_env = "FAL_KEY"
    [backends.fal_kling.clip]
    model = "fal-ai/kling-video/v2.1/pro/image-to-video"
    inputs = { prompt = "prompt", first_frame = "image_url", last_frame = "tail_image_url",
               negative = "negative_prompt", duration = { name = "duration", as = "string" } }
    durations = [5, 10]          # what the model makes: the shot step trims to the shot
    extra = { cfg_scale = 0.5 }  # sent as written

The table of a kind (`[backends.NAME.clip]`, or `keyframe = { ... }`) says it makes
that kind; keys written at the backend's top level (`model`, `inputs`, ...) are
defaults for every kind it makes, and `kinds = ["sheet", "plate", "keyframe"]` makes
kinds without tables of their own.  A field the mapping does not give the model is
not honoured, and `filmc plan` says so before anything is spent; it does not enter
the steps' keys either (a shot's negative prompt re-makes nothing on a model that
never sees it).

    specs, problems = read(settings, "fal", own_settings)   # per kind; F0511 problems
    spec.capabilities(), spec.fields(), spec.key()           # what the compiler asks
    body = await model_input(spec, request, place)           # the model's input, as JSON

What the two adapters share besides the mapping (their declarations, results found
and kept, images uploaded once) is `HostedModel`, in hosted.py.
"""

from __future__ import annotations

import asyncio
import difflib
import math
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from fractions import Fraction
from typing import Any

import attrs

from ..lang.steps import FIRST_FRAME, LAST_FRAME
from .fit import aspect_ratio, clip_length, nearest_size
from .inputs import describe, key_seed, references
from .protocol import Capabilities, FailureKind, Input, Json, Request, ServiceError, SettingProblem
from .settings import ENGINE

MADE = ("sheet", "plate", "keyframe", "clip")  # the kinds a hosted model can make
# What a kind's table (or the backend's top level, as defaults) may hold.
SPEC_KEYS = ("model", "inputs", "extra", "output", "durations", "aspect_ratios", "sizes",
             "max_references", "describe_references")
CASTS = ("string", "integer", "number", "list")
IMAGES = (FIRST_FRAME, LAST_FRAME)


@attrs.frozen
class Name:
    """One of filmc's names a mapping can give a model input."""

    fields: frozenset[str]  # the request fields its value is made from (for content keys)
    kinds: tuple[str, ...]  # the step kinds that have it
    says: str  # what the model gets, for messages


_ANY, _CLIP = MADE, ("clip",)
_SIZE = frozenset({"width", "height"})
NAMES: Mapping[str, Name] = {
    "prompt": Name(frozenset({"prompt"}), _ANY, "the step's prompt"),
    "negative": Name(frozenset({"negative"}), _ANY, "the negative prompt (left out when the "
                                                    "shot has none)"),
    "seed": Name(frozenset({"seed"}), _ANY, "an integer: the shot's seed, else one made from "
                                            "the step's key"),
    "width": Name(_SIZE, _ANY, "the frame's width in pixels"),
    "height": Name(_SIZE, _ANY, "the frame's height in pixels"),
    "size": Name(_SIZE, _ANY, "`{ width, height }`, or `WIDTHxHEIGHT` with `as = \"string\"`"),
    "aspect_ratio": Name(_SIZE, _ANY, "`16:9`: the nearest of `aspect_ratios`, else the "
                                      "film's own"),
    "duration": Name(frozenset({"duration"}), _CLIP, "seconds: the shortest of `durations` "
                                                     "that covers the shot"),
    "fps": Name(frozenset({"fps"}), _CLIP, "frames per second"),
    "frames": Name(frozenset({"fps", "duration"}), _CLIP, "an integer: duration × fps"),
    "first_frame": Name(frozenset(), _CLIP, "the image the clip starts from"),
    "last_frame": Name(frozenset(), _CLIP, "the image the clip ends on"),
    "references": Name(frozenset(), _ANY, "reference images: the cast's sheets, the "
                                          "location's plate, the subject's own pictures"),
}


@attrs.frozen
class Target:
    """Where one of filmc's values goes: a model input (several, for references written as
    a list of names: one image each), and how the value is written."""

    names: tuple[str, ...]
    cast: str | None = None  # CASTS
    format: str | None = None  # "{}s": the value as text, in a template
    many: bool = False  # references into one list input

    def json(self) -> Json:
        return {"names": list(self.names), "as": self.cast, "format": self.format,
                "many": self.many}


@attrs.frozen
class ModelSpec:
    """What one step kind of a backend runs: the model, and what it is given."""

    kind: str
    model: str  # "" when filmc.toml names none (check_settings says so)
    inputs: Mapping[str, Target] = attrs.field(factory=dict)
    extra: Mapping[str, Json] = attrs.field(factory=dict)
    output: str | None = None
    durations: tuple[Fraction, ...] | None = None
    aspect_ratios: tuple[str, ...] | None = None
    sizes: tuple[tuple[int, int], ...] | None = None
    max_references: int | None = None
    describe_references: bool = False

    def capabilities(self) -> Capabilities:
        refs = self.inputs.get("references")
        if refs is None:
            takes: int | None = 0
        elif refs.many:
            takes = self.max_references
        else:
            takes = len(refs.names) if self.max_references is None \
                else min(len(refs.names), self.max_references)
        return Capabilities(seed="seed" in self.inputs, negative="negative" in self.inputs,
                            references=takes, first_frame=FIRST_FRAME in self.inputs,
                            last_frame=LAST_FRAME in self.inputs,
                            durations=self.durations if self.kind == "clip" else None,
                            sizes=self.sizes, aspect_ratios=self.aspect_ratios)

    def fields(self) -> frozenset[str]:
        """The request fields the model is given (for content keys; `take` is added)."""
        return frozenset().union(*(NAMES[n].fields for n in self.inputs if n in NAMES))

    def key(self) -> dict[str, Json]:
        """Everything of the mapping that changes what the model makes, as JSON."""
        return {"model": self.model,
                "inputs": {n: t.json() for n, t in sorted(self.inputs.items())},
                "extra": dict(self.extra), "output": self.output,
                "durations": None if self.durations is None else [str(d) for d in
                                                                  self.durations],
                "aspect_ratios": None if self.aspect_ratios is None else list(
                    self.aspect_ratios),
                "sizes": None if self.sizes is None else [list(s) for s in self.sizes],
                "max_references": self.max_references,
                "describe_references": self.describe_references}


# -- reading and checking filmc.toml --------------------------------------------------------


def specs(settings: Mapping[str, Any]) -> dict[str, ModelSpec]:
    """The model spec of every kind the backend makes (check_settings says what is wrong)."""
    return read(settings, "", ())[0]


def spec_for(kind: str, settings: Mapping[str, Any]) -> ModelSpec | None:
    return specs(settings).get(kind)


def read(settings: Mapping[str, Any], adapter: str,
         own: Iterable[str]) -> tuple[dict[str, ModelSpec], list[SettingProblem]]:
    """Each kind's spec, and the problems of the settings: unknown settings (the adapter's
    `own` settings and the engine's are known), kinds without a model, unknown filmc
    names, values of the wrong type."""
    problems: list[SettingProblem] = []
    known = (*SPEC_KEYS, *ENGINE, *MADE, "kinds", *own)
    for key in settings:
        if key not in known:
            near = difflib.get_close_matches(key, known, n=1, cutoff=0.75)
            problems.append(SettingProblem(
                key, f"the `{adapter}` adapter has no setting `{key}`",
                f"did you mean `{near[0]}`?" if near else
                "a model's own inputs go under `extra` (sent as written) or `inputs` (filmc's "
                "values); settings are " + ", ".join(f"`{k}`" for k in known[:9]),
                warning=not isinstance(settings[key], Mapping)))
    made = _kinds(settings, problems)
    # Kinds without a table share the top level's spec: its problems are said once, for all.
    shared = [k for k in made if not isinstance(settings.get(k), Mapping)]
    together = " and ".join(filter(None, [", ".join(shared[:-1]), shared[-1]])) if shared else ""
    out = {}
    for kind in made:
        table = settings.get(kind)
        where = kind if isinstance(table, Mapping) else None
        merged = {k: settings[k] for k in SPEC_KEYS if k in settings}
        if isinstance(table, Mapping):
            for key in table:
                if key not in SPEC_KEYS:
                    near = difflib.get_close_matches(key, SPEC_KEYS, n=1, cutoff=0.6)
                    problems.append(SettingProblem(
                        kind, f"`{kind}.{key}` is not a setting of a model",
                        f"did you mean `{near[0]}`?" if near else
                        "a kind's table takes " + ", ".join(f"`{k}`" for k in SPEC_KEYS)))
            merged.update({k: table[k] for k in SPEC_KEYS if k in table})
        out[kind] = _spec(kind, merged, where, problems, kind if where else together)
    if not made:
        problems.append(SettingProblem(
            "kinds", f"this `{adapter}` backend makes nothing: give it a table per step kind",
            "e.g. `[backends.NAME.keyframe]` with `model = \"...\"` and `inputs = { prompt "
            "= \"prompt\" }`, or `kinds = [\"sheet\", \"plate\", \"keyframe\"]` with a "
            "`model` and `inputs` for all of them"))
    unique = {(p.setting, p.message): p for p in problems}  # shared specs: said once
    return out, list(unique.values())


def _kinds(settings: Mapping[str, Any], problems: list[SettingProblem]) -> list[str]:
    made = [k for k in MADE if k in settings]
    for kind in made:
        if not isinstance(settings[kind], Mapping):
            problems.append(SettingProblem(kind, f"`{kind}` must be a table: the model that "
                                                 f"makes {kind} steps and its inputs",
                                           f"write `[backends.NAME.{kind}]` with `model` and "
                                           f"`inputs` below it"))
    listed = settings.get("kinds")
    if listed is None:
        return [k for k in made if isinstance(settings[k], Mapping)]
    if not (isinstance(listed, list) and all(isinstance(k, str) for k in listed)):
        problems.append(SettingProblem("kinds", "`kinds` must be a list of step kinds",
                                       'e.g. `kinds = ["sheet", "plate", "keyframe"]`'))
        listed = []
    for kind in listed:
        if kind not in MADE:
            near = difflib.get_close_matches(kind, MADE, n=1)
            problems.append(SettingProblem(
                "kinds", f"`{kind}` is not a step kind a model can make",
                f"did you mean `{near[0]}`?" if near else
                "they are " + ", ".join(f"`{k}`" for k in MADE)))
    return [k for k in MADE if k in listed or (k in made and isinstance(settings[k], Mapping))]


def _spec(kind: str, table: Mapping[str, Any], where: str | None,
          problems: list[SettingProblem], label: str) -> ModelSpec:
    """`kind`'s spec from its merged table (`where`: its own table's name, None for the
    top level's); `label` names the kinds a problem concerns."""
    def problem(key: str, message: str, help: str | None = None, warning: bool = False) -> None:
        path = f"{kind}.{key}" if where else key
        problems.append(SettingProblem(where or key.split(".")[0],
                                       message.replace("{path}", f"`{path}`"), help, warning))

    model = table.get("model")
    if not (isinstance(model, str) and model.strip()):
        problem("model", f"{label} steps need a `model`: the id of the model that makes them"
                if model is None else "{path} must be the model's id, in quotes",
                "copy it from the model's page at the service, e.g. "
                '`model = "fal-ai/flux-pro/kontext"` or `model = "black-forest-labs/flux-dev"`')
        model = ""
    inputs = _inputs(kind, label, table.get("inputs"), problem)
    extra = table.get("extra", {})
    if not isinstance(extra, Mapping):
        problem("extra", "{path} must be a table of the model's inputs, sent as written",
                'e.g. `extra = { cfg_scale = 0.5 }`')
        extra = {}
    given = {n for t in inputs.values() for n in t.names}
    for name in sorted(given & set(extra)):
        problem("extra", f"the model input `{name}` is both in {{path}} and in `inputs`",
                "keep one: `inputs` for filmc's values, `extra` for fixed ones")
    output = table.get("output")
    if output is not None and not (isinstance(output, str) and output.strip()):
        problem("output", "{path} must be where the result's URL is, e.g. `\"images.0.url\"`")
        output = None
    durations = _numbers(table.get("durations"), "durations", problem)
    ratios = _ratios(table.get("aspect_ratios"), problem)
    sizes = _sizes(table.get("sizes"), problem)
    most = table.get("max_references")
    if most is not None and not (isinstance(most, int) and not isinstance(most, bool)
                                 and most >= 0):
        problem("max_references", "{path} must be a whole number, 0 or more")
        most = None
    describe = table.get("describe_references", False)
    if not isinstance(describe, bool):
        problem("describe_references", "{path} must be `true` or `false`")
        describe = False
    _advise(kind, label, inputs, durations, ratios, problem)
    return ModelSpec(kind, str(model), inputs, dict(extra), output, durations, ratios, sizes,
                     most, describe)


def _inputs(kind: str, label: str, table: Any,
            problem: Callable[..., None]) -> dict[str, Target]:
    if table is None:
        problem("inputs", f"{label} steps give the model nothing: {{path}} is missing",
                'map filmc\'s values onto the model\'s inputs, e.g. `inputs = { prompt = '
                '"prompt", seed = "seed" }`', warning=True)
        return {}
    if not isinstance(table, Mapping):
        problem("inputs", "{path} must be a table: filmc's name = the model's input name",
                'e.g. `inputs = { prompt = "prompt", first_frame = "image_url" }`')
        return {}
    out: dict[str, Target] = {}
    seen: dict[str, str] = {}
    for name, value in table.items():
        spot = f"inputs.{name}"
        if name not in NAMES:
            near = difflib.get_close_matches(name, list(NAMES), n=1, cutoff=0.6)
            problem(spot, f"{{path}}: `{name}` is not one of filmc's values",
                    f"did you mean `{near[0]}`?" if near else
                    "filmc gives " + ", ".join(f"`{n}`" for n in NAMES)
                    + "; a fixed value for the model goes under `extra`")
            continue
        if kind not in NAMES[name].kinds:
            problem(spot, f"{{path}}: {label} steps have no `{name}` ({NAMES[name].says})",
                    f"`{name}` is for clip steps")
            continue
        target = _target(name, value, spot, problem)
        if target is None:
            continue
        for model_input in target.names:
            if model_input in seen:
                problem(spot, f"{{path}}: the model input `{model_input}` is also given "
                              f"`{seen[model_input]}`", "give each model input one value")
            seen[model_input] = name
        out[name] = target
    return out


def _target(name: str, value: Any, spot: str, problem: Callable[..., None]) -> Target | None:
    how = ('the model input\'s name (`"image_url"`), or `{ name = "duration", as = "string" }`'
           + ('; references may also be a list of names, one image each: `["image_1", '
              '"image_2"]`' if name == "references" else ""))
    if isinstance(value, str) and value:
        return Target((value,), many=name == "references")
    if name == "references" and isinstance(value, list):
        if value and all(isinstance(v, str) and v for v in value):
            return Target(tuple(value))
        problem(spot, "{path} must list the model's input names, in quotes", how)
        return None
    if not isinstance(value, Mapping):
        problem(spot, "{path} must be a model input's name, in quotes", how)
        return None
    bad = sorted(set(value) - {"name", "as", "format"})
    if bad:
        problem(spot, f"{{path}} has no `{bad[0]}`", "it takes `name`, `as` and `format`")
    model_input, cast, fmt = value.get("name"), value.get("as"), value.get("format")
    if not (isinstance(model_input, str) and model_input):
        problem(spot, "{path} needs `name`: the model input's name", how)
        return None
    if cast is not None and cast not in CASTS:
        near = difflib.get_close_matches(str(cast), CASTS, n=1, cutoff=0.5)
        problem(spot, f"{{path}}: `as = {cast!r}` is not a type filmc writes",
                f"did you mean `{near[0]}`?" if near else
                "it writes " + ", ".join(f"`{c}`" for c in CASTS))
        cast = None
    if fmt is not None and not (isinstance(fmt, str) and "{}" in fmt):
        problem(spot, "{path}: `format` must be text with `{}` where the value goes",
                'e.g. `format = "{}s"` sends 5 s as `"5s"`')
        fmt = None
    return Target((model_input,), cast, fmt, many=name == "references")


def _numbers(value: Any, key: str,
             problem: Callable[..., None]) -> tuple[Fraction, ...] | None:
    if value is None:
        return None
    if isinstance(value, list) and value and all(
            isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)
            and v > 0 for v in value):
        return tuple(sorted({Fraction(v).limit_denominator(1000) for v in value}))
    problem(key, "{path} must be a list of clip lengths in seconds", "e.g. `durations = [5, 10]`")
    return None


def _ratios(value: Any, problem: Callable[..., None]) -> tuple[str, ...] | None:
    if value is None:
        return None
    if isinstance(value, list) and value and all(isinstance(v, str) and _ratio(v) for v in value):
        return tuple(value)
    problem("aspect_ratios", "{path} must be a list of ratios such as `\"16:9\"`",
            'e.g. `aspect_ratios = ["16:9", "9:16", "1:1"]`')
    return None


def _ratio(text: str) -> float | None:
    w, sep, h = text.partition(":")
    try:
        return float(w) / float(h) if sep and float(w) > 0 and float(h) > 0 else None
    except ValueError:
        return None


def _sizes(value: Any, problem: Callable[..., None]) -> tuple[tuple[int, int], ...] | None:
    if value is None:
        return None
    out = []
    for v in value if isinstance(value, list) else [None]:
        w, _, h = v.partition("x") if isinstance(v, str) else ("", "", "")
        if not (w.isdigit() and h.isdigit() and int(w) and int(h)):
            problem("sizes", "{path} must be a list of sizes such as `\"1280x720\"`")
            return None
        out.append((int(w), int(h)))
    return tuple(out) or None


def _advise(kind: str, label: str, inputs: Mapping[str, Target], durations: Any, ratios: Any,
            problem: Callable[..., None]) -> None:
    """Warnings for mappings that work, but probably not as meant."""
    if kind == "clip":
        if FIRST_FRAME not in inputs:
            problem("inputs", "{path} gives the model no `first_frame`: the clips will not "
                              "start from the shots' keyframes", "map it, e.g. `first_frame = "
                              '"image_url"`, unless the model makes video from text alone',
                    warning=True)
        if durations is None:
            problem("durations", "clip steps have no {path}: filmc cannot know how long the "
                                 "model's clips are", "list the lengths the model makes, e.g. "
                                 "`durations = [5, 10]`", warning=True)
    elif inputs and "prompt" not in inputs:
        problem("inputs", f"{{path}} gives the model no `prompt`: {label} steps are described "
                          f"by their prompt", 'map it, e.g. `prompt = "prompt"`', warning=True)
    if "aspect_ratio" in inputs and ratios is None:
        problem("aspect_ratios", "the model is given `aspect_ratio` and {path} is missing: "
                                 "the film's own ratio may be one it does not take",
                'list the ratios it takes, e.g. `aspect_ratios = ["16:9", "9:16", "1:1"]`',
                warning=True)


# -- one request ------------------------------------------------------------------------


Place = Callable[[Input], Awaitable[str]]  # an image → what the model input holds (a URL)


async def model_input(spec: ModelSpec, request: Request, place: Place) -> dict[str, Json]:
    """The model's input for one step: `extra`, then each mapped value; images as `place`
    makes them (a data URI, or an upload's URL)."""
    body: dict[str, Json] = dict(spec.extra)
    refs = references(request) if "references" in spec.inputs else ()
    if spec.max_references is not None:
        refs = refs[:spec.max_references]
    images = {r: "" for r in refs}
    for role in IMAGES:
        if role in spec.inputs:
            images.update({i: "" for i in request.of(role)[:1]})
    placed = await asyncio.gather(*(_placed(place, i) for i in images))
    where = dict(zip(images, placed))
    for name, target in spec.inputs.items():
        if name == "references":
            urls = [where[r] for r in refs]
            if urls and target.many:
                body[target.names[0]] = _cast(urls, target)
            elif urls:
                body.update(zip(target.names, urls))
            continue
        if name in IMAGES:
            given = request.of(name)
            value: Json | None = where[given[0]] if given else None
        else:
            value = value_of(name, spec, request, refs)
        if value is not None:
            body[target.names[0]] = _cast(value, target)
    return body


async def _placed(place: Place, item: Input) -> str:
    try:
        return await place(item)
    except OSError as e:  # nothing was sent
        raise ServiceError(FailureKind.INVALID, f"cannot read the input `{item.path}` (from "
                                                f"`{item.step}`): {e.strerror or e}",
                           unbilled=True) from None


def value_of(name: str, spec: ModelSpec, request: Request,
             refs: Sequence[Input] = ()) -> Json | None:
    """filmc's value `name` for this request; None: it has none (the input is left out)."""
    f = request.fields
    if name == "prompt":
        return describe(refs) + f.prompt if spec.describe_references else f.prompt
    if name == "negative":
        return f.negative or None
    if name == "seed":
        return f.seed if f.seed is not None else key_seed(request.key)
    if name in ("width", "height", "size", "aspect_ratio"):
        if not (f.width and f.height):
            return None
        w, h = nearest_size(f.width, f.height, spec.sizes) if spec.sizes else (f.width, f.height)
        if name == "aspect_ratio":
            return aspect_ratio(w, h, spec.aspect_ratios) if spec.aspect_ratios \
                else f"{w // math.gcd(w, h)}:{h // math.gcd(w, h)}"
        return {"width": w, "height": h, "size": {"width": w, "height": h}}[name]
    length = generated_length(spec, request)
    if name == "duration":
        return None if length is None else _plain(length)
    if name == "fps":
        return None if f.fps is None else _plain(f.fps)
    if name == "frames":
        return None if length is None or f.fps is None else round(length * f.fps)
    return None


def generated_length(spec: ModelSpec, request: Request) -> Fraction | None:
    """How long a clip the model is asked for: the shortest of `durations` that covers
    the shot (the shot step trims it), else the shot's own length."""
    d = request.fields.duration
    if d is None:
        return None
    return clip_length(d, spec.durations) if spec.durations else Fraction(d)


def _plain(value: Fraction | float) -> int | float:
    return int(value) if Fraction(value).denominator == 1 else float(value)


def _cast(value: Any, target: Target) -> Json:
    if isinstance(value, Mapping) and target.cast == "string":  # a size
        value = f"{value['width']}x{value['height']}"
    elif target.cast == "string":
        value = _text(value)
    elif target.cast == "integer" and isinstance(value, (int, float)):
        value = round(value)
    elif target.cast == "number" and isinstance(value, (int, float)):
        value = float(value)
    if target.format is not None:
        value = target.format.replace("{}", _text(value))
    return [value] if target.cast == "list" and not isinstance(value, list) else value


def _text(value: Any) -> str:
    return f"{value:g}" if isinstance(value, float) else str(value)
