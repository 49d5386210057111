"""What the compiler knows of each configured backend: its adapter's declarations.

An adapter class says, without being constructed or touching the network,
which request fields change its output, what else of this machine does (the
local renderer's version, ffmpeg's, the panel font), which settings name
project files, which secrets it needs and what it can honour per step kind
(backends/protocol.py).  `describe` reads all of that once per compile and
checks it against filmc.toml; every problem is a diagnostic pointing at the
line of filmc.toml concerned.

    infos = describe(config, root, diags)
    infos["openai"].key("keyframe")     # the backend's part of a keyframe's key
    infos["openai"].fields("keyframe")  # the request fields that enter it
    infos["openai"].capabilities("keyframe")

A file-valued setting (a ComfyUI workflow) enters keys by its content, never
its path; the adapter receives it as an absolute path.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import attrs

from ..backends.protocol import Adapter, Capabilities
from ..backends.registry import NotInstalled, adapter_class
from ..lang.ast import Span
from ..lang.diagnostics import Diagnostics
from ..lang.tree import current as current_tree
from .config import LOCAL, BackendConfig, Config

AdapterClass = type[Adapter]


@attrs.frozen(eq=False)
class BackendInfo:
    name: str
    type: str  # the adapter type, as filmc.toml names it
    adapter: AdapterClass
    settings: Mapping[str, Any]  # what the adapter is given: file settings as absolute paths
    key_settings: Mapping[str, Any]  # what enters keys: file settings as their content digests
    files: tuple[Path, ...]  # the project files its settings name
    config: BackendConfig
    root: Path
    _fields: dict[str, frozenset[str]] = attrs.field(factory=dict, init=False, repr=False)
    _caps: dict[str, Capabilities | None] = attrs.field(factory=dict, init=False, repr=False)

    def key(self, kind: str) -> dict[str, Any]:
        """The backend's part of a step's key: the adapter, its version, the settings that
        change its output, and the facts of this machine it says matter."""
        return {"type": self.type, "version": self.adapter.version,
                "settings": dict(self.adapter.key_settings(kind, self.key_settings)),
                **self.adapter.key_extra(kind, self.settings)}

    def fields(self, kind: str) -> frozenset[str]:
        if kind not in self._fields:
            self._fields[kind] = frozenset(self.adapter.key_fields(kind, self.settings)) | {"take"}
        return self._fields[kind]

    def capabilities(self, kind: str) -> Capabilities | None:
        if kind not in self._caps:
            self._caps[kind] = self.adapter.capabilities(kind, self.settings, self.root)
        return self._caps[kind]

    @property
    def runs_here(self) -> bool:
        return self.adapter.runs_here


def describe(config: Config, root: Path, diags: Diagnostics,
             local_only: bool = False) -> dict[str, BackendInfo]:
    """Every configured backend whose adapter loads, checked; `local_only`: just `local`."""
    out: dict[str, BackendInfo] = {}
    for name, conf in config.backends.items():
        if local_only and name != LOCAL:
            continue
        info = _describe(conf, config, root, diags)
        if info is not None:
            out[name] = info
    if not local_only:
        _check_steps(config, out, diags)
    return out


def _span(config: Config, path: tuple, value: bool = False) -> Span | None:
    return config.locate.span(path, value) if config.locate is not None else None


def _describe(conf: BackendConfig, config: Config, root: Path,
              diags: Diagnostics) -> BackendInfo | None:
    where = ("backends", conf.name)
    try:
        cls = adapter_class(conf.type)
    except NotInstalled as e:
        diags.error("F0510", e.message, _span(config, (*where, "type"), True), "cannot load it")
        return None
    settings: dict[str, Any] = dict(conf.settings)
    key_settings: dict[str, Any] = {k: v for k, v in config.key_settings(conf.name).items()}
    files: list[Path] = []
    for setting in cls.file_settings:
        value = settings.get(setting)
        if value is None:
            continue
        found = _project_file(value, root)
        if isinstance(found, str):
            diags.error("F0512", f"`{setting}` of backend `{conf.name}`: {found}",
                        _span(config, (*where, setting), True), "here",
                        help="a path relative to the project folder, to a file inside it")
            return None
        settings[setting] = str(found)
        files.append(found)
        key_settings[setting] = {"file": current_tree().digest(found)}
    for secret in cls.secrets:
        if secret not in conf.secret_envs:
            diags.error("F0513", f"backend `{conf.name}` needs `{secret}_env`: the name of the "
                                 f"environment variable that holds its {secret.replace('_', ' ')}",
                        _span(config, where), "in this table",
                        help=f"add `{secret}_env = \"{conf.name.upper()}_{secret.upper()}\"`, and "
                             f"export that variable where filmc builds")
    for problem in cls.check_settings(settings):
        span = _span(config, (*where, problem.setting), True)
        if problem.warning:
            diags.warning("F0511", problem.message, span, "here", help=problem.help)
        else:
            diags.error("F0511", problem.message, span, "here", help=problem.help)
    return BackendInfo(conf.name, conf.type, cls, settings, key_settings, tuple(files), conf, root)


def _project_file(value: object, root: Path) -> Path | str:
    """The file a setting names, or why it cannot be used."""
    if not isinstance(value, str) or not value.strip():
        return "must be a file path, in quotes"
    path = Path(value)
    if path.is_absolute():
        return f"`{value}` is absolute; write it relative to the project folder"
    tree = current_tree()
    full = tree.realpath(root / path)
    if not full.is_relative_to(tree.realpath(root)):
        return f"`{value}` leaves the project folder"
    if not tree.is_file(full):
        return f"no file `{value}` in the project folder"
    return full


def _check_steps(config: Config, infos: Mapping[str, BackendInfo], diags: Diagnostics) -> None:
    """Every kind `[steps]` assigns goes to a backend whose adapter makes that kind."""
    for kind, name in config.steps.items():
        info = infos.get(name)
        if info is not None and info.capabilities(kind) is None:
            diags.error("F0514", f"backend `{name}` ({info.type}) cannot make `{kind}` steps",
                        _span(config, ("steps", kind), True), "assigned here",
                        help=makers_help(kind, infos))


def makers_help(kind: str, infos: Mapping[str, BackendInfo]) -> str:
    able = [n for n, i in infos.items() if i.capabilities(kind) is not None]
    return f"backends that make `{kind}` steps: " + ", ".join(f"`{n}`" for n in sorted(able))
