"""A user's API-format ComfyUI workflow, with `{{placeholders}}` where filmc writes.

The user builds a graph in ComfyUI, exports it with Workflow → Export (API),
and writes placeholders as the values of the node inputs that filmc should set:

    "6": {"class_type": "CLIPTextEncode", "inputs": {"text": "{{prompt}}", "clip": ["4", 1]}}
    "3": {"class_type": "KSampler", "inputs": {"seed": "{{seed}}", ...}}

A value that is exactly one placeholder becomes the typed value (an int seed,
a float fps, an uploaded image's name); a placeholder inside longer text
("masterpiece, {{prompt}}") is replaced as text.  Everything else in the
graph is the user's and goes to the server as written.

    flow = load(path)               # WorkflowError when it is not an API-format workflow
    for_kind("clip", settings, root)   `workflow_clip`'s, else `workflow`'s; None: no use
    flow.placeholders               frozenset({"prompt", "seed", "width", ...})
    flow.references                 2: it takes `{{reference_1}}` and `{{reference_2}}`
    check_settings(settings, kinds) what a user should hear of at compile time
    wanted = images(flow, request)  image placeholder → the request's input it shows
    fill(flow, values(flow, request, uploaded))   the graph, every placeholder replaced

`load` keeps the parsed file per path, size and modification time: the
compiler asks for capabilities and key fields once per step.
"""

from __future__ import annotations

import difflib
import functools
import json
import re
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import attrs

from ...lang.steps import CHARACTER, FIRST_FRAME, LAST_FRAME, LOCATION, REFERENCE
from ..inputs import key_seed
from ..protocol import FailureKind, Input, Request, ServiceError, SettingProblem

PATTERN = re.compile(r"\{\{\s*([A-Za-z0-9_]+)\s*\}\}")
_REFERENCE = re.compile(r"reference_([1-9][0-9]*)\Z")

# Placeholder → the request fields (lang.steps.Fields) it reads.
FIELDS: Mapping[str, frozenset[str]] = {
    "prompt": frozenset({"prompt"}),
    "negative": frozenset({"negative"}),
    "seed": frozenset({"seed"}),
    "width": frozenset({"width"}),
    "height": frozenset({"height"}),
    "fps": frozenset({"fps"}),
    "duration": frozenset({"duration"}),
    "frames": frozenset({"fps", "duration"}),  # round(duration × fps)
}
IMAGES = ("first_frame", "last_frame")  # and reference_1, reference_2, ...
_EXPORT = "in ComfyUI, export it with Workflow → Export (API)"
KNOWN = ", ".join(f"`{{{{{n}}}}}`" for n in (*FIELDS, *IMAGES, "reference_1", "reference_2"))


class WorkflowError(Exception):
    """A workflow file that filmc cannot use, said for a user, with how to fix it."""

    def __init__(self, message: str, help: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.help = help


def is_image(name: str) -> bool:
    return name in IMAGES or reference_index(name) is not None


def reference_index(name: str) -> int | None:
    """1 for `reference_1`; None for a placeholder that is not a reference."""
    m = _REFERENCE.match(name)
    return int(m.group(1)) if m else None


def known(name: str) -> bool:
    return name in FIELDS or is_image(name)


@attrs.frozen(eq=False)
class Workflow:
    path: Path
    graph: Mapping[str, Any]  # node id → {"class_type", "inputs", ...}, as exported
    placeholders: frozenset[str]  # every placeholder written in it, known or not
    slots: Mapping[str, tuple[str, ...]]  # node id → the inputs that hold placeholders

    @property
    def unknown(self) -> tuple[str, ...]:
        return tuple(sorted(p for p in self.placeholders if not known(p)))

    @property
    def references(self) -> int:
        """How many reference images it takes: its distinct `{{reference_N}}`."""
        return sum(1 for p in self.placeholders if reference_index(p) is not None)

    @property
    def fields(self) -> frozenset[str]:
        """The request fields its placeholders read."""
        return frozenset().union(*(FIELDS[p] for p in self.placeholders if p in FIELDS))

    def uses(self, name: str) -> bool:
        return name in self.placeholders


def load(path: Path) -> Workflow:
    """The workflow at `path`; WorkflowError when it cannot be read or is not API format."""
    try:
        st = path.stat()
    except OSError as e:
        raise WorkflowError(f"cannot read the workflow `{path}`: {e.strerror or e}") from None
    return _load(str(path), st.st_mtime_ns, st.st_size)


@functools.lru_cache(maxsize=64)
def _load(path: str, _mtime_ns: int, _size: int) -> Workflow:
    try:
        text = Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as e:
        raise WorkflowError(f"cannot read the workflow `{path}`: {e}") from None
    return parse(text, Path(path))


def parse(text: str, path: Path) -> Workflow:
    name = path.name
    try:
        graph = json.loads(text)
    except ValueError as e:
        raise WorkflowError(f"the workflow `{name}` is not JSON: {e}") from None
    if isinstance(graph, dict) and isinstance(graph.get("nodes"), list) and "links" in graph:
        raise WorkflowError(f"the workflow `{name}` is in ComfyUI's UI format, not the API "
                            f"format that its server runs",
                            help=_EXPORT)
    if not isinstance(graph, dict) or not graph:
        raise WorkflowError(f"the workflow `{name}` is not an API-format workflow (a JSON "
                            f"object of nodes by id)",
                            help=_EXPORT)
    for node_id, node in graph.items():
        if not (isinstance(node, dict) and isinstance(node.get("class_type"), str)
                and isinstance(node.get("inputs"), dict)):
            raise WorkflowError(f"node `{node_id}` of the workflow `{name}` has no `class_type` "
                                f"and `inputs`: this is not an API-format workflow",
                                help=_EXPORT)
        for input_name, value in node["inputs"].items():
            if _is_link(value) and str(value[0]) not in graph:
                raise WorkflowError(f"node `{node_id}` ({node['class_type']}) of the workflow "
                                    f"`{name}` takes `{input_name}` from node `{value[0]}`, "
                                    f"which is not in the workflow",
                                    help="export the workflow again from ComfyUI")
    slots: dict[str, tuple[str, ...]] = {}
    found: set[str] = set()
    for node_id, node in graph.items():
        for input_name, value in node["inputs"].items():
            names = {m.group(1) for s in _strings(value) for m in PATTERN.finditer(s)}
            if names:
                slots[node_id] = (*slots.get(node_id, ()), input_name)
                found |= names
    return Workflow(path, graph, frozenset(found), slots)


def _is_link(value: Any) -> bool:
    return (isinstance(value, list) and len(value) == 2 and isinstance(value[0], str | int)
            and isinstance(value[1], int) and not isinstance(value[1], bool))


def _strings(value: Any) -> Iterator[str]:
    if isinstance(value, str):
        yield value
    elif isinstance(value, dict):
        for v in value.values():
            yield from _strings(v)
    elif isinstance(value, list):
        for v in value:
            yield from _strings(v)


# -- the settings that name workflows ----------------------------------------------------------


def setting_for(kind: str, settings: Mapping[str, Any]) -> tuple[str, Any] | None:
    """The setting that names the workflow for `kind`, and its value: `workflow_KIND`,
    else `workflow`."""
    for key in (f"workflow_{kind}", "workflow"):
        if settings.get(key) is not None:
            return key, settings[key]
    return None


def resolve(value: Any, root: Path | None) -> Path:
    """A workflow setting's file (the compiler passes absolute paths; `root` resolves others)."""
    p = Path(str(value))
    return p if p.is_absolute() or root is None else root / p


def for_kind(kind: str, settings: Mapping[str, Any], root: Path | None) -> Workflow | None:
    """The workflow for `kind`; None when there is none, or it cannot be used."""
    found = setting_for(kind, settings)
    if found is None or not isinstance(found[1], str):
        return None
    try:
        return load(resolve(found[1], root))
    except WorkflowError:
        return None


def check_settings(settings: Mapping[str, Any], kinds: tuple[str, ...]) -> list[SettingProblem]:
    """What is wrong with the settings that name workflows (`workflow`, `workflow_KIND`) and
    pick their outputs (`output_node`, `output_node_KIND`)."""
    named = [k for k in settings if k == "workflow" or k.startswith("workflow_")]
    problems = [] if named else [SettingProblem(
        "workflow", "no `workflow` is set: the comfyui backend runs your own workflow",
        help=f"{_EXPORT}, then set `workflow = \"workflows/keyframe_api.json\"`")]
    for key in named:
        kind, value = key.removeprefix("workflow").removeprefix("_"), settings[key]
        if kind and kind not in kinds:
            problems.append(SettingProblem(
                key, f"`{key}` names no step kind the comfyui backend makes",
                help="the kinds are " + ", ".join(f"`workflow_{k}`" for k in kinds)))
        elif not isinstance(value, str):
            problems.append(SettingProblem(key, f"`{key}` must be the path of a workflow file, "
                                                f"not {type(value).__name__}"))
        elif Path(value).is_file():  # a missing file is the compiler's to report
            node = settings.get(f"output_node_{kind}", settings.get("output_node"))
            problems += check(key, Path(value), None if node is None else str(node))
    for key in [k for k in settings if k == "output_node" or k.startswith("output_node_")]:
        if not isinstance(settings[key], str | int) or isinstance(settings[key], bool):
            problems.append(SettingProblem(key, f"`{key}` must be a node id such as \"9\""))
    return problems


def check(setting: str, path: Path, output_node: str | None = None) -> list[SettingProblem]:
    """What is wrong with the workflow at `path`, named by the setting `setting`."""
    try:
        flow = load(path)
    except WorkflowError as e:
        return [SettingProblem(setting, e.message, help=e.help)]
    problems = []
    for name in flow.unknown:
        close = difflib.get_close_matches(name, [*FIELDS, *IMAGES, "reference_1"], n=1)
        problems.append(SettingProblem(
            setting, f"the workflow `{path.name}` has the placeholder `{{{{{name}}}}}`, which "
                     f"filmc does not fill",
            help=(f"did you mean `{{{{{close[0]}}}}}`? " if close else "")
                 + f"filmc fills {KNOWN}…"))
    if not flow.uses("prompt"):
        problems.append(SettingProblem(
            setting, f"the workflow `{path.name}` has no `{{{{prompt}}}}`: every step it makes "
                     f"ignores the shot's text",
            help="write \"{{prompt}}\" as the `text` of its positive CLIPTextEncode node",
            warning=True))
    if output_node is not None and output_node not in flow.graph:
        problems.append(SettingProblem(
            "output_node", f"the workflow `{path.name}` has no node `{output_node}`",
            help="the node ids are the keys of its API-format JSON: "
                 + ", ".join(f"`{n}`" for n in list(flow.graph)[:12])))
    return problems


# -- filling it for one request --------------------------------------------------------------


def images(flow: Workflow, request: Request) -> dict[str, Input]:
    """Each image placeholder of `flow` → the input it shows: `{{first_frame}}` and
    `{{last_frame}}` by role; `{{reference_N}}` the Nth of the character sheets, then the
    location plates, then the user's own references (the first one when there are fewer)."""
    refs = [*request.of(CHARACTER), *request.of(LOCATION), *request.of(REFERENCE)]
    found: dict[str, Input] = {}
    for name in sorted(flow.placeholders):
        index = reference_index(name)
        role = {"first_frame": FIRST_FRAME, "last_frame": LAST_FRAME}.get(name)
        given = request.of(role) if role else ()
        if given:
            found[name] = given[0]
        elif index is not None and refs:
            found[name] = refs[index - 1] if index <= len(refs) else refs[0]
        elif index is not None or role:
            what = "a reference image" if index is not None else f"a {name.replace('_', ' ')}"
            raise ServiceError(FailureKind.INVALID,
                               f"the workflow `{flow.path.name}` takes {what} "
                               f"(`{{{{{name}}}}}`), and `{request.step}` has none",
                               unbilled=True)
    return found


def values(flow: Workflow, request: Request, uploaded: Mapping[str, str]) -> dict[str, Any]:
    """Each placeholder of `flow` → its value for `request`; `uploaded` names the images."""
    f = request.fields
    out: dict[str, Any] = dict(uploaded)
    for name in flow.placeholders & FIELDS.keys():
        value: Any
        if name == "seed":
            value = f.seed if f.seed is not None else key_seed(request.key)
        elif name == "frames":
            value = None if f.fps is None or f.duration is None else round(f.duration * f.fps)
        elif name in ("fps", "duration"):
            got = getattr(f, name)
            value = None if got is None else float(got)
        else:
            value = getattr(f, name)
        if value is None:
            raise ServiceError(FailureKind.INVALID,
                               f"the workflow `{flow.path.name}` writes `{{{{{name}}}}}`, and "
                               f"`{request.step}` has no {name}", unbilled=True)
        out[name] = value
    return out


def fill(flow: Workflow, values: Mapping[str, Any]) -> dict[str, Any]:
    """The workflow's graph with each placeholder replaced by `values[name]` (each must have
    one).  Only the nodes with placeholders are copied: the rest is shared with
    `flow.graph`, so the result is for sending, not for changing."""
    graph = dict(flow.graph)
    for node_id, names in flow.slots.items():
        inputs = dict(graph[node_id]["inputs"])
        for name in names:
            inputs[name] = _fill(inputs[name], values)
        graph[node_id] = {**graph[node_id], "inputs": inputs}
    return graph


def _fill(value: Any, values: Mapping[str, Any]) -> Any:
    if isinstance(value, str):
        whole = PATTERN.fullmatch(value.strip())
        if whole:
            return values[whole.group(1)]
        return PATTERN.sub(lambda m: _text(values[m.group(1)]), value)
    if isinstance(value, dict):
        return {k: _fill(v, values) for k, v in value.items()}
    if isinstance(value, list):
        return [_fill(v, values) for v in value]
    return value


def _text(value: Any) -> str:
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)
